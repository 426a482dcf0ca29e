"""Per kind of task, its loss; and the multi-task loss: the weighted sum over a batch's tasks, after checking labels.

This file is part of the Hub payload (copied next to the weights by `save_pretrained`); it imports only torch,
transformers and the payload files next to it. Every loss gives exactly 0 for a task with no labelled example in the
batch (and keeps the task's head in the graph, with zero gradient, as distributed training needs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .configuration_multitask_st import MultiTaskSTConfig
from .inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_KINDS,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)
from .layers_multitask_st import TaskInputs, split_contrastive_output
from .task_fields_multitask_st import BALANCED


IGNORE_INDEX = -100  # label value for "this example has no label for this task"


def labelled_rows(labels: torch.Tensor, kind: str) -> torch.Tensor:
    """`(batch,)` bool: which rows of a task's label columns `(batch, width)` hold a label (NaN, or -100 in an id
    column, mark "no label"); a regression row counts when any of its outputs has a target. Works on numpy too."""
    present = labels == labels  # NaN != NaN
    if kind not in (REGRESSION, PAIR_REGRESSION, EMBEDDING):
        present = present & (labels != IGNORE_INDEX)
        return present.all(-1)
    return present.any(-1)


def _class_weights(option, task: str, name: str, device) -> torch.Tensor | None:
    # The config has checked the numbers (one positive number per label); "balanced" is the trainer's to resolve.
    if option is None:
        return None
    if option == BALANCED:
        raise ValueError(
            f"`task_loss_options[{task!r}][{name!r}]` is 'balanced', which `MultiTaskTrainer` turns into numbers "
            "from the training labels; train with it, or give the numbers."
        )
    return torch.tensor(option, dtype=torch.float32, device=device)


def _single_label_loss(logits: torch.Tensor, labels: torch.Tensor, config: MultiTaskSTConfig, task: str):
    # Sum then divide by the labelled count (weighted: by the labelled examples' weights, as torch's "mean"): a task
    # absent from the batch gives exactly 0 (not NaN), and its head still takes part in the graph (zero gradient),
    # which distributed training needs.
    options = config.task_loss_options.get(task, {})
    labels = labels[:, 0]
    labelled = labelled_rows(labels[:, None], SINGLE_LABEL)
    ids = torch.where(labelled, labels, torch.full_like(labels, IGNORE_INDEX)).long()
    weight = _class_weights(options.get("class_weights"), task, "class_weights", logits.device)
    loss = F.cross_entropy(
        logits.float(),
        ids,
        weight=weight,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=options.get("label_smoothing", 0.0),
    )
    total = labelled.sum() if weight is None else weight[ids.clamp(min=0)][labelled].sum()
    return loss / total.clamp(min=1) if weight is None else loss / total.clamp(min=1e-12)


def _multi_label_loss(logits: torch.Tensor, labels: torch.Tensor, config: MultiTaskSTConfig, task: str):
    # Binary cross-entropy per label, averaged over the labelled rows' labels; unlabelled rows weigh 0 (masked, not
    # dropped: the head stays in the graph), so an absent task gives exactly 0.
    options = config.task_loss_options.get(task, {})
    labelled = labelled_rows(labels, MULTI_LABEL)
    targets = torch.where(labelled[:, None], labels.float(), torch.zeros_like(labels, dtype=torch.float32))
    smoothing = options.get("label_smoothing", 0.0)
    if smoothing:
        targets = targets * (1.0 - smoothing) + 0.5 * smoothing
    pos_weight = _class_weights(options.get("pos_weight"), task, "pos_weight", logits.device)
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight, reduction="none")
    mask = labelled[:, None].to(losses.dtype)
    return (losses * mask).sum() / (mask.sum() * logits.shape[-1]).clamp(min=1)


_REGRESSION_LOSSES = {
    "mse": lambda error: error.square(),
    "l1": lambda error: error.abs(),
    "huber": lambda error: F.huber_loss(error, torch.zeros_like(error), reduction="none", delta=1.0),
}


def _regression_loss(outputs: torch.Tensor, labels: torch.Tensor, config: MultiTaskSTConfig, task: str):
    # The head predicts in the data's units (`RegressionHead`); the error is divided by the targets' std, which is
    # the error between the standardised target and the head's standardised output. Missing targets (NaN) weigh 0.
    options = config.task_loss_options.get(task, {})
    present = labels == labels
    std = torch.tensor(
        config.task_target_scaling.get(task, {}).get("std", [1.0] * outputs.shape[-1]), device=outputs.device
    )
    error = (outputs.float() - torch.where(present, labels.float(), outputs.detach().float())) / std
    losses = _REGRESSION_LOSSES[options.get("loss", "mse")](error)
    mask = present.to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


# Scale of the cosine similarities in the embedding losses (sentence-transformers' CoSENT and in-batch negatives use 20).
SIMILARITY_SCALE = 20.0


def _pair_regression_loss(outputs: torch.Tensor, labels: torch.Tensor, config: MultiTaskSTConfig, task: str):
    # Mean squared error over the labelled rows (NaN: no label); an absent task gives exactly 0.
    present = labels[:, 0] == labels[:, 0]
    errors = (outputs[:, 0].float() - torch.where(present, labels[:, 0].float(), outputs[:, 0].detach().float())) ** 2
    return (errors * present).sum() / present.sum().clamp(min=1)


def _cosent_loss(cosines: torch.Tensor, labels: torch.Tensor, config: MultiTaskSTConfig, task: str):
    """CoSENT (Su, 2022): `log(1 + sum over pairs (i, j) with score_i > score_j of exp(s (cos_j - cos_i)))` over the
    labelled rows, so only the order of the similarities is trained. Fewer than two labelled rows (or all scores equal)
    give exactly 0."""
    scores = labels[:, 0].float()
    labelled = scores == scores
    scaled = cosines[:, 0].float() * SIMILARITY_SCALE
    # (i, j) where i should be more similar than j: both labelled, score_i > score_j (NaN compares False).
    ordered = labelled.unsqueeze(1) & labelled.unsqueeze(0) & (scores.unsqueeze(1) > scores.unsqueeze(0))
    differences = (scaled.unsqueeze(0) - scaled.unsqueeze(1)).masked_fill(~ordered, float("-inf"))  # cos_j - cos_i
    with_zero = torch.cat([scaled.new_zeros(1), differences.flatten()])  # the 1 in log(1 + ...)
    return torch.logsumexp(with_zero, dim=0)


def _contrastive_loss(output: torch.Tensor, labels: torch.Tensor, config: MultiTaskSTConfig, task: str):
    """In-batch negatives (MultipleNegativesRankingLoss): each labelled anchor's positive must be the most similar of
    every labelled row's positive and hard negative. No labelled row gives exactly 0."""
    anchor, positive, negative, has_negative = split_contrastive_output(output)
    labelled = labelled_rows(labels, EMBEDDING_CONTRASTIVE)
    candidates = torch.cat([positive[labelled], negative[labelled & has_negative]])
    similarities = anchor[labelled] @ candidates.T * SIMILARITY_SCALE  # (anchors, candidates)
    targets = torch.arange(similarities.shape[0], device=similarities.device)
    loss = F.cross_entropy(similarities, targets, reduction="sum")  # 0 with no labelled row
    return loss / labelled.sum().clamp(min=1) + 0.0 * output.sum()  # the task keeps its place in the graph


