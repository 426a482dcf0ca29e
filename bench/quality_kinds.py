"""Quality of the multi-label and regression heads, and of class weights on an imbalanced task, on packaged data.

1. Each new head as good as training it alone: the multi-label head (20 Newsgroups tag sets, `20newsgroups_tags`) and
   the regression head (election tweets' ln(1 + retweets) and ln(1 + favorites), `election_tweets`), trained together
   on one encoder, against each trained alone on the same encoder with the same budget (the same examples, as many
   times, in single-task batches). Test macro-F1 (at the thresholds tuned on validation) and Spearman (mean of the
   two outputs). The multi-label rows also give the test macro-F1 at a fixed 0.5: what tuning the thresholds buys.
2. Class weights on an imbalanced task: 20 Newsgroups' training split subsampled to a long tail (the i-th group of a
   seeded order keeps `head * ratio**i` posts, at least 5), one classification head trained with the unweighted
   default and with `class_weights="balanced"`, at equal budget; test accuracy and macro-F1 on the official test split
   (sampled, stratified).

    python bench/quality_kinds.py                                   # the BENCHMARKS.md rows (about an hour on 2 cores)
    python bench/quality_kinds.py --max-train 32 --max-test 32 --epochs 1 --tail-head 8   # smoke
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from common import add_common_arguments, backbone_path, machine
from datasets import DatasetDict, concatenate_datasets
from transformers import AutoTokenizer, set_seed

from multitask_st import MultiTaskSTModel
from multitask_st.data.labels import label_names_of
from multitask_st.data.task_datasets import load_task_dataset, subsample
from multitask_st.training.metrics import multitask_classification_metrics
from multitask_st.training.tokenization import concatenate_task_datasets, tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


KINDS = {"tags": ("20newsgroups_tags", "multi_label"), "spread": ("election_tweets", "regression")}


def train_and_test(arguments, backbone, data: dict, kinds: dict, workdir: str, loss_options=None) -> dict:
    """One model with a head per task of `data` (`{task: DatasetDict}`), trained `arguments.epochs` passes over each
    task's training split in single-task batches; its test metrics (multi-label: at the tuned thresholds and at 0.5)."""
    set_seed(arguments.seed)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    tasks = {task: label_names_of(dataset["train"].features["label"]) for task, dataset in data.items()}
    model = MultiTaskSTModel.from_backbone(
        backbone, tasks=tasks, task_kinds=kinds, task_loss_options=loss_options, max_seq_length=arguments.max_length
    )
    tokenized = {task: tokenize_task_dataset(dataset, tokenizer, max_length=arguments.max_length)
                 for task, dataset in data.items()}  # fmt: skip
    args = MultiTaskTrainingArguments(
        output_dir=workdir, per_device_train_batch_size=arguments.batch_size, per_device_eval_batch_size=64,
        learning_rate=arguments.lr, weight_decay=0.01, seed=arguments.seed, save_strategy="no", eval_strategy="no",
        report_to=[], logging_steps=50, use_cpu=arguments.device == "cpu", num_train_epochs=1,
        mixed_task_batches=False, stsb_eval_pairs=0, save_plots=False,
        embedding_distillation_weight=arguments.distillation_weight,
    )  # fmt: skip
    train = {task: concatenate_datasets([dataset["train"]] * arguments.epochs) for task, dataset in tokenized.items()}
    validation = {task: dataset["validation"] for task, dataset in tokenized.items()}
    trainer = MultiTaskTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer
    )
    start = time.perf_counter()
    trainer.train()  # ends by tuning the multi-label thresholds on validation
    seconds = time.perf_counter() - start
    test = {task: dataset["test"] for task, dataset in tokenized.items()}
    output = trainer.predict(test)
    combined, _ = concatenate_task_datasets(test, model.config.task_names, model.config)
    metrics = multitask_classification_metrics(output.predictions[0], output.label_ids, model.config.task_names,
                                               model.config)  # fmt: skip
    tuned = dict(model.config.task_calibration)
    model.config.task_calibration = {}
    fixed = multitask_classification_metrics(output.predictions[0], output.label_ids, model.config.task_names,
                                             model.config)  # fmt: skip
    model.config.task_calibration = tuned
    results = {"train_seconds": seconds, "steps": trainer.state.global_step, "test_rows": len(combined)}
    for task, kind in model.config.task_kinds.items():
        keys = {"multi_label": ("micro_f1", "macro_f1"), "regression": ("pearson", "spearman", "rmse"),
                "classification": ("accuracy", "f1")}[kind]  # fmt: skip
        results[task] = {key: metrics[f"{task}_{key}"] for key in keys}
        if kind == "multi_label":
            results[task]["macro_f1_at_0.5"] = fixed[f"{task}_macro_f1"]
            results[task]["micro_f1_at_0.5"] = fixed[f"{task}_micro_f1"]
            results[task]["thresholds"] = tuned[task]["thresholds"]
    return results


