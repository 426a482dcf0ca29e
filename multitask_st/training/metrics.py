"""Evaluation: per-task metrics by kind (accuracy and macro-F1 through `evaluate`; multi-label micro/macro/per-label F1;
regression Pearson/Spearman/RMSE), and the STS-B Spearman of the embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from transformers import EvalPrediction

from ..inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)
from ..losses_multitask_st import labelled_rows
from ..scores_multitask_st import DEFAULT_THRESHOLD, sigmoid


# Shipped inside the package and loaded by path: works offline, unlike `evaluate.load("accuracy")`.
ACCURACY_MACRO_F1_PATH = str(Path(__file__).parent / "evaluate_metrics" / "accuracy_macro_f1.py")


def load_accuracy_macro_f1() -> evaluate.EvaluationModule:
    return evaluate.load(ACCURACY_MACRO_F1_PATH)


def _classification_metrics(logits: np.ndarray, labels: np.ndarray, config, task: str) -> dict[str, float]:
    scores = load_accuracy_macro_f1().compute(predictions=logits.argmax(axis=-1), references=labels[:, 0].astype(int))
    return {"accuracy": scores["accuracy"], "f1": scores["f1"]}


def f1_per_label(predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per column of `(n, labels)` 0/1 arrays, F1 = 2TP / (predicted + actual); 0 for a label never predicted nor
    present, as in scikit-learn."""
    predicted, gold = predicted.astype(bool), gold.astype(bool)
    true_positive = (predicted & gold).sum(axis=0)
    denominator = predicted.sum(axis=0) + gold.sum(axis=0)
    return np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)


def multi_label_f1(probabilities: np.ndarray, gold: np.ndarray, thresholds) -> dict[str, float | np.ndarray]:
    """Micro-F1 (over every label decision), macro-F1 (the mean of the labels' F1) and the per-label F1 of the
    decisions `probability >= threshold` against 0/1 `gold`."""
    predicted, gold = probabilities >= np.asarray(thresholds), gold >= 0.5
    true_positive = (predicted & gold).sum()
    denominator = predicted.sum() + gold.sum()
    per_label = f1_per_label(predicted, gold)
    micro = 2 * true_positive / denominator if denominator else 0.0
    return {"micro_f1": float(micro), "macro_f1": float(per_label.mean()), "per_label": per_label}


def _multi_label_metrics(logits: np.ndarray, labels: np.ndarray, config, task: str) -> dict[str, float]:
    names = config.tasks[task]
    thresholds = config.task_calibration.get(task, {}).get("thresholds") or [DEFAULT_THRESHOLD] * len(names)
    scores = multi_label_f1(sigmoid(logits.astype(np.float64)), labels, thresholds)
    # `f1` (= macro-F1) joins the classification tasks' macro-F1 in `mean_f1`.
    metrics = {"micro_f1": scores["micro_f1"], "macro_f1": scores["macro_f1"], "f1": scores["macro_f1"]}
    metrics.update({f"f1.{name}": float(value) for name, value in zip(names, scores["per_label"], strict=True)})
    return metrics


