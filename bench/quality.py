"""Quality: one multi-task model (one backbone, both heads) vs two single-task fine-tunes, in one run.

The peers are what a transformers user writes today: the plain `Trainer` + `AutoModelForSequenceClassification`, one
model per task. Everyone gets the same backbone, the built-in splits (BBC News for topic, Rotten Tomatoes for
sentiment), batch size, learning rate, per-task max length and budget: the multi-task run makes one pass over each
task's training set repeated as many times as that task's single-task run has epochs, in single-task batches, so
every example is seen exactly as often. Scored on the test splits; the embedding on the STS-B test set (Spearman of
cosine similarities), next to the untouched backbone's.

    python bench/quality.py          # the issue's budget (BBC 3 epochs at 256 tokens, RT 2 at 64): hours on 2 cores
    python bench/quality.py --bbc-epochs 2 --bbc-max-length 128 --rt-epochs 1 --max-train 3000   # ~40 min on 2 cores
    python bench/quality.py --max-train 32 --max-test 32 --max-stsb 50 --bbc-epochs 1 --rt-epochs 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from common import add_common_arguments, backbone_path, load_builtin, machine
from datasets import concatenate_datasets
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from multitask_st import MultiTaskSTModel
from multitask_st.data.task_datasets import subsample
from multitask_st.training.metrics import load_accuracy_macro_f1, stsb_spearman
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


TASKS = {"topic": "bbc_news", "sentiment": "rotten_tomatoes"}


def common_training_args(arguments, output_dir: str) -> dict:
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": arguments.batch_size,
        "per_device_eval_batch_size": 128,
        "learning_rate": arguments.lr,
        "weight_decay": 0.01,
        "seed": arguments.seed,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "logging_steps": 50,
        "bf16": arguments.bf16,
        "use_cpu": arguments.device == "cpu",
        "dataloader_num_workers": 0,
    }


def single_task_baseline(arguments, backbone, data, max_length, epochs, workdir) -> dict:
    """Plain Trainer + AutoModelForSequenceClassification on one task; test accuracy and macro-F1."""
    set_seed(arguments.seed)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    names = data["train"].features["label"].names
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        dtype=torch.float32,  # as MultiTaskSTModel.from_backbone: fp32 master weights, whatever the checkpoint stores
    )
    encoded = data.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length), batched=True
    ).remove_columns(["text"])
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**common_training_args(arguments, workdir), num_train_epochs=epochs),
        train_dataset=encoded["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    predictions = trainer.predict(encoded["test"])
    scores = load_accuracy_macro_f1().compute(
        predictions=predictions.predictions.argmax(-1), references=predictions.label_ids
    )
    return {**scores, "train_seconds": seconds, "steps": trainer.state.global_step}


def multitask(arguments, backbone, data, stsb_test, max_lengths, epochs, variant, workdir) -> dict:
    layer_decay, distillation_weight = variant
    set_seed(arguments.seed)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    tasks = {task: data[task]["train"].features["label"].names for task in TASKS}
    model = MultiTaskSTModel.from_backbone(backbone, tasks=tasks, max_seq_length=max(max_lengths.values()))
    tokenized = {task: tokenize_task_dataset(data[task], tokenizer, max_length=max_lengths[task]) for task in TASKS}
    args = MultiTaskTrainingArguments(
        **common_training_args(arguments, workdir),
        num_train_epochs=1,
        layer_decay=layer_decay,
        embedding_distillation_weight=distillation_weight,
        # single-task batches, like the baselines' (a mixed batch would pad reviews to article length)
        mixed_task_batches=False,
        stsb_eval_pairs=0,
    )
    # Same budget, exactly: each task's examples repeated as many times as its baseline has epochs, one pass.
    train = {task: concatenate_datasets([dataset["train"]] * epochs[task]) for task, dataset in tokenized.items()}
    trainer = MultiTaskTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate(
        {task: dataset["test"] for task, dataset in tokenized.items()}, metric_key_prefix="test"
    )
    results = {
        task: {"accuracy": metrics[f"test_{task}_accuracy"], "f1": metrics[f"test_{task}_f1"]} for task in TASKS
    }
    results["stsb_spearman"] = stsb_spearman(model, tokenizer, stsb_test, batch_size=128)
    results["train_seconds"] = seconds
    results["steps"] = trainer.state.global_step
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--bbc-epochs", type=int, default=3)
    parser.add_argument("--rt-epochs", type=int, default=2)
    parser.add_argument("--bbc-max-length", type=int, default=256)
    parser.add_argument("--rt-max-length", type=int, default=64)
    parser.add_argument("--layer-decays", type=float, nargs="+", default=[1.0], help="layer_decay values to run.")
    parser.add_argument(
        "--distillation-weights",
        type=float,
        nargs="+",
        default=[MultiTaskTrainingArguments.embedding_distillation_weight, 0.0],
        help="embedding_distillation_weight values; one multi-task run per (layer decay, weight).",
    )
    parser.add_argument("--skip-baselines", action="store_true", help="Multi-task runs only (for tuning).")
    parser.add_argument("--max-train", type=int, default=None, help="Cap on training examples per task (smoke).")
    parser.add_argument("--max-test", type=int, default=None, help="Cap on test examples per task (smoke).")
    parser.add_argument("--max-stsb", type=int, default=None, help="Cap on STS-B test pairs (smoke).")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--json-out", default=None)
    arguments = parser.parse_args()

    backbone = backbone_path(arguments.backbone)
    data = {
        task: subsample(
            load_builtin(name, arguments.data_dir, arguments.seed),
            {"train": arguments.max_train, "validation": arguments.max_test, "test": arguments.max_test},
            seed=arguments.seed,
        )
        for task, name in TASKS.items()
    }
    stsb_test = subsample(load_builtin("stsb", arguments.data_dir), {"test": arguments.max_stsb})["test"]
    max_lengths = {"topic": arguments.bbc_max_length, "sentiment": arguments.rt_max_length}
    epochs = {"topic": arguments.bbc_epochs, "sentiment": arguments.rt_epochs}

    variants = [(decay, weight) for decay in arguments.layer_decays for weight in arguments.distillation_weights]
    names = {variant: f"layer_decay {variant[0]}, distillation {variant[1]}" for variant in variants}
    results = {"baseline": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for task in TASKS if not arguments.skip_baselines else ():
            results["baseline"][task] = single_task_baseline(
                arguments, backbone, data[task], max_lengths[task], epochs[task], f"{workdir}/{task}"
            )
            print(f"baseline {task}: {results['baseline'][task]}", flush=True)
        results["multitask"] = {}
        for index, variant in enumerate(variants):
            results["multitask"][names[variant]] = scores = multitask(
                arguments, backbone, data, stsb_test, max_lengths, epochs, variant, f"{workdir}/mt{index}"
            )
            print(f"multi-task, {names[variant]}: {scores}", flush=True)
    untouched = MultiTaskSTModel.from_backbone(backbone, projection="none")
    results["backbone_stsb_spearman"] = stsb_spearman(
        untouched.to(arguments.device), AutoTokenizer.from_pretrained(backbone), stsb_test, batch_size=128
    )
    results["machine"] = machine()

    print(f"\nQuality on the test splits ({results['machine']})\n")
    header = " | ".join(f"multi-task, {names[variant]}: acc / F1 (diff)" for variant in variants)
    print(f"| task | single-task Trainer acc / F1 | {header} |")
    print("|---|---|" + "---|" * len(variants))
    for task in TASKS:
        base = results["baseline"].get(task, {"accuracy": float("nan"), "f1": float("nan")})
        cells = []
        for variant in variants:
            ours = results["multitask"][names[variant]][task]
            delta = 100 * (ours["accuracy"] - base["accuracy"])
            cells.append(f"{ours['accuracy']:.4f} / {ours['f1']:.4f} ({delta:+.2f} pts)")
        print(f"| {task} ({TASKS[task]}) | {base['accuracy']:.4f} / {base['f1']:.4f} | {' | '.join(cells)} |")
    print("\n| embedding | STS-B test Spearman |\n|---|---|")
    print(f"| untouched backbone | {results['backbone_stsb_spearman']:.4f} |")
    for variant in variants:
        print(f"| multi-task, {names[variant]} | {results['multitask'][names[variant]]['stsb_spearman']:.4f} |")
    baseline_seconds = sum(result["train_seconds"] for result in results["baseline"].values())
    baseline_steps = sum(result["steps"] for result in results["baseline"].values())
    times = ", ".join(
        f"{names[variant]}: {results['multitask'][names[variant]]['train_seconds']:.0f} s "
        f"({results['multitask'][names[variant]]['steps']} steps)"
        for variant in variants
    )
    print(f"\nTraining time: single-task runs {baseline_seconds:.0f} s ({baseline_steps} steps); multi-task {times}")
    if arguments.json_out:
        with open(arguments.json_out, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
