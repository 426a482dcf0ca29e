"""The Gradio demo's logic, its CLI, and the Space folder staged for the Hub (all offline, no browser)."""

import importlib.util
import json
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, require_module


gr = require_module("gradio")
from huggingface_hub import SpaceCard  # noqa: E402
from tiny_training import KNOWN  # noqa: E402

from multitask_st.app.demo import MAX_COMPARE_SENTENCES, MAX_TEXT_CHARS, MultiTaskDemo  # noqa: E402
from multitask_st.app.serve import build_demo  # noqa: E402
from multitask_st.cli import app as app_cli  # noqa: E402
from multitask_st.sharing.space import DEMO_MODULE, stage_space  # noqa: E402


# Tests on the tiny model that train.py trains once per session (~20 s on a quiet machine).
TRAINED = pytest.mark.slow
CORPUS = [
    {"text": "stock market fell", "source": "toy · business"},
    {"text": "the team won", "source": "toy · sports"},
    {"text": "election vote", "source": "toy · world"},
    "a great film",
]


@pytest.fixture(scope="module")
def demo(trained_tiny_model_dir) -> MultiTaskDemo:
    return build_demo(trained_tiny_model_dir, corpus=CORPUS)


@TRAINED
def test_classify_gives_each_head_its_probabilities(demo):
    for sentence, (task, label) in KNOWN.items():
        probabilities = dict(zip(demo.tasks, demo.classify(sentence), strict=True))
        assert list(probabilities) == ["topic", "sentiment"]
        assert set(probabilities[task]) == set(demo.tasks[task])
        assert max(probabilities[task], key=probabilities[task].get) == label
        assert sum(probabilities[task].values()) == pytest.approx(1.0, abs=1e-5)


@TRAINED
def test_compare_draws_a_labelled_heatmap(demo):
    figure = demo.compare("the team won\nstock market fell\n\n  a great film  ")
    axis = figure.axes[0]
    labels = [tick.get_text() for tick in axis.get_yticklabels()]
    assert labels == ["1. the team won", "2. stock market fell", "3. a great film"]
    similarity = axis.images[0].get_array()
    assert similarity.shape == (3, 3) and np.allclose(np.diag(similarity), 1.0, atol=1e-5)


@TRAINED
def test_search_ranks_the_corpus_and_predicts_each_hit(demo):
    rows = demo.search("the team won", top_k=3)
    assert [row[0] for row in rows] == [1, 2, 3]
    assert rows[0][2:4] == ["the team won", "toy · sports"] and rows[0][1] == pytest.approx(1.0, abs=1e-3)
    assert rows[0][1] >= rows[1][1] >= rows[2][1]
    assert rows[0][4].startswith("sports (") and len(rows[0]) == 4 + len(demo.tasks)


