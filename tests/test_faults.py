"""The fault table: what a user sees when an input, a file or a run goes wrong. Nothing is lost or silently wrong."""

import errno
import json
import math
import os
import re
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from conftest import copy_without, make_trainer, tiny_config, train_arguments
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer, TrainerCallback

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel
from multitask_st.cli import push as push_cli
from multitask_st.cli import train
from multitask_st.data.corpora import BUILTIN_DATASETS
from multitask_st.data.task_datasets import load_task_dataset
from multitask_st.inference_multitask_st import tokenizer_fingerprint
from multitask_st.sharing.staging import stage_model_dir
from multitask_st.training import output_dir as output_dir_module
from multitask_st.training.training_args import MultiTaskTrainingArguments


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------- train.py options


@pytest.mark.parametrize("option", ["tasks", "text_columns", "label_columns", "max_train_samples"])
def test_a_task_named_twice_in_an_option_is_an_error(tmp_path, tiny_backbone_dir, option):
    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    value = {"tasks": "topic=b.csv", "max_train_samples": "topic=5"}.get(option, "topic=x")
    first = {"tasks": None, "max_train_samples": "topic=4"}.get(option, "topic=y")
    at = arguments.index("--tasks") + 1
    if option == "tasks":
        arguments.insert(at + 2, value)  # --tasks topic=... sentiment=... topic=b.csv
        expected = "`--tasks` names task 'topic' twice"
    else:
        arguments += [f"--{option}", first, value]
        expected = f"`--{option}` names task 'topic' twice ({first} and {value})"
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        train.main(arguments)
    assert not (tmp_path / "out").exists()


def test_a_label_named_twice_in_task_label_names_is_an_error(tmp_path, tiny_backbone_dir):
    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    arguments[arguments.index("sentiment=neg,pos")] = "sentiment=neg,pos,neg"
    with pytest.raises(ValueError, match=r"`--task_label_names sentiment=neg,pos,neg` repeats \['neg'\]"):
        train.main(arguments)


# ---------------------------------------------------------------------------------------------------- the output folder


def test_a_non_empty_output_folder_is_refused_and_left_untouched(tmp_path, tiny_backbone_dir):
    out = tmp_path / "out"
    (out / "checkpoint-5").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"the finished model of another run")
    (out / "checkpoint-5" / "trainer_state.json").write_text("{}")
    before = _listing(out)
    with pytest.raises(
        FileExistsError, match=f"The output folder '{out}' is not empty .checkpoint-5, model.safetensors"
    ):
        train.main(train_arguments(tmp_path, tiny_backbone_dir))
    assert _listing(out) == before


def test_overwrite_output_dir_removes_the_old_runs_checkpoints_and_trains(tmp_path, tiny_backbone_dir):
    out = tmp_path / "out"
    (out / "checkpoint-5").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    arguments[arguments.index("--save_strategy") + 1] = "steps"
    train.main([*arguments, "--save_steps", "2", "--overwrite_output_dir"])
    # the old run's checkpoint-5 is gone (it would sort after this run's and be taken for its latest)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # save_total_limit=1
    assert (out / "notes.txt").read_text() == "mine"  # only checkpoints are removed, nothing else of the user's
    model = AutoModel.from_pretrained(out)
    assert model.config.tokenizer_fingerprint == tokenizer_fingerprint(AutoTokenizer.from_pretrained(out))


