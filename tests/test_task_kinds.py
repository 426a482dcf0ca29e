"""Multi-label and regression tasks next to a classification one on the tiny config: the config and its round trip,
the losses (an absent task gives exactly 0), the metrics and the thresholds against hand-computed values, the data
loader's errors, training end to end with train.py, and every door answering as `predict` does."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS, WORDS, tiny_config, train_arguments, word_tokenizer
from transformers import AutoModel

from multitask_st import MultiTaskSTModel
from multitask_st.data.task_datasets import load_task_dataset
from multitask_st.scores_multitask_st import resolve_calibration
from multitask_st.training.calibration import tune_thresholds
from multitask_st.training.collator import MultiTaskDataCollator
from multitask_st.training.metrics import multitask_classification_metrics


NAN = float("nan")
TASKS = {"topic": ["world", "sports", "business"], "tags": ["a", "b", "c"], "score": ["x", "y"]}
KINDS = {"tags": "multi_label", "score": "regression"}
# labels columns: topic | tags a b c | score x y
LABELS = [
    [1, NAN, NAN, NAN, NAN, NAN],
    [NAN, 1, 0, 1, NAN, NAN],
    [NAN, 0, 0, 0, NAN, NAN],
    [NAN, NAN, NAN, NAN, 3.0, -1.0],
]


def kinds_model(seed: int = 0, **config) -> MultiTaskSTModel:
    torch.manual_seed(seed)
    config = {"tasks": TASKS, "task_kinds": KINDS, **config}
    model = MultiTaskSTModel(tiny_config(**config)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)  # outputs away from 0.5 / the mean, so thresholds matter
    return model


def forward(model, tokenizer, labels):
    inputs = tokenizer(TEXTS[: len(labels)], padding=True, return_tensors="pt")
    return model(**inputs, labels=torch.tensor(labels, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------------- config


def test_config_round_trip_keeps_kinds_scaling_thresholds_and_loss_options(tmp_path, tiny_tokenizer):
    model = kinds_model(
        task_loss_options={"topic": {"class_weights": [1.0, 2.0, 0.5], "label_smoothing": 0.1},
                           "tags": {"pos_weight": {"a": 2.0, "b": 1.0, "c": 3.0}}, "score": {"loss": "huber"}},
        task_target_scaling={"score": {"mean": [1.0, 2.0], "std": [2.0, 0.5]}},
        task_calibration={"tags": {"thresholds": [0.2, 0.5, 0.9]}},
    )  # fmt: skip
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task_kinds"] == KINDS  # classification, the default, is not written
    assert saved["task_loss_options"]["tags"] == {"pos_weight": [2.0, 1.0, 3.0]}  # a map is stored in label order
    loaded = AutoModel.from_pretrained(tmp_path)
    for name in ("task_kinds", "task_loss_options", "task_target_scaling", "task_calibration"):
        assert getattr(loaded.config, name) == getattr(model.config, name), name
    torch.testing.assert_close(loaded.heads["score"].target_std, torch.tensor([2.0, 0.5]))
    assert loaded.predict(TEXTS, tiny_tokenizer) == model.predict(TEXTS, tiny_tokenizer)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tasks": {"topic": ["only"]}}, "Task 'topic' needs at least 2 labels, got ['only']."),
        ({"task_loss_options": {"tags": {"class_weights": "balanced"}}},
         "`task_loss_options['tags']` has option(s) ['class_weights'] that a multi_label task does not take; it takes "
         "['pos_weight', 'label_smoothing']."),
        ({"task_loss_options": {"topic": {"class_weights": [1.0, 0.0, 1.0]}}},
         "`task_loss_options['topic']['class_weights']` must be 'balanced', a list of 3 positive numbers (one per label "
         "of ['world', 'sports', 'business']) or a {label: number} map, got [1.0, 0.0, 1.0]."),
        ({"task_loss_options": {"topic": {"label_smoothing": 1.0}}},
         "`task_loss_options['topic']['label_smoothing']` must be a number in [0, 1), got 1.0."),
        ({"task_loss_options": {"score": {"loss": "mae"}}},
         "`task_loss_options['score']['loss']` must be one of ['mse', 'huber', 'l1'], got 'mae'."),
        ({"task_calibration": {"tags": {"thresholds": [0.5, 0.5]}}},
         "`task_calibration['tags']['thresholds']` must hold one number per label (3: ['a', 'b', 'c']), got [0.5, 0.5]."),
        ({"task_calibration": {"topic": {"thresholds": [0.5, 0.5, 0.5]}}},
         "`task_calibration['topic']['thresholds']` applies to ['multi_label'] tasks; 'topic' is a classification task."),
        ({"task_calibration": {"tags": {"thresholds": [0.5, 1.5, 0.5]}}},
         "`task_calibration['tags']['thresholds'][1]` must be a number in [0, 1], got 1.5."),
        ({"task_target_scaling": {"score": {"mean": [0.0, 0.0], "std": [1.0, 0.0]}}},
         "`task_target_scaling['score']['std']` must be 2 positive numbers (one per output of ['x', 'y']), got "
         "[1.0, 0.0]."),
        ({"task_target_scaling": {"tags": {"mean": [0.0], "std": [1.0]}}},
         "`task_target_scaling` applies to regression tasks; 'tags' is a multi_label task."),
    ],
)  # fmt: skip
def test_config_errors_name_the_value_and_what_was_expected(overrides, message):
    settings = {"tasks": TASKS, "task_kinds": KINDS, **overrides}
    if overrides.get("tasks") is not None:
        settings["task_kinds"] = {}
    with pytest.raises(ValueError) as error:
        tiny_config(**settings)
    assert str(error.value) == message


# ---------------------------------------------------------------------------------------------------- losses


def test_each_kinds_loss_against_torch_and_an_absent_task_gives_exactly_zero(tiny_tokenizer):
    model = kinds_model(task_target_scaling={"score": {"mean": [1.0, 2.0], "std": [2.0, 0.5]}})
    output = forward(model, tiny_tokenizer, LABELS)
    logits = {task: value.detach() for task, value in output.logits.items()}
    expected_topic = F.cross_entropy(logits["topic"][:1], torch.tensor([1]))
    expected_tags = F.binary_cross_entropy_with_logits(logits["tags"][1:3], torch.tensor(LABELS)[1:3, 1:4])
    # the head outputs data units: the error is measured in target standard deviations
    expected_score = (((logits["score"][3] - torch.tensor([3.0, -1.0])) / torch.tensor([2.0, 0.5])) ** 2).mean()
    torch.testing.assert_close(output.task_losses["topic"].detach(), expected_topic)
    torch.testing.assert_close(output.task_losses["tags"].detach(), expected_tags)
    torch.testing.assert_close(output.task_losses["score"].detach(), expected_score)
    torch.testing.assert_close(output.loss.detach(), expected_topic + expected_tags + expected_score)

    only_tags = [[NAN] + row[1:4] + [NAN, NAN] for row in LABELS[1:3]] + [[NAN] * 6, [NAN] * 6]
    output = forward(model, tiny_tokenizer, only_tags)
    assert output.task_losses["topic"].item() == 0.0 and output.task_losses["score"].item() == 0.0
    output.loss.backward()  # the absent tasks' heads are in the graph, with a zero gradient
    assert model.heads["score"][3].weight.grad.abs().sum().item() == 0.0
    assert model.heads["tags"][3].weight.grad.abs().sum().item() > 0.0


def test_loss_options_class_weights_smoothing_pos_weight_and_regression_losses(tiny_tokenizer):
    labels = [[0, NAN, NAN, NAN, NAN, NAN], [2, 1, 0, 1, 0.5, NAN], [2, 0, 1, 1, -2.0, 4.0]]
    model = kinds_model(
        task_loss_options={"topic": {"class_weights": [1.0, 2.0, 3.0], "label_smoothing": 0.2},
                           "tags": {"pos_weight": [2.0, 1.0, 0.5]}, "score": {"loss": "l1"}},
    )  # fmt: skip
    output = forward(model, tiny_tokenizer, labels)
    logits = {task: value.detach() for task, value in output.logits.items()}
    weight = torch.tensor([1.0, 2.0, 3.0])
    expected = F.cross_entropy(logits["topic"], torch.tensor([0, 2, 2]), weight=weight, label_smoothing=0.2)
    torch.testing.assert_close(output.task_losses["topic"].detach(), expected)
    expected = F.binary_cross_entropy_with_logits(
        logits["tags"][1:], torch.tensor(labels)[1:, 1:4], pos_weight=torch.tensor([2.0, 1.0, 0.5])
    )
    torch.testing.assert_close(output.task_losses["tags"].detach(), expected)
    # L1 over the three targets present (row 1 has no `y`), unscaled (no target scaling set)
    errors = [abs(logits["score"][1, 0] - 0.5), abs(logits["score"][2, 0] + 2.0), abs(logits["score"][2, 1] - 4.0)]
    torch.testing.assert_close(output.task_losses["score"].detach(), sum(errors) / 3)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([[NAN, 1, 2, 0, NAN, NAN]], "Labels [1.0, 2.0, 0.0] of task 'tags' (multi_label, batch row 0) are not valid: "
                                      "expected 0 or 1 per label (a soft target in [0, 1]), or NaN in every column."),
        ([[NAN, 1, NAN, 0, NAN, NAN]], "Labels [1.0, nan, 0.0] of task 'tags' (multi_label, batch row 0) are not "
                                        "valid: expected 0 or 1 per label (a soft target in [0, 1]), or NaN in every "
                                        "column."),
        ([[NAN, NAN, NAN, NAN, math.inf, 1.0]], "Labels [inf, 1.0] of task 'score' (regression, batch row 0) are not "
                                                "valid: expected finite targets, or NaN where there is none."),
        ([[1, NAN, NAN, NAN]], "`labels` must be a float32 tensor of shape (batch_size, label columns) = (1, 6) with "
                               "the columns of ['topic', 'tags', 'score'] (`config.label_slices()`), got "
                               "torch.float32 of shape (1, 4)."),
    ],
)  # fmt: skip
def test_bad_label_rows_are_named(tiny_tokenizer, labels, message):
    with pytest.raises(ValueError) as error:
        forward(kinds_model(), tiny_tokenizer, labels)
    assert str(error.value) == message


# ---------------------------------------------------------------------------------------------------- metrics, thresholds


def test_metrics_of_each_kind_against_hand_computed_values():
    config = tiny_config(tasks=TASKS, task_kinds=KINDS, task_calibration={"tags": {"thresholds": [0.5, 0.5, 0.3]}})
    logit = math.log(0.6 / 0.4)  # sigmoid -> 0.6; -logit -> 0.4
    predictions = {
        "topic": np.array([[2.0, 1, 0], [0, 2.0, 1], [0, 0, 1.0], [0, 0, 1.0]]),
        # rows 0-3 tagged. probabilities 0.6 / 0.4: a at 0.6, 0.4, 0.6, 0.4; b 0.4 always; c 0.4 (>= 0.3 tuned) always
        "tags": np.array([[logit, -logit, -logit], [-logit, -logit, -logit]] * 2),
        "score": np.array([[1.0, 0], [2.0, 0], [3.0, 0], [5.0, 0]]),
    }
    labels = np.array([
        [0, 1, 0, 1, 1.0, NAN],
        [1, 1, 0, 0, 2.0, NAN],
        [1, 0, 0, 1, 3.0, NAN],
        [NAN, 0, 0, 0, 4.0, NAN],
    ])  # fmt: skip
    metrics = multitask_classification_metrics(predictions, labels, list(TASKS), config)
    # topic: predicted 0, 1, 2 against 0, 1, 1: accuracy 2/3; F1 per class 1, 2/3, 0
    assert metrics["topic_accuracy"] == pytest.approx(2 / 3) and metrics["topic_f1"] == pytest.approx((1 + 2 / 3) / 3)
    # tags: a predicted on rows 0, 2 (gold 0, 1): TP 1, FP 1, FN 1 -> F1 1/2; b never predicted nor gold -> 0;
    # c predicted on all 4 (gold rows 0, 2): TP 2, FP 2 -> F1 2/3. Micro: TP 3, predicted 6, gold 4 -> 6/10
    assert metrics["tags_f1.a"] == pytest.approx(0.5) and metrics["tags_f1.b"] == 0.0
    assert metrics["tags_f1.c"] == pytest.approx(2 / 3)
    assert metrics["tags_macro_f1"] == pytest.approx((0.5 + 0 + 2 / 3) / 3) == metrics["tags_f1"]
    assert metrics["tags_micro_f1"] == pytest.approx(0.6)
    # score x: predicted 1, 2, 3, 5 for 1, 2, 3, 4 (y has no target): RMSE sqrt(1/4), ranks equal -> Spearman 1
    assert metrics["score_rmse"] == pytest.approx(0.5) and metrics["score_spearman"] == pytest.approx(1.0)
    x, y = np.array([1.0, 2, 3, 5]), np.array([1.0, 2, 3, 4])
    pearson = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(
        ((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    assert metrics["score_pearson"] == pytest.approx(pearson)
    assert metrics["mean_accuracy"] == metrics["topic_accuracy"]  # classification tasks only
    assert metrics["mean_f1"] == pytest.approx((metrics["topic_f1"] + metrics["tags_macro_f1"]) / 2)
    expected_score = (metrics["topic_accuracy"] + metrics["tags_macro_f1"] + metrics["score_spearman"]) / 3
    assert metrics["mean_score"] == pytest.approx(expected_score)


def test_thresholds_tuned_on_a_constructed_case():
    probabilities = np.array([[0.9, 0.2, 0.5], [0.8, 0.3, 0.5], [0.35, 0.25, 0.5], [0.3, 0.1, 0.5], [0.1, 0.6, 0.5]])
    gold = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    # a: the best cut gives the 3 positives (0.9, 0.8, 0.35), halfway to 0.3 -> 0.325
    # b: positives score 0.3, 0.25, 0.1 under a negative at 0.6: cutting at 0.1 (everything) gives F1 6/8, the best;
    #    no lower score: halfway to 0 -> 0.05.  c: no positive: the default 0.5 stays.
    assert tune_thresholds(probabilities, gold) == pytest.approx([0.325, 0.05, 0.5])
    tuned = np.asarray(tune_thresholds(probabilities, gold))
    fixed = multitask_f1(probabilities >= 0.5, gold)
    assert multitask_f1(probabilities >= tuned, gold) > fixed  # better than a fixed 0.5 on these rows


def multitask_f1(predicted, gold) -> float:
    from multitask_st.training.metrics import f1_per_label

    return float(f1_per_label(predicted, gold)[:2].mean())


def test_predict_time_thresholds_are_checked_and_override_the_config():
    tasks, kinds = {"tags": ["a", "b"], "topic": ["x", "y"]}, {"tags": "multi_label", "topic": "classification"}
    calibration = {"tags": {"thresholds": [0.2, 0.7]}}
    assert resolve_calibration(calibration, tasks, kinds, {"tags": {"b": 0.4}}) == {"tags": {"thresholds": [0.2, 0.4]}}
    assert resolve_calibration(calibration, tasks, kinds, 0.9) == {"tags": {"thresholds": [0.9, 0.9]}}
    for thresholds, message in [
        ({"topic": 0.5}, "`thresholds` names 'topic', which is not a multi-label task of this model ['tags']."),
        ({"tags": {"z": 0.5}}, "`thresholds['tags']` names unknown label(s) ['z']; the labels are ['a', 'b']."),
        ({"tags": [0.5]}, "`thresholds['tags']` must hold one number per label (2: ['a', 'b']), got 1."),
        (1.5, "`thresholds['tags']` must be a number in [0, 1], got 1.5."),
    ]:
        with pytest.raises(ValueError) as error:
            resolve_calibration(calibration, tasks, kinds, thresholds)
        assert str(error.value) == message


# ---------------------------------------------------------------------------------------------------- data


def test_data_files_of_each_kind_and_their_bad_rows(tmp_path):
    texts = [f"{WORDS[i % len(WORDS)]} {WORDS[(5 * i) % len(WORDS)]} {WORDS[i // 4]}" for i in range(20)]  # distinct
    tags = ["a;b", "", "c", "b; a"] * 5
    (tmp_path / "tags.csv").write_text(
        "text,tags\n" + "".join(f'{t},"{g}"\n' for t, g in zip(texts, tags, strict=True))
    )
    dataset = load_task_dataset(tmp_path / "tags.csv", kind="multi_label", label_column="tags", label_delimiter=";")
    assert dataset["train"].features["label"].feature.names == ["a", "b", "c"]  # sorted, as none were given
    rows = {
        text: label for split in dataset.values() for text, label in zip(split["text"], split["label"], strict=True)
    }
    assert [rows[text] for text in texts[:4]] == [[0, 1], [], [2], [0, 1]]  # an empty cell: no label
    (tmp_path / "tags.jsonl").write_text("".join(json.dumps({"text": t, "label": ["b", "c"]}) + "\n" for t in texts))
    dataset = load_task_dataset(tmp_path / "tags.jsonl", kind="multi_label", label_names=["a", "b", "c"])
    assert dataset["test"]["label"][0] == [1, 2]
    bad = [{"text": t, "label": ["b", "d"] if i == 7 else ["a"]} for i, t in enumerate(texts)]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(row) + "\n" for row in bad))
    with pytest.raises(ValueError) as error:
        load_task_dataset(tmp_path / "bad.jsonl", kind="multi_label", label_names=["a", "b", "c"])
    assert str(error.value) == (
        f"Dataset '{tmp_path / 'bad.jsonl'}', split 'train', column 'label', row 7: label 'd' is not one of the task's "
        "labels ['a', 'b', 'c']."
    )

    scores = [f"{i / 4},{-i}" for i in range(20)]
    (tmp_path / "scores.csv").write_text(
        "text,likes,shares\n" + "".join(f"{t},{s}\n" for t, s in zip(texts, scores, strict=True))
    )
    dataset = load_task_dataset(tmp_path / "scores.csv", kind="regression", label_column=["likes", "shares"])
    row = dataset["train"][0]
    assert row["label"] == {"likes": texts.index(row["text"]) / 4, "shares": -texts.index(row["text"])}
    scores[11] = "3.5,lots"
    (tmp_path / "scores.csv").write_text(
        "text,likes,shares\n" + "".join(f"{t},{s}\n" for t, s in zip(texts, scores, strict=True))
    )
    with pytest.raises(ValueError) as error:
        load_task_dataset(tmp_path / "scores.csv", kind="regression", label_column=["likes", "shares"])
    assert str(error.value) == (
        f"Dataset '{tmp_path / 'scores.csv'}', split 'train', column 'shares', row 11: 'lots' is not a number; a "
        "regression target must be a finite number."
    )


def test_collator_builds_the_float_label_matrix(tiny_tokenizer):
    collator = MultiTaskDataCollator(tiny_tokenizer, num_tasks=3, label_widths=[1, 3, 2])
    batch = collator([
        {"input_ids": [2, 7, 3], "task_id": 0, "label": [2.0]},
        {"input_ids": [2, 8, 3], "task_id": 1, "label": [1.0, 0.0, 1.0]},
        {"input_ids": [2, 3], "task_id": 2, "label": [0.5, -3.0]},
    ])  # fmt: skip
    assert batch["labels"].dtype == torch.float32
    expected = torch.tensor([[2, NAN, NAN, NAN, NAN, NAN], [NAN, 1, 0, 1, NAN, NAN], [NAN, NAN, NAN, NAN, 0.5, -3]])
    torch.testing.assert_close(batch["labels"], expected, equal_nan=True)
    with pytest.raises(ValueError, match=r"The label of task 1 must take 3 column\(s\), got \[1.0\]\."):
        collator([{"input_ids": [2, 3], "task_id": 1, "label": [1.0]}])


# ---------------------------------------------------------------------------------------------------- training


def test_trainer_balances_scales_tunes_and_records_each_kind(tmp_path, tiny_tokenizer):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from multitask_st.training.tokenization import tokenize_task_dataset
    from multitask_st.training.trainer import MultiTaskTrainer
    from multitask_st.training.training_args import MultiTaskTrainingArguments

    texts = [f"{WORDS[i % len(WORDS)]} {WORDS[(7 * i) % len(WORDS)]}" for i in range(40)]
    tag_features = Features({"text": Value("string"), "label": Sequence(ClassLabel(names=TASKS["tags"]))})
    score_features = Features({"text": Value("string"), "label": {"x": Value("float32"), "y": Value("float32")}})
    topic_features = Features({"text": Value("string"), "label": ClassLabel(names=TASKS["topic"])})
    raw = {
        "topic": Dataset.from_dict({"text": texts, "label": [0] * 30 + [1] * 8 + [2] * 2}, features=topic_features),
        "tags": Dataset.from_dict({"text": texts, "label": [[0] if i % 4 == 0 else [1, 2] for i in range(40)]},
                                  features=tag_features),
        "score": Dataset.from_dict({"text": texts, "label": [{"x": 10.0 + i, "y": 2.0 * (i % 3)} for i in range(40)]},
                                   features=score_features),
    }  # fmt: skip
    from datasets import DatasetDict

    tokenized = {task: tokenize_task_dataset(DatasetDict({"train": data}), tiny_tokenizer, max_length=16)["train"]
                 for task, data in raw.items()}  # fmt: skip
    model = kinds_model(task_loss_options={"topic": {"class_weights": "balanced"}, "tags": {"pos_weight": "balanced"}})
    args = MultiTaskTrainingArguments(
        str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8, eval_strategy="no", save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, embedding_distillation_weight=0.0, save_plots=False,
    )  # fmt: skip
    trainer = MultiTaskTrainer(
        model=model, args=args, train_dataset=tokenized, eval_dataset=tokenized, processing_class=tiny_tokenizer
    )
    options = model.config.task_loss_options
    assert options["topic"]["class_weights"] == pytest.approx([40 / (3 * 30), 40 / (3 * 8), 40 / (3 * 2)])
    assert options["tags"]["pos_weight"] == pytest.approx([30 / 10, 10 / 30, 10 / 30])  # negatives / positives
    x, y = np.arange(40) + 10.0, 2.0 * (np.arange(40) % 3)
    scaling = model.config.task_target_scaling["score"]
    assert scaling["mean"] == pytest.approx([x.mean(), y.mean()]) and scaling["std"] == pytest.approx(
        [x.std(), y.std()]
    )
    trainer.train()
    thresholds = model.config.task_calibration["tags"]["thresholds"]
    assert len(thresholds) == 3 and all(0 <= t <= 1 for t in thresholds)
    metrics = trainer.evaluate()
    assert {
        "eval_topic_accuracy",
        "eval_tags_micro_f1",
        "eval_tags_f1.c",
        "eval_score_spearman",
        "eval_mean_score",
    } <= set(metrics)


def test_train_script_with_every_kind(tmp_path, tiny_backbone_dir, capsys):
    texts = [f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]}" for i in range(60)]
    (tmp_path / "tags.csv").write_text(
        "text,label\n" + "".join(f'{t},"{["a", "b", "a;c", ""][i % 4]}"\n' for i, t in enumerate(texts))
    )
    (tmp_path / "spread.csv").write_text("text,likes\n" + "".join(f"{t},{i % 7}\n" for i, t in enumerate(texts)))
    arguments = train_arguments(tmp_path, tiny_backbone_dir)
    arguments[arguments.index("--tasks") + 2 : arguments.index("--tasks") + 3] = [
        f"tags={tmp_path / 'tags.csv'}",
        f"spread={tmp_path / 'spread.csv'}",
    ]  # topic, tags, spread: the sentiment task's file replaced by two of other kinds
    arguments[arguments.index("--task_label_names") : arguments.index("--task_label_names") + 2] = []
    arguments += ["--task_kinds", "tags=multi_label", "spread=regression", "--label_columns", "spread=likes",
                  "--label_delimiters", "tags=;", "--pos_weight", "tags=balanced", "--regression_loss", "spread=huber"]  # fmt: skip
    from multitask_st.cli import train

    train.main(arguments)
    out = tmp_path / "out"
    model = AutoModel.from_pretrained(out)
    assert model.config.task_kinds == {"topic": "classification", "tags": "multi_label", "spread": "regression"}
    assert model.config.tasks["tags"] == ["a", "b", "c"] and model.config.tasks["spread"] == ["likes"]
    assert model.config.task_loss_options["spread"] == {"loss": "huber"}
    assert len(model.config.task_calibration["tags"]["thresholds"]) == 3
    summary = json.loads((out / "training_summary.json").read_text())
    assert set(summary["metrics"]["tasks"]["tags"]["test"]) >= {"micro_f1", "macro_f1", "f1.a"}
    assert set(summary["metrics"]["tasks"]["spread"]["test"]) >= {"pearson", "spearman", "rmse"}
    printed = capsys.readouterr().out
    assert "likes " in printed and "tags:" in printed
    from multitask_st.sharing.model_card import render_model_card

    card = render_model_card(out)
    assert "### Multi-label (per task" in card and "### Regression (per task" in card
    assert "Multi-label text classification (tags)" in card and "Text regression (spread)" in card
    assert 'print(prediction["spread"]["values"])' in card


# ---------------------------------------------------------------------------------------------------- doors


@pytest.fixture(scope="module")
def kinds_folder(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from multitask_st.export.onnx import export_onnx

    tmp_path = tmp_path_factory.mktemp("kinds")
    tokenizer = word_tokenizer(tmp_path, WORDS, model_max_length=64)
    model = kinds_model(
        task_target_scaling={"score": {"mean": [10.0, -1.0], "std": [3.0, 0.5]}},
        task_calibration={"tags": {"thresholds": [0.3, 0.5, 0.7]}},
    )
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "onnx", check_texts=8)
    return model, tokenizer, tmp_path


def assert_same_predictions(got, expected, tolerance=1e-5):
    assert len(got) == len(expected)
    for got_row, expected_row in zip(got, expected, strict=True):
        assert list(got_row) == list(expected_row)
        for task, entry in expected_row.items():
            if "values" in entry:
                assert list(got_row[task]["values"]) == list(entry["values"])
                np.testing.assert_allclose(list(got_row[task]["values"].values()), list(entry["values"].values()),
                                           rtol=tolerance, atol=tolerance)  # fmt: skip
            elif "labels" in entry:
                assert got_row[task]["labels"] == entry["labels"]
                np.testing.assert_allclose(got_row[task]["scores"], entry["scores"], atol=tolerance)
            else:
                assert got_row[task]["label"] == entry["label"]
                np.testing.assert_allclose(got_row[task]["score"], entry["score"], atol=tolerance)


@pytest.mark.parametrize("thresholds", [None, {"tags": [0.0, 0.5, 1.0]}])
def test_every_door_answers_as_predict(kinds_folder, thresholds):
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel
    from multitask_st.pipeline_multitask_st import MultiTaskSTPipeline

    model, tokenizer, folder = kinds_folder
    expected = model.predict(TEXTS, tokenizer, thresholds=thresholds)
    assert any(row["tags"]["labels"] for row in expected)  # thresholds 0.3/0.5/0.7 give some labels, not all
    loaded = AutoModel.from_pretrained(folder / "model")
    assert_same_predictions(loaded.predict(TEXTS, tokenizer, thresholds=thresholds), expected, 0)
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder / "onnx", threads=1)
    assert_same_predictions(onnx_model.predict(TEXTS, thresholds=thresholds), expected)
    pipe = MultiTaskSTPipeline(model=loaded, tokenizer=tokenizer)
    piped = pipe(TEXTS, thresholds=thresholds)
    for row, expected_row in zip(piped, expected, strict=True):
        assert row["tags"] == {"labels": expected_row["tags"]["labels"], "scores": expected_row["tags"]["scores"]}
        assert row["score"] == {"values": expected_row["score"]["values"]}
        assert row["topic"] == {"label": expected_row["topic"]["label"], "score": expected_row["topic"]["score"]}
    # the stock text-classification pipeline on one head: sigmoid for multi-label, the values for regression
    from transformers import pipeline

    head = pipeline("text-classification", model=loaded.head_view("tags"), tokenizer=tokenizer, top_k=None)
    scores = {item["label"]: item["score"] for item in head([TEXTS[0]])[0]}
    np.testing.assert_allclose([scores[label] for label in TASKS["tags"]],
                               list(expected[0]["tags"]["probabilities"].values()), atol=1e-6)  # fmt: skip


def test_no_label_above_threshold_says_so_and_the_app_shows_chips_and_numbers(kinds_folder):
    pytest.importorskip("gradio")
    from multitask_st.app.demo import NO_LABEL, MultiTaskDemo

    model, tokenizer, _ = kinds_folder
    prediction = model.predict(TEXTS[0], tokenizer, thresholds={"tags": 1.0})
    assert prediction["tags"]["labels"] == [] and prediction["tags"]["scores"] == []
    demo = MultiTaskDemo(model, tokenizer)
    topic, tags, score = demo.classify(TEXTS[0])
    expected = model.predict(TEXTS[0], tokenizer)
    assert topic == expected["topic"]["probabilities"]
    assert tags == ([(label, f"{p:.2f}") for label, p in zip(expected["tags"]["labels"], expected["tags"]["scores"], strict=True)]
                    or [(NO_LABEL, None)])  # fmt: skip
    assert score == "  \n".join(f"**{name}**: {value:.4g}" for name, value in expected["score"]["values"].items())
    model.config.task_calibration = {"tags": {"thresholds": [1.0, 1.0, 1.0]}}
    try:
        assert demo.classify(TEXTS[0])[1] == [(NO_LABEL, None)]
    finally:
        model.config.task_calibration = {"tags": {"thresholds": [0.3, 0.5, 0.7]}}
    demo.build()  # a HighlightedText and a Markdown output build next to the Label


def test_yaml_names_kinds_and_loss_options_like_the_command_line(tmp_path):
    from multitask_st.cli import train_arguments

    path = tmp_path / "config.yaml"
    path.write_text(
        "tasks: [tags=t.csv, spread=s.csv, topic=bbc_news]\ntask_kinds: [tags=multi_label, spread=regression]\n"
        "label_columns: ['spread=likes,shares']\npos_weight: [tags=balanced]\nclass_weights: ['topic=1,2,3,4,5']\n"
        "regression_loss: [spread=l1]\nnormalize_targets: [spread=false]\n"
    )
    model_args, data_args, _ = train_arguments.parse_arguments([str(path)])
    assert data_args.task_kinds == ["tags=multi_label", "spread=regression"]
    assert train_arguments.task_loss_options(model_args) == {
        "topic": {"class_weights": [1.0, 2.0, 3.0, 4.0, 5.0]},
        "tags": {"pos_weight": "balanced"},
        "spread": {"loss": "l1", "normalize_targets": False},
    }
    model_args.label_smoothing = ["tags=lots"]
    with pytest.raises(ValueError, match=r"^`--label_smoothing tags=\.\.\.`: 'lots' is not a number\.$"):
        train_arguments.check_task_options(data_args, model_args)
    model_args.label_smoothing, data_args.task_kinds = [], ["colour=regression"]
    with pytest.raises(ValueError, match=r"`--task_kinds` names task\(s\) \['colour'\] not in --tasks"):
        train_arguments.check_task_options(data_args, model_args)


def test_target_scaling_skips_missing_targets_and_names_an_output_without_any():
    import datasets

    from multitask_st.training.label_statistics import fit_to_training_labels

    score = list(TASKS).index("score")
    rows = {"task_id": [score] * 3, "label": [[1.0, NAN], [3.0, 4.0], [5.0, 8.0]]}
    model = kinds_model()
    fit_to_training_labels(model, datasets.Dataset.from_dict(rows))
    scaling = model.config.task_target_scaling["score"]
    assert scaling["mean"] == pytest.approx([3.0, 6.0]) and scaling["std"] == pytest.approx([np.std([1, 3, 5]), 2.0])
    rows["label"] = [[1.0, NAN], [3.0, NAN], [5.0, NAN]]
    with pytest.raises(
        ValueError, match=r"^Regression task 'score' has no training target for output\(s\) \['y'\]\.$"
    ):
        fit_to_training_labels(kinds_model(), datasets.Dataset.from_dict(rows))


def test_a_checkpoint_of_other_kinds_is_not_resumed():
    from multitask_st.training.checkpoints import checkpoint_mismatches

    ours = kinds_model().config
    theirs = kinds_model(task_kinds={"tags": "multi_label", "score": "regression", "topic": "classification"}).config
    assert checkpoint_mismatches(theirs, ours) == []
    other = MultiTaskSTModel(tiny_config(tasks=TASKS, task_kinds={"score": "regression"})).config  # tags: classes
    assert checkpoint_mismatches(other, ours) == [
        f"task_kinds: checkpoint {other.task_kinds!r}, this run {ours.task_kinds!r}"
    ]
