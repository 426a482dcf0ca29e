"""Evaluation: per-task accuracy and macro-F1 through `evaluate`, and the STS-B Spearman of the embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
from scipy.stats import spearmanr
from transformers import EvalPrediction

from ..modeling_multitask_st import IGNORE_INDEX


# Shipped inside the package and loaded by path: works offline, unlike `evaluate.load("accuracy")`.
ACCURACY_MACRO_F1_PATH = str(Path(__file__).parent / "evaluate_metrics" / "accuracy_macro_f1.py")


def load_accuracy_macro_f1() -> evaluate.EvaluationModule:
    return evaluate.load(ACCURACY_MACRO_F1_PATH)


def multitask_classification_metrics(
    predictions: dict[str, np.ndarray], label_ids: np.ndarray, task_names: Sequence[str]
) -> dict[str, float]:
    """`<task>_accuracy`, `<task>_f1` (macro) for each task with labelled rows, and their means across tasks.

    Args:
        predictions: per task, logits `(n, num_labels)`.
        label_ids: `(n, num_tasks)`, `-100` where a row has no label for a task.
        task_names: the column order of `label_ids`.
    """
    metric = load_accuracy_macro_f1()
    results: dict[str, float] = {}
    for column, task in enumerate(task_names):
        labelled = label_ids[:, column] != IGNORE_INDEX
        if not labelled.any() or task not in predictions:
            continue
        scores = metric.compute(
            predictions=predictions[task][labelled].argmax(axis=-1), references=label_ids[labelled, column]
        )
        results[f"{task}_accuracy"] = scores["accuracy"]
        results[f"{task}_f1"] = scores["f1"]
    for name in ("accuracy", "f1"):
        values = [value for key, value in results.items() if key.endswith(f"_{name}")]
        if values:
            results[f"mean_{name}"] = float(np.mean(values))
    return results


def build_compute_metrics(task_names: Sequence[str]) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for Trainer; the model's eval predictions are `(logits dict, embeddings)`."""

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
        return multitask_classification_metrics(logits, eval_prediction.label_ids, task_names)

    return compute_metrics


def stsb_spearman(model, tokenizer, pairs, batch_size: int = 64) -> float:
    """Spearman correlation between the cosine similarity of the two sentences' embeddings and the gold score.

    `pairs` has columns `sentence1`, `sentence2`, `score` (a `datasets.Dataset` or a dict of lists).
    """
    first = model.encode(list(pairs["sentence1"]), tokenizer, batch_size=batch_size, normalize_embeddings=True)
    second = model.encode(list(pairs["sentence2"]), tokenizer, batch_size=batch_size, normalize_embeddings=True)
    cosine = (first * second).sum(axis=1)
    return float(spearmanr(cosine, np.asarray(pairs["score"])).statistic)
