"""Optimizer parameter groups: one per model part (backbone layer, pooling/projection, head) and weight-decay class,
with layer-wise learning-rate decay. Pure functions: the trainer builds its optimizer from them, the record reports them.
"""

from __future__ import annotations

from ..modeling_multitask_st import MultiTaskSTModel
from ..parts_multitask_st import parse_part


def learning_rate_scale(
    part: str, num_layers: int, layer_decay: float, projection_lr_multiplier: float, head_lr_multiplier: float
) -> float:
    """Multiplier of the base learning rate for one of `MultiTaskSTModel.parameter_parts()`."""
    kind, key = parse_part(part)
    if kind == "head":
        return head_lr_multiplier
    if kind in ("pooling", "projection"):
        return projection_lr_multiplier
    if kind == "backbone.embeddings":
        return layer_decay**num_layers
    if kind == "backbone.layer":
        return layer_decay ** (num_layers - 1 - key)
    return 1.0  # backbone.other sits with the top layer


def build_parameter_groups(
    model: MultiTaskSTModel,
    learning_rate: float,
    weight_decay: float = 0.0,
    layer_decay: float = 1.0,
    projection_lr_multiplier: float = 2.0,
    head_lr_multiplier: float = 3.0,
) -> list[dict]:
    """Optimizer parameter groups: one per model part and weight-decay class.

    Every parameter lands in exactly one group, frozen ones included: a part unfrozen later then trains (a frozen
    parameter has no gradient, so the optimizer leaves it alone until then). Biases and LayerNorm weights (any
    parameter with fewer than 2 dimensions) get no weight decay. Each group carries a `name`, e.g.
    `backbone.layer.5` or `head:topic.no_decay`.
    """
    parts = model.parameter_parts()
    num_layers = sum(parse_part(part)[0] == "backbone.layer" for part in parts)
    groups = []
    for part, named_parameters in parts.items():
        lr = learning_rate * learning_rate_scale(
            part, num_layers, layer_decay, projection_lr_multiplier, head_lr_multiplier
        )
        decayed = [parameter for _, parameter in named_parameters if parameter.dim() >= 2]
        not_decayed = [parameter for _, parameter in named_parameters if parameter.dim() < 2]
        if decayed:
            groups.append({"name": part, "params": decayed, "lr": lr, "weight_decay": weight_decay})
        if not_decayed:
            groups.append({"name": f"{part}.no_decay", "params": not_decayed, "lr": lr, "weight_decay": 0.0})
    return groups
