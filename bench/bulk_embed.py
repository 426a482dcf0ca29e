"""Bulk inference throughput (`multitask-st embed`): one process, two processes (torchrun), Ray Data local mode, against
plain `model.encode` and `encode` + `predict` in one process, on the same texts.

    python bench/bulk_embed.py --model outputs/multitask-st --texts 4000

Each embed run is the command a user types, in a fresh interpreter (model loading, and Ray's start for --ray,
included in `wall`); `busy` is the time spent in the shards (the `seconds` each shard's metadata records, summed and
divided by the workers that ran in parallel), what a long run converges to. Threads: one process gets all cores;
two processes and two Ray actors one core each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import backbone_path, load_builtin, machine


def corpus(path: Path, count: int) -> list[str]:
    texts = [text for text in load_builtin("rotten_tomatoes")["train"]["text"] if text.strip()]
    texts = (texts * (count // len(texts) + 1))[:count]
    path.write_text("\n".join(" ".join(text.split()) for text in texts) + "\n", encoding="utf-8")
    return texts


def model_folder(model: str | None, folder: Path) -> str:
    if model:
        return model
    from transformers import AutoTokenizer

    from multitask_st import MultiTaskSTModel

    backbone = backbone_path(None)
    tasks = {"topic": ["business", "entertainment", "politics", "sport", "tech"], "sentiment": ["neg", "pos"]}
    MultiTaskSTModel.from_backbone(backbone, tasks=tasks, max_seq_length=128).save_pretrained(folder)
    AutoTokenizer.from_pretrained(backbone).save_pretrained(folder)
    return str(folder)


def run_embed(
    prefix: list[str], model: str, source: Path, output: Path, extra: list[str], env: dict, shard_size: int
) -> dict:
    command = [*prefix, "embed", model, str(source), "--output", str(output), "--shard_size", str(shard_size), *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    manifest = json.loads((output / "manifest.json").read_text())
    return {
        "rows": manifest["num_rows"],
        "wall": wall,
        "shards": len(manifest["shards"]),
        "shard_seconds": sum(s["seconds"] for s in manifest["shards"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="A trained model folder (default: MiniLM with fresh heads: same speed).")
    parser.add_argument("--shard_size", type=int, default=500)
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--skip", nargs="*", default=[], help="Runs to leave out: encode, one, two, ray.")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    model = model_folder(args.model, work / "model")
    source = work / "corpus.txt"
    texts = corpus(source, args.texts)
    print(f"{machine()}; {len(texts)} Rotten Tomatoes texts, batch {args.batch_size}, shards of {args.shard_size}; model {model}",
          flush=True)  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    python_m = [sys.executable, "-m", "multitask_st"]
    results = {}

    def report(name: str, speed: float):  # printed as measured: a long run stopped half-way keeps what it measured
        results[name] = speed
        baseline = results.get("plain encode (1 process, in-process)")
        print(f"| {name} | {speed:.1f} | {f'{speed / baseline:.2f}x' if baseline else '-'} |", flush=True)

    print("| run | texts/s | vs plain encode |\n|---|---:|---:|", flush=True)
    if "encode" not in args.skip:
        import torch
        from transformers import AutoTokenizer

        from multitask_st import MultiTaskSTModel

        torch.set_num_threads(cores)
        loaded = MultiTaskSTModel.from_pretrained(model).eval()
        tokenizer = AutoTokenizer.from_pretrained(model)
        loaded.encode(texts[:64], tokenizer)  # warm-up
        started = time.perf_counter()
        loaded.encode(texts, tokenizer, batch_size=args.batch_size)
        report("plain encode (1 process, in-process)", len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        loaded.encode(texts, tokenizer, batch_size=args.batch_size)
        loaded.predict(texts, tokenizer, batch_size=args.batch_size)
        report("encode + predict (2 passes, in-process)", len(texts) / (time.perf_counter() - started))
    runs = {
        "one": ("embed, 1 process", python_m, [], {"OMP_NUM_THREADS": str(cores)}, 1),
        "two": ("embed, 2 processes (torchrun)",
                [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
                 "multitask_st"], [], {"OMP_NUM_THREADS": str(max(cores // 2, 1))}, 2),
        "ray": ("embed, Ray Data local mode (2 actors x 1 CPU)", python_m,
                ["--ray", "--ray_actors", "2", "--threads", str(max(cores // 2, 1))], {"RAY_ADDRESS": "local"}, 2),
    }  # fmt: skip
    for key, (name, prefix, extra, variables, workers) in runs.items():
        if key in args.skip:
            continue
        measured = run_embed(prefix, model, source, work / key, ["--batch_size", str(args.batch_size), *extra],
                             {**env, **variables}, args.shard_size)  # fmt: skip
        report(f"{name}: wall (start-up included)", measured["rows"] / measured["wall"])
        parallel = min(workers, measured["shards"])  # workers that had a shard to write
        report(f"{name}: busy in shards", measured["rows"] / (measured["shard_seconds"] / parallel))


if __name__ == "__main__":
    main()
