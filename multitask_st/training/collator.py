"""Batches examples of several tasks: dynamic padding plus the `(batch, num_tasks)` label matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..inference_multitask_st import MODEL_INPUTS
from ..modeling_multitask_st import IGNORE_INDEX


# The column holding each example's starting-encoder embedding (see `multitask_st.training.distillation`).
TEACHER_COLUMN = "teacher_embedding"


@dataclass
class MultiTaskDataCollator:
    """Pads tokenised examples and builds `labels` of shape `(batch, num_tasks)`, `-100` where a task has no label.

    Each feature carries `input_ids` (and optionally `attention_mask`, `token_type_ids`) plus either `task_id` and
    `label` (an example labelled for one task, as the task datasets give), or `labels`, a full row of `num_tasks` ids.
    A feature with neither is unlabelled (all `-100`). Batches may hold one task or several. Features that carry a
    `teacher_embedding` (see `multitask_st.training.distillation`) also give `teacher_embeddings`, `(batch, hidden)`.

    Args:
        tokenizer: gives the pad id and padding side.
        num_tasks: number of label columns (`len(config.tasks)`).
        pad_to_multiple_of: pad lengths up to a multiple of this (8 helps tensor cores under mixed precision).

    Example:
        >>> collator = MultiTaskDataCollator(tokenizer, num_tasks=2)
        >>> batch = collator([{"input_ids": [2, 7, 3], "task_id": 1, "label": 0}, {"input_ids": [2, 3], "task_id": 0, "label": 4}])
        >>> batch["labels"].tolist()
        [[-100, 0], [4, -100]]
    """

    tokenizer: PreTrainedTokenizerBase
    num_tasks: int
    pad_to_multiple_of: int | None = None

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
        batch["labels"] = torch.tensor([self._label_row(feature) for feature in features], dtype=torch.long)
        if TEACHER_COLUMN in features[0]:  # the starting encoder's embeddings, for MultiTaskTrainer's distillation
            batch["teacher_embeddings"] = torch.tensor(
                np.stack([feature[TEACHER_COLUMN] for feature in features]), dtype=torch.float32
            )
        return batch

    def _label_row(self, feature: dict) -> list[int]:
        if feature.get("labels") is not None:
            row = [int(label) for label in feature["labels"]]
            if len(row) != self.num_tasks:
                raise ValueError(f"`labels` must hold one id per task ({self.num_tasks}), got {row}.")
            return row
        row = [IGNORE_INDEX] * self.num_tasks
        task_id, label = feature.get("task_id"), feature.get("label")
        if task_id is None or label is None:
            return row
        if not 0 <= task_id < self.num_tasks:
            raise ValueError(f"`task_id` {task_id} is not in 0..{self.num_tasks - 1}.")
        row[task_id] = int(label)
        return row
