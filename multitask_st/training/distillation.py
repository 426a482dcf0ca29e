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
from a fine-tuned model, the target is that model's pooled output, except when the run holds heads (below): then it is
the starting model's *embedding* (its trained projection's output, what `encode` gave and the held heads read), so the
loss starts at exactly zero and holds what users of the embedding had, not the backbone's geometry under it.

A task that trains the embedding itself (`embedding`, `embedding_contrastive`) asks the geometry to move, which holding
the in-batch similarities where they started would fight: with such a task the default weight is 0
(`embedding_distillation_weight`); a run that asks for a weight gets it.

Adding a task to a trained model (`MultiTaskSTModel.add_task`, `multitask-st train --init_model`), the run has data for
the new task only. The heads with no training example in the run (the *held* heads) keep their predictions by learning
without forgetting (Li & Hoiem, 2017): on the incoming texts, each held head's outputs should stay what the starting
model's were (for a classification head a KL divergence of the softmaxes at temperature 2; per kind, see
`HEAD_DISTILLATION_LOSSES`), from the starting model's outputs, which come from the same single teacher pass as the
embeddings and travel as a `teacher_logits` column. No old data is needed. A pair head or an embedding task without
data is not run on the incoming single texts: it reads the shared embedding, which the embedding distillation holds.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import datasets
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

from ..inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MODEL_INPUTS,
    MULTI_LABEL,
    REGRESSION,
    SINGLE_LABEL,
)
from ..layers_multitask_st import eval_twin
from ..modeling_multitask_st import MultiTaskSTModel
from .collator import TEACHER_COLUMN, TEACHER_LOGITS_COLUMN


logger = logging.get_logger(__name__)

# The embedding distillation's weight when the run's arguments leave it unset and no task trains the embedding itself.
DEFAULT_EMBEDDING_DISTILLATION_WEIGHT = 10.0


def embedding_distillation_weight(weight: float | None, task_kinds: Mapping[str, str]) -> float:
    """The embedding distillation weight a run applies: `weight` when set; unset, `DEFAULT_EMBEDDING_DISTILLATION_WEIGHT`,
    or 0 when a task of `task_kinds` (the run's tasks with training data) trains the embedding itself (`embedding`,
    `embedding_contrastive`): holding the in-batch similarities where they started would work against the very change
    such a task asks for."""
    if weight is not None:
        return float(weight)
    return 0.0 if embedding_tasks(task_kinds) else DEFAULT_EMBEDDING_DISTILLATION_WEIGHT


def embedding_tasks(task_kinds: Mapping[str, str]) -> list[str]:
    """The tasks that train the embedding itself (no head: the embedding is their output)."""
    return [task for task, kind in task_kinds.items() if kind in (EMBEDDING, EMBEDDING_CONTRASTIVE)]


# Softens both distributions in the held heads' loss, as Li & Hoiem (2017) and Hinton et al. (2015) do: the student
# also learns the teacher's ranking of the unlikely labels, which a near one-hot softmax hides.
HEAD_DISTILLATION_TEMPERATURE = 2.0


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


def _softmax_distillation(
    logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, scale
) -> torch.Tensor:
    # KL(teacher || student) between the softmaxes at `temperature`, times `temperature ** 2` (which keeps its
    # gradient's scale that of a cross-entropy), averaged over the batch.
    student = F.log_softmax(logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def _sigmoid_distillation(
    logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, scale
) -> torch.Tensor:
    # Each label is its own yes/no: the KL between the two Bernoulli distributions at `temperature`, per label,
    # averaged over labels and batch, times `temperature ** 2`.
    student, teacher = logits.float() / temperature, teacher_logits.float() / temperature
    p = torch.sigmoid(teacher)
    kl = p * (F.logsigmoid(teacher) - F.logsigmoid(student)) + (1 - p) * (
        F.logsigmoid(-teacher) - F.logsigmoid(-student)
    )
    return kl.mean() * temperature**2


def _regression_distillation(
    outputs: torch.Tensor, teacher_outputs: torch.Tensor, temperature: float, scale
) -> torch.Tensor:
    # The squared difference in target standard deviations (the outputs are in the data's units), as the regression
    # loss measures its error; the temperature has no meaning here.
    if not isinstance(scale, torch.Tensor):  # a list per output: one small tensor, only for a held regression head
        scale = outputs.new_tensor(scale, dtype=torch.float32)
    return (((outputs.float() - teacher_outputs.float()) / scale) ** 2).mean()


# Per kind of head: how far its outputs are from the starting model's (0 when equal). Pair heads and embedding tasks
# are not here: the incoming texts have no second text to run them on (the embedding distillation holds what they read).
HEAD_DISTILLATION_LOSSES = {
    SINGLE_LABEL: _softmax_distillation,
    MULTI_LABEL: _sigmoid_distillation,
    REGRESSION: _regression_distillation,
}


def head_distillation_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = HEAD_DISTILLATION_TEMPERATURE,
    kind: str = SINGLE_LABEL,
    target_std: torch.Tensor | list[float] | float = 1.0,
) -> torch.Tensor:
    """How far a held head's outputs are from the starting model's on the same texts, by its kind
    (`HEAD_DISTILLATION_LOSSES`): a softmax KL at `temperature` for a classification head, a per-label Bernoulli KL for
    a multi-label head, the mean squared difference in target std (`target_std`) for a regression head. Exactly 0 when
    the head gives what the teacher gave."""
    if logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Got logits of shape {tuple(logits.shape)} but teacher logits of shape {tuple(teacher_logits.shape)}."
        )
    if kind not in HEAD_DISTILLATION_LOSSES:
        raise ValueError(
            f"A {kind!r} head cannot be held by distillation; kinds that can: {list(HEAD_DISTILLATION_LOSSES)}."
        )
    return HEAD_DISTILLATION_LOSSES[kind](logits, teacher_logits, temperature, target_std)


