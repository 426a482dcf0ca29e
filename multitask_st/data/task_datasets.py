"""Task datasets for multi-task training: any dataset (built-in, local file, Hub) loaded as a `DatasetDict` with
splits `train`/`validation`/`test`, its columns renamed to `text` (and `text_pair`, `negative`) and `label`, every row
checked; missing splits carved out of train; seeded, stratified subsamples.

How each kind's label column is encoded is `labels.py`; the row checks are `validation.py`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Sequence as SequenceFeature
from transformers.utils import logging

from ..inference_multitask_st import (
    EMBEDDING_CONTRASTIVE,
    KIND_ALIASES,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_KINDS,
    REGRESSION,
    SINGLE_LABEL,
)
from ..task_fields_multitask_st import TASK_KINDS
from .corpora import BUILTIN_DATASETS
from .files import LOCAL_FORMATS, read_data_file
from .labels import (
    drop_unlabelled_splits,
    encode_class_labels,
    encode_multi_labels,
    encode_scores,
    label_names_of,
    output_names,
    regression_targets,
)
from .splitting import SPLITS, _check_sizes, _column, split_indices
from .validation import check_text_column, validate_task_dataset


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
        raw = DatasetDict({split: regression_targets(data, name, split, text_column, label_columns, label_names)
                           for split, data in raw.items()})  # fmt: skip
        label_names = label_names_of(next(iter(raw.values())).features["label"])
    else:
        raw = DatasetDict(
            {split: _text_label_columns(dataset, text_column, label_columns[0]) for split, dataset in raw.items()}
        )
        raw = drop_unlabelled_splits(raw, name) if kind == SINGLE_LABEL else raw
    for split, data in raw.items():  # before any split is carved out of train: rows are the source's
        check_text_column(data, f"Dataset {name!r}, split {split!r}", "text")
    if kind == SINGLE_LABEL:
        dataset, label_names = encode_class_labels(raw, label_names, name)
    elif kind == MULTI_LABEL and builtin is None:
        dataset, label_names = encode_multi_labels(raw, label_names, name, label_columns[0], label_delimiter)
    else:
        dataset = raw
    validate_task_dataset(dataset, dataset_name=name, label_names=label_names, kind=kind)  # every row checked
    if kind == SINGLE_LABEL and not isinstance(dataset["train"].features["label"], ClassLabel):  # ids, in range
        dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    dataset = _carve_missing_splits(dataset, {"validation": validation_size, "test": test_size}, seed, name)
    return DatasetDict({split: dataset[split] for split in SPLITS if split in dataset})


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
            check_text_column(data, where, column)
        if "negative" in data.column_names:
            check_text_column(data, where, "negative", optional=True)
    if kind == PAIR_CLASSIFICATION:
        raw = drop_unlabelled_splits(raw, name)
        dataset, label_names = encode_class_labels(raw, label_names, name)
        validate_task_dataset(dataset, dataset_name=name, label_names=label_names, text_column="text")
        if not isinstance(dataset["train"].features["label"], ClassLabel):
            dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    elif kind == EMBEDDING_CONTRASTIVE:
        dataset = DatasetDict({split: data.add_column("label", [0] * data.num_rows) for split, data in raw.items()})
    else:
        output_names(kind, label_column, label_names)  # checked before the rows are
        dataset = encode_scores(raw, name, kind)
    dataset = _carve_missing_splits(dataset, {"validation": validation_size, "test": test_size}, seed, name)
    return DatasetDict({split: dataset[split] for split in SPLITS if split in dataset})


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
