"""Bulk inference from Spark: `DataFrame.mapInPandas` over a DataFrame of texts, each Python worker holding the
model once, giving the rows `multitask-st embed` writes (`shards.shard_table`): `row`, the kept columns, `embedding`,
and per head `<task>`, `<task>_score`, `<task>_probabilities` (a multi-label head: its labels; a regression head: its
values), null where a text has no content. Spark owns the partitioning, the retries and the output (write it with
`df.write.parquet(...)`); the manifest and resume of `multitask-st embed` are not used here.

    from multitask_st.bulk.spark import embed_dataframe
    corpus = spark.read.parquet("corpus/").withColumn("row", F.monotonically_increasing_id())
    embed_dataframe(corpus, "outputs/multitask-st", keep_columns=["id"]).write.parquet("embedded/")

Needs `pip install pyspark` (and Java) on the driver, and multitask-st with the model folder on every worker (a path
every node reads, or `SparkContext.addFile`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa

from ..inference_multitask_st import DEFAULT_BATCH_SIZE, MULTI_LABEL, REGRESSION
from .shards import EMBEDDING_COLUMN, ROW_COLUMN, EmbedSettings, ShardModel, output_tasks, shard_table


# One model per Python worker process and settings: Spark calls the function once per partition.
_MODELS: dict[tuple, ShardModel] = {}


def embed_dataframe(
    dataframe,
    model: str,
    *,
    text_column: str = "text",
    row_column: str = ROW_COLUMN,
    keep_columns: Sequence[str] = (),
    outputs: Sequence[str] = (),
    runtime: str = "torch",
    onnx_file: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    threads: int | None = 1,
):
    """`dataframe`'s texts embedded and classified, one output row per input row (a lazy Spark DataFrame).

    Args:
        dataframe: a `pyspark.sql.DataFrame` with the text column, `row_column` (a row number or id: Spark's rows have
            no order of their own; `F.monotonically_increasing_id()` gives one) and the columns to keep.
        model: a trained model folder (for `runtime="onnx"`: the exported folder), readable on every worker.
        text_column, keep_columns, outputs, runtime, onnx_file, max_length: as for `multitask-st embed`.
        batch_size: texts per forward pass.
        threads: threads per Python worker (torch or onnxruntime): Spark runs one worker per core.

    Returns:
        A DataFrame of `row` (from `row_column`), the kept columns, `embedding`, and each head's columns.
    """
    from pyspark.sql import types as T

    missing = [name for name in (text_column, row_column, *keep_columns) if name not in dataframe.columns]
    if missing:
        raise ValueError(f"The DataFrame has no column(s) {missing}; its columns are {dataframe.columns}.")
    settings = EmbedSettings(
        source="spark", model=str(model), runtime=runtime, text_column=text_column, keep_columns=list(keep_columns),
        outputs=list(outputs), max_length=max_length, onnx_file=onnx_file,
    )  # fmt: skip
    shard_model = _model(settings, threads)  # on the driver too: the schema, and a bad setting fails here
    with_embedding, tasks = output_tasks(settings, shard_model)
    floats = T.ArrayType(T.FloatType())
    fields = [T.StructField(ROW_COLUMN, T.LongType())]
    fields += [dataframe.schema[name] for name in keep_columns]
    fields += [T.StructField(EMBEDDING_COLUMN, floats)] if with_embedding else []
    for task in tasks:
        kind = shard_model.kinds[task]
        if kind == REGRESSION:
            fields.append(T.StructField(task, floats))
            continue
        fields.append(T.StructField(task, T.ArrayType(T.StringType()) if kind == MULTI_LABEL else T.StringType()))
        fields += [] if kind == MULTI_LABEL else [T.StructField(f"{task}_score", T.FloatType())]
        fields.append(T.StructField(f"{task}_probabilities", floats))
    columns = [row_column, text_column, *keep_columns]

    def embed_partition(frames: Iterator) -> Iterator:
        worker_model = _model(settings, threads)
        for frame in frames:
            table = shard_table(worker_model, settings, 0, {name: frame[name].tolist() for name in columns},
                                batch_size)  # fmt: skip
            table = table.set_column(0, ROW_COLUMN, pa.array(frame[row_column].to_numpy(), pa.int64()))
            yield table.to_pandas()

    return dataframe.select(*dict.fromkeys(columns)).mapInPandas(embed_partition, T.StructType(fields))


def _model(settings: EmbedSettings, threads: int | None) -> ShardModel:
    key = (settings.model, settings.runtime, settings.onnx_file, threads)
    if key not in _MODELS:
        _MODELS[key] = ShardModel(settings.model, settings.runtime, None, settings.onnx_file, threads)
    return _MODELS[key]
