"""Memory and speed of chunked `encode` against the whole-input path it replaced (commit 3bd0e6f).

Part `memory`: each (size, input, path) runs in a fresh subprocess. After loading the model, building the input and
one warm-up call, the child records its RSS (the baseline), then encodes the input while a thread samples RSS every
2 ms (and `ru_maxrss` is read after); "above output" is peak - baseline - the size of the returned array, i.e. what
encoding costs beyond its result. The input repeats the 2000 Rotten Tomatoes snippets (short texts, ~30 tokens).

Part `speed`: the real MiniLM on the 2000 snippets, the old and the new `encode` in one process, taking turns call
by call in rotating order over several rounds (the machine may be shared); medians and the per-round ratio.

Part `onnx-memory`: the same measurement for `MultiTaskSTOnnxModel.encode` on a generator, the small model exported to
ONNX; "old" is the runtime before it ran on the inference engine (`git show a71a0c1:.../onnx_runtime.py`, which kept
every chunk's output and concatenated them at the end), "new" the current one.

    python bench/memory.py --part memory --sizes 10000 100000 1000000
    python bench/memory.py --part onnx-memory --sizes 10000 100000
    python bench/memory.py --part speed --repeats 7
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import psutil
import torch
from common import add_common_arguments, backbone_path, load_builtin, machine
from transformers import AutoTokenizer, BertConfig
from transformers.utils import logging

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel


OLD_COMMIT = "3bd0e6f"  # the whole-input encode: tokenise everything, then batch
OLD_ONNX_COMMIT = "a71a0c1"  # the ONNX runtime before the inference engine: every chunk's output kept to the end
REPO = Path(__file__).resolve().parents[1]


def old_path_model(model: MultiTaskSTModel) -> MultiTaskSTModel:
    """The same model object (shared weights) with the `encode`/`predict` of commit 3bd0e6f."""
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:multitask_st/modeling_multitask_st.py"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("old_modeling_multitask_st")
    sys.modules[module.__name__] = module  # transformers looks classes' modules up there
    source = source.replace("from .configuration_multitask_st", "from multitask_st.configuration_multitask_st")
    exec(compile(source, f"{OLD_COMMIT}:modeling_multitask_st.py", "exec"), module.__dict__)
    old = module.MultiTaskSTModel
    cls = type(
        "OldPathModel", (type(model),), {name: old.__dict__[name] for name in ("encode", "predict", "_run_batches")}
    )
    shared = cls.__new__(cls)
    shared.__dict__ = model.__dict__  # same modules, same parameters
    return shared


def old_onnx_runtime():
    """`MultiTaskSTOnnxModel` as it was at OLD_ONNX_COMMIT (that file imported nothing of the package)."""
    source = subprocess.run(
        ["git", "show", f"{OLD_ONNX_COMMIT}:multitask_st/export/onnx_runtime.py"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("old_onnx_runtime")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{OLD_ONNX_COMMIT}:onnx_runtime.py", "exec"), module.__dict__)
    return module.MultiTaskSTOnnxModel


def export_tiny_onnx(folder: Path, backbone: str | None) -> Path:
    """The small model of `tiny_model`, saved with MiniLM's tokenizer and exported to ONNX (fp32), once."""
    from multitask_st.export.onnx import export_onnx

    if not (folder / "onnx/onnx/model.onnx").is_file():
        tokenizer = AutoTokenizer.from_pretrained(backbone_path(backbone))
        tiny_model(len(tokenizer)).save_pretrained(folder / "model")
        tokenizer.save_pretrained(folder / "model")
        export_onnx(folder / "model", folder / "onnx", check_texts=16, overwrite=True)
    return folder / "onnx"


def snippets(data_dir: str | None) -> list[str]:
    data = load_builtin("rotten_tomatoes", data_dir)
    return [text for split in data.values() for text in split["text"]][:2000]


def tiny_model(vocab_size: int) -> MultiTaskSTModel:
    """Two small layers (hidden 32) and a linear projection to MiniLM's 384: cheap to run a million texts through,
    with a result of MiniLM's size."""
    backbone = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    return MultiTaskSTModel(MultiTaskSTConfig(backbone_config=backbone, embedding_dim=384)).eval()


def child(args):
    """One measurement, printed as a JSON line."""
    logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    texts = snippets(args.data_dir)
    if args.model == "onnx":
        from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

        runtime_class = old_onnx_runtime() if args.path == "old" else MultiTaskSTOnnxModel
        runtime = runtime_class.from_pretrained(args.onnx_folder, threads=args.threads)
        model, tokenizer = _OnnxAsModel(runtime), None
    else:
        path = backbone_path(args.backbone)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = tiny_model(len(tokenizer)) if args.model == "tiny" else MultiTaskSTModel.from_backbone(path).eval()
    if args.path == "old" and args.model != "onnx":
        model = old_path_model(model)
    sentences = (
        [texts[i % len(texts)] for i in range(args.size)]
        if args.input == "list"
        else (texts[i % len(texts)] for i in range(args.size))
    )
    if args.path == "old" and args.input == "generator":
        sentences = list(sentences)  # the old path took lists only
    model.encode(texts[:64], tokenizer, batch_size=args.batch_size)  # warm-up
    process = psutil.Process()
    baseline = process.memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak, running = [baseline], True

    def sample():
        while running:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    embeddings = model.encode(sentences, tokenizer, batch_size=args.batch_size, show_progress_bar=False)
    seconds = time.perf_counter() - start
    running = False
    thread.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if maxrss > maxrss_before:  # the process peaked during encode: ru_maxrss is exact, the sampler may miss it
        peak[0] = max(peak[0], maxrss)
    mib = 2**20
    print(
        json.dumps(
            {
                "size": args.size,
                "model": args.model,
                "input": args.input,
                "path": args.path,
                "seconds": round(seconds, 1),
                "output_mib": round(embeddings.nbytes / mib, 1),
                "peak_above_baseline_mib": round((peak[0] - baseline) / mib, 1),
                "above_output_mib": round((peak[0] - baseline - embeddings.nbytes) / mib, 1),
            }  # fmt: skip
        )
    )


