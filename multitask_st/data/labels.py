"""Each kind's label column, read from whatever the source holds and encoded the one way training reads it.

By kind of task (`task_fields_multitask_st.TASK_KINDS`): a `ClassLabel` whose names are the task's labels, in the
task's order (classification, pair classification); a `Sequence(ClassLabel)`, the ids of a text's labels
(multi-label, as multi-label sets on the Hub hold them); a struct `{output: float32}`, one target per named output
(regression); a float32 score (pair regression, embedding). `label_names_of` reads the task's label (or output) names
back from the feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Sequence as SequenceFeature
from transformers.utils import logging

from ..inference_multitask_st import EMBEDDING, MULTI_LABEL, PAIR_REGRESSION, REGRESSION, SINGLE_LABEL
from .splitting import _column
from .validation import is_label_id, show_value


logger = logging.get_logger(__name__)

# The kinds whose labels are real-valued scores, and the name each gives its one output when none is given.
SCORE_KINDS = {PAIR_REGRESSION: None, EMBEDDING: "cosine_similarity"}  # None: the label column's name


def output_names(kind: str, label_column: str = "label", label_names: Sequence[str] | None = None) -> list[str]:
    """The one name of a score or embedding task's output (`config.tasks[task]`): `label_names`' one name, else the
    label column's for `pair_regression`, `"cosine_similarity"` for embedding tasks."""
    if label_names is not None:
        names = list(label_names)
        if len(names) != 1:
            raise ValueError(f"A {kind} task has one output name, got `label_names={names}`.")
        return names
    return [SCORE_KINDS.get(kind) or (label_column if kind == PAIR_REGRESSION else "cosine_similarity")]


def encode_scores(raw: DatasetDict, name: str, kind: str) -> DatasetDict:
    """The `label` column as float32 scores, each checked: a finite real number (numbers written as strings are
    read); an error names the split, the row and the value."""
    result = {}
    for split, data in raw.items():
        scores, bad = [], []
        for row, value in enumerate(_column(data, "label")):
            score = finite_number(value)
            if score is None:
                bad.append((row, value))
            scores.append(score)
        if bad:
            row, value = bad[0]
            raise ValueError(
                f"Dataset {name!r}, split {split!r}, column 'label', row {row}: score {show_value(value)} is not a "
                f"finite number; a {kind} task needs a real-valued score on every row ({len(bad)} row(s) like this)."
            )
        result[split] = data.remove_columns("label").add_column("label", scores, feature=Value("float32"))
    return DatasetDict(result)


def finite_number(value) -> float | None:
    """A score or regression target: a finite real number, or one written as a string; None for anything else
    (a bool, None, NaN, text). The map-style encoders and the streamed rows (`data/streaming.py`) both read with it."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        score = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return score if np.isfinite(score) else None


def label_names_of(feature) -> list[str]:
    """A task dataset's label (or output) names from its `label` feature, whatever the kind."""
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if isinstance(feature, SequenceFeature) and isinstance(feature.feature, ClassLabel):
        return list(feature.feature.names)
    if isinstance(feature, list) and feature and isinstance(feature[0], ClassLabel):  # datasets >= 4: [ClassLabel]
        return list(feature[0].names)
    if isinstance(feature, dict):
        return list(feature)
    raise ValueError(f"The label feature {feature} is not a task's: expected ClassLabel, [ClassLabel] or a struct.")


def kind_of(feature) -> str:
    """The kind of task a task dataset's `label` feature serves."""
    if isinstance(feature, ClassLabel):
        return SINGLE_LABEL
    return REGRESSION if isinstance(feature, dict) else MULTI_LABEL


def regression_targets(
    data: Dataset, name: str, split: str, text_column: str, columns: list[str], output_names: Sequence[str] | None
) -> Dataset:
    """`text` and `label` = `{output: float}` from one numeric column per output; a row without a number is named."""
    output_names = regression_outputs(name, columns, output_names)
    values = {}
    for column, output in zip(columns, output_names, strict=True):
        values[output] = []
        for row, value in enumerate(_column(data, column)):
            values[output].append(regression_target(value, _where(name, split, column, row)))
    features = Features({"text": Value("string"), "label": {output: Value("float32") for output in output_names}})
    label = [dict(zip(output_names, row, strict=True)) for row in zip(*values.values(), strict=True)]
    return Dataset.from_dict({"text": _column(data, text_column), "label": label}, features=features, split=split)


