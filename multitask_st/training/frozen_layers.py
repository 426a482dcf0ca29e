"""Training above a frozen bottom without running the bottom every step (`cache_frozen_layers`).

A run that freezes the embeddings and the bottom `k` transformer layers for all of it (`--freeze backbone.embeddings
backbone.layer.0-3`, as adding a task to a trained model does) sees the same hidden states come out of layer `k - 1`
for a text at every epoch, once those layers run without dropout. Yet each step runs them again: on MiniLM with 4 of 6
layers frozen that is most of a step's forward pass. With `cache_frozen_layers` the trainer computes them once, before
the first step, in the same inference pass that computes the distillation targets (it is a full forward pass anyway:
a forward hook on layer `k - 1` keeps its output), and keeps them per example as a dataset column
(`frozen_hidden_states`, the real tokens only: `(length, hidden_size)` float32). Each training step then gives them to
the backbone as `inputs_embeds` while only the layers above run (`layers_above`): the frozen embedding module is
stepped over and the backbone's own layer list holds the top layers for the step, so its own attention masks and
layer calls are used. The cached layers run in eval mode, as `frozen_parts_eval_mode` runs them.

Before the first step the route is checked on a batch of the training texts: the cached route must give what the full
forward gives (`check_cached_route`), or the run stops, naming the backbone; a backbone whose embedding step or
layers do more than this module assumes (an encoder-wide final norm, say) is refused, not trained on wrong inputs.

Memory: one float32 vector per token and training example (MiniLM, 1,000 posts of up to 128 tokens: ~200 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import datasets
import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

from ..inference_multitask_st import MODEL_INPUTS, progress_bar, run_in_length_order
from ..layers_multitask_st import eval_twin
from ..modeling_multitask_st import MultiTaskSTModel
from ..parts_multitask_st import parse_part
from .collator import FROZEN_STATES_COLUMN, TEACHER_COLUMN, TEACHER_LOGITS_COLUMN
from .distillation import add_float_columns, teacher_targets


logger = logging.get_logger(__name__)


def frozen_bottom_depth(frozen_parts: Sequence[str], num_layers: int) -> int:
    """How many bottom layers a cache can stand in for: 0 unless `backbone.embeddings` is among the parts frozen all
    run, else the number of consecutive frozen layers from layer 0 (all of them: the cache would leave nothing to run,
    so at most `num_layers - 1`)."""
    if "backbone.embeddings" not in frozen_parts:
        return 0
    frozen_layers = {index for name, index in map(parse_part, frozen_parts) if name == "backbone.layer"}
    depth = 0
    while depth < num_layers - 1 and depth in frozen_layers:
        depth += 1
    return depth


class _GivenStates(nn.Module):
    """Stands in for the backbone's embedding module while the layers above a cache run: gives back the hidden states
    the backbone was given as `inputs_embeds` (by keyword, as BERT passes them, or as the one floating-point tensor
    among its positional arguments, as DistilBERT does)."""

    def forward(self, *args, inputs_embeds=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = next(arg for arg in args if isinstance(arg, torch.Tensor) and arg.is_floating_point())
        return inputs_embeds


def _layer_list(model: MultiTaskSTModel) -> tuple[nn.Module, str, nn.ModuleList]:
    """The module holding the backbone's `nn.ModuleList` of layers, that list's attribute name, and the list."""
    layers = model.backbone_layers()
    for name, module in model.backbone.named_modules():
        if isinstance(module, nn.ModuleList) and list(module) == layers:
            parent_name, _, attribute = name.rpartition(".")
            return model.backbone.get_submodule(parent_name), attribute, module
    raise ValueError(f"Cannot find the layer list of backbone {type(model.backbone).__name__}.")  # pragma: no cover


@contextmanager
def layers_above(model: MultiTaskSTModel, depth: int):
    """Within the block, `model`'s backbone runs only its layers from `depth` up and takes their input as
    `inputs_embeds`: its embedding module is replaced by `_GivenStates` and its layer list by the top of it. Both are
    put back on leaving, error or not. The parameters are the model's own, so gradients reach them as usual."""
    parent, attribute, layers = _layer_list(model)
    embeddings = model.backbone.embeddings
    model.backbone.embeddings = _GivenStates()
    setattr(parent, attribute, nn.ModuleList(list(layers)[depth:]))
    try:
        yield
    finally:
        model.backbone.embeddings = embeddings
        setattr(parent, attribute, layers)


