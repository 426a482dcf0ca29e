"""Quality of the multi-label, regression and pair heads, and of class weights on an imbalanced task, on packaged data.

1. Each new head as good as training it alone: the multi-label head (20 Newsgroups tag sets, `20newsgroups_tags`),
   the regression head (election tweets' ln(1 + retweets) and ln(1 + favorites), `election_tweets`) and a pair head
   (`pair_regression` on STS Benchmark's scored pairs, `stsb`: no package ships NLI data), trained together on one
   encoder, against each trained alone on the same encoder with the same budget (the same examples, as many times, in
   single-task batches). Test macro-F1 (at the thresholds tuned on validation) and Spearman (regression: the mean of
   the two outputs'). The multi-label rows also give the test macro-F1 at a fixed 0.5: what tuning the thresholds
   buys. Each difference comes with a paired bootstrap over the test examples (the same resampled rows for both
   models): its 95% interval is the test-sampling noise of that difference, not the training seed's (`--seed` also
   changes the data's splits and samples).
2. Class weights on an imbalanced task: 20 Newsgroups' training split subsampled to a long tail (the i-th group of a
   seeded order keeps `head * ratio**i` posts, at least 5), one classification head trained with the unweighted
   default and with `class_weights="balanced"`, at equal budget; test accuracy and macro-F1 on the official test split
   (sampled, stratified).

    python bench/quality_kinds.py --parts kinds          # the BENCHMARKS.md alone-vs-together rows (78 min, loaded 2 cores)
    python bench/quality_kinds.py --parts imbalanced ...  # the class-weight rows: BENCHMARKS.md gives the options
    python bench/quality_kinds.py --max-train 32 --max-validation 32 --max-test 48 --epochs 1 --tail-head 8  # smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time

import numpy as np
from common import add_common_arguments, backbone_path, machine
from datasets import DatasetDict, concatenate_datasets
from transformers import AutoTokenizer, set_seed

from multitask_st import MultiTaskSTModel
from multitask_st.data.labels import label_names_of, output_names
from multitask_st.data.task_datasets import load_task_dataset, subsample
from multitask_st.inference_multitask_st import PAIR_REGRESSION
from multitask_st.losses_multitask_st import labelled_rows
from multitask_st.training.metrics import MAIN_METRIC, TASK_METRICS, multitask_classification_metrics
from multitask_st.training.tokenization import concatenate_task_datasets, tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


# task: (built-in dataset, kind, `load_task_dataset` options)
KINDS = {
    "tags": ("20newsgroups_tags", "multi_label", {}),
    "spread": ("election_tweets", "regression", {}),
    "similar": (
        "stsb",
        PAIR_REGRESSION,
        {"text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"},
    ),
}


def task_labels(dataset: DatasetDict, kind: str) -> list[str]:
    """The task's label (or output) names: a pair regression's one output is named after its label column."""
    return (
        output_names(kind, "score") if kind == PAIR_REGRESSION else label_names_of(dataset["train"].features["label"])
    )


def train_and_test(arguments, backbone, data: dict, kinds: dict, workdir: str, loss_options=None) -> dict:
    """One model with a head per task of `data` (`{task: DatasetDict}`), trained `arguments.epochs` passes over each
    task's training split in single-task batches; its test metrics (multi-label: at the tuned thresholds and at 0.5),
    and, in `outputs`, each task's test outputs and label columns (for the paired bootstrap; left out of the JSON)."""
    set_seed(arguments.seed)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    tasks = {task: task_labels(dataset, kinds.get(task, "classification")) for task, dataset in data.items()}
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
    results = {"train_seconds": seconds, "steps": trainer.state.global_step, "test_rows": len(combined), "outputs": {}}
    slices = model.config.label_slices()
    for task, kind in model.config.task_kinds.items():
        keys = {"multi_label": ("micro_f1", "macro_f1"), "regression": ("pearson", "spearman", "rmse"),
                PAIR_REGRESSION: ("pearson", "spearman", "rmse"), "classification": ("accuracy", "f1")}[kind]  # fmt: skip
        results[task] = {key: metrics[f"{task}_{key}"] for key in keys}
        columns = np.asarray(output.label_ids[:, slices[task]], dtype=np.float64)
        labelled = labelled_rows(columns, kind)
        results["outputs"][task] = (np.asarray(output.predictions[0][task])[labelled], columns[labelled], model.config)
        if kind == "multi_label":
            results[task]["macro_f1_at_0.5"] = fixed[f"{task}_macro_f1"]
            results[task]["micro_f1_at_0.5"] = fixed[f"{task}_micro_f1"]
            results[task]["thresholds"] = tuned[task]["thresholds"]
            at_half = copy.deepcopy(model.config)
            at_half.task_calibration = {}
            results["outputs"][f"{task} at 0.5"] = (*results["outputs"][task][:2], at_half)
    return results


def paired_bootstrap(first: tuple, second: tuple, task: str, resamples: int, seed: int) -> dict:
    """The task's main metric (`MAIN_METRIC`) of two `(test outputs, label columns, config)` on the same resampled
    test rows: the difference (second - first, in points), and its standard deviation and 2.5th / 97.5th percentiles
    over `resamples` draws of the rows with replacement (the test-sampling noise of the difference)."""
    (outputs_a, labels_a, config_a), (outputs_b, labels_b, config_b) = first, second
    if not np.array_equal(labels_a, labels_b, equal_nan=True):
        raise ValueError(f"Task {task!r}: the two runs' test rows differ; a paired bootstrap needs the same rows.")
    kind = config_a.task_kinds[task]
    metric, score = MAIN_METRIC[kind], TASK_METRICS[kind]

    def difference(rows):
        return (
            score(outputs_b[rows], labels_b[rows], config_b, task)[metric]
            - score(outputs_a[rows], labels_a[rows], config_a, task)[metric]
        )

    rng = np.random.default_rng(seed)
    draws = [difference(rng.integers(0, len(labels_a), len(labels_a))) for _ in range(resamples)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"metric": metric, "difference_pts": 100 * difference(np.arange(len(labels_a))),
            "ci95_pts": [100 * low, 100 * high], "std_pts": 100 * float(np.std(draws)),
            "test_rows": len(labels_a)}  # fmt: skip


