"""Configuration of the multi-task sentence transformer.

This file is part of the Hub payload: it is copied next to the weights by `save_pretrained`, so it imports nothing
but `transformers` (and the standard library).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence

from transformers.configuration_utils import PretrainedConfig
from transformers.models.auto.configuration_auto import AutoConfig
from transformers.utils import cached_file, logging

from .inference_multitask_st import (  # noqa: F401  (vocabulary_fingerprint: named here for its docs)
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    KIND_ALIASES,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
    vocabulary_fingerprint,
)
from .scores_multitask_st import CALIBRATION_TEMPERATURE, check_threshold


logger = logging.get_logger(__name__)

POOLING_MODES = ("mean", "cls", "max", "attention")
PROJECTIONS = ("linear", "mlp", "none")
# The activations every head and the MLP projection may use; a closed list so a typo fails at config time.
ACTIVATIONS = ("gelu", "relu", "tanh", "silu")
# The kinds of task a head can serve. Each has a head builder and a loss (`modeling_multitask_st.TASK_HEADS`,
# `TASK_LOSSES`, `TASK_SCORES`) and a label-row formatter (`scores_multitask_st.LABEL_ROW_FORMATTERS`).
TASK_KINDS = (
    SINGLE_LABEL,
    MULTI_LABEL,
    REGRESSION,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
)
# The fewest labels (or, for regression, named outputs) a task of each kind has; an embedding task (no head: the
# embedding is its output) has exactly one name, that of the similarity score `predict` reports for a pair.
MIN_LABELS = {
    SINGLE_LABEL: 2,
    MULTI_LABEL: 1,
    REGRESSION: 1,
    PAIR_CLASSIFICATION: 2,
    PAIR_REGRESSION: 1,
    EMBEDDING: 1,
    EMBEDDING_CONTRASTIVE: 1,
}
# The most a task of each kind has, where there is a bound (one value per example in its label column).
MAX_LABELS = {PAIR_REGRESSION: 1, EMBEDDING: 1, EMBEDDING_CONTRASTIVE: 1}
REGRESSION_LOSSES = ("mse", "huber", "l1")
BALANCED = "balanced"  # class weights / pos_weight computed from the training labels (by `MultiTaskTrainer`)
# Per kind, the per-task loss options `task_loss_options[task]` may hold (see `normalize_task_loss_options`).
TASK_LOSS_OPTIONS = {
    SINGLE_LABEL: ("class_weights", "label_smoothing"),
    MULTI_LABEL: ("pos_weight", "label_smoothing"),
    REGRESSION: ("loss", "normalize_targets"),
    # Pair and embedding tasks take no loss options yet.
    **dict.fromkeys((PAIR_CLASSIFICATION, PAIR_REGRESSION, EMBEDDING, EMBEDDING_CONTRASTIVE), ()),
}
# Per kind, the columns a task's labels take in the `labels` matrix `forward` takes: a classification task its label id,
# a multi-label task one 0/1 column per label, a regression task one column per output (see `label_slices`).
LABEL_WIDTHS = {SINGLE_LABEL: lambda num_labels: 1, MULTI_LABEL: lambda num_labels: num_labels}
LABEL_WIDTHS[REGRESSION] = LABEL_WIDTHS[MULTI_LABEL]
# Pair and embedding tasks: one column, the pair's class id or score (an `embedding_contrastive` row: 0, "labelled").
LABEL_WIDTHS.update(
    dict.fromkeys((PAIR_CLASSIFICATION, PAIR_REGRESSION, EMBEDDING, EMBEDDING_CONTRASTIVE), LABEL_WIDTHS[SINGLE_LABEL])
)

DEFAULT_BACKBONE_MODEL_TYPE = "bert"
DEFAULT_TASKS = {
    "topic": ["business", "entertainment", "politics", "sports", "tech"],
    "sentiment": ["negative", "positive"],
}


def _choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def normalize_tasks(tasks: Mapping | None) -> dict[str, list[str]]:
    """Turn the user's task spec into the canonical `{task: [label names in id order]}`.

    Accepts a mapping, or a list of `(task, labels)` pairs (the form `to_dict` writes, since JSON objects lose their
    order); per task, a list of label names or an `{id: name}` map (ids may be strings, as after a JSON round-trip;
    they must be exactly 0..n-1).

    Example:
        >>> normalize_tasks({"sentiment": {"1": "positive", "0": "negative"}})
        {'sentiment': ['negative', 'positive']}
    """
    if tasks is None:
        return copy.deepcopy(DEFAULT_TASKS)
    if _is_pair_list(tasks):
        names = [task for task, _ in tasks]
        duplicates = sorted({task for task in names if names.count(task) > 1}, key=str)
        if duplicates:
            raise ValueError(f"Task names must be unique, got {duplicates} more than once in `tasks`.")
        tasks = dict(tasks)
    if not isinstance(tasks, Mapping) or len(tasks) == 0:
        raise ValueError(f"`tasks` must be a non-empty mapping from task name to label names, got {tasks!r}.")
    normalized = {}
    for task, labels in tasks.items():
        if not isinstance(task, str) or not task or not task.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"Task names must be non-empty strings of letters, digits, '_' or '-', got {task!r} in `tasks`."
            )
        if isinstance(labels, Mapping):
            try:
                by_id = {int(i): name for i, name in labels.items()}
            except (TypeError, ValueError):
                raise ValueError(f"Label ids of task {task!r} must be integers, got {list(labels)!r}.") from None
            if sorted(by_id) != list(range(len(by_id))):
                raise ValueError(f"Label ids of task {task!r} must be 0..{len(by_id) - 1}, got {sorted(by_id)!r}.")
            labels = [by_id[i] for i in range(len(by_id))]
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise ValueError(f"Labels of task {task!r} must be a list of names or an id->name map, got {labels!r}.")
        labels = list(labels)
        if len(labels) < 1:
            raise ValueError(f"Task {task!r} needs at least 1 label (2 for classification), got {labels!r}.")
        if not all(isinstance(label, str) and label for label in labels):
            raise ValueError(f"Labels of task {task!r} must be non-empty strings, got {labels!r}.")
        if len(set(labels)) != len(labels):
            raise ValueError(f"Labels of task {task!r} must be unique, got {labels!r}.")
        normalized[task] = labels
    return normalized


def _is_pair_list(value) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in value)
    )


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
        self.pooling_mode = _choice("pooling_mode", pooling_mode, POOLING_MODES)
        self.projection = _choice("projection", projection, PROJECTIONS)
        self.projection_activation = _choice("projection_activation", projection_activation, ACTIVATIONS)
        self.head_activation = _choice("head_activation", head_activation, ACTIVATIONS)

        embedding_dim = hidden_size if embedding_dim is None else embedding_dim
        if projection == "none" and embedding_dim != hidden_size:
            raise ValueError(
                f'`projection="none"` keeps the backbone size, so `embedding_dim` must be {hidden_size} or None, '
                f"got {embedding_dim}."
            )
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.projection_hidden_size = _positive_int(
            "projection_hidden_size", hidden_size if projection_hidden_size is None else projection_hidden_size
        )
        self.head_hidden_size = _positive_int(
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
        self.max_seq_length = None if max_seq_length is None else _positive_int("max_seq_length", max_seq_length)
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


def _check_task_names(field: str, mapping: Mapping, tasks: Mapping[str, list[str]]):
    unknown = sorted(set(mapping) - set(tasks), key=str)
    if unknown:
        raise ValueError(
            f"`{field}` names task(s) {unknown} that `tasks` does not have ({list(tasks)}): a task renamed in "
            "`tasks` (e.g. in config.json) must be renamed here too."
        )


def normalize_task_kinds(kinds: Mapping[str, str] | None, tasks: Mapping[str, list[str]]) -> dict[str, str]:
    """Every task's kind, classification unless named (configs saved before kinds existed load so); each task has at
    least the labels its kind needs (`MIN_LABELS`)."""
    kinds = dict(kinds or {})
    _check_task_names("task_kinds", kinds, tasks)
    for task, kind in kinds.items():
        kinds[task] = _choice(f"task_kinds[{task!r}]", KIND_ALIASES.get(kind, kind), TASK_KINDS)
    kinds = {task: kinds.get(task, SINGLE_LABEL) for task in tasks}
    for task, kind in kinds.items():
        if len(tasks[task]) < MIN_LABELS[kind]:
            raise ValueError(f"Task {task!r} needs at least {MIN_LABELS[kind]} labels, got {tasks[task]!r}.")
        if len(tasks[task]) > MAX_LABELS.get(kind, len(tasks[task])):
            raise ValueError(f"Task {task!r} ({kind}) has one output name (that of its score), got {tasks[task]!r}.")
    return kinds


def _per_label_numbers(name: str, value, labels: list[str], allow_balanced: bool) -> list[float] | str:
    """Positive finite numbers, one per label (a list in label order or a `{label: number}` map), or "balanced"."""
    if allow_balanced and value == BALANCED:
        return BALANCED
    if isinstance(value, Mapping):
        unknown = [label for label in value if label not in labels]
        missing = [label for label in labels if label not in value]
        if unknown or missing:
            raise ValueError(
                f"`{name}` must give every label of {labels} a number, got {dict(value)!r} "
                f"(unknown: {unknown}, missing: {missing})."
            )
        value = [value[label] for label in labels]
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != len(labels)
        or not all(_is_number(v) and math.isfinite(v) and v > 0 for v in value)
    ):
        choices = "'balanced', " if allow_balanced else ""
        raise ValueError(
            f"`{name}` must be {choices}a list of {len(labels)} positive numbers (one per label of {labels}) or a "
            f"{{label: number}} map, got {value!r}."
        )
    return [float(v) for v in value]


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def normalize_task_loss_options(
    options: Mapping[str, Mapping] | None, tasks: Mapping[str, list[str]], kinds: Mapping[str, str]
) -> dict[str, dict]:
    """Each task's loss options (see `MultiTaskSTConfig`), checked against its kind; only the tasks that set one."""
    options = dict(options or {})
    _check_task_names("task_loss_options", options, tasks)
    normalized = {}
    for task, given in options.items():
        if not isinstance(given, Mapping):
            raise ValueError(f"`task_loss_options[{task!r}]` must be a mapping of option to value, got {given!r}.")
        allowed = TASK_LOSS_OPTIONS[kinds[task]]
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(
                f"`task_loss_options[{task!r}]` has option(s) {unknown} that a {kinds[task]} task does not take; "
                f"it takes {list(allowed)}."
            )
        checked = {}
        for key, value in given.items():
            name = f"task_loss_options[{task!r}][{key!r}]"
            if key in ("class_weights", "pos_weight"):
                checked[key] = _per_label_numbers(name, value, tasks[task], allow_balanced=True)
            elif key == "label_smoothing":
                if not _is_number(value) or not 0.0 <= value < 1.0:
                    raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
                checked[key] = float(value)
            elif key == "loss":
                checked[key] = _choice(name, value, REGRESSION_LOSSES)
            else:  # normalize_targets
                if not isinstance(value, bool):
                    raise ValueError(f"`{name}` must be True or False, got {value!r}.")
                checked[key] = value
        normalized[task] = checked
    return normalized


