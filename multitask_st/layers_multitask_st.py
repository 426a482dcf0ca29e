"""The layers around the backbone: pooling, the projection, and per kind of task its head, output and scores.

This file is part of the Hub payload (copied next to the weights by `save_pretrained`); it imports only torch,
transformers and the payload files next to it. A new kind of task (see `configuration_multitask_st.TASK_KINDS`) adds
its head builder, output and scores to the tables here, its loss to `losses_multitask_st.TASK_LOSSES`, and a
label-row formatter to the inference engine.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from .configuration_multitask_st import MultiTaskSTConfig
from .inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)


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


def _classification_head(config: MultiTaskSTConfig, task: str, input_size: int | None = None) -> nn.Module:
    return nn.Sequential(
        nn.Linear(input_size or config.embedding_dim, config.head_hidden_size),
        ACT2FN[config.head_activation],
        nn.Dropout(config.head_dropout),
        nn.Linear(config.head_hidden_size, config.num_labels_of(task)),
    )


class RegressionHead(nn.Sequential):
    """The classification head's layers, whose outputs `z` become `target_mean + target_std * z`: predictions in the
    data's units, from a head that learns targets scaled to mean 0 and std 1 (`config.task_target_scaling`; saved
    with the weights too, so the ONNX graph holds the scaling)."""

    def __init__(self, config: MultiTaskSTConfig, task: str):
        super().__init__(*_classification_head(config, task))
        scaling = config.task_target_scaling.get(task, {})
        num_outputs = config.num_labels_of(task)
        self.register_buffer("target_mean", torch.tensor(scaling.get("mean", [0.0] * num_outputs)))
        self.register_buffer("target_std", torch.tensor(scaling.get("std", [1.0] * num_outputs)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return super().forward(embeddings) * self.target_std + self.target_mean


def _pair_head(config: MultiTaskSTConfig, task: str) -> nn.Module:
    # Reads the pair features (u, v, |u - v|, u * v) of the two texts' shared embeddings (Sentence-BERT's classifier).
    return _classification_head(config, task, input_size=4 * config.embedding_dim)


def pair_features(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """`(u, v, |u - v|, u * v)` of two batches of embeddings `(batch, dim)`: what a pair head reads, `(batch, 4 dim)`."""
    return torch.cat([first, second, (first - second).abs(), first * second], dim=-1)


@dataclass
class TaskInputs:
    """What the task outputs are computed from, row-aligned with the batch: each text's projected embedding, its pair
    text's (zeros where a row has none) and its hard negative's, with masks of the rows that have them."""

    text: torch.Tensor
    pair: torch.Tensor | None = None
    has_pair: torch.Tensor | None = None
    negative: torch.Tensor | None = None
    has_negative: torch.Tensor | None = None

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The second texts' embeddings and the mask of rows that have one (a batch without pairs: zeros, no row)."""
        if self.pair is None:
            return torch.zeros_like(self.text), torch.zeros(
                self.text.shape[0], dtype=torch.bool, device=self.text.device
            )
        return self.pair, self.has_pair


def _text_output(task: str, head: nn.Module, inputs: TaskInputs) -> torch.Tensor:
    return head(inputs.text)


def _pair_head_output(task: str, head: nn.Module, inputs: TaskInputs) -> torch.Tensor:
    pair, has_pair = inputs.pairs()
    output = head(pair_features(inputs.text, pair))
    return output.masked_fill(~has_pair.unsqueeze(-1), 0.0)  # rows without a pair: no output (they have no label)


def _cosine_output(task: str, head: None, inputs: TaskInputs) -> torch.Tensor:
    pair, has_pair = inputs.pairs()
    cosine = F.cosine_similarity(inputs.text.float(), pair.float(), dim=-1).unsqueeze(-1)
    return cosine.masked_fill(~has_pair.unsqueeze(-1), 0.0)


def _contrastive_output(task: str, head: None, inputs: TaskInputs) -> torch.Tensor:
    # The loss compares every anchor with every positive and hard negative of the batch, so the task's output carries
    # the normalised embeddings themselves: [anchor, positive, negative, has_negative], (batch, 3 dim + 1).
    pair, has_pair = inputs.pairs()
    anchor, positive = F.normalize(inputs.text.float(), dim=-1), F.normalize(pair.float(), dim=-1)
    anchor, positive = anchor * has_pair.unsqueeze(-1), positive * has_pair.unsqueeze(-1)
    if inputs.negative is None:
        negative, has_negative = torch.zeros_like(positive), torch.zeros_like(has_pair)
    else:
        negative, has_negative = F.normalize(inputs.negative.float(), dim=-1), inputs.has_negative
        negative = negative * has_negative.unsqueeze(-1)
    return torch.cat([anchor, positive, negative, has_negative.unsqueeze(-1).float()], dim=-1)


