"""Training plots: the PNGs train.py and MultiTaskTrainer write, staged with the model and shown by its card."""

import logging
import re
import sys

import numpy as np
import pytest
from conftest import make_trainer, tiny_config

from multitask_st.sharing.model_card import render_model_card
from multitask_st.sharing.staging import stage_model_dir
from multitask_st.training import plots


# Tests on the tiny model that train.py trains once per session (~20 s on a quiet machine).
TRAINED = pytest.mark.slow
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 10_000  # a titled, labelled chart; an empty canvas is ~2 KB

LOG_HISTORY = [
    *(
        {"step": step, "loss": 2.0 / step, "topic_loss": 1.2 / step, "sentiment_loss": 0.7 / step,
         "embedding_distillation_loss": 0.01 / step, "learning_rate": 1e-3}
        for step in range(5, 45, 5)
    ),
    *(
        {"step": step, "eval_loss": 1.0 / step, "eval_topic_accuracy": 0.5 + step / 100, "eval_topic_f1": 0.4 + step / 100,
         "eval_sentiment_accuracy": 0.6 + step / 200, "eval_sentiment_f1": 0.55 + step / 200,
         "eval_mean_accuracy": 0.6, "eval_topic_loss": 1.5 / step, "eval_sentiment_loss": 0.9 / step,
         "eval_stsb_spearman": 0.8 - step / 1000}
        for step in (10, 20, 30, 40)
    ),
    {"step": 40, "train_loss": 0.3, "train_runtime": 12.0},
]  # fmt: skip


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > MIN_PNG_BYTES, (path, len(data))


def test_training_plots_from_a_log_history(tmp_path):
    paths = plots.save_training_plots(LOG_HISTORY, ["topic", "sentiment"], tmp_path)
    assert [path.name for path in paths] == ["training_loss.png", "evaluation_metrics.png"]
    for path in paths:
        _assert_png(path)


def test_nothing_logged_writes_nothing(tmp_path):
    assert plots.save_training_plots([{"step": 3, "train_runtime": 1.0}], ["topic"], tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix_counts_rows_as_true_labels():
    counts = plots.confusion_matrix(predictions=[0, 1, 1, 2, 2, 2], references=[0, 0, 1, 2, 2, 1], num_labels=3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]


def test_confusion_matrices_skip_unlabelled_rows(tmp_path):
    logits = {
        "topic": np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0]]),
        "sentiment": np.array([[0, 1.0], [1.0, 0], [0, 1.0], [1.0, 0]]),
    }
    label_ids = np.array([[0, -100], [1, -100], [2, -100], [-100, 0]])  # sentiment: one labelled row
    config = tiny_config(tasks={"topic": ["world", "sports", "business"], "sentiment": ["negative", "positive"]})
    paths = plots.save_test_plots(logits, label_ids, config, tmp_path)
    assert [path.name for path in paths] == ["confusion_matrix_topic.png", "confusion_matrix_sentiment.png"]
    for path in paths:
        _assert_png(path)


def test_multi_label_and_regression_heads_get_their_own_plots(tmp_path):
    config = tiny_config(
        tasks={"topic": ["world", "sports"], "tags": ["a", "b", "c"], "score": ["x"]},
        task_kinds={"tags": "multi_label", "score": "regression"},
    )
    nan = float("nan")
    logits = {
        "topic": np.zeros((4, 2)),
        "tags": np.array([[2.0, -2, 0.1]] * 4),
        "score": np.array([[1.0], [2], [3], [4]]),
    }
    # columns: topic | tags a b c | score; rows 0-1 tagged, rows 2-3 scored, no row labelled for topic
    label_ids = np.array(
        [[nan, 1, 0, 1, nan], [nan, 0, 0, 1, nan], [nan, nan, nan, nan, 1.5], [nan, nan, nan, nan, 3.0]]
    )
    paths = plots.save_test_plots(logits, label_ids, config, tmp_path)
    assert [path.name for path in paths] == ["label_f1_tags.png", "predicted_vs_true_score.png"]
    for path in paths:
        _assert_png(path)


def test_without_matplotlib_a_one_line_note_and_no_failure(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setattr(plots, "_warned_missing", False)
    with caplog.at_level(logging.WARNING, logger="multitask_st"):
        assert plots.save_training_plots(LOG_HISTORY, ["topic", "sentiment"], tmp_path) == []
        assert (
            plots.save_test_plots(
                {"topic": np.eye(3)}, np.array([[0], [1], [2]]), tiny_config(tasks={"topic": list("abc")}), tmp_path
            )
            == []
        )
    notes = [record.message for record in caplog.records if "matplotlib is not installed" in record.message]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert list(tmp_path.iterdir()) == []


def test_multitask_trainer_writes_the_plots_unless_told_not_to(
    tmp_path, tiny_model, tiny_task_datasets, tiny_tokenizer
):
    trainer = make_trainer(
        tmp_path / "on", tiny_model, tiny_task_datasets, tiny_tokenizer, eval_strategy="steps", eval_steps=2
    )
    trainer.train()
    written = sorted(path.name for path in (tmp_path / "on" / "out").glob("*.png"))
    assert written == ["evaluation_metrics.png", "training_loss.png"]
    trainer = make_trainer(tmp_path / "off", tiny_model, tiny_task_datasets, tiny_tokenizer, save_plots=False)
    trainer.train()
    assert not list((tmp_path / "off" / "out").glob("*.png"))


@TRAINED
def test_train_script_plots_are_staged_and_shown_by_the_card(trained_tiny_model_dir, tmp_path):
    expected = {
        "training_loss.png", "evaluation_metrics.png", "confusion_matrix_topic.png", "confusion_matrix_sentiment.png",
        "reliability_diagram_topic.png", "reliability_diagram_sentiment.png",  # calibration on, as by default
    }  # fmt: skip
    assert {path.name for path in trained_tiny_model_dir.glob("*.png")} == expected
    for name in expected:
        _assert_png(trained_tiny_model_dir / name)
    staged = stage_model_dir(trained_tiny_model_dir, tmp_path / "staged")
    assert expected <= set(staged)
    card = (tmp_path / "staged" / "README.md").read_text()
    linked = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card))
    assert linked == expected
    assert all((tmp_path / "staged" / name).is_file() for name in linked)  # only files that exist in the staged folder
    evaluation, training = card.split("## Evaluation", 1)[1].split("## Training Details", 1)
    assert "confusion_matrix_topic.png" in evaluation and "evaluation_metrics.png" in evaluation
    assert "reliability_diagram_sentiment.png" in evaluation.split("### Calibration", 1)[1]
    assert "training_loss.png" in training


@TRAINED
def test_card_links_no_plot_the_folder_lacks(trained_tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(trained_tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.png"))
    card = render_model_card(folder)
    assert ".png" not in card
    assert "Confusion matrices" not in card and "Training Losses" not in card


@TRAINED
@pytest.mark.parametrize("name", ["training_loss.png", "confusion_matrix_topic.png"])
def test_a_plot_alone_is_linked_alone(trained_tiny_model_dir, tmp_path, name):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(trained_tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.png"))
    shutil.copy(trained_tiny_model_dir / name, folder / name)
    assert set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", render_model_card(folder))) == {name}