def _shown(run: dict) -> dict:
    """A run's results without its test outputs (arrays, for the bootstrap only)."""
    return {key: value for key, value in run.items() if key != "outputs"}


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
    parser.add_argument("--max-test", type=int, default=None, help="Test examples per task (default: the full split).")
    parser.add_argument("--tail-head", type=int, default=200, help="Posts kept of the long tail's first group.")
    parser.add_argument("--tail-ratio", type=float, default=0.8)
    parser.add_argument("--distillation-weight", type=float, default=0.0)
    parser.add_argument("--parts", nargs="+", default=["kinds", "imbalanced"], choices=["kinds", "imbalanced"])
    parser.add_argument("--tasks", nargs="+", default=list(KINDS), choices=list(KINDS), help="Part 1's tasks.")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Paired bootstrap resamples of the test rows.")
    parser.add_argument("--json-out", default=None)
    arguments = parser.parse_args()

    backbone = backbone_path(arguments.backbone)
    caps = {"train": arguments.max_train, "validation": arguments.max_validation, "test": arguments.max_test}
    results = {"machine": machine(), "arguments": vars(arguments)}
    with tempfile.TemporaryDirectory() as workdir:
        if "kinds" in arguments.parts:
            data = {
                task: subsample(load_task_dataset(name, kind=kind, seed=arguments.seed, **options), caps,
                                seed=arguments.seed)
                for task, (name, kind, options) in KINDS.items() if task in arguments.tasks
            }  # fmt: skip
            kinds = {task: KINDS[task][1] for task in data}
            for task in data:
                results[f"{task} alone"] = train_and_test(
                    arguments, backbone, {task: data[task]}, {task: kinds[task]}, f"{workdir}/{task}"
                )
                print(f"{task} alone: {_shown(results[f'{task} alone'])}", flush=True)
            results["together"] = train_and_test(arguments, backbone, data, kinds, f"{workdir}/together")
            print(f"together: {_shown(results['together'])}", flush=True)
            results["bootstrap"] = {
                task: paired_bootstrap(results[f"{task} alone"]["outputs"][task], results["together"]["outputs"][task],
                                       task, arguments.bootstrap, arguments.seed)
                for task in data
            }  # fmt: skip
            if "tags" in data:  # what tuning the thresholds buys, on each model
                for name in ("tags alone", "together"):
                    outputs = results[name]["outputs"]
                    results["bootstrap"][f"tags tuned vs 0.5, {name}"] = paired_bootstrap(
                        outputs["tags at 0.5"], outputs["tags"], "tags", arguments.bootstrap, arguments.seed
                    )
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
                print(f"long tail, {name}: {_shown(results[f'long tail, {name}'])}", flush=True)

    print(f"\nQuality of the kinds ({results['machine']})\n")
    if "together" in results:
        print(
            "| head | metric (test) | alone | together | difference | 95% paired bootstrap |\n|---|---|---|---|---|---|"
        )
        for task in results["bootstrap"]:
            if task not in KINDS:
                continue
            name, kind, _ = KINDS[task]
            alone, together = results[f"{task} alone"][task], results["together"][task]
            for key in ("macro_f1", "micro_f1") if kind == "multi_label" else ("spearman", "pearson"):
                difference = 100 * (together[key] - alone[key])
                interval = "[{:+.2f}, {:+.2f}] pts".format(*results["bootstrap"][task]["ci95_pts"])
                interval = interval if key == results["bootstrap"][task]["metric"] else ""
                print(f"| {task} ({name}, {kind}) | {key} | {alone[key]:.4f} | {together[key]:.4f} | "
                      f"{difference:+.2f} pts | {interval} |")  # fmt: skip
        if "tags alone" in results:
            print("\n| tags head | test macro-F1, thresholds tuned on validation | at a fixed 0.5 | difference | "
                  "95% paired bootstrap |\n|---|---|---|---|---|")  # fmt: skip
            for name in ("tags alone", "together"):
                row, gain = results[name]["tags"], results["bootstrap"][f"tags tuned vs 0.5, {name}"]
                print(
                    f"| {name} | {row['macro_f1']:.4f} | {row['macro_f1_at_0.5']:.4f} | "
                    f"{gain['difference_pts']:+.2f} pts | [{gain['ci95_pts'][0]:+.2f}, {gain['ci95_pts'][1]:+.2f}] |"
                )
    if "long tail, balanced" in results:
        print(f"\nLong tail ({sum(results['long_tail_counts'])} training posts: {results['long_tail_counts']})\n")
        print("| loss | test accuracy | test macro-F1 |\n|---|---|---|")
        for name in ("unweighted", "balanced"):
            row = results[f"long tail, {name}"]["newsgroup"]
            print(f"| {name} | {row['accuracy']:.4f} | {row['f1']:.4f} |")
    if arguments.json_out:
        with open(arguments.json_out, "w") as file:
            json.dump({name: _shown(value) if isinstance(value, dict) else value for name, value in results.items()},
                      file, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
