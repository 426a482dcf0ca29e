"""The layers around the backbone: pooling, the projection, and per kind of task its head, loss and scores.

This file is part of the Hub payload (copied next to the weights by `save_pretrained`); it imports only torch,
transformers and the payload files next to it. A new kind of task (see `configuration_multitask_st.TASK_KINDS`) adds
its head builder, loss and scores to the three tables here, and a label-row formatter to the inference engine.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from .configuration_multitask_st import MultiTaskSTConfig
from .inference_multitask_st import SINGLE_LABEL


IGNORE_INDEX = -100  # label value for "this example has no label for this task"


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


def build_projection(config: MultiTaskSTConfig) -> nn.Module:
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


def _classification_head(config: MultiTaskSTConfig, num_labels: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(config.embedding_dim, config.head_hidden_size),
        ACT2FN[config.head_activation],
        nn.Dropout(config.head_dropout),
        nn.Linear(config.head_hidden_size, num_labels),
    )


def _single_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # Sum then divide by the labelled count: a task absent from the batch gives exactly 0 (not NaN), and its head
    # still takes part in the graph (zero gradient), which distributed training needs.
    labelled = (labels != IGNORE_INDEX).sum()
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / labelled.clamp(min=1)


# Per kind of task (`config.task_kinds`, see `configuration_multitask_st.TASK_KINDS`): its head, its loss, and the
# scores `predict` reports. A new kind adds an entry here and a label-row formatter in the inference engine.
TASK_HEADS: dict[str, Callable[[MultiTaskSTConfig, int], nn.Module]] = {SINGLE_LABEL: _classification_head}
TASK_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {SINGLE_LABEL: _single_label_loss}
TASK_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    SINGLE_LABEL: lambda logits: logits.float().softmax(-1)
}


def eval_twin(module: nn.Module) -> nn.Module:
    """A copy of the module tree in eval mode that shares every parameter and buffer with `module`.

    `encode`/`predict` run it instead of flipping the model to eval and back: that flip is global state, and a server
    calling from several threads (or training in one) would turn dropout back on inside another call's forward pass.
    Copies of the module objects only (~0.1 ms for MiniLM's ~100 modules); no tensor is copied.
    """
    twin = copy.copy(module)  # a new __dict__ holding the same `_parameters` / `_buffers` dicts
    twin.__dict__["_modules"] = {
        name: None if child is None else eval_twin(child) for name, child in module._modules.items()
    }
    twin.__dict__["training"] = False
    return twin


def init_weights(module: nn.Module, std: float):
    # Our own modules (pooling query, projection, heads). The backbone, a PreTrainedModel itself, uses its own
    # `_init_weights` in transformers 5; Embedding is covered for transformers 4, which applies ours everywhere.
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


def backbone_init_kwargs(backbone_config) -> dict:
    """BERT-style encoders carry an NSP pooler we never use; leave it out so no parameter sits idle (DDP, freezing)."""
    if type(backbone_config) not in MODEL_MAPPING:
        raise ValueError(f"AutoModel cannot build a backbone from {type(backbone_config).__name__}; use an encoder.")
    model_class = MODEL_MAPPING[type(backbone_config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}
