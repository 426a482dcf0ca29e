"""Calibration on a trained model: per head, ECE (15 bins) and NLL on the test split before and after the temperature
fitted on the validation split, through the `predict` door (`calibrated=True` / `False`), and whether any label moved.

The temperatures are fitted by `multitask-st calibrate` (the code training runs at its end) on a copy of the folder,
so a read-only model (the `make demo` one) can be measured:

    python bench/calibration.py /work/models/demo --copy outputs/demo-calibrated
    python bench/calibration.py /work/models/demo/checkpoint-150 --copy outputs/ckpt-calibrated   # no record: the
                                                                  # default tasks (the demo's data and budget)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from multitask_st import MultiTaskSTModel
from multitask_st.cli import calibrate
from multitask_st.cli.train import load_tasks
from multitask_st.cli.train_arguments import DEFAULT_TASKS, DataArguments
from multitask_st.model_folder import load_training_summary
from multitask_st.training.calibration import expected_calibration_error


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--copy", required=True, help="Where the calibrated copy goes.")
    parser.add_argument("--output", default=None, help="Write the numbers as JSON here.")
    args = parser.parse_args()

    recorded = load_training_summary(args.model_dir).get("datasets")
    tasks = [f"{task}={entry['name']}" for task, entry in recorded.items()] if recorded else list(DEFAULT_TASKS)
    started = time.perf_counter()
    calibrate.main([args.model_dir, "--output_dir", args.copy, "--tasks", *tasks])
    fit_seconds = time.perf_counter() - started
    summary = load_training_summary(args.copy)
    model = MultiTaskSTModel.from_pretrained(args.copy).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.copy)
    data = load_tasks(DataArguments(tasks=tasks), (summary.get("training_args") or {}).get("seed", 0))
    results = {}
    for task, splits in data.items():
        texts, labels = list(splits["test"]["text"]), np.asarray(splits["test"]["label"])
        rows = {
            flag: model.predict(texts, tokenizer, tasks=task, calibrated=flag, show_progress_bar=False)
            for flag in (False, True)
        }
        names = model.config.tasks[task]
        probabilities = {
            flag: np.array([[row[task]["probabilities"][name] for name in names] for row in found])
            for flag, found in rows.items()
        }
        argmax = {flag: values.argmax(axis=1) for flag, values in probabilities.items()}
        picked = {flag: values[np.arange(len(labels)), labels] for flag, values in probabilities.items()}
        results[task] = {
            "temperature": model.config.task_calibration[task]["temperature"],
            "test_examples": len(labels),
            "labels_changed": int((argmax[True] != argmax[False]).sum()),
            "accuracy": {str(flag): float((argmax[flag] == labels).mean()) for flag in (False, True)},
            "ece_before": expected_calibration_error(probabilities[False], labels),
            "ece_after": expected_calibration_error(probabilities[True], labels),
            "nll_before": float(-np.log(np.clip(picked[False], 1e-12, None)).mean()),
            "nll_after": float(-np.log(np.clip(picked[True], 1e-12, None)).mean()),
            "validation": summary["calibration"][task]["validation"],
        }
        entry = results[task]
        entry["ece_fall"] = 1 - entry["ece_after"] / entry["ece_before"]
        print(
            f"{task}: T={entry['temperature']:.3f}; test ECE {100 * entry['ece_before']:.2f}% -> "
            f"{100 * entry['ece_after']:.2f}% ({100 * entry['ece_fall']:.0f}% lower); NLL {entry['nll_before']:.4f} -> "
            f"{entry['nll_after']:.4f}; accuracy {entry['accuracy']['False']:.4f} -> {entry['accuracy']['True']:.4f}; "
            f"labels changed: {entry['labels_changed']} of {entry['test_examples']}"
        )
    print(f"(fitting and the test report: {fit_seconds:.0f} s)")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
