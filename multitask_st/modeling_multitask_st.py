"""The multi-task sentence transformer: encoder -> pooling -> projection -> one classification head per task.

This file is part of the Hub payload: `save_pretrained` copies it next to the weights so that
`AutoModel.from_pretrained(repo, trust_remote_code=True)` works without our package. It therefore imports only
torch, transformers and the configuration file next to it.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput, cached_file, logging

from .configuration_multitask_st import MultiTaskSTConfig, vocabulary_fingerprint


if TYPE_CHECKING:
    import numpy as np

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100  # label value for "this example has no label for this task"
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what the tokenizer gives that forward takes
# Texts `encode`/`predict` tokenise and hold at a time: their token ids cost ~9 KB per text on MiniLM, so a million
# texts at once would need ~9 GB before the result; a few thousand keep almost all of the length-sorting win.
DEFAULT_CHUNK_SIZE = 4096


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


class MultiTaskSTPooler(nn.Module):
    """Turns token states `(batch, seq, hidden)` into one vector `(batch, hidden)` per text, ignoring padding."""

    def __init__(self, config: MultiTaskSTConfig):
        super().__init__()
        self.mode = config.pooling_mode
        # Learned single-query attention: one score per token from a linear map of its state.
        self.attention_query = nn.Linear(config.backbone_hidden_size, 1) if self.mode == "attention" else None

    def forward(self, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls":
            return token_states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(token_states.dtype)  # (batch, seq, 1)
        if self.mode == "mean":
            # clamp: an all-padding row gives a zero vector instead of NaN.
            return (token_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        is_padding = mask == 0
        if self.mode == "max":
            return token_states.masked_fill(is_padding, torch.finfo(token_states.dtype).min).max(dim=1).values
        # Scores in fp32: under autocast the query's output is bf16/fp16 while the states are fp32.
        scores = self.attention_query(token_states).float().masked_fill(is_padding, torch.finfo(torch.float32).min)
        weights = scores.softmax(dim=1).to(token_states.dtype)  # (batch, seq, 1)
        return (weights * token_states).sum(dim=1)


def _build_projection(config: MultiTaskSTConfig) -> nn.Module:
    hidden_size = config.backbone_hidden_size
    if config.projection == "none":
        return nn.Identity()
    if config.projection == "linear":
        linear = nn.Linear(hidden_size, config.embedding_dim)
        # A square projection starts as the identity: training begins from the pretrained embedding geometry
        # (a random one costs ~0.01 STS-B Spearman on MiniLM before any training).
        linear._init_as_identity = hidden_size == config.embedding_dim
        return nn.Sequential(linear, nn.LayerNorm(config.embedding_dim))
    return nn.Sequential(
        nn.Linear(hidden_size, config.projection_hidden_size),
        ACT2FN[config.projection_activation],
        nn.Linear(config.projection_hidden_size, config.embedding_dim),
        nn.LayerNorm(config.embedding_dim),
    )


def _build_head(config: MultiTaskSTConfig, num_labels: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(config.embedding_dim, config.head_hidden_size),
        ACT2FN[config.head_activation],
        nn.Dropout(config.head_dropout),
        nn.Linear(config.head_hidden_size, num_labels),
    )


def _backbone_init_kwargs(backbone_config) -> dict:
    """BERT-style encoders carry an NSP pooler we never use; leave it out so no parameter sits idle (DDP, freezing)."""
    if type(backbone_config) not in MODEL_MAPPING:
        raise ValueError(f"AutoModel cannot build a backbone from {type(backbone_config).__name__}; use an encoder.")
    model_class = MODEL_MAPPING[type(backbone_config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


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
        non_finite = non_finite_parameters(model)
        if non_finite:
            shown = ", ".join(non_finite[:5]) + (f" and {len(non_finite) - 5} more" if len(non_finite) > 5 else "")
            logger.warning(
                f"The weights loaded from {str(pretrained_model_name_or_path)!r} hold NaN or inf values in {shown}: "
                "its embeddings and predictions will be NaN. The training that wrote them diverged."
            )
        _check_heads_loaded(info, model.config.task_names, pretrained_model_name_or_path)
        return (model, info) if wants_info else model

    def _init_weights(self, module: nn.Module):
        # Our own modules (pooling query, projection, heads). The backbone, a PreTrainedModel itself, uses its own
        # `_init_weights` in transformers 5; Embedding is covered for transformers 4, which applies ours everywhere.
        std = getattr(self.config.backbone_config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            if getattr(module, "_init_as_identity", False):
                nn.init.eye_(module.weight)
            else:
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


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
            backbone = AutoModel.from_config(config.backbone_config, **_backbone_init_kwargs(config.backbone_config))
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
        self.projection = _build_projection(config)
        self.heads = nn.ModuleDict({task: _build_head(config, len(labels)) for task, labels in config.tasks.items()})
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
            **_backbone_init_kwargs(backbone_config),
            **hub_kwargs,
        )
        if config_kwargs.get("max_seq_length") is None:
            config_kwargs["max_seq_length"] = _sentence_transformers_max_seq_length(
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
        return self._finish_embedding(self._embed(input_ids, attention_mask, token_type_ids)[0])

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
    ) -> MultiTaskSTOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, num_tasks)`, *optional*):
            Column `i` holds the label ids of task `config.task_names[i]`, `-100` where an example has none.
        tasks (`list[str]`, *optional*):
            Which heads to run; defaults to all.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        task_names = self._check_tasks(tasks)
        projected, backbone_output = self._embed(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions
        )
        logits = {task: self.heads[task](projected) for task in task_names}
        loss, task_losses = (None, None) if labels is None else self._multitask_loss(logits, labels)
        output = MultiTaskSTOutput(
            loss=loss,
            logits=logits,
            task_losses=task_losses,
            embeddings=self._finish_embedding(projected),
            hidden_states=backbone_output.hidden_states,
            attentions=backbone_output.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _embed(self, input_ids, attention_mask, token_type_ids, output_hidden_states=None, output_attentions=None):
        pooled, backbone_output = self._pool(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions
        )
        return self.projection(pooled), backbone_output

    def _pool(self, input_ids, attention_mask, token_type_ids, output_hidden_states=None, output_attentions=None):
        """The backbone's pooled output, before the projection, and the backbone's own output."""
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

    def _finish_embedding(self, projected: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        normalize = self.config.normalize_embeddings if normalize is None else normalize
        return F.normalize(projected, p=2, dim=-1) if normalize else projected

    def _check_tasks(self, tasks: Iterable[str] | None) -> list[str]:
        if tasks is None:
            return self.config.task_names
        if isinstance(tasks, str):
            tasks = [tasks]
        tasks = list(tasks) if isinstance(tasks, Iterable) else tasks
        if not isinstance(tasks, list) or not all(isinstance(task, str) for task in tasks):
            raise TypeError(
                f"`tasks` must be a task name or a list of them (of {self.config.task_names}), got {tasks!r}."
            )
        if not tasks:
            raise ValueError(f"`tasks` is empty; name one or more of this model's tasks {self.config.task_names}.")
        unknown = [task for task in tasks if task not in self.heads]
        if unknown:
            raise ValueError(f"Unknown task(s) {unknown}; this model's tasks are {self.config.task_names}.")
        return tasks

    def _multitask_loss(
        self, logits: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        task_names = self.config.task_names
        batch_size = next(iter(logits.values())).shape[0]
        if labels.dtype not in (torch.int64, torch.int32) or tuple(labels.shape) != (batch_size, len(task_names)):
            raise ValueError(
                f"`labels` must be an integer tensor of shape (batch_size, num_tasks) = ({batch_size}, "
                f"{len(task_names)}) with columns {task_names}, got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        labels = labels.long()
        num_labels = torch.tensor([len(self.config.tasks[t]) for t in task_names], device=labels.device)
        invalid = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_labels))
        if invalid.any():  # one device sync per step, instead of an opaque CUDA assert inside cross_entropy
            row, col = invalid.nonzero()[0].tolist()
            raise ValueError(
                f"Label {labels[row, col].item()} of task {task_names[col]!r} (batch row {row}) is not in "
                f"0..{num_labels[col].item() - 1} nor {IGNORE_INDEX}."
            )
        task_losses, loss = {}, None
        for task, task_logits in logits.items():
            task_labels = labels[:, task_names.index(task)]
            labelled = (task_labels != IGNORE_INDEX).sum()
            # Sum then divide by the labelled count: a task absent from the batch gives exactly 0 (not NaN), and
            # its head still takes part in the graph (zero gradient), which distributed training needs.
            task_loss = F.cross_entropy(
                task_logits.float(), task_labels, ignore_index=IGNORE_INDEX, reduction="sum"
            ) / labelled.clamp(min=1)
            task_losses[task] = task_loss
            weighted = self.config.task_loss_weights[task] * task_loss
            loss = weighted if loss is None else loss + weighted
        return loss, task_losses

    # ------------------------------------------------------------------ freezing

    def backbone_layers(self) -> list[nn.Module]:
        """The backbone's transformer layers, bottom to top."""
        num_layers = self.config.backbone_config.num_hidden_layers
        for module in self.backbone.modules():
            if isinstance(module, nn.ModuleList) and len(module) == num_layers:
                return list(module)
        raise ValueError(
            f"Cannot find the {num_layers} layers of backbone {type(self.backbone).__name__}: no ModuleList of "
            "that length; layer-wise freezing and learning rates need one."
        )

    def parameter_parts(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter, grouped into the parts that freezing and optimizer groups address, bottom to top.

        Parts: `backbone.embeddings`, `backbone.layer.<i>`, `backbone.other` (anything else in the backbone, if any),
        `pooling` (attention pooling only), `projection` (if any), `head:<task>`. Each parameter is in exactly one.
        """
        owner = {}
        embeddings = getattr(self.backbone, "embeddings", None)
        if embeddings is None:
            raise ValueError(f"Backbone {type(self.backbone).__name__} has no `embeddings` module.")
        for param in embeddings.parameters():
            owner[param] = "backbone.embeddings"
        for index, layer in enumerate(self.backbone_layers()):
            for param in layer.parameters():
                owner[param] = f"backbone.layer.{index}"
        parts: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in dict.fromkeys(owner.values())}
        for name, param in self.named_parameters():
            if name.startswith("backbone."):
                part = owner.get(param, "backbone.other")
            elif name.startswith("heads."):
                part = "head:" + name.split(".")[1]
            else:
                part = name.split(".")[0]  # pooling / projection
            parts.setdefault(part, []).append((name, param))
        return {name: params for name, params in parts.items() if params}

    def freeze(self, *targets: str) -> MultiTaskSTModel:
        """Stop training the named parts: `all`, `backbone`, `backbone.embeddings`, `backbone.layer.<i>`, `pooling`,
        `projection`, `heads`, `head:<task>`. Returns the model, so calls chain."""
        self._set_trainable(targets, False)
        return self

    def unfreeze(self, *targets: str) -> MultiTaskSTModel:
        """Train the named parts again (same names as `freeze`)."""
        self._set_trainable(targets, True)
        return self

    def resolve_parts(self, *targets: str) -> list[str]:
        """The part names (see `parameter_parts`) that freeze targets select, in model order."""
        parts = list(self.parameter_parts())
        selected = []
        for target in targets:
            matches = [part for part in parts if _part_matches(part, target)]
            if not matches:
                valid = ["all", "backbone", "heads", *parts]
                raise ValueError(f"Freeze target {target!r} matches no part of this model; valid targets: {valid}.")
            selected.extend(part for part in matches if part not in selected)
        return [part for part in parts if part in selected]

    def _set_trainable(self, targets: tuple[str, ...], trainable: bool):
        if not targets:
            raise ValueError("Name at least one part, e.g. `freeze('backbone')`.")
        parts = self.parameter_parts()
        for part in self.resolve_parts(*targets):
            for _, param in parts[part]:
                param.requires_grad_(trainable)

    # ------------------------------------------------------------------ inference

    def encode(
        self,
        sentences: str | Iterable[str],
        tokenizer,
        batch_size: int = 32,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        out=None,
    ):
        """Embed sentences: a `(n, embedding_dim)` array (or tensor), or one vector for a single string.

        `sentences` is a string or any iterable of strings: a list, a generator, a `datasets` column, a file's lines.
        It is read `chunk_size` texts at a time; within a chunk texts are sorted by token count so each batch pads
        little, and the result keeps the input order. Memory beyond the result stays bounded by the chunk, whatever
        the input size. `normalize_embeddings` defaults to `config.normalize_embeddings`.

        For results too big for memory, pass `out`, an array of shape `(n, embedding_dim)` to fill (e.g. an
        `np.memmap`; it is returned), or iterate over [`encode_chunks`].

        Example:
            >>> out = np.lib.format.open_memmap("emb.npy", mode="w+", dtype="float32", shape=(n, model.config.embedding_dim))
            >>> model.encode((line.rstrip("\\n") for line in open("corpus.txt")), tokenizer, out=out)
        """
        single = isinstance(sentences, str)
        if out is not None and (single or convert_to_tensor or not convert_to_numpy):
            raise ValueError(
                "`out` takes the embeddings of an iterable of texts as an array; leave the convert_* flags."
            )
        chunks = self.encode_chunks(
            [sentences] if single else sentences,
            tokenizer,
            batch_size=batch_size,
            normalize_embeddings=normalize_embeddings,
            show_progress_bar=show_progress_bar,
            device=device,
            max_length=max_length,
            chunk_size=chunk_size,
        )
        embeddings = _fill_rows(chunks, _length_hint(sentences), self.config.embedding_dim, out)
        if out is not None:
            return out
        if single:
            embeddings = embeddings[0]
        if convert_to_tensor or not convert_to_numpy:
            embeddings = torch.from_numpy(embeddings).to(self.device)
            return embeddings if convert_to_tensor or single else list(embeddings.unbind(0))
        return embeddings

    def encode_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        batch_size: int = 32,
        normalize_embeddings: bool | None = None,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[np.ndarray]:
        """The streaming form of [`encode`]: yields one float32 `(chunk, embedding_dim)` array per `chunk_size` texts,
        in input order, so a corpus of any size can be embedded and written out piece by piece.

        Example:
            >>> for index, embeddings in enumerate(model.encode_chunks(texts, tokenizer, chunk_size=100_000)):
            ...     np.save(f"embeddings-{index:05d}.npy", embeddings)
        """

        def embed_batch(inputs):
            return self._finish_embedding(self._embed(**inputs)[0], normalize_embeddings).float()

        chunks = self._run_chunks(
            sentences,
            tokenizer,
            embed_batch,
            batch_size,
            show_progress_bar,
            device,
            max_length,
            chunk_size,
            "Encoding",
        )
        return (chunk.cpu().numpy() for chunk in chunks)

    def predict(
        self,
        sentences: str | Iterable[str],
        tokenizer,
        tasks: str | list[str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> dict | list[dict]:
        """Classify sentences with every head (or those in `tasks`) from one forward pass per batch.

        Returns, per sentence, `{task: {"label": name, "score": probability, "probabilities": {name: p}}}`; a dict for
        a single string, a list of them for any iterable of strings (read `chunk_size` at a time, as in `encode`).
        """
        single = isinstance(sentences, str)
        chunks = self.predict_chunks(
            [sentences] if single else sentences,
            tokenizer,
            tasks=tasks,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            device=device,
            max_length=max_length,
            chunk_size=chunk_size,
        )
        predictions = [prediction for chunk in chunks for prediction in chunk]
        return predictions[0] if single else predictions

    def predict_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        tasks: str | list[str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[list[dict]]:
        """The streaming form of [`predict`]: yields the predictions of each `chunk_size` texts, in input order."""
        task_names = self._check_tasks(tasks)
        chunks = self._run_chunks(
            sentences, tokenizer, lambda inputs: self._classify_batch(inputs, task_names), batch_size, show_progress_bar, device, max_length, chunk_size,
            "Predicting",
        )  # fmt: skip
        return (self._label_rows(probabilities.cpu(), task_names) for probabilities in chunks)

    def _classify_batch(self, inputs: dict, task_names: list[str], with_embeddings: bool = False) -> torch.Tensor:
        """One forward pass: the probabilities of every label of `task_names`, task after task, then (if asked) the
        embedding, as `(batch, total labels [+ embedding_dim])` float rows (one device->host copy per chunk)."""
        output = self.forward(**inputs, tasks=task_names, return_dict=True)
        columns = [output.logits[task].float().softmax(dim=-1) for task in task_names]
        if with_embeddings:
            columns.append(output.embeddings.float())
        return torch.cat(columns, dim=-1)

    def _label_rows(self, probabilities: torch.Tensor, task_names: list[str]) -> list[dict]:
        """`predict`'s result from `_classify_batch`'s probability columns: per row, `{task: {"label", "score",
        "probabilities"}}` (the pipeline that ships with the model formats the same rows)."""
        # Task by task, with the argmax done in torch: the per-row Python below is most of what predict adds to
        # encode on a GPU (~5% at batch size 128), so it does no slicing or searching of its own.
        predictions = [{} for _ in range(len(probabilities))]
        offset = 0
        for task in task_names:
            labels = self.config.tasks[task]
            task_probs = probabilities[:, offset : offset + len(labels)]
            offset += len(labels)
            rows, best = task_probs.tolist(), task_probs.argmax(dim=-1).tolist()
            for prediction, row, index in zip(predictions, rows, best, strict=True):
                prediction[task] = {
                    "label": labels[index],
                    "score": row[index],
                    "probabilities": dict(zip(labels, row, strict=True)),
                }
        return predictions

    def _run_chunks(
        self,
        sentences: Iterable[str],
        tokenizer,
        run_batch: Callable[[dict], torch.Tensor],
        batch_size: int,
        show_progress_bar: bool | None,
        device,
        max_length: int | None,
        chunk_size: int,
        description: str,
    ) -> Iterator[torch.Tensor]:
        """Checks the arguments now, then lazily yields `run_batch`'s rows for each `chunk_size` texts, in input order.

        Memory: one chunk's token ids and outputs at a time, whatever the input size.
        """
        if isinstance(sentences, (bytes, Mapping)) or not isinstance(sentences, Iterable):
            raise TypeError(f"`sentences` must be a string or an iterable of strings, got {type(sentences).__name__}.")
        for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if tokenizer is None or not callable(tokenizer):
            raise TypeError(f"`tokenizer` must be a Hugging Face tokenizer, got {tokenizer!r}.")
        self._check_tokenizer(tokenizer)
        max_length = self._check_max_length(max_length, tokenizer)
        if device is not None:
            self.to(device)
        total = _length_hint(sentences)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO and (total is None or total > batch_size)
        return self._generate_chunks(
            iter(sentences), tokenizer, run_batch, batch_size, max_length, chunk_size, total,
            logging.tqdm(total=total, desc=description, unit="text", disable=not show_progress_bar),
        )  # fmt: skip

    def _generate_chunks(self, texts, tokenizer, run_batch, batch_size, max_length, chunk_size, total, progress):
        seen = 0
        was_training = self.training
        try:
            while chunk := list(itertools.islice(texts, chunk_size)):
                _check_texts(chunk, offset=seen)
                seen += len(chunk)
                # Tokenise the chunk once, unpadded, and sort by token count, longest first: batches of equal length
                # carry almost no padding (on 2000 Rotten Tomatoes snippets, sorting by characters ran 28% more
                # positions than tokens, this 2%; see BENCHMARKS.md), and a too-large batch fails at once.
                encodings = tokenizer(chunk, truncation=True, max_length=max_length)
                outputs = self._run_tokenized(encodings, tokenizer, run_batch, batch_size, progress)
                self.train(was_training)
                del encodings
                yield outputs
        finally:
            self.train(was_training)
            progress.close()
        if seen == 0:
            raise ValueError("`sentences` is empty: pass at least one string.")
        if total is not None and seen != total:
            logger.warning(f"`sentences` reported {total} texts but gave {seen}.")

    def _run_tokenized(self, encodings, tokenizer, run_batch, batch_size: int, progress=None) -> torch.Tensor:
        """`run_batch`'s rows for tokenised, unpadded texts (`{"input_ids": [[...], ...], ...}`), in their order.

        Runs in eval mode under `inference_mode` over batches sorted by token count, longest first (they carry almost
        no padding), padded by `tokenizer.pad`; the caller restores the train/eval mode.
        """
        keys = [key for key in _MODEL_INPUTS if key in encodings]
        order = sorted(range(len(encodings["input_ids"])), key=lambda i: -len(encodings["input_ids"][i]))
        device, outputs = self.device, []
        self.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = tokenizer.pad({key: [encodings[key][i] for i in batch] for key in keys}, return_tensors="pt")
                outputs.append(run_batch({key: inputs[key].to(device) for key in keys}))
                if progress is not None:
                    progress.update(len(batch))
        # Undo the length sort: row `order[k]` of the input is row `k` of the concatenation.
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(outputs)[inverse.to(device)]

    def pooled_output(
        self, encodings: Mapping[str, list], tokenizer, batch_size: int = 64, show_progress_bar: bool = False
    ) -> torch.Tensor:
        """The backbone's pooled output `(n, backbone_hidden_size)` for texts tokenised already (unpadded lists of
        `input_ids`, optionally `attention_mask` / `token_type_ids`), before the projection, in input order.

        This is what embedding distillation holds the geometry of; batched and padded exactly as `encode` does, and
        the model's train/eval mode is restored.
        """
        was_training = self.training
        progress = logging.tqdm(
            total=len(encodings["input_ids"]), desc="Pooled outputs", unit="text", disable=not show_progress_bar
        )
        try:
            return self._run_tokenized(
                encodings,
                tokenizer,
                lambda inputs: self._pool(
                    inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids")
                )[0],
                batch_size,
                progress,
            )
        finally:
            self.train(was_training)
            progress.close()

    def default_max_length(self, tokenizer) -> int:
        limit = self.position_limit()
        if self.config.max_seq_length is not None:
            return min(self.config.max_seq_length, limit)
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        # tokenizers without a limit report a huge sentinel (int(1e30))
        return min(tokenizer_limit, limit) if tokenizer_limit and tokenizer_limit < 1_000_000 else limit

    def position_limit(self) -> int:
        """The most tokens per text the backbone has position embeddings for."""
        return getattr(self.config.backbone_config, "max_position_embeddings", None) or 512

    def _check_max_length(self, max_length, tokenizer) -> int:
        if max_length is None:
            return self.default_max_length(tokenizer)
        limit = self.position_limit()
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= limit:
            raise ValueError(
                f"`max_length` must be an integer in 1..{limit} (the backbone's `max_position_embeddings`), "
                f"got {max_length!r}."
            )
        return max_length

    def _check_tokenizer(self, tokenizer):
        """A tokenizer with more tokens than the embedding matrix has rows is an error (it would fail deep in torch);
        one whose vocabulary differs from the one saved with the model (`config.tokenizer_fingerprint`) a warning."""
        try:
            size = len(tokenizer)
        except TypeError:  # a plain callable: nothing to compare
            return
        rows = self.get_input_embeddings().num_embeddings
        if size > rows:
            raise ValueError(
                f"The tokenizer has {size} tokens but this model's embedding matrix has {rows} rows: it is not the "
                "model's tokenizer. Load the one saved with the model (`AutoTokenizer.from_pretrained(model_dir)`)."
            )
        expected = getattr(self.config, "tokenizer_fingerprint", None)
        if expected and hasattr(tokenizer, "get_vocab"):
            found = tokenizer_fingerprint(tokenizer)
            if found != expected:
                logger.warning_once(
                    f"The tokenizer's vocabulary ({found}) is not the one this model was trained with ({expected}): "
                    "embeddings and predictions will be wrong. Load the tokenizer saved with the model "
                    "(`AutoTokenizer.from_pretrained(model_dir)`)."
                )

    # ------------------------------------------------------------------ the other doors: pipeline(), sentence-transformers

    def head_view(self, task: str) -> PreTrainedModel:
        """One head as an ordinary sequence classifier sharing this model's weights, for the stock pipelines:
        `pipeline("text-classification", model=model.head_view("sentiment"), tokenizer=tokenizer)`."""
        from .pipeline_multitask_st import MultiTaskSTHeadView

        return MultiTaskSTHeadView(self, self._check_tasks(task)[0])

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
        (The pipeline and sentence-transformers payload files travel with this one: `head_view` and
        `to_sentence_transformer` import them, and transformers copies relative imports.)"""
        from .pipeline_multitask_st import custom_pipelines_entry

        self.config.custom_pipelines = custom_pipelines_entry()
        if kwargs.get("is_main_process", True) and not os.path.isfile(save_directory):
            # Before the weights: `save_pretrained(..., push_to_hub=True)` uploads the folder as it leaves it.
            os.makedirs(save_directory, exist_ok=True)
            _write_sentence_transformers_files(Path(save_directory), self.config)
        return super().save_pretrained(save_directory, *args, **kwargs)


