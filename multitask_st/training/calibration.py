"""What is tuned on the validation split after training and saved in `config.task_calibration`: per multi-label task,
one decision threshold per label (`tune_thresholds`); per classification head, one temperature (the rest of this
module).

Fine-tuned transformers are over-confident: a head that says 0.99 is right less often than 99% of the time. Temperature
scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") divides a head's logits by one number `T`
before the softmax, chosen to minimise the negative log-likelihood of the validation labels. Dividing every logit of a
row by the same positive number keeps their order, so every argmax (and the accuracy) stays what it was; only the
probabilities change. The fitted temperature is stored in `config.task_calibration[task]["temperature"]`, which every
door reads through `scores_multitask_st.task_temperature`.

How well the probabilities read as confidence is measured by the expected calibration error over 15 equal-width
confidence bins (ECE: the gap between accuracy and mean confidence in each bin, weighted by the bin's share of the
examples) and by the negative log-likelihood, both before and after, on the validation split (where `T` was fitted)
and on the test split (which it never saw).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from ..inference_multitask_st import SINGLE_LABEL
from ..losses_multitask_st import labelled_rows
from ..scores_multitask_st import CALIBRATION_TEMPERATURE, DEFAULT_THRESHOLD


ECE_BINS = 15
# The temperatures searched: far wider than any fine-tuned head needs (Guo et al. report 1.1 to 4.5), and bounded so
# that a head that separates its validation split perfectly (NLL falls towards 0 as T -> 0) stops at the edge.
TEMPERATURE_RANGE = (0.05, 20.0)
# The kinds of head a temperature calibrates: one softmax over the labels.
CALIBRATED_KINDS = (SINGLE_LABEL,)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean `-log p(label)` of the softmax of `logits / temperature` (float64)."""
    logits, labels = _checked(logits, labels)
    log_probabilities = log_softmax(logits / temperature, axis=-1)
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width confidence bins `(lo, hi]`: `sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|`,
    where a row's confidence is its highest probability and it is correct when that label is the true one."""
    probabilities, labels = _checked(probabilities, labels)
    confidence, correct = probabilities.max(axis=-1), probabilities.argmax(axis=-1) == labels
    counts, accuracy, mean_confidence = reliability_bins(confidence, correct, bins)
    return float(np.sum(counts / len(labels) * np.abs(accuracy - mean_confidence)))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS):
    """Per confidence bin `(lo, hi]` of `bins` equal-width ones: the number of rows, their accuracy and their mean
    confidence (0 for an empty bin): what the ECE sums and the reliability diagram draws."""
    # Bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 (impossible for a softmax maximum) joins bin 0.
    index = np.clip(np.ceil(np.asarray(confidence, dtype=np.float64) * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    safe = np.maximum(counts, 1)
    accuracy = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=bins) / safe
    mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / safe
    return counts, accuracy, mean_confidence


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature `T` in `TEMPERATURE_RANGE` that minimises the NLL of `softmax(logits / T)` on `labels`.

    The NLL is convex in `1/T`, so a bounded scalar search over `log T` finds the one minimum. An over-confident
    head (logits too large for how often it is right) gets `T > 1`, an under-confident one `T < 1`.
    """
    logits, labels = _checked(logits, labels)
    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(result.x))


def calibration_stats(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """ECE (15 bins) and NLL of the raw softmax (`_before`) and of the softmax at `temperature` (`_after`), with the
    number of examples and the accuracy (the same before and after)."""
    logits, labels = _checked(logits, labels)
    before, after = scaled_softmax(logits), scaled_softmax(logits, temperature)
    return {
        "examples": len(labels),
        "accuracy": float((logits.argmax(axis=-1) == labels).mean()),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
    }


def labelled_logits(
    logits: Mapping[str, np.ndarray], label_ids: np.ndarray, config
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per calibrated head with labelled rows, `(logits, labels)` of those rows, from what `Trainer.predict` gives:
    `logits` per task `(n, num_labels)` and `label_ids`, the `labels` matrix (`config.label_slices()`; -100 or NaN
    where a row has no label for a task)."""
    label_ids = np.asarray(label_ids)
    pairs = {}
    for task, columns in config.label_slices().items():
        kind = config.task_kinds[task]
        if kind not in CALIBRATED_KINDS or task not in logits:
            continue
        labels = label_ids[:, columns]
        labelled = labelled_rows(labels, kind)
        if labelled.any():
            pairs[task] = (np.asarray(logits[task])[labelled], labels[labelled, 0].astype(np.int64))
    return pairs


def tune_thresholds(probabilities: np.ndarray, gold: np.ndarray) -> list[float]:
    """Per label (column), the threshold on its probability that maximises that label's F1 on these rows.

    Every distinct probability is a candidate cut (the label is given at or above it); the threshold returned lies
    halfway between the best cut and the next lower probability, so a text scored between the two seen ones is
    decided as the nearer seen one would be. Ties go to the higher cut (fewer false positives). A label with no positive
    row has no F1 to maximise: it keeps `DEFAULT_THRESHOLD`.

    Example:
        >>> tune_thresholds(np.array([[0.9], [0.4], [0.3], [0.1]]), np.array([[1], [1], [0], [0]]))
        [0.35]
    """
    probabilities, gold = np.asarray(probabilities, dtype=np.float64), np.asarray(gold) >= 0.5
    if probabilities.shape != gold.shape or probabilities.ndim != 2:
        raise ValueError(
            f"`probabilities` and `gold` must both be (rows, labels), got {probabilities.shape} and {gold.shape}."
        )
    thresholds = []
    for column in range(probabilities.shape[1]):
        positives = int(gold[:, column].sum())
        if positives == 0:
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        order = np.argsort(-probabilities[:, column], kind="stable")
        scores, hits = probabilities[order, column], gold[order, column]
        true_positives = np.cumsum(hits)
        # Cut after position i (inclusive) only where the next score differs: equal scores are decided together.
        last_of_value = np.append(scores[1:] != scores[:-1], True)
        predicted = np.arange(1, len(scores) + 1)
        f1 = np.where(last_of_value, 2 * true_positives / (predicted + positives), -1.0)
        best = int(np.argmax(f1))  # the first maximum: the highest cut among ties
        below = scores[best + 1] if best + 1 < len(scores) else 0.0
        thresholds.append(float((scores[best] + below) / 2))
    return thresholds


def fit_task_temperatures(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    """Per head, the fitted temperature and what it does on the rows it was fitted on:
    `{task: {"temperature": t, "validation": calibration_stats(...)}}` (`pairs` from `labelled_logits`)."""
    report = {}
    for task, (logits, labels) in pairs.items():
        temperature = fit_temperature(logits, labels)
        report[task] = {
            CALIBRATION_TEMPERATURE: temperature,
            "validation": calibration_stats(logits, labels, temperature),
        }
    return report


def scaled_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """`softmax(logits / temperature)` in float64."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1))


def _checked(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, labels = np.asarray(values, dtype=np.float64), np.asarray(labels)
    if values.ndim != 2 or labels.shape != (len(values),) or len(values) == 0:
        raise ValueError(
            f"Expected scores of shape (n, num_labels) with n > 0 and n labels, got {values.shape} and {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= values.shape[1]:
        raise ValueError(f"Labels must be integers in 0..{values.shape[1] - 1}, got {labels.dtype} {labels[:5]}...")
    return values, labels.astype(np.int64)