class _OnnxAsModel:
    """The ONNX runtime with `MultiTaskSTModel.encode`'s signature (its tokenizer argument ignored)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def encode(self, sentences, tokenizer, **kwargs):
        return self.runtime.encode(sentences, **kwargs)


def onnx_memory_part(args):
    import tempfile

    folder = export_tiny_onnx(Path(args.work_dir or tempfile.mkdtemp(prefix="bench-onnx-")), args.backbone)
    print(f"machine: {machine()}; onnxruntime threads per child: {args.threads}; graph: {folder}")
    print("| texts | runtime | input | path | seconds | result MiB | peak above baseline MiB | above result MiB |")
    print("|------:|---------|-------|------|--------:|-----------:|------------------------:|-----------------:|")
    for size in args.sizes:
        for path in ("new", "old"):
            command = [
                sys.executable, __file__, "--child", "--size", str(size), "--model", "onnx", "--input", "generator",
                "--path", path, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                "--onnx-folder", str(folder),
            ]  # fmt: skip
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"| {size:,} | onnx (tiny) | generator | {path} | {row['seconds']} | {row['output_mib']} | "
                f"{row['peak_above_baseline_mib']} | {row['above_output_mib']} |",
                flush=True,
            )


def memory_part(args):
    runs = []
    for size in args.sizes:
        runs.append((size, "tiny", "generator", "new"))
        if size <= args.old_max_size:  # the old path would need ~9 GB of token ids for a million texts
            runs += [(size, "tiny", "list", "new"), (size, "tiny", "list", "old")]
    if args.minilm_size:
        runs += [(args.minilm_size, "minilm", "list", "new"), (args.minilm_size, "minilm", "list", "old")]
    print(f"machine: {machine()}; torch threads per child: {args.threads}")
    print("| texts | model | input | path | seconds | result MiB | peak above baseline MiB | above result MiB |")
    print("|------:|-------|-------|------|--------:|-----------:|------------------------:|-----------------:|")
    for size, model, input_kind, path in runs:
        command = [
            sys.executable, __file__, "--child", "--size", str(size), "--model", model, "--input", input_kind,
            "--path", path, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
        ]  # fmt: skip
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        if args.backbone:
            command += ["--backbone", args.backbone]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"| {size:,} | {model} | {input_kind} | {path} | {row['seconds']} | {row['output_mib']} | "
            f"{row['peak_above_baseline_mib']} | {row['above_output_mib']} |",
            flush=True,
        )


def speed_part(args):
    logging.set_verbosity_error()
    path = backbone_path(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = MultiTaskSTModel.from_backbone(path).to(args.device).eval()
    old = old_path_model(model)
    texts = snippets(args.data_dir)
    common = {"batch_size": args.batch_size, "show_progress_bar": False}
    contenders = {
        "old encode (3bd0e6f)": lambda: old.encode(texts, tokenizer, **common),
        "new encode": lambda: model.encode(texts, tokenizer, **common),
    }
    reference = contenders["old encode (3bd0e6f)"]()
    for name, run in contenders.items():  # warm-up and the check that all give the same embeddings
        difference = abs(run() - reference).max()
        assert difference < 1e-5, f"{name} differs from the old path by {difference}"
    names = list(contenders)
    times = {name: [] for name in names}
    for round_ in range(args.repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            if str(args.device).startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
        print(f"round {round_}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in names), flush=True)
    print(f"machine: {machine()}; {len(texts)} Rotten Tomatoes snippets per call, batch {args.batch_size}")
    print("| contender | median s | texts/s | throughput vs old (medians) | median per-round ratio |")
    print("|-----------|---------:|--------:|----------------------------:|-----------------------:|")
    old_times = times[names[0]]
    for name in names:
        median = statistics.median(times[name])
        paired = statistics.median(o / t for o, t in zip(old_times, times[name], strict=True))
        ratio = statistics.median(old_times) / median
        print(f"| {name} | {median:.2f} | {len(texts) / median:.0f} | {ratio:.3f}x | {paired:.3f}x |")
    for name in names:
        print(f"rounds, {name} (s): {' '.join(f'{value:.2f}' for value in times[name])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--part", choices=["memory", "onnx-memory", "speed"], default="memory")
    parser.add_argument("--work-dir", default=None, help="onnx-memory: where to keep the exported graph")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--old-max-size", type=int, default=100_000, help="largest size run on the old path")
    parser.add_argument("--minilm-size", type=int, default=10_000, help="also measure the real MiniLM (0: no)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=["tiny", "minilm", "onnx"], help=argparse.SUPPRESS)
    parser.add_argument("--onnx-folder", help=argparse.SUPPRESS)
    parser.add_argument("--input", choices=["list", "generator"], help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=["new", "old"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    elif args.part == "memory":
        memory_part(args)
    elif args.part == "onnx-memory":
        onnx_memory_part(args)
    else:
        speed_part(args)


if __name__ == "__main__":
    main()
