"""The statistics of the reduced-precision gate, as pure functions of counts (no model, no graph).

A reduced-precision graph is judged by how often it changes the model's own decisions. For one head on `n` texts,
`flips` of which get another label from the graph than from PyTorch, the flip rate's exact (Clopper-Pearson)
interval says how often it would flip on texts like these. On labelled texts, the accuracy change is a paired
comparison: only the discordant texts count, `worse` (PyTorch right, the graph wrong) and `better` (the reverse);
the exact McNemar test asks whether they differ by more than chance (a binomial test of `worse` out of
`worse + better` against 1/2), and the interval of the accuracy drop follows, given those discordant texts, from the
exact interval of `worse / (worse + better)`: drop = (worse - better) / n = d/n * (2 * p - 1) with d = worse + better.

A gate refuses only when the whole interval lies beyond the bound: the evidence says the graph is worse than allowed.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binomtest, bootstrap, rankdata


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact two-sided interval of a binomial proportion (`scipy.stats.binomtest(...).proportion_ci()`).

    Example: 0 of 10 -> (0.0, 1 - 0.025 ** (1 / 10)) = (0.0, 0.3085) at 95%.
    """
    _check_counts(successes, trials)
    _check_confidence(confidence)
    if trials == 0:
        return 0.0, 1.0
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def mcnemar_exact(worse: int, better: int) -> float:
    """The two-sided p-value of the exact McNemar test on the discordant counts of a paired comparison.

    Example: 5 worse, 0 better -> 2 * (1/2) ** 5 = 0.0625 (not significant at 5%, however one-sided it looks).
    """
    _check_counts(worse, worse + better)
    _check_counts(better, worse + better)
    if worse + better == 0:
        return 1.0
    return float(binomtest(worse, worse + better, 0.5).pvalue)


def flip_rate_evidence(flips: int, texts: int, max_flip_rate: float, confidence: float) -> dict:
    """Per head: how often the graph changes PyTorch's label, its interval, and whether that refuses the graph."""
    low, high = clopper_pearson(flips, texts, confidence)
    return {
        "texts": texts,
        "flips": flips,
        "flip_rate": flips / texts if texts else 0.0,
        "flip_rate_interval": [low, high],
        "max_flip_rate": max_flip_rate,
        "refused": low > max_flip_rate,
    }


def accuracy_evidence(
    worse: int, better: int, texts: int, correct_reference: int, max_drop_points: float, confidence: float
) -> dict:
    """Per head on labelled texts: the paired accuracy change, the exact McNemar p-value, the interval of the drop in
    points (given the discordant texts), and whether the drop is beyond `max_drop_points` at `confidence`."""
    _check_counts(worse + better, texts)
    _check_counts(correct_reference, texts)
    discordant = worse + better
    low, high = clopper_pearson(worse, discordant, confidence)
    scale = 100 * discordant / texts if texts else 0.0
    drop_low, drop_high = (scale * (2 * low - 1), scale * (2 * high - 1)) if discordant else (0.0, 0.0)
    accuracy_reference = 100 * correct_reference / texts if texts else 0.0
    return {
        "texts": texts,
        "accuracy_pytorch": accuracy_reference,
        "accuracy_graph": accuracy_reference + 100 * (better - worse) / texts if texts else 0.0,
        "pytorch_right_graph_wrong": worse,
        "pytorch_wrong_graph_right": better,
        "drop_points": 100 * (worse - better) / texts if texts else 0.0,
        "drop_points_interval": [drop_low, drop_high],
        "mcnemar_p_value": mcnemar_exact(worse, better),
        "max_drop_points": max_drop_points,
        "refused": drop_low > max_drop_points,
    }


def spearman_delta_evidence(
    reference_similarity: np.ndarray,
    graph_similarity: np.ndarray,
    scores: np.ndarray,
    max_drop_points: float,
    confidence: float,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """STS-B: the graph's Spearman minus PyTorch's (points, x 100), with a paired bootstrap interval over the pairs
    (the same resampled pairs score both), and whether the drop is beyond `max_drop_points` at `confidence`."""
    reference_similarity, graph_similarity = np.asarray(reference_similarity), np.asarray(graph_similarity)
    scores = np.asarray(scores, dtype=float)

    def delta(reference, graph, gold, axis=-1):
        return spearman_points(graph, gold) - spearman_points(reference, gold)

    spearman_reference = float(spearman_points(reference_similarity, scores))
    spearman_graph = float(spearman_points(graph_similarity, scores))
    interval = bootstrap(
        (reference_similarity, graph_similarity, scores),
        delta,
        paired=True,
        vectorized=True,  # every resample at once: ~100x faster than a spearmanr call per resample
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    low, high = float(interval.low), float(interval.high)
    return {
        "pairs": int(scores.size),
        "pytorch": spearman_reference,
        "graph": spearman_graph,
        "delta_points": spearman_graph - spearman_reference,
        "delta_points_interval": [low, high],
        "max_drop_points": max_drop_points,
        "refused": high < -max_drop_points,
    }


def spearman_points(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation x 100 along the last axis (the Pearson correlation of the average ranks, as
    `scipy.stats.spearmanr` computes it, ties included), for one sample or a stack of resamples at once."""
    x, y = rankdata(x, axis=-1), rankdata(y, axis=-1)
    x, y = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
    return 100 * (x * y).sum(axis=-1) / np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))


def _check_counts(count: int, total: int):
    if not 0 <= count <= total:
        raise ValueError(f"A count must lie in [0, {total}] (the number of trials), got {count}.")


def _check_confidence(confidence: float):
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must lie strictly between 0 and 1, got {confidence}.")
