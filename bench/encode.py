"""Encode throughput: `MultiTaskSTModel.encode` vs `SentenceTransformer.encode`, and `predict` (all heads) vs `encode`.

Same real texts (Rotten Tomatoes review snippets), backbone (all-MiniLM-L6-v2), batch size, truncation length and
device for every contender. Each contender is warmed up, then the runs are interleaved (ours, theirs, predict, ours,
...) so background load hits all of them alike; the table reports medians. Before timing, it checks that our
embeddings equal sentence-transformers' (min cosine over all texts).

    python bench/encode.py                      # 2000 texts, batch 32, max length 256, cuda if available
    python bench/encode.py --texts 500 --repeats 3 --device cpu
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import sentence_transformers
import torch
import transformers
from common import add_common_arguments, backbone_path, load_builtin
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

from multitask_st import MultiTaskSTModel


def rotten_tomatoes_texts(count: int, data_dir: str | None) -> list[str]:
    """`count` review snippets of the built-in Rotten Tomatoes set, shuffled with a fixed seed; repeated if too few."""
    data = load_builtin("rotten_tomatoes", data_dir)
    texts = [text for split in data.values() for text in split["text"]]
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[order[i % len(texts)]] for i in range(count)]


def timed(run, chunk: list[str], device: str) -> float:
    start = time.perf_counter()
    run(chunk)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


class TokenCounter:
    """Counts the token positions (padding included) that go through a backbone: the work each encoder does."""

    def __init__(self, backbone: torch.nn.Module):
        self.tokens = 0
        # On the embeddings: sentence-transformers calls the backbone's `forward` directly, past module hooks.
        self.handle = backbone.embeddings.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        self.tokens += input_ids.numel()


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="number of texts (default: 2000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (default: the backbone's, 256)")
    add_common_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds over all texts (default: 5)")
    parser.add_argument(
        "--chunk", type=int, default=500, help="texts per timed call; contenders alternate call by call (default: 500)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    transformers.logging.set_verbosity_error()  # the backbone's unused NSP pooler is reported on every load
    transformers.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)

    path = backbone_path(args.backbone)
    texts = rotten_tomatoes_texts(args.texts, args.data_dir)
    # Mean pooling and no projection: the same function sentence-transformers computes, so outputs can be checked.
    model = MultiTaskSTModel.from_backbone(str(path), pooling_mode="mean", projection="none").to(args.device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_length = args.max_length or model.config.max_seq_length
    # fp32 like ours, also from an fp16 checkpoint (sentence-transformers would keep its stored dtype)
    reference = SentenceTransformer(str(path), device=args.device, model_kwargs={"dtype": torch.float32})
    reference.max_seq_length = max_length
    common = {"batch_size": args.batch_size, "show_progress_bar": False}
    contenders = {
        # normalised like the reference's Normalize module, so both do the same work
        "multitask-st encode": lambda chunk: model.encode(
            chunk, tokenizer, normalize_embeddings=True, max_length=max_length, **common
        ),
        "sentence-transformers encode": lambda chunk: reference.encode(chunk, **common),
        "multitask-st predict": lambda chunk: model.predict(chunk, tokenizer, max_length=max_length, **common),
    }
    ours, theirs, predict = contenders
    door_dir = tempfile.TemporaryDirectory(prefix="multitask-st-doors-")
    doors, door_backbones = door_contenders(model, tokenizer, door_dir.name, args.device, max_length, common)
    contenders.update(doors)

    # Check (and warm-up): the same embeddings, and how many token positions each backbone runs on.
    counters = {ours: TokenCounter(model.backbone), theirs: TokenCounter(reference[0].auto_model)}
    chunks = [texts[i : i + args.chunk] for i in range(0, len(texts), args.chunk)]
    cosine = np.concatenate([(contenders[ours](c) * contenders[theirs](c)).sum(axis=1) for c in chunks])
    for counter in counters.values():
        counter.handle.remove()
    for chunk in chunks:
        contenders[predict](chunk)
    door_counters = {name: TokenCounter(backbone) for name, backbone in door_backbones.items()}
    door_check = check_doors(contenders, chunks, ours, predict)
    for name, counter in door_counters.items():
        counter.handle.remove()
        counters[name] = counter

    # Each round covers all texts; within it the contenders take turns chunk by chunk (in rotating order), so a
    # burst of background load lands on all of them.
    times = {name: [0.0] * args.repeats for name in contenders}
    names = list(contenders)
    for round_ in range(args.repeats):
        for index, chunk in enumerate(chunks):
            shift = (round_ + index) % len(names)
            for name in names[shift:] + names[:shift]:
                times[name][round_] += timed(contenders[name], chunk, str(args.device))
    medians = {name: statistics.median(values) for name, values in times.items()}
    paired_encode = statistics.median(s / o for s, o in zip(times[theirs], times[ours], strict=True))
    paired_predict = statistics.median(p / o for p, o in zip(times[predict], times[ours], strict=True))

    device = torch.cuda.get_device_name() if str(args.device).startswith("cuda") else platform.processor() or "cpu"
    print(f"device: {args.device} ({device}), CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}"
    )
    print(
        f"{len(texts)} Rotten Tomatoes snippets, batch size {args.batch_size}, max length {max_length}, "
        f"{args.repeats} rounds after warm-up, {args.chunk} texts per call, medians over rounds"
    )
    print(f"embedding check: min cosine(ours, sentence-transformers) over {len(texts)} texts = {cosine.min():.7f}")
    print()
    print(f"| {'contender':<28} | {'median s':>8} | {'texts/s':>8} | {'min-max s':>13} | {'backbone tokens':>15} |")
    print(f"|{'-' * 30}|{'-' * 9}:|{'-' * 9}:|{'-' * 14}:|{'-' * 16}:|")
    for name, values in times.items():
        spread = f"{min(values):.2f}-{max(values):.2f}"
        tokens = f"{counters[name].tokens:,}" if name in counters else "same as encode"
        rate = len(texts) / medians[name]
        print(f"| {name:<28} | {medians[name]:8.2f} | {rate:8.1f} | {spread:>13} | {tokens:>15} |")
    print()
    for name, values in times.items():
        print(f"rounds, {name} (s): {' '.join(f'{value:.2f}' for value in values)}")
    encode_ratio = medians[theirs] / medians[ours]
    predict_ratio = medians[predict] / medians[ours]
    print(
        f"encode throughput, ours / sentence-transformers: {encode_ratio:.3f}x of medians, "
        f"{paired_encode:.3f}x median per round (target >= 1.0x)"
    )
    print(
        f"predict time / encode time (ours): {predict_ratio:.3f}x of medians, "
        f"{paired_predict:.3f}x median per round (target <= 1.1x)"
    )
    print(door_check)
    for door, baseline in DOOR_BASELINES.items():
        paired = statistics.median(b / d for b, d in zip(times[baseline], times[door], strict=True))
        print(
            f"{door} throughput / {baseline}: {medians[baseline] / medians[door]:.3f}x of medians, "
            f"{paired:.3f}x median per round (target >= 0.95x)"
        )
    door_dir.cleanup()
    if cosine.min() < 0.99999:
        sys.exit(f"embeddings disagree: min cosine {cosine.min():.7f} < 0.99999")


# ---------------------------------------------------------------------------------------------------- the other doors
# `pipeline(model=folder, trust_remote_code=True)` and `SentenceTransformer(folder, trust_remote_code=True)` on the same
# model, saved: a door must not cost speed (target >= 0.95x of predict / encode in the same run).
PIPELINE_DOOR = "pipeline(folder) all heads"
SENTENCE_TRANSFORMER_DOOR = "SentenceTransformer(folder)"
DOOR_BASELINES = {PIPELINE_DOOR: "multitask-st predict", SENTENCE_TRANSFORMER_DOOR: "multitask-st encode"}


def door_contenders(model, tokenizer, folder: str, device, max_length: int, common: dict) -> dict:
    from transformers import pipeline

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    classifier = pipeline(model=folder, trust_remote_code=True, device=device, dtype=torch.float32)
    door = SentenceTransformer(folder, trust_remote_code=True, device=device, model_kwargs={"dtype": torch.float32})
    door.max_seq_length = max_length
    contenders = {
        PIPELINE_DOOR: lambda chunk: classifier(chunk, batch_size=common["batch_size"], max_length=max_length),
        SENTENCE_TRANSFORMER_DOOR: lambda chunk: door.encode(chunk, normalize_embeddings=True, **common),
    }
    return contenders, {PIPELINE_DOOR: classifier.model.backbone, SENTENCE_TRANSFORMER_DOOR: door[0].model.backbone}


def check_doors(contenders: dict, chunks: list[list[str]], ours: str, predict: str) -> str:
    """The doors give our numbers (and this is their warm-up)."""
    cosine = np.concatenate(
        [(contenders[ours](c) * contenders[SENTENCE_TRANSFORMER_DOOR](c)).sum(axis=1) for c in chunks]
    )
    worst, mismatched = 0.0, 0
    for chunk in chunks:
        for piped, predicted in zip(contenders[PIPELINE_DOOR](chunk), contenders[predict](chunk), strict=True):
            for task, result in piped.items():
                mismatched += result["label"] != predicted[task]["label"]
                worst = max(worst, abs(result["score"] - predicted[task]["score"]))
    if cosine.min() < 0.99999 or mismatched:
        sys.exit(f"a door disagrees: min cosine {cosine.min():.7f}, {mismatched} labels differ from predict")
    return (
        f"door check: SentenceTransformer(folder) min cosine {cosine.min():.7f}; pipeline labels all equal predict's, "
        f"max score difference {worst:.1e}"
    )


if __name__ == "__main__":
    main()