def is_partitioned(model: torch.nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 holds `model`'s parameters partitioned across the processes (each process keeps a
    slice, the module an empty placeholder): transformers builds a model under `deepspeed.zero.Init` once a ZeRO-3
    config is known (`TrainingArguments(deepspeed=...)` made before the model is loaded)."""
    return any(hasattr(parameter, "ds_id") for parameter in model.parameters())


def whole_model_copy(model: MultiTaskSTModel, device: torch.device | str | None = None) -> MultiTaskSTModel:
    """A whole copy of `model` as it is now, frozen (eval mode, no gradients), on `device` (default: where `model`'s
    parameters are), that nothing partitions or shards: the teacher of a run whose model DeepSpeed or FSDP splits.

    Under ZeRO-3 (`is_partitioned`) a deep copy would copy the empty placeholders and DeepSpeed's bookkeeping: the copy
    is built from the config outside `deepspeed.zero.Init`, then each parameter is gathered whole from every process
    (`GatheredParameters`, read-only) into it. Gathering is collective: every process of the job calls this, in the
    same order. Buffers are never partitioned; they are copied as they are.
    """
    if not is_partitioned(model):
        whole = copy.deepcopy(model)
    else:
        import deepspeed
        from transformers.initialization import no_init_weights
        from transformers.modeling_utils import set_zero3_state

        # `set_zero3_state`: transformers' own switch that skips `zero.Init` while one is active (the backbone is
        # built through `AutoModel.from_config`, which enters `zero.Init` under a ZeRO-3 config); no random init.
        with set_zero3_state(), no_init_weights():
            whole = type(model)(copy.deepcopy(model.config))
        state = model.state_dict()  # the buffers as they are; the parameters' entries are placeholders, replaced below
        for name, parameter in model.named_parameters():
            with deepspeed.zero.GatheredParameters([parameter], modifier_rank=None):
                # float32: `zero.Init` cast the partitions to the config's dtype (bf16 on most GPU configs); the
                # teacher runs in float32 as it does under DDP and ZeRO-1/2, where the pass precedes DeepSpeed's cast.
                # (The gathered values are the bf16-rounded start there: the precision ZeRO-3 kept of it.)
                dtype = torch.float32 if parameter.is_floating_point() else parameter.dtype
                state[name] = parameter.data.detach().to(device or parameter.device, dtype=dtype, copy=True)
        # `assign`: the copy takes the gathered tensors themselves (their dtype and device), no second copy.
        whole.load_state_dict(state, strict=True, assign=True)
    if device is not None:
        whole.to(device)
    return whole.eval().requires_grad_(False)


class FrozenTeacher:
    """The starting model, frozen, for distillation computed batch by batch (streamed training data, which has no
    column to precompute, and FSDP, which shards the model): a whole copy of the model as it is when training starts
    (`whole_model_copy`), giving each batch what the precomputed columns hold (`add_teacher_embeddings`): the
    embedding target and, given `held_tasks`, the held heads' outputs.

    Costs the model's memory once more and one inference forward per step; the precomputed `teacher_embedding`
    column costs neither but needs one pass over the whole training set first (see BENCHMARKS.md).
    """

    def __init__(
        self, model: MultiTaskSTModel, device: torch.device | str | None = None, held_tasks: Sequence[str] = ()
    ):
        # `device`: under FSDP the model is still on the CPU when training starts
        self.model = whole_model_copy(model, device)
        self.held_tasks = list(held_tasks)

    @torch.no_grad()
    def outputs(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For a padded batch, float32: the embedding target `(batch, width)` (the pooled output; with held heads the
        model's embedding, see the module docstring) and the held heads' raw outputs task after task
        `(batch, their labels)` (None without held heads), as the `teacher_embedding` / `teacher_logits` columns."""
        pooled = self.model.pool(*(inputs.get(key) for key in MODEL_INPUTS))[0]
        return teacher_targets(self.model, pooled, self.held_tasks)


