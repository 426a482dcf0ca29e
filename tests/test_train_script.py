"""train.py end to end on a tiny backbone and local CSV files (the real default run is `make demo`)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import train_arguments
from transformers import AutoModel

from multitask_st.cli import train
from multitask_st.cli import train_arguments as cli_arguments


def test_train_script_saves_a_loadable_model_and_its_summary(tmp_path, tiny_backbone_dir, capsys):
    train.main(train_arguments(tmp_path, tiny_backbone_dir))
    out = tmp_path / "out"
    model = AutoModel.from_pretrained(out)
    assert model.config.tasks == {"topic": ["business", "sports", "world"], "sentiment": ["neg", "pos"]}
    summary = json.loads((out / "training_summary.json").read_text())
    assert set(summary["metrics"]["tasks"]["topic"]["test"]) == {
        "accuracy",
        "f1",
    }  # test_topic_accuracy, test_topic_f1
    assert set(summary["metrics"]["tasks"]["sentiment"]["test"]) >= {"f1"}  # test_sentiment_f1
    assert "test" in summary["metrics"]["other"]["mean_accuracy"]  # test_mean_accuracy
    assert summary["training_args"]["max_steps"] == 3 and "max_steps" in summary["non_default_args"]
    assert "output_dir" not in summary["training_args"]  # the record ships with the model: no local paths
    assert summary["run"]["global_steps"] == 3
    assert summary["datasets"]["topic"]["num_train"] > 0 and summary["base_model"] is None  # a local folder
    printed = capsys.readouterr().out
    assert "Cosine similarity of the embeddings" in printed and "sentiment:" in printed


def test_yaml_config_file_is_read_like_the_command_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "backbone: my/backbone\ntasks: [topic=a.csv, intent=b.json]\npooling_mode: attention\n"
        "layer_decay: 0.8\nfreeze: [head:topic]\nnum_train_epochs: 5\noutput_dir: somewhere\n"
    )
    model_args, data_args, training_args = cli_arguments.parse_arguments([str(path)])
    assert model_args.backbone == "my/backbone" and model_args.pooling_mode == "attention"
    assert data_args.tasks == ["topic=a.csv", "intent=b.json"]
    assert (training_args.layer_decay, training_args.freeze, training_args.num_train_epochs) == (
        0.8,
        ["head:topic"],
        5,
    )
    assert training_args.output_dir == "somewhere"
    assert training_args.metric_for_best_model == "mean_accuracy"  # the script's defaults still apply


def test_demo_budget_applies_only_to_the_default_tasks():
    assert cli_arguments.data_budget(cli_arguments.DataArguments()) == ({"topic": 800, "sentiment": 4000}, 1000)
    assert cli_arguments.data_budget(
        cli_arguments.DataArguments(max_train_samples=["topic=all"], max_eval_samples=50)
    ) == (
        {"topic": None, "sentiment": 4000},
        50,
    )
    assert cli_arguments.data_budget(cli_arguments.DataArguments(tasks=["intent=x.csv"])) == ({}, None)
    with pytest.raises(ValueError, match="expected a positive integer or 'all'"):
        cli_arguments.data_budget(
            cli_arguments.DataArguments(tasks=["intent=x.csv"], max_train_samples=["intent=lots"])
        )
    with pytest.raises(ValueError, match="takes task=value pairs"):
        cli_arguments.data_budget(cli_arguments.DataArguments(max_train_samples=["800"]))


def test_json_config_file_is_read_like_the_command_line(tmp_path):
    path = tmp_path / "config.json"
    settings = {
        "tasks": ["topic=a.csv", "intent=b.json"], "projection": "mlp", "head_lr_multiplier": 5.0,
        "unfreeze_schedule": "progressive", "unfreeze_unit": "step", "unfreeze_every": 3, "num_train_epochs": 4,
        "text_columns": ["intent=utterance"], "output_dir": "elsewhere",
    }  # fmt: skip
    path.write_text(json.dumps(settings))
    model_args, data_args, training_args = cli_arguments.parse_arguments([str(path)])
    assert model_args.projection == "mlp" and data_args.text_columns == ["intent=utterance"]
    assert data_args.tasks == ["topic=a.csv", "intent=b.json"]
    assert (training_args.head_lr_multiplier, training_args.unfreeze_schedule, training_args.unfreeze_unit) == (
        5.0, "progressive", "step",
    )  # fmt: skip
    assert (training_args.unfreeze_every, training_args.num_train_epochs, training_args.output_dir) == (
        3,
        4,
        "elsewhere",
    )
    assert training_args.metric_for_best_model == "mean_accuracy"  # the script's defaults still apply


def test_text_and_label_columns_choose_the_columns_read(tmp_path):
    # `label` and `text` hold decoys: only the named columns may be read.
    rows = ["sentence,gold,text,label"] + [
        f"{'great film' if i % 2 else 'bad film'} {i},{'pos' if i % 2 else 'neg'},decoy {i},{'x' if i % 3 else 'y'}"
        for i in range(40)
    ]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    data_args = cli_arguments.DataArguments(
        tasks=[f"sentiment={tmp_path / 'reviews.csv'}"], text_columns=["sentiment=sentence"],
        label_columns=["sentiment=gold"], stsb_eval=False,
    )  # fmt: skip
    loaded = train.load_tasks(data_args, seed=0)["sentiment"]
    assert loaded["train"].features["label"].names == ["neg", "pos"]
    for split in loaded.values():
        for text, label in zip(split["text"], split["label"], strict=True):
            assert text.startswith("great film" if label == 1 else "bad film"), (text, label)
    assert sum(len(split) for split in loaded.values()) == 40


def _eval_history(output_dir: Path) -> list[dict]:
    checkpoint = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state, [entry for entry in state["log_history"] if "eval_mean_accuracy" in entry]


def test_best_model_is_kept_and_early_stopping_ends_the_run(tmp_path, tiny_backbone_dir):
    from safetensors.torch import load_file

    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    for flag, value in {
        "--max_steps": "40", "--eval_strategy": "steps", "--save_strategy": "steps", "--load_best_model_at_end": "true",
    }.items():  # fmt: skip
        arguments[arguments.index(flag) + 1] = value
    arguments += [
        "--learning_rate",
        "5e-3",
        "--eval_steps",
        "2",
        "--save_steps",
        "2",
        "--early_stopping_patience",
        "2",
    ]
    arguments += ["--save_total_limit", "30"]  # every checkpoint kept: the last one's state holds every evaluation
    train.main(arguments)
    out = tmp_path / "out"
    state, evaluations = _eval_history(out)

    # Best: the first evaluation with the highest mean accuracy (Trainer keeps the earlier one on a tie).
    scores = [entry["eval_mean_accuracy"] for entry in evaluations]
    best = evaluations[scores.index(max(scores))]
    assert state["best_global_step"] == best["step"]
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    # Early stopping: the run ends at the 2nd evaluation in a row without improvement, before max_steps.
    misses, stop = 0, None
    for previous_best, entry in zip([max(scores[: i + 1]) for i in range(len(scores))], evaluations[1:], strict=False):
        misses = misses + 1 if entry["eval_mean_accuracy"] <= previous_best else 0
        if misses == 2:
            stop = entry["step"]
            break
    assert stop is not None and stop < 40, scores
    assert state["global_step"] == stop

    # The saved model is the best checkpoint's weights, not the last step's.
    saved = load_file(out / "model.safetensors")
    kept = load_file(out / f"checkpoint-{best['step']}" / "model.safetensors")
    last = load_file(out / f"checkpoint-{stop}" / "model.safetensors")
    assert saved.keys() == kept.keys() and all(torch.equal(saved[key], kept[key]) for key in saved)
    assert not all(torch.equal(saved[key], last[key]) for key in saved)  # training went on after the best
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["run"]["global_steps"] == stop


@pytest.mark.parametrize("config", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_example_configs_name_built_in_data_and_known_kinds(config):
    # What `train.py configs/<file>` checks before loading anything; the full runs are in BENCHMARKS.md.
    from multitask_st.data.corpora import BUILTIN_DATASETS
    from multitask_st.task_fields_multitask_st import TASK_KINDS

    model_args, data_args, _ = cli_arguments.parse_arguments([str(config)])
    datasets_by_task = cli_arguments.check_task_options(data_args, model_args)
    assert set(datasets_by_task.values()) <= set(BUILTIN_DATASETS)  # offline: packaged data only
    assert set(cli_arguments.parse_task_pairs(data_args.task_kinds, "task_kinds").values()) <= set(TASK_KINDS)
