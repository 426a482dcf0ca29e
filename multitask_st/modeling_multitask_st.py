"""The multi-task sentence transformer: encoder -> pooling -> projection -> one classification head per task.

This file is part of the Hub payload: `save_pretrained` copies it next to the weights so that
`AutoModel.from_pretrained(repo, trust_remote_code=True)` works without our package. It therefore imports only
torch, transformers and the payload files next to it. The inference engine (`encode`/`predict` over any iterable,
text checks, label rows) lives in `inference_multitask_st.py`; this file holds the torch step it runs.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_multitask_st import (
    MultiTaskSTConfig,
    normalize_task_calibration,
    normalize_task_kinds,
    normalize_task_loss_weights,
    normalize_task_target_scaling,
    normalize_tasks,
    sentence_transformers_max_seq_length,
)
from .inference_multitask_st import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    EMBEDDING_CONTRASTIVE,
    MODEL_INPUTS,
    MULTI_LABEL,
    PAIR_KINDS,
    REGRESSION,
    SINGLE_LABEL,
    check_input_tasks,
    check_max_length,
    check_out,
    check_sentences,
    check_tasks,
    check_tokenizer,
    custom_pipelines_entry,
    default_max_length,
    fill_rows,
    finish_embeddings,
    has_content,  # noqa: F401  (the one text rule; training imports it from here)
    label_rows,
    length_hint,
    peek_pairs,
    progress_bar,
    resolve_calibration,
    run_chunks,
    run_in_length_order,
    sentence_transformers_files,
    task_temperature,
    tokenize,
    tokenizer_fingerprint,  # noqa: F401  (the trainer imports it from here)
)
from .layers_multitask_st import (  # noqa: F401  (IGNORE_INDEX: training imports it from here)
    CLASS_ID_KINDS,
    IGNORE_INDEX,
    TASK_HEADS,
    TASK_LOSSES,
    TASK_OUTPUTS,
    TASK_SCORES,
    MultiTaskSTPooler,
    TaskInputs,
    append_output_rows,
    backbone_init_kwargs,
    build_projection,
    check_inference_dtype,
    eval_twin,
    inference_precision,
    init_weights,
    labelled_rows,
)
from .parts_multitask_st import (  # noqa: F401  (parse_part, non_finite_parameters: training/sharing import them)
    backbone_layers,
    check_loaded_weights,
    non_finite_parameters,
    parameter_parts,
    parse_part,
    resolve_parts,
    set_trainable,
)


logger = logging.get_logger(__name__)


@dataclass
class MultiTaskSTOutput(ModelOutput):
    """Output of [`MultiTaskSTModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            Sum over tasks of `task_loss_weights[task] * task_losses[task]`.
        logits (`dict[str, torch.FloatTensor]`): per task, `(batch_size, num_labels_of_task)` scores.
        task_losses (`dict[str, torch.FloatTensor]`, returned when `labels` is given):
            Per task, the mean cross-entropy over the examples labelled for it (exactly 0 when none is).
        embeddings (`torch.FloatTensor` of shape `(batch_size, embedding_dim)`):
            The sentence embeddings (L2-normalised when `config.normalize_embeddings`).
        hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`): the backbone's.
        attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`): the backbone's.
    """

    loss: torch.FloatTensor | None = None
    logits: dict[str, torch.FloatTensor] | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    embeddings: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class MultiTaskSTPreTrainedModel(PreTrainedModel):
    config_class = MultiTaskSTConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    # The backbone does the attention; these let `from_pretrained(attn_implementation=...)` pass it through.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Our loss is a weighted sum of per-task batch means: Trainer must not pass `num_items_in_batch`, skip the
    # division by gradient-accumulation steps, or rescale it by the number of processes.
    accepts_loss_kwargs = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the weight file named when it cannot be read (a truncated download)
        and a warning when the loaded weights hold NaN or inf."""
        wants_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except Exception as error:
            if type(error).__name__ != "SafetensorError":  # safetensors' own error names neither file nor folder
                raise
            raise OSError(
                f"Cannot read the weights in {str(pretrained_model_name_or_path)!r} (*.safetensors): {error}. The "
                "file is truncated or corrupt: download or save the model again."
            ) from error
        check_loaded_weights(model, info, pretrained_model_name_or_path)
        return (model, info) if wants_info else model

    def _init_weights(self, module: nn.Module):
        init_weights(module, std=getattr(self.config.backbone_config, "initializer_range", 0.02))


class MultiTaskSTModel(MultiTaskSTPreTrainedModel):
    r"""A shared encoder with pooling and a projection to a sentence embedding, and one classification head per task.

    `forward` takes token ids (tokenise in the collator, never here) and optional `labels` of shape
    `(batch_size, num_tasks)` holding `-100` wherever an example has no label for a task.

    Example:
        >>> from transformers import AutoTokenizer
        >>> model = MultiTaskSTModel.from_backbone(
        ...     "sentence-transformers/all-MiniLM-L6-v2",
        ...     tasks={"topic": ["world", "sports", "business", "sci/tech"], "sentiment": ["negative", "positive"]},
        ... )
        >>> tokenizer = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        >>> model.encode(["A sentence.", "Another one."], tokenizer).shape
        (2, 384)
        >>> model.predict("Stocks fell sharply today.", tokenizer)["topic"]["label"]  # heads are untrained here
    """

    def __init__(self, config: MultiTaskSTConfig, backbone: PreTrainedModel | None = None):
        r"""
        backbone (`PreTrainedModel`, *optional*):
            An encoder to adopt as it is, weights included (what `from_backbone` passes), instead of building a
            randomly initialised one from `config.backbone_config`; `config.backbone_config` becomes its config.
        """
        super().__init__(config)
        if backbone is None:
            backbone = AutoModel.from_config(config.backbone_config, **backbone_init_kwargs(config.backbone_config))
        else:
            if not isinstance(backbone, PreTrainedModel):
                raise TypeError(
                    f"`backbone` must be a PreTrainedModel such as BertModel, got {type(backbone).__name__}."
                )
            if backbone.config.model_type != config.backbone_config.model_type:
                raise ValueError(
                    f"`backbone` is a {backbone.config.model_type!r} model but `config.backbone_config` describes a "
                    f"{config.backbone_config.model_type!r} one; pass the config built from `backbone.config`."
                )
            # One config object for both, as VisionTextDualEncoderModel does, so the two never drift apart.
            config.backbone_config = backbone.config
            # `post_init` below must leave its weights alone: transformers skips modules marked initialised.
            for module in backbone.modules():
                module._is_hf_initialized = True
        self.backbone = backbone
        self.pooling = MultiTaskSTPooler(config)
        self.projection = build_projection(config)
        # Embedding tasks have no head (`TASK_HEADS` holds None): the embedding is their output.
        self.heads = nn.ModuleDict(
            {
                task: TASK_HEADS[config.task_kinds[task]](config, task)
                for task in config.tasks
                if TASK_HEADS[config.task_kinds[task]] is not None
            }
        )
        self.post_init()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_backbone(
        cls,
        pretrained_model_name_or_path: str,
        tasks: dict | None = None,
        *,
        attn_implementation: str | None = None,
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        **config_kwargs,
    ) -> MultiTaskSTModel:
        """Start from a pretrained encoder: its weights and config, with fresh pooling, projection and heads.

        `config_kwargs` are [`MultiTaskSTConfig`] fields (`pooling_mode`, `projection`, `embedding_dim`, ...). When the
        checkpoint is a sentence-transformers one, its `max_seq_length` becomes the default truncation length.
        Weights load in float32 (the master copy mixed-precision training wants) whatever the checkpoint stores;
        pass `dtype` for another.
        """
        hub_kwargs = {
            "revision": revision,
            "token": token,
            "cache_dir": cache_dir,
            "local_files_only": local_files_only,
        }
        backbone_config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        pretrained = AutoModel.from_pretrained(
            pretrained_model_name_or_path,
            config=backbone_config,
            attn_implementation=attn_implementation,
            # transformers 5 would keep an fp16 checkpoint in fp16, under fp32 pooling/projection/heads
            dtype=torch.float32,
            **backbone_init_kwargs(backbone_config),
            **hub_kwargs,
        )
        if config_kwargs.get("max_seq_length") is None:
            config_kwargs["max_seq_length"] = sentence_transformers_max_seq_length(
                pretrained_model_name_or_path, hub_kwargs
            )
        pretrained.config._name_or_path = str(pretrained_model_name_or_path)
        config = cls.config_class(backbone_config=pretrained.config, tasks=tasks, **config_kwargs)
        model = cls(config, backbone=pretrained)  # adopted as loaded: no random backbone built and overwritten
        return model if dtype is None else model.to(dtype)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.backbone.set_input_embeddings(value)

    # ------------------------------------------------------------------ forward

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sentence embeddings `(batch, embedding_dim)`, normalised as the config says: what `encode` returns."""
        return self.finish_embedding(self.projection(self.pool(input_ids, attention_mask, token_type_ids)[0]))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        tasks: Iterable[str] | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        pair_input_ids: torch.Tensor | None = None,
        pair_attention_mask: torch.Tensor | None = None,
        pair_token_type_ids: torch.Tensor | None = None,
        pair_rows: torch.Tensor | None = None,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        negative_token_type_ids: torch.Tensor | None = None,
        negative_rows: torch.Tensor | None = None,
    ) -> MultiTaskSTOutput | tuple:
        r"""
        labels (`torch.Tensor` of shape `(batch_size, config.num_label_columns)`, *optional*):
            Task after task (`config.label_slices()`): a classification task's label id, a multi-label task's 0/1 per
            label, a regression task's targets per output. NaN (or -100 in an id column) where an example has none.
            When every task is a classification task, this is `(batch_size, num_tasks)` and may be an integer tensor
            with -100 for "no label" (the form before other kinds existed).
        tasks (`list[str]`, *optional*):
            Which tasks to run; defaults to all.
        pair_input_ids (`torch.LongTensor` of shape `(num_pairs, pair_length)`, *optional*):
            The second texts of the rows `pair_rows` (default: every row), tokenised on their own (two sequences,
            not one concatenation): each text is embedded once, as `encode` does. With `pair_attention_mask` and
            `pair_token_type_ids`. Pair and embedding tasks need them; their label column holds a class id
            (`pair_classification`), a score (`pair_regression`, `embedding`) or 0 (`embedding_contrastive`).
        negative_input_ids (`torch.LongTensor` of shape `(num_negatives, negative_length)`, *optional*):
            Hard negatives of the rows `negative_rows` (default: every row), for `embedding_contrastive` tasks.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        task_names = check_tasks(tasks, self.config.task_names)
        pooled, backbone_output = self.pool(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions
        )
        projected = self.projection(pooled)  # (batch, embedding_dim): what the heads read
        inputs = TaskInputs(projected)
        inputs.pair, inputs.has_pair = self._embed_rows(
            projected, pair_rows, pair_input_ids, pair_attention_mask, pair_token_type_ids
        )
        inputs.negative, inputs.has_negative = self._embed_rows(
            projected, negative_rows, negative_input_ids, negative_attention_mask, negative_token_type_ids
        )
        kinds = self.config.task_kinds
        logits = {task: TASK_OUTPUTS[kinds[task]](task, self.heads[task] if task in self.heads else None, inputs)
                  for task in task_names}  # fmt: skip
        loss, task_losses = (None, None) if labels is None else self._multitask_loss(logits, labels, inputs)
        output = MultiTaskSTOutput(
            loss=loss,
            logits=logits,
            task_losses=task_losses,
            embeddings=self.finish_embedding(projected),
            hidden_states=backbone_output.hidden_states,
            attentions=backbone_output.attentions,
        )
        return output if return_dict else output.to_tuple()

    def pool(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ):
        """The backbone's pooled output `(batch, backbone_hidden_size)`, before the projection, and the backbone's own
        output (what the ONNX export and distillation read)."""
        if input_ids is None:
            raise ValueError("`input_ids` is required: tokenise the texts first (see `encode`/`predict`).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        backbone_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # DistilBERT-style backbones take none
            backbone_inputs["token_type_ids"] = token_type_ids
        if output_hidden_states:
            backbone_inputs["output_hidden_states"] = True
        if output_attentions:
            backbone_inputs["output_attentions"] = True
        backbone_output = self.backbone(**backbone_inputs, return_dict=True)
        return self.pooling(backbone_output.last_hidden_state, attention_mask), backbone_output

    def _embed_rows(self, projected, rows, input_ids, attention_mask, token_type_ids):
        """The projected embeddings of the second texts (or negatives) of the batch rows `rows` (default: all), placed
        at those rows `(batch, embedding_dim)` (zeros elsewhere), and the mask of those rows; `(None, None)` without
        texts."""
        if input_ids is None:
            return None, None
        batch_size = projected.shape[0]
        rows = torch.arange(input_ids.shape[0], device=projected.device) if rows is None else rows.long()
        if rows.shape[0] != input_ids.shape[0] or (rows.numel() and (rows.min() < 0 or rows.max() >= batch_size)):
            raise ValueError(
                f"`pair_rows`/`negative_rows` must give one row in 0..{batch_size - 1} per second text "
                f"({input_ids.shape[0]}), got {rows.tolist()}."
            )
        embedded = self.projection(self.pool(input_ids, attention_mask, token_type_ids)[0])
        placed = projected.new_zeros(projected.shape).index_copy(0, rows, embedded.to(projected.dtype))
        present = torch.zeros(batch_size, dtype=torch.bool, device=projected.device).index_fill(0, rows, True)
        return placed, present

    def finish_embedding(self, projected: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """The sentence embedding from the projection's output: L2-normalised when `normalize` (default: the
        config's `normalize_embeddings`)."""
        normalize = self.config.normalize_embeddings if normalize is None else normalize
        return F.normalize(projected, p=2, dim=-1) if normalize else projected

    def _multitask_loss(
        self, logits: dict[str, torch.Tensor], labels: torch.Tensor, inputs: TaskInputs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config, task_names = self.config, self.config.task_names
        batch_size = next(iter(logits.values())).shape[0]
        all_ids = all(kind in CLASS_ID_KINDS + (EMBEDDING_CONTRASTIVE,) for kind in config.task_kinds.values())
        allowed = (torch.int64, torch.int32, torch.float32) if all_ids else (torch.float32,)
        if labels.dtype not in allowed or tuple(labels.shape) != (batch_size, config.num_label_columns):
            form = "an integer or float32 tensor" if all_ids else "a float32 tensor"
            raise ValueError(
                f"`labels` must be {form} of shape (batch_size, label columns) = ({batch_size}, "
                f"{config.num_label_columns}) with the columns of {task_names} (`config.label_slices()`), got "
                f"{labels.dtype} of shape {tuple(labels.shape)}."
            )
        slices = config.label_slices()
        # One device sync per step, instead of an opaque CUDA assert inside cross_entropy or a NaN loss later.
        for task in task_names:
            kind, columns = config.task_kinds[task], labels[:, slices[task]]
            labelled = labelled_rows(columns, kind)
            if kind in CLASS_ID_KINDS:
                ids = columns[:, 0]
                invalid = labelled & ((ids < 0) | (ids >= config.num_labels_of(task)))
                if ids.is_floating_point():
                    invalid = invalid | (labelled & (ids != ids.round()))
                expected = f"a label id in 0..{config.num_labels_of(task) - 1}, -100 or NaN"
            elif kind == MULTI_LABEL:
                present = columns == columns
                invalid = (present.any(-1) & ~labelled) | (labelled & ((columns < 0) | (columns > 1)).any(-1))
                expected = "0 or 1 per label (a soft target in [0, 1]), or NaN in every column"
            elif kind == EMBEDDING_CONTRASTIVE:
                invalid = labelled & (columns[:, 0] != 0)
                expected = "0 (the row is an anchor and its positive), -100 or NaN"
            else:
                invalid = columns.isinf().any(-1)
                expected = "finite targets, or NaN where there is none"
            if invalid.any() and kind in CLASS_ID_KINDS:
                row = invalid.nonzero()[0].item()
                raise ValueError(
                    f"Label {columns[row, 0].item()} of task {task!r} (batch row {row}) is not in "
                    f"0..{config.num_labels_of(task) - 1} nor {IGNORE_INDEX} (or NaN in a float tensor)."
                )
            if invalid.any():
                row = invalid.nonzero()[0].item()
                raise ValueError(
                    f"Labels {columns[row].tolist()} of task {task!r} ({kind}, batch row {row}) are not valid: "
                    f"expected {expected}."
                )
        _, has_pair = inputs.pairs()
        for task in logits:
            if config.task_kinds[task] in PAIR_KINDS:
                unpaired = labelled_rows(labels[:, slices[task]], config.task_kinds[task]) & ~has_pair
                if unpaired.any():
                    raise ValueError(
                        f"Batch row {unpaired.nonzero()[0].item()} is labelled for task {task!r} "
                        f"({config.task_kinds[task]}), which takes pairs of texts, but has no second text "
                        "(`pair_input_ids` / `pair_rows`)."
                    )
        task_losses, loss = {}, None
        for task, task_logits in logits.items():
            kind = config.task_kinds[task]
            task_loss = TASK_LOSSES[kind](task_logits, labels[:, slices[task]], config, task)
            task_losses[task] = task_loss
            weighted = self.config.task_loss_weights[task] * task_loss
            loss = weighted if loss is None else loss + weighted
        return loss, task_losses

    # ------------------------------------------------------------------ freezing

    def backbone_layers(self) -> list[nn.Module]:
        """The backbone's transformer layers, bottom to top."""
        return backbone_layers(self.backbone, self.config.backbone_config.num_hidden_layers)

    def parameter_parts(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter, grouped into the parts that freezing and optimizer groups address, bottom to top:
        `backbone.embeddings`, `backbone.layer.<i>`, `backbone.other` (if any), `pooling` (attention pooling only),
        `projection` (if any), `head:<task>`. Each parameter is in exactly one."""
        return parameter_parts(self, self.backbone_layers())

    def freeze(self, *targets: str) -> MultiTaskSTModel:
        """Stop training the named parts: `all`, `backbone`, `backbone.embeddings`, `backbone.layer.<i>`, `pooling`,
        `projection`, `heads`, `head:<task>`. Returns the model, so calls chain."""
        set_trainable(self.parameter_parts(), targets, False)
        return self

    def unfreeze(self, *targets: str) -> MultiTaskSTModel:
        """Train the named parts again (same names as `freeze`)."""
        set_trainable(self.parameter_parts(), targets, True)
        return self

    def resolve_parts(self, *targets: str) -> list[str]:
        """The part names (see `parameter_parts`) that freeze targets select, in model order."""
        return resolve_parts(list(self.parameter_parts()), targets)

    # ------------------------------------------------------------------ tasks after training

    def add_task(
        self, name: str, labels: Sequence[str] | Mapping, kind: str = SINGLE_LABEL, loss_weight: float = 1.0
    ) -> MultiTaskSTModel:
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
        try:  # a head is built from the config's entry for its task
            head = TASK_HEADS[kinds[name]](self.config, name)
        except Exception:
            self.config.tasks, self.config.task_kinds, self.config.task_loss_weights = before
            raise
        head.apply(self._init_weights)
        # In the model's mode: a new module is in train mode, and its dropout would run inside an eval model's predict.
        self.heads[name] = head.to(device=self.device, dtype=self.dtype).train(self.training)
        self._record_change("add_task", name, labels=list(tasks[name]), kind=kinds[name])
        return self

    def remove_task(self, name: str) -> MultiTaskSTModel:
        """Remove a task's head (and its loss weight and calibration); the other heads are unchanged."""
        self.config.labels_of(name)  # names the task's absence
        if len(self.config.tasks) == 1:
            raise ValueError(f"Cannot remove {name!r}, the model's only task: a model needs at least one head.")
        del self.heads[name]
        for field in (
            "tasks", "task_kinds", "task_loss_weights", "task_loss_options", "task_target_scaling", "task_calibration"
        ):  # fmt: skip
            getattr(self.config, field).pop(name, None)
        self._record_change("remove_task", name)
        return self

    def rename_labels(self, task: str, names: Sequence[str] | Mapping[str, str]) -> MultiTaskSTModel:
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

    def add_labels(self, task: str, names: Sequence[str]) -> MultiTaskSTModel:
        """Give a classification head more labels, after its others: its output layer gains freshly initialised rows
        and keeps the old rows as they are (train it on data with the new labels, the old heads held by
        distillation). The task's fitted temperature is dropped: it no longer describes the head."""
        labels = self.config.labels_of(task)
        if self.config.task_kinds[task] == REGRESSION:
            raise ValueError(f"Task {task!r} is a regression task: its outputs are not labels to add to.")
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

    # ------------------------------------------------------------------ inference: thin doors onto the engine

    def encode(
        self,
        sentences: str | Iterable[str],
        tokenizer,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        out=None,
        dtype: torch.dtype | str | None = None,
    ):
        """Embed sentences: a `(n, embedding_dim)` array (or tensor), or one vector for a single string.

        `sentences` is a string or any iterable of strings (a list, a generator, a `datasets` column, a file's lines),
        read `chunk_size` texts at a time and sorted by token count within a chunk; the result keeps the input order and
        memory beyond it stays bounded by the chunk. `out` is an array `(n, embedding_dim)` to fill (e.g. an
        `np.memmap`), or iterate over [`encode_chunks`]. `normalize_embeddings` defaults to the config's. `dtype`
        (`torch.bfloat16`, `torch.float16`) runs the forward pass under `torch.autocast` in that precision (on CPU, bf16
        uses oneDNN's AVX-512 BF16 / AMX kernels) with the weights left as loaded and float32 results; judge what it
        costs with `multitask_st.export.onnx_check.judge_dtype`. Safe from several threads at once, in either train
        or eval mode (dropout is off and the mode is left alone).

        Example:
            >>> out = np.lib.format.open_memmap("emb.npy", mode="w+", dtype="float32", shape=(n, model.config.embedding_dim))
            >>> model.encode((line.rstrip("\\n") for line in open("corpus.txt")), tokenizer, out=out)
        """
        single, as_numpy = isinstance(sentences, str), convert_to_numpy and not convert_to_tensor
        check_out(out, self.config.embedding_dim, single, as_numpy)
        chunks = self.encode_chunks([sentences] if single else sentences, tokenizer, batch_size, normalize_embeddings,
                                    show_progress_bar, device, max_length, chunk_size, dtype)  # fmt: skip
        embeddings = fill_rows(chunks, length_hint(sentences), self.config.embedding_dim, out)
        if out is not None or as_numpy:
            return embeddings if out is not None else finish_embeddings(embeddings, single, as_numpy)
        embeddings = torch.from_numpy(embeddings).to(self.device)
        return embeddings[0] if single else embeddings if convert_to_tensor else list(embeddings.unbind(0))

    def encode_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize_embeddings: bool | None = None,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        dtype: torch.dtype | str | None = None,
    ) -> Iterator[np.ndarray]:
        """The streaming form of [`encode`]: one float32 `(chunk, embedding_dim)` array per `chunk_size` texts, in order.

        Example:
            >>> for index, embeddings in enumerate(model.encode_chunks(texts, tokenizer, chunk_size=100_000)):
            ...     np.save(f"embeddings-{index:05d}.npy", embeddings)
        """

        def embed_batch(model, inputs):
            return model.finish_embedding(model.projection(model.pool(**inputs)[0]), normalize_embeddings)

        return self._run(sentences, tokenizer, embed_batch, "Encoding", batch_size, show_progress_bar, device,
                         max_length, chunk_size, dtype=dtype)  # fmt: skip

    def predict(
        self,
        sentences: str | Iterable[str],
        tokenizer,
        tasks: str | list[str] | None = None,
        thresholds: float | Mapping | None = None,
        calibrated: bool = True,
        **kwargs,
    ):
        """Run every head (or those in `tasks`) on sentences, from one forward pass per batch.

        Returns, per sentence and task: `{"label": name, "score": probability, "probabilities": {name: p}}` for a
        classification task; `{"labels": [names], "scores": [p], "probabilities": {name: p}}` for a multi-label
        task (the labels whose probability reaches their threshold, most probable first; `[]` when none does);
        `{"values": {output: number}}` for a regression task, in the data's units. A dict for a single string, a list
        of them for any iterable of strings. `thresholds` replaces the multi-label thresholds of the config
        (`config.task_calibration`, 0.5 until tuned) for this call: a number for every label, or per task a number, a
        list (one per label) or `{label: number}`. A classification head's probabilities are calibrated: its logits
        are divided by the temperature fitted on the validation split after training (`config.task_calibration`, see
        `MultiTaskTrainer.calibrate`) before the softmax; `calibrated=False` gives the raw softmax (the label is the
        same either way). `kwargs`: `batch_size`, `show_progress_bar`, `device`, `max_length`, `chunk_size`, `dtype`
        (e.g. `torch.bfloat16`), as in [`encode`].

        Pair and embedding tasks take `(text, text_pair)` pairs instead (one pair, or an iterable of them): each text
        is embedded once, as `encode` embeds it; `{"label", "score", "probabilities"}` for a pair classifier,
        `{"values": {name: number}}` for a pair regression head and, for an embedding task, the cosine similarity of
        the two texts' embeddings. Texts run the single-text tasks, pairs the pair tasks.
        """
        single, _, items = peek_pairs(sentences)
        chunks = self.predict_chunks(items, tokenizer, tasks, thresholds, calibrated, **kwargs)
        predictions = [prediction for chunk in chunks for prediction in chunk]
        return predictions[0] if single else predictions

    def predict_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        tasks: str | list[str] | None = None,
        thresholds: float | Mapping | None = None,
        calibrated: bool = True,
        **kwargs,
    ):
        """The streaming form of [`predict`]: yields the predictions of each `chunk_size` texts, in input order."""
        config = self.config
        _, pairs, sentences = peek_pairs(sentences)
        task_names = check_input_tasks(tasks, config.task_kinds, pairs)
        calibration = resolve_calibration(config.task_calibration, config.tasks, config.task_kinds, thresholds)
        chunks = self.score_chunks(sentences, tokenizer, task_names, calibrated=calibrated, **kwargs)
        return (label_rows(scores, config.tasks, task_names, config.task_kinds, calibration) for scores in chunks)

    def score_chunks(self, sentences, tokenizer, tasks=None, with_embeddings: bool = False, calibrated: bool = True,
                     **kwargs):  # fmt: skip
        """What `predict` formats, per `chunk_size` inputs (texts, or `(text, text_pair)` pairs): `score_batch`'s float32
        rows, in input order (`kwargs` as in `predict`). The pipeline formats the same rows."""
        _, pairs, sentences = peek_pairs(sentences)
        tasks = check_input_tasks(tasks, self.config.task_kinds, pairs)
        self.task_temperatures(tasks, calibrated)  # checks `calibrated` now, not at the first batch
        return self._run(sentences, tokenizer,
                         lambda model, inputs: model.score_batch(inputs, tasks, with_embeddings, calibrated),
                         "Predicting", pairs=pairs, **kwargs)  # fmt: skip

    def score_batch(
        self, inputs: Mapping[str, torch.Tensor], tasks: list[str], with_embeddings: bool = False, calibrated=True
    ):
        """One forward pass over a tokenised batch, dropout off whatever the mode: every label's score of `tasks`
        (probabilities for classification, calibrated unless `calibrated=False`), task after task, then (if asked) the
        embedding: `(batch, columns)`."""
        if self.training:
            return eval_twin(self).score_batch(inputs, tasks, with_embeddings, calibrated)
        temperatures = self.task_temperatures(tasks, calibrated)
        with torch.inference_mode():
            output = self.forward(**inputs, tasks=tasks, return_dict=True)
            columns = [
                TASK_SCORES[self.config.task_kinds[task]](output.logits[task].float() / temperature)
                for task, temperature in zip(tasks, temperatures, strict=True)
            ]
            return torch.cat([*columns, output.embeddings.float()] if with_embeddings else columns, dim=-1)

    def task_temperatures(self, tasks: list[str], calibrated: bool = True) -> list[float]:
        """The temperature each of `tasks` divides its logits by before the softmax (see `task_temperature`)."""
        return [task_temperature(self.config.task_calibration, task, calibrated) for task in tasks]

    def pooled_output(self, encodings: Mapping[str, list], tokenizer, batch_size: int = 64, show_progress_bar=False):
        """The pooled output `(n, backbone_hidden_size)`, before the projection, of texts tokenised already (unpadded
        `input_ids` lists, ...), in order, batched as `encode` does: what embedding distillation holds."""
        return self.teacher_outputs(encodings, tokenizer, (), batch_size, show_progress_bar)[0]

    def teacher_outputs(
        self, encodings: Mapping[str, list], tokenizer, tasks: Sequence[str] = (), batch_size: int = 64,
        show_progress_bar=False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """What distillation holds, from one pass over texts tokenised already (unpadded `input_ids` lists, ...), in
        order: the pooled output `(n, backbone_hidden_size)` and the raw logits `(n, num_labels)` of each of `tasks`."""
        tasks = check_tasks(tasks, self.config.task_names) if tasks else []
        widths = [self.config.backbone_hidden_size, *(self.config.num_labels_of(task) for task in tasks)]

        def run_batch(model, inputs):
            pooled = model.pool(**inputs)[0]
            if not tasks:
                return pooled
            projected = model.projection(pooled)
            return torch.cat([pooled, *(model.heads[task](projected).float() for task in tasks)], dim=-1)

        progress = progress_bar(len(encodings["input_ids"]), "Teacher outputs", show_progress_bar)
        try:
            rows = self._run_tokenized(encodings, tokenizer, run_batch, batch_size, progress)
        finally:
            progress is not None and progress.close()
        pooled, *logits = torch.from_numpy(rows).to(self.device).split(widths, dim=-1)
        return pooled, dict(zip(tasks, logits, strict=True))

    def _run(self, sentences, tokenizer, run_batch, description, batch_size=DEFAULT_BATCH_SIZE, show_progress_bar=None,
             device=None, max_length=None, chunk_size=DEFAULT_CHUNK_SIZE, pairs=False,
             dtype=None) -> Iterator[np.ndarray]:  # fmt: skip
        """The torch step under the engine's `run_chunks`: per chunk, tokenise (unpadded; a pair's two texts as two
        sequences, the second under `pair_*` keys) and run `run_batch`."""
        check_sentences(sentences)
        check_tokenizer(tokenizer, self.get_input_embeddings().num_embeddings, self.config.tokenizer_fingerprint)
        max_length = check_max_length(max_length, self.default_max_length(tokenizer), self.position_limit())
        dtype = check_inference_dtype(dtype)
        if device is not None:
            self.to(device)
        return run_chunks(
            sentences,
            lambda items, bar: self._run_tokenized(tokenize_items(tokenizer, items, max_length, pairs), tokenizer,
                                                   run_batch, batch_size, bar, dtype),
            batch_size, chunk_size, show_progress_bar, description, pairs=pairs,
        )  # fmt: skip

    def _run_tokenized(
        self, encodings, tokenizer, run_batch, batch_size: int, progress=None, dtype=None
    ) -> np.ndarray:
        """`run_batch`'s rows as float32, in input order, for unpadded encodings: under `inference_mode` (and autocast
        to `dtype`, see `layers_multitask_st.inference_precision`), on an eval twin when the model is in train mode (no
        mode flipped), longest texts first, padded by `tokenizer.pad`."""
        model, device = eval_twin(self) if self.training else self, self.device

        def run(batch: list[int]) -> torch.Tensor:
            inputs = {}
            for prefix in ("", PAIR_PREFIX):
                keys = [key for key in MODEL_INPUTS if prefix + key in encodings]
                if keys:
                    padded = tokenizer.pad({key: [encodings[prefix + key][i] for i in batch] for key in keys},
                                           return_tensors="pt")  # fmt: skip
                    inputs.update({prefix + key: padded[key].to(device) for key in keys})
            return run_batch(model, inputs).float()

        lengths = [len(ids) for ids in encodings["input_ids"]]
        if PAIR_PREFIX + "input_ids" in encodings:
            lengths = [
                length + len(ids) for length, ids in zip(lengths, encodings[PAIR_PREFIX + "input_ids"], strict=True)
            ]
        with torch.inference_mode(), inference_precision(device, dtype):
            rows, inverse = run_in_length_order(lengths, batch_size, run, progress)
            return torch.cat(rows).cpu().numpy()[inverse]

    def set_target_scaling(self, task: str, mean: list[float], std: list[float]):
        """A regression task's target scaling (see `config.task_target_scaling`): the head then predicts
        `mean + std * z`. `MultiTaskTrainer` sets it from the training targets before the first step."""
        scaling = {**self.config.task_target_scaling, task: {"mean": list(mean), "std": list(std)}}
        self.config.task_target_scaling = normalize_task_target_scaling(
            scaling, self.config.tasks, self.config.task_kinds
        )
        head = self.heads[task]
        head.target_mean.copy_(torch.tensor(self.config.task_target_scaling[task]["mean"]))
        head.target_std.copy_(torch.tensor(self.config.task_target_scaling[task]["std"]))

    def default_max_length(self, tokenizer) -> int:
        """Tokens kept per text when no `max_length` is given (see `inference_multitask_st.default_max_length`)."""
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        return default_max_length(self.config.max_seq_length, tokenizer_limit, self.position_limit())

    def position_limit(self) -> int:
        """The most tokens per text the backbone has position embeddings for."""
        return getattr(self.config.backbone_config, "max_position_embeddings", None) or 512

    # ------------------------------------------------------------------ the other doors: pipeline(), sentence-transformers

    def head_view(self, task: str, calibrated: bool = True) -> PreTrainedModel:
        """One head as an ordinary sequence classifier sharing this model's weights, for the stock pipelines:
        `pipeline("text-classification", model=model.head_view("sentiment"), tokenizer=tokenizer)`. Its logits are
        divided by the head's fitted temperature (unless `calibrated=False`), so the pipeline's softmax gives
        `predict`'s probabilities."""
        from .pipeline_multitask_st import MultiTaskSTHeadView

        return MultiTaskSTHeadView(self, check_tasks(task, self.config.task_names)[0], calibrated)

    def to_sentence_transformer(self, tokenizer):
        """This model (weights shared) as a `SentenceTransformer`, for libraries that take one (needs
        sentence-transformers >= 6). A saved model folder also loads with `SentenceTransformer(path,
        trust_remote_code=True)`."""
        from sentence_transformers import SentenceTransformer

        from .sentence_transformers_multitask_st import MultiTaskSTSentenceEncoder

        return SentenceTransformer(modules=[MultiTaskSTSentenceEncoder(self, tokenizer)], device=str(self.device))

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus what the other doors read: config.json declares the pipeline that
        ships with the model (`custom_pipelines`), and the sentence-transformers files name the module that wraps it.
        (The payload files, `inference_multitask_st.PAYLOAD_FILES`, travel with this one: transformers copies the
        relative imports of this file, `head_view` and `to_sentence_transformer` included.)"""
        import transformers

        self.config.custom_pipelines = custom_pipelines_entry()
        if kwargs.get("is_main_process", True) and not os.path.isfile(save_directory):
            # Before the weights: `save_pretrained(..., push_to_hub=True)` uploads the folder as it leaves it.
            os.makedirs(save_directory, exist_ok=True)
            versions = {"transformers": transformers.__version__, "pytorch": torch.__version__}
            for name, text in sentence_transformers_files(self.config.max_seq_length, versions).items():
                (Path(save_directory) / name).write_text(text, encoding="utf-8")
        return super().save_pretrained(save_directory, *args, **kwargs)


PAIR_PREFIX = "pair_"  # the second texts' model inputs: `pair_input_ids`, `pair_attention_mask`, ...


def tokenize_items(tokenizer, items: list, max_length: int, pairs: bool) -> dict[str, list]:
    """Unpadded encodings of texts, or of pairs as two sequences: the second texts' under `pair_*` keys."""
    if not pairs:
        return tokenize(tokenizer, items, max_length)
    first = tokenize(tokenizer, [text for text, _ in items], max_length)
    second = tokenize(tokenizer, [text_pair for _, text_pair in items], max_length)
    encodings = {key: first[key] for key in MODEL_INPUTS if key in first}
    encodings.update({PAIR_PREFIX + key: second[key] for key in MODEL_INPUTS if key in second})
    return encodings


# `save_pretrained` writes `auto_map` and copies this file and the configuration next to the weights.
MultiTaskSTModel.register_for_auto_class("AutoModel")