def regression_scores(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation and the root mean squared error of one output's predictions."""
    constant = np.ptp(predicted) == 0 or np.ptp(gold) == 0  # correlation undefined: scipy would warn and give NaN
    return {
        "pearson": float("nan") if constant else float(pearsonr(predicted, gold).statistic),
        "spearman": float("nan") if constant else float(spearmanr(predicted, gold).statistic),
        "rmse": float(np.sqrt(np.mean((predicted - gold) ** 2))),
    }


def _regression_metrics(outputs: np.ndarray, labels: np.ndarray, config, task: str) -> dict[str, float]:
    per_output = {}
    for column, name in enumerate(config.tasks[task]):
        present = ~np.isnan(labels[:, column])
        if present.sum() >= 2:
            per_output[name] = regression_scores(outputs[present, column], labels[present, column])
    metrics = {}
    for metric in ("pearson", "spearman", "rmse"):
        values = [scores[metric] for scores in per_output.values()]
        if values:
            metrics[metric] = float(np.mean(values))  # the task's figure: the mean over its outputs
        if len(per_output) > 1:
            metrics.update({f"{metric}.{name}": scores[metric] for name, scores in per_output.items()})
    return metrics


def _similarity_metrics(cosines: np.ndarray, labels: np.ndarray, config, task: str) -> dict[str, float]:
    """An embedding task's Pearson and Spearman correlations of the pairs' cosine similarities with their scores (no
    RMSE: a cosine is not in the scores' units)."""
    scores = regression_scores(cosines[:, 0].astype(np.float64), labels[:, 0])
    return {"pearson": scores["pearson"], "spearman": scores["spearman"]}


def _retrieval_metrics(output: np.ndarray, labels: np.ndarray, config, task: str) -> dict[str, float]:
    """Each anchor's positive among every labelled row's positive (and hard negatives): accuracy@1 and mean reciprocal
    rank, over the whole split (the in-batch task, evaluated with the split as the batch)."""
    dim = (output.shape[-1] - 1) // 3
    anchor, positive, negative = output[:, :dim], output[:, dim : 2 * dim], output[:, 2 * dim : 3 * dim]
    candidates = np.concatenate([positive, negative[output[:, -1] > 0.5]])
    similarities = anchor @ candidates.T
    own = similarities[np.arange(len(anchor)), np.arange(len(anchor))]
    ranks = 1 + (similarities > own[:, None]).sum(axis=1)  # ties count in the anchor's favour
    return {"accuracy_at_1": float(np.mean(ranks == 1)), "mrr": float(np.mean(1.0 / ranks))}


# Per kind of task: `(outputs (n, labels), the task's label columns (n, width), config, task) -> {metric: value}` over
# the rows labelled for the task, and the metric that stands for the task in `mean_score` (the best-model default
# when a run has other kinds than classification).
TASK_METRICS = {
    SINGLE_LABEL: _classification_metrics,
    MULTI_LABEL: _multi_label_metrics,
    REGRESSION: _regression_metrics,
    PAIR_CLASSIFICATION: _classification_metrics,
    PAIR_REGRESSION: _regression_metrics,
    EMBEDDING: _similarity_metrics,  # of the pairs' cosine similarities
    EMBEDDING_CONTRASTIVE: _retrieval_metrics,
}
MAIN_METRIC = {
    SINGLE_LABEL: "accuracy",
    MULTI_LABEL: "macro_f1",
    REGRESSION: "spearman",
    PAIR_CLASSIFICATION: "accuracy",
    PAIR_REGRESSION: "spearman",
    EMBEDDING: "spearman",
    EMBEDDING_CONTRASTIVE: "accuracy_at_1",
}


def multitask_classification_metrics(
    predictions: dict[str, np.ndarray], label_ids: np.ndarray, task_names: Sequence[str], config=None
) -> dict[str, float]:
    """Per task with labelled rows, its kind's metrics (`<task>_accuracy` and `<task>_f1` (macro) for classification;
    `<task>_micro_f1`, `<task>_macro_f1` and `<task>_f1.<label>` for multi-label, at the config's thresholds;
    `<task>_pearson`, `<task>_spearman`, `<task>_rmse` for regression), and their means across tasks: `mean_accuracy`,
    `mean_f1` (classification macro-F1 and multi-label macro-F1) and, when a task is of another kind than
    classification, `mean_score` (each task's `MAIN_METRIC`).

    Args:
        predictions: per task, the head's outputs `(n, num_labels)` (logits; a regression head's values).
        label_ids: the `labels` matrix: `(n, num_tasks)` ids, `-100` where a row has no label for a task, or with
            `config`, the columns `config.label_slices()` gives (NaN where none).
        task_names: the tasks, in the order of `label_ids`' columns.
        config: the model's config, for other kinds than single-label classification.
    """
    kinds = config.task_kinds if config is not None else dict.fromkeys(task_names, SINGLE_LABEL)
    slices = (
        config.label_slices() if config is not None else {task: slice(i, i + 1) for i, task in enumerate(task_names)}
    )
    results: dict[str, float] = {}
    means = {"accuracy": [], "f1": [], "score": []}
    for task in task_names:
        kind = kinds[task]
        columns = np.asarray(label_ids[:, slices[task]], dtype=np.float64)
        labelled = labelled_rows(columns, kind)
        if not labelled.any() or task not in predictions:
            continue
        metrics = TASK_METRICS[kind](np.asarray(predictions[task])[labelled], columns[labelled], config, task)
        results.update({f"{task}_{name}": value for name, value in metrics.items()})
        for name, values in means.items():
            value = metrics.get(MAIN_METRIC[kind] if name == "score" else name)
            if value is not None:
                values.append(value)
    if all(kinds[task] == SINGLE_LABEL for task in task_names):
        means.pop("score")  # it would be `mean_accuracy` again
    results.update({f"mean_{name}": float(np.mean(values)) for name, values in means.items() if values})
    return results


def build_compute_metrics(task_names: Sequence[str], config=None) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for Trainer; the model's eval predictions are `(logits dict, embeddings)`. The config is
    read at each evaluation: thresholds tuned after training count in the metrics that follow."""

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
        return multitask_classification_metrics(logits, eval_prediction.label_ids, task_names, config)

    return compute_metrics


def stsb_spearman(model, tokenizer, pairs, batch_size: int = 64) -> float:
    """Spearman correlation between the cosine similarity of the two sentences' embeddings and the gold score.

    `pairs` has columns `sentence1`, `sentence2`, `score` (a `datasets.Dataset` or a dict of lists).
    """
    first = model.encode(list(pairs["sentence1"]), tokenizer, batch_size=batch_size, normalize_embeddings=True)
    second = model.encode(list(pairs["sentence2"]), tokenizer, batch_size=batch_size, normalize_embeddings=True)
    cosine = (first * second).sum(axis=1)
    return float(spearmanr(cosine, np.asarray(pairs["score"])).statistic)
