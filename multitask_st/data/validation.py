"""The row-by-row checks of a task dataset before training: every error names the dataset, split, column, row and
value, so a bad row in a million is found without a debugger."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from ..inference_multitask_st import MULTI_LABEL, SINGLE_LABEL, has_content
from .splitting import _column


def show_value(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_label_id(label, num_labels: int) -> bool:
    """Whether `label` is an integer id in 0..num_labels - 1 (a bool is not)."""
    return isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < num_labels


def text_problem(text, optional: bool = False) -> str | None:
    """What is wrong with one text (None: nothing): a non-blank string is expected (`optional`: or None, as a
    triplet's missing hard negative). The map-style checks (`check_text_column`) and the streamed rows
    (`data/streaming.py`) both ask this."""
    if (optional and text is None) or (isinstance(text, str) and has_content(text)):
        return None
    problem = "empty text" if isinstance(text, str) else f"text of type {type(text).__name__}"
    return f"{problem} {show_value(text)}; expected a non-blank string (not only whitespace or control characters"


def validate_task_dataset(
    dataset: DatasetDict | Dataset,
    *,
    dataset_name: str,
    label_names: Sequence[str],
    text_column: str = "text",
    label_column: str = "label",
    kind: str = SINGLE_LABEL,
) -> None:
    """Checks a task dataset before training; raises a `ValueError` naming the dataset, split, column, row and value.

    Checks: at least one split and no empty split; both columns present; every text a non-blank string; every label
    an integer id of `label_names` (and a `ClassLabel` feature, if any, with exactly these names); for a multi-label
    task every label a list of such ids, for a regression task every label `{output: finite number}` of `label_names`.
    """
    if isinstance(dataset, Dataset):
        dataset = DatasetDict({dataset.split or "train": dataset})
    if not isinstance(dataset, DatasetDict):
        raise TypeError(f"Dataset {dataset_name!r} must be a DatasetDict or Dataset, got {type(dataset).__name__}.")
    label_names = list(label_names)
    if not dataset:
        raise ValueError(f"Dataset {dataset_name!r} has no splits.")
    for split, data in dataset.items():
        where = f"Dataset {dataset_name!r}, split {split!r}"
        for role, column in (("text", text_column), ("label", label_column)):
            if column not in data.column_names:
                raise ValueError(f"{where}: no {role} column {column!r}; its columns are {data.column_names}.")
        if data.num_rows == 0:
            raise ValueError(f"{where} is empty.")
        feature = data.features[label_column]
        if kind != SINGLE_LABEL:
            _check_label_rows(data, where, label_column, label_names, kind)
            check_text_column(data, where, text_column)
            continue
        if isinstance(feature, ClassLabel) and feature.names != label_names:
            raise ValueError(
                f"{where}, column {label_column!r}: its ClassLabel names {feature.names} differ from the task's "
                f"labels {label_names}; load it with `load_task_dataset(..., label_names=...)` to map them by name."
            )
        check_text_column(data, where, text_column)
        num_labels = len(label_names)
        bad_labels = [
            (row, label) for row, label in enumerate(_column(data, label_column)) if not is_label_id(label, num_labels)
        ]
        if bad_labels:
            row, label = bad_labels[0]
            raise ValueError(
                f"{where}, column {label_column!r}, row {row}: label {show_value(label)} is not a label id of the task; "
                f"expected an integer in 0..{num_labels - 1} for {label_names} ({len(bad_labels)} row(s) like this)."
            )


def _check_label_rows(data: Dataset, where: str, label_column: str, label_names: list[str], kind: str):
    for row, label in enumerate(_column(data, label_column)):
        if kind == MULTI_LABEL:
            good = isinstance(label, list) and all(is_label_id(i, len(label_names)) for i in label)
            expected = f"a list of label ids in 0..{len(label_names) - 1} for {label_names}"
        else:
            good = (
                isinstance(label, dict)
                and list(label) == label_names
                and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in label.values()
                )
            )
            expected = f"{{output: finite number}} for the outputs {label_names}"
        if not good:
            raise ValueError(
                f"{where}, column {label_column!r}, row {row}: label {show_value(label)}; expected {expected}."
            )


def check_text_column(data: Dataset, where: str, text_column: str, optional: bool = False):
    """Every text of the column a non-blank string (`optional`: or None, as a triplet's missing hard negative)."""
    problems = [(row, text_problem(text, optional)) for row, text in enumerate(_column(data, text_column))]
    bad_texts = [(row, problem) for row, problem in problems if problem is not None]
    if bad_texts:
        row, problem = bad_texts[0]
        raise ValueError(f"{where}, column {text_column!r}, row {row}: {problem}; {len(bad_texts)} row(s) like this).")
