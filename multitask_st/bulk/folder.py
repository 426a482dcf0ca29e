"""The output folder of a bulk run: shard files written atomically, the manifest, and what a resumed run may keep (a
shard that holds the rows the corpus gives now, written by the same model and calibration)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


MANIFEST_NAME = "manifest.json"
SHARDS_FOLDER = "shards"
MANIFEST_FORMAT = "multitask-st-embed/1"


def shard_name(index: int) -> str:
    return f"{SHARDS_FOLDER}/part-{index:05d}.parquet"


def model_fingerprint(weights_file: str | os.PathLike, calibration) -> str:
    """What identifies the outputs a model gives: the sha256 of its weights file and its calibration (temperatures and
    thresholds change the rows without touching the weights). A resumed run must have the same."""
    digest = hashlib.sha256()
    with open(weights_file, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(calibration or {}, sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()


def text_digest(texts: list) -> str:
    """A shard's input texts, as a short hash: a rerun over an edited corpus is told apart from a resume."""
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()[:16]


def write_atomically(table: pa.Table, path: Path, metadata: dict):
    """Writes `table` (with `metadata` in the Parquet footer) to a temporary file next to `path`, flushes it to disk
    and renames it to `path`: a reader (or a rerun) sees the whole shard or none of it."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"multitask_st": json.dumps(metadata)})
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_manifest(output_dir: str | os.PathLike) -> dict | None:
    path = Path(output_dir) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(output_dir: Path, manifest: dict):
    path = output_dir / MANIFEST_NAME
    temporary = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)


def finish_manifest(output_dir: Path, num_shards: int) -> bool:
    """When all `num_shards` shard files exist, rewrites the manifest with their list and `complete: true`; returns
    whether it did. Idempotent: any process that finishes may call it."""
    paths = [output_dir / shard_name(index) for index in range(num_shards)]
    if not all(path.is_file() for path in paths):
        return False
    manifest = read_manifest(output_dir)
    shards = []
    for index, path in enumerate(paths):
        metadata = json.loads(pq.read_schema(path).metadata[b"multitask_st"])
        shards.append({"file": shard_name(index), **metadata})
    manifest.update(
        complete=True,
        num_rows=sum(shard["num_rows"] for shard in shards),
        num_empty_texts=sum(shard["num_empty_texts"] for shard in shards),
        shards=shards,
    )
    write_manifest(output_dir, manifest)
    for leftover in (output_dir / SHARDS_FOLDER).glob(".*.tmp"):  # half-written shards of a crashed process
        leftover.unlink(missing_ok=True)
    return True


def check_written_shard(output_dir: Path, index: int, first_row: int, texts: list):
    """A shard an earlier run wrote is kept only if it holds the rows it would hold now (the same first row, count
    and texts); otherwise the corpus changed since the run began, and keeping it would mix two corpora."""
    written = json.loads(pq.read_schema(output_dir / shard_name(index)).metadata[b"multitask_st"])
    now = {"first_row": first_row, "num_rows": len(texts), "texts_sha256": text_digest(texts)}
    then = {key: written.get(key) for key in now}
    if then != now:
        raise ValueError(
            f"Shard {index} in {str(output_dir)!r} was written from other rows ({then}) than the corpus gives now "
            f"({now}): the corpus changed since the run began. Embed it into a new folder."
        )


def check_shard_count(output_dir: Path, num_shards: int, source: str):
    """The corpus gave shards, and no more were written by an earlier run than it gives now."""
    if num_shards == 0:
        raise ValueError(f"The corpus {source!r} has no rows.")
    beyond = sorted(path.name for path in (output_dir / SHARDS_FOLDER).glob("part-*.parquet")
                    if int(path.stem.removeprefix("part-")) >= num_shards)  # fmt: skip
    if beyond:
        raise ValueError(
            f"{str(output_dir)!r} holds shard(s) {beyond} beyond the corpus's {num_shards} shard(s): the corpus "
            "shrank since the run began. Embed it into a new folder."
        )


def _wait_for(path: Path, timeout: float = 600.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{path} did not appear in {timeout:.0f}s: process 0 writes it when a run starts (see its error)."
            )
        time.sleep(0.2)
