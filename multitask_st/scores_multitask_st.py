"""What a head's outputs mean, in every door: per kind of task its score columns from raw outputs (numpy, for the
torch-free ONNX runtime), the thresholds and temperatures tuned after training, and `predict`'s rows.

Part of the Hub payload (copied next to the weights; relative imports only); like the inference engine it imports only
the standard library and numpy, so the ONNX runtime formats with the same code as `predict` and the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)


# A multi-label head's decision threshold on a label's probability until one is tuned (`config.task_calibration`).
DEFAULT_THRESHOLD = 0.5

# The key of a head's fitted temperature in `config.task_calibration[task]`: its logits are divided by it before the
# softmax, in every door (`task_temperature`).
CALIBRATION_TEMPERATURE = "temperature"


def _single_label_rows(scores: np.ndarray, labels: list[str], calibration: Mapping) -> list[dict]:
    rows, best = scores.tolist(), scores.argmax(axis=-1).tolist()
    return [
        {"label": labels[index], "score": row[index], "probabilities": dict(zip(labels, row, strict=True))}
        for row, index in zip(rows, best, strict=True)
    ]


def _multi_label_rows(scores: np.ndarray, labels: list[str], calibration: Mapping) -> list[dict]:
    thresholds = np.asarray(calibration.get("thresholds") or [DEFAULT_THRESHOLD] * len(labels), dtype=np.float64)
    chosen = scores >= thresholds  # (n, labels)
    rows = []
    for row, picked in zip(scores.tolist(), chosen, strict=True):
        indices = sorted(np.flatnonzero(picked).tolist(), key=lambda index: -row[index])  # most probable first
        rows.append(
            {
                "labels": [labels[index] for index in indices],  # [] when no label reaches its threshold
                "scores": [row[index] for index in indices],
                "probabilities": dict(zip(labels, row, strict=True)),
            }
        )
    return rows


def _regression_rows(scores: np.ndarray, names: list[str], calibration: Mapping) -> list[dict]:
    return [{"values": dict(zip(names, row, strict=True))} for row in scores.tolist()]


# Per kind of task: its score columns (what `score_batch` computes: probabilities, or values in the data's units) and
# its calibration (`config.task_calibration[task]`, with predict-time overrides) -> one entry per row.
LABEL_ROW_FORMATTERS: dict[str, Callable[[np.ndarray, list[str], Mapping], list[dict]]] = {
    SINGLE_LABEL: _single_label_rows,
    MULTI_LABEL: _multi_label_rows,
    REGRESSION: _regression_rows,
    PAIR_CLASSIFICATION: _single_label_rows,
    PAIR_REGRESSION: _regression_rows,  # {"values": {output name: value}}
    EMBEDDING: _regression_rows,  # {"values": {name: cosine similarity of the pair's embeddings}}
    EMBEDDING_CONTRASTIVE: _regression_rows,
}


def label_rows(
    scores: np.ndarray,
    tasks: Mapping[str, list[str]],
    task_names: Sequence[str],
    task_kinds: Mapping | None = None,
    calibration: Mapping | None = None,
) -> list[dict]:
    """`predict`'s result from score columns laid out task after task (`(n, total labels of task_names)`): per row and
    task, `{"label", "score", "probabilities"}` for a classification task, `{"labels", "scores", "probabilities"}`
    (the labels at or above their thresholds, most probable first; possibly none) for a multi-label one, and
    `{"values": {name: number}}` for a regression one. `calibration`: per task, what `resolve_calibration` gives.
    Every door formats through this."""
    scores = np.asarray(scores)
    predictions = [{} for _ in range(len(scores))]
    offset = 0
    for task in task_names:
        labels = tasks[task]
        kind = (task_kinds or {}).get(task, SINGLE_LABEL)
        # Task by task, with the argmax done in numpy: the per-row Python is most of what predict adds to encode.
        entries = LABEL_ROW_FORMATTERS[kind](
            scores[:, offset : offset + len(labels)], labels, (calibration or {}).get(task, {})
        )
        offset += len(labels)
        for prediction, entry in zip(predictions, entries, strict=True):
            prediction[task] = entry
    return predictions


def resolve_calibration(
    calibration: Mapping | None, tasks: Mapping[str, list[str]], task_kinds: Mapping, thresholds=None
) -> dict[str, dict]:
    """Per task, the calibration `label_rows` formats with: the config's (`config.task_calibration`), with the
    multi-label `thresholds` a `predict` call passes in their place.

    `thresholds`: a number (every label of every multi-label task), or per task a number, a list (one per label, in
    label order) or `{label: number}` (the labels named; the others keep theirs). Each in [0, 1].

    Example:
        >>> resolve_calibration({}, {"tags": ["a", "b"]}, {"tags": "multi_label"}, {"tags": {"b": 0.3}})
        {'tags': {'thresholds': [0.5, 0.3]}}
    """
    resolved = {task: dict(values) for task, values in (calibration or {}).items()}
    if thresholds is None:
        return resolved
    multi_label = [task for task in tasks if task_kinds.get(task) == MULTI_LABEL]
    if not multi_label:
        raise ValueError(f"`thresholds` applies to multi-label tasks; this model has none (its tasks: {list(tasks)}).")
    if not isinstance(thresholds, Mapping):
        thresholds = dict.fromkeys(multi_label, thresholds)
    for task, given in thresholds.items():
        if task not in multi_label:
            raise ValueError(
                f"`thresholds` names {task!r}, which is not a multi-label task of this model {multi_label}."
            )
        labels = tasks[task]
        current = list(resolved.get(task, {}).get("thresholds") or [DEFAULT_THRESHOLD] * len(labels))
        if isinstance(given, Mapping):
            unknown = [label for label in given if label not in labels]
            if unknown:
                raise ValueError(f"`thresholds[{task!r}]` names unknown label(s) {unknown}; the labels are {labels}.")
            current = [given.get(label, value) for label, value in zip(labels, current, strict=True)]
        elif isinstance(given, (list, tuple)):
            if len(given) != len(labels):
                raise ValueError(
                    f"`thresholds[{task!r}]` must hold one number per label ({len(labels)}: {labels}), got {len(given)}."
                )
            current = list(given)
        else:
            current = [given] * len(labels)
        resolved.setdefault(task, {})["thresholds"] = [check_threshold(f"thresholds[{task!r}]", t) for t in current]
    return resolved


def check_threshold(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}.")
    return float(value)


def check_calibrated(calibrated) -> bool:
    if not isinstance(calibrated, bool):
        raise TypeError(f"`calibrated` must be True or False, got {calibrated!r}.")
    return calibrated


def task_temperature(task_calibration: Mapping | None, task: str, calibrated: bool = True) -> float:
    """The temperature a door divides `task`'s logits by before the softmax: the one fitted after training
    (`config.task_calibration[task]["temperature"]`), 1 when none was or when `calibrated` is False (the raw softmax).
    Every door asks here, so the same config gives the same probabilities everywhere."""
    if not check_calibrated(calibrated):
        return 1.0
    return float(((task_calibration or {}).get(task) or {}).get(CALIBRATION_TEMPERATURE, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large logits of either sign
    positive = logits >= 0
    exp = np.exp(np.where(positive, -logits, logits))
    return np.where(positive, 1.0 / (1.0 + exp), exp / (1.0 + exp))


# Per kind of task: a head's raw outputs -> its score columns, for the torch-free doors (the ONNX runtime); the model
# computes the same in torch (`layers_multitask_st.TASK_SCORES`). Regression heads output the data's units already.
NUMPY_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    SINGLE_LABEL: softmax,
    MULTI_LABEL: sigmoid,
    REGRESSION: lambda outputs: outputs,
    PAIR_CLASSIFICATION: softmax,
    PAIR_REGRESSION: lambda outputs: outputs,
}