# Per kind of task: its loss from the task's outputs (`layers_multitask_st.TASK_OUTPUTS`), the task's columns of
# `labels` (`config.label_slices()`), the config and the task's name.
TASK_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, MultiTaskSTConfig, str], torch.Tensor]] = {
    SINGLE_LABEL: _single_label_loss,
    MULTI_LABEL: _multi_label_loss,
    REGRESSION: _regression_loss,
    PAIR_CLASSIFICATION: _single_label_loss,
    PAIR_REGRESSION: _pair_regression_loss,
    EMBEDDING: _cosent_loss,
    EMBEDDING_CONTRASTIVE: _contrastive_loss,
}
# The kinds whose label column holds class ids.
CLASS_ID_KINDS = (SINGLE_LABEL, PAIR_CLASSIFICATION)


def multitask_loss(
    config: MultiTaskSTConfig, logits: dict[str, torch.Tensor], labels: torch.Tensor, inputs: TaskInputs
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum over the batch's tasks of each task's loss (`TASK_LOSSES`), and the per-task losses, after
    checking that `labels` has the config's columns and every label is one its task takes."""
    task_names = config.task_names
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
            if invalid.any():
                row = invalid.nonzero()[0].item()
                raise ValueError(
                    f"Label {columns[row, 0].item()} of task {task!r} (batch row {row}) is not in "
                    f"0..{config.num_labels_of(task) - 1} nor {IGNORE_INDEX} (or NaN in a float tensor)."
                )
            continue
        if kind == MULTI_LABEL:
            present = columns == columns
            invalid = (present.any(-1) & ~labelled) | (labelled & ((columns < 0) | (columns > 1)).any(-1))
            expected = "0 or 1 per label (a soft target in [0, 1]), or NaN in every column"
        elif kind == EMBEDDING_CONTRASTIVE:
            invalid = labelled & (columns[:, 0] != 0)
            expected = "0 (the row is an anchor and its positive), -100 or NaN"
        else:
            invalid = columns.isinf().any(-1)
            expected = "finite targets, or NaN where there is none"
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
        weighted = config.task_loss_weights[task] * task_loss
        loss = weighted if loss is None else loss + weighted
    return loss, task_losses