def regression_outputs(name: str, columns: list[str], output_names: Sequence[str] | None) -> list[str]:
    """A regression task's output names: one per label column, `output_names` or the columns' own names."""
    output_names = list(output_names) if output_names is not None else list(columns)
    if len(output_names) != len(columns) or len(set(output_names)) != len(output_names):
        raise ValueError(
            f"Dataset {name!r}: a regression task names one distinct output per label column {columns}, got "
            f"`label_names` {output_names}."
        )
    return output_names


def regression_target(value, where: str) -> float:
    """One regression target as a float; `where` (dataset, split, column, row) names a bad one."""
    number = finite_number(value)
    if number is None:
        raise ValueError(f"{where}: {show_value(value)} is not a number; a regression target must be a finite number.")
    return number


def multi_label_values(value, delimiter: str, source_names: list[str] | None, where: str) -> list:
    """One row's labels as a list of names (or ids): from a list of names or ids, a `Sequence(ClassLabel)`'s ids
    (`source_names`: mapped to names), a `delimiter`-joined string, or an empty cell (no label)."""
    if value is None or value == "":
        return []  # an empty cell: a text with none of the labels
    if isinstance(value, str):
        value = [part.strip() for part in value.split(delimiter) if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{where}: {show_value(value)} is not a list of labels or a {delimiter!r}-separated string of them."
        )
    return [source_names[i] for i in value] if source_names is not None else list(value)


def multi_label_ids(labels: list, ids: dict[str, int], where: str) -> list[int]:
    """One row's labels (names or ids, as `multi_label_values` gives them) as the sorted ids of the task's labels
    (`ids`: name -> id); `where` names a label that is not one."""
    row_ids = set()
    for label in labels:
        if is_label_id(label, len(ids)):
            row_ids.add(int(label))
        elif isinstance(label, str) and label in ids:
            row_ids.add(ids[label])
        else:
            raise ValueError(f"{where}: label {show_value(label)} is not one of the task's labels {list(ids)}.")
    return sorted(row_ids)


def encode_multi_labels(
    raw: DatasetDict, label_names: Sequence[str] | None, name: str, column: str, delimiter: str
) -> tuple[DatasetDict, list[str]]:
    """The `label` column as the sorted ids of each text's labels (`Sequence(ClassLabel)`): from lists of names or
    ids, a `Sequence(ClassLabel)` (mapped by name), or strings of names joined by `delimiter`."""
    source_names = multi_label_source_names(raw["train"].features["label"])
    rows = {}
    for split, data in raw.items():
        rows[split] = [
            (row, multi_label_values(value, delimiter, source_names, _where(name, split, column, row)))
            for row, value in enumerate(_column(data, "label"))
        ]
    if label_names is None:
        found = {label for split_rows in rows.values() for _, labels in split_rows for label in labels}
        if any(not isinstance(label, str) for label in found):
            raise ValueError(f"Dataset {name!r}: integer multi-labels need `label_names` (the names in id order).")
        label_names = source_names or sorted(found)
        logger.warning(f"Dataset {name!r}: no `label_names` given; using {label_names}.")
    label_names = list(label_names)
    ids = {label: i for i, label in enumerate(label_names)}
    encoded = {}
    for split, split_rows in rows.items():
        column_ids = [multi_label_ids(labels, ids, _where(name, split, column, row)) for row, labels in split_rows]
        features = Features({"text": Value("string"), "label": SequenceFeature(ClassLabel(names=label_names))})
        data = raw[split]
        encoded[split] = Dataset.from_dict(
            {"text": _column(data, "text"), "label": column_ids}, features=features, split=split
        )
    return DatasetDict(encoded), label_names


