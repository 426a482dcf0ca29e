"""Bulk inference: a corpus embedded and classified into Parquet shards with a manifest, resumable after a crash, in
one process, across processes (torchrun / `accelerate launch`) or on Ray Data (`multitask-st embed`).

    shards.py     the layout, the model a run holds (PyTorch or ONNX), atomic writes, the manifest, the run
    corpus.py     reading the corpus: local files or a Hub dataset, read into Arrow or streamed
    ray_data.py   the same run as a Ray Data actor pool (`map_batches`)
"""
