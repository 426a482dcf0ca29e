"""Every code block and command of README.md runs here, as a new user would run it, offline (as the model card's
snippets do in test_card_snippets.py). A README block or command that stops working, or a new one nobody declared
below, fails a test.

Offline substitutions, declared once (`SUBSTITUTIONS`, `REDUCED`, `COMMANDS`): the Hub id of MiniLM becomes the
packaged MiniLM, `org/multitask-st` a local model folder; the commands run in a folder where `outputs/model` and
`outputs/multitask-st` hold a model that `python train.py --output_dir outputs/model` trained there (with reduced
sizes), with its ONNX export; long runs get reduced sizes; commands that need the Hub must fail offline with the
message that says so.
"""

from __future__ import annotations

import importlib
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, free_port, run_python


README = REPO_ROOT / "README.md"
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^ *```", re.M | re.S)
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# What a README code names -> what runs here instead (the packaged MiniLM path is filled in by the fixture).
SUBSTITUTIONS = {
    "org/multitask-st": "outputs/multitask-st",  # a Hub repository -> the local model folder
    "<commit hash>": "main",  # the revision to pin: a local folder has none
}
# Appended to a training command: the same run, minutes shorter (a declared reduction, not another command).
REDUCED = [
    "--max_steps", "2", "--max_eval_samples", "16", "--max_train_samples", "topic=16", "sentiment=16",
    "--max_seq_length", "32", "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no",
    "--load_best_model_at_end", "false", "--stsb_eval", "false", "--disable_tqdm", "true",
]  # fmt: skip
OFFLINE_PUSH = (
    "error: offline mode is enabled (HF_HUB_OFFLINE=1)"  # after the program name: `multitask-st push:` in-process
)
# Every README command -> how this file runs it:
#   ("run", extra arguments), ("train", None): run reduced, ("fails", expected stderr): needs the Hub, so offline it
#   must fail saying so, ("serve", extra arguments): started, answers on its port, stopped,
#   ("elsewhere", where): run by the test named there (or it is this suite).
COMMANDS: dict[str, tuple[str, object]] = {
    "make demo": ("elsewhere", "`python train.py` after `make setup`: see that command below"),
    "make test": ("elsewhere", "this suite"),
    # The torch-free serving install: pip cannot reach a clean venv's worth of packages offline in a test; the door it
    # gives is run with torch and transformers blocked (the venv itself was checked by hand: BENCHMARKS.md).
    "pip install --no-deps multitask-st": (
        "elsewhere",
        "test_onnx_export.py::test_runtime_imports_neither_torch_nor_transformers",
    ),
    'pip install "onnxruntime>=1.20" "tokenizers>=0.20" "numpy>=1.24" "huggingface_hub>=0.30"': (
        "elsewhere",
        "test_onnx_export.py::test_runtime_imports_neither_torch_nor_transformers",
    ),
    '.venv/bin/pytest -m "not slow"': ("elsewhere", "this suite"),
    "python app.py": ("serve", ["--no-corpus"]),
    "python export.py outputs/multitask-st --format sentence-transformers --output exported/": ("run", []),
    "python train.py": (
        "elsewhere",
        "the `readme_folder` fixture runs it (reduced): the reader's outputs/multitask-st",
    ),
    "python train.py config.yaml": ("train", None),
    "python train.py --tasks topic=ag_news sentiment=stanfordnlp/sst2 --text_columns sentiment=sentence "
    "--max_train_samples topic=all sentiment=all --max_seq_length 256": (
        "fails",
        "Couldn't reach 'ag_news' on the Hub",
    ),
    "python train.py --tasks topic=my_topics.csv sentiment=reviews.parquet --task_label_names sentiment=neg,pos": (
        "train",
        None,
    ),
    "python train.py configs/kinds.yaml": (
        "elsewhere",
        "tests/test_pair_kinds.py::test_train_script_trains_every_kind_and_records_their_metrics (the kinds through "
        "train.py on a tiny backbone); the file's own run: BENCHMARKS.md, 'Kinds of task'",
    ),
    "python train.py --tasks similar=stsb --task_kinds similar=pair_regression --text_columns similar=sentence1 "
    "--text_pair_columns similar=sentence2 --label_columns similar=score": (
        "elsewhere",
        "tests/test_pair_kinds.py::test_train_script_trains_every_kind_and_records_their_metrics (pair tasks through "
        "train.py on local files)",
    ),
    "python train.py --tasks topic=bbc_news sentiment=rotten_tomatoes tags=20newsgroups_tags spread=election_tweets "
    "--task_kinds tags=multi_label spread=regression --pos_weight tags=balanced --max_train_samples tags=2000 "
    "spread=2000": (
        "elsewhere",
        "tests/test_task_kinds.py::test_train_script_with_every_kind (the same kinds and flags on small CSV files)",
    ),
    "accelerate launch train.py ...": (
        "elsewhere",
        "tests/test_trainer.py::test_two_process_data_parallel_run_on_cpu (two processes under torchrun)",
    ),
    "python train.py --output_dir outputs/model": (
        "elsewhere",
        "`python train.py` with another --output_dir: the fixture's run, copied to outputs/model",
    ),
    "python push_to_hub.py outputs/model --dry-run --stage-dir staged/": ("run", []),
    "python push_to_hub.py outputs/model --repo-id org/multitask-st [--private] [--revision v1] [--create-pr]": (
        "fails",
        OFFLINE_PUSH,
    ),
    "python push_to_hub.py outputs/model --repo-id org/multitask-st --space org/multitask-st-demo": (
        "fails",
        OFFLINE_PUSH,
    ),
    "python push_to_hub.py outputs/model --dry-run --repo-id org/multitask-st --space org/demo --space-stage-dir space/": (
        "run",
        [],
    ),
    # --quantize int8 dropped: its gate scores the whole BBC, Rotten Tomatoes and STS-B test splits with MiniLM twice
    # (minutes); every branch of that gate is tested on a tiny model in test_onnx_export.py.
    "python export.py outputs/multitask-st --format onnx --quantize int8 --output outputs/multitask-st": (
        "elsewhere",
        "the `readme_folder` fixture runs it, less --quantize int8",
    ),
    "python push_to_hub.py outputs/multitask-st --repo-id org/multitask-st": ("fails", OFFLINE_PUSH),
    # Every precision's gate on MiniLM takes minutes; each runs on a tiny model in test_precision.py.
    "python export.py outputs/multitask-st --format onnx --quantize int8 int8_static bf16 --output outputs/multitask-st": (
        "elsewhere",
        "test_precision.py::test_openvino_bf16_evidence_goes_to_the_export_report_and_the_card, "
        "test_static_int8_for_openvino_is_exported_gated_and_runs_behind_the_same_api; int8 in test_onnx_export.py",
    ),
    # bulk inference: each form run on a tiny model in test_bulk.py
    "multitask-st embed outputs/multitask-st corpus.txt --output embedded/": (
        "elsewhere",
        "test_bulk.py::test_text_files_embed_one_line_per_row_and_outputs_pick_columns",
    ),
    'multitask-st embed outputs/multitask-st "data/*.parquet" --text_column body --keep_columns id --streaming '
    "--output embedded/": ("elsewhere", "test_bulk.py::test_streaming_and_each_corpus_format_give_the_same_shards"),
    "multitask-st embed outputs/multitask-st corpus.csv --outputs embedding sentiment --output embedded/": (
        "elsewhere",
        "test_bulk.py::test_text_files_embed_one_line_per_row_and_outputs_pick_columns",
    ),
    "torchrun --nproc_per_node 2 -m multitask_st embed outputs/multitask-st corpus.txt --output embedded/": (
        "elsewhere",
        "test_bulk.py::test_two_processes_write_their_own_shards_and_the_same_files",
    ),
    "multitask-st embed outputs/multitask-st corpus.txt --runtime onnx --ray --ray_actors 2 --output embedded/": (
        "elsewhere",
        "test_bulk.py::test_ray_data_actor_pool_gives_the_same_shards_and_numbers (torch), "
        "test_onnx_runtime_writes_the_same_layout_with_its_numbers (onnx)",
    ),
    # The gate scores thousands of built-in texts with MiniLM (minutes); the command runs on a tiny model there.
    "multitask-st gate outputs/multitask-st --dtype bfloat16": (
        "elsewhere",
        "test_precision.py::test_the_gate_command_prints_the_evidence_and_the_verdict",
    ),
    "python train.py --streaming --tasks topic=topics.parquet sentiment=reviews.csv --task_label_names "
    "topic=world,sports,business sentiment=neg,pos --max_steps 20000 --stream_task_sizes "
    '\'{"topic": 50000000, "sentiment": 2000000}\'': (
        "elsewhere",
        "tests/test_streaming.py::test_a_streaming_run_killed_after_a_checkpoint_resumes_to_the_same_weights "
        "(train.py --streaming on CSV files); bench/streaming.py (1M rows)",
    ),
    'torchrun --nproc_per_node 2 train.py --streaming --tasks topic="topics/*.parquet" sentiment=reviews.csv '
    "--task_label_names topic=world,sports,business sentiment=neg,pos --max_steps 20000 --sampling_strategy "
    "round_robin": (
        "elsewhere",
        "tests/test_streaming.py::test_two_processes_share_the_streams_out_without_overlap (a glob of files and a "
        "single file, two processes under torchrun)",
    ),
    "python train.py --streaming --tasks tags=tags.jsonl price=listings.csv nli=pairs.parquet --task_kinds "
    "tags=multi_label price=regression nli=pair_classification --task_label_names tags=a,b,c nli=no,yes "
    "--label_columns price=size,price --text_pair_columns nli=hypothesis --pos_weight tags=balanced "
    "--stream_statistics_rows 100000 --max_steps 20000 --sampling_strategy round_robin": (
        "elsewhere",
        "tests/test_streaming_kinds.py::test_train_command_streams_every_kind (train.py --streaming with multi-label, "
        "regression and pair tasks, balanced pos_weight from the first rows)",
    ),
    "python train.py --streaming ... --resume_from_checkpoint outputs/multitask-st/checkpoint-4000": (
        "elsewhere",
        "tests/test_streaming.py::test_a_streaming_run_killed_after_a_checkpoint_resumes_to_the_same_weights",
    ),
    "python -m multitask_st train --init_model outputs/multitask-st --tasks newsgroup=20newsgroups "
    "--output_dir outputs/v2": (
        "elsewhere",
        "tests/test_add_task.py: the --init_model path (held heads, frozen heads) on a tiny model and its own data",
    ),
    "python -m multitask_st train --init_model outputs/multitask-st --tasks newsgroup=20newsgroups --output_dir "
    "outputs/v2 --max_train_samples newsgroup=1000 --freeze backbone.embeddings backbone.layer.0 backbone.layer.1 "
    "backbone.layer.2 backbone.layer.3 --frozen_parts_eval_mode --cache_frozen_layers --num_train_epochs 3 "
    "--learning_rate 1e-5 --head_lr_multiplier 100 --embedding_distillation_weight 100": (
        "elsewhere",
        "tests/test_add_task.py (the --init_model path), tests/test_trainer.py (--freeze, --frozen_parts_eval_mode), "
        "tests/test_frozen_layers.py (--cache_frozen_layers); the real run: bench/add_task.py, BENCHMARKS.md",
    ),
}
INT8_REDUCTION = ("--quantize int8 ", "")
# `python X.py ARGS` in a checkout is `multitask_st.cli.<module>.main(ARGS)` (the scripts are shims).
SCRIPTS = {"train.py": "train", "export.py": "export", "push_to_hub.py": "push", "app.py": "app"}


def readme_blocks() -> list[tuple[str, str, bool]]:
    """`(language, code, nested)` for each fenced block; `nested`: inside a list item (it continues the block before)."""
    text = README.read_text(encoding="utf-8")
    return [(m.group(2), textwrap.dedent(m.group(3)), bool(m.group(1))) for m in FENCE.finditer(text)]


def readme_commands() -> list[str]:
    """The README's shell commands: continuation lines joined, comments and extra spaces removed."""
    commands = []
    for language, code, _ in readme_blocks():
        if language != "bash":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            command = " ".join(line.split("#", 1)[0].split()) if not line.lstrip().startswith("#") else ""
            if command:
                commands.append(command)
    return commands


def python_programs() -> list[str]:
    """The README's Python blocks, a block nested in a list item appended to the one before (it uses its names)."""
    programs = []
    for language, code, nested in readme_blocks():
        if language == "python":
            if nested and programs:
                programs[-1] += "\n" + code
            else:
                programs.append(code)
    return programs


def test_every_readme_command_is_declared_here():
    assert set(readme_commands()) == set(COMMANDS), (
        "README commands changed: declare how each one runs in COMMANDS "
        f"(new: {sorted(set(readme_commands()) - set(COMMANDS))}; gone: {sorted(set(COMMANDS) - set(readme_commands()))})"
    )
    assert [language for language, *_ in readme_blocks()].count("yaml") == 1  # the config.yaml the test runs


def _write_data_files(folder: Path):
    """`my_topics.csv` and `reviews.parquet`, in the columns the README says a data file has."""
    import pandas as pd

    topics = ["world", "sports", "business"]
    cues = {"world": "The election vote", "sports": "The team won the match", "business": "The stock market rose"}
    rows = [(f"{cues[topics[i % 3]]} on day {i}.", topics[i % 3]) for i in range(60)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "my_topics.csv", index=False)
    reviews = [
        (f"{'A great film' if i % 2 else 'A dull film'}, take {i}.", "pos" if i % 2 else "neg") for i in range(60)
    ]
    pd.DataFrame(reviews, columns=["text", "label"]).to_parquet(folder / "reviews.parquet")


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory, minilm) -> Path:
    """A folder like the README reader's after `python train.py` (reduced sizes) and its ONNX export command:
    `outputs/multitask-st` and a copy as `outputs/model`, the data files, `corpus.txt`."""
    from multitask_st.cli import export, train

    folder = tmp_path_factory.mktemp("readme")
    _write_data_files(folder)
    onnx_command = "python export.py outputs/multitask-st --format onnx --quantize int8 --output outputs/multitask-st"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        train.main(REDUCED)  # `python train.py`, reduced
        assert export.main(onnx_command.replace(*INT8_REDUCTION).split()[2:]) == 0
    shutil.copytree(folder / "outputs/multitask-st", folder / "outputs/model")
    (folder / "corpus.txt").write_text("A first line to embed.\nA second one.\nAnd a third.\n", encoding="utf-8")
    return folder


def _substitute(text: str, minilm: Path) -> str:
    for name, local in {**SUBSTITUTIONS, MINILM_HUB_ID: str(minilm)}.items():
        text = text.replace(name, local)
    return text


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_programs())))
def test_readme_python_block_runs(readme_folder, minilm, index):
    code = _substitute(python_programs()[index], minilm)
    # a reader without the package, unless the block imports it
    result = run_python(code, readme_folder, block=() if "multitask_st" in code else ("multitask_st",), timeout=600)
    assert result.returncode == 0, f"README block failed:\n{code}\n{result.stderr[-3000:]}"


def _command_cases() -> list[str]:
    return [command for command in COMMANDS if COMMANDS[command][0] != "elsewhere"]


@pytest.mark.slow
@pytest.mark.parametrize("command", _command_cases())
def test_readme_command_runs(readme_folder, tmp_path, monkeypatch, capsys, command):
    """Each command's `main(argv)` in this process (the scripts are thin: `python X.py ARGS` is `X.main(ARGS)`), run in
    the reader's folder: an interpreter start per command would cost the suite minutes."""
    how, detail = COMMANDS[command]
    arguments = re.sub(r" ?\[[^]]*\]", "", command.replace(*INT8_REDUCTION)).split()  # optional [flags] left out
    assert arguments[0] == "python"
    main = importlib.import_module(f"multitask_st.cli.{SCRIPTS[arguments[1]]}").main
    args = arguments[2:]
    if how == "train" or (how == "fails" and arguments[1] == "train.py"):
        monkeypatch.chdir(tmp_path)  # a fresh folder: train.py writes outputs/multitask-st there
        _write_data_files(tmp_path)
        if args == ["config.yaml"]:
            config = yaml.safe_load(next(code for language, code, _ in readme_blocks() if language == "yaml"))
            config.update(_reduced_config())
            (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        elif how == "train":
            args = [*args, *REDUCED]
        output = Path(args[args.index("--output_dir") + 1] if "--output_dir" in args else "outputs/multitask-st")
        if args == ["config.yaml"]:
            output = Path(yaml.safe_load((tmp_path / "config.yaml").read_text())["output_dir"])
        if how == "fails":
            with pytest.raises(Exception) as error:  # noqa: B017 (any error, as long as it names the cause below)
                main(args)
            assert detail in str(error.value) or detail in str(error.value.__cause__), error.value
            return
        main(args)
        assert (output / "model.safetensors").is_file() and (output / "training_summary.json").is_file()
        return
    reader = tmp_path / "reader"
    shutil.copytree(readme_folder, reader)
    monkeypatch.chdir(reader)
    if how == "serve":  # serves until interrupted: record what reaches Gradio's launch instead
        import gradio

        launched = {}
        monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
        port = free_port()  # app.py checks its port is free first: 7860 may be in use on this machine
        assert main([*args, *detail, "--port", str(port)]) == 0
        assert (launched["server_name"], launched["server_port"], launched["share"]) == ("127.0.0.1", port, False)
        return
    if how == "fails":
        try:
            code = main(args)
        except Exception as error:  # train.py raises; the other scripts print and return 1
            assert detail in str(error) or detail in str(error.__cause__), error
            return
        assert code == 1 and detail in capsys.readouterr().err
        return
    assert main([*args, *detail]) in (0, None), capsys.readouterr().err


def _yaml_value(value: str) -> int | bool | str:
    """A command-line value as a reader writes it in YAML: `16` a number, `false` a boolean, `no` the string."""
    return int(value) if value.isdigit() else {"true": True, "false": False}.get(value, value)


def _reduced_config() -> dict:
    """`REDUCED` as config-file entries, typed as a reader writes them in YAML (`16`, `false`: not strings)."""
    config: dict[str, list[str]] = {}
    for argument in REDUCED:
        if argument.startswith("--"):
            values = config.setdefault(argument.removeprefix("--"), [])
        else:
            values.append(argument)
    return {name: values if name == "max_train_samples" else _yaml_value(values[0]) for name, values in config.items()}


def test_readme_states_what_the_code_does():
    """Statements the README makes that a block cannot show: defaults and names checked against the code."""
    from multitask_st.cli import train_arguments

    text = README.read_text(encoding="utf-8")
    assert "| `--train_sampling_strategy random` | group_by_length |" in text
    assert train_arguments.DEFAULT_TRAINING_ARGS.get("train_sampling_strategy", "group_by_length") == "group_by_length"
    assert f"saves the best model to `{train_arguments.DEFAULT_TRAINING_ARGS['output_dir']}/`" in text
    assert 'model_qint8_avx512_vnni.onnx", threads' not in text  # the int8 file name depends on the CPU
