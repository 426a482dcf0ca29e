"""CPU inference, every backend in one run: multitask-st PyTorch (fp32, bf16 autocast) / ONNX fp32 / int8 / OpenVINO bf16
/ OpenVINO static int8 (NNCF) against sentence-transformers' PyTorch, `backend="onnx"`, its own ONNX int8 export,
`backend="openvino"` and its static int8 OpenVINO export, on the same texts, batch size, truncation and thread count.

    bash bench/peer_venv.sh /work/peer-onnx-venv onnx             # once: sentence-transformers[onnx], a venv of its own
    bash bench/peer_venv.sh /work/peer-openvino-venv openvino     # once: sentence-transformers[openvino], another
    python bench/onnx_encode.py --model-dir outputs/multitask-st --peer-python /work/peer-onnx-venv/bin/python \
        --openvino-peer-python /work/peer-openvino-venv/bin/python

`--model-dir` is a trained model on the packaged MiniLM (mean pooling); its onnx/ folder is exported (with the
export's checks and gates: int8, and with OpenVINO and NNCF installed int8_static and bf16) when missing. sentence-transformers runs in worker processes in the peer venvs (bench/st_peer_worker.py)
that time one chunk per request, so every side alternates chunk by chunk in one schedule (rotating order, several
rounds) and background load hits all of them alike; the table reports the best and the median round. The machine's
matmul ceilings (fp32 sgemm, bf16 and int8 GEMM through PyTorch's oneDNN/MKL kernels, 2048 x 2048) are measured in the
same run, before and after, and each contender's rate is given as the fraction of the bf16 ceiling (and the fp32 one)
that its arithmetic reaches (encoder FLOPs of the texts' real token counts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import backbone_path, load_builtin
from transformers import AutoTokenizer

from multitask_st import MultiTaskSTModel
from multitask_st.export.onnx import export_onnx
from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel
from multitask_st.export.quantize import host_arch, int8_file_name
from multitask_st.export.static_int8 import STATIC_INT8_FILE_NAME


def rotten_tomatoes_texts(count: int) -> list[str]:
    data = load_builtin("rotten_tomatoes")
    texts = [text for split in data.values() for text in split["text"]]
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[order[i % len(texts)]] for i in range(count)]


def matmul_gflops(threads: int, dtype: str = "fp32", size: int = 2048, repeats: int = 5) -> float:
    """The machine's matmul rate in `dtype` (fp32, bf16, int8): the best of `repeats` (size x size) @ (size x size)
    products, in GFLOP/s (GOP/s for int8: `torch._int_mm`, int8 x int8 -> int32)."""
    torch.set_num_threads(threads)
    if dtype == "int8":
        a = torch.randint(-128, 127, (size, size), dtype=torch.int8)
        b = torch.randint(-128, 127, (size, size), dtype=torch.int8)

        def product():
            return torch._int_mm(a, b)
    else:
        kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)

        def product():
            return a @ b

    product()
    best = min(_seconds(product) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


CEILINGS = ("fp32", "bf16", "int8")
CALIBRATION_TEXTS = 300  # what the static int8 OpenVINO peer calibrates on (as in issue 19's first measurement)


def encoder_flops(token_counts: list[int], config) -> float:
    """Multiply-adds x 2 of a BERT encoder over texts of these token counts (unpadded): the work every contender does."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    intermediate = config.intermediate_size
    tokens = np.asarray(token_counts, dtype=np.float64)
    dense = 2 * tokens.sum() * (4 * hidden * hidden + 2 * hidden * intermediate)  # QKV, output, FFN in and out
    attention = 2 * 2 * (tokens**2).sum() * hidden  # scores and weighted sum
    return layers * (dense + attention)


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class Peer:
    """The sentence-transformers worker process (bench/st_peer_worker.py in the peer venv)."""

    def __init__(self, python: str, chunks: list[list[str]], backbone: str, args, backends: str = "onnx"):
        self.texts_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(chunks, self.texts_file)
        self.texts_file.close()
        # Static int8 calibrates on texts outside the timed ones: Rotten Tomatoes snippets past them in the same order.
        self.calibration_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(rotten_tomatoes_texts(args.texts + CALIBRATION_TEXTS)[args.texts :], self.calibration_file)
        self.calibration_file.close()
        command = [
            python, str(Path(__file__).with_name("st_peer_worker.py")), "--backbone", backbone,
            "--texts", self.texts_file.name, "--batch-size", str(args.batch_size), "--max-length",
            str(args.max_length), "--threads", str(args.threads), "--arch", args.arch, "--backends", backends,
            "--calibration", self.calibration_file.name,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict:
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the sentence-transformers worker stopped; see its output above")
            if line.startswith("{"):
                return json.loads(line)

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)
        os.unlink(self.texts_file.name)
        os.unlink(self.calibration_file.name)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="A trained multitask-st model on the packaged MiniLM.")
    parser.add_argument("--peer-python", required=True, help="python of the venv `bench/peer_venv.sh DIR onnx` built")
    parser.add_argument(
        "--openvino-peer-python", help="python of the venv `bench/peer_venv.sh DIR openvino` built (else no OpenVINO)"
    )
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None, help="default: the model's (256 for MiniLM)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=500, help="texts per timed call (default: 500)")
    parser.add_argument("--arch", default=host_arch())
    parser.add_argument("--only", nargs="*", help="run only the contenders whose names contain one of these words")
    parser.add_argument(
        "--gate-texts", type=int, default=2000, help="texts per built-in set the export's gate reads, if it exports"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()

    model_dir = Path(args.model_dir)
    int8_name = int8_file_name(args.arch)
    with_openvino = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None
    precisions = ["int8", "int8_static", "bf16"] if with_openvino else ["int8"]
    report_path = model_dir / "onnx/export_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if not (model_dir / "onnx" / int8_name).is_file() or not set(precisions) <= set(report):
        export_onnx(
            model_dir, model_dir, quantize=precisions, arch=args.arch, overwrite=True, gate_texts=args.gate_texts
        )
    report = json.loads(report_path.read_text())
    model = MultiTaskSTModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args.max_length = args.max_length or model.default_max_length(tokenizer)
    fp32 = MultiTaskSTOnnxModel.from_pretrained(model_dir, threads=args.threads, provider="CPUExecutionProvider")
    int8 = MultiTaskSTOnnxModel.from_pretrained(
        model_dir, file_name=int8_name, threads=args.threads, provider="CPUExecutionProvider"
    )
    texts = rotten_tomatoes_texts(args.texts)
    chunks = [texts[i : i + args.chunk] for i in range(0, len(texts), args.chunk)]
    common = {"batch_size": args.batch_size, "max_length": args.max_length}
    bf16 = {**common, "dtype": torch.bfloat16}
    ours = {
        "multitask-st PyTorch encode": lambda c: model.encode(c, tokenizer, show_progress_bar=False, **common),
        "multitask-st PyTorch bf16 encode": lambda c: model.encode(c, tokenizer, show_progress_bar=False, **bf16),
        "multitask-st PyTorch bf16 predict (all heads)": lambda c: model.predict(
            c, tokenizer, show_progress_bar=False, **bf16
        ),  # fmt: skip
        "multitask-st ONNX fp32 encode": lambda c: fp32.encode(c, **common),
        "multitask-st ONNX int8 encode": lambda c: int8.encode(c, **common),
        "multitask-st ONNX int8 predict (all heads)": lambda c: int8.predict(c, **common),
    }
    if importlib.util.find_spec("openvino") is not None:  # the `openvino` extra: the same fp32 graph, bf16 kernels
        openvino = MultiTaskSTOnnxModel.from_pretrained(model_dir, backend="openvino", threads=args.threads)
        print(f"our OpenVINO backend runs the graph in {openvino.session.precision}")
        ours["multitask-st OpenVINO bf16 encode"] = lambda c: openvino.encode(c, **common)
        ours["multitask-st OpenVINO bf16 predict (all heads)"] = lambda c: openvino.predict(c, **common)
        # one batch per stream at once (`performance_hint="throughput"`): what OpenVINO offers for many texts
        streams = MultiTaskSTOnnxModel.from_pretrained(
            model_dir, backend="openvino", threads=args.threads, performance_hint="throughput"
        )
        ours["multitask-st OpenVINO bf16 predict (all heads), throughput"] = lambda c: streams.predict(c, **common)
    if (model_dir / "onnx" / STATIC_INT8_FILE_NAME).is_file():  # NNCF's static int8 graph, on OpenVINO's int8 kernels
        static = MultiTaskSTOnnxModel.from_pretrained(
            model_dir, file_name=STATIC_INT8_FILE_NAME, backend="openvino", threads=args.threads
        )
        ours["multitask-st OpenVINO static int8 encode"] = lambda c: static.encode(c, **common)
        ours["multitask-st OpenVINO static int8 predict (all heads)"] = lambda c: static.predict(c, **common)
        static_streams = MultiTaskSTOnnxModel.from_pretrained(
            model_dir, file_name=STATIC_INT8_FILE_NAME, backend="openvino", threads=args.threads,
            performance_hint="throughput",
        )  # fmt: skip
        ours["multitask-st OpenVINO static int8 encode, throughput"] = lambda c: static_streams.encode(c, **common)
        ours["multitask-st OpenVINO static int8 predict (all heads), throughput"] = lambda c: static_streams.predict(
            c, **common
        )  # fmt: skip
    peers = [Peer(args.peer_python, chunks, backbone_path(None), args, "onnx")]
    theirs = {
        "sentence-transformers PyTorch encode": (peers[0], "st-torch"),
        "sentence-transformers ONNX encode": (peers[0], "st-onnx"),
        f"sentence-transformers ONNX int8 ({args.arch}) encode": (peers[0], "st-onnx-int8"),
    }
    if args.openvino_peer_python:
        peers.append(Peer(args.openvino_peer_python, chunks, backbone_path(None), args, "openvino"))
        theirs["sentence-transformers OpenVINO encode"] = (peers[1], "st-openvino")
        theirs["sentence-transformers OpenVINO static int8 encode"] = (peers[1], "st-openvino-int8")
    if args.only:
        ours = {name: run for name, run in ours.items() if any(word in name for word in args.only)}
        theirs = {name: key for name, key in theirs.items() if any(word in name for word in args.only)}
    names = [*ours, *theirs]

    # Warm-up (every contender over all texts once), and the embeddings' agreement with each side's fp32 PyTorch.
    reference = np.concatenate([model.encode(c, tokenizer, show_progress_bar=False, **common) for c in chunks])
    agreement = {}
    for name, run in ours.items():
        if "encode" in name and name != "multitask-st PyTorch encode":
            agreement[name] = _cosine(np.concatenate([run(c) for c in chunks]), reference)
        else:
            for c in chunks:
                run(c)
    st_fp32 = np.load(peers[0].ask({"embed": "st-torch"})["path"])
    for name, (peer, key) in theirs.items():
        if key != "st-torch":
            agreement[name] = _cosine(np.load(peer.ask({"embed": key})["path"]), st_fp32)

    ceilings = {dtype: [matmul_gflops(args.threads, dtype)] for dtype in CEILINGS}
    times = {name: [0.0] * args.rounds for name in names}
    for round_ in range(args.rounds):
        for index, chunk in enumerate(chunks):
            shift = (round_ + index) % len(names)
            for name in names[shift:] + names[:shift]:
                if name in ours:
                    times[name][round_] += _seconds(lambda: ours[name](chunk))  # noqa: B023
                else:
                    peer, key = theirs[name]
                    times[name][round_] += peer.ask({"contender": key, "chunk": index})["seconds"]
    for dtype in CEILINGS:
        ceilings[dtype].append(matmul_gflops(args.threads, dtype))
    for peer in peers:
        peer.close()

    token_counts = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    flops = encoder_flops(token_counts, model.config.backbone_config)
    medians = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    peak = {dtype: max(values) for dtype, values in ceilings.items()}
    fastest_st = min(theirs, key=lambda name: best[name])
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads each; "
          f"load average before/after: {load[0]:.1f}/{os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"ours: torch {torch.__version__}, onnxruntime {_version('onnxruntime')}")
    for peer in peers:
        print(f"peer: {peer.ready['versions']}")
    print(
        f"{len(texts)} Rotten Tomatoes snippets ({sum(token_counts):,} tokens, mean {np.mean(token_counts):.1f}), batch "
        f"size {args.batch_size}, max length {args.max_length}, {args.rounds} rounds, {args.chunk} texts per call"
    )
    for dtype, values in ceilings.items():
        print(
            f"{dtype} matmul ceiling: {peak[dtype]:.0f} GFLOP/s (2048, before/after: {values[0]:.0f}/{values[1]:.0f})"
        )
    print(f"encoder work: {flops / len(texts) / 1e9:.3f} GFLOP per text")
    for name, cosine in agreement.items():
        print(f"embedding cosine to its fp32 PyTorch, {name}: mean {cosine.mean():.5f}, min {cosine.min():.5f}")
    for precision in ("int8", "int8_static", "bf16"):
        if precision not in report:
            continue
        entry = report[precision]
        flips = ", ".join(
            f"{task} {row['flips']['flips']}/{row['flips']['texts']}" for task, row in entry["tasks"].items()
        )
        kept = len(entry.get("quantization", {}).get("nodes_kept_fp32") or [])
        print(
            f"{precision} export gate ({entry['file']}): passed {entry.get('passed')}; labels changed {flips}; STS-B "
            f"Spearman delta {entry['stsb_spearman']['delta_points']:+.2f}; mean cosine {entry['mean_cosine']:.5f}; "
            f"nodes kept fp32: {kept}"
        )
    print()
    print(f"| contender | best s | median s | texts/s (best) | vs {fastest_st} | of bf16 ceiling | of fp32 ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        rate = len(texts) / best[name]
        print(
            f"| {name} | {best[name]:.2f} | {medians[name]:.2f} | {rate:.0f} | {best[fastest_st] / best[name]:.2f}x | "
            f"{flops / best[name] / 1e9 / peak['bf16']:.0%} | {flops / best[name] / 1e9 / peak['fp32']:.0%} |"
        )
    print()
    for name, values in times.items():
        print(f"rounds, {name} (s): {' '.join(f'{value:.2f}' for value in values)}")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _version(module: str) -> str:
    return __import__(module).__version__


if __name__ == "__main__":
    sys.exit(main())