@TRAINED
@pytest.mark.parametrize(
    ("action", "text", "message"),
    [
        ("classify", "", "The text is empty"),
        ("classify", "   \n ", "The text is empty"),
        ("classify", "words" * 20_000, f"The text has 100,000 characters; this demo takes at most {MAX_TEXT_CHARS:,}"),
        ("search", "", "The query is empty"),
        ("search", "x" * 100_000, "The query has 100,000 characters"),
        ("compare", "just one line", "Compare needs at least 2 sentences, one per line; got 1."),
        (
            "compare",
            "\n".join(["the team won"] * 500),
            f"Got 500 sentences; the heatmap takes at most {MAX_COMPARE_SENTENCES}",
        ),
        ("compare", "short\n" + "y" * 20_000, "The sentence on line 2 has 20,000 characters"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(demo, action, text, message):
    with pytest.raises(gr.Error) as raised:
        getattr(demo, action)(text)
    assert message in raised.value.message


@TRAINED
def test_the_page_builds_with_a_label_per_head(demo):
    blocks = demo.build()
    config = blocks.get_config_file()
    ids = {component.get("props", {}).get("elem_id") for component in config["components"]}
    assert {"head-topic", "head-sentiment", "compare-plot", "search-results"} <= ids
    tabs = [component["props"]["label"] for component in config["components"] if component["type"] == "tabitem"]
    assert tabs == ["Classify", "Compare", "Search"]


def test_cli_without_a_model_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert app_cli.main([]) == 1
    error = capsys.readouterr().err
    assert (
        "no trained model in 'outputs/multitask-st'" in error
        and "make demo" in error
        and "multitask-st app DIR" in error
    )


@TRAINED
def test_staged_space_is_complete_and_its_app_builds_against_a_local_model(trained_tiny_model_dir, tmp_path):
    files = stage_space("org/tiny-model", tmp_path / "space", revision="0123abc", corpus=CORPUS)
    assert files == ["README.md", "app.py", "corpus.json", DEMO_MODULE, "requirements.txt"]
    space = tmp_path / "space"
    card = SpaceCard.load(space / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.models == ["org/tiny-model"]
    assert card.data.sdk_version == gr.__version__
    requirements = (space / "requirements.txt").read_text().split()
    assert {line.split(">=")[0] for line in requirements} >= {"torch", "transformers", "matplotlib"}
    assert not any("multitask" in line for line in requirements)  # the model's code comes from its repository
    assert json.loads((space / "corpus.json").read_text())[3] == {"text": "a great film", "source": ""}

    # The Space's own files, imported from the staged folder (not from this package), serve a local model folder.
    module = _import_file(space / DEMO_MODULE, "staged_demo")
    assert not re.search(r"^\s*(from|import) multitask_st", (space / DEMO_MODULE).read_text(), re.MULTILINE)
    model, tokenizer = module.load_model(str(trained_tiny_model_dir))
    demo = module.MultiTaskDemo(model, tokenizer, corpus=module.load_corpus(space / "corpus.json"))
    assert isinstance(demo.build(), gr.Blocks)
    assert demo.search("election vote", top_k=1)[0][2] == "election vote"
    sys.path.insert(0, str(space))
    try:
        app = _import_file(space / "app.py", "staged_space_app")  # imports the demo module; launches only as __main__
    finally:
        sys.path.remove(str(space))
    assert (app.MODEL_ID, app.REVISION) == ("org/tiny-model", "0123abc")


def test_staging_a_space_refuses_a_used_folder_and_a_bad_model_id(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    with pytest.raises(ValueError, match="must be an empty directory"):
        stage_space("org/model", tmp_path / "used", corpus=[])
    with pytest.raises(ValueError):
        stage_space("not a repo id!", tmp_path / "new", corpus=[])


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_names_a_model_it_cannot_load(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert app_cli.main([str(tmp_path), "--no-corpus"]) == 1
    assert f"multitask-st app: error: cannot serve {str(tmp_path)!r}" in capsys.readouterr().err


@pytest.mark.slow  # reads the BBC News and Rotten Tomatoes packages
def test_default_corpus_is_the_held_out_test_snippets_once_each():
    from multitask_st.app.corpus import SNIPPET_CHARS, default_search_corpus
    from multitask_st.data.corpora import rotten_tomatoes

    corpus = default_search_corpus()
    sources = [entry["source"].split(" · ")[0] for entry in corpus]
    assert sources.count("Rotten Tomatoes") == 400 and 200 <= sources.count("BBC News") <= 211
    assert len({entry["text"] for entry in corpus}) == len(corpus)
    assert all(len(entry["text"]) <= SNIPPET_CHARS for entry in corpus if entry["source"].startswith("BBC"))
    train_reviews = set(rotten_tomatoes()["train"]["text"])
    assert not any(entry["text"] in train_reviews for entry in corpus)  # nothing the model trained on


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"a": "b"}', "holds an object, not a list; expected a JSON list of texts or of"),
        ('"hello"', "holds a string, not a list"),
        ('["ok", 5, null]', "corpus[1] is 5 (int); expected a text or a {'text', 'source'} mapping."),
        ('[{"text": "ok", "sorce": "x"}]', "corpus[0] has keys ['sorce'] besides 'text' and 'source'"),
        ('[{"text": ""}]', "corpus[0] needs a non-empty string `text`; got {'text': ''}."),
        (
            "{invalid",
            "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        ),
    ],
)
def test_a_bad_corpus_file_is_named_with_the_bad_entry_before_the_model_loads(tmp_path, capsys, content, problem):
    (tmp_path / "model").mkdir()
    (tmp_path / "model/config.json").write_text('{"model_type": "bert"}')  # never loaded: the corpus fails first
    (tmp_path / "corpus.json").write_text(content)
    assert app_cli.main([str(tmp_path / "model"), "--corpus", str(tmp_path / "corpus.json"), "--port", "0"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"multitask-st app: error: --corpus: The corpus file {str(tmp_path / 'corpus.json')!r}")
    assert problem in error and "cannot serve" not in error


def test_a_busy_port_fails_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')  # never loaded: the port fails first
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert app_cli.main([str(tmp_path), "--port", str(port), "--no-corpus"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"multitask-st app: error: cannot serve on 127.0.0.1:{port}: Address already in use. Pass another --port.\n"
    )
    assert "Ready" not in captured.out


@pytest.mark.parametrize(
    ("action", "text"), [("classify", "\x00\u200b"), ("search", "\u200b"), ("compare", "ok\n\x00")]
)
def test_text_the_model_refuses_shows_the_models_own_message(tiny_model, tiny_tokenizer, action, text):
    demo = MultiTaskDemo(tiny_model, tiny_tokenizer, corpus=["the team won", "stock market fell"])
    with pytest.raises(ValueError) as model_error:
        tiny_model.encode(text.split("\n"), tiny_tokenizer)  # what the demo passes on
    with pytest.raises(gr.Error) as shown:
        getattr(demo, action)(text)
    assert shown.value.message == str(model_error.value)
    assert "only control/format characters" in shown.value.message


def test_the_app_serves_this_machine_only_without_share_link_or_analytics_by_default(trained, monkeypatch, capsys):
    """`python app.py MODEL`: what reaches Gradio's `launch` with nothing set by the caller."""
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SHARE", raising=False)
    launched = {}

    def launch(self, *args, **kwargs):
        launched.update(kwargs, analytics_env=os.environ.get("GRADIO_ANALYTICS_ENABLED"))
        launched["analytics_enabled"] = self.analytics_enabled

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    port = free_port()  # app.py checks the port is free before loading: the default one may be in use here
    assert app_cli.main([str(trained.model_dir), "--no-corpus", "--port", str(port)]) == 0
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == port
    assert launched["share"] is False
    assert launched["analytics_enabled"] is False and launched["analytics_env"] == "False"
    assert f"open http://127.0.0.1:{port}" in capsys.readouterr().out
    launched.clear()
    port = free_port()
    assert app_cli.main([str(trained.model_dir), "--no-corpus", "--host", "0.0.0.0", "--port", str(port)]) == 0
    assert (launched["server_name"], launched["server_port"], launched["share"]) == ("0.0.0.0", port, False)
