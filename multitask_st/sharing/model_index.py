"""What the model card reports from a run's record: metric tables and the metadata's model-index, one result per task.

Reads training_summary.json["metrics"] (see `multitask_st.training.record`) as recorded; nothing is invented: a task
without a recorded metric gets no result.
"""

from __future__ import annotations

import math
import os

from huggingface_hub import EvalResult
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..configuration_multitask_st import MultiTaskSTConfig
from ..inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)


# Splits of training_summary.json["metrics"] in table order; the model-index reports the last one a task has.
METRIC_SPLITS = ("validation", "test")
# Per kind of task: the metrics the card's tables and the model-index report, as (recorded name, shown name, the Hub's
# metric type, its config), and the model-index task name.
REPORTED_METRICS = {
    SINGLE_LABEL: [("accuracy", "Accuracy", "accuracy", None), ("f1", "Macro-F1", "f1", "macro")],
    MULTI_LABEL: [("micro_f1", "Micro-F1", "f1", "micro"), ("macro_f1", "Macro-F1", "f1", "macro")],
    REGRESSION: [
        ("pearson", "Pearson", "pearsonr", None),
        ("spearman", "Spearman", "spearmanr", None),
        ("rmse", "RMSE", "rmse", None),
    ],
}
REPORTED_METRICS[PAIR_CLASSIFICATION] = REPORTED_METRICS[SINGLE_LABEL]
REPORTED_METRICS[PAIR_REGRESSION] = REPORTED_METRICS[REGRESSION]
REPORTED_METRICS[EMBEDDING] = REPORTED_METRICS[REGRESSION][:2]  # of the pairs' cosine similarities: no RMSE
REPORTED_METRICS[EMBEDDING_CONTRASTIVE] = [
    ("accuracy_at_1", "Accuracy@1", "accuracy", None),
    ("mrr", "MRR", "mrr", None),
]
TASK_NAMES = {SINGLE_LABEL: "Text classification", MULTI_LABEL: "Multi-label text classification",
              REGRESSION: "Text regression", PAIR_CLASSIFICATION: "Sentence-pair classification",
              PAIR_REGRESSION: "Sentence-pair regression", EMBEDDING: "Semantic similarity of the embedding",
              EMBEDDING_CONTRASTIVE: "Retrieval with the embedding"}  # fmt: skip
# The Hub's task type of each kind: the embedding tasks' figures are the embedding's (`sentence-similarity`); every
# head is `text-classification` (GLUE's STS-B regression is too).
TASK_TYPES = {EMBEDDING: "sentence-similarity", EMBEDDING_CONTRASTIVE: "sentence-similarity"}


def as_hub_id(value) -> str | None:
    """`value` if it reads as a Hub repository id, None if it is missing or a local path."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith((".", "~")):
        return None
    if os.path.exists(value):
        return None
    try:
        validate_repo_id(value)
    except HFValidationError:
        return None
    return value


def _metrics(summary: dict) -> dict[str, dict]:
    """training_summary.json["metrics"]: `{"tasks": {task: {split: {metric: value}}}, "other": {name: {split: value}}}`."""
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    return {key: metrics.get(key) if isinstance(metrics.get(key), dict) else {} for key in ("tasks", "other")}


def reported_metric(summary: dict, name: str) -> tuple[str, float] | None:
    """`(split, value)` of a metric from the test split, else validation; None when neither has it."""
    values = _metrics(summary)["other"].get(name) or {}
    for split in reversed(METRIC_SPLITS):
        if is_number(values.get(split)):
            return split, float(values[split])
    return None


def metric_tables(config: MultiTaskSTConfig, summary: dict) -> tuple[dict[str, list[dict]], list[dict], list[str]]:
    """Per kind of task, its rows (`{"task", "split", <metric>: value}`, `REPORTED_METRICS`); the other metrics' rows;
    the splits recorded."""
    metrics = _metrics(summary)
    task_rows = {kind: [] for kind in REPORTED_METRICS}
    for task in config.task_names:
        kind = config.task_kinds[task]
        for split, values in (metrics["tasks"].get(task) or {}).items():
            row = {name: values.get(name) if is_number(values.get(name)) else None
                   for name, *_ in REPORTED_METRICS[kind]}  # fmt: skip
            if any(value is not None for value in row.values()):
                task_rows[kind].append({"task": task, "split": split, **row})
    other = {name: values for name, values in metrics["other"].items() if isinstance(values, dict)}
    recorded = {split for values in [*metrics["tasks"].values(), *other.values()] for split in values}
    splits = [split for split in METRIC_SPLITS if split in recorded]
    other_rows = [{"name": name, "values": [values.get(split) for split in splits]} for name, values in other.items()]
    return task_rows, other_rows, splits


def _reported_task_metrics(summary: dict, task: str, kind: str) -> tuple[str, dict[str, float | None]] | None:
    """`(split, {metric: value})` of a task (its kind's `REPORTED_METRICS`) from the test split, else validation, if
    either has any."""
    by_split = _metrics(summary)["tasks"].get(task) or {}
    for split in reversed(METRIC_SPLITS):
        values = by_split.get(split) or {}
        metrics = {
            metric: float(values[metric]) if is_number(values.get(metric)) else None
            for metric, *_ in REPORTED_METRICS[kind]
        }
        if any(value is not None for value in metrics.values()):
            return split, metrics
    return None


def eval_results(config: MultiTaskSTConfig, summary: dict) -> list[EvalResult]:
    """One model-index result per task and metric (its kind's `REPORTED_METRICS`, test split else validation), plus
    STS-B if measured. Embedding tasks are `sentence-similarity` on the Hub (`TASK_TYPES`); every other kind is
    `text-classification`, the type the Hub gives regression too (GLUE's STS-B)."""
    datasets = summary.get("datasets") if isinstance(summary.get("datasets"), dict) else {}
    results, seen = [], {}
    for task in config.task_names:
        kind = config.task_kinds[task]
        found = _reported_task_metrics(summary, task, kind)
        if found is None:
            continue  # no metric recorded for this task: nothing to report, nothing invented
        split, metrics = found
        info = datasets.get(task) or {}
        dataset_name = info.get("name") or as_hub_id(info.get("hub_id")) or task
        dataset_type = as_hub_id(info.get("hub_id")) or dataset_name
        # The Hub groups results by (task type, dataset, config, split): two heads trained on one dataset stay apart.
        dataset_config = task if (dataset_type, split) in seen else None
        seen[(dataset_type, split)] = task
        for metric, shown, metric_type, metric_config in REPORTED_METRICS[kind]:
            if metrics[metric] is not None:
                results.append(
                    EvalResult(
                        task_type=TASK_TYPES.get(kind, "text-classification"),
                        task_name=f"{TASK_NAMES[kind]} ({task})",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_config=dataset_config,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=shown,
                        metric_value=metrics[metric],
                        metric_config=metric_config,
                    )
                )
    stsb = reported_metric(summary, "stsb_spearman")
    if stsb is not None:
        info = datasets.get("stsb") or {}
        name = info.get("name") or "stsb"
        results.append(
            EvalResult(
                task_type="sentence-similarity",
                task_name="Semantic textual similarity",
                dataset_type=as_hub_id(info.get("hub_id")) or name,
                dataset_name=name,
                dataset_split=stsb[0],
                metric_type="spearmanr",
                metric_name="Spearman (cosine similarity)",
                metric_value=stsb[1],
            )
        )
    return results


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