def forward_above(model: MultiTaskSTModel, inputs: dict, depth: int, **kwargs):
    """`model(**inputs)` for a batch whose `frozen_hidden_states` (what layer `depth - 1` gave) stand in for its
    token ids: only the layers from `depth` up run."""
    inputs = dict(inputs)
    states = inputs.pop("frozen_hidden_states")
    for key in MODEL_INPUTS:
        if key != "attention_mask":
            inputs.pop(key, None)  # the embedding step they feed is stepped over
    with layers_above(model, depth):
        return model(**inputs, inputs_embeds=states.to(model.dtype), **kwargs)


def add_frozen_layer_columns(
    model: MultiTaskSTModel,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    depth: int,
    teacher_columns: Sequence[str] = (),
    held_tasks: Sequence[str] = (),
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> datasets.Dataset:
    """`dataset` with a `frozen_hidden_states` column (per example, what layer `depth - 1` gives for its real tokens,
    `(length, hidden_size)` float32) and the `teacher_columns` asked for (`teacher_embedding`, `teacher_logits`, as
    `add_teacher_embeddings` gives them), all from one pass of the model as it is now, in eval mode (on an eval twin:
    the model's own mode is left alone), longest texts first, padded by `tokenizer.pad` as the training batches are."""
    if "input_ids" not in dataset.column_names or len(dataset) == 0:
        raise ValueError(
            f"Caching frozen layers needs tokenised examples; the dataset has {len(dataset)} rows and columns "
            f"{dataset.column_names}."
        )
    logger.info(
        f"Computing what the frozen embeddings and bottom {depth} layer(s) give for {len(dataset)} training examples "
        "(once: each step runs only the layers above)."
    )
    encodings = dataset.select_columns([key for key in MODEL_INPUTS if key in dataset.column_names]).to_dict()
    states: list[np.ndarray | None] = [None] * len(dataset)
    captured = []
    hook = model.backbone_layers()[depth - 1].register_forward_hook(
        lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output)
    )
    model = eval_twin(model)  # no dropout, and the model's own mode left alone (the hook is shared with the twin)

    def run(batch: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        padded = tokenizer.pad({key: [encodings[key][i] for i in batch] for key in encodings}, return_tensors="pt")
        inputs = {key: padded[key].to(model.device) for key in encodings}
        captured.clear()
        pooled = model.pool(**inputs)[0]
        real = inputs["attention_mask"].bool()
        for row, index in enumerate(batch):
            states[index] = captured[0][row][real[row]].float().cpu().numpy()
        return teacher_targets(model, pooled, held_tasks) if teacher_columns else (None, None)

    progress = progress_bar(len(dataset), "Frozen layers and teacher outputs", show_progress_bar)
    try:
        with torch.inference_mode():
            targets, inverse = run_in_length_order(
                [len(ids) for ids in encodings["input_ids"]], batch_size, run, progress
            )
    finally:
        hook.remove()
        progress is not None and progress.close()
    embeddings, logits = zip(*targets, strict=True)
    columns = {TEACHER_COLUMN: embeddings, TEACHER_LOGITS_COLUMN: logits}
    teacher = {column: torch.cat(columns[column]).cpu().numpy()[inverse] for column in teacher_columns}
    return add_float_columns(dataset, {FROZEN_STATES_COLUMN: states, **teacher})


def check_cached_route(model: MultiTaskSTModel, batch: dict, depth: int, atol: float = 1e-4):
    """Raises unless the cached route (`forward_above` from the batch's `frozen_hidden_states`) gives the embeddings
    and head outputs that the full forward gives on the same batch (eval mode, no gradients): the check that the
    backbone's layers can be resumed from a cache at all."""
    inputs = {key: value for key, value in batch.items() if key in MODEL_INPUTS}
    model = eval_twin(model)
    with torch.inference_mode():
        full = model(**inputs)
        cached = forward_above(model, {**inputs, "frozen_hidden_states": batch["frozen_hidden_states"]}, depth)
    pairs = {"embeddings": (full.embeddings, cached.embeddings)}
    pairs.update({f"logits of {task!r}": (full.logits[task], cached.logits[task]) for task in full.logits})
    for what, (expected, got) in pairs.items():
        difference = (expected.float() - got.float()).abs().max().item()
        if not difference <= atol:
            raise RuntimeError(
                f"cache_frozen_layers: a {type(model.backbone).__name__} backbone resumed at layer {depth} from its "
                f"cached hidden states gives other {what} than its full forward pass (largest difference "
                f"{difference:.3g}, tolerance {atol}): its layers cannot be resumed from a cache. Train without "
                "`cache_frozen_layers`."
            )
