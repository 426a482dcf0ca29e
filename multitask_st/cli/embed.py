"""Embed and classify a corpus into Parquet shards with a manifest (`multitask-st embed`).

    multitask-st embed MODEL_DIR corpus.csv --output embedded/                       # one process
    multitask-st embed MODEL_DIR "data/*.parquet" --text_column body --keep_columns id --output embedded/
    multitask-st embed MODEL_DIR org/dataset --split train --streaming --output embedded/   # a Hub dataset, streamed
    torchrun --nproc_per_node 4 -m multitask_st embed MODEL_DIR corpus.jsonl --output embedded/  # 4 processes
    multitask-st embed ONNX_DIR corpus.txt --runtime onnx --ray --ray_actors 8 --output /shared/embedded/   # Ray Data

Each output row holds `row` (its number in the corpus), the kept columns, `embedding` and, per head, `<task>`,
`<task>_score` and `<task>_probabilities` (`--outputs` picks some). Run the same command again after a crash: the
shards already written are kept and the rest are written (see multitask_st/bulk/shards.py for the guarantees).
Errors are one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from multitask_st.bulk.shards import DEFAULT_SHARD_SIZE, RUNTIMES, EmbedSettings


PROG = "multitask-st embed"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A trained model folder or Hub id (--runtime onnx: an exported folder).")
    parser.add_argument(
        "source",
        help="The corpus: a .csv/.tsv/.json/.jsonl/.parquet/.txt file, a glob or folder of them, or a Hub dataset id.",
    )
    parser.add_argument("--output", required=True, help="The output folder (new, empty, or a run to continue).")
    parser.add_argument("--split", default="train", help="The split of a Hub dataset (default train).")
    parser.add_argument("--text_column", default="text", help="The column holding the texts (default text).")
    parser.add_argument("--keep_columns", nargs="*", default=[], help="Input columns copied to the output (ids...).")
    parser.add_argument(
        "--outputs", nargs="*", default=[], help="What to write: 'embedding' and/or task names (default: all)."
    )
    parser.add_argument("--streaming", action="store_true", help="Stream the corpus (nothing converted up front).")
    parser.add_argument("--shard_size", type=int, default=DEFAULT_SHARD_SIZE, help="Rows per output shard.")
    parser.add_argument("--batch_size", type=int, default=64, help="Texts per forward pass (default 64).")
    parser.add_argument("--max_length", type=int, help="Tokens kept per text (default: the model's).")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch", help="torch (default) or onnx.")
    parser.add_argument("--onnx_file", help="onnx: the graph file, e.g. onnx/model_qint8_avx512_vnni.onnx.")
    parser.add_argument("--threads", type=int, help="Threads per process or actor (default: the runtime's).")
    ray = parser.add_argument_group("Ray Data (pip install 'multitask-st[ray]')")
    ray.add_argument("--ray", action="store_true", help="Run on the Ray cluster of RAY_ADDRESS (or a local one).")
    ray.add_argument("--ray_actors", type=int, default=1, help="Actors, each holding the model (default 1).")
    ray.add_argument("--ray_cpus_per_actor", type=float, default=1, help="CPUs per actor (default 1).")
    ray.add_argument("--ray_gpus_per_actor", type=float, default=0, help="GPUs per actor (default 0).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Embed as the command line says; returns the exit status (errors: one line on stderr, status 1)."""
    args = parse_args(argv, prog)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        from multitask_st.bulk.corpus import open_corpus

        for name in ("batch_size", "ray_actors"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(args, name)}.")
        if args.ray and world_size > 1:
            raise ValueError(f"--ray runs from one driver process; this one was launched as {world_size} processes.")
        settings = EmbedSettings(
            source=args.source, model=args.model, runtime=args.runtime, split=args.split,
            text_column=args.text_column, keep_columns=args.keep_columns, outputs=args.outputs,
            shard_size=args.shard_size, max_length=args.max_length, onnx_file=args.onnx_file,
        )  # fmt: skip
        dataset = open_corpus(args.source, split=args.split, streaming=args.streaming)
        if args.ray:
            from multitask_st.bulk.ray_data import embed_corpus_on_ray

            result = embed_corpus_on_ray(dataset, settings, args.output, args.batch_size, args.ray_actors,
                                         args.ray_cpus_per_actor, args.ray_gpus_per_actor, args.threads)  # fmt: skip
        else:
            from multitask_st.bulk.shards import ShardModel, embed_corpus

            model = ShardModel(args.model, args.runtime, onnx_file=args.onnx_file, threads=args.threads)
            result = embed_corpus(dataset, settings, args.output, model, args.batch_size, rank, world_size)
    except (ValueError, OSError, TimeoutError, ImportError) as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(json.dumps({"process": rank, "processes": world_size, **result}))
    return 0
