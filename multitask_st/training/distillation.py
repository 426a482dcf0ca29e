"""Keeping the embedding useful while the heads fine-tune the shared encoder.

Fine-tuning the encoder for topic and sentiment pulls the embedding towards those two axes: on STS-B its Spearman
correlation falls from 0.82 (all-MiniLM-L6-v2) to about 0.76 after a few epochs (see BENCHMARKS.md). The remedy here
is similarity-preserving distillation from the model as it was before training: the cosine similarities between the
examples of each training batch should stay what the starting encoder gave them. Only the *pairwise geometry* is
held, which is what similarity search and STS use, so the projection may change dimension or rotate freely and the
heads still get to reshape what they need.

The starting encoder's embeddings (the backbone's pooled output, before the projection) are computed once, before
training, in one inference pass over the training data, and travel with the examples as a dataset column: no second
model in memory and no extra forward pass per step. The target is the backbone's own geometry, not the projection's:
with the default square linear projection (identity at the start) the loss starts at zero; with a fresh projection of
another width or an MLP it starts above zero and pulls that projection towards the backbone's geometry. Continuing
from a fine-tuned model, the target is that model's pooled output.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

from ..inference_multitask_st import MODEL_INPUTS
from ..modeling_multitask_st import MultiTaskSTModel
from .collator import TEACHER_COLUMN


logger = logging.get_logger(__name__)


def similarity_distillation_loss(embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the two in-batch cosine-similarity matrices, over pairs `i != j`.

    The two may have different widths. A batch of one example has no pair: the loss is 0 (and still part of the
    graph, so every process of a distributed run does the same backward).
    """
    if embeddings.shape[0] != teacher_embeddings.shape[0]:
        raise ValueError(
            f"Got {embeddings.shape[0]} embeddings but {teacher_embeddings.shape[0]} teacher embeddings; "
            "each example needs its own."
        )
    student = F.normalize(embeddings.float(), dim=-1)
    teacher = F.normalize(teacher_embeddings.float(), dim=-1)
    difference = (student @ student.T - teacher @ teacher.T).fill_diagonal_(0)
    size = embeddings.shape[0]
    # A few small kernels and no host-device sync: on a GPU with a small backbone, every extra op shows per step.
    return difference.square().sum() / max(size * (size - 1), 1)


def compute_teacher_embeddings(
    model: MultiTaskSTModel,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> np.ndarray:
    """`(len(dataset), hidden)` float32: the model's pooled backbone output for each tokenised example, as it is now
    ([`MultiTaskSTModel.pooled_output`]: where the model is, in length-sorted batches, under `inference_mode`)."""
    if "input_ids" not in dataset.column_names or len(dataset) == 0:
        raise ValueError(
            f"Teacher embeddings need tokenised examples; the dataset has {len(dataset)} rows and columns "
            f"{dataset.column_names}."
        )
    # Read the columns once, as lists: per-batch Arrow access costs more than the model on short texts.
    encodings = dataset.select_columns([key for key in MODEL_INPUTS if key in dataset.column_names]).to_dict()
    pooled = model.pooled_output(encodings, tokenizer, batch_size=batch_size, show_progress_bar=show_progress_bar)
    return pooled.float().cpu().numpy()


def add_teacher_embeddings(
    model: MultiTaskSTModel,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> datasets.Dataset:
    """`dataset` with a `teacher_embedding` column computed by `compute_teacher_embeddings` (kept if present)."""
    if TEACHER_COLUMN in dataset.column_names:
        return dataset
    logger.info(f"Computing the starting encoder's embeddings of {len(dataset)} training examples (once).")
    embeddings = compute_teacher_embeddings(model, dataset, tokenizer, batch_size, show_progress_bar)
    feature = datasets.Sequence(datasets.Value("float32"), length=embeddings.shape[1])
    dataset = dataset.add_column(TEACHER_COLUMN, list(embeddings), feature=feature)
    if dataset.format["type"] is None:  # rows give this column as an array, not a list of Python floats (collating)
        dataset = dataset.with_format("numpy", columns=[TEACHER_COLUMN], output_all_columns=True)
    return dataset
