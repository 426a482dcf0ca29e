"""Batches examples of several tasks: dynamic padding plus the label matrix (`MultiTaskSTModel.forward`'s `labels`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..inference_multitask_st import MODEL_INPUTS
from ..losses_multitask_st import IGNORE_INDEX


# The prefixes of the second texts' model inputs (`pair_input_ids`, ...), see `training.tokenization`.
SECOND_TEXT_PREFIXES = ("pair_", "negative_")
# The column holding each example's starting-encoder embedding (see `multitask_st.training.distillation`).
TEACHER_COLUMN = "teacher_embedding"
# The starting model's raw logits of the heads a run holds (no training data for them), task after task.
TEACHER_LOGITS_COLUMN = "teacher_logits"
# What the frozen bottom layers give for each example's tokens, `(length, hidden)` (see `training.frozen_layers`).
FROZEN_STATES_COLUMN = "frozen_hidden_states"


@dataclass
class MultiTaskDataCollator:
    """Pads tokenised examples and builds `labels`: `(batch, num_tasks)` label ids, `-100` where a task has no label,
    or, given `label_widths`, `(batch, sum of widths)` float32 columns, NaN where a task has no label.

    Each feature carries `input_ids` (and optionally `attention_mask`, `token_type_ids`) plus either `task_id` and
    `label` (an example labelled for one task, as the task datasets give: an id, or the task's columns as a list), or
    `labels`, a full row. A feature with neither is unlabelled. Batches may hold one task or several. Features that
    carry a `teacher_embedding` (see `multitask_st.training.distillation`) also give `teacher_embeddings`,
    `(batch, hidden)`, and those that carry `teacher_logits` give `teacher_logits`, `(batch, labels of the held
    heads)`; those that carry `frozen_hidden_states` give them padded as the token ids are, `(batch, length,
    hidden)`.

    Args:
        tokenizer: gives the pad id and padding side.
        num_tasks: number of tasks (`len(config.tasks)`).
        pad_to_multiple_of: pad lengths up to a multiple of this (8 helps tensor cores under mixed precision).
        label_widths: per task, its columns of `labels` (`config.label_slices()`); leave it out when every task is
            single-label classification (one integer column each).

    Example:
        >>> collator = MultiTaskDataCollator(tokenizer, num_tasks=2)
        >>> batch = collator([{"input_ids": [2, 7, 3], "task_id": 1, "label": 0}, {"input_ids": [2, 3], "task_id": 0, "label": 4}])
        >>> batch["labels"].tolist()
        [[-100, 0], [4, -100]]
    """

    tokenizer: PreTrainedTokenizerBase
    num_tasks: int
    pad_to_multiple_of: int | None = None
    label_widths: list[int] | None = None

    def __post_init__(self):
        if self.label_widths is not None and len(self.label_widths) != self.num_tasks:
            raise ValueError(
                f"`label_widths` must give one width per task ({self.num_tasks}), got {self.label_widths}."
            )

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("Cannot collate an empty list of features.")
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"Tokenizer {type(self.tokenizer).__name__} has no pad token; set `tokenizer.pad_token`.")
        # Padded by the tokenizer, as `encode` / `predict` pad: one padding path (side, pad id, attention mask).
        keys = [key for key in MODEL_INPUTS if any(key in feature for feature in features)]
        model_inputs = [
            # A feature without an attention mask attends to every token it has (and has token type 0).
            {key: feature[key] if key in feature else [int(key == "attention_mask")] * len(feature["input_ids"])
             for key in keys}
            for feature in features
        ]  # fmt: skip
        padded = self.tokenizer.pad(model_inputs, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        batch = {key: padded[key].long() for key in MODEL_INPUTS if key in padded}
        for prefix in SECOND_TEXT_PREFIXES:
            batch.update(self._second_texts(features, prefix))
        dtype = torch.long if self.label_widths is None else torch.float32
        batch["labels"] = torch.tensor([self._label_row(feature) for feature in features], dtype=dtype)
        if TEACHER_COLUMN in features[0]:  # the starting encoder's embeddings, for MultiTaskTrainer's distillation
            batch["teacher_embeddings"] = torch.tensor(
                np.stack([feature[TEACHER_COLUMN] for feature in features]), dtype=torch.float32
            )
        if TEACHER_LOGITS_COLUMN in features[0]:  # the held heads' logits, for learning without forgetting
            batch["teacher_logits"] = torch.tensor(
                np.stack([feature[TEACHER_LOGITS_COLUMN] for feature in features]), dtype=torch.float32
            )
        if FROZEN_STATES_COLUMN in features[0]:  # what the cached frozen layers gave, for the layers above them
            batch["frozen_hidden_states"] = self._pad_states(
                [feature[FROZEN_STATES_COLUMN] for feature in features], batch["input_ids"].shape[1]
            )
        return batch

    def _pad_states(self, states: list, length: int) -> torch.Tensor:
        """Per-token states of the examples, zero-padded to `length` on the tokenizer's padding side (the attention
        mask hides the padding from the layers above)."""
        padded = torch.zeros(len(states), length, np.shape(states[0])[-1], dtype=torch.float32)
        for row, values in enumerate(states):
            values = torch.as_tensor(np.asarray(values, dtype=np.float32))
            if self.tokenizer.padding_side == "left":
                padded[row, length - len(values) :] = values
            else:
                padded[row, : len(values)] = values
        return padded

    def _second_texts(self, features: list[dict], prefix: str) -> dict[str, torch.Tensor]:
        """The second texts (or hard negatives) of the rows that have them, padded on their own, and those rows:
        `{prefix}input_ids`, ..., `{prefix}rows` (what the model's forward takes)."""
        rows = [index for index, feature in enumerate(features) if feature.get(prefix + "input_ids") is not None]
        if not rows:
            return {}
        keys = [key for key in MODEL_INPUTS if features[rows[0]].get(prefix + key) is not None]
        padded = self.tokenizer.pad(
            [{key: features[index][prefix + key] for key in keys} for index in rows],
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        second = {prefix + key: padded[key].long() for key in MODEL_INPUTS if key in padded}
        second[prefix + "rows"] = torch.tensor(rows, dtype=torch.long)
        return second

    def _label_row(self, feature: dict) -> list:
        widths = self.label_widths or [1] * self.num_tasks
        if feature.get("labels") is not None:
            row = [int(label) for label in feature["labels"]] if self.label_widths is None else list(feature["labels"])
            if len(row) != sum(widths):
                what = f"one id per task ({self.num_tasks})" if self.label_widths is None else f"{sum(widths)} columns"
                raise ValueError(f"`labels` must hold {what}, got {row}.")
            return row
        row = [IGNORE_INDEX if self.label_widths is None else math.nan] * sum(widths)
        task_id, label = feature.get("task_id"), feature.get("label")
        if task_id is None or label is None:
            return row
        if not 0 <= task_id < self.num_tasks:
            raise ValueError(f"`task_id` {task_id} is not in 0..{self.num_tasks - 1}.")
        start = sum(widths[:task_id])
        values = [label] if np.ndim(label) == 0 else list(label)
        if len(values) != widths[task_id]:
            raise ValueError(f"The label of task {task_id} must take {widths[task_id]} column(s), got {label!r}.")
        row[start : start + len(values)] = [int(v) for v in values] if self.label_widths is None else values
        return row