def parse_part(part: str) -> tuple[str, int | str | None]:
    """Reads a part name of `MultiTaskSTModel.parameter_parts()`: the one parser that freezing, learning-rate groups
    and the unfreezing schedule share.

    Example:
        >>> parse_part("backbone.layer.3"), parse_part("head:topic"), parse_part("projection")
        (('backbone.layer', 3), ('head', 'topic'), ('projection', None))
    """
    if part.startswith("head:"):
        return "head", part.removeprefix("head:")
    prefix, _, index = part.rpartition(".")
    if prefix == "backbone.layer" and index.isdigit():
        return prefix, int(index)
    return part, None


def _part_matches(part: str, target: str) -> bool:
    if target == "all" or part == target:
        return True
    if target == "heads":
        return parse_part(part)[0] == "head"
    return part.startswith(target + ".")


def _check_heads_loaded(info: dict, task_names: list[str], source):
    """A head named in config.json but absent from the weights would start random, silently: say which names differ
    (a task renamed or removed in config.json, or weights from another model)."""
    missing = {key.split(".")[1] for key in info.get("missing_keys", ()) if key.startswith("heads.")}
    found = {key.split(".")[1] for key in info.get("unexpected_keys", ()) if key.startswith("heads.")}
    if missing:
        raise ValueError(
            f"config.json of {str(source)!r} names task(s) {sorted(missing)} but its weights hold no head for them"
            + (f"; they hold heads for {sorted(found)}" if found else "")
            + f" (config tasks: {task_names}). Was a task renamed in config.json? Task names must match the weights."
        )