def split_contrastive_output(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(anchor, positive, negative, has_negative)` from an `embedding_contrastive` task's output."""
    dim = (output.shape[-1] - 1) // 3
    return output[:, :dim], output[:, dim : 2 * dim], output[:, 2 * dim : 3 * dim], output[:, -1] > 0.5


def _contrastive_scores(output: torch.Tensor) -> torch.Tensor:
    anchor, positive, _, _ = split_contrastive_output(output)
    return (anchor * positive).sum(dim=-1, keepdim=True)


# Per kind of task (`config.task_kinds`, see `configuration_multitask_st.TASK_KINDS`): its head (built from the config
# and the task's name) and the scores `predict` reports. A new kind adds an entry to each, its loss
# (`losses_multitask_st.TASK_LOSSES`), its label width (`configuration_multitask_st.LABEL_WIDTHS`) and a label-row
# formatter in the inference engine.
TASK_HEADS: dict[str, Callable[[MultiTaskSTConfig, str], nn.Module] | None] = {
    SINGLE_LABEL: _classification_head,
    MULTI_LABEL: _classification_head,
    REGRESSION: RegressionHead,
    PAIR_CLASSIFICATION: _pair_head,
    PAIR_REGRESSION: _pair_head,
    EMBEDDING: None,  # no head: the embedding is the output
    EMBEDDING_CONTRASTIVE: None,
}
# Per kind: its output from the batch's embeddings (`TaskInputs`): a head on one text's embedding, a pair head on two,
# or the pair's cosine / embeddings for the embedding tasks.
TASK_OUTPUTS: dict[str, Callable[[str, nn.Module | None, TaskInputs], torch.Tensor]] = {
    SINGLE_LABEL: _text_output,
    MULTI_LABEL: _text_output,
    REGRESSION: _text_output,
    PAIR_CLASSIFICATION: _pair_head_output,
    PAIR_REGRESSION: _pair_head_output,
    EMBEDDING: _cosine_output,
    EMBEDDING_CONTRASTIVE: _contrastive_output,
}
TASK_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    SINGLE_LABEL: lambda logits: logits.float().softmax(-1),
    MULTI_LABEL: lambda logits: logits.float().sigmoid(),
    REGRESSION: lambda outputs: outputs.float(),
    PAIR_CLASSIFICATION: lambda logits: logits.float().softmax(-1),
    PAIR_REGRESSION: lambda outputs: outputs.float(),
    EMBEDDING: lambda cosines: cosines.float(),
    EMBEDDING_CONTRASTIVE: _contrastive_scores,
}
# What `encode`/`predict`/the pipeline take as `dtype`: the precision their matmuls run in, under `torch.autocast` (bf16
# runs through oneDNN's AVX-512 BF16 / AMX kernels on CPU). The weights stay as loaded (no copy, nothing changes for
# another thread), and the outputs come back float32. float32 (or None) runs the model as loaded, without autocast.
INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_inference_dtype(dtype) -> torch.dtype | None:
    """`dtype` as a torch dtype (a name such as `"bfloat16"` is taken too), or `None` for the model as loaded."""
    if dtype is None:
        return None
    resolved = INFERENCE_DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in INFERENCE_DTYPES.values():
        accepted = ", ".join(f"torch.{name}" for name in INFERENCE_DTYPES)
        raise ValueError(f"`dtype` must be one of {accepted} (or its name as a string) or None, got {dtype!r}.")
    return resolved


def inference_precision(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in for `dtype` (see `check_inference_dtype`): autocast on `device`'s type for a
    reduced precision, nothing otherwise. Autocast's state is per thread, so concurrent calls do not mix."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def append_output_rows(head: nn.Module, count: int, init: Callable[[nn.Module], None]):
    """Give a classification head `count` more outputs: its last Linear becomes one with `count` more rows, the old
    rows (weights and biases) copied as they are, the new ones initialised by `init`."""
    parent, name, old = None, None, None
    for module in head.modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, name, old = module, child_name, child
    if old is None:
        raise ValueError(f"The head {head} has no Linear output layer to give more labels.")
    new = nn.Linear(old.in_features, old.out_features + count, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    init(new)
    with torch.no_grad():
        new.weight[: old.out_features] = old.weight
        if old.bias is not None:
            new.bias[: old.out_features] = old.bias
    setattr(parent, name, new)


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
