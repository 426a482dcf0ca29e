"""Cost of stopping at the first non-finite loss: `MultiTaskTrainer` as it is against the same trainer with the check
removed (its `training_step` replaced by `Trainer.training_step`), taking turns run by run on the same data.

The check reads the step's loss on the host, which is a device sync on a GPU; `Trainer` itself reads the same value
right after (`logging_nan_inf_filter`, on by default), so the check should wait for nothing more.

    python bench/nonfinite_check.py --steps 40 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import datasets
import torch
from common import add_common_arguments, backbone_path, machine
from transformers import AutoTokenizer, Trainer
from transformers.utils import logging

from multitask_st import MultiTaskSTModel
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


class UncheckedTrainer(MultiTaskTrainer):
    training_step = Trainer.training_step


def task_data(tokenizer, count: int, labels: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    words = "the a movie film great bad stock market rose fell team won lost election vote phone launch".split()
    texts = [" ".join(rng.choices(words, k=rng.randint(5, 40))) for _ in range(count)]
    return datasets.Dataset.from_dict({**tokenizer(texts), "label": [rng.randrange(labels) for _ in texts]})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    logging.set_verbosity_error()
    path = backbone_path(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    train = {"topic": task_data(tokenizer, 2000, 5, 1), "sentiment": task_data(tokenizer, 2000, 2, 2)}
    tasks = {"topic": list("abcde"), "sentiment": ["negative", "positive"]}
    times = {"with the check": [], "without": []}
    for round_ in range(args.rounds):
        order = list(times) if round_ % 2 == 0 else list(times)[::-1]
        for name in order:
            torch.manual_seed(0)
            model = MultiTaskSTModel.from_backbone(path, tasks=tasks)
            with tempfile.TemporaryDirectory() as out:
                training_args = MultiTaskTrainingArguments(
                    out, max_steps=args.steps, per_device_train_batch_size=args.batch_size, report_to=[],
                    save_strategy="no", disable_tqdm=True, logging_steps=10, embedding_distillation_weight=0,
                    use_cpu=args.device == "cpu", stsb_eval_pairs=0, seed=args.seed,
                )  # fmt: skip
                trainer_class = MultiTaskTrainer if name == "with the check" else UncheckedTrainer
                trainer = trainer_class(
                    model=model, args=training_args, train_dataset=train, processing_class=tokenizer
                )
                start = time.perf_counter()
                trainer.train()
                times[name].append(time.perf_counter() - start)
    print(f"machine: {machine()}; {args.steps} steps of batch {args.batch_size} per run, {args.rounds} rounds")
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.2f} s; rounds {' '.join(f'{v:.2f}' for v in values)}")
    paired = statistics.median(w / c for w, c in zip(times["without"], times["with the check"], strict=True))
    print(f"throughput with the check / without: {paired:.3f}x (median of per-round ratios)")


if __name__ == "__main__":
    main()