def non_finite_parameters(model: nn.Module) -> list[str]:
    """Names of the floating-point weights and buffers that hold a NaN or an infinity."""
    return [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
    ]


def _length_hint(sentences) -> int | None:
    try:
        return len(sentences)
    except TypeError:  # a generator or a file: known only at the end
        return None


def _fill_rows(chunks: Iterable[np.ndarray], total: int | None, width: int, out=None) -> np.ndarray:
    """Writes the chunks' rows one after another into `out`, or into an array allocated once for `total` rows.

    When the total is unknown the array grows chunk by chunk with `ndarray.resize`, which `realloc`s in place (on
    Linux large blocks are remapped, not copied), so memory stays the result plus one chunk, never two results.
    """
    import numpy as np  # a dependency of transformers itself (and what `Tensor.numpy()` returns)

    buffer = out if out is not None else np.empty((total or 0, width), dtype=np.float32)
    rows = 0
    for chunk in chunks:
        end = rows + len(chunk)
        if end > len(buffer):
            if out is not None:
                raise ValueError(f"`out` has {len(out)} rows but `sentences` holds more texts than that.")
            buffer.resize((end, width), refcheck=False)
        buffer[rows:end] = chunk
        rows = end
    if out is not None and rows != len(out):
        raise ValueError(f"`out` has {len(out)} rows but `sentences` held {rows} texts.")
    if rows != len(buffer):
        buffer.resize((rows, width), refcheck=False)
    return buffer


