"""Reading a local data file (.csv, .tsv, .json, .jsonl, .parquet) with errors that name the file and the cause.

`datasets.load_dataset` reports an empty file, a header without rows or a file in another encoding as a generic
"error occurred while generating the dataset" from deep inside its builder; and the CSV reader (pandas) turns the
texts `NA`, `null`, `None`, `nan`... into missing values. Here they stay texts; only an empty field is missing.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import datasets
from datasets import DatasetDict


LOCAL_FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
# pandas' default missing-value markers include the words NA, null, None and nan: a review saying "None" is a text.
_CSV_MISSING = {"keep_default_na": False, "na_values": [""]}
_TEXT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


def read_data_file(path: Path, load_kwargs: dict) -> DatasetDict:
    """Loads one local data file as a `DatasetDict` (a single `train` split)."""
    name = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such data file: {name!r}.")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_FORMATS:
        raise ValueError(f"Cannot read {name!r}: the file extension must be one of {sorted(LOCAL_FORMATS)}.")
    if path.stat().st_size == 0:
        raise ValueError(f"Data file {name!r} is empty (0 bytes).")
    encoding = load_kwargs.get("encoding", "utf-8")
    if suffix in _TEXT_SUFFIXES:
        _check_encoding(path, encoding)
    builder, options = builder_options(suffix)
    try:
        raw = datasets.load_dataset(builder, data_files=name, **{**options, **load_kwargs})
    except (datasets.exceptions.DatasetGenerationError, ValueError) as error:
        cause = error.__cause__ or error
        if suffix in (".csv", ".tsv") and _data_lines(path, encoding) <= 1:
            raise ValueError(f"Data file {name!r} has a header line but no rows.") from error
        raise ValueError(f"Cannot read data file {name!r}: {type(cause).__name__}: {cause}") from error
    if any(split.num_rows == 0 for split in raw.values()):
        raise ValueError(f"Data file {name!r} has no rows.")
    return raw


def builder_options(suffix: str) -> tuple[str, dict]:
    """The `datasets` builder and its options that read a local file with this suffix (one of `LOCAL_FORMATS`): CSV
    fields such as `NA` or `None` stay texts."""
    builder, options = LOCAL_FORMATS[suffix]
    return builder, ({**options, **_CSV_MISSING} if builder == "csv" else dict(options))


def _check_encoding(path: Path, encoding: str, block: int = 1 << 20):
    """Reads the file through an incremental decoder; on failure names the line and the byte, and suggests a fix."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset = 1, 0
    with path.open("rb") as file:
        while data := file.read(block):
            try:
                decoder.decode(data)
            except UnicodeDecodeError as error:
                position = offset + error.start
                line += data[: error.start].count(b"\n")
                byte = data[error.start : error.start + 1].hex()
                raise ValueError(
                    f"Data file {str(path)!r} is not valid {encoding}: byte 0x{byte} at line {line} (byte {position}). "
                    "It was probably saved as latin-1 / Windows-1252: re-save it as UTF-8 (e.g. `iconv -f cp1252 "
                    f"-t utf-8 {path.name} > fixed{path.suffix}`), or in Python pass "
                    "`load_task_dataset(..., encoding='cp1252')`."
                ) from None
            line += data.count(b"\n")
            offset += len(data)


def _data_lines(path: Path, encoding: str) -> int:
    with path.open(encoding=encoding, errors="replace") as file:
        return sum(1 for text in file if text.strip())
