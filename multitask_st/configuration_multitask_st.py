"""Configuration of the multi-task sentence transformer.

This file is part of the Hub payload: it is copied next to the weights by `save_pretrained`, so it imports nothing
but `transformers`, the standard library and the payload files next to it. The per-task fields (tasks, kinds, loss
options, calibration, lineage) and their checks are in `task_fields_multitask_st.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from transformers.configuration_utils import PretrainedConfig
from transformers.models.auto.configuration_auto import AutoConfig
from transformers.utils import cached_file, logging

# vocabulary_fingerprint: named here for its docs
from .inference_multitask_st import SINGLE_LABEL, check_positive_int, vocabulary_fingerprint  # noqa: F401
from .task_fields_multitask_st import (
    LABEL_WIDTHS,
    check_choice,
    normalize_lineage,
    normalize_task_calibration,
    normalize_task_kinds,
    normalize_task_loss_options,
    normalize_task_loss_weights,
    normalize_task_target_scaling,
    normalize_tasks,
)


logger = logging.get_logger(__name__)

POOLING_MODES = ("mean", "cls", "max", "attention")
PROJECTIONS = ("linear", "mlp", "none")
# The activations every head and the MLP projection may use; a closed list so a typo fails at config time.
ACTIVATIONS = ("gelu", "relu", "tanh", "silu")
DEFAULT_BACKBONE_MODEL_TYPE = "bert"


class MultiTaskSTConfig(PretrainedConfig):
    r"""Configuration of a [`MultiTaskSTModel`]: a BERT-family encoder, pooling, a projection and one head per task.

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*):
            Config of the encoder (any model `AutoModel` builds as an encoder: BERT, MiniLM, RoBERTa, DistilBERT...).
            Defaults to a `BertConfig()`.
        pooling_mode (`str`, *optional*, defaults to `"mean"`):
            How token states become one vector: `"mean"`, `"cls"`, `"max"` or `"attention"` (a learned
            single-query attention over the non-padding tokens).
        projection (`str`, *optional*, defaults to `"linear"`):
            `"linear"` (Linear -> LayerNorm), `"mlp"` (Linear -> activation -> Linear -> LayerNorm) or `"none"`.
        embedding_dim (`int`, *optional*):
            Size of the sentence embedding. Defaults to the backbone's hidden size; must equal it with `"none"`.
        projection_hidden_size (`int`, *optional*):
            Inner size of the `"mlp"` projection. Defaults to the backbone's hidden size.
        projection_activation (`str`, *optional*, defaults to `"gelu"`):
            Activation of the `"mlp"` projection.
        normalize_embeddings (`bool`, *optional*, defaults to `False`):
            Whether the returned sentence embedding is L2-normalised. The heads always read the un-normalised one.
        tasks (`dict[str, list[str]]`, *optional*):
            Ordered mapping from task name to its label names (position = label id). Defaults to
            `{"topic": [5 BBC News topics], "sentiment": ["negative", "positive"]}`.
        head_hidden_size (`int`, *optional*):
            Hidden size of each head (Linear -> activation -> Dropout -> Linear). Defaults to `embedding_dim`.
        head_activation (`str`, *optional*, defaults to `"gelu"`):
            Activation inside each head.
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout inside each head.
        task_kinds (`dict[str, str]`, *optional*):
            The kind of each task: `"classification"` (one label per text; tasks left out are this), `"multi_label"`
            (any number of labels per text; `tasks` lists them) or `"regression"` (`tasks` names the outputs, one or
            more). transformers' `"single_label_classification"` / `"multi_label_classification"` are read as the
            first two.
        task_loss_options (`dict[str, dict]`, *optional*):
            Per task, options of its loss. Classification: `class_weights` (one positive number per label, a
            `{label: weight}` map, or `"balanced"`: n_examples / (n_labels * n_examples_of_label) over the training
            labels) and `label_smoothing` (in [0, 1)). Multi-label: `pos_weight` (weight of a label's positive
            examples: numbers, a map or `"balanced"`: negatives / positives per label) and `label_smoothing`.
            Regression: `loss` (`"mse"`, `"huber"` or `"l1"`; default mse) and `normalize_targets` (default True:
            the loss compares targets scaled by their training mean and standard deviation). `MultiTaskTrainer`
            replaces `"balanced"` by the numbers it computes.
        task_target_scaling (`dict[str, dict]`, *optional*):
            Per regression task, `{"mean": [...], "std": [...]}` (one per output) of its training targets: the head
            predicts `mean + std * z`, so predictions come back in the data's units. Set by `MultiTaskTrainer`.
        task_calibration (`dict[str, dict]`, *optional*):
            Per task, what is tuned on the validation split after training (keys: `CALIBRATION_KEYS`):
            `{"thresholds": [one per label]}` for a multi-label task (the probability at or above which `predict`
            gives a label; 0.5 until tuned, overridable per call); `{"temperature": t}` for a classification head
            (its logits are divided by `t` before the softmax in every door, see `MultiTaskTrainer.calibrate`;
            1 until fitted).
        task_loss_weights (`dict[str, float]`, *optional*):
            Weight of each task's loss in the total loss; tasks left out weigh 1.0.
        max_seq_length (`int`, *optional*):
            Tokens kept per text by `encode`/`predict` and the training collator, at most the backbone's
            `max_position_embeddings` (the default; `from_backbone` reads a sentence-transformers checkpoint's own).
        tokenizer_fingerprint (`str`, *optional*):
            A hash of the vocabulary of the tokenizer the model was trained with (set by `MultiTaskTrainer`, see
            `vocabulary_fingerprint`): `encode`/`predict` warn when given another one, the ONNX runtime refuses a
            folder whose `tokenizer.json` is another one.
        lineage (`list[dict]`, *optional*):
            What happened to the tasks after the model was first trained, in order: one entry per change made with
            `MultiTaskSTModel.add_task` / `remove_task` / `rename_labels` / `add_labels`, each naming the change
            (`"change"`), the task, and the model it was made to (`"base_model"`: a Hub id, None for a local folder;
            `"base_revision"`: its commit, or the sha256 of its weights). Empty for a model trained in one run.

    Example:
        >>> from transformers import BertConfig
        >>> config = MultiTaskSTConfig(
        ...     backbone_config=BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
        ...     tasks={"topic": ["world", "sports"], "sentiment": ["negative", "positive"]},
        ... )
        >>> config.task_label2id("topic")
        {'world': 0, 'sports': 1}
    """

    model_type = "multitask-st"
    sub_configs = {"backbone_config": AutoConfig}
    # Trainer leaves these outputs out of eval predictions: per-batch scalars and ragged states don't concatenate.
    keys_to_ignore_at_inference = ["task_losses", "hidden_states", "attentions"]

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict | None = None,
        pooling_mode: str = "mean",
        projection: str = "linear",
        embedding_dim: int | None = None,
        projection_hidden_size: int | None = None,
        projection_activation: str = "gelu",
        normalize_embeddings: bool = False,
        tasks: Mapping | None = None,
        head_hidden_size: int | None = None,
        head_activation: str = "gelu",
        head_dropout: float = 0.1,
        task_loss_weights: Mapping[str, float] | None = None,
        task_kinds: Mapping[str, str] | None = None,
        task_loss_options: Mapping[str, Mapping] | None = None,
        task_target_scaling: Mapping[str, Mapping] | None = None,
        task_calibration: Mapping[str, Mapping] | None = None,
        max_seq_length: int | None = None,
        tokenizer_fingerprint: str | None = None,
        lineage: Sequence[Mapping] | None = None,
        **kwargs,
    ):
        if backbone_config is None:
            backbone_config = AutoConfig.for_model(DEFAULT_BACKBONE_MODEL_TYPE)
            logger.info("`backbone_config` is None: using a default BertConfig.")
        elif isinstance(backbone_config, Mapping):
            backbone_config = dict(backbone_config)
            model_type = backbone_config.pop("model_type", DEFAULT_BACKBONE_MODEL_TYPE)
            backbone_config = AutoConfig.for_model(model_type, **backbone_config)
        elif not isinstance(backbone_config, PretrainedConfig):
            raise TypeError(f"`backbone_config` must be a PretrainedConfig or a dict, got {type(backbone_config)}.")
        self.backbone_config = backbone_config

        hidden_size = self.backbone_hidden_size
        self.pooling_mode = check_choice("pooling_mode", pooling_mode, POOLING_MODES)
        self.projection = check_choice("projection", projection, PROJECTIONS)
        self.projection_activation = check_choice("projection_activation", projection_activation, ACTIVATIONS)
        self.head_activation = check_choice("head_activation", head_activation, ACTIVATIONS)

        embedding_dim = hidden_size if embedding_dim is None else embedding_dim
        if projection == "none" and embedding_dim != hidden_size:
            raise ValueError(
                f'`projection="none"` keeps the backbone size, so `embedding_dim` must be {hidden_size} or None, '
                f"got {embedding_dim}."
            )
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.projection_hidden_size = check_positive_int(
            "projection_hidden_size", hidden_size if projection_hidden_size is None else projection_hidden_size
        )
        self.head_hidden_size = check_positive_int(
            "head_hidden_size", self.embedding_dim if head_hidden_size is None else head_hidden_size
        )
        if not isinstance(head_dropout, (int, float)) or not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"`head_dropout` must be a float in [0, 1), got {head_dropout!r}.")
        self.head_dropout = float(head_dropout)
        if not isinstance(normalize_embeddings, bool):
            raise ValueError(f"`normalize_embeddings` must be True or False, got {normalize_embeddings!r}.")
        self.normalize_embeddings = normalize_embeddings

        self.tasks = normalize_tasks(tasks)
        self.task_loss_weights = normalize_task_loss_weights(task_loss_weights, self.tasks)
        self.task_kinds = normalize_task_kinds(task_kinds, self.tasks)
        self.task_loss_options = normalize_task_loss_options(task_loss_options, self.tasks, self.task_kinds)
        self.task_target_scaling = normalize_task_target_scaling(task_target_scaling, self.tasks, self.task_kinds)
        self.task_calibration = normalize_task_calibration(task_calibration, self.tasks, self.task_kinds)
        self.lineage = normalize_lineage(lineage)
        self.max_seq_length = None if max_seq_length is None else check_positive_int("max_seq_length", max_seq_length)
        limit = getattr(backbone_config, "max_position_embeddings", None)
        if self.max_seq_length is not None and isinstance(limit, int) and self.max_seq_length > limit:
            raise ValueError(
                f"`max_seq_length` must be at most the backbone's `max_position_embeddings` ({limit}), "
                f"got {self.max_seq_length}."
            )
        self.tokenizer_fingerprint = tokenizer_fingerprint
        # The pad id is the backbone's; stating it here keeps Trainer from "aligning" the config with the tokenizer.
        kwargs.setdefault("pad_token_id", getattr(backbone_config, "pad_token_id", None))
        # The backbone does the attention: keep the implementation a loaded backbone's config holds, which
        # `super().__init__` would otherwise reset to None on that (shared) sub-config as well.
        kwargs.setdefault("attn_implementation", getattr(backbone_config, "_attn_implementation", None))
        super().__init__(**kwargs)

    @property
    def backbone_hidden_size(self) -> int:
        # Configs that call it otherwise (DistilBERT's `dim`) alias it through their `attribute_map`.
        return self.backbone_config.hidden_size

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def num_labels_of(self, task: str) -> int:
        return len(self.labels_of(task))

    def labels_of(self, task: str) -> list[str]:
        if task not in self.tasks:
            raise ValueError(f"Unknown task {task!r}; this model's tasks are {self.task_names}.")
        return self.tasks[task]

    def task_id2label(self, task: str) -> dict[int, str]:
        return dict(enumerate(self.labels_of(task)))

    def task_label2id(self, task: str) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels_of(task))}

    def label_slices(self) -> dict[str, slice]:
        """Per task, its columns of the `labels` matrix `forward` takes (task after task, `LABEL_WIDTHS` each)."""
        slices, start = {}, 0
        for task, labels in self.tasks.items():
            width = LABEL_WIDTHS[self.task_kinds[task]](len(labels))
            slices[task] = slice(start, start + width)
            start += width
        return slices

    @property
    def num_label_columns(self) -> int:
        return sum(LABEL_WIDTHS[self.task_kinds[task]](len(labels)) for task, labels in self.tasks.items())

    def to_dict(self) -> dict:
        output = super().to_dict()
        # Task order is the column order of `labels`, but `to_json_string` sorts keys (and JSON objects are unordered):
        # store the tasks as an ordered list of [task, labels] pairs, which `normalize_tasks` reads back.
        output["tasks"] = [[task, list(labels)] for task, labels in self.tasks.items()]
        # Only the kinds that are not the default: config.json reads as before kinds existed, and a task renamed there
        # (a single-label one, as every task so far) needs no second edit.
        output["task_kinds"] = {task: kind for task, kind in self.task_kinds.items() if kind != SINGLE_LABEL}
        return output


def sentence_transformers_max_seq_length(path: str, hub_kwargs: dict) -> int | None:
    """The `max_seq_length` a sentence-transformers checkpoint was trained with, if it is one."""
    resolved = cached_file(
        path,
        "sentence_bert_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if resolved is None:
        return None
    with open(resolved, encoding="utf-8") as file:
        return json.load(file).get("max_seq_length")


# `save_pretrained` writes `auto_map` into config.json, so the saved folder loads with `trust_remote_code=True`.
MultiTaskSTConfig.register_for_auto_class()
