"""Export to a plain sentence-transformers folder (no remote code), TEI's folder rules, and `export.py`."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LONG_TEXTS, TEXTS, make_model, require_module, run_python

from multitask_st.cli import export as export_cli
from multitask_st.export.sentence_transformers_folder import (
    export_sentence_transformers,
    plain_export_plan,
)
from multitask_st.export.tei import tei_problems


SentenceTransformer = require_module("sentence_transformers").SentenceTransformer
ALL_TEXTS = TEXTS + LONG_TEXTS
REPO_ROOT = Path(__file__).resolve().parents[1]


def saved(tmp_path, tokenizer, name="model", **overrides) -> tuple:
    model = make_model(**overrides)
    model.save_pretrained(tmp_path / name)
    tokenizer.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def encode_without_remote_code(folder: Path, texts: list[str], tmp_path: Path) -> np.ndarray:
    """`SentenceTransformer(folder)` in a fresh process where multitask_st cannot be imported."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer({str(folder)!r}, device="cpu")  # no trust_remote_code
        np.save({str(tmp_path / "plain.npy")!r}, model.encode({texts!r}, batch_size=3))
        """
    )
    result = run_python(script, tmp_path, block=("multitask_st",), timeout=180)
    assert result.returncode == 0, result.stderr
    assert "MISSING" not in result.stderr and "newly initialized" not in result.stderr, result.stderr
    return np.load(tmp_path / "plain.npy")


@pytest.mark.parametrize(
    ("pooling_mode", "projection", "normalize", "modules", "tei_ready"),
    [
        ("mean", "none", False, ["Transformer", "Pooling"], True),
        ("cls", "none", True, ["Transformer", "Pooling", "Normalize"], True),
        ("max", "none", False, ["Transformer", "Pooling"], False),
        ("mean", "linear", True, ["Transformer", "Pooling", "Dense", "LayerNorm", "Normalize"], False),
        ("cls", "mlp", False, ["Transformer", "Pooling", "Dense", "Dense", "LayerNorm"], False),
    ],
)
def test_plain_export_gives_the_same_vectors(
    tmp_path, tiny_tokenizer, pooling_mode, projection, normalize, modules, tei_ready
):
    model, model_dir = saved(
        tmp_path, tiny_tokenizer, pooling_mode=pooling_mode, projection=projection, normalize_embeddings=normalize
    )
    result = export_sentence_transformers(model_dir, tmp_path / "plain", check_texts=ALL_TEXTS)
    assert result.modules == modules
    assert result.min_cosine >= 0.99999
    assert result.tei_ready is tei_ready
    assert plain_export_plan(model.config).modules == modules
    assert plain_export_plan(model.config).tei_ready is tei_ready  # the card's verdict is the folder's
    # Nothing of ours in the folder: no payload code, no auto_map; the encoder's own config.
    assert not list((tmp_path / "plain").glob("*.py"))
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"] and "auto_map" not in config
    modules_json = json.loads((tmp_path / "plain" / "modules.json").read_text())
    assert [m["type"] for m in modules_json] == [f"sentence_transformers.models.{name}" for name in modules]

    ours = model.encode(ALL_TEXTS, tiny_tokenizer)
    theirs = SentenceTransformer(str(tmp_path / "plain"), device="cpu").encode(ALL_TEXTS, batch_size=3)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_plain_export_loads_without_the_package(tmp_path, tiny_tokenizer):
    model, model_dir = saved(tmp_path, tiny_tokenizer, pooling_mode="max", projection="mlp", normalize_embeddings=True)
    export_sentence_transformers(model_dir, tmp_path / "plain")
    theirs = encode_without_remote_code(tmp_path / "plain", ALL_TEXTS, tmp_path)
    np.testing.assert_allclose(theirs, model.encode(ALL_TEXTS, tiny_tokenizer), atol=1e-5, rtol=0)


def test_plain_export_refuses_attention_pooling_and_writes_nothing(tmp_path, tiny_tokenizer):
    _, model_dir = saved(tmp_path, tiny_tokenizer, pooling_mode="attention")
    with pytest.raises(
        ValueError, match=r"Cannot export pooling_mode='attention' .* has no sentence-transformers module"
    ):
        export_sentence_transformers(model_dir, tmp_path / "plain")
    assert not (tmp_path / "plain").exists()


def test_plain_export_refuses_a_non_empty_output(tmp_path, tiny_tokenizer):
    _, model_dir = saved(tmp_path, tiny_tokenizer)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="must be an empty directory or not exist yet"):
        export_sentence_transformers(model_dir, tmp_path / "plain")
    assert (tmp_path / "plain" / "keep.txt").read_text() == "mine"


def test_tei_rules(tmp_path, tiny_tokenizer):
    _, model_dir = saved(tmp_path, tiny_tokenizer, pooling_mode="mean", projection="none")
    ready = tmp_path / "plain"
    export_sentence_transformers(model_dir, ready)
    assert tei_problems(ready) == []

    def broken(name, edit) -> list[str]:
        folder = tmp_path / name
        shutil.copytree(ready, folder)
        edit(folder)
        return tei_problems(folder)

    def edit_json(relative, change):
        def edit(folder):
            path = folder / relative
            value = json.loads(path.read_text())
            change(value)
            path.write_text(json.dumps(value))

        return edit

    assert broken("no_tokenizer", lambda f: (f / "tokenizer.json").unlink()) == [
        "no tokenizer.json (TEI only runs fast tokenizers)"
    ]
    assert broken(
        "max",
        edit_json(
            "1_Pooling/config.json", lambda c: c.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
        ),
    ) == ["pooling 'max_tokens' is not CLS or mean, the two TEI applies"]
    assert broken("type", edit_json("config.json", lambda c: c.update(model_type="multitask-st"))) == [
        "config.json model_type 'multitask-st' is not one TEI implements"
    ]
    assert broken(
        "classifier", edit_json("config.json", lambda c: c.update(architectures=["BertForSequenceClassification"]))
    ) == ["config.json architectures ['BertForSequenceClassification'] make TEI serve a classifier"]
    assert broken("length", edit_json("sentence_bert_config.json", lambda c: c.pop("max_seq_length"))) == [
        "sentence_bert_config.json gives no integer `max_seq_length`"
    ]
    v6_name = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
    assert broken("v6_names", edit_json("modules.json", lambda m: m[1].update(type=v6_name))) == [
        f"module {v6_name!r} is not one TEI applies (and makes TEI skip every Dense module)"
    ]

    _, linear_dir = saved(
        tmp_path, tiny_tokenizer, name="linear", pooling_mode="cls", projection="mlp", projection_activation="tanh"
    )
    export_sentence_transformers(linear_dir, tmp_path / "plain_linear")
    assert tei_problems(tmp_path / "plain_linear") == [
        "module 'sentence_transformers.models.LayerNorm' is not one TEI applies (and makes TEI skip every Dense module)"
    ]


def test_export_cli(tmp_path, tiny_tokenizer, capsys):
    _, model_dir = saved(tmp_path, tiny_tokenizer, pooling_mode="cls", projection="none")
    assert (
        export_cli.main([str(model_dir), "--format", "sentence-transformers", "--output", str(tmp_path / "out")]) == 0
    )
    printed = capsys.readouterr().out
    assert "Wrote a plain sentence-transformers folder to" in printed and "(Transformer -> Pooling)" in printed
    assert "  modules.json" in printed and "  1_Pooling/config.json" in printed
    assert f"SentenceTransformer({str(tmp_path / 'out')!r}): no trust_remote_code" in printed
    assert f"text-embeddings-inference: --model-id {tmp_path / 'out'}" in printed

    _, attention_dir = saved(tmp_path, tiny_tokenizer, name="attention", pooling_mode="attention")
    capsys.readouterr()  # saving's progress bar
    assert (
        export_cli.main([str(attention_dir), "--format", "sentence-transformers", "--output", str(tmp_path / "x")])
        == 1
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(
        "multitask-st export: error: Cannot export pooling_mode='attention'"
    )
    assert export_cli.main([str(tmp_path / "missing"), "--format", "sentence-transformers", "--output", "x"]) == 1
    assert capsys.readouterr().err == (
        f"multitask-st export: error: model directory {str(tmp_path / 'missing')!r} does not exist or is not a directory.\n"
    )
    with pytest.raises(SystemExit):
        export_cli.main([str(model_dir), "--format", "pickle", "--output", "x"])
    assert "invalid choice: 'pickle'" in capsys.readouterr().err


@pytest.mark.slow
def test_export_cli_runs_as_a_script_on_real_minilm(tmp_path, minilm):
    from transformers import AutoTokenizer

    from multitask_st import MultiTaskSTModel

    model = MultiTaskSTModel.from_backbone(str(minilm), pooling_mode="mean", projection="none")
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(minilm).save_pretrained(tmp_path / "model")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "export.py"), str(tmp_path / "model"), "--format", "sentence-transformers",
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "text-embeddings-inference: --model-id" in result.stdout
    texts = ["A sentence to embed.", "Shares fell sharply."]
    theirs = encode_without_remote_code(tmp_path / "out", texts, tmp_path)
    ours = model.encode(texts, AutoTokenizer.from_pretrained(minilm))
    assert torch.nn.functional.cosine_similarity(torch.tensor(theirs), torch.tensor(ours)).min() >= 0.99999