def normalize_task_target_scaling(
    scaling: Mapping[str, Mapping] | None, tasks: Mapping[str, list[str]], kinds: Mapping[str, str]
) -> dict[str, dict]:
    """`{task: {"mean": [...], "std": [...]}}` for regression tasks, one finite number per output (std > 0)."""
    scaling = dict(scaling or {})
    _check_task_names("task_target_scaling", scaling, tasks)
    normalized = {}
    for task, given in scaling.items():
        if kinds[task] != REGRESSION:
            raise ValueError(f"`task_target_scaling` applies to regression tasks; {task!r} is a {kinds[task]} task.")
        outputs = tasks[task]
        if not isinstance(given, Mapping) or set(given) != {"mean", "std"}:
            raise ValueError(
                f"`task_target_scaling[{task!r}]` must be {{'mean': [...], 'std': [...]}}, got {given!r}."
            )
        for key in ("mean", "std"):
            values = given[key]
            if (
                not isinstance(values, Sequence)
                or len(values) != len(outputs)
                or not all(_is_number(v) and math.isfinite(v) and (key == "mean" or v > 0) for v in values)
            ):
                kind = "positive numbers" if key == "std" else "finite numbers"
                raise ValueError(
                    f"`task_target_scaling[{task!r}][{key!r}]` must be {len(outputs)} {kind} (one per output of "
                    f"{outputs}), got {values!r}."
                )
        normalized[task] = {key: [float(v) for v in given[key]] for key in ("mean", "std")}
    return normalized


