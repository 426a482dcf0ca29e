"""Embedding and classifying a corpus into Parquet shards with a manifest: the layout, the writes, the resume.

A run cuts the corpus, in its row order, into shards of `shard_size` rows: shard `k` holds rows `k * shard_size` up
to the next shard's first row and is written to `shards/part-<k>.parquet`, with one output row per input row: `row`
(its number in the corpus), the columns kept from the input, `embedding`, and per head, by its kind: a classification
task `<task>` (the label), `<task>_score` and `<task>_probabilities`; a multi-label one `<task>` (the labels at or
above their thresholds, as `predict` gives them) and `<task>_probabilities`; a regression one `<task>` (the values).
Lists follow the order of the manifest's `tasks`. A text without content (empty, whitespace only, not a string) gets
nulls there, and is counted in the manifest.

The shard plan depends on the corpus and `shard_size` alone, never on the number of processes: process `r` of `n`
writes the shards `k` with `k % n == r`, and one process, two, or a Ray actor pool write the same files.

Crash safety: a shard is written to a temporary file in `shards/` and renamed to its name when complete (an atomic
rename), so a shard file under its final name is always whole. `manifest.json` is written first, with the run's
settings; a rerun with the same settings continues: it skips the shards whose files exist (never writing one twice)
and writes the others (none lost). A rerun with other settings is refused. When every shard exists, the manifest is
rewritten with the list of shards and `"complete": true` by whichever process finishes last, and the temporary files
of crashed processes are removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from transformers.utils import logging

from ..inference_multitask_st import (
    DEFAULT_BATCH_SIZE,
    MULTI_LABEL,
    REGRESSION,
    check_max_length,
    has_content,
    progress_bar,
    text_head_tasks,
)
from ..scores_multitask_st import label_rows, resolve_calibration
from .corpus import column_batches
from .folder import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    SHARDS_FOLDER,
    _wait_for,
    check_shard_count,
    check_written_shard,
    finish_manifest,
    model_fingerprint,
    read_manifest,
    shard_name,
    text_digest,
    write_atomically,
    write_manifest,
)


logger = logging.get_logger(__name__)

EMBEDDING_COLUMN = "embedding"
ROW_COLUMN = "row"
DEFAULT_SHARD_SIZE = 10_000
RUNTIMES = ("torch", "onnx")


@dataclass
class EmbedSettings:
    """What a bulk run writes: a rerun continues only with the same settings (compared field by field)."""

    source: str
    model: str
    runtime: str = "torch"
    split: str = "train"
    text_column: str = "text"
    keep_columns: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # "embedding" and task names; [] = the embedding + every head
    shard_size: int = DEFAULT_SHARD_SIZE
    max_length: int | None = None
    onnx_file: str | None = None

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}, got {self.runtime!r}.")
        if isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ValueError(f"`shard_size` must be a positive integer, got {self.shard_size!r}.")
        reserved = {ROW_COLUMN, EMBEDDING_COLUMN}
        clashes = sorted(reserved & set(self.keep_columns))
        if clashes:
            raise ValueError(f"`keep_columns` {clashes} would clash with the output columns {sorted(reserved)}.")


class ShardModel:
    """The model a bulk run holds, PyTorch or ONNX, behind the engine's `score_chunks`: one forward pass (or graph
    run) per batch gives every head's probabilities and the embedding.

    Args:
        model: A trained model folder (or a Hub id); for `runtime="onnx"` the exported folder (`onnx/model.onnx`).
        runtime: `"torch"` (`MultiTaskSTModel`) or `"onnx"` (`MultiTaskSTOnnxModel`: no torch).
        device: torch only: where the model runs (default: CPU, or `cuda:<LOCAL_RANK>` where a GPU is).
        onnx_file: onnx only: the graph file (e.g. the int8 one), as `MultiTaskSTOnnxModel.from_pretrained` takes it.
        threads: Threads per process (torch: `torch.set_num_threads`; onnx: `intra_op_num_threads`).
    """

    def __init__(self, model: str, runtime: str = "torch", device: str | None = None, onnx_file: str | None = None,
                 threads: int | None = None):  # fmt: skip
        self.runtime = runtime
        if runtime == "onnx":
            from ..export.onnx_runtime import MultiTaskSTOnnxModel

            self.model = MultiTaskSTOnnxModel.from_pretrained(model, file_name=onnx_file, threads=threads)
            self.tasks: dict[str, list[str]] = dict(self.model.tasks)
            self.kinds: dict[str, str] = self.model.task_kinds()
            self.calibration = resolve_calibration(self.model.config.get("task_calibration"), self.tasks, self.kinds)
            self.embedding_dim = self.model.embedding_dim
            self.max_length, self.position_limit = self.model.max_length, self.model.position_limit
            self.fingerprint = model_fingerprint(self.model.model_path, self.model.config.get("task_calibration"))
            return
        if runtime != "torch":
            raise ValueError(f"`runtime` must be one of {list(RUNTIMES)}, got {runtime!r}.")
        import torch
        from transformers import AutoTokenizer

        from ..modeling_multitask_st import MultiTaskSTModel

        if threads:
            torch.set_num_threads(threads)
        if device is None:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.model = MultiTaskSTModel.from_pretrained(model).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        config = self.model.config
        self.tasks = dict(config.tasks)
        self.kinds = dict(config.task_kinds)
        self.calibration = resolve_calibration(config.task_calibration, self.tasks, self.kinds)
        self.embedding_dim = self.model.config.embedding_dim
        self.max_length, self.position_limit = (
            self.model.default_max_length(self.tokenizer),
            self.model.position_limit(),
        )
        weights = Path(model) / "model.safetensors"
        self.fingerprint = (
            model_fingerprint(weights, config.task_calibration)
            if weights.is_file()
            else f"{model}@{getattr(config, '_commit_hash', None)}"  # a Hub id: its commit
        )

    def score_rows(self, texts: list[str], tasks: list[str], batch_size: int, max_length: int | None) -> np.ndarray:
        """`(len(texts), columns)` float32: each task's score columns (probabilities, or a regression's values),
        task after task, then the embedding (as `encode` gives it), in input order."""
        options = {"batch_size": batch_size, "max_length": max_length, "chunk_size": max(len(texts), 1),
                   "show_progress_bar": False}  # fmt: skip
        if self.runtime == "onnx":
            chunks = self.model.score_chunks(texts, tasks, with_embeddings=True, **options)
        else:
            chunks = self.model.score_chunks(texts, self.tokenizer, tasks, with_embeddings=True, **options)
        return np.concatenate(list(chunks))

    def embed_rows(self, texts: list[str], batch_size: int, max_length: int | None) -> np.ndarray:
        """`(len(texts), embedding_dim)` float32: `encode`'s embeddings, in input order."""
        options = {"batch_size": batch_size, "max_length": max_length, "chunk_size": max(len(texts), 1),
                   "show_progress_bar": False}  # fmt: skip
        if self.runtime == "onnx":
            return np.concatenate(list(self.model.encode_chunks(texts, **options)))
        return np.concatenate(list(self.model.encode_chunks(texts, self.tokenizer, **options)))


