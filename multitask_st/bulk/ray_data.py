"""The bulk run on a Ray cluster (or Ray's local mode) through Ray Data: an actor pool of `map_batches` workers, each
holding the PyTorch or ONNX model, writes the same shards and manifest as `embed_corpus` (`multitask_st.bulk.shards`).

The driver reads the corpus and hands each pending shard (its rows' input columns) to the pool; an actor embeds it
and writes its file atomically, on storage every node sees (a shared file system). A shard a retried actor finds
written is left alone, so Ray's retries never write one twice. Needs `pip install "multitask-st[ray]"`.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
from transformers.utils import logging

from ..inference_multitask_st import DEFAULT_BATCH_SIZE
from .folder import check_shard_count, check_written_shard, finish_manifest, shard_name
from .shards import EmbedSettings, ShardModel, ShardTask, check_columns, plan_shards, start_manifest, write_shard


logger = logging.get_logger(__name__)


class ShardWriter:
    """A Ray Data actor: loads the model once, then embeds and writes the shards it is given (one per batch row)."""

    def __init__(self, settings: dict, output_dir: str, batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None,
                 threads: int | None = None):  # fmt: skip
        self.settings = EmbedSettings(**settings)
        self.output_dir = Path(output_dir)
        self.batch_size = batch_size
        self.model = ShardModel(self.settings.model, self.settings.runtime, device, self.settings.onnx_file, threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        indices, rows = [], []
        for shard in batch.to_pylist():
            if not (self.output_dir / shard_name(shard["index"])).is_file():  # a retry after the file was renamed
                task = ShardTask(shard["index"], shard["first_row"], shard["columns"])
                write_shard(self.model, self.settings, self.output_dir, task, self.batch_size)
            indices.append(shard["index"])
            rows.append(len(shard["columns"][self.settings.text_column]))
        return pa.table({"index": pa.array(indices, pa.int64()), "num_rows": pa.array(rows, pa.int64())})


def embed_corpus_on_ray(
    dataset,
    settings: EmbedSettings,
    output_dir: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    threads: int | None = None,
) -> dict:
    """`embed_corpus` on Ray Data: the pending shards go through `map_batches` to a pool of `actors` `ShardWriter`s
    (each with `cpus_per_actor` CPUs and `gpus_per_actor` GPUs). Connects to the running Ray cluster (`ray.init()`:
    `RAY_ADDRESS`, or a local one). Returns what `embed_corpus` returns (`written`: the shards this run wrote)."""
    try:
        import ray
    except ImportError as error:
        raise ImportError('The Ray path needs Ray Data: pip install "multitask-st[ray]".') from error

    driver_model = ShardModel(settings.model, settings.runtime, "cpu", settings.onnx_file)  # the manifest's tasks
    check_columns(dataset, settings)
    output_dir = start_manifest(output_dir, settings, driver_model)
    del driver_model
    pending, skipped, num_shards = [], [], 0
    for task in plan_shards(dataset, settings):
        num_shards = task.index + 1
        if (output_dir / shard_name(task.index)).is_file():
            check_written_shard(output_dir, task.index, task.first_row, task.columns[settings.text_column])
            skipped.append(task.index)
        else:
            pending.append({"index": task.index, "first_row": task.first_row, "columns": task.columns})
    check_shard_count(output_dir, num_shards, settings.source)
    written = []
    if pending:
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, log_to_driver=False)
        results = (
            ray.data.from_items(pending)
            .map_batches(
                ShardWriter,
                fn_constructor_kwargs={
                    "settings": asdict(settings),
                    "output_dir": str(output_dir),
                    "batch_size": batch_size,
                    "device": "cuda" if gpus_per_actor else "cpu",
                    "threads": threads,
                },  # fmt: skip
                batch_size=1,
                batch_format="pyarrow",
                concurrency=actors,
                num_cpus=cpus_per_actor,
                num_gpus=gpus_per_actor,
            )
            .take_all()
        )
        written = sorted(int(row["index"]) for row in results)
    complete = finish_manifest(output_dir, num_shards)
    return {"written": written, "skipped": skipped, "num_shards": num_shards, "complete": complete}
