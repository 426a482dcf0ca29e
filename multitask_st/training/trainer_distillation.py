"""Which distillation a run applies, decided when training starts: the embedding distillation's weight and the heads
held by distillation of their starting outputs, each with the reason when it cannot apply (the losses themselves:
`distillation.py`)."""

from __future__ import annotations

from transformers.utils import logging

from .collator import MultiTaskDataCollator
from .distillation import (
    HEAD_DISTILLATION_LOSSES,
    FrozenTeacher,
    add_teacher_embeddings,
    embedding_distillation_weight,
    embedding_tasks,
)


logger = logging.get_logger(__name__)


class DistillationSetupMixin:
    """`MultiTaskTrainer`'s choices of distillation for a run (`train()` calls `_set_up_distillation()` before the
    first step)."""

    def _set_up_distillation(self):
        """Decides this run's distillation (`embedding_distillation_weight`, `distilling`, `held_tasks`) and gets its
        targets: a frozen copy of the model for per-batch teacher outputs, or the precomputed teacher columns."""
        self.embedding_distillation_weight = self._applied_distillation_weight()
        self.distilling = self.embedding_distillation_weight > 0
        self.held_tasks = self._held_tasks()
        if self.distilling and (self.task_streams is not None or self.is_fsdp_enabled):
            # Streams have no column to precompute; under FSDP a frozen whole copy per process gives each batch's
            # teacher embeddings (the student is sharded once training starts). From the model as it is now, as the
            # precomputed column (on resume: the fresh model, not the checkpoint's).
            self.teacher = FrozenTeacher(self.accelerator.unwrap_model(self.model), device=self.args.device)
        elif self.distilling or self.held_tasks:
            # From the model as it is now, before any step (on resume: the fresh model, not the checkpoint's).
            self.train_dataset = add_teacher_embeddings(
                self.model,
                self.train_dataset,
                self.data_collator.tokenizer,  # a MultiTaskDataCollator's (checked): pads as the training batches
                # inference over length-sorted batches: larger ones than Trainer's default eval batch of 8 pay off
                # runs where the model is: Trainer does not place it yet for e.g. `bf16_full_eval`
                batch_size=max(64, self.args.per_device_eval_batch_size),
                show_progress_bar=not self.args.disable_tqdm,
                held_tasks=self.held_tasks,
            )

    def _applied_distillation_weight(self) -> float:
        """The embedding distillation weight this run applies (0: none): `args.embedding_distillation_weight`, or when
        unset the default for the model's tasks; says why not when it was asked for but cannot apply."""
        if self.train_dataset is None:
            return 0.0
        config = self.accelerator.unwrap_model(self.model).config
        # Only the tasks with training data in this run move the embedding; one without (a model's embedding task while
        # a new head is added) relies on the embedding being held.
        sizes = self.task_sizes or [1] * len(config.task_names)
        trained = {task: config.task_kinds[task] for task, size in zip(config.task_names, sizes, strict=True) if size}
        weight = embedding_distillation_weight(self.args.embedding_distillation_weight, trained)
        if weight == 0:
            if self.args.embedding_distillation_weight is None:
                logger.info(
                    f"The task(s) {embedding_tasks(trained)} train the embedding itself: embedding distillation is "
                    "off (set embedding_distillation_weight to also hold the in-batch similarities near the start)."
                )
            return 0.0
        reason = None
        if not isinstance(self.data_collator, MultiTaskDataCollator):
            reason = f"the data collator ({type(self.data_collator).__name__}) is not a MultiTaskDataCollator"
        elif self.args.per_device_train_batch_size < 2:
            reason = "a batch of one example has no pair of embeddings to compare (per_device_train_batch_size=1)"
        elif self.is_deepspeed_enabled:
            reason = "the teacher needs the whole model on one device (DeepSpeed partitions it)"
        if reason:
            logger.warning(
                f"embedding_distillation_weight={weight} is ignored: {reason}. "
                "The run trains without embedding distillation."
            )
            return 0.0
        return weight

    def _held_tasks(self) -> list[str]:
        """The heads this run holds by distillation of the starting model's outputs (learning without forgetting): those
        with no training example, when `args.head_distillation_weight` > 0. Says why not when it cannot."""
        if self.args.head_distillation_weight == 0 or self.task_sizes is None:
            return []
        config = self.accelerator.unwrap_model(self.model).config
        idle = [task for task, size in zip(config.task_names, self.task_sizes, strict=True) if size == 0]
        held = [task for task in idle if config.task_kinds[task] in HEAD_DISTILLATION_LOSSES]
        unheld = [task for task in idle if task not in held]
        if unheld:
            logger.warning(
                f"The pair/embedding tasks {unheld} have no training data: their heads are not run on the incoming "
                "single texts, so only the embedding distillation (if on) holds the embedding they read."
            )
        reason = None
        if held and not isinstance(self.data_collator, MultiTaskDataCollator):
            reason = f"the data collator ({type(self.data_collator).__name__}) is not a MultiTaskDataCollator"
        elif held and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            reason = "the teacher pass needs the whole model on one device (DeepSpeed/FSDP shard it)"
        if reason:
            logger.warning(f"The heads {held} have no training data and are not held: {reason}. They may drift.")
            return []
        if held:
            logger.info(f"Heads without training data, held by distillation of their starting outputs: {held}.")
        return held