def teacher_targets(
    model: MultiTaskSTModel, pooled: torch.Tensor, held_tasks: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """From the starting model's pooled output, float32: the embedding distillation target (the pooled output; with
    held heads the model's own embedding, see the module docstring) and the held heads' raw outputs task after task
    (None without held heads): what the `teacher_embedding` / `teacher_logits` columns hold."""
    if not held_tasks:
        return pooled.float(), None
    projected = model.projection(pooled)
    logits = torch.cat([model.heads[task](projected).float() for task in held_tasks], dim=-1)
    return model.finish_embedding(projected).float(), logits


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


def teacher_columns(held_tasks: Sequence[str] = ()) -> list[str]:
    """The teacher columns a run with these held heads reads."""
    return [TEACHER_COLUMN, *([TEACHER_LOGITS_COLUMN] if held_tasks else [])]


def teacher_columns_present(dataset: datasets.Dataset, held_tasks: Sequence[str] = ()) -> bool:
    """Whether `dataset` already has the teacher columns a run with these held heads reads."""
    return all(column in dataset.column_names for column in teacher_columns(held_tasks))


def add_teacher_embeddings(
    model: MultiTaskSTModel,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 64,
    show_progress_bar: bool = True,
    held_tasks: Sequence[str] = (),
) -> datasets.Dataset:
    """`dataset` with a `teacher_embedding` column (the model's pooled output, as `compute_teacher_embeddings`) and,
    given `held_tasks`, a `teacher_logits` column (those heads' raw logits, task after task), from one pass of the model
    as it is now; given `held_tasks`, the embedding column holds the model's embedding (projected) instead of the
    pooled output. Columns already present are kept."""
    held_tasks = list(held_tasks)
    wanted = teacher_columns(held_tasks)
    if teacher_columns_present(dataset, held_tasks):
        return dataset
    if "input_ids" not in dataset.column_names or len(dataset) == 0:
        raise ValueError(
            f"Teacher outputs need tokenised examples; the dataset has {len(dataset)} rows and columns "
            f"{dataset.column_names}."
        )
    held = f" and the outputs of the held head(s) {held_tasks}" if held_tasks else ""
    logger.info(f"Computing the starting model's embeddings{held} for {len(dataset)} training examples (once).")
    encodings = dataset.select_columns([key for key in MODEL_INPUTS if key in dataset.column_names]).to_dict()
    pooled = model.pooled_output(encodings, tokenizer, batch_size=batch_size, show_progress_bar=show_progress_bar)
    with torch.inference_mode():  # the heads' dropout off, without flipping the model's mode
        embedding, logits = teacher_targets(eval_twin(model), pooled.to(model.dtype), held_tasks)
    columns = {TEACHER_COLUMN: embedding, TEACHER_LOGITS_COLUMN: logits}
    return add_float_columns(
        dataset, {column: columns[column].cpu().numpy() for column in wanted if column not in dataset.column_names}
    )


def add_float_columns(dataset: datasets.Dataset, columns: Mapping[str, Sequence[np.ndarray]]) -> datasets.Dataset:
    """`dataset` with each of `columns` (per row a float32 vector, or a `(length, width)` matrix of any length) as a
    float32 column; a dataset without a format then gives them as numpy arrays (what the collator stacks and pads)
    and its other columns as before."""
    for name, rows in columns.items():
        width = np.shape(rows[0])[-1]
        row_feature = datasets.Sequence(datasets.Value("float32"), length=width)
        if np.ndim(rows[0]) == 1:
            dataset = dataset.add_column(name, list(rows), feature=row_feature)
            continue
        # Matrices of several lengths: one Arrow list of fixed-width vectors, built from a single flat copy (a list of
        # 2-D arrays does not convert, and nested Python lists would cost minutes for a training set)
        offsets = np.cumsum([0, *(len(matrix) for matrix in rows)], dtype=np.int32)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(rows, dtype=np.float32).ravel()), width)
        values = pa.ListArray.from_arrays(pa.array(offsets), vectors)
        dataset = dataset.add_column(name, values, feature=datasets.Sequence(row_feature))
    if dataset.format["type"] is None:
        dataset = dataset.with_format("numpy", columns=list(columns), output_all_columns=True)
    return dataset
