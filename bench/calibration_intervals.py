"""How much of a head's test ECE is noise: bootstrap intervals and the ECE a perfectly calibrated head would show, and
the temperature fitted on the whole validation split against the run's capped one (issue 20's sentiment head).

The test ECE over 15 bins of a head on ~1,000 texts is itself an estimate: even a perfectly calibrated head scores
above 0, because each bin's accuracy is a binomial draw around its confidence. This measures, per head, on the logits
`multitask-st calibrate` uses (`MultiTaskTrainer.labelled_logits`, the raw heads):

- the temperature fitted on the run's validation split (the training run's cap, e.g. 1000) and on the whole split;
- on the test split (the run's, same cap and seed), ECE and NLL before and after each temperature, with 95% paired
  bootstrap intervals (rows resampled with replacement; the same draws for before and after, so the interval of the
  *change* is the one to read);
- the noise floor: the ECE of labels drawn from the head's own calibrated confidences (mean and 95% range over draws),
  what a head whose probabilities are exactly right would score on these texts.

Nothing is fitted on the test split.

    python bench/calibration_intervals.py /work/models/demo --output outputs/calibration-intervals.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from transformers import AutoTokenizer

from multitask_st import MultiTaskSTModel
from multitask_st.cli.train import load_tasks
from multitask_st.cli.train_arguments import DEFAULT_TASKS, DataArguments
from multitask_st.model_folder import load_training_summary
from multitask_st.training.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    scaled_softmax,
)
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


def interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def ece_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[float, float]:
    return (
        expected_calibration_error(scaled_softmax(logits, temperature), labels),
        negative_log_likelihood(logits, labels, temperature),
    )


def bootstrap(logits, labels, temperature, draws, rng) -> dict:
    """Paired bootstrap over test rows of ECE and NLL before (T=1) and after (`temperature`)."""
    rows = np.arange(len(labels))
    samples = {"ece_before": [], "ece_after": [], "nll_before": [], "nll_after": []}
    for _ in range(draws):
        pick = rng.choice(rows, size=len(rows), replace=True)
        for name, t in (("before", 1.0), ("after", temperature)):
            ece, nll = ece_nll(logits[pick], labels[pick], t)
            samples[f"ece_{name}"].append(ece)
            samples[f"nll_{name}"].append(nll)
    samples = {key: np.asarray(value) for key, value in samples.items()}
    return {
        "ece_before_95": interval(samples["ece_before"]),
        "ece_after_95": interval(samples["ece_after"]),
        "ece_change_95": interval(samples["ece_after"] - samples["ece_before"]),
        "ece_relative_change_95": interval(samples["ece_after"] / samples["ece_before"] - 1),
        "nll_change_95": interval(samples["nll_after"] - samples["nll_before"]),
    }


def noise_floor(logits, temperature, draws, rng) -> dict:
    """ECE of labels drawn from the head's own probabilities at `temperature`: a perfectly calibrated head's score."""
    probabilities = scaled_softmax(logits, temperature)
    cumulative = probabilities.cumsum(axis=1)
    scores = []
    for _ in range(draws):
        drawn = (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1).clip(max=probabilities.shape[1] - 1)
        scores.append(expected_calibration_error(probabilities, drawn))
    scores = np.asarray(scores)
    return {"mean": float(scores.mean()), "range_95": interval(scores)}


def head_logits(trainer, tokenized: dict, split: str) -> dict:
    return trainer.labelled_logits({task: data[split] for task, data in tokenized.items() if split in data})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--draws", type=int, default=2000, help="Bootstrap draws (and noise-floor draws).")
    parser.add_argument("--output", default=None, help="Write the numbers as JSON here.")
    args = parser.parse_args()

    summary = load_training_summary(args.model_dir)
    recorded = summary.get("datasets")
    tasks = [f"{task}={entry['name']}" for task, entry in recorded.items()] if recorded else list(DEFAULT_TASKS)
    seed = (summary.get("training_args") or {}).get("seed", 0)
    model = MultiTaskSTModel.from_pretrained(args.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    max_length = model.default_max_length(tokenizer)
    # The run's splits (its caps: the demo's 1000 with the default tasks) and the whole validation split.
    capped = load_tasks(DataArguments(tasks=tasks), seed)
    whole = load_tasks(DataArguments(tasks=tasks, max_eval_samples=10**9), seed)

    def tokenized(data, split):
        return {task: tokenize_task_dataset(DatasetDict({split: d[split]}), tokenizer, max_length=max_length)
                for task, d in data.items()}  # fmt: skip

    trainer = MultiTaskTrainer(
        model=model,
        args=MultiTaskTrainingArguments(
            output_dir="/tmp/calibration-intervals",
            per_device_eval_batch_size=64,
            report_to="none",
            stsb_eval_pairs=0,
            save_plots=False,
            seed=seed,
            dataloader_pin_memory=torch.cuda.is_available(),
        ),  # fmt: skip
        processing_class=tokenizer,
    )
    validation = head_logits(trainer, tokenized(capped, "validation"), "validation")
    validation_whole = head_logits(trainer, tokenized(whole, "validation"), "validation")
    test = head_logits(trainer, tokenized(capped, "test"), "test")
    rng = np.random.default_rng(0)
    results = {}
    for task, (logits, labels) in test.items():
        entry = {"test_examples": len(labels), "accuracy": float((logits.argmax(1) == labels).mean())}
        for name, fitted_on in (("run_validation", validation), ("whole_validation", validation_whole)):
            val_logits, val_labels = fitted_on[task]
            temperature = fit_temperature(val_logits, val_labels)
            before, after = ece_nll(logits, labels, 1.0), ece_nll(logits, labels, temperature)
            entry[name] = {
                "validation_examples": len(val_labels),
                "validation_accuracy": float((val_logits.argmax(1) == val_labels).mean()),
                "temperature": temperature,
                "ece_before": before[0],
                "ece_after": after[0],
                "nll_before": before[1],
                "nll_after": after[1],
                **bootstrap(logits, labels, temperature, args.draws, rng),
                "noise_floor_after": noise_floor(logits, temperature, args.draws, rng),
            }
        entry["noise_floor_before"] = noise_floor(logits, 1.0, args.draws, rng)
        # The temperature the test split itself would pick: a bound on what any temperature can do here (not used).
        entry["test_oracle_temperature"] = fit_temperature(logits, labels)
        entry["test_oracle_ece"], entry["test_oracle_nll"] = ece_nll(logits, labels, entry["test_oracle_temperature"])
        results[task] = entry
        print(task, json.dumps(entry, indent=1), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
