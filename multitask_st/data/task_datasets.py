"""Task datasets for multi-task training: any dataset (built-in, local file, Hub) loaded, validated and tokenised.

Every task gets a `DatasetDict` with splits `train`/`validation`/`test` and two columns: `text` (str) and `label`, by
kind of task (`configuration_multitask_st.TASK_KINDS`): a `ClassLabel` whose names are the task's labels, in the
task's order (classification); a `Sequence(ClassLabel)`, the ids of a text's labels (multi-label, as multi-label sets
on the Hub hold them); a struct `{output: float32}`, one target per named output (regression). `label_names_of`
reads the task's label (or output) names back from the feature.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Sequence as SequenceFeature
from transformers.utils import logging

from ..inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    KIND_ALIASES,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_KINDS,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
    has_content,
)
from ..task_fields_multitask_st import TASK_KINDS
from .corpora import BUILTIN_DATASETS
from .files import LOCAL_FORMATS, read_data_file
from .splitting import SPLITS, _check_sizes, _column, split_indices


logger = logging.get_logger(__name__)

# Other names that datasets give the same splits.
_SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation", "eval": "validation"}


# --------------------------------------------------------------------------------------------------------------------
# Any dataset -> text/label DatasetDict
# --------------------------------------------------------------------------------------------------------------------


def load_task_dataset(
    name_or_path: str | os.PathLike,
    *,
    kind: str = SINGLE_LABEL,
    text_column: str = "text",
    label_column: str | Sequence[str] = "label",
    label_names: Sequence[str] | None = None,
    label_delimiter: str = ",",
    seed: int = 0,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    text_pair_column: str | None = None,
    negative_column: str | None = None,
    **load_kwargs,
) -> DatasetDict:
    """Loads a task's dataset as a `DatasetDict` (train/validation/test) with columns `text` and `label`.

    Args:
        name_or_path: a built-in name (see `BUILTIN_DATASETS`), a local `.csv`/`.tsv`/`.json`/`.jsonl`/`.parquet`
            file, a folder (`save_to_disk` output or data files) or a Hub dataset id (`"ag_news"`,
            `"stanfordnlp/sst2"` with `text_column="sentence"`...).
        kind: the kind of task (`"classification"`, `"multi_label"` or `"regression"`).
        text_column, label_column: the source's column names; they become `text` and `label`. A regression task
            may name several label columns (a list), one per output.
        label_names: the task's labels in id order (for regression: the outputs' names, by default the label
            columns'). String labels are mapped through it; `ClassLabel` labels are mapped by name (so a source
            ordered differently is not mis-labelled); plain ints must be in range. Defaults to the source's
            `ClassLabel` names, else the sorted set of string labels.
        label_delimiter: for a multi-label task whose labels come as one string per row (a CSV cell such as
            `"sports,politics"`): what separates them. Lists (JSON, Parquet, the Hub) need none; an empty cell is a
            text with no label.
        seed, validation_size, test_size: a missing validation or test split is carved out of train with a seeded,
            stratified split of these fractions (0 leaves it out).
        text_pair_column, negative_column: for pair and embedding tasks (`"pair_classification"`,
            `"pair_regression"`, `"embedding"`, `"embedding_contrastive"`), the source's columns of second texts and
            (contrastive only, optional per row) hard negatives; they become `text_pair` and `negative`. A
            `pair_regression` or `embedding` task's label is a real-valued score (its one name: `label_names`, else
            the label column's / `"cosine_similarity"`); an `embedding_contrastive` task reads no label.
        load_kwargs: passed to `datasets.load_dataset` (`name`, `revision`, `data_files`, `cache_dir`...).

    Example:
        >>> dataset = load_task_dataset("rotten_tomatoes", label_names=["negative", "positive"], seed=0)
        >>> dataset["train"].features["label"].names
        ['negative', 'positive']
    """
    _check_sizes(validation_size, test_size)
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in TASK_KINDS:
        raise ValueError(f"`kind` must be one of {list(TASK_KINDS)}, got {kind!r}.")
    label_columns = [label_column] if isinstance(label_column, str) else list(label_column)
    if len(label_columns) != 1 and kind != REGRESSION:
        raise ValueError(f"A {kind} task reads one label column, got {label_columns}; several are for regression.")
    name = os.fspath(name_or_path)
    if (kind in PAIR_KINDS) != (text_pair_column is not None) or (negative_column and kind != EMBEDDING_CONTRASTIVE):
        raise ValueError(
            f"Dataset {name!r}: a {kind} task takes "
            + (
                "pairs of texts; pass `text_pair_column=`"
                if kind in PAIR_KINDS
                else "single texts, not `text_pair_column`"
            )
            + (
                f" (hard negatives, `negative_column`, are for {EMBEDDING_CONTRASTIVE} tasks)"
                if negative_column
                else ""
            )
            + "."
        )
    builtin = BUILTIN_DATASETS.get(name)
    if builtin is not None and kind in PAIR_KINDS:
        if load_kwargs:
            raise ValueError(f"Built-in dataset {name!r} takes no loading options, got {sorted(load_kwargs)}.")
        raw = builtin.loader() if builtin.label_names is None else builtin.loader(seed=seed)
        return _pair_task_dataset(
            raw, name, kind, text_column, text_pair_column, negative_column, label_column, label_names, seed,
            validation_size, test_size,
        )  # fmt: skip
    if builtin is not None:
        if builtin.label_names is None:
            raise ValueError(f"Built-in dataset {name!r} is not a classification dataset; load it with `{name}()`.")
        if builtin.kind != kind:
            raise ValueError(
                f"Built-in dataset {name!r} holds {builtin.kind} labels, not {kind} ones: load it with "
                f"kind={builtin.kind!r} (`--task_kinds <task>={builtin.kind}`)."
            )
        if load_kwargs:
            raise ValueError(f"Built-in dataset {name!r} takes no loading options, got {sorted(load_kwargs)}.")
        raw = builtin.loader(seed=seed, validation_size=validation_size, test_size=test_size)
    else:
        raw = _load_raw(name, load_kwargs)

    if kind in PAIR_KINDS:
        return _pair_task_dataset(
            raw, name, kind, text_column, text_pair_column, negative_column, label_column, label_names, seed,
            validation_size, test_size,
        )  # fmt: skip
    raw = _rename_splits(raw, name)
    if "train" not in raw:
        raise ValueError(f"Dataset {name!r} has no train split; its splits are {list(raw)}.")
    for split, dataset in raw.items():
        missing = [column for column in (text_column, *label_columns) if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Dataset {name!r}, split {split!r}: no column(s) {missing}; its columns are {dataset.column_names}. "
                "Pass `text_column=` / `label_column=`."
            )
    if builtin is not None and kind != SINGLE_LABEL:  # loaded as the kind's dataset already
        if label_names is not None and list(label_names) != builtin.label_names:
            raise ValueError(
                f"Built-in dataset {name!r} has the labels {builtin.label_names}, got {list(label_names)}."
            )
        label_names = list(builtin.label_names)
    elif kind == REGRESSION:
        raw = DatasetDict({split: _targets(data, name, split, text_column, label_columns, label_names)
                           for split, data in raw.items()})  # fmt: skip
        label_names = label_names_of(next(iter(raw.values())).features["label"])
    else:
        raw = DatasetDict(
            {split: _text_label_columns(dataset, text_column, label_columns[0]) for split, dataset in raw.items()}
        )
        raw = _drop_unlabelled_splits(raw, name) if kind == SINGLE_LABEL else raw
    for split, data in raw.items():  # before any split is carved out of train: rows are the source's
        _check_text_column(data, f"Dataset {name!r}, split {split!r}", "text")
    if kind == SINGLE_LABEL:
        dataset, label_names = _encode_labels(raw, label_names, name)
    elif kind == MULTI_LABEL and builtin is None:
        dataset, label_names = _encode_multi_labels(raw, label_names, name, label_columns[0], label_delimiter)
    else:
        dataset = raw
    validate_task_dataset(dataset, dataset_name=name, label_names=label_names, kind=kind)  # every row checked
    if kind == SINGLE_LABEL and not isinstance(dataset["train"].features["label"], ClassLabel):  # ids, in range
        dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    dataset = _carve_missing_splits(dataset, {"validation": validation_size, "test": test_size}, seed, name)
    return DatasetDict({split: dataset[split] for split in SPLITS if split in dataset})


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


def _pair_task_dataset(
    raw, name, kind, text_column, text_pair_column, negative_column, label_column, label_names, seed,
    validation_size, test_size,
) -> DatasetDict:  # fmt: skip
    """A pair or embedding task's `DatasetDict`: `text`, `text_pair` (and `negative`) and `label` (a `ClassLabel` for
    `pair_classification`, a float32 score for `pair_regression` / `embedding`, 0 for `embedding_contrastive`); every
    text checked, an error naming the split, column and row."""
    raw = _rename_splits(raw, name)
    if "train" not in raw:
        raise ValueError(f"Dataset {name!r} has no train split; its splits are {list(raw)}.")
    columns = {"text": text_column, "text_pair": text_pair_column, "negative": negative_column}
    columns["label"] = None if kind == EMBEDDING_CONTRASTIVE else label_column
    columns = {role: column for role, column in columns.items() if column is not None}
    for split, dataset in raw.items():
        missing = [column for column in columns.values() if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Dataset {name!r}, split {split!r}: no column(s) {missing}; its columns are {dataset.column_names}. "
                "Pass `text_column=` / `text_pair_column=` / `label_column=`."
            )
    if len(set(columns.values())) != len(columns):
        raise ValueError(f"Dataset {name!r}: each of {list(columns)} needs a column of its own, got {columns}.")
    raw = DatasetDict(
        {split: data.select_columns(list(columns.values())).rename_columns(
            {old: new for new, old in columns.items() if old != new}) for split, data in raw.items()}
    )  # fmt: skip
    for split, data in raw.items():  # before any split is carved out of train: rows are the source's
        where = f"Dataset {name!r}, split {split!r}"
        for column in ("text", "text_pair"):
            _check_text_column(data, where, column)
        if "negative" in data.column_names:
            _check_text_column(data, where, "negative", optional=True)
    if kind == PAIR_CLASSIFICATION:
        raw = _drop_unlabelled_splits(raw, name)
        dataset, label_names = _encode_labels(raw, label_names, name)
        validate_task_dataset(dataset, dataset_name=name, label_names=label_names, text_column="text")
        if not isinstance(dataset["train"].features["label"], ClassLabel):
            dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    elif kind == EMBEDDING_CONTRASTIVE:
        dataset = DatasetDict({split: data.add_column("label", [0] * data.num_rows) for split, data in raw.items()})
    else:
        output_names(kind, label_column, label_names)  # checked before the rows are
        dataset = _encode_scores(raw, name, kind)
    dataset = _carve_missing_splits(dataset, {"validation": validation_size, "test": test_size}, seed, name)
    return DatasetDict({split: dataset[split] for split in SPLITS if split in dataset})


def _encode_scores(raw: DatasetDict, name: str, kind: str) -> DatasetDict:
    """The `label` column as float32 scores, each checked: a finite real number (numbers written as strings are
    read); an error names the split, the row and the value."""
    result = {}
    for split, data in raw.items():
        scores, bad = [], []
        for row, value in enumerate(_column(data, "label")):
            score = _as_score(value)
            if score is None:
                bad.append((row, value))
            scores.append(score)
        if bad:
            row, value = bad[0]
            raise ValueError(
                f"Dataset {name!r}, split {split!r}, column 'label', row {row}: score {_show(value)} is not a "
                f"finite number; a {kind} task needs a real-valued score on every row ({len(bad)} row(s) like this)."
            )
        result[split] = data.remove_columns("label").add_column("label", scores, feature=Value("float32"))
    return DatasetDict(result)


def _as_score(value) -> float | None:
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


def _targets(
    data: Dataset, name: str, split: str, text_column: str, columns: list[str], output_names: Sequence[str] | None
) -> Dataset:
    """`text` and `label` = `{output: float}` from one numeric column per output; a row without a number is named."""
    output_names = list(output_names) if output_names is not None else list(columns)
    if len(output_names) != len(columns) or len(set(output_names)) != len(output_names):
        raise ValueError(
            f"Dataset {name!r}: a regression task names one distinct output per label column {columns}, got "
            f"`label_names` {output_names}."
        )
    values = {}
    for column, output in zip(columns, output_names, strict=True):
        values[output] = []
        for row, value in enumerate(_column(data, column)):
            number = value
            if isinstance(value, str):
                try:
                    number = float(value.strip())
                except ValueError:
                    number = None
            if isinstance(number, bool) or not isinstance(number, (int, float, np.number)) or not np.isfinite(number):
                raise ValueError(
                    f"Dataset {name!r}, split {split!r}, column {column!r}, row {row}: {_show(value)} is not a "
                    "number; a regression target must be a finite number."
                )
            values[output].append(float(number))
    features = Features({"text": Value("string"), "label": {output: Value("float32") for output in output_names}})
    label = [dict(zip(output_names, row, strict=True)) for row in zip(*values.values(), strict=True)]
    return Dataset.from_dict({"text": _column(data, text_column), "label": label}, features=features, split=split)


def _encode_multi_labels(
    raw: DatasetDict, label_names: Sequence[str] | None, name: str, column: str, delimiter: str
) -> tuple[DatasetDict, list[str]]:
    """The `label` column as the sorted ids of each text's labels (`Sequence(ClassLabel)`): from lists of names or
    ids, a `Sequence(ClassLabel)` (mapped by name), or strings of names joined by `delimiter`."""
    feature = raw["train"].features["label"]
    inner = (
        feature.feature if isinstance(feature, SequenceFeature) else feature[0] if isinstance(feature, list) else None
    )
    source_names = list(inner.names) if isinstance(inner, ClassLabel) else None
    rows = {}
    for split, data in raw.items():
        rows[split] = []
        for row, value in enumerate(_column(data, "label")):
            if value is None or value == "":
                value = []  # an empty cell: a text with none of the labels
            elif isinstance(value, str):
                value = [part.strip() for part in value.split(delimiter) if part.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError(
                    f"Dataset {name!r}, split {split!r}, column {column!r}, row {row}: {_show(value)} is not a list "
                    f"of labels or a {delimiter!r}-separated string of them."
                )
            if source_names is not None:
                value = [source_names[i] for i in value]
            rows[split].append((row, value))
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
        column_ids = []
        for row, labels in split_rows:
            row_ids = set()
            for label in labels:
                if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < len(ids):
                    row_ids.add(int(label))
                elif label in ids:
                    row_ids.add(ids[label])
                else:
                    raise ValueError(
                        f"Dataset {name!r}, split {split!r}, column {column!r}, row {row}: label {_show(label)} is not "
                        f"one of the task's labels {label_names}."
                    )
            column_ids.append(sorted(row_ids))
        features = Features({"text": Value("string"), "label": SequenceFeature(ClassLabel(names=label_names))})
        data = raw[split]
        encoded[split] = Dataset.from_dict(
            {"text": _column(data, "text"), "label": column_ids}, features=features, split=split
        )
    return DatasetDict(encoded), label_names


def _carve_missing_splits(dataset: DatasetDict, sizes: dict[str, float], seed: int, name: str) -> DatasetDict:
    """Missing validation/test splits carved out of train with seeded splits stratified by label (`datasets`'
    `train_test_split`; not stratified for multi-label and regression tasks); a size of 0 leaves that split out."""
    sizes = {split: size for split, size in sizes.items() if size and split not in dataset}
    if not sizes:
        return dataset
    train = dataset["train"]
    stratify = "label" if isinstance(train.features["label"], ClassLabel) else None
    num_held = round(train.num_rows * sum(sizes.values()))
    try:
        parts = train.train_test_split(test_size=num_held, seed=seed, stratify_by_column=stratify)
        if len(sizes) == 2:  # the held-out rows, divided between validation and test
            num_test = round(num_held * sizes["test"] / sum(sizes.values()))
            held = parts["test"].train_test_split(test_size=num_test, seed=seed, stratify_by_column=stratify)
            held_out = {"validation": held["train"], "test": held["test"]}
        else:
            held_out = {next(iter(sizes)): parts["test"]}
    except ValueError as error:  # too few rows of some label to stratify
        raise ValueError(
            f"Dataset {name!r}: cannot carve {list(sizes)} ({sizes}) out of its {train.num_rows} training rows: "
            f"{error} Give it a validation/test split or pass other `validation_size`/`test_size`."
        ) from None
    logger.info(f"Dataset {name!r}: made {list(sizes)} from train.")
    return DatasetDict({**dataset, "train": parts["train"], **held_out})


def _load_raw(name: str, load_kwargs: dict) -> DatasetDict:
    path = Path(name)
    suffix = path.suffix.lower()
    if path.is_file() or suffix in LOCAL_FORMATS:
        raw = read_data_file(path, load_kwargs)
    elif path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        raw = datasets.load_from_disk(str(path))
    else:
        # A folder of data files, a packaged builder ("csv" with `data_files=`) or a Hub dataset id.
        near = difflib.get_close_matches(name, BUILTIN_DATASETS, n=1, cutoff=0.75)
        if near and not path.exists():  # a typo of a built-in name would otherwise go to the Hub
            raise ValueError(
                f"Dataset {name!r} is not a built-in dataset (did you mean {near[0]!r}?); the built-ins are "
                f"{sorted(BUILTIN_DATASETS)}. Anything else is read as a local file or folder, or a Hub dataset id."
            )
        try:
            raw = datasets.load_dataset(name, **load_kwargs)
        except Exception as error:
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(
                    f"Dataset {name!r} is neither a built-in dataset {sorted(BUILTIN_DATASETS)} nor a local file or "
                    "folder, so it was looked up as a Hub dataset id."
                )
            raise
    if isinstance(raw, Dataset):
        raw = DatasetDict({"train": raw})
    if not isinstance(raw, DatasetDict):
        raise TypeError(f"Dataset {name!r} loaded as {type(raw).__name__}; streaming datasets are not supported.")
    return raw


def _rename_splits(raw: DatasetDict, name: str) -> DatasetDict:
    renamed = {}
    for split, dataset in raw.items():
        target = _SPLIT_ALIASES.get(split, split)
        if target not in SPLITS:
            logger.warning(f"Dataset {name!r}: ignoring split {split!r} (only {list(SPLITS)} are used).")
        elif target in renamed:
            raise ValueError(f"Dataset {name!r} has two splits that mean {target!r}: {list(raw)}.")
        else:
            renamed[target] = dataset
    return DatasetDict(renamed)


def _text_label_columns(dataset: Dataset, text_column: str, label_column: str) -> Dataset:
    dataset = dataset.select_columns([text_column, label_column])
    renames = {old: new for old, new in ((text_column, "text"), (label_column, "label")) if old != new}
    return dataset.rename_columns(renames) if renames else dataset


def _drop_unlabelled_splits(raw: DatasetDict, name: str) -> DatasetDict:
    # Benchmarks such as GLUE ship their test split without labels (all -1); such a split is rebuilt from train.
    kept = {}
    for split, dataset in raw.items():
        if split != "train" and all(label is None or label == -1 for label in _column(dataset, "label")):
            logger.warning(f"Dataset {name!r}: split {split!r} has no labels; making one from train instead.")
        else:
            kept[split] = dataset
    return DatasetDict(kept)


def _encode_labels(raw: DatasetDict, label_names: Sequence[str] | None, name: str) -> tuple[DatasetDict, list[str]]:
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


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def _show(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
            _check_text_column(data, where, text_column)
            continue
        if isinstance(feature, ClassLabel) and feature.names != label_names:
            raise ValueError(
                f"{where}, column {label_column!r}: its ClassLabel names {feature.names} differ from the task's "
                f"labels {label_names}; load it with `load_task_dataset(..., label_names=...)` to map them by name."
            )
        _check_text_column(data, where, text_column)
        num_labels = len(label_names)
        bad_labels = [
            (row, label)
            for row, label in enumerate(_column(data, label_column))
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < num_labels
        ]
        if bad_labels:
            row, label = bad_labels[0]
            raise ValueError(
                f"{where}, column {label_column!r}, row {row}: label {_show(label)} is not a label id of the task; "
                f"expected an integer in 0..{num_labels - 1} for {label_names} ({len(bad_labels)} row(s) like this)."
            )


def _check_label_rows(data: Dataset, where: str, label_column: str, label_names: list[str], kind: str):
    for row, label in enumerate(_column(data, label_column)):
        if kind == MULTI_LABEL:
            good = isinstance(label, list) and all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < len(label_names)
                for i in label
            )
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
                f"{where}, column {label_column!r}, row {row}: label {_show(label)}; expected {expected}."
            )


def _check_text_column(data: Dataset, where: str, text_column: str, optional: bool = False):
    """Every text of the column a non-blank string (`optional`: or None, as a triplet's missing hard negative)."""
    texts = _column(data, text_column)
    bad_texts = [
        (row, text)
        for row, text in enumerate(texts)
        if not (optional and text is None) and (not isinstance(text, str) or not has_content(text))
    ]
    if bad_texts:
        row, text = bad_texts[0]
        problem = "empty text" if isinstance(text, str) else f"text of type {type(text).__name__}"
        raise ValueError(
            f"{where}, column {text_column!r}, row {row}: {problem} {_show(text)}; expected a non-blank string "
            f"(not only whitespace or control characters; {len(bad_texts)} row(s) like this)."
        )


# --------------------------------------------------------------------------------------------------------------------
# Subsampling, summaries
# --------------------------------------------------------------------------------------------------------------------


def subsample(
    dataset_dict: DatasetDict,
    max_samples: Mapping[str, int | None] | int | None,
    seed: int = 0,
    *,
    label_column: str = "label",
) -> DatasetDict:
    """Keeps at most `max_samples[split]` rows of each split (an int applies to every split; `None`: all rows).

    Seeded and stratified by `label_column` when the split has one, so short demo runs keep the label mix.
    """
    if max_samples is None:
        return dataset_dict
    if not isinstance(max_samples, Mapping):
        max_samples = dict.fromkeys(dataset_dict, max_samples)
    unknown = sorted(set(max_samples) - set(dataset_dict))
    if unknown:
        raise ValueError(f"`max_samples` names splits {unknown} that the dataset lacks; it has {list(dataset_dict)}.")
    result = {}
    for split, data in dataset_dict.items():
        limit = max_samples.get(split)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ValueError(f"`max_samples[{split!r}]` must be a positive integer or None, got {limit!r}.")
        if limit is None or limit >= data.num_rows:
            result[split] = data
            continue
        stratified = label_column in data.column_names and not isinstance(
            data.features[label_column], (SequenceFeature, list, dict)
        )  # a multi-label or regression label has no class to stratify by
        labels = _column(data, label_column) if stratified else [0] * data.num_rows
        keep = split_indices(labels, validation_size=0.0, test_size=limit / data.num_rows, seed=seed)["test"]
        result[split] = data.select(sorted(keep))
    return DatasetDict(result)
