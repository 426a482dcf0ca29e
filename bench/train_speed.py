"""Training speed: `MultiTaskTrainer` vs the plain `Trainer` on the same backbone, texts, batch size and max length.

Part 1 trains on Rotten Tomatoes snippets: the plain `Trainer` + `AutoModelForSequenceClassification`, and
`MultiTaskTrainer` + `MultiTaskSTModel` on the same single task; the runs alternate (plain, ours, plain, ours...) and
the medians are compared. Part 2 measures what length-grouped batching gains on the long BBC News documents, for both
trainers. Throughput counts the steps after `--warmup-steps` (samples/s of optimizer steps, data loading included).
`MultiTaskTrainer` runs with its defaults, embedding distillation included: its per-step cost is in the throughput, and
its one-time teacher pass over the training set shows in the "train() to end of first step" column.

    python bench/train_speed.py                       # CPU defaults: a few minutes on 2 cores
    python bench/train_speed.py --steps 60 --bbc-steps 40 --batch-size 32 --bbc-max-length 512   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from common import add_common_arguments, backbone_path, load_builtin, machine
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from multitask_st import MultiTaskSTModel
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


class StepTimer(TrainerCallback):
    """Wall time from the end of step `warmup` to the end of the last step, and when the first step ended."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.first = warmup, None, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step == 1:
            self.first = time.perf_counter()
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def distillation_override(arguments) -> dict:
    weight = arguments.embedding_distillation_weight
    return {} if weight is None else {"embedding_distillation_weight": weight}


def run(arguments, backbone, data, max_length, steps, grouped, ours) -> tuple[float, float]:
    """Train `steps` steps; samples/s after warm-up, and seconds from `train()` to the end of the first step (set-up:
    for ours, the one pass that computes the teacher embeddings of the whole training set is most of it)."""
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    names = data["train"].features["label"].names
    settings = {
        "output_dir": tempfile.mkdtemp(),
        "per_device_train_batch_size": arguments.batch_size,
        "max_steps": steps,
        "learning_rate": 5e-5,
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": 1000,
        "disable_tqdm": True,
        "seed": arguments.seed,
        "use_cpu": arguments.device == "cpu",
        "bf16": arguments.bf16,
        "train_sampling_strategy": "group_by_length" if grouped else "random",
    }
    timer = StepTimer(arguments.warmup_steps)
    if ours:
        model = MultiTaskSTModel.from_backbone(backbone, tasks={"task": names}, max_seq_length=max_length)
        train = tokenize_task_dataset(data, tokenizer, max_length=max_length)["train"]
        trainer = MultiTaskTrainer(
            model=model,
            args=MultiTaskTrainingArguments(**settings, stsb_eval_pairs=0, **distillation_override(arguments)),
            train_dataset={"task": train},
            processing_class=tokenizer,
            callbacks=[timer],
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            backbone, num_labels=len(names), dtype=torch.float32
        )
        train = data["train"].map(
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length), batched=True
        )
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**settings),
            train_dataset=train.remove_columns(["text"]),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            callbacks=[timer],
        )
    called = time.perf_counter()
    trainer.train()
    samples_per_second = (steps - arguments.warmup_steps) * arguments.batch_size / (timer.end - timer.start)
    return samples_per_second, timer.first - called


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64, help="Part 1 (Rotten Tomatoes).")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bbc-max-length", type=int, default=256, help="Part 2 (BBC News).")
    parser.add_argument("--bbc-steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument(
        "--embedding-distillation-weight", type=float, default=None, help="For ours (default: the library's)."
    )
    arguments = parser.parse_args()
    backbone = backbone_path(arguments.backbone)
    print(f"Machine: {machine()}; batch size {arguments.batch_size}\n")

    sentiment = load_builtin("rotten_tomatoes", arguments.data_dir, arguments.seed)
    plain, ours = [], []
    for _ in range(arguments.repeats):  # alternate so background load hits both alike
        plain.append(run(arguments, backbone, sentiment, arguments.max_length, arguments.steps, False, False))
        ours.append(run(arguments, backbone, sentiment, arguments.max_length, arguments.steps, False, True))
    plain_median, ours_median = (statistics.median(speed for speed, _ in runs) for runs in (plain, ours))
    print(f"Part 1: Rotten Tomatoes, max length {arguments.max_length}, {arguments.steps} steps x {arguments.repeats}")
    print("| trainer | samples/s (median) | runs | train() to end of first step (s) |")
    print("|---|---|---|---|")
    for label, median, runs in (
        ("Trainer + AutoModelForSequenceClassification", plain_median, plain),
        ("MultiTaskTrainer + MultiTaskSTModel", ours_median, ours),
    ):
        speeds = ", ".join(f"{speed:.1f}" for speed, _ in runs)
        print(f"| {label} | {median:.1f} | {speeds} | {statistics.median(first for _, first in runs):.1f} |")
    print(f"ratio ours / plain: {ours_median / plain_median:.3f}\n")

    topic = load_builtin("bbc_news", arguments.data_dir, arguments.seed)
    print(f"Part 2: BBC News, max length {arguments.bbc_max_length}, {arguments.bbc_steps} steps")
    print("| trainer | random batches (samples/s) | length-grouped (samples/s) | gain |")
    print("|---|---|---|---|")
    for label, is_ours in (("Trainer", False), ("MultiTaskTrainer", True)):
        speeds = [
            run(arguments, backbone, topic, arguments.bbc_max_length, arguments.bbc_steps, grouped, is_ours)[0]
            for grouped in (False, True)
        ]
        print(f"| {label} | {speeds[0]:.1f} | {speeds[1]:.1f} | {speeds[1] / speeds[0]:.2f}x |")


if __name__ == "__main__":
    main()
