"""Changing a trained model's tasks: add a head, remove one, rename or append labels, each recorded in the lineage.

This file is part of the Hub payload (copied next to the weights by `save_pretrained`); it imports only torch,
transformers and the payload files next to it. `MultiTaskSTModel` takes these methods from the mixin below.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Mapping, Sequence

from transformers.utils import logging

from .inference_multitask_st import MULTI_LABEL, PAIR_CLASSIFICATION, SINGLE_LABEL
from .layers_multitask_st import TASK_HEADS, append_output_rows
from .task_fields_multitask_st import (
    normalize_task_calibration,
    normalize_task_kinds,
    normalize_task_loss_weights,
    normalize_tasks,
)


logger = logging.get_logger(__name__)

# The kinds whose head gives one output per label, so `add_labels` can give it more.
LABELLED_KINDS = (SINGLE_LABEL, MULTI_LABEL, PAIR_CLASSIFICATION)


class MultiTaskSTTaskEditingMixin:
    """`add_task`, `remove_task`, `rename_labels` and `add_labels` for [`MultiTaskSTModel`]: each changes the config and
    the heads in place, leaves every other head's outputs as they are, and appends an entry to `config.lineage`."""

    def add_task(
        self, name: str, labels: Sequence[str] | Mapping, kind: str = SINGLE_LABEL, loss_weight: float = 1.0
    ) -> MultiTaskSTTaskEditingMixin:
        """Add a head for a new task (after the others, freshly initialised); everything else, and every other head's
        output, stays as it is. Train it without the old tasks' data, their heads held by distillation:
        `multitask-st train --init_model MODEL_DIR --tasks NAME=DATASET` (README: "Add a task later").
        Returns the model, so calls chain.

        Example:
            >>> model.add_task("newsgroup", ["comp.graphics", "rec.autos", "sci.space"])
        """
        if isinstance(name, str) and name in self.config.tasks:
            raise ValueError(
                f"Task {name!r} exists already (this model's tasks are {self.config.task_names}); use `add_labels` to "
                "give it more labels, or `remove_task` first."
            )
        tasks = normalize_tasks({**self.config.tasks, name: labels})  # checks the name and the labels
        kinds = normalize_task_kinds({**self.config.task_kinds, name: kind}, tasks)
        weights = normalize_task_loss_weights({**self.config.task_loss_weights, name: loss_weight}, tasks)
        before = (self.config.tasks, self.config.task_kinds, self.config.task_loss_weights)
        self.config.tasks, self.config.task_kinds, self.config.task_loss_weights = tasks, kinds, weights
        build = TASK_HEADS[kinds[name]]  # None for an embedding task: the embedding is its output, no head
        try:  # a head is built from the config's entry for its task
            head = None if build is None else build(self.config, name)
        except Exception:
            self.config.tasks, self.config.task_kinds, self.config.task_loss_weights = before
            raise
        if head is not None:
            head.apply(self._init_weights)
            # In the model's mode: a new module is in train mode, and its dropout would run inside an eval model's
            # predict.
            self.heads[name] = head.to(device=self.device, dtype=self.dtype).train(self.training)
        self._record_change("add_task", name, labels=list(tasks[name]), kind=kinds[name])
        return self

    def remove_task(self, name: str) -> MultiTaskSTTaskEditingMixin:
        """Remove a task's head (and its loss weight and calibration); the other heads are unchanged."""
        self.config.labels_of(name)  # names the task's absence
        if len(self.config.tasks) == 1:
            raise ValueError(f"Cannot remove {name!r}, the model's only task: a model needs at least one head.")
        if name in self.heads:  # an embedding task has none
            del self.heads[name]
        for field in (
            "tasks", "task_kinds", "task_loss_weights", "task_loss_options", "task_target_scaling", "task_calibration"
        ):  # fmt: skip
            getattr(self.config, field).pop(name, None)
        self._record_change("remove_task", name)
        return self

    def rename_labels(self, task: str, names: Sequence[str] | Mapping[str, str]) -> MultiTaskSTTaskEditingMixin:
        """Rename a task's labels without retraining: a list of the new names in id order, or `{old: new}` for some.
        The head, its weights and its calibration stay; only the names `predict` and every door give change."""
        labels = self.config.labels_of(task)
        if isinstance(names, Mapping):
            unknown = sorted(set(names) - set(labels), key=str)
            if unknown:
                raise ValueError(f"Task {task!r} has no label(s) {unknown} to rename; its labels are {labels}.")
            names = [names.get(label, label) for label in labels]
        elif isinstance(names, str) or not isinstance(names, Sequence) or len(names) != len(labels):
            raise ValueError(
                f"`names` must be {len(labels)} new names for the labels {labels} of task {task!r}, in id order, or an "
                f"{{old: new}} mapping; got {names!r}."
            )
        renamed = normalize_tasks({**self.config.tasks, task: list(names)})
        changes = {old: new for old, new in zip(labels, renamed[task], strict=True) if old != new}
        self.config.tasks = renamed
        self._record_change("rename_labels", task, renamed=changes)
        return self

    def add_labels(self, task: str, names: Sequence[str]) -> MultiTaskSTTaskEditingMixin:
        """Give a classification head more labels, after its others: its output layer gains freshly initialised rows
        and keeps the old rows as they are (train it on data with the new labels, the old heads held by
        distillation). The task's fitted temperature is dropped: it no longer describes the head."""
        labels, kind = self.config.labels_of(task), self.config.task_kinds[task]
        if kind not in LABELLED_KINDS:
            raise ValueError(
                f"Task {task!r} is a {kind} task: its outputs are not labels to add to (labels can be added to "
                f"{', '.join(LABELLED_KINDS)} tasks)."
            )
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise ValueError(f"`names` must be a non-empty list of new labels for task {task!r}, got {names!r}.")
        extended = normalize_tasks({**self.config.tasks, task: [*labels, *names]})  # names a repeated label
        append_output_rows(self.heads[task], len(names), self._init_weights)
        self.config.tasks = extended
        if self.config.task_calibration.pop(task, None):
            logger.warning(f"Task {task!r} has new labels: its calibration was dropped; calibrate again.")
        self.config.task_loss_options.pop(task, None)  # class weights / pos_weight are one per label
        self.config.task_calibration = normalize_task_calibration(
            self.config.task_calibration, self.config.tasks, self.config.task_kinds
        )
        self._record_change("add_labels", task, labels=list(names))
        return self

    def _record_change(self, change: str, task: str, **details):
        """Append one entry to `config.lineage`: the change, and the model it was made to (its name when that is a Hub
        id, not a local path, and its revision: the Hub commit, else the sha256 of its weights file)."""
        name = getattr(self.config, "_name_or_path", None) or None
        is_local = name is not None and os.path.isdir(name)
        revision = getattr(self.config, "_commit_hash", None)
        if revision is None and is_local and os.path.isfile(os.path.join(name, "model.safetensors")):
            digest = hashlib.sha256()
            with open(os.path.join(name, "model.safetensors"), "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            revision = "sha256:" + digest.hexdigest()[:16]
        entry = {"change": change, "task": task, **details}
        entry.update(
            base_model=None if is_local else name,
            base_revision=revision,
            date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        )
        self.config.lineage = [*self.config.lineage, entry]
