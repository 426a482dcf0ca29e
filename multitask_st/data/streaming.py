"""A task's data as a stream: rows read as training needs them (local files or the Hub with `streaming=True`), never
the whole set in memory or on disk. Every kind of task streams (`task_fields_multitask_st.TASK_KINDS`).

The map-style loader (`task_datasets.load_task_dataset`) reads a task whole: it finds the label names, validates every
row and carves stratified validation/test splits. A stream cannot be read whole first, so here:

- the label names come from the source's `ClassLabel` (or `Sequence(ClassLabel)`) feature or are declared
  (`label_names`; a regression task's outputs default to its label columns, a score's to its column);
- every row is encoded and checked as it streams past, by the map-style loader's own per-value functions
  (`labels.py`: class ids, multi-label lists or delimited strings, scores, regression targets; `validation.py`: texts),
  so a streamed row becomes exactly the row `load_task_dataset` makes of it; a bad row stops training, naming the
  stream, split, column, row and value;
- the validation and test splits are the source's own (Hub datasets that have them) or the first rows of the stream,
  held out as small map-style datasets with the map-style loader's features: training then leaves out every row with
  a held-out text (a pair task: a held-out pair of texts; a set of at most twice `held_out` keys), so no held-out row
  is ever trained on, duplicates included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, IterableDataset, Value
from datasets import Sequence as SequenceFeature

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
from .files import LOCAL_FORMATS, builder_options
from .labels import (
    class_label_id,
    finite_number,
    multi_label_ids,
    multi_label_source_names,
    multi_label_values,
    output_names,
    regression_outputs,
    regression_target,
)
from .validation import show_value, text_problem


# Split names a streamed source may give its held-out data under (the map-style loader's aliases).
_HELD_OUT_SPLITS = {"validation": ("validation", "dev", "valid", "val", "eval"), "test": ("test",)}
# The kinds whose label is one class of several (a `ClassLabel`).
_CLASS_KINDS = (SINGLE_LABEL, PAIR_CLASSIFICATION)


def load_task_stream(
    name_or_path: str | os.PathLike,
    *,
    kind: str = SINGLE_LABEL,
    text_column: str = "text",
    label_column: str | Sequence[str] = "label",
    label_names: Sequence[str] | None = None,
    label_delimiter: str = ",",
    text_pair_column: str | None = None,
    negative_column: str | None = None,
    held_out: int = 1000,
    **load_kwargs,
) -> tuple[IterableDataset, DatasetDict, list[str]]:
    """Opens a task's data as a stream: the streaming counterpart of `load_task_dataset`, with its arguments.

    Args:
        name_or_path: a local `.csv`/`.tsv`/`.json`/`.jsonl`/`.parquet` file (or a glob of them: each file is a shard,
            which the processes of a run share out whole), a folder of such files (`train.csv`, `validation.csv`,
            ... as on the Hub), or a Hub dataset id, read with `streaming=True`.
        kind: the kind of task, as for `load_task_dataset`.
        text_column, label_column: the source's columns; they become `text` and `label`. A regression task may name
            several label columns (one per output); an `embedding_contrastive` task reads none.
        label_names: the task's labels in id order. Needed for classification kinds unless the source's label is a
            `ClassLabel` (or a `Sequence(ClassLabel)`): a stream cannot be read whole to collect them. For regression,
            score and embedding tasks: the output names, as for `load_task_dataset`.
        label_delimiter: what separates a multi-label row's labels in one string cell (lists need none).
        text_pair_column, negative_column: a pair or embedding task's second texts and (`embedding_contrastive`,
            optional per row) hard negatives; they become `text_pair` and `negative`.
        held_out: rows of each held-out split (`validation`, `test`): the source's own split where it has one,
            else the first `held_out` rows of the stream for validation and the next `held_out` for test (training
            leaves out every row whose text, or pair of texts, is one of those).
        load_kwargs: passed to `datasets.load_dataset`.

    Returns:
        The training stream (rows as `load_task_dataset` makes them: `text`, `text_pair`, `negative` where the kind
        has them, `label` encoded), the held-out splits as map-style datasets (`load_task_dataset`'s features), and
        the label (or output) names.

    Example:
        >>> train, held_out, names = load_task_stream("reviews.csv", label_names=["neg", "pos"], held_out=500)
        >>> held_out["validation"].num_rows
        500
    """
    name = os.fspath(name_or_path)
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in TASK_KINDS:
        raise ValueError(f"`kind` must be one of {list(TASK_KINDS)}, got {kind!r}.")
    label_columns = [label_column] if isinstance(label_column, str) else list(label_column)
    if len(label_columns) != 1 and kind != REGRESSION:
        raise ValueError(f"A {kind} task reads one label column, got {label_columns}; several are for regression.")
    if (kind in PAIR_KINDS) != (text_pair_column is not None) or (negative_column and kind != EMBEDDING_CONTRASTIVE):
        wanted = "pairs of texts: pass `text_pair_column=`" if kind in PAIR_KINDS else "single texts"
        raise ValueError(
            f"Dataset {name!r}: a {kind} task takes {wanted} (hard negatives, `negative_column`, are for "
            f"{EMBEDDING_CONTRASTIVE} tasks); got text_pair_column={text_pair_column!r}, "
            f"negative_column={negative_column!r}."
        )
    if name in BUILTIN_DATASETS:
        raise ValueError(
            f"Dataset {name!r} is a built-in dataset, small enough to load whole: train on it without streaming, or "
            "stream a local file or a Hub dataset."
        )
    if isinstance(held_out, bool) or not isinstance(held_out, int) or held_out < 1:
        raise ValueError(f"`held_out` must be a positive number of rows, got {held_out!r}.")
    splits = _open_stream(name, load_kwargs)
    if "train" not in splits:
        raise ValueError(f"Dataset {name!r} has no `train` split to stream; it has {list(splits)}.")
    texts = {"text": text_column, "text_pair": text_pair_column, "negative": negative_column}
    texts = {role: column for role, column in texts.items() if column is not None}
    label_columns = [] if kind == EMBEDDING_CONTRASTIVE else label_columns
    for column in (*texts.values(), *label_columns):
        if splits["train"].column_names is not None and column not in splits["train"].column_names:
            raise ValueError(
                f"Dataset {name!r} has no column {column!r} to stream; its columns are {splits['train'].column_names}."
            )
    feature = (splits["train"].features or {}).get(label_columns[0]) if label_columns else None
    label_names = _stream_label_names(name, kind, feature, label_columns, label_names)
    encoder = _RowEncoder(name, kind, texts, label_columns, feature, label_names, label_delimiter)
    held, carved = {}, 0
    for split, aliases in _HELD_OUT_SPLITS.items():
        source = next((splits[alias] for alias in aliases if alias in splits), None)
        if source is not None:
            held[split] = _first_rows(encoder.stream(source, split), held_out, name, split, encoder.features)
        else:  # the next rows of the head of the training stream
            stream = encoder.stream(splits["train"], "train").skip(carved)
            held[split] = _first_rows(stream, held_out, name, split, encoder.features)
            carved += held_out
    # Training leaves out every row with a held-out text. Not `skip`: once the stream is split across processes,
    # `datasets` skips n / shards rows of every shard, which would train on held-out rows and lose others.
    keys = {key for split in held.values() for key in _held_out_keys(split)} if carved else set()
    return encoder.stream(splits["train"], "train", leave_out=keys), DatasetDict(held), label_names


def _open_stream(name: str, load_kwargs: dict) -> dict[str, IterableDataset]:
    path = Path(name)
    suffix = path.suffix.lower()
    if suffix in LOCAL_FORMATS:
        files = sorted(str(file) for file in path.parent.glob(path.name)) if any(c in name for c in "*?[") else [name]
        if not files or not all(Path(file).is_file() for file in files):
            raise FileNotFoundError(f"No such data file: {name!r}.")
        empty = [file for file in files if Path(file).stat().st_size == 0]
        if empty:
            raise ValueError(f"Data file {empty[0]!r} is empty (0 bytes).")
        builder, options = builder_options(suffix)
        loaded = datasets.load_dataset(builder, data_files=files, streaming=True, **{**options, **load_kwargs})
    elif path.exists() and not path.is_dir():
        raise ValueError(
            f"Cannot stream {name!r}: a local source must be a file (or a glob of files) ending in one of "
            f"{sorted(LOCAL_FORMATS)}, or a folder of them."
        )
    else:  # a folder of data files (splits named by their file names, as on the Hub) or a Hub dataset id
        loaded = datasets.load_dataset(name, streaming=True, **load_kwargs)
    return {"train": loaded} if isinstance(loaded, IterableDataset) else dict(loaded)


def _stream_label_names(
    name: str, kind: str, feature, label_columns: list[str], label_names: Sequence[str] | None
) -> list[str]:
    """The task's label names (classification kinds) or output names (the others), without reading the stream."""
    if kind == REGRESSION:
        return regression_outputs(name, label_columns, label_names)
    if kind not in (*_CLASS_KINDS, MULTI_LABEL):
        return output_names(kind, label_columns[0] if label_columns else "label", label_names)
    source_names = multi_label_source_names(feature) if kind == MULTI_LABEL else None
    if isinstance(feature, ClassLabel) and kind in _CLASS_KINDS:
        source_names = list(feature.names)
    if source_names is not None:
        if label_names is not None:
            unknown = [label for label in source_names if label not in label_names]
            if unknown:
                raise ValueError(
                    f"Dataset {name!r} has labels {unknown} that are not labels of the task {list(label_names)} (its "
                    f"labels are {source_names})."
                )
            return list(label_names)
        return source_names
    if label_names is None:
        raise ValueError(
            f"Dataset {name!r} is streamed, so its label names cannot be collected by reading it whole first: declare "
            "them (`label_names=[...]`; `--task_label_names task=name1,name2,...`)."
        )
    if len(set(label_names)) != len(label_names) or len(label_names) < 2:
        raise ValueError(f"Dataset {name!r}: `label_names` must hold at least two distinct names, got {label_names}.")
    return list(label_names)


class _RowEncoder:
    """One streamed row -> the row `load_task_dataset` makes of it (`text`, `text_pair`, `negative`, `label`), every
    value checked by the map-style loader's per-value functions; an error names the stream, split, column, row and
    value. Row by row, not batched: a batched map names each row after its whole batch, and the next batched map
    (tokenisation) joins those names, which costs more than the rest of the stream together."""

    def __init__(self, name, kind, texts, label_columns, feature, label_names, delimiter):
        self.name, self.kind, self.texts, self.label_columns = name, kind, texts, label_columns
        self.label_names, self.delimiter = label_names, delimiter
        self.ids = {label: index for index, label in enumerate(label_names)}
        if kind == MULTI_LABEL:
            self.source_names = multi_label_source_names(feature)
        else:
            self.source_names = feature.names if isinstance(feature, ClassLabel) else None
        self.features = Features(
            {**{role: Value("string") for role in texts}, "label": _label_feature(kind, label_names)}
        )

    def stream(self, source: IterableDataset, split: str, leave_out: set = frozenset()) -> IterableDataset:
        """`source`'s rows encoded, without those whose held-out key (`_held_out_key`) is in `leave_out`."""
        columns = source.column_names or [*self.texts.values(), *self.label_columns]

        def encode(row: dict, index: int) -> dict:
            return self.encode(row, split, index)

        stream = source.map(encode, with_indices=True, remove_columns=columns)
        return stream.filter(lambda row: _held_out_key(row) not in leave_out) if leave_out else stream

    def encode(self, row: dict, split: str, index: int) -> dict:
        where = f"Dataset {self.name!r}, split {split!r}"
        encoded = {}
        for role, column in self.texts.items():
            problem = text_problem(row[column], optional=role == "negative")
            if problem is not None:
                raise ValueError(f"{where}, column {column!r}, row {index}: {problem}).")
            encoded[role] = row[column]
        encoded["label"] = self.label(row, f"{where}, column {{}}, row {index}")
        return encoded

    def label(self, row: dict, where: str):
        kind = self.kind
        if kind == EMBEDDING_CONTRASTIVE:
            return 0  # "labelled": the pair is the signal
        if kind == REGRESSION:
            return {
                output: regression_target(row[column], where.format(repr(column)))
                for column, output in zip(self.label_columns, self.label_names, strict=True)
            }
        column = self.label_columns[0]
        value, where = row[column], where.format(repr(column))
        if kind in _CLASS_KINDS:
            return class_label_id(value, self.ids, self.source_names, where)
        if kind == MULTI_LABEL:
            return multi_label_ids(
                multi_label_values(value, self.delimiter, self.source_names, where), self.ids, where
            )
        score = finite_number(value)  # pair_regression, embedding
        if score is None:
            raise ValueError(
                f"{where}: score {show_value(value)} is not a finite number; a {kind} task needs a real-valued score "
                "on every row."
            )
        return score


def _label_feature(kind: str, label_names: list[str]):
    """The `label` feature `load_task_dataset` gives a task of this kind."""
    if kind in _CLASS_KINDS:
        return ClassLabel(names=label_names)
    if kind == MULTI_LABEL:
        return SequenceFeature(ClassLabel(names=label_names))
    if kind == REGRESSION:
        return {output: Value("float32") for output in label_names}
    return Value("int64") if kind == EMBEDDING_CONTRASTIVE else Value("float32")


def _held_out_key(row: dict):
    """What makes a row a held-out row's duplicate: its text, or its pair of texts."""
    return row["text"] if "text_pair" not in row else (row["text"], row["text_pair"])


def _held_out_keys(split: Dataset) -> list:
    if "text_pair" not in split.column_names:
        return split["text"]
    return list(zip(split["text"], split["text_pair"], strict=True))


def _first_rows(stream: IterableDataset, count: int, name: str, split: str, features: Features) -> Dataset:
    rows = list(stream.take(count))
    if len(rows) < count:
        raise ValueError(
            f"Dataset {name!r}: the stream holds {len(rows)} row(s), fewer than the {count} held out for {split!r}"
            " (and training needs rows after them); lower the held-out size (`held_out`, `--max_eval_samples`)."
        )
    return Dataset.from_list(rows, features=features)
