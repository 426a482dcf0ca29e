"""A task's data as a stream: rows read as training needs them (local files or the Hub with `streaming=True`), never
the whole set in memory or on disk.

The map-style loader (`task_datasets.load_task_dataset`) reads a task whole: it finds the label names, validates every
row and carves stratified validation/test splits. A stream cannot be read whole first, so here:

- the label names come from the source's `ClassLabel` feature or are declared (`label_names`); string labels are mapped
  by name and every row is checked as it streams past (a bad row stops training, naming the row and the value);
- the validation and test splits are the source's own (Hub datasets that have them) or the first rows of the stream,
  held out as small map-style datasets: training then leaves out every row with a held-out text (a set of at most
  twice `held_out` texts), so no held-out text is ever trained on, duplicates included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, Value

from ..inference_multitask_st import has_content
from .corpora import BUILTIN_DATASETS
from .files import LOCAL_FORMATS, builder_options


# Split names a streamed source may give its held-out data under (the map-style loader's aliases).
_HELD_OUT_SPLITS = {"validation": ("validation", "dev", "valid", "val", "eval"), "test": ("test",)}


def load_task_stream(
    name_or_path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    held_out: int = 1000,
    **load_kwargs,
) -> tuple[IterableDataset, DatasetDict, list[str]]:
    """Opens a classification task's data as a stream.

    Args:
        name_or_path: a local `.csv`/`.tsv`/`.json`/`.jsonl`/`.parquet` file (or a glob of them: each file is a shard,
            which the processes of a run share out whole), a folder of such files (`train.csv`, `validation.csv`,
            ... as on the Hub), or a Hub dataset id, read with `streaming=True`.
        text_column, label_column: the source's columns; they become `text` and `label` (an id of `label_names`).
        label_names: the task's labels in id order. Needed unless the source's label is a `ClassLabel` (a stream cannot
            be read whole to collect them).
        held_out: rows of each held-out split (`validation`, `test`): the source's own split where it has one,
            else the first `held_out` rows of the stream for validation and the next `held_out` for test (training
            leaves out every row whose text is one of those).
        load_kwargs: passed to `datasets.load_dataset`.

    Returns:
        The training stream (`text`, `label`), the held-out splits as map-style datasets (a `ClassLabel` label),
        and the label names.

    Example:
        >>> train, held_out, names = load_task_stream("reviews.csv", label_names=["neg", "pos"], held_out=500)
        >>> held_out["validation"].num_rows
        500
    """
    name = os.fspath(name_or_path)
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
    for column in (text_column, label_column):
        if splits["train"].column_names is not None and column not in splits["train"].column_names:
            raise ValueError(
                f"Dataset {name!r} has no column {column!r} to stream; its columns are {splits['train'].column_names}."
            )
    feature = (splits["train"].features or {}).get(label_column)
    label_names = _stream_label_names(name, feature, label_names)
    columns = (text_column, label_column, feature, label_names)
    held, carved = {}, 0
    for split, aliases in _HELD_OUT_SPLITS.items():
        source = next((splits[alias] for alias in aliases if alias in splits), None)
        if source is not None:
            held[split] = _first_rows(_text_label_stream(source, name, split, *columns), held_out, name, split)
        else:  # the next rows of the head of the training stream
            stream = _text_label_stream(splits["train"], name, "train", *columns).skip(carved)
            held[split] = _first_rows(stream, held_out, name, split)
            carved += held_out
    # Training leaves out every row with a held-out text. Not `skip`: once the stream is split across processes,
    # `datasets` skips n / shards rows of every shard, which would train on held-out rows and lose others.
    texts = {text for split in held.values() for text in split["text"]} if carved else set()
    train = _text_label_stream(splits["train"], name, "train", *columns, leave_out=texts)
    label_feature = ClassLabel(names=label_names)
    held = {split: rows.cast_column("label", label_feature) for split, rows in held.items()}
    return train, DatasetDict(held), label_names


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


def _stream_label_names(name: str, feature, label_names: Sequence[str] | None) -> list[str]:
    if isinstance(feature, ClassLabel):
        if label_names is not None:
            unknown = [label for label in feature.names if label not in label_names]
            if unknown:
                raise ValueError(
                    f"Dataset {name!r} has labels {unknown} that are not labels of the task {list(label_names)} (its "
                    f"labels are {feature.names})."
                )
            return list(label_names)
        return list(feature.names)
    if label_names is None:
        raise ValueError(
            f"Dataset {name!r} is streamed, so its label names cannot be collected by reading it whole first: declare "
            "them (`label_names=[...]`; `--task_label_names task=name1,name2,...`)."
        )
    if len(set(label_names)) != len(label_names) or len(label_names) < 2:
        raise ValueError(f"Dataset {name!r}: `label_names` must hold at least two distinct names, got {label_names}.")
    return list(label_names)


def _text_label_stream(
    stream: IterableDataset,
    name: str,
    split: str,
    text_column: str,
    label_column: str,
    feature,
    names: list[str],
    leave_out: set[str] = frozenset(),
) -> IterableDataset:
    """`text` and `label` (an id of `names`), each row checked as it streams past, without the rows whose text is in
    `leave_out`. Row by row, not batched: a batched map names each row after its whole batch, and the next batched
    map (tokenisation) joins those names, which costs more than the rest of the stream together."""
    source_names = feature.names if isinstance(feature, ClassLabel) else None
    ids = {label: index for index, label in enumerate(names)}

    def check(row: dict, index: int) -> dict:
        text, label = row[text_column], row[label_column]
        where = f"Dataset {name!r}, split {split!r}, row {index}"
        if not isinstance(text, str) or not has_content(text):
            raise ValueError(f"{where}: column {text_column!r} holds {text!r}; expected a non-empty text.")
        if source_names is not None and isinstance(label, int) and 0 <= label < len(source_names):
            label = source_names[label]  # a ClassLabel id: mapped by name
        if isinstance(label, str) and label in ids:
            label = ids[label]
        elif not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names)):
            raise ValueError(f"{where}: label {label!r} is not one of the task's labels {names} (or their ids).")
        return {"text": text, "label": label}

    columns = stream.column_names or [text_column, label_column]
    stream = stream.map(check, with_indices=True, remove_columns=columns)
    return stream.filter(lambda row: row["text"] not in leave_out) if leave_out else stream


def _first_rows(stream: IterableDataset, count: int, name: str, split: str) -> Dataset:
    rows = list(stream.take(count))
    if len(rows) < count:
        raise ValueError(
            f"Dataset {name!r}: the stream holds {len(rows)} row(s), fewer than the {count} held out for {split!r}"
            " (and training needs rows after them); lower the held-out size (`held_out`, `--max_eval_samples`)."
        )
    return Dataset.from_list(rows, features=datasets.Features({"text": Value("string"), "label": Value("int64")}))
