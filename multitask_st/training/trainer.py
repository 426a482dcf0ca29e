"""`MultiTaskTrainer`: the Hugging Face `Trainer` with task mixing, per-task losses and metrics, learning-rate groups
and freezing.
"""

from __future__ import annotations

import time

import datasets
import numpy as np
import torch
from transformers import Trainer
from transformers.utils import logging

from ..inference_multitask_st import SINGLE_LABEL, tokenizer_fingerprint
from ..losses_multitask_st import labelled_rows
from ..modeling_multitask_st import MultiTaskSTModel
from ..parts_multitask_st import frozen_modules
from ..task_fields_multitask_st import normalize_task_loss_options, normalize_task_loss_weights
from .callbacks import UnfreezingCallback
from .checkpoints import checked_checkpoint
from .collator import FROZEN_STATES_COLUMN, TEACHER_COLUMN, TEACHER_LOGITS_COLUMN, MultiTaskDataCollator
from .distillation import FrozenTeacher, head_distillation_loss, similarity_distillation_loss
from .frozen_layers import forward_above
from .label_statistics import fit_to_training_labels
from .metrics import build_compute_metrics, stsb_spearman
from .parameter_groups import build_parameter_groups
from .plots import TrainingPlotsCallback
from .processes import check_one_job, process_records
from .record import TrainingRecordCallback
from .run_clock import RunClock, whole_run_metrics
from .sampling import MultiTaskSampler
from .streaming import StreamStateCallback, build_task_streams, is_task_stream, load_stream_state
from .tokenization import concatenate_task_datasets
from .trainer_calibration import CalibrationMixin
from .trainer_distillation import DistillationSetupMixin
from .training_args import MultiTaskTrainingArguments


logger = logging.get_logger(__name__)


