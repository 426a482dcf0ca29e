"""Which distillation a run applies, decided when training starts: the embedding distillation's weight and the heads
held by distillation of their starting outputs, each with the reason when it cannot apply (the losses themselves:
`distillation.py`); and the cache of the frozen bottom layers, filled by the same pass (`frozen_layers.py`)."""

from __future__ import annotations

from transformers.utils import logging

from .collator import FROZEN_STATES_COLUMN, SECOND_TEXT_PREFIXES, MultiTaskDataCollator
from .distillation import (
    HEAD_DISTILLATION_LOSSES,
    FrozenTeacher,
    add_teacher_embeddings,
    embedding_distillation_weight,
    embedding_tasks,
    is_partitioned,
    teacher_columns,
    teacher_columns_present,
    whole_model_copy,
)
from .frozen_layers import add_frozen_layer_columns, check_cached_route, frozen_bottom_depth


logger = logging.get_logger(__name__)


class DistillationSetupMixin:
    """`MultiTaskTrainer`'s choices of distillation for a run (`train()` calls `_set_up_distillation()` before the
    first step)."""

    def _set_up_distillation(self):
        """Decides this run's distillation (`embedding_distillation_weight`, `distilling`, `held_tasks`) and gets its
        targets: a frozen copy of the model for per-batch teacher outputs, or the precomputed teacher columns. Both come
        from the model as it is now, before any step and before `accelerator.prepare` (on resume: the fresh model, not
        the checkpoint's)."""
        self.embedding_distillation_weight = self._applied_distillation_weight()
        self.distilling = self.embedding_distillation_weight > 0
        self.held_tasks = self._held_tasks()
        self.cached_depth = self._cached_depth()
        if not (self.distilling or self.held_tasks or self.cached_depth):
            return
        model = self.accelerator.unwrap_model(self.model)
        if self.cached_depth:
            self._set_up_frozen_layer_cache(model)
            return
        if self.task_streams is not None or self.is_fsdp_enabled:
            # Streams have no column to precompute; under FSDP a frozen whole copy per process gives each batch's
            # teacher outputs (the student is sharded once training starts). Built once: a second `train()` on this
            # trainer (e.g. resuming after an interrupt) keeps the start as its teacher, as the columns are kept.
            if self.teacher is None:
                self.teacher = FrozenTeacher(model, device=self.args.device, held_tasks=self.held_tasks)
            self.teacher.held_tasks = list(self.held_tasks)
            return
        if teacher_columns_present(self.train_dataset, self.held_tasks):
            return  # computed by an earlier `train()` of this trainer, from the start
        # The precomputed columns: no second model during training and no extra forward per step. Under DeepSpeed
        # ZeRO-1/2 the model is still whole here (only gradients and optimizer states get partitioned), as under DDP;
        # under ZeRO-3 its parameters are partitioned already, so the pass runs on a whole copy, dropped right after.
        # Trainer does not place a DeepSpeed model (DeepSpeed does): run the pass on the training device.
        if is_partitioned(model):
            logger.info(
                "DeepSpeed ZeRO-3 partitions the model: the teacher pass runs on a whole copy gathered from it."
            )
            model = whole_model_copy(model, self.args.device)
        elif self.is_deepspeed_enabled:
            model.to(self.args.device)
        self.train_dataset = add_teacher_embeddings(
            model,
            self.train_dataset,
            self.data_collator.tokenizer,  # a MultiTaskDataCollator's (checked): pads as the training batches
            # inference over length-sorted batches: larger ones than Trainer's default eval batch of 8 pay off
            # runs where the model is: Trainer does not place it yet for e.g. `bf16_full_eval`
            batch_size=max(64, self.args.per_device_eval_batch_size),
            show_progress_bar=not self.args.disable_tqdm,
            held_tasks=self.held_tasks,
        )

    def _cached_depth(self) -> int:
        """How many bottom layers this run caches (`args.cache_frozen_layers`, see `frozen_layers.py`): 0 when not asked;
        raises when asked where it cannot apply."""
        if not self.args.cache_frozen_layers or self.train_dataset is None:
            return 0
        model = self.accelerator.unwrap_model(self.model)
        reason = None
        if self.task_streams is not None:
            reason = "the training data is streamed: there is no dataset column to keep the layers' output in"
        elif self.args.world_size > 1 or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            reason = "it runs in one process only (no DDP, DeepSpeed or FSDP)"
        elif not isinstance(self.data_collator, MultiTaskDataCollator):
            reason = f"the data collator ({type(self.data_collator).__name__}) is not a MultiTaskDataCollator"
        elif any(column.startswith(SECOND_TEXT_PREFIXES) for column in self.train_dataset.column_names):
            reason = "the training data has second texts (pairs or negatives), which run through the whole backbone"
        depth = frozen_bottom_depth(sorted(self.unfreezing.frozen), model.config.backbone_config.num_hidden_layers)
        if reason is None and depth == 0:
            reason = (
                "it needs the embeddings and at least the bottom layer frozen for the whole run (e.g. `freeze="
                f"['backbone.embeddings', 'backbone.layer.0']`); frozen all run now: {sorted(self.unfreezing.frozen)}"
            )
        if reason:
            raise ValueError(f"cache_frozen_layers=True cannot apply: {reason}.")
        return depth

    def _set_up_frozen_layer_cache(self, model):
        """The `frozen_hidden_states` column and the teacher columns this run reads, from one pass of the starting
        model, then the check that the layers above give from them what the whole model gives."""
        wanted = teacher_columns(self.held_tasks) if (self.distilling or self.held_tasks) else []
        missing = [column for column in wanted if column not in self.train_dataset.column_names]
        if FROZEN_STATES_COLUMN not in self.train_dataset.column_names:  # kept from an earlier `train()`
            self.train_dataset = add_frozen_layer_columns(
                model,
                self.train_dataset,
                self.data_collator.tokenizer,
                self.cached_depth,
                teacher_columns=missing,
                held_tasks=self.held_tasks,
                batch_size=max(64, self.args.per_device_eval_batch_size),
                show_progress_bar=not self.args.disable_tqdm,
            )
        elif missing:
            raise ValueError(f"The training data has cached frozen layers but not the teacher columns {missing}.")
        probe = self.data_collator([self.train_dataset[index] for index in range(min(8, len(self.train_dataset)))])
        check_cached_route(model, {key: value.to(model.device) for key, value in probe.items()}, self.cached_depth)
        logger.info(
            f"cache_frozen_layers: the embeddings and bottom {self.cached_depth} layer(s) ran once; each step runs "
            "the layers above them."
        )

    def _tasks_with_data(self, config) -> list[str]:
        """The tasks with training examples in this run: a stream, or a non-empty dataset (all without sizes)."""
        if self.task_streams is not None:
            return list(self.task_streams.tasks)
        sizes = self.task_sizes or [1] * len(config.task_names)
        return [task for task, size in zip(config.task_names, sizes, strict=True) if size]

    def _applied_distillation_weight(self) -> float:
        """The embedding distillation weight this run applies (0: none): `args.embedding_distillation_weight`, or when
        unset the default for the model's tasks; says why not when it was asked for but cannot apply."""
        if self.train_dataset is None:
            return 0.0
        config = self.accelerator.unwrap_model(self.model).config
        # Only the tasks with training data in this run move the embedding; one without (a model's embedding task while
        # a new head is added) relies on the embedding being held.
        trained = {task: config.task_kinds[task] for task in self._tasks_with_data(config)}
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
        if self.args.head_distillation_weight == 0 or self.train_dataset is None:
            return []
        config = self.accelerator.unwrap_model(self.model).config
        trained = self._tasks_with_data(config)
        idle = [task for task in config.task_names if task not in trained]
        held = [task for task in idle if config.task_kinds[task] in HEAD_DISTILLATION_LOSSES]
        unheld = [task for task in idle if task not in held]
        if unheld:
            logger.warning(
                f"The pair/embedding tasks {unheld} have no training data: their heads are not run on the incoming "
                "single texts, so only the embedding distillation (if on) holds the embedding they read."
            )
        if held and not isinstance(self.data_collator, MultiTaskDataCollator):
            reason = f"the data collator ({type(self.data_collator).__name__}) is not a MultiTaskDataCollator"
            logger.warning(f"The heads {held} have no training data and are not held: {reason}. They may drift.")
            return []
        if held:
            logger.info(f"Heads without training data, held by distillation of their starting outputs: {held}.")
        return held
