"""What a run takes from its training labels before the first step: `"balanced"` class and positive weights, and the
regression targets' scaling."""

from __future__ import annotations

import datasets
import numpy as np
from transformers.utils import logging

from ..inference_multitask_st import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from ..modeling_multitask_st import MultiTaskSTModel
from ..task_fields_multitask_st import BALANCED, normalize_task_loss_options


logger = logging.get_logger(__name__)


def fit_to_training_labels(model: MultiTaskSTModel, train_dataset: datasets.Dataset):
    """What a run takes from its training labels before the first step: `"balanced"` class weights and `pos_weight`
    become numbers (`config.task_loss_options`), and each regression task without a target scaling gets its targets'
    mean and std (`config.task_target_scaling`; unless its `normalize_targets` is False). A model that has a scaling
    already (trained before, or resumed) keeps it: its head's outputs mean that scaling."""
    config = model.config
    resolved = {task: dict(options) for task, options in config.task_loss_options.items()}
    needs = needing_label_statistics(config)
    if not needs or "label" not in train_dataset.column_names:
        return
    task_ids = np.asarray(train_dataset["task_id"])
    all_labels = train_dataset.with_format(None)["label"]
    for task in needs:
        rows = np.flatnonzero(task_ids == config.task_names.index(task))
        if len(rows) == 0:  # before the reshape, which cannot infer a width from no row
            raise ValueError(
                f"Task {task!r} has no training example to compute its {BALANCED!r} weights or scaling from."
            )
        values = np.asarray([all_labels[row] for row in rows], dtype=np.float64).reshape(len(rows), -1)
        kind, names, options = config.task_kinds[task], config.tasks[task], resolved.setdefault(task, {})
        if kind == SINGLE_LABEL and options.get("class_weights") == BALANCED:
            counts = np.bincount(values[:, 0].astype(int), minlength=len(names)).astype(np.float64)
            options["class_weights"] = _balanced(len(rows) / (len(names) * np.maximum(counts, 1)), counts, task, names)
        elif kind == MULTI_LABEL and options.get("pos_weight") == BALANCED:
            positives = values.sum(axis=0)
            options["pos_weight"] = _balanced(
                (len(rows) - positives) / np.maximum(positives, 1), positives, task, names
            )
        elif kind == REGRESSION:
            present = ~np.isnan(values)  # a row may leave an output without a target (NaN), as the loss allows
            if not present.any(axis=0).all():
                missing = [name for name, has in zip(names, present.any(axis=0), strict=True) if not has]
                raise ValueError(f"Regression task {task!r} has no training target for output(s) {missing}.")
            std = np.nanstd(values, axis=0)
            model.set_target_scaling(task, np.nanmean(values, axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())
            logger.info(
                f"Targets of {task!r} scaled by their training mean and std: {config.task_target_scaling[task]}"
            )
    config.task_loss_options = normalize_task_loss_options(resolved, config.tasks, config.task_kinds)


def needing_label_statistics(config, tasks: list[str] | None = None) -> list[str]:
    """The tasks (of `tasks`, default all) whose `"balanced"` weights or regression target scaling come from their
    training labels: `fit_to_training_labels` sets them."""
    options = config.task_loss_options
    return [
        task
        for task, kind in config.task_kinds.items()
        if (tasks is None or task in tasks)
        and (
            BALANCED in options.get(task, {}).values()
            or (
                kind == REGRESSION
                and task not in config.task_target_scaling
                and options.get(task, {}).get("normalize_targets", True)
            )
        )
    ]


def _balanced(weights: np.ndarray, counts: np.ndarray, task: str, names: list[str]) -> list[float]:
    absent = [name for name, count in zip(names, counts, strict=True) if count == 0]
    if absent:
        logger.warning(f"Task {task!r}: no training example has label(s) {absent}; their balanced weight is 1.")
    weights = np.where(counts > 0, weights, 1.0)
    weights = np.where(weights > 0, weights, 1.0)  # a label every example has: nothing to balance
    logger.info(f"Task {task!r}: balanced weights {dict(zip(names, np.round(weights, 3).tolist(), strict=True))}")
    return weights.tolist()
