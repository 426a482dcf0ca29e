"""Freezing and progressive unfreezing as a `TrainerCallback`.

The stage is a pure function of the training progress (`state.global_step` or `state.epoch`), so resuming from a
checkpoint lands in the same stage without storing anything extra.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback
from transformers.utils import logging

from ..parts_multitask_st import parse_part


logger = logging.get_logger(__name__)


def unfreezing_stages(part_names: list[str], layers_per_stage: int = 1) -> list[list[str]]:
    """The parts that each progressive stage adds, top of the network first.

    Stage 0: the heads. Stage 1: pooling and projection (if they have parameters). Then the backbone layers from the
    top down, `layers_per_stage` at a time (anything else in the backbone joins the top layer). The embeddings last.

    Example:
        >>> unfreezing_stages(["backbone.embeddings", "backbone.layer.0", "backbone.layer.1", "projection", "head:a"])
        [['head:a'], ['projection'], ['backbone.layer.1'], ['backbone.layer.0'], ['backbone.embeddings']]
    """
    kinds = {part: parse_part(part) for part in part_names}
    heads = [part for part in part_names if kinds[part][0] == "head"]
    middle = [part for part in part_names if part in ("pooling", "projection")]
    layers = sorted((part for part in part_names if kinds[part][0] == "backbone.layer"), key=lambda p: -kinds[p][1])
    layer_stages = [layers[start : start + layers_per_stage] for start in range(0, len(layers), layers_per_stage)]
    # Whatever else the backbone holds (a final norm, say) sits above its layers: it joins the first backbone stage.
    other = ["backbone.other"] if "backbone.other" in part_names else []
    layer_stages = [other + stage for stage in layer_stages[:1]] + layer_stages[1:] if layer_stages else [other]
    embeddings = ["backbone.embeddings"] if "backbone.embeddings" in part_names else []
    stages = [heads, middle, *layer_stages, embeddings]
    return [stage for stage in stages if stage]


class UnfreezingCallback(TrainerCallback):
    """Keeps `frozen` parts frozen all run and, with `schedule="progressive"`, unfreezes the rest stage by stage.

    Args:
        part_names: the model's `parameter_parts()` names.
        frozen: parts frozen for the whole run (already resolved with `model.resolve_parts`).
        schedule: `"none"` (everything but `frozen` trains) or `"progressive"`.
        every: epochs or steps between stages; unit: `"epoch"` or `"step"`.
        layers_per_stage: backbone layers added per stage.
    """

    def __init__(
        self,
        part_names: list[str],
        frozen: list[str] = (),
        schedule: str = "none",
        every: float = 1.0,
        unit: str = "epoch",
        layers_per_stage: int = 1,
    ):
        self.part_names = list(part_names)
        self.frozen = set(frozen)
        self.schedule = schedule
        self.every = every
        self.unit = unit
        self.stages = unfreezing_stages(self.part_names, layers_per_stage) if schedule == "progressive" else []
        self.stage: int | None = None

    @property
    def freezes_anything(self) -> bool:
        return bool(self.frozen) or self.schedule == "progressive"

    def stage_at(self, global_step: int, epoch: float | None) -> int:
        if self.schedule != "progressive":
            return 0
        progress = global_step if self.unit == "step" else (epoch or 0.0)
        # A small epsilon: epoch 1.9999999 after float accumulation still counts as 2.
        return min(math.floor(progress / self.every + 1e-6), len(self.stages) - 1)

    def trainable_parts(self, stage: int) -> list[str]:
        if self.schedule == "progressive":
            unlocked = {part for added in self.stages[: stage + 1] for part in added}
        else:
            unlocked = set(self.part_names)
        return [part for part in self.part_names if part in unlocked and part not in self.frozen]

    def check_something_trains(self):
        last_stage = len(self.stages) - 1 if self.stages else 0
        if not self.trainable_parts(last_stage):
            raise ValueError(
                f"Every part of the model is frozen ({sorted(self.frozen)}), so training would change nothing. "
                "Use `trainer.evaluate()` or `model.encode()` for pure feature extraction, or freeze less."
            )

    def apply(self, model, stage: int):
        trainable = set(self.trainable_parts(stage))
        for part, named_parameters in model.parameter_parts().items():
            for _, parameter in named_parameters:
                parameter.requires_grad_(part in trainable)
        if stage != self.stage and self.freezes_anything:
            frozen = [part for part in self.part_names if part not in trainable]
            logger.info(f"Unfreezing stage {stage}: training {sorted(trainable)}; frozen {frozen}.")
        self.stage = stage

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.apply(model, self.stage_at(state.global_step, state.epoch))

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        stage = self.stage_at(state.global_step, state.epoch)
        if stage != self.stage:
            self.apply(model, stage)
