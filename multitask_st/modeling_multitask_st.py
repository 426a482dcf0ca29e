"""The multi-task sentence transformer: encoder -> pooling -> projection -> one classification head per task.

This file is part of the Hub payload: `save_pretrained` copies it next to the weights so that
`AutoModel.from_pretrained(repo, trust_remote_code=True)` works without our package. It therefore imports only
torch, transformers and the payload files next to it. The model takes `encode`/`predict` from
`encoding_multitask_st.py` (the torch step under the engine of `inference_multitask_st.py`) and `add_task` & co. from
`task_editing_multitask_st.py`; the heads and losses per kind of task are in `layers_multitask_st.py` and
`losses_multitask_st.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_multitask_st import MultiTaskSTConfig, sentence_transformers_max_seq_length
from .encoding_multitask_st import MultiTaskSTEncodingMixin
from .inference_multitask_st import check_tasks, custom_pipelines_entry, sentence_transformers_files
from .layers_multitask_st import (
    TASK_HEADS,
    TASK_OUTPUTS,
    MultiTaskSTPooler,
    TaskInputs,
    backbone_init_kwargs,
    build_projection,
    init_weights,
)
from .losses_multitask_st import multitask_loss
from .parts_multitask_st import (
    backbone_layers,
    check_loaded_weights,
    parameter_parts,
    resolve_parts,
    set_trainable,
)
from .task_editing_multitask_st import MultiTaskSTTaskEditingMixin
from .task_fields_multitask_st import normalize_task_target_scaling


logger = logging.get_logger(__name__)


@dataclass
class MultiTaskSTOutput(ModelOutput):
    """Output of [`MultiTaskSTModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            Sum over tasks of `task_loss_weights[task] * task_losses[task]`.
        logits (`dict[str, torch.FloatTensor]`): per task, its output (`layers_multitask_st.TASK_OUTPUTS`): a head's
            `(batch_size, num_labels_of_task)` logits (a regression head's values, in the data's units), a pair's
            cosine `(batch_size, 1)` for an `embedding` task, `(batch_size, 3 * embedding_dim + 1)` for an
            `embedding_contrastive` one (anchor, positive, negative, has-negative).
        task_losses (`dict[str, torch.FloatTensor]`, returned when `labels` is given):
            Per task, its kind's loss (`losses_multitask_st.TASK_LOSSES`) over the examples labelled for it (exactly
            0 when none is).
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


class MultiTaskSTModel(MultiTaskSTEncodingMixin, MultiTaskSTTaskEditingMixin, MultiTaskSTPreTrainedModel):
    r"""A shared encoder with pooling and a projection to a sentence embedding, and one head per task of its kind
    (classification, multi-label, regression, pair heads; embedding tasks have none: the embedding is their output).

    `forward` takes token ids (tokenise in the collator, never here) and optional `labels` with each task's columns
    (`config.label_slices()`), NaN (or -100 in a class-id column) wherever an example has no label for a task.

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
        inputs_embeds: torch.Tensor | None = None,
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
        inputs_embeds (`torch.FloatTensor` of shape `(batch_size, length, hidden_size)`, *optional*):
            Instead of `input_ids`: given to the backbone as transformers models take them (what its embedding module
            starts from). Training with cached frozen layers passes the cached hidden states this way.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        task_names = check_tasks(tasks, self.config.task_names)
        pooled, backbone_output = self.pool(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions, inputs_embeds
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
        loss, task_losses = (None, None) if labels is None else multitask_loss(self.config, logits, labels, inputs)
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
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ):
        """The backbone's pooled output `(batch, backbone_hidden_size)`, before the projection, and the backbone's own
        output (what the ONNX export and distillation read)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(
                "Give exactly one of `input_ids` and `inputs_embeds`: tokenise the texts first (see `encode`/`predict`)."
            )
        given = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        if attention_mask is None:
            (tokens,) = given.values()
            attention_mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        backbone_inputs = {**given, "attention_mask": attention_mask}
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


# `save_pretrained` writes `auto_map` and copies this file and the configuration next to the weights.
MultiTaskSTModel.register_for_auto_class("AutoModel")
