"""train.py end to end on a tiny backbone and local CSV files (the real default run is `make demo`)."""

import json
from pathlib import Path

import pytest
from conftest import WORDS, tiny_backbone_config
from transformers import AutoModel, BertModel

from multitask_st.cli import train


@pytest.fixture
def tiny_backbone_dir(tmp_path, tiny_tokenizer):
    path = tmp_path / "backbone"
    BertModel(tiny_backbone_config(), add_pooling_layer=False).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _write_csv(path: Path, labels: list[str], rows: int) -> Path:
    lines = ["text,label"] + [
        f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]},{labels[i % len(labels)]}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _arguments(tmp_path, backbone) -> list[str]:
    topics = _write_csv(tmp_path / "topics.csv", ["world", "sports", "business"], 60)
    reviews = _write_csv(tmp_path / "reviews.csv", ["neg", "pos"], 60)
    return [
        "--backbone", str(backbone), "--tasks", f"topic={topics}", f"sentiment={reviews}",
        "--task_label_names", "sentiment=neg,pos", "--max_seq_length", "16", "--max_steps", "3",
        "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--stsb_eval", "false", "--use_cpu", "--disable_tqdm", "true",
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip


def test_train_script_saves_a_loadable_model_and_its_summary(tmp_path, tiny_backbone_dir, capsys):
    train.main(_arguments(tmp_path, tiny_backbone_dir))
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
    model_args, data_args, training_args = train.parse_arguments([str(path)])
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
    assert train.data_budget(train.DataArguments()) == ({"topic": 800, "sentiment": 4000}, 1000)
    assert train.data_budget(train.DataArguments(max_train_samples=["topic=all"], max_eval_samples=50)) == (
        {"topic": None, "sentiment": 4000},
        50,
    )
    assert train.data_budget(train.DataArguments(tasks=["intent=x.csv"])) == ({}, None)
    with pytest.raises(ValueError, match="expected a positive integer or 'all'"):
        train.data_budget(train.DataArguments(tasks=["intent=x.csv"], max_train_samples=["intent=lots"]))
    with pytest.raises(ValueError, match="takes task=value pairs"):
        train.data_budget(train.DataArguments(max_train_samples=["800"]))