def long_tail(dataset: DatasetDict, head: int, ratio: float, seed: int) -> DatasetDict:
    """Training split cut to a long tail: the i-th label of a seeded order keeps `max(5, round(head * ratio**i))`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset["train"]["label"])
    order = rng.permutation(labels.max() + 1)
    keep = []
    for rank, label in enumerate(order):
        rows = rng.permutation(np.flatnonzero(labels == label))
        keep.extend(rows[: max(5, round(head * ratio**rank))].tolist())
    return DatasetDict({**dataset, "train": dataset["train"].select(sorted(keep))})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-train", type=int, default=1000, help="Training examples per task (part 1).")
    parser.add_argument("--max-validation", type=int, default=500)
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--tail-head", type=int, default=200, help="Posts kept of the long tail's first group.")
    parser.add_argument("--tail-ratio", type=float, default=0.8)
    parser.add_argument("--distillation-weight", type=float, default=0.0)
    parser.add_argument("--parts", nargs="+", default=["kinds", "imbalanced"], choices=["kinds", "imbalanced"])
    parser.add_argument("--json-out", default=None)
    arguments = parser.parse_args()

    backbone = backbone_path(arguments.backbone)
    caps = {"train": arguments.max_train, "validation": arguments.max_validation, "test": arguments.max_test}
    results = {"machine": machine(), "arguments": vars(arguments)}
    with tempfile.TemporaryDirectory() as workdir:
        if "kinds" in arguments.parts:
            data = {
                task: subsample(load_task_dataset(name, kind=kind, seed=arguments.seed), caps, seed=arguments.seed)
                for task, (name, kind) in KINDS.items()
            }
            kinds = {task: kind for task, (_, kind) in KINDS.items()}
            for task in KINDS:
                results[f"{task} alone"] = train_and_test(
                    arguments, backbone, {task: data[task]}, {task: kinds[task]}, f"{workdir}/{task}"
                )
                print(f"{task} alone: {results[f'{task} alone']}", flush=True)
            results["together"] = train_and_test(arguments, backbone, data, kinds, f"{workdir}/together")
            print(f"together: {results['together']}", flush=True)
        if "imbalanced" in arguments.parts:
            full = load_task_dataset("20newsgroups", seed=arguments.seed)
            tail = subsample(long_tail(full, arguments.tail_head, arguments.tail_ratio, arguments.seed),
                             {"validation": arguments.max_validation, "test": arguments.max_test}, seed=arguments.seed)  # fmt: skip
            counts = np.bincount(tail["train"]["label"], minlength=20)
            results["long_tail_counts"] = sorted(counts.tolist(), reverse=True)
            for name, options in (("unweighted", None), ("balanced", {"newsgroup": {"class_weights": "balanced"}})):
                results[f"long tail, {name}"] = train_and_test(
                    arguments, backbone, {"newsgroup": tail}, {}, f"{workdir}/{name}", loss_options=options
                )
                print(f"long tail, {name}: {results[f'long tail, {name}']}", flush=True)

    print(f"\nQuality of the kinds ({results['machine']})\n")
    if "together" in results:
        tags_alone, tags = results["tags alone"]["tags"], results["together"]["tags"]
        spread_alone, spread = results["spread alone"]["spread"], results["together"]["spread"]
        print("| head | metric (test) | alone | with the other head | difference |\n|---|---|---|---|---|")
        for label, alone, together, key in (
            ("tags (20newsgroups_tags, multi-label)", tags_alone, tags, "macro_f1"),
            ("tags (20newsgroups_tags, multi-label)", tags_alone, tags, "micro_f1"),
            ("spread (election_tweets, regression)", spread_alone, spread, "spearman"),
            ("spread (election_tweets, regression)", spread_alone, spread, "pearson"),
        ):
            difference = 100 * (together[key] - alone[key])
            print(f"| {label} | {key} | {alone[key]:.4f} | {together[key]:.4f} | {difference:+.2f} pts |")
        print("\n| tags head | test macro-F1, thresholds tuned on validation | at a fixed 0.5 |\n|---|---|---|")
        for name in ("tags alone", "together"):
            row = results[name]["tags"]
            print(f"| {name} | {row['macro_f1']:.4f} | {row['macro_f1_at_0.5']:.4f} |")
    if "long tail, balanced" in results:
        print(f"\nLong tail ({sum(results['long_tail_counts'])} training posts: {results['long_tail_counts']})\n")
        print("| loss | test accuracy | test macro-F1 |\n|---|---|---|")
        for name in ("unweighted", "balanced"):
            row = results[f"long tail, {name}"]["newsgroup"]
            print(f"| {name} | {row['accuracy']:.4f} | {row['f1']:.4f} |")
    if arguments.json_out:
        with open(arguments.json_out, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
