"""Calibrate a trained model folder after the fact (`multitask-st calibrate MODEL_DIR`).

    multitask-st calibrate outputs/multitask-st                       # the datasets its training record names
    multitask-st calibrate outputs/multitask-st --output_dir calibrated/   # a calibrated copy; the folder is untouched
    multitask-st calibrate outputs/multitask-st --tasks topic=bbc_news --max_eval_samples 1000

What training does at its end (`MultiTaskTrainer.calibrate`, the same code): one temperature per classification head
(the heads of other kinds are left as they are: a multi-label head's thresholds are tuned by training only),
fitted on the validation split by minimising its negative log-likelihood, stored in config.json
(`task_calibration`); the test split's ECE and NLL before and after go into training_summary.json (`calibration`) and
one `reliability_diagram_<task>.png` per head into the folder. A model trained with `--calibrate false`, or before
calibration existed, gets calibrated without training again. The data are loaded as `multitask-st train` loads them
(same names, seed and caps: the demo's budget with the default tasks), so the validation split is the run's own.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, HfArgumentParser

from multitask_st import MultiTaskSTModel
from multitask_st.cli.train import load_tasks, show_logs
from multitask_st.cli.train_arguments import DataArguments
from multitask_st.model_folder import IGNORE_PATTERNS, load_training_summary, save_training_summary
from multitask_st.training.calibration import CALIBRATED_KINDS, calibration_stats
from multitask_st.training.plots import save_reliability_diagrams
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


PROG = "multitask-st calibrate"


@dataclass
class CalibrateArguments:
    model_dir: str = field(metadata={"help": "A trained multitask-st model folder."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Write a calibrated copy here instead of updating MODEL_DIR in place."}
    )
    seed: int | None = field(default=None, metadata={"help": "Data seed (default: the training run's)."})
    batch_size: int = field(default=64, metadata={"help": "Texts per forward pass."})
    save_plots: bool = field(default=True, metadata={"help": "Write reliability_diagram_<task>.png per head."})


def parse_arguments(argv: list[str], prog: str = PROG) -> tuple[CalibrateArguments, DataArguments, bool]:
    parser = HfArgumentParser((CalibrateArguments, DataArguments), prog=prog)
    if argv and not argv[0].startswith("-"):  # MODEL_DIR first, as the other commands take it
        argv = ["--model_dir", *argv]
    calibrate_args, data_args = parser.parse_args_into_dataclasses(args=argv)
    tasks_given = any(arg == "--tasks" or arg.startswith("--tasks=") for arg in argv)
    return calibrate_args, data_args, tasks_given


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    calibrate_args, data_args, tasks_given = parse_arguments(sys.argv[1:] if argv is None else argv, prog)
    show_logs(True)
    source = Path(calibrate_args.model_dir)
    model = MultiTaskSTModel.from_pretrained(source)
    kinds = model.config.task_kinds
    if not any(kind in CALIBRATED_KINDS for kind in kinds.values()):
        raise ValueError(f"{source} has no {' or '.join(CALIBRATED_KINDS)} head to calibrate (its kinds: {kinds}).")
    summary = load_training_summary(source)
    if not tasks_given:  # the datasets the record names, so the validation split is the training run's own
        recorded = {task: entry.get("name") for task, entry in (summary.get("datasets") or {}).items()}
        if not recorded or not all(recorded.values()):
            raise ValueError(
                f"{source} has no training record naming its datasets: pass --tasks task=dataset for its heads."
            )
        data_args.tasks = [f"{task}={name}" for task, name in recorded.items()]
    seed = calibrate_args.seed
    if seed is None:
        seed = (summary.get("training_args") or {}).get("seed", 0)

    tokenizer = AutoTokenizer.from_pretrained(source)
    # Temperatures are for classification heads: the other kinds' data are not loaded (nor read as classes).
    named = {spec.split("=", 1)[0]: spec for spec in data_args.tasks}
    others = {task: kinds[task] for task in named if task in kinds and kinds[task] not in CALIBRATED_KINDS}
    if others and tasks_given:
        raise ValueError(
            f"Only {', '.join(CALIBRATED_KINDS)} heads get a temperature; {others} cannot be calibrated: leave them "
            "out of --tasks."
        )
    data_args.tasks = [spec for task, spec in named.items() if task not in others]
    task_data = load_tasks(data_args, seed)
    for task, dataset in task_data.items():
        names = dataset["validation"].features["label"].names
        if model.config.tasks.get(task) != names:
            raise ValueError(
                f"Task {task!r}: the data's labels {names} are not the model's "
                f"{model.config.tasks.get(task, '(no such head)')}; the model's tasks are {model.config.tasks}."
            )
    max_length = model.default_max_length(tokenizer)
    tokenized = {
        task: tokenize_task_dataset(data, tokenizer, max_length=max_length) for task, data in task_data.items()
    }

    target = Path(calibrate_args.output_dir) if calibrate_args.output_dir else source
    if target != source:
        # What a model folder ships (no checkpoints, no pickled optimizer state), as `multitask-st push` stages it.
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*IGNORE_PATTERNS))
    with tempfile.TemporaryDirectory() as scratch:
        args = MultiTaskTrainingArguments(
            output_dir=scratch, per_device_eval_batch_size=calibrate_args.batch_size, report_to="none",
            stsb_eval_pairs=0, save_plots=False, seed=seed, dataloader_pin_memory=torch.cuda.is_available(),
        )  # fmt: skip
        trainer = MultiTaskTrainer(model=model, args=args, processing_class=tokenizer)
        report = trainer.calibrate({task: data["validation"] for task, data in tokenized.items()})
        test_pairs = trainer.labelled_logits(
            {task: data["test"] for task, data in tokenized.items() if "test" in data}
        )
    temperatures = {task: entry["temperature"] for task, entry in report.items()}
    for task, temperature in temperatures.items():
        if task in test_pairs:
            report[task]["test"] = calibration_stats(*test_pairs[task], temperature)

    model.config.save_pretrained(target)  # config.json only: the weights are unchanged
    summary = load_training_summary(target)
    summary["calibration"] = {**(summary.get("calibration") or {}), **report}
    save_training_summary(summary, target)
    if calibrate_args.save_plots:
        save_reliability_diagrams(test_pairs, temperatures, target)
    print(calibration_table(report))
    print(f"\nWrote the temperatures to {target / 'config.json'} and the ECE/NLL to training_summary.json.")
    return 0


def calibration_table(report: dict[str, dict]) -> str:
    """One line per head and split: temperature, ECE and NLL before -> after, accuracy."""
    lines = ["head        split       T      ECE before -> after    NLL before -> after    accuracy"]
    for task, entry in report.items():
        for split in ("validation", "test"):
            if split not in entry:
                continue
            stats = entry[split]
            lines.append(
                f"{task:<11} {split:<10} {entry['temperature']:6.3f}  {100 * stats['ece_before']:6.2f}% -> "
                f"{100 * stats['ece_after']:5.2f}%      {stats['nll_before']:.4f} -> {stats['nll_after']:.4f}    "
                f"{stats['accuracy']:.4f} ({stats['examples']})"
            )
    return "\n".join(lines)