def class_label_id(label, ids: dict[str, int], source_names: list[str] | None, where: str) -> int:
    """One row's class as an id of the task's labels (`ids`: name -> id): a name, an id, or a source `ClassLabel`'s
    id (`source_names`: mapped by name); `where` names a label that is none of these."""
    if source_names is not None and is_label_id(label, len(source_names)):
        label = source_names[label]  # a ClassLabel id: mapped by name
    if isinstance(label, str) and label in ids:
        return ids[label]
    if is_label_id(label, len(ids)):
        return int(label)
    raise ValueError(f"{where}: label {show_value(label)} is not one of the task's labels {list(ids)} (or their ids).")


def multi_label_source_names(feature) -> list[str] | None:
    """The label names of a source's `Sequence(ClassLabel)` multi-label column (None for other columns)."""
    inner = (
        feature.feature if isinstance(feature, SequenceFeature) else feature[0] if isinstance(feature, list) else None
    )
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def _where(name: str, split: str, column: str, row: int) -> str:
    return f"Dataset {name!r}, split {split!r}, column {column!r}, row {row}"


def drop_unlabelled_splits(raw: DatasetDict, name: str) -> DatasetDict:
    # Benchmarks such as GLUE ship their test split without labels (all -1); such a split is rebuilt from train.
    kept = {}
    for split, dataset in raw.items():
        if split != "train" and all(label is None or label == -1 for label in _column(dataset, "label")):
            logger.warning(f"Dataset {name!r}: split {split!r} has no labels; making one from train instead.")
        else:
            kept[split] = dataset
    return DatasetDict(kept)


def encode_class_labels(
    raw: DatasetDict, label_names: Sequence[str] | None, name: str
) -> tuple[DatasetDict, list[str]]:
    """The `label` column as ids of `label_names`: a `ClassLabel` column (integer sources stay plain ints, to be
    range-checked with their rows by `validate_task_dataset` before they are cast)."""
    feature = raw["train"].features["label"]
    for split, dataset in raw.items():
        if dataset.features["label"] != feature:
            raise ValueError(
                f"Dataset {name!r}: the label column of split {split!r} is {dataset.features['label']}, but train's "
                f"is {feature}."
            )

    if isinstance(feature, ClassLabel):
        if label_names is None or list(label_names) == feature.names:
            return raw, list(feature.names)
        label_names = list(label_names)
        unknown = [label for label in feature.names if label not in label_names]
        if unknown:
            raise ValueError(
                f"Dataset {name!r} has labels {unknown} that are not labels of the task {label_names} (its labels "
                f"are {feature.names})."
            )
        logger.info(f"Dataset {name!r}: mapped its labels {feature.names} onto the task's {label_names} by name.")
        # By name: the source's id i becomes the task's id of the source's i-th name.
        return raw.align_labels_with_mapping({label: i for i, label in enumerate(label_names)}, "label"), label_names
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        if label_names is None:
            values = {label for dataset in raw.values() for label in _column(dataset, "label") if label is not None}
            label_names = sorted(values)  # over every split (`class_encode_column` would name each split's own)
            logger.warning(f"Dataset {name!r}: no `label_names` given; using the sorted string labels {label_names}.")
        label_names = list(label_names)
        for split, dataset in raw.items():
            for row, label in enumerate(_column(dataset, "label")):
                if label is not None and label not in label_names:
                    raise ValueError(
                        f"Dataset {name!r}, split {split!r}, column 'label', row {row}: label {label!r} is not one "
                        f"of the task's labels {label_names}."
                    )
        # Strings become ids by name (a missing label stays missing, for `validate_task_dataset` to report).
        return raw.cast_column("label", ClassLabel(names=label_names)), label_names
    if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        if label_names is None:
            largest = max(max(_column(dataset, "label"), default=0) for dataset in raw.values())
            label_names = [str(i) for i in range(largest + 1)]
            logger.warning(f"Dataset {name!r}: integer labels and no `label_names`; naming them {label_names}.")
        return raw, list(label_names)
    raise ValueError(
        f"Dataset {name!r}: the label column holds {feature}; expected strings, integers or a ClassLabel."
    )
