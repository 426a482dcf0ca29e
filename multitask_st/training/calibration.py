"""What is tuned on the validation split after training and saved in `config.task_calibration`: per multi-label task,
one decision threshold per label."""

from __future__ import annotations

import numpy as np

from ..inference_multitask_st import DEFAULT_THRESHOLD


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
