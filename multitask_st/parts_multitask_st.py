"""The model's parameters seen as parts: naming them, grouping them, freezing them, checking them.

This file is part of the Hub payload (copied next to the weights by `save_pretrained`); it imports only torch and
transformers. The
part names are what freezing, the learning-rate groups and the unfreezing schedule address.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from transformers.utils import logging


logger = logging.get_logger(__name__)


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


def backbone_layers(backbone: nn.Module, num_layers: int) -> list[nn.Module]:
    """The backbone's `num_layers` transformer layers, bottom to top."""
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return list(module)
    raise ValueError(
        f"Cannot find the {num_layers} layers of backbone {type(backbone).__name__}: no ModuleList of "
        "that length; layer-wise freezing and learning rates need one."
    )


def parameter_parts(model: nn.Module, layers: Sequence[nn.Module]) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """`model`'s parameters by part (see `MultiTaskSTModel.parameter_parts`), bottom to top."""
    owner = {}
    embeddings = getattr(model.backbone, "embeddings", None)
    if embeddings is None:
        raise ValueError(f"Backbone {type(model.backbone).__name__} has no `embeddings` module.")
    for param in embeddings.parameters():
        owner[param] = "backbone.embeddings"
    for index, layer in enumerate(layers):
        for param in layer.parameters():
            owner[param] = f"backbone.layer.{index}"
    parts: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in dict.fromkeys(owner.values())}
    for name, param in model.named_parameters():
        if name.startswith("backbone."):
            part = owner.get(param, "backbone.other")
        elif name.startswith("heads."):
            part = "head:" + name.split(".")[1]
        else:
            part = name.split(".")[0]  # pooling / projection
        parts.setdefault(part, []).append((name, param))
    return {name: params for name, params in parts.items() if params}


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The outermost submodules of `model` that hold parameters and train none of them (`requires_grad` off on
    every one): the frozen parts as modules, without any module that holds a trainable parameter."""
    found = []

    def visit(module: nn.Module):
        parameters = list(module.parameters())
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    for child in model.children():
        visit(child)
    return found


def resolve_parts(parts: list[str], targets: Sequence[str]) -> list[str]:
    """The parts that freeze targets select, in model order; a target that matches none is an error."""
    selected = []
    for target in targets:
        matches = [part for part in parts if _part_matches(part, target)]
        if not matches:
            valid = ["all", "backbone", "heads", *parts]
            raise ValueError(f"Freeze target {target!r} matches no part of this model; valid targets: {valid}.")
        selected.extend(part for part in matches if part not in selected)
    return [part for part in parts if part in selected]


def set_trainable(parts: dict[str, list[tuple[str, nn.Parameter]]], targets: Sequence[str], trainable: bool):
    if not targets:
        raise ValueError("Name at least one part, e.g. `freeze('backbone')`.")
    for part in resolve_parts(list(parts), targets):
        for _, param in parts[part]:
            param.requires_grad_(trainable)


def _part_matches(part: str, target: str) -> bool:
    if target == "all" or part == target:
        return True
    if target == "heads":
        return parse_part(part)[0] == "head"
    return part.startswith(target + ".")


def non_finite_parameters(model: nn.Module) -> list[str]:
    """Names of the floating-point weights and buffers that hold a NaN or an infinity."""
    import torch

    return [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
    ]


def check_loaded_weights(model: nn.Module, info: dict, source):
    """After `from_pretrained`: a warning when weights hold NaN or inf, an error when a head named in config.json is
    absent from the weights (it would start random, silently)."""
    non_finite = non_finite_parameters(model)
    if non_finite:
        shown = ", ".join(non_finite[:5]) + (f" and {len(non_finite) - 5} more" if len(non_finite) > 5 else "")
        logger.warning(
            f"The weights loaded from {str(source)!r} hold NaN or inf values in {shown}: "
            "its embeddings and predictions will be NaN. The training that wrote them diverged."
        )
    _check_heads_loaded(info, model.config.task_names, source)


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
