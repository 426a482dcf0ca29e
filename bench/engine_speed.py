"""Throughput of the inference engine against the code before it (commit a71a0c1), in one process, and from 2 threads.

MiniLM (fp32) on Rotten Tomatoes snippets. Old and new `encode`/`predict` (PyTorch: the old methods bound to the same
model object; ONNX: the old runtime file on the same exported graph) take turns call by call in rotating order over
several rounds, since the machine may be shared; medians and the median per-round ratio. Then the new doors from two
threads at once (each encoding half the texts) against one thread, and what the thread-safety costs per call: building
the eval twin (a train-mode model runs one instead of flipping eval/train) and the tokenizer lock.

`--part torch` and `--part onnx` run one backend per process (onnxruntime's threads spin for a while after each run
and would slow the PyTorch calls that follow them); `--part all` runs everything in one process.

    python bench/engine_speed.py --part torch --texts 200 --rounds 7
    python bench/engine_speed.py --part onnx --texts 200 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import torch
from common import add_common_arguments, backbone_path, load_builtin, machine
from memory import OLD_ONNX_COMMIT, old_onnx_runtime
from transformers import AutoTokenizer
from transformers.utils import logging

from multitask_st import MultiTaskSTModel
from multitask_st.export.onnx import export_onnx
from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel
from multitask_st.layers_multitask_st import eval_twin


REPO = Path(__file__).resolve().parents[1]


def old_model(model: MultiTaskSTModel) -> MultiTaskSTModel:
    """The same model object (shared weights) with every method of the model class at OLD_ONNX_COMMIT."""
    source = subprocess.run(
        ["git", "show", f"{OLD_ONNX_COMMIT}:multitask_st/modeling_multitask_st.py"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("old_modeling_multitask_st")
    sys.modules[module.__name__] = module
    source = source.replace("from .configuration_multitask_st", "from multitask_st.configuration_multitask_st")
    exec(compile(source, f"{OLD_ONNX_COMMIT}:modeling_multitask_st.py", "exec"), module.__dict__)
    methods = {
        name: value
        for name, value in module.MultiTaskSTModel.__dict__.items()
        if isinstance(value, types.FunctionType) and name not in ("__init__", "save_pretrained")
    }
    cls = type("OldEngineModel", (type(model),), methods)
    shared = cls.__new__(cls)
    shared.__dict__ = model.__dict__  # same modules, same parameters
    return shared


def in_two_threads(run, texts):
    halves = [texts[: len(texts) // 2], texts[len(texts) // 2 :]]
    threads = [threading.Thread(target=run, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work-dir", default="/tmp/bench-engine-speed")
    parser.add_argument("--part", choices=["all", "torch", "onnx"], default="all")
    args = parser.parse_args()
    logging.set_verbosity_error()
    path = backbone_path(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = MultiTaskSTModel.from_backbone(path).eval()
    work = Path(args.work_dir)
    if not (work / "onnx/onnx/model.onnx").is_file():
        model.save_pretrained(work / "model")
        tokenizer.save_pretrained(work / "model")
        export_onnx(work / "model", work / "onnx", check_texts=16, overwrite=True)
    data = load_builtin("rotten_tomatoes", args.data_dir)
    texts = [text for split in data.values() for text in split["text"]][: args.texts]
    old = old_model(model)
    onnx_new = onnx_old = None
    if args.part != "torch":
        onnx_new = MultiTaskSTOnnxModel.from_pretrained(work / "onnx")
        onnx_old = old_onnx_runtime().from_pretrained(work / "onnx")
    common = {"batch_size": args.batch_size, "show_progress_bar": False}
    contenders = {
        "torch encode, old": lambda: old.encode(texts, tokenizer, **common),
        "torch encode, new": lambda: model.encode(texts, tokenizer, **common),
        "torch predict, old": lambda: old.predict(texts, tokenizer, **common),
        "torch predict, new": lambda: model.predict(texts, tokenizer, **common),
        "onnx encode, old": lambda: onnx_old.encode(texts, **common),
        "onnx encode, new": lambda: onnx_new.encode(texts, **common),
        "torch encode, new, 2 threads": lambda: in_two_threads(lambda part: model.encode(part, tokenizer, **common), texts),
        "onnx encode, new, 2 threads": lambda: in_two_threads(lambda part: onnx_new.encode(part, **common), texts),
    }  # fmt: skip
    contenders = {name: run for name, run in contenders.items() if args.part == "all" or name.startswith(args.part)}
    for name in {name.split(", ")[0] for name in contenders if "encode" in name}:  # same numbers before and after
        difference = abs(contenders[f"{name}, old"]() - contenders[f"{name}, new"]()).max()
        assert difference < 1e-5, f"{name}: old and new differ by {difference}"
    names, times = list(contenders), {name: [] for name in contenders}
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
        print(f"round {round_}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in names), flush=True)
    print(f"machine: {machine()}; {len(texts)} Rotten Tomatoes snippets per call, batch {args.batch_size}")
    print("| contender | median s | texts/s | vs old (medians) | median per-round ratio |")
    print("|-----------|---------:|--------:|-----------------:|-----------------------:|")
    for name in names:
        median = statistics.median(times[name])
        baseline = name.split(", ")[0] + ", old"
        if baseline in times and name != baseline:
            ratio = f"{statistics.median(times[baseline]) / median:.3f}x"
            paired = f"{statistics.median(o / t for o, t in zip(times[baseline], times[name], strict=True)):.3f}x"
        else:
            ratio = paired = ""
        print(f"| {name} | {median:.2f} | {len(texts) / median:.0f} | {ratio} | {paired} |")
    # What a train-mode call adds: one eval twin per call (module objects copied, no tensor), and the tokenizer lock.
    repeats = 200
    start = time.perf_counter()
    for _ in range(repeats):
        eval_twin(model)
    twin_ms = (time.perf_counter() - start) / repeats * 1000
    start = time.perf_counter()
    model.encode(texts[:32], tokenizer, batch_size=32, show_progress_bar=False)
    one_batch_ms = (time.perf_counter() - start) * 1000
    print(f"eval twin of MiniLM: {twin_ms:.2f} ms per call ({sum(1 for _ in model.modules())} modules); "
          f"one encode call of 32 texts: {one_batch_ms:.0f} ms")  # fmt: skip
    print(f"torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