class MultiTaskTrainer(CalibrationMixin, DistillationSetupMixin, Trainer):
    """`Trainer` for [`MultiTaskSTModel`].

    Differences from `Trainer`: `train_dataset`/`eval_dataset` may be `{task: tokenised dataset}`; the training
    stream mixes tasks as `args.sampling_strategy` says; the loss is the model's weighted multi-task loss and each
    task's loss is logged (`<task>_loss`, `eval_<task>_loss`); the optimizer has one group per backbone layer,
    pooling/projection and head (see `build_parameter_groups`); freezing and progressive unfreezing follow
    `args.freeze` / `args.unfreeze_schedule`; evaluation reports `eval_<task>_accuracy`, `eval_<task>_f1`,
    `eval_mean_accuracy`, `eval_mean_f1` and, given `stsb_dataset`, `eval_stsb_spearman`; when training ends, the
    loss and metric curves are saved as PNGs in `output_dir` (`args.save_plots`, see `training/plots.py`).

    The trainer writes its own record (`training_summary.json`, see `training/record.py`) into `output_dir` and every
    folder `save_model` writes the trained model to: at the end of training, then with the metrics of each later
    `evaluate()` and `predict()`; predicting a labelled test split also draws one confusion matrix per head. Pass
    `base_model` (the encoder's Hub id) and `dataset_records` (per task, [`dataset_record`]) for the card to credit.

    After training, with `args.calibrate` (the default) and an `eval_dataset`, `calibrate()` fits one temperature per
    classification head on it and stores it in the model's config (see `training/calibration.py`); the record holds
    each head's ECE and NLL before and after, on the validation and (after `predict`) the test split.

    Example:
        >>> trainer = MultiTaskTrainer(
        ...     model=model, args=MultiTaskTrainingArguments("out", layer_decay=0.9),
        ...     train_dataset={"topic": topic_train, "sentiment": sentiment_train},
        ...     eval_dataset={"topic": topic_val, "sentiment": sentiment_val},
        ...     processing_class=tokenizer, stsb_dataset=stsb["validation"],
        ... )
        >>> trainer.train()
        >>> trainer.save_model()  # the model, the tokenizer and training_summary.json
        >>> trainer.evaluate(); trainer.predict({"topic": topic_test, "sentiment": sentiment_test})
    """

    def __init__(
        self,
        model: MultiTaskSTModel,
        args: MultiTaskTrainingArguments,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        data_collator=None,
        compute_metrics=None,
        callbacks=None,
        stsb_dataset: datasets.Dataset | None = None,
        base_model: str | None = None,
        dataset_records: dict[str, dict] | None = None,
        **kwargs,
    ):
        if not isinstance(args, MultiTaskTrainingArguments):
            raise TypeError(f"`args` must be MultiTaskTrainingArguments, got {type(args).__name__}.")
        check_one_job(args.world_size, args.use_cpu)  # never N separate runs into one folder
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                "MultiTaskTrainer computes the model's own weighted multi-task loss; `compute_loss_func` is not "
                "supported (per-task loss options: `config.task_loss_options`)."
            )
        if getattr(args, "train_sampling_strategy", "random") not in ("random", "group_by_length"):
            raise ValueError(
                f"`train_sampling_strategy={args.train_sampling_strategy!r}` is not supported by MultiTaskTrainer; "
                "use 'random' (tasks mixed as `sampling_strategy` says) or 'group_by_length'."
            )
        task_names = model.config.task_names
        if args.label_smoothing_factor:  # Trainer's flag: every classification task without its own smoothing
            options = {
                task: {"label_smoothing": args.label_smoothing_factor, **model.config.task_loss_options.get(task, {})}
                if kind == SINGLE_LABEL
                else model.config.task_loss_options.get(task, {})
                for task, kind in model.config.task_kinds.items()
            }
            model.config.task_loss_options = normalize_task_loss_options(
                {task: values for task, values in options.items() if values},
                model.config.tasks,
                model.config.task_kinds,
            )
        self.task_sizes = None
        self.task_streams = None  # streamed training data (`training/streaming.py`)
        if train_dataset is not None and is_task_stream(train_dataset):
            self.task_streams = train_dataset = build_task_streams(train_dataset, model, args)
            # A resumed run continues the streams from their saved state: Trainer's own skipping would re-read them.
            args.ignore_data_skip = True
            callbacks = [StreamStateCallback(self.task_streams, args.process_index), *(callbacks or [])]
        elif train_dataset is not None:
            train_dataset, self.task_sizes = concatenate_task_datasets(train_dataset, task_names, model.config)
            fit_to_training_labels(model, train_dataset)
        if eval_dataset is not None:
            eval_dataset, _ = concatenate_task_datasets(eval_dataset, task_names, model.config)
        if args.task_loss_weights:
            merged = {**model.config.task_loss_weights, **args.task_loss_weights}
            model.config.task_loss_weights = normalize_task_loss_weights(merged, model.config.tasks)
        if hasattr(processing_class, "get_vocab"):  # saved with the model: encode/predict warn on another tokenizer
            model.config.tokenizer_fingerprint = tokenizer_fingerprint(processing_class)
        if data_collator is None:
            if processing_class is None:
                raise ValueError("Pass `processing_class` (the tokenizer) or a `data_collator`.")
            slices = model.config.label_slices()
            all_ids = all(kind == SINGLE_LABEL for kind in model.config.task_kinds.values())
            data_collator = MultiTaskDataCollator(
                processing_class,
                num_tasks=len(task_names),
                pad_to_multiple_of=8 if (args.bf16 or args.fp16) else None,
                label_widths=None if all_ids else [slices[task].stop - slices[task].start for task in task_names],
            )
        # Parts the user froze on the model before handing it over stay frozen, as do those in `args.freeze`.
        frozen_by_user = [
            part
            for part, named in model.parameter_parts().items()
            if not any(parameter.requires_grad for _, parameter in named)
        ]
        self.unfreezing = UnfreezingCallback(
            list(model.parameter_parts()),
            frozen=sorted(set(frozen_by_user) | set(model.resolve_parts(*args.freeze) if args.freeze else [])),
            schedule=args.unfreeze_schedule,
            every=args.unfreeze_every,
            unit=args.unfreeze_unit,
            layers_per_stage=args.unfreeze_layers_per_stage,
        )
        if stsb_dataset is not None and args.stsb_eval_pairs and len(stsb_dataset) > args.stsb_eval_pairs:
            stsb_dataset = stsb_dataset.shuffle(seed=args.seed).select(range(args.stsb_eval_pairs))
        self.stsb_dataset = stsb_dataset if args.stsb_eval_pairs else None
        self.record = TrainingRecordCallback(self, base_model=base_model, datasets=dataset_records)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator,
            compute_metrics=compute_metrics or build_compute_metrics(task_names, model.config),
            callbacks=[
                self.unfreezing,
                RunClock(),
                self.record,
                *([TrainingPlotsCallback()] if args.save_plots else []),
                *(callbacks or []),
            ],
            **kwargs,
        )
        if self.args.fsdp and not self.is_fsdp_enabled:
            # accelerate shards with FSDP only on GPUs and other accelerators; elsewhere it keeps the plugin out and
            # runs plain DDP (or one process), without a word: the run would not be the one asked for.
            raise RuntimeError(
                f"`fsdp` is set but accelerate runs this job as {self.accelerator.distributed_type.value} on {self.args.device.type}: it shards "
                "with FSDP on GPUs (or other accelerators) only. Stopped before training; drop `--fsdp` to train "
                "with DDP here, or run on GPUs."
            )
        self._task_loss_totals = {True: {}, False: {}}  # training? -> task -> [sum of loss x examples, examples]
        self.distilling = False  # set by `train()`
        self.embedding_distillation_weight = 0.0  # set by `train()`: the weight the run applies (0: none)
        self.processes: list[dict] = []  # set by `train()`: the job's processes and devices, for the record
        self.held_tasks: list[str] = []  # set by `train()`: heads without training data, held by distillation
        self.teacher: FrozenTeacher | None = None  # set by `train()`: distillation per batch (streams, FSDP)
        self.cached_depth = 0  # set by `train()`: the bottom layers whose output the batches carry (0: none)

    # ------------------------------------------------------------------ data

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        # The collator turns `task_id` + `label` into the `labels` matrix (and passes the teacher embeddings on):
        # keep them when unused columns are dropped.
        for column in ("task_id", "label", TEACHER_COLUMN, TEACHER_LOGITS_COLUMN, FROZEN_STATES_COLUMN):
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def get_train_dataloader(self):
        if self.task_streams is None:
            return super().get_train_dataloader()
        # Each process reads its own share of the streams (split by `build_task_streams`): accelerate's `prepare` would
        # split them again, or have process 0 read for all. One process reads (the state is kept here, see
        # `TaskStreams`); the batches are moved to the device by `_prepare_inputs`.
        return torch.utils.data.DataLoader(
            self.task_streams,
            batch_size=self._train_batch_size,
            collate_fn=self.data_collator,
            pin_memory=self.args.dataloader_pin_memory,
            # Its own generator: a DataLoader draws a seed as it starts, which from the global one would shift the
            # dropout of a resumed run (Trainer restores the global RNG state before the DataLoader starts).
            generator=torch.Generator().manual_seed(self.args.seed),
        )

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.task_sizes is None or len(train_dataset) != sum(self.task_sizes):
            return super()._get_train_sampler(train_dataset)
        group_by_length = getattr(self.args, "train_sampling_strategy", None) == "group_by_length" or getattr(
            self.args, "group_by_length", False
        )
        lengths = [len(ids) for ids in train_dataset["input_ids"]] if group_by_length else None
        return MultiTaskSampler(
            self.task_sizes,
            batch_size=self.args.train_batch_size,
            strategy=self.args.sampling_strategy,
            temperature=self.args.sampling_temperature,
            mixed_batches=self.args.mixed_task_batches,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            lengths=lengths,
        )

    # ------------------------------------------------------------------ optimisation

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = build_parameter_groups(
                self.accelerator.unwrap_model(opt_model),
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                layer_decay=self.args.layer_decay,
                projection_lr_multiplier=self.args.projection_lr_multiplier,
                head_lr_multiplier=self.args.head_lr_multiplier,
            )
            optimizer_cls, optimizer_kwargs = getattr(self, "optimizer_cls_and_kwargs", None) or (
                self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        if resume_from_checkpoint:
            checkpoint = checked_checkpoint(
                resume_from_checkpoint, self.args.output_dir, self.accelerator.unwrap_model(self.model).config
            )
            if self.task_streams is not None and checkpoint:
                load_stream_state(self.task_streams, checkpoint, self.args.process_index, self.args.world_size)
        self.unfreezing.check_something_trains()
        self.processes = process_records(self.args.device)  # every process takes part (a gather)
        if self.args.world_size > 1 and self.unfreezing.freezes_anything:
            # DDP only synchronises parameters that require grad when it wraps the model; a part unfrozen later
            # would silently train apart on each process. Wrap with everything trainable; the callback re-freezes
            # right after (`on_train_begin`), and DDP's unused-parameter search copes with the frozen ones.
            self.model.unfreeze("all")
        # The teacher pass (when distilling from a precomputed column) runs here, outside Trainer's `train_runtime`: its
        # time is recorded next to it. CPU seconds too (all of this process's threads): on a shared machine they say
        # more about the work done than the wall clock.
        wall, cpu = time.perf_counter(), time.process_time()
        self._set_up_distillation()
        session_times = {"distillation_setup_runtime": round(time.perf_counter() - wall, 4),
                         "distillation_setup_cpu_s": round(time.process_time() - cpu, 4)}  # fmt: skip
        cpu = time.process_time()
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        session_times["train_cpu_s"] = round(time.process_time() - cpu, 4)
        if self.args.tune_thresholds:
            self.tune_thresholds()
        # After a resume, speed over the whole run (Trainer's own divides the whole run's samples by this session).
        clock = next(callback for callback in self.callback_handler.callbacks if isinstance(callback, RunClock))
        total_batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        metrics = whole_run_metrics(output.metrics, clock.seconds_before, self.state.global_step, total_batch_size)
        metrics = {**metrics, **session_times}  # this session's, this process's
        self.record.train_ended(metrics)
        if self.args.calibrate and self.eval_dataset is not None:
            self.calibrate()
        return output._replace(metrics=metrics)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and self.args.frozen_parts_eval_mode:
            # Trainer's `training_step` has just put the whole model in train mode; per step, so that a part the
            # unfreezing schedule has just unfrozen trains with its dropout again.
            for module in frozen_modules(self.accelerator.unwrap_model(model)):
                module.eval()
        teacher_embeddings = inputs.pop("teacher_embeddings", None)
        teacher_logits = inputs.pop("teacher_logits", None)
        if self.teacher is not None and model.training and (self.distilling or self.held_tasks):
            # streamed data or FSDP: no columns, the frozen copy's forward per batch gives what they would hold
            teacher_embeddings, teacher_logits = self.teacher.outputs(inputs)
        if model.training and self.cached_depth and "frozen_hidden_states" in inputs:
            outputs = forward_above(self.accelerator.unwrap_model(model), inputs, self.cached_depth, return_dict=True)
        else:
            inputs.pop("frozen_hidden_states", None)  # an evaluation runs the whole model
            outputs = model(**inputs, return_dict=True)
        labels = inputs.get("labels")
        losses = dict(outputs.task_losses or {})
        loss = outputs.loss
        # Training only: an evaluation of data that carries teacher embeddings reports the task losses alone.
        if teacher_embeddings is not None and model.training and self.distilling:
            distillation = similarity_distillation_loss(outputs.embeddings, teacher_embeddings)
            losses["embedding_distillation"] = distillation
            weighted = self.embedding_distillation_weight * distillation
            loss = weighted if loss is None else loss + weighted
        if teacher_logits is not None and model.training and self.held_tasks:
            config = self.accelerator.unwrap_model(model).config
            widths = [config.num_labels_of(task) for task in self.held_tasks]
            held = [
                head_distillation_loss(
                    outputs.logits[task],
                    teacher,
                    kind=config.task_kinds[task],
                    target_std=config.task_target_scaling.get(task, {}).get("std", 1.0),  # regression heads read it
                )
                for task, teacher in zip(self.held_tasks, teacher_logits.split(widths, dim=-1), strict=True)
            ]
            losses["head_distillation"] = torch.stack(held).mean()
            weighted = self.args.head_distillation_weight * losses["head_distillation"]
            loss = weighted if loss is None else loss + weighted
        if model.training:
            self._step_losses = losses  # device tensors; read only when the step's loss is not finite
        if labels is not None:
            totals = self._task_loss_totals[model.training]
            config = self.accelerator.unwrap_model(self.model).config
            slices = config.label_slices()
            for name, part_loss in losses.items():
                # Weight each batch by its labelled examples, so the logged value is the mean over examples.
                if name in config.tasks:
                    count = labelled_rows(labels[:, slices[name]], config.task_kinds[name]).sum()
                else:
                    count = labels.shape[0]  # a Python int: a tensor made here would be a host-device sync
                total = totals.setdefault(name, [0.0, 0])
                total[0] = total[0] + part_loss.detach() * count
                total[1] = total[1] + count
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Stop at the first non-finite loss, before the optimizer applies its gradients (Trainer would log the
        # average of earlier losses instead and train on). Trainer itself reads this value on the host right after
        # (`logging_nan_inf_filter`), so checking it here waits for nothing more.
        if not torch.isfinite(loss):
            raise FloatingPointError(self._non_finite_loss_message(loss))
        return loss

    def _non_finite_loss_message(self, loss: torch.Tensor) -> str:
        losses = {name: value.item() for name, value in getattr(self, "_step_losses", {}).items()}
        culprits = [name for name, value in losses.items() if not np.isfinite(value)]
        where = (
            f"the loss of {', '.join(repr(name) for name in culprits)} is "
            f"{', '.join(str(losses[name]) for name in culprits)}"
            if culprits
            else f"the weighted sum of the finite task losses {losses} overflowed"
        )
        return (
            f"The training loss is {loss.item()} at step {self.state.global_step + 1} (epoch {self.state.epoch or 0:.2f}): "
            f"{where}. Training stopped before applying this step; nothing of it was saved. Task loss weights: "
            f"{self.accelerator.unwrap_model(self.model).config.task_loss_weights}. Lower the learning rate, check the "
            "data, or train in fp32/bf16 instead of fp16."
        )

    def _pop_task_losses(self, training: bool, prefix: str = "") -> dict[str, float]:
        totals, self._task_loss_totals[training] = self._task_loss_totals[training], {}
        losses = {}
        for task, (loss_sum, count) in totals.items():
            pair = torch.stack([torch.as_tensor(loss_sum, dtype=torch.float32), torch.as_tensor(count).float()])
            pair = self.accelerator.reduce(pair.to(self.args.device), reduction="sum")
            if pair[1] > 0:
                losses[f"{prefix}{task}_loss"] = (pair[0] / pair[1]).item()
        return losses

    # ------------------------------------------------------------------ logging and evaluation

    def log(self, logs: dict[str, float], *args, **kwargs):
        if "loss" in logs and not any(key.startswith("eval_") for key in logs):
            logs.update(self._pop_task_losses(training=True))
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """`Trainer.evaluate`, also taking `{task: dataset}`: evaluated together, with per-task metrics."""
        if isinstance(eval_dataset, dict):
            eval_dataset, _ = concatenate_task_datasets(eval_dataset, self.model.config.task_names, self.model.config)
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        """`Trainer.predict`, also taking `{task: dataset}`; `predictions[0]` holds each head's logits."""
        if isinstance(test_dataset, dict):
            test_dataset, _ = concatenate_task_datasets(test_dataset, self.model.config.task_names, self.model.config)
        output = super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        self.record.predicted(output, metric_key_prefix)
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """`Trainer.save_model`; after training, the record goes with the model (see the class docstring)."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if output_dir is not None and not _internal_call:
            self.record.saved_to(output_dir)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._task_loss_totals[False] = {}
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        output.metrics.update(self._pop_task_losses(training=False, prefix=f"{metric_key_prefix}_"))
        if self.stsb_dataset is not None and self.processing_class is not None:
            model = self.accelerator.unwrap_model(self.model)
            batch_size = self.args.per_device_eval_batch_size
            output.metrics[f"{metric_key_prefix}_stsb_spearman"] = stsb_spearman(
                model, self.processing_class, self.stsb_dataset, batch_size=batch_size
            )
        return output
