"""The per-task fields of the configuration and their checks: the tasks and their labels, each task's kind, loss
weight, loss options, target scaling and calibration, and the lineage of changes made to them.

Part of the Hub payload (copied next to the weights by `save_pretrained`): it imports only the standard library and the
payload files next to it. `MultiTaskSTConfig` runs every check here when it is built (so a hand-edited config.json
fails at load time, naming the field), and `MultiTaskSTModel.add_task` & co. run them on the changed fields.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

from .inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    KIND_ALIASES,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)
from .scores_multitask_st import CALIBRATION_TEMPERATURE, check_threshold


# The kinds of task a head can serve. Each has a head builder and scores (`layers_multitask_st.TASK_HEADS`,
# `TASK_SCORES`), a loss (`losses_multitask_st.TASK_LOSSES`) and a label-row formatter
# (`scores_multitask_st.LABEL_ROW_FORMATTERS`).
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
DEFAULT_TASKS = {
    "topic": ["business", "entertainment", "politics", "sports", "tech"],
    "sentiment": ["negative", "positive"],
}


def check_choice(name: str, value, choices: Sequence[str]) -> str:
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
        kinds[task] = check_choice(f"task_kinds[{task!r}]", KIND_ALIASES.get(kind, kind), TASK_KINDS)
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
                checked[key] = check_choice(name, value, REGRESSION_LOSSES)
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
