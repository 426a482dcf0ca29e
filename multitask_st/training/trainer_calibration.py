"""What the trainer fits on the validation split once training ends: the multi-label heads' thresholds and the
classification heads' temperatures (the numbers themselves: `calibration.py`), stored in the model's config."""

from __future__ import annotations

import numpy as np
from transformers import Trainer
from transformers.utils import logging

from ..inference_multitask_st import MULTI_LABEL
from ..losses_multitask_st import labelled_rows
from ..scores_multitask_st import CALIBRATION_TEMPERATURE, sigmoid
from ..task_fields_multitask_st import normalize_task_calibration
from .calibration import fit_task_temperatures, labelled_logits, tune_thresholds
from .tokenization import concatenate_task_datasets


logger = logging.get_logger(__name__)


class CalibrationMixin:
    """`MultiTaskTrainer`'s fitting after training: `tune_thresholds()` and `calibrate()` (called by `train()` as
    `args.tune_thresholds` / `args.calibrate` say), through Trainer's own evaluation loop."""

    def tune_thresholds(self, eval_dataset=None) -> dict[str, list[float]]:
        """Per multi-label task with labelled rows in `eval_dataset` (default: the validation set), the per-label
        thresholds that maximise each label's F1 there (`calibration.tune_thresholds`), saved in
        `config.task_calibration` (so in the model folder, and used by `predict` and the metrics from now on).
        `train()` calls it at the end (`args.tune_thresholds`)."""
        config = self.accelerator.unwrap_model(self.model).config
        tasks = [task for task, kind in config.task_kinds.items() if kind == MULTI_LABEL]
        eval_dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if not tasks or eval_dataset is None:
            return {}
        if isinstance(eval_dataset, dict):
            eval_dataset, _ = concatenate_task_datasets(eval_dataset, config.task_names, config)
        # Trainer's own loop: no STS-B pass, no record written
        output = Trainer.evaluation_loop(
            self, self.get_eval_dataloader(eval_dataset), "Tuning thresholds", metric_key_prefix="calibration"
        )
        logits, labels, slices = (
            output.predictions[0],
            np.asarray(output.label_ids, dtype=np.float64),
            config.label_slices(),
        )
        tuned = {}
        for task in tasks:
            columns = labels[:, slices[task]]
            labelled = labelled_rows(columns, MULTI_LABEL)
            if not labelled.any():
                continue
            tuned[task] = tune_thresholds(
                sigmoid(np.asarray(logits[task], dtype=np.float64)[labelled]), columns[labelled]
            )
            config.task_calibration = {**config.task_calibration, task: {**config.task_calibration.get(task, {}),
                                                                          "thresholds": tuned[task]}}  # fmt: skip
            logger.info(f"Thresholds of {task!r} tuned on {int(labelled.sum())} validation rows: {tuned[task]}")
        return tuned

    def calibrate(self, eval_dataset=None) -> dict[str, dict]:
        """Fit one temperature per classification head on `eval_dataset` (default: the trainer's, the validation
        split; a `{task: dataset}` dict or a tokenised dataset) by minimising the NLL of its labels, and store it in
        `model.config.task_calibration` (other fitted values there are kept). Every argmax stays as it was.

        Returns, per head with labelled examples, `{"temperature": t, "validation": {"ece_before", "ece_after",
        "nll_before", "nll_after", "accuracy", "examples"}}` (also in the record).
        """
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is None:
            raise ValueError("`calibrate()` needs labelled examples: pass `eval_dataset` or give the trainer one.")
        model = self.accelerator.unwrap_model(self.model)
        pairs = self.labelled_logits(dataset)
        if not pairs:
            logger.warning("No head has labelled examples to calibrate on: the model stays uncalibrated.")
            return {}
        report = fit_task_temperatures(pairs)
        calibration = {task: dict(entry) for task, entry in model.config.task_calibration.items()}
        for task, entry in report.items():
            calibration.setdefault(task, {})[CALIBRATION_TEMPERATURE] = entry[CALIBRATION_TEMPERATURE]
            stats = entry["validation"]
            logger.info(
                f"Calibrated head {task!r} on {stats['examples']} examples: temperature "
                f"{entry[CALIBRATION_TEMPERATURE]:.3f}, ECE {stats['ece_before']:.4f} -> {stats['ece_after']:.4f}, "
                f"NLL {stats['nll_before']:.4f} -> {stats['nll_after']:.4f}."
            )
        model.config.task_calibration = normalize_task_calibration(
            calibration, model.config.tasks, model.config.task_kinds
        )
        self.record.calibrated(report)
        return report

    def labelled_logits(self, dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per classification head, `(logits, labels)` of the examples of `dataset` labelled for it (a `{task:
        dataset}` dict or a tokenised dataset), from one prediction pass without the STS-B evaluation."""
        config = self.accelerator.unwrap_model(self.model).config
        if isinstance(dataset, dict):
            dataset, _ = concatenate_task_datasets(dataset, config.task_names, config)
        stsb_dataset, self.stsb_dataset = self.stsb_dataset, None
        try:  # Trainer's own predict: this pass is not a test split for the record
            output = Trainer.predict(self, dataset, metric_key_prefix="calibration")
        finally:
            self.stsb_dataset = stsb_dataset
        return labelled_logits(output.predictions[0], output.label_ids, config)