def _check_thresholds(name: str, value, labels: list[str]) -> list[float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(labels):
        raise ValueError(f"`{name}` must hold one number per label ({len(labels)}: {labels}), got {value!r}.")
    return [check_threshold(f"{name}[{i}]", v) for i, v in enumerate(value)]


def _check_temperature(name: str, value, labels: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


# Per key of `task_calibration[task]` (what is tuned after training and saved with the model): the kinds of task it
# applies to, and its check `(name for errors, value, the task's labels) -> the value to store`. A new key adds an
# entry here.
CALIBRATION_KEYS = {
    "thresholds": ((MULTI_LABEL,), _check_thresholds),
    CALIBRATION_TEMPERATURE: ((SINGLE_LABEL,), _check_temperature),
}


def normalize_task_calibration(
    calibration: Mapping[str, Mapping] | None, tasks: Mapping[str, list[str]], kinds: Mapping[str, str]
) -> dict[str, dict]:
    """`{task: {key: value}}` of what is tuned after training (keys: `CALIBRATION_KEYS`), each key for its kinds:
    `"thresholds"`, one number in [0, 1] per label of a multi-label task; `"temperature"`, a finite number > 0 for a
    classification head."""
    calibration = dict(calibration or {})
    _check_task_names("task_calibration", calibration, tasks)
    normalized = {}
    for task, given in calibration.items():
        if not isinstance(given, Mapping):
            raise ValueError(f"`task_calibration[{task!r}]` must be a mapping, got {given!r}.")
        checked = {}
        for key, value in given.items():
            name = f"task_calibration[{task!r}][{key!r}]"
            if key not in CALIBRATION_KEYS:
                raise ValueError(f"`{name}` is not a calibration key; the keys are {list(CALIBRATION_KEYS)}.")
            applies_to, check = CALIBRATION_KEYS[key]
            if kinds[task] not in applies_to:
                raise ValueError(f"`{name}` applies to {list(applies_to)} tasks; {task!r} is a {kinds[task]} task.")
            checked[key] = check(name, value, tasks[task])
        normalized[task] = checked
    return normalized


# The changes `lineage` records (`MultiTaskSTModel.add_task`, ...).
LINEAGE_CHANGES = ("add_task", "remove_task", "rename_labels", "add_labels")


def normalize_lineage(lineage: Sequence[Mapping] | None) -> list[dict]:
    """The list of changes made to the tasks after the first training, each a JSON-ready mapping with a known
    `"change"` (see `LINEAGE_CHANGES`)."""
    if lineage is None:
        return []
    if isinstance(lineage, (str, Mapping)) or not isinstance(lineage, Sequence):
        raise ValueError(f"`lineage` must be a list of mappings, got {lineage!r}.")
    normalized = []
    for index, entry in enumerate(lineage):
        if not isinstance(entry, Mapping) or entry.get("change") not in LINEAGE_CHANGES:
            raise ValueError(
                f"`lineage[{index}]` must be a mapping whose 'change' is one of {list(LINEAGE_CHANGES)}, got {entry!r}."
            )
        normalized.append(copy.deepcopy(dict(entry)))
    return normalized


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def normalize_task_loss_weights(
    weights: Mapping[str, float] | None, tasks: Mapping[str, list[str]]
) -> dict[str, float]:
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise ValueError(
            f"`task_loss_weights` names task(s) {unknown} that `tasks` does not have ({list(tasks)}): a task renamed "
            "in `tasks` (e.g. in config.json) must be renamed here too, and its saved head keeps the old name."
        )
    for task, weight in weights.items():
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not (math.isfinite(weight) and weight >= 0)
        ):
            raise ValueError(f"`task_loss_weights[{task!r}]` must be a finite non-negative number, got {weight!r}.")
    return {task: float(weights.get(task, 1.0)) for task in tasks}


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