def output_tasks(settings: EmbedSettings, model: ShardModel) -> tuple[bool, list[str]]:
    """Whether the embedding is written, and the heads whose predictions are (by default every head that reads one
    text; a pair or embedding task needs two texts per row, which a corpus of texts does not have)."""
    heads = text_head_tasks(model.kinds)
    if not settings.outputs:
        return True, heads
    pair_tasks = [name for name in settings.outputs if name in model.tasks and name not in heads]
    if pair_tasks:
        raise ValueError(
            f"Output(s) {pair_tasks} read pairs of texts ({', '.join(model.kinds[name] for name in pair_tasks)}); a "
            f"corpus gives one text per row: choose from {[EMBEDDING_COLUMN, *heads]}."
        )
    unknown = [name for name in settings.outputs if name != EMBEDDING_COLUMN and name not in heads]
    if unknown:
        raise ValueError(f"Unknown output(s) {unknown}; choose from {[EMBEDDING_COLUMN, *heads]} (default: all).")
    return EMBEDDING_COLUMN in settings.outputs, [name for name in heads if name in settings.outputs]


def shard_table(
    model: ShardModel,
    settings: EmbedSettings,
    first_row: int,
    columns: dict[str, list],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pa.Table:
    """One shard's output table from its input `columns` (the text column and those kept), rows from `first_row`."""
    texts = columns[settings.text_column]
    with_embedding, tasks = output_tasks(settings, model)
    valid = [index for index, text in enumerate(texts) if isinstance(text, str) and has_content(text)]
    width = sum(len(model.tasks[task]) for task in tasks)
    rows = np.zeros((0, width + model.embedding_dim), dtype=np.float32)
    if valid:
        inputs = [texts[index] for index in valid]
        if tasks:
            rows = model.score_rows(inputs, tasks, batch_size, settings.max_length)
        else:  # the embedding alone: `encode`'s own path, no head
            rows = model.embed_rows(inputs, batch_size, settings.max_length)
    size = len(texts)
    mask = np.ones(size, dtype=bool)
    mask[valid] = False  # null where the text has no content
    table = {ROW_COLUMN: pa.array(np.arange(first_row, first_row + size, dtype=np.int64))}
    table.update({name: pa.array(columns[name]) for name in settings.keep_columns})
    if with_embedding:
        table[EMBEDDING_COLUMN] = _fixed_lists(rows[:, -model.embedding_dim :], size, valid, mask)
    # `predict`'s own rows (thresholds, label order), then one set of columns per task, by its kind
    predictions = label_rows(rows[:, :width], model.tasks, tasks, model.kinds, model.calibration)
    offset = 0
    for task in tasks:
        labels, kind = model.tasks[task], model.kinds[task]
        scores = rows[:, offset : offset + len(labels)]
        offset += len(labels)
        if kind == REGRESSION:  # `<task>`: the values, in the order of the manifest's names
            table[task] = _fixed_lists(scores, size, valid, mask)
            continue
        entries: list = [None] * size
        key = "labels" if kind == MULTI_LABEL else "label"
        for index, prediction in zip(valid, predictions, strict=True):
            entries[index] = prediction[task][key]
        table[task] = pa.array(entries, type=pa.list_(pa.string()) if kind == MULTI_LABEL else pa.string())
        if kind != MULTI_LABEL:
            best = scores.max(axis=1) if len(scores) else np.zeros(0, np.float32)
            table[f"{task}_score"] = _scatter(best, size, valid, mask)
        table[f"{task}_probabilities"] = _fixed_lists(scores, size, valid, mask)
    return pa.table(table)


def _scatter(values: np.ndarray, size: int, valid: list[int], mask: np.ndarray) -> pa.Array:
    full = np.zeros(size, dtype=np.float32)
    full[valid] = values
    return pa.array(full, mask=mask)


def _fixed_lists(matrix: np.ndarray, size: int, valid: list[int], mask: np.ndarray) -> pa.Array:
    """`(len(valid), width)` rows as a fixed-size list column of `size` rows, null where `mask`."""
    width = matrix.shape[1]
    full = np.zeros((size, width), dtype=np.float32)
    full[valid] = matrix
    values = pa.array(full.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, width, mask=pa.array(mask))


# ---------------------------------------------------------------------------------------------------- the folder


def start_manifest(output_dir: str | os.PathLike, settings: EmbedSettings, model: ShardModel, rank: int = 0) -> Path:
    """Checks that `output_dir` is new, empty, or holds a run with the same settings (then it continues); the first
    process writes the manifest of a new run. Returns the folder."""
    output_dir = Path(output_dir)
    # Before anything is written: an unknown output, a kept column an output would overwrite, a bad length.
    with_embedding, tasks = output_tasks(settings, model)
    produced = {ROW_COLUMN, *([EMBEDDING_COLUMN] if with_embedding else [])}
    for task in tasks:
        produced |= {task, f"{task}_score", f"{task}_probabilities"}
    clashes = sorted(produced & set(settings.keep_columns))
    if clashes:
        raise ValueError(
            f"`keep_columns` {clashes} would be overwritten by the output columns of the same name(s); rename them in "
            "the corpus, or leave them out."
        )
    check_max_length(settings.max_length, model.max_length, model.position_limit)
    if rank != 0:  # process 0 checks the folder and writes the manifest of a new run: wait for it
        _wait_for(output_dir / MANIFEST_NAME)
    existing = read_manifest(output_dir)
    if existing is not None:
        theirs, ours = existing.get("settings", {}), asdict(settings)
        differences = [f"{key}: {theirs.get(key)!r} there, {value!r} now" for key, value in ours.items()
                       if theirs.get(key) != value]  # fmt: skip
        if existing.get("model_fingerprint") != model.fingerprint:
            differences.append(
                f"the model's weights or calibration changed ({existing.get('model_fingerprint')} there, "
                f"{model.fingerprint} now)"
            )
        if differences:
            raise ValueError(
                f"{str(output_dir)!r} holds a bulk run with other settings ({'; '.join(differences)}): continuing "
                "it would mix two runs. Rerun with its settings, or pass another output folder."
            )
        logger.info(f"Continuing the run in {output_dir}: shards already written are kept.")
        return output_dir
    if output_dir.is_dir() and any(output_dir.iterdir()):
        raise FileExistsError(
            f"The output folder {str(output_dir)!r} is not empty and holds no {MANIFEST_NAME}: pass a new or empty "
            "folder."
        )
    if rank == 0:
        (output_dir / SHARDS_FOLDER).mkdir(parents=True, exist_ok=True)
        write_manifest(output_dir, {
            "format": MANIFEST_FORMAT, "settings": asdict(settings), "tasks": model.tasks, "task_kinds": model.kinds,
            "embedding_dim": model.embedding_dim, "max_length": settings.max_length or model.max_length,
            "model_fingerprint": model.fingerprint, "complete": False,
        })  # fmt: skip
    return output_dir


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class ShardTask:
    """One shard to write: its index, its first row and its input columns."""

    index: int
    first_row: int
    columns: dict[str, list]


def check_columns(dataset, settings: EmbedSettings):
    """The text column and the kept ones are in the corpus (a stream whose columns are not known yet: on its first
    rows, see `column_batches`)."""
    columns = [settings.text_column, *settings.keep_columns]
    missing = [name for name in columns if dataset.column_names is not None and name not in dataset.column_names]
    if missing:
        raise ValueError(f"The corpus has no column(s) {missing}; its columns are {dataset.column_names}.")


def plan_shards(dataset, settings: EmbedSettings) -> Iterator[ShardTask]:
    """Every shard of the corpus, in order, with its input columns (read, not yet embedded)."""
    columns = [settings.text_column, *[name for name in settings.keep_columns if name != settings.text_column]]
    first_row = 0
    for index, batch in enumerate(column_batches(dataset, columns, settings.shard_size)):
        yield ShardTask(index, first_row, batch)
        first_row += len(batch[settings.text_column])


def write_shard(model: ShardModel, settings: EmbedSettings, output_dir: Path, task: ShardTask,
                batch_size: int = DEFAULT_BATCH_SIZE) -> dict:  # fmt: skip
    """Embeds one shard and writes its file atomically; returns what the manifest lists for it."""
    started = time.perf_counter()
    table = shard_table(model, settings, task.first_row, task.columns, batch_size)
    texts = task.columns[settings.text_column]
    empty = sum(1 for text in texts if not (isinstance(text, str) and has_content(text)))
    if empty:
        logger.warning(f"Shard {task.index}: {empty} text(s) without content got null outputs (see the manifest).")
    metadata = {"index": task.index, "first_row": task.first_row, "num_rows": len(texts), "num_empty_texts": empty,
                "texts_sha256": text_digest(texts), "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    write_atomically(table, output_dir / shard_name(task.index), metadata)
    return metadata


def embed_corpus(
    dataset,
    settings: EmbedSettings,
    output_dir: str | os.PathLike,
    model: ShardModel | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rank: int = 0,
    world_size: int = 1,
    show_progress_bar: bool = True,
) -> dict:
    """Writes this process's shards of `dataset` (those `k % world_size == rank` not written yet) into `output_dir`.

    Returns `{"written": [shard indices], "skipped": [...], "num_shards": n, "complete": bool}`; `complete` when the
    manifest now lists every shard (the last process to finish writes it).
    """
    model = model or ShardModel(settings.model, settings.runtime, onnx_file=settings.onnx_file)
    check_columns(dataset, settings)
    output_dir = start_manifest(output_dir, settings, model, rank)
    total = len(dataset) if hasattr(dataset, "__len__") else None
    progress = progress_bar(total, f"Embedding (process {rank} of {world_size})", show_progress_bar)
    written, skipped, num_shards = [], [], 0
    try:
        for task in plan_shards(dataset, settings):
            num_shards = task.index + 1
            rows = len(task.columns[settings.text_column])
            if task.index % world_size == rank:
                if (output_dir / shard_name(task.index)).is_file():
                    check_written_shard(output_dir, task.index, task.first_row, task.columns[settings.text_column])
                    skipped.append(task.index)
                else:
                    write_shard(model, settings, output_dir, task, batch_size)
                    written.append(task.index)
            if progress is not None:
                progress.update(rows)
    finally:
        if progress is not None:
            progress.close()
    check_shard_count(output_dir, num_shards, settings.source)
    if skipped:
        logger.info(f"Process {rank}: {len(skipped)} shard(s) were written by an earlier run and kept.")
    complete = finish_manifest(output_dir, num_shards)
    return {"written": written, "skipped": skipped, "num_shards": num_shards, "complete": complete}
