"""The corpus a bulk run reads: local files (CSV/TSV, JSON lines, Parquet, plain text), or a Hub dataset, either
read into Arrow first (its size known) or streamed (`streaming=True`: nothing converted up front, size unknown)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import datasets

from ..data.files import LOCAL_FORMATS, builder_options


# Plain text: one text per line (the `text` column).
TEXT_SUFFIX = ".txt"
CORPUS_SUFFIXES = (*LOCAL_FORMATS, TEXT_SUFFIX)


def corpus_files(source: str) -> list[str] | None:
    """The local files `source` names (a file, a glob or a folder of files with one of `CORPUS_SUFFIXES`), sorted;
    None when it names no local path (then it is a Hub dataset id)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(str(file) for file in path.iterdir() if file.suffix.lower() in CORPUS_SUFFIXES)
        if not files:
            raise ValueError(f"The folder {source!r} holds no file ending in one of {list(CORPUS_SUFFIXES)}.")
    elif glob.has_magic(source):
        files = sorted(glob.glob(source))
        if not files:
            raise FileNotFoundError(f"No file matches {source!r}.")
    elif path.is_file() or path.suffix.lower() in CORPUS_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"No such data file: {source!r}.")
        files = [source]
    else:
        return None
    suffixes = sorted({Path(file).suffix.lower() for file in files})
    if len(suffixes) > 1 or suffixes[0] not in CORPUS_SUFFIXES:
        raise ValueError(
            f"The corpus files of {source!r} must share one suffix of {list(CORPUS_SUFFIXES)}; found {suffixes}."
        )
    return files


def open_corpus(
    source: str, split: str = "train", streaming: bool = False, **load_kwargs
) -> datasets.Dataset | datasets.IterableDataset:
    """`source` (see [`corpus_files`]; else a Hub dataset id) as one split, read into Arrow or streamed.

    Rows keep the files' order (a folder or a glob: files sorted by name), so a row's number is stable from run to
    run: the bulk run's shards and its resume rely on it.
    """
    files = corpus_files(source)
    if files is None:
        return datasets.load_dataset(source, split=split, streaming=streaming, **load_kwargs)
    suffix = Path(files[0]).suffix.lower()
    builder, options = ("text", {}) if suffix == TEXT_SUFFIX else builder_options(suffix)
    # Local files form the one split `train`; another split name would find nothing.
    return datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming,
                                 **{**options, **load_kwargs})  # fmt: skip


def column_batches(
    dataset: datasets.Dataset | datasets.IterableDataset, columns: list[str], batch_size: int
) -> Iterator[dict[str, list]]:
    """The dataset's `columns`, `batch_size` rows at a time, in order (the last batch may be shorter)."""
    batches = dataset.select_columns(columns).iter(batch_size=batch_size)
    for batch in batches:
        missing = [column for column in columns if column not in batch]  # a stream's columns show on its first rows
        if missing:
            raise ValueError(f"The corpus has no column(s) {missing}; its columns are {list(batch)}.")
        yield batch