def has_content(text: str) -> bool:
    """Whether a text holds anything a tokenizer keeps: not only whitespace, control (`Cc`: `\\x00`) or format (`Cf`:
    zero-width space, soft hyphen, BOM) characters, which BERT-style tokenizers drop, leaving `[CLS] [SEP]`."""
    return any(not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf") for char in text)


def _check_texts(texts: list, offset: int = 0):
    """Every item is a string with content; errors give the item's index in the whole input."""
    for index, text in enumerate(texts, start=offset):
        if not isinstance(text, str):
            raise TypeError(f"`sentences[{index}]` must be a string, got {type(text).__name__}: {text!r}.")
        if not has_content(text):
            raise ValueError(
                f"`sentences[{index}]` is {text!r}: empty, whitespace or only control/format characters; every text "
                "needs content to embed."
            )


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the tokenizer's vocabulary (tokens and their ids, added tokens included): saved in the
    config as `tokenizer_fingerprint`, so `encode`/`predict` notice a tokenizer that is not the model's."""
    size = len(tokenizer)
    try:
        cached = _FINGERPRINTS.get(tokenizer)
    except TypeError:  # not weak-referenceable or not hashable: compute every time
        cached = None
    if cached is not None and cached[0] == size:
        return cached[1]
    fingerprint = vocabulary_fingerprint(tokenizer.get_vocab())
    try:
        _FINGERPRINTS[tokenizer] = (size, fingerprint)
    except TypeError:
        pass
    return fingerprint


def _sentence_transformers_max_seq_length(path: str, hub_kwargs: dict) -> int | None:
    """The `max_seq_length` a sentence-transformers checkpoint was trained with, if it is one."""
    resolved = cached_file(
        path,
        "sentence_bert_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if resolved is None:
        return None
    with open(resolved, encoding="utf-8") as file:
        return json.load(file).get("max_seq_length")


# `save_pretrained` writes `auto_map` and copies this file and the configuration next to the weights.
MultiTaskSTModel.register_for_auto_class("AutoModel")


# The files `SentenceTransformer(path, trust_remote_code=True)` reads; the module class lives in the payload file
# `sentence_transformers_multitask_st.py`, which `save_pretrained` copies with this one.
SENTENCE_TRANSFORMERS_MODULE = "sentence_transformers_multitask_st.MultiTaskSTSentenceEncoder"
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")


def _write_sentence_transformers_files(save_directory: Path, config: MultiTaskSTConfig):
    import transformers

    modules = [{"idx": 0, "name": "0", "path": "", "type": SENTENCE_TRANSFORMERS_MODULE}]
    settings = {
        "__version__": {"transformers": transformers.__version__, "pytorch": torch.__version__},
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    # Left out when unset: the module then truncates where `encode` does, at `default_max_length(tokenizer)`.
    module_config = {} if config.max_seq_length is None else {"max_seq_length": config.max_seq_length}
    for name, value in zip(SENTENCE_TRANSFORMERS_FILES, (modules, settings, module_config), strict=True):
        (save_directory / name).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
