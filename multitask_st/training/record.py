"""The training record: what a run reports about itself, saved next to the model as `training_summary.json`
(`multitask_st.model_folder` writes and reads the file).

It is gathered here, in one place, from `TrainingArguments.to_dict()`, what the trainer resolved (frozen parts,
optimizer groups, whether distillation applied), the datasets and the metrics; the model card reads it as it is.
`MultiTaskTrainer` writes it itself through `TrainingRecordCallback`, so every trainer user gets the full card.

    {"base_model": "sentence-transformers/all-MiniLM-L6-v2",
     "datasets": {"topic": {"name": "bbc_news", "hub_id": null, "description": ..., "num_train": 800, ...}, ...},
     "metrics": {"tasks": {"topic": {"validation": {"accuracy": 0.96, "f1": 0.96}, "test": {...}}, ...},
                 "other": {"stsb_spearman": {"validation": 0.85, "test": 0.81}, "loss": {...}, ...}},
     "training_args": {every argument but paths and tokens}, "non_default_args": ["learning_rate", ...],
     "run": {"global_steps": 100, "freeze": [...], "optimizer_groups": [...], ...},
     "calibration": {"topic": {"temperature": 1.6, "validation": {"ece_before": 0.05, "ece_after": 0.01,
                                "nll_before": ..., "nll_after": ..., "accuracy": ..., "examples": 1000},
                               "test": {...}}, ...},
     "framework_versions": {"transformers": "5.24.0", ...}}
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from pathlib import Path

from transformers import TrainerCallback
from transformers.utils import logging

from ..data.corpora import BUILTIN_DATASETS
from ..model_folder import save_training_summary
from .calibration import calibration_stats, labelled_logits
from .parameter_groups import build_parameter_groups
from .plots import save_reliability_diagrams, save_test_plots


logger = logging.get_logger(__name__)


# Metric key prefixes of the splits a run evaluates (`trainer.evaluate(metric_key_prefix=...)`), in run order.
SPLIT_PREFIXES = {"validation": "eval", "test": "test"}


# Trainer bookkeeping returned next to the metrics; not worth recording.
METRIC_NOISE_SUFFIXES = ("runtime", "samples_per_second", "steps_per_second", "epoch")


# Arguments that name this machine or hold secrets: never recorded (the record ships with the model).
PRIVATE_ARGS = ("output_dir", "logging_dir", "run_name", "resume_from_checkpoint", "hub_model_id", "push_to_hub_token")


def training_record(
    trainer,
    *,
    base_model: str | None = None,
    datasets: dict[str, dict] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    train_metrics: dict[str, float] | None = None,
    calibration: dict[str, dict] | None = None,
) -> dict:
    """The record of a finished run of a `MultiTaskTrainer` (see the module docstring for its layout).

    Args:
        trainer: The trainer, after `train()`.
        base_model: The Hub id (or path) of the starting encoder.
        datasets: Per task, where its data comes from (see [`dataset_record`]).
        metrics: Per split (`"validation"`, `"test"`), what `trainer.evaluate` returned for it.
        train_metrics: What `trainer.train()` returned (`train_runtime`, ...).
        calibration: Per calibrated head, its temperature and ECE/NLL before and after, per split (see
            `MultiTaskTrainer.calibrate`).
    """
    import accelerate
    import datasets as datasets_library
    import torch
    import transformers

    args, model = trainer.args, trainer.accelerator.unwrap_model(trainer.model)
    arguments = {key: value for key, value in args.to_dict().items() if key not in PRIVATE_ARGS}
    # The optimizer's own groups when it exists (a custom optimizer is recorded as it is), at their initial LRs.
    groups = trainer.optimizer.param_groups if trainer.optimizer is not None else build_parameter_groups(
        model, args.learning_rate, args.weight_decay, args.layer_decay, args.projection_lr_multiplier,
        args.head_lr_multiplier,
    )  # fmt: skip
    train_metrics = train_metrics or {}
    return {
        "base_model": base_model,
        "datasets": datasets or {},
        "metrics": structured_metrics(metrics or {}, model.config.task_names),
        "training_args": arguments,
        "non_default_args": [key for key in _non_default_args(args) if key in arguments],
        # What the run resolved or measured, beyond its arguments.
        "run": {
            "global_steps": trainer.state.global_step,
            "world_size": args.world_size,
            # how the processes ran together (`NO`, `MULTI_CPU`, `MULTI_GPU`, `FSDP`, `DEEPSPEED`...) and where
            "distributed_type": str(trainer.accelerator.distributed_type.value),
            "processes": trainer.processes,
            "max_seq_length": model.config.max_seq_length,
            "task_loss_weights": model.config.task_loss_weights,
            # what the run applied (0 when it could not, see `DistillationSetupMixin._applied_distillation_weight`)
            "embedding_distillation_weight": trainer.embedding_distillation_weight,
            # the heads without training data in this run, held to the starting model's outputs
            "held_tasks": list(trainer.held_tasks),
            "head_distillation_weight": args.head_distillation_weight if trainer.held_tasks else 0.0,
            "freeze": sorted(trainer.unfreezing.frozen),
            "unfreeze_stages": trainer.unfreezing.stages or None,
            "optimizer_groups": [
                {
                    "name": group.get("name", f"group {index}"),
                    "lr": group.get("initial_lr", group["lr"]),
                    "weight_decay": group["weight_decay"],
                    "num_parameters": sum(p.numel() for p in group["params"]),
                }
                for index, group in enumerate(groups)
            ],
            "train_runtime_s": train_metrics.get("train_runtime"),
            # this session's (not summed over resumptions, unlike train_runtime_s) and this process's (rank 0's, not
            # other ranks' nor DataLoader workers'): the CPU seconds of the training loop, and the wall and CPU seconds
            # of the distillation set-up before it (the teacher pass over the training set, when precomputed)
            "train_cpu_s": train_metrics.get("train_cpu_s"),
            "distillation_setup_s": train_metrics.get("distillation_setup_runtime"),
            "distillation_setup_cpu_s": train_metrics.get("distillation_setup_cpu_s"),
            "train_samples_per_second": train_metrics.get("train_samples_per_second"),
            "best_metric": trainer.state.best_metric,
        },
        "calibration": calibration or {},
        "framework_versions": {
            "multitask_st": version("multitask-st"),  # = multitask_st.__version__ (pyproject reads it)
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "datasets": datasets_library.__version__,
            "accelerate": accelerate.__version__,
            "python": platform.python_version(),
        },
    }


def dataset_record(name: str, dataset) -> dict:
    """A task dataset as the record lists it: where it comes from (`name` as given to `load_task_dataset`) and its
    split sizes."""
    builtin = BUILTIN_DATASETS.get(name)
    is_hub_id = builtin is None and not Path(name).exists()
    return {
        "name": name,
        "hub_id": name if is_hub_id else None,
        "description": builtin.description if builtin else None,
        "source": builtin.source if builtin else None,
        **{f"num_{split}": len(data) for split, data in dataset.items()},
    }


def structured_metrics(metrics: dict[str, dict[str, float]], task_names: list[str]) -> dict[str, dict]:
    """`{"tasks": {task: {split: {metric: value}}}, "other": {name: {split: value}}}` from the trainer's results.

    `metrics` maps a split to what `trainer.evaluate` returned for it (`eval_topic_accuracy`, `test_loss`, ...).
    Splits keep the run's order (validation, then test); bookkeeping (runtime, throughput, epoch) is left out.
    """
    tasks: dict[str, dict] = {}
    other: dict[str, dict] = {}
    # A task's metrics are `<task>_<metric>` (its kind's, see `metrics.TASK_METRICS`); the longest task name wins, so
    # `topic_x_accuracy` is task `topic_x`'s, not a metric `x_accuracy` of `topic`.
    by_length = sorted(task_names, key=len, reverse=True)

    def task_metric(name: str) -> tuple[str, str] | None:
        task = next((task for task in by_length if name.startswith(f"{task}_")), None)
        if task is None or name.endswith("_loss"):
            return None
        return task, name[len(task) + 1 :]

    for split, prefix in SPLIT_PREFIXES.items():
        for key, value in (metrics.get(split) or {}).items():
            name = key.removeprefix(f"{prefix}_")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or name.endswith(METRIC_NOISE_SUFFIXES):
                continue
            if task_metric(name) is not None:
                task, metric = task_metric(name)
                tasks.setdefault(task, {}).setdefault(split, {})[metric] = float(value)
            else:
                other.setdefault(name, {})[split] = float(value)
    return {"tasks": tasks, "other": other}


def _non_default_args(args) -> list[str]:
    """The arguments whose value differs from a default-built instance's (after `__post_init__`, as `to_dict` shows).

    The default instance skips the device set-up: there `TrainingArguments` resets accelerate's shared state, which
    the running trainer's arguments and accelerator read (a two-process run would continue as one). It keeps the one
    change that set-up makes to a recorded argument: `use_configured_state` taken out of `accelerator_config`.
    """

    class DefaultArguments(type(args)):
        @property
        def _setup_devices(self):
            if hasattr(self.accelerator_config, "pop"):
                self.accelerator_config.pop("use_configured_state", False)
            return args.device

    defaults = DefaultArguments(output_dir=args.output_dir).to_dict()
    return [key for key, value in args.to_dict().items() if defaults.get(key) != value]


def _split_of(metrics: dict) -> str | None:
    """The split (`validation`, `test`) whose metric key prefix `metrics` carries, or None for another prefix."""
    for split, prefix in SPLIT_PREFIXES.items():
        if any(key.startswith(f"{prefix}_") for key in metrics):
            return split
    return None


class TrainingRecordCallback(TrainerCallback):
    """Writes the run's record, `training_summary.json`, next to the trained model and, when the trained model predicts
    a labelled test split, one plot per head (see `plots.save_test_plots`): what the model card shows.

    `MultiTaskTrainer` attaches it, as sentence-transformers' trainer attaches its model-card callback, and hands it
    what callback events do not carry: the whole run's training metrics (`train_ended`, after a resume too) and the
    test predictions (`predicted`).

    When: at the end of `train()`, then after each `evaluate()` (the validation metrics, `eval_*`) and `predict()`
    (the test metrics, `test_*`) of the trained model. Evaluations during training go to the plots, not to the record:
    with `load_best_model_at_end` the last of them need not be the saved model's. Where: `args.output_dir`, and every
    folder `trainer.save_model(folder)` writes the trained model to. Only the main process writes.

    Args:
        trainer: The `MultiTaskTrainer` whose run this records.
        base_model: The Hub id (or path) of the starting encoder, credited in the card.
        datasets: Per task, where its data comes from (see [`dataset_record`]).
    """

    def __init__(self, trainer, base_model: str | None = None, datasets: dict[str, dict] | None = None):
        self.trainer = trainer
        self.base_model = base_model
        self.datasets = datasets or {}
        self.train_metrics: dict | None = None  # None until training has ended
        self.metrics: dict[str, dict] = {}  # split -> what evaluate()/predict() returned for the trained model
        self.calibration: dict[str, dict] = {}  # task -> temperature and, per split, ECE/NLL before and after
        self.folders: list[str] = []

    def train_ended(self, train_metrics: dict):
        """Training ended with these metrics (`trainer.train()`'s, over the whole run): start the record afresh."""
        self.train_metrics, self.metrics, self.calibration = dict(train_metrics), {}, {}
        self.folders = [self.trainer.args.output_dir]
        self.save()

    def saved_to(self, folder: str | os.PathLike):
        """The trained model was saved to `folder`: the record goes there too."""
        if self.train_metrics is not None and str(folder) not in self.folders:
            self.folders.append(str(folder))
            self.save()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._add_metrics(metrics)

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        self._add_metrics(metrics)

    def _add_metrics(self, metrics: dict | None):
        split = _split_of(metrics or {})
        if self.train_metrics is None or self.trainer.is_in_train or split is None:
            return
        self.metrics[split] = dict(metrics)
        self.save()

    def calibrated(self, report: dict[str, dict]):
        """`trainer.calibrate()` fitted these temperatures (with their validation ECE/NLL): recorded from now on."""
        if self.train_metrics is None:
            return
        self.calibration = {task: dict(entry) for task, entry in report.items()}
        self.save()

    def predicted(self, output, metric_key_prefix: str):
        """`trainer.predict` returned `output`: a labelled test split gives the heads' plots and, for each calibrated
        head, its test ECE/NLL before and after and its reliability diagram (`args.save_plots`)."""
        if self.train_metrics is None or metric_key_prefix != SPLIT_PREFIXES["test"] or output.label_ids is None:
            return
        config = self.trainer.accelerator.unwrap_model(self.trainer.model).config
        pairs = labelled_logits(output.predictions[0], output.label_ids, config)
        temperatures = {task: self.calibration[task]["temperature"] for task in self.calibration if task in pairs}
        for task, temperature in temperatures.items():
            self.calibration[task]["test"] = calibration_stats(*pairs[task], temperature)
        if temperatures:
            self.save()
        if self.trainer.args.save_plots and self.trainer.is_world_process_zero():
            for folder in self.folders:
                save_test_plots(output.predictions[0], output.label_ids, config, folder)
                save_reliability_diagrams(pairs, temperatures, folder)

    def record(self) -> dict:
        """The record as it stands (see the module docstring)."""
        return training_record(
            self.trainer,
            base_model=self.base_model,
            datasets=self.datasets,
            metrics=self.metrics,
            train_metrics=self.train_metrics,
            calibration=self.calibration,
        )

    def save(self):
        if not self.trainer.is_world_process_zero():
            return
        record = self.record()
        for folder in self.folders:
            logger.info(f"Wrote {save_training_summary(record, folder)}.")