def test_an_unwritable_output_folder_fails_before_training(tmp_path, tiny_backbone_dir, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    arguments[arguments.index("--output_dir") + 1] = str(blocker / "out")
    started = []
    monkeypatch.setattr(train, "load_tasks", lambda *a, **k: started.append(1))
    with pytest.raises(PermissionError, match=f"Cannot write to the output folder '{blocker / 'out'}'"):
        train.main(arguments)
    assert not started  # before loading any data
    arguments[arguments.index("--output_dir") + 1] = str(blocker)
    with pytest.raises(NotADirectoryError, match="is a file"):
        train.main(arguments)


def test_a_read_only_output_folder_fails_before_training(tmp_path, tiny_backbone_dir, monkeypatch):
    # Read-only simulated at the system-call level (root, as in CI, writes through permission bits): creating or
    # opening anything for writing inside `out` fails with EACCES, whatever file the check tries.
    out = tmp_path / "out"
    out.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        return Path(os.fsdecode(path)).resolve().is_relative_to(out.resolve())

    def read_only_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def read_only_mkdir(path, *args, **kwargs):
        if inside(path) and Path(path).resolve() != out.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    started = []
    monkeypatch.setattr(train, "load_tasks", lambda *a, **k: started.append(1))
    with pytest.raises(PermissionError, match=f"Cannot write to the output folder '{out}' \\(Permission denied\\)"):
        train.main(train_arguments(tmp_path, tiny_backbone_dir))
    assert not started and list(out.iterdir()) == []


def test_too_little_disk_space_fails_before_step_one(tmp_path, tiny_backbone_dir, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(output_dir_module.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(OSError, match="Not enough free disk space in .*: 0 MiB free, one checkpoint needs about"):
        train.main(train_arguments(tmp_path, tiny_backbone_dir))
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("weight", [math.nan, math.inf, -1.0])
def test_non_finite_task_loss_weights_are_refused(weight, tmp_path):
    with pytest.raises(
        ValueError, match=rf"`task_loss_weights\['topic'\]` must be a finite non-negative number, got {weight}"
    ):
        tiny_config(task_loss_weights={"topic": weight})
    text = json.dumps({"topic": weight})  # NaN / Infinity: what json.dumps writes and json.loads reads
    with pytest.raises(ValueError, match=r"`task_loss_weights\['topic'\]` must be a finite non-negative number"):
        MultiTaskTrainingArguments(output_dir=str(tmp_path), task_loss_weights=text, report_to=[])


class PoisonHead(TrainerCallback):
    """After step `at`, sets the sentiment head's output bias to NaN: from the next step on, its loss is NaN."""

    def __init__(self, model, at: int):
        self.model, self.at = model, at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            with torch.no_grad():
                self.model.heads["sentiment"][-1].bias.fill_(math.nan)


def test_training_stops_at_the_first_non_finite_loss_naming_step_and_task(
    tmp_path, tiny_tokenizer, tiny_task_datasets
):
    torch.manual_seed(0)
    model = MultiTaskSTModel(tiny_config())
    trainer = make_trainer(
        tmp_path, model, tiny_task_datasets, tiny_tokenizer, callbacks=[PoisonHead(model, at=2)], max_steps=6,
        save_strategy="steps", save_steps=1, logging_steps=5,
    )  # fmt: skip
    with pytest.raises(
        FloatingPointError, match=r"The training loss is nan at step 3 .*: the loss of 'sentiment' is nan"
    ):
        trainer.train()
    assert trainer.state.global_step == 2
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    poisoned = "heads.sentiment.3.bias"
    assert all(
        torch.isfinite(p).all() for name, p in model.named_parameters() if name != poisoned
    )  # step 3 not applied


def test_loading_non_finite_weights_warns_naming_them(tmp_path, caplog):
    model = MultiTaskSTModel(tiny_config())
    with torch.no_grad():
        model.projection[0].weight[0, 0] = math.inf
    model.save_pretrained(tmp_path)
    with caplog.at_level("WARNING"):
        MultiTaskSTModel.from_pretrained(tmp_path)
    assert f"The weights loaded from '{tmp_path}' hold NaN or inf values in projection.0.weight" in caplog.text


def test_a_truncated_weight_file_names_the_folder(tmp_path):
    MultiTaskSTModel(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    for load in (MultiTaskSTModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(OSError, match=f"Cannot read the weights in '{tmp_path}' .*truncated or corrupt"):
            load(tmp_path)


def test_a_task_renamed_in_config_json_names_the_mismatch(tmp_path):
    MultiTaskSTModel(tiny_config(task_loss_weights={"topic": 2.0})).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tasks"] = [["subject" if task == "topic" else task, labels] for task, labels in config["tasks"]]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"`task_loss_weights` names task\(s\) \['topic'\] that `tasks` does not have \(\['subject', 'sentiment'\]\): a task renamed",
    ):
        MultiTaskSTModel.from_pretrained(tmp_path)
    config["task_loss_weights"] = {"subject": 2.0, "sentiment": 1.0}  # renamed there too: the heads still differ
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"names task\(s\) \['subject'\] but its weights hold no head for them; they hold heads for \['topic'\]",
    ):
        MultiTaskSTModel.from_pretrained(tmp_path)


def test_loading_info_is_still_returned_when_asked(tmp_path):
    MultiTaskSTModel(tiny_config()).save_pretrained(tmp_path)
    model, info = MultiTaskSTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(model, MultiTaskSTModel)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_max_seq_length_above_the_position_limit_is_refused():
    with pytest.raises(
        ValueError, match=r"`max_seq_length` must be at most the backbone's `max_position_embeddings` \(64\), got 65"
    ):
        tiny_config(max_seq_length=65)
    with pytest.raises(ValueError, match="`max_seq_length` must be a positive integer, got 0"):
        tiny_config(max_seq_length=0)
    assert MultiTaskSTConfig(backbone_config=tiny_config().backbone_config, max_seq_length=64).max_seq_length == 64


# ---------------------------------------------------------------------------------------------------- data files


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows), encoding="utf-8")
    return path


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))


