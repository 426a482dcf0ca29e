"""Calibration: the fitted temperature, ECE and NLL, the config field, every door applying the same temperatures, and
the trainer / `multitask-st calibrate` writing them with their before/after numbers, plots and card section."""

import json

import numpy as np
import pytest
import torch
from conftest import TEXTS, make_model, tiny_config

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel
from multitask_st.training.calibration import (
    calibration_stats,
    expected_calibration_error,
    fit_temperature,
    labelled_logits,
    negative_log_likelihood,
    reliability_bins,
)


def overconfident_logits(true_temperature: float, rows: int = 20000, labels: int = 4, seed: int = 0):
    """Logits of a head `true_temperature` times too sure: labels are drawn from softmax(z), the head says z * T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(rows, labels))
    probabilities = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    drawn = (probabilities.cumsum(axis=1) > rng.random((rows, 1))).argmax(axis=1)
    return z * true_temperature, drawn


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fit_temperature_recovers_the_temperature_of_a_constructed_case(true_temperature):
    logits, labels = overconfident_logits(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    stats = calibration_stats(logits, labels, fitted)
    assert stats["nll_after"] < stats["nll_before"]
    assert stats["ece_after"] < 0.5 * stats["ece_before"]
    assert stats["ece_after"] < 0.01  # the labels were drawn from exactly these probabilities
    # The fitted temperature is the NLL's minimum: a step either way costs.
    for step in (0.97, 1.03):
        assert negative_log_likelihood(logits, labels, fitted * step) > stats["nll_after"]


def test_a_calibrated_head_keeps_its_temperature_near_one():
    logits, labels = overconfident_logits(1.0, seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)


def test_expected_calibration_error_by_hand():
    # Confidences 0.91 (right), 0.81 (wrong), 0.61 (right), 0.71 (right): four bins of one row each.
    probabilities = np.array([[0.91, 0.09], [0.19, 0.81], [0.61, 0.39], [0.29, 0.71]])
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx((0.09 + 0.81 + 0.39 + 0.29) / 4)
    # Two rows in one bin (0.91 and 0.92, one right, one wrong): |0.5 - 0.915| for half the rows.
    probabilities = np.array([[0.91, 0.09], [0.92, 0.08]])
    assert expected_calibration_error(probabilities, np.array([0, 1])) == pytest.approx(0.415)
    counts, accuracy, confidence = reliability_bins(np.array([1 / 15, 1.0]), np.array([True, False]))
    assert counts[0] == 1 and counts[-1] == 1 and counts.sum() == 2  # bins are (lo, hi]
    assert accuracy[0] == 1.0 and accuracy[-1] == 0.0 and confidence[-1] == 1.0


def test_negative_log_likelihood_by_hand():
    logits = np.array([[0.0, np.log(3.0)], [0.0, 0.0]])
    assert negative_log_likelihood(logits, np.array([1, 0])) == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    with pytest.raises(ValueError, match=r"Labels must be integers in 0\.\.1"):
        negative_log_likelihood(logits, np.array([2, 0]))


def test_calibration_never_changes_an_argmax():
    logits, labels = overconfident_logits(3.0, rows=500, labels=5, seed=2)
    temperature = fit_temperature(logits, labels)
    assert (np.argmax(logits / temperature, axis=1) == np.argmax(logits, axis=1)).all()
    stats = calibration_stats(logits, labels, temperature)
    assert stats["accuracy"] == pytest.approx((logits.argmax(axis=1) == labels).mean())


def test_labelled_logits_takes_each_heads_labelled_rows():
    logits = {"topic": np.arange(12.0).reshape(4, 3), "sentiment": np.zeros((4, 2))}
    label_ids = np.array([[2, -100], [np.nan, 1], [0, -100], [-100, np.nan]])  # -100 or NaN: no label
    pairs = labelled_logits(logits, label_ids, tiny_config())
    assert pairs["topic"][0].tolist() == [[0, 1, 2], [6, 7, 8]] and pairs["topic"][1].tolist() == [2, 0]
    assert pairs["sentiment"][1].tolist() == [1]


# ---------------------------------------------------------------------------------------------------- the config


def test_task_calibration_round_trips_and_old_configs_load(tmp_path):
    config = tiny_config(task_calibration={"sentiment": {"temperature": 2}})
    assert config.task_calibration == {"sentiment": {"temperature": 2.0}}
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task_calibration"] == {"sentiment": {"temperature": 2.0}}
    assert MultiTaskSTConfig.from_pretrained(tmp_path).task_calibration == config.task_calibration
    del saved["task_calibration"]  # a config saved before calibration existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert MultiTaskSTConfig.from_pretrained(tmp_path).task_calibration == {}


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ({"colour": {"temperature": 1.0}}, "`task_calibration` names task(s) ['colour'] that `tasks` does not have"),
        ({"topic": 1.5}, "`task_calibration['topic']` must be a mapping, got 1.5."),
        ({"topic": {"temp": 1.5}}, "`task_calibration['topic']['temp']` is not a calibration key; the keys are"),
        ({"topic": {"thresholds": [0.5] * 3}}, "applies to ['multi_label'] tasks; 'topic' is a classification task."),
        (
            {"topic": {"temperature": 0}},
            "`task_calibration['topic']['temperature']` must be a finite number > 0, got 0.",
        ),
        ({"topic": {"temperature": float("inf")}}, "must be a finite number > 0, got inf."),
        ({"topic": {"temperature": True}}, "must be a finite number > 0, got True."),
    ],
)
def test_bad_task_calibration_is_named(calibration, message):
    with pytest.raises(ValueError) as error:
        tiny_config(task_calibration=calibration)
    assert message in str(error.value)


# ---------------------------------------------------------------------------------------------------- the doors

TEMPERATURES = {"topic": 0.05, "sentiment": 4.0}  # far from 1 both ways, so a door that skips one shows


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def expected_probabilities(model, tokenizer, texts, calibrated=True):
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    temperatures = TEMPERATURES if calibrated else {task: 1.0 for task in TEMPERATURES}
    return {task: softmax(logits[task].numpy().astype(np.float64) / temperatures[task]) for task in TEMPERATURES}


def probabilities_of(rows, task, labels):
    return np.array([[row[task]["probabilities"][label] for label in labels] for row in rows])  # the pipeline ranks


def test_every_door_applies_the_same_temperatures(tmp_path, tiny_tokenizer):
    from doors import Doors

    from multitask_st.export.onnx import export_onnx

    model = make_model(task_calibration={task: {"temperature": t} for task, t in TEMPERATURES.items()})
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "onnx", check_texts=8)
    doors = Doors(tmp_path / "model", model, tiny_tokenizer, tmp_path / "onnx")
    for calibrated in (True, False):
        expected = expected_probabilities(model, tiny_tokenizer, TEXTS, calibrated)
        for door in ("model", "pipeline", "onnx"):
            rows = doors.predict(door, TEXTS, calibrated=calibrated)
            for task in TEMPERATURES:
                labels = model.config.tasks[task]
                np.testing.assert_allclose(
                    probabilities_of(rows, task, labels), expected[task], atol=1e-5, err_msg=door
                )
    # The raw softmax differs from the calibrated one (the test above could not pass with temperatures ignored) ...
    raw, calibrated = (expected_probabilities(model, tiny_tokenizer, TEXTS, flag) for flag in (False, True))
    assert np.abs(raw["topic"] - calibrated["topic"]).max() > 0.05
    # ... and the labels do not.
    for task in TEMPERATURES:
        assert (raw[task].argmax(axis=1) == calibrated[task].argmax(axis=1)).all()

    # The stock text-classification pipeline on one head sees the calibrated probabilities too.
    from transformers import pipeline

    stock = pipeline("text-classification", model=model.head_view("topic"), tokenizer=tiny_tokenizer, top_k=None)
    for text, ranked, row in zip(TEXTS, stock(TEXTS), calibrated["topic"], strict=True):
        scores = {item["label"]: item["score"] for item in ranked}
        np.testing.assert_allclose(
            [scores[label] for label in model.config.tasks["topic"]], row, atol=1e-5, err_msg=text
        )
    with pytest.raises(TypeError, match=r"`calibrated` must be True or False, got 'yes'\."):
        model.predict(TEXTS, tiny_tokenizer, calibrated="yes")


# ---------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory, tiny_tokenizer):
    from tiny_training import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("calibrated"), tiny_tokenizer)


def test_training_calibrates_and_records_before_and_after(tiny_trained):
    config = MultiTaskSTConfig.from_pretrained(tiny_trained)
    summary = json.loads((tiny_trained / "training_summary.json").read_text())
    assert set(config.task_calibration) == {"topic", "sentiment"}
    for task, entry in summary["calibration"].items():
        assert entry["temperature"] == pytest.approx(config.task_calibration[task]["temperature"])
        for split in ("validation", "test"):
            stats = entry[split]
            assert stats["nll_after"] <= stats["nll_before"] + 1e-9 or split == "test"
            assert set(stats) == {"examples", "accuracy", "ece_before", "ece_after", "nll_before", "nll_after"}
        # the record's test accuracy is the trainer's (raw logits): calibration changed no label
        assert entry["test"]["accuracy"] == pytest.approx(summary["metrics"]["tasks"][task]["test"]["accuracy"])
        assert (tiny_trained / f"reliability_diagram_{task}.png").is_file()


def test_the_card_shows_calibration(tiny_trained):
    from multitask_st.sharing.model_card import render_model_card

    card = render_model_card(tiny_trained)
    assert "### Calibration" in card
    temperature = MultiTaskSTConfig.from_pretrained(tiny_trained).task_calibration["topic"]["temperature"]
    assert f"| `topic` | {temperature:.3f} | validation |" in card
    assert (
        "![Reliability diagram of the `sentiment` head, before and after calibration](reliability_diagram_sentiment.png)"
        in card
    )
    assert "are calibrated on the validation split" in card


def test_calibrate_false_leaves_the_model_uncalibrated(tmp_path, tiny_tokenizer):
    from tiny_training import train_tiny_model

    folder = train_tiny_model(tmp_path, tiny_tokenizer, max_steps=10, extra_args=["--calibrate", "false"])
    assert MultiTaskSTConfig.from_pretrained(folder).task_calibration == {}
    assert json.loads((folder / "training_summary.json").read_text())["calibration"] == {}
    assert not list(folder.glob("reliability_diagram_*.png"))


def test_calibrate_command_fits_what_training_fits(tiny_trained, tmp_path):
    """`multitask-st calibrate` on a copy with the temperatures removed finds the training run's temperatures (same
    code, same validation split)."""
    import shutil

    from multitask_st.cli import calibrate

    source = tmp_path / "uncalibrated"
    shutil.copytree(tiny_trained, source)
    config = json.loads((source / "config.json").read_text())
    fitted = config.pop("task_calibration")
    (source / "config.json").write_text(json.dumps(config))
    datasets = json.loads((source / "training_summary.json").read_text())["datasets"]
    tasks = [f"{task}={entry['name']}" for task, entry in datasets.items()]
    assert calibrate.main([str(source), "--output_dir", str(tmp_path / "out"), "--tasks", *tasks,
                           "--task_label_names", "topic=world,sports,business", "sentiment=negative,positive"]) == 0  # fmt: skip
    again = MultiTaskSTModel.config_class.from_pretrained(tmp_path / "out").task_calibration
    for task, entry in fitted.items():
        assert again[task]["temperature"] == pytest.approx(entry["temperature"], rel=1e-3)
    assert MultiTaskSTConfig.from_pretrained(source).task_calibration == {}  # the source folder is untouched
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert set(summary["calibration"]["topic"]) == {"temperature", "validation", "test"}


def test_calibrate_command_leaves_other_kinds_alone_and_says_so(tiny_trained, tmp_path):
    from transformers import AutoTokenizer

    from multitask_st.cli import calibrate

    model = MultiTaskSTModel.from_pretrained(tiny_trained).add_task("score", ["value"], kind="regression")
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_trained).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=r"^Only classification heads get a temperature; \{'score': 'regression'\} "):
        calibrate.main([str(tmp_path / "model"), "--tasks", "score=scores.csv"])
    model.remove_task("topic").remove_task("sentiment").save_pretrained(tmp_path / "only-score")
    with pytest.raises(
        ValueError, match=r"has no classification head to calibrate \(its kinds: \{'score': 'regression'"
    ):
        calibrate.main([str(tmp_path / "only-score")])


def test_the_app_shows_calibrated_probabilities(tiny_tokenizer):
    pytest.importorskip("gradio")
    from multitask_st.app.demo import MultiTaskDemo

    model = make_model(task_calibration={task: {"temperature": t} for task, t in TEMPERATURES.items()})
    demo = MultiTaskDemo(model, tiny_tokenizer)
    expected = expected_probabilities(model, tiny_tokenizer, [TEXTS[0]])
    for task, shown in zip(TEMPERATURES, demo.classify(TEXTS[0]), strict=True):
        np.testing.assert_allclose([shown[label] for label in model.config.tasks[task]], expected[task][0], atol=1e-6)
    assert "Probabilities of `topic`, `sentiment` are calibrated" in demo._calibration_note()
    assert "not calibrated" in MultiTaskDemo(make_model(), tiny_tokenizer)._calibration_note()