def test_bad_data_files_name_the_file_and_the_cause(tmp_path, isolated_cache):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nfine,pos\ncaf\u00e9 au lait,neg\n".encode("latin-1"))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    cases = {
        latin: rf"Data file '{latin}' is not valid utf-8: byte 0xe9 at line 3 .*re-save it as UTF-8.*encoding='cp1252'",
        empty: rf"Data file '{empty}' is empty \(0 bytes\)",
        header: rf"Data file '{header}' has a header line but no rows",
    }
    for path, message in cases.items():
        with pytest.raises(ValueError, match=message):
            load_task_dataset(str(path))
    loaded = load_task_dataset(str(latin), encoding="latin-1", validation_size=0, test_size=0)
    assert "caf\u00e9 au lait" in loaded["train"]["text"]


def test_literal_na_null_none_are_texts_and_an_empty_field_is_missing(tmp_path, isolated_cache):
    words = ["NA", "null", "None", "nan", "N/A", "NULL"]
    path = _csv(tmp_path / "words.csv", [(word, "pos" if i % 2 else "neg") for i, word in enumerate(words)])
    loaded = load_task_dataset(str(path), validation_size=0, test_size=0)
    assert list(loaded["train"]["text"]) == words
    _csv(path, [("fine", "pos"), ("", "neg")])
    with pytest.raises(ValueError, match=r"row 1: text of type NoneType None"):
        load_task_dataset(str(path), validation_size=0, test_size=0)


def test_bad_rows_are_named_by_their_row_in_the_source_file(tmp_path, isolated_cache):
    rows = [(f"text {i}", "pos" if i % 2 else "neg") for i in range(40)]
    rows[17] = ("\u200b", "pos")  # only a zero-width space
    path = _csv(tmp_path / "data.csv", rows)
    with pytest.raises(ValueError, match=r"split 'train', column 'text', row 17: empty text '\\u200b'"):
        load_task_dataset(str(path), validation_size=0.2, test_size=0.2, seed=3)  # splits shuffle the rows
    rows[17], rows[23] = ("fine", "neg"), ("fine", "maybe")
    _csv(path, rows)
    with pytest.raises(ValueError, match=r"row 23: label 'maybe' is not one of the task's labels"):
        load_task_dataset(str(path), label_names=["neg", "pos"], validation_size=0.2, test_size=0.2, seed=3)


def test_a_typo_in_a_built_in_name_lists_the_built_ins_before_the_hub(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the Hub"))
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"'rotten_tomatos' is not a built-in dataset (did you mean 'rotten_tomatoes'?); the built-ins are "
            f"{sorted(BUILTIN_DATASETS)}. Anything else is read as a local file or folder, or a Hub dataset id."
        ),
    ):
        load_task_dataset("rotten_tomatos")


# ---------------------------------------------------------------------------------------------------- staging


def test_staging_resolves_a_relative_symlink_and_the_staged_folder_loads(trained, tmp_path, capsys):
    model_dir = copy_without(trained.model_dir, tmp_path / "linked", "model.safetensors")
    (tmp_path / "store").mkdir()
    shutil.copy2(trained.model_dir / "model.safetensors", tmp_path / "store" / "weights.safetensors")
    (model_dir / "model.safetensors").symlink_to(Path("..") / "store" / "weights.safetensors")
    assert push_cli.main([str(model_dir), "--dry-run", "--stage-dir", str(tmp_path / "stage")]) == 0
    staged = tmp_path / "stage" / "model.safetensors"
    assert not staged.is_symlink() and staged.read_bytes() == (trained.model_dir / "model.safetensors").read_bytes()
    assert "Dry run: staged" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "store")  # the staged folder does not depend on the link's target
    MultiTaskSTModel.from_pretrained(tmp_path / "stage")


def test_staging_refuses_truncated_or_non_finite_weights_and_stages_nothing(trained, tmp_path):
    truncated = copy_without(trained.model_dir, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"Cannot read the weight file '{weights}': .*truncated or corrupt"):
        stage_model_dir(truncated, tmp_path / "stage")
    assert not (tmp_path / "stage").exists()

    diverged = copy_without(trained.model_dir, tmp_path / "diverged")
    state = load_file(diverged / "model.safetensors")
    state["heads.topic.3.bias"][1] = math.nan
    save_file(state, diverged / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"Refusing to stage .*weights heads.topic.3.bias hold NaN or inf"):
        stage_model_dir(diverged, tmp_path / "stage")
    assert not (tmp_path / "stage").exists()


def test_a_staged_folder_that_does_not_load_is_reported_not_claimed(trained, tmp_path):
    """Weights of another shape than config.json says: every file is there, but the folder is not a model."""
    mismatched = copy_without(trained.model_dir, tmp_path / "mismatched", "model.safetensors")
    MultiTaskSTModel(tiny_config(tasks={"topic": ["a", "b"], "sentiment": ["n", "p"]})).save_pretrained(
        tmp_path / "other"
    )
    shutil.copy2(tmp_path / "other" / "model.safetensors", mismatched / "model.safetensors")
    with pytest.raises(ValueError, match=f"The staged folder '{tmp_path / 'stage'}' does not load: "):
        stage_model_dir(mismatched, tmp_path / "stage")
