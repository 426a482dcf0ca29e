"""The reduced-precision gate's statistics (multitask_st/export/gate_statistics.py), on hand-worked numbers and
against scipy's own implementations of the same tests."""

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap, spearmanr

from multitask_st.export.gate_statistics import (
    accuracy_evidence,
    clopper_pearson,
    flip_rate_evidence,
    mcnemar_exact,
    spearman_delta_evidence,
    spearman_points,
)


def test_clopper_pearson_on_hand_worked_ends():
    # 0 of n: the upper end solves (1 - p)^n = alpha/2, so p = 1 - 0.025^(1/10) = 0.308497 at 95%.
    low, high = clopper_pearson(0, 10, 0.95)
    assert low == 0.0
    assert high == pytest.approx(0.308497, abs=1e-6)
    # n of n, mirrored: the lower end solves p^n = alpha/2.
    assert clopper_pearson(10, 10, 0.95) == pytest.approx((0.691503, 1.0), abs=1e-6)
    # 99%: 1 - 0.005^(1/5) = 0.653428.
    assert clopper_pearson(0, 5, 0.99)[1] == pytest.approx(0.653428, abs=1e-6)
    assert clopper_pearson(0, 0) == (0.0, 1.0)  # no texts, no evidence


@pytest.mark.parametrize(("successes", "trials", "confidence"), [(7, 40, 0.95), (3, 2000, 0.95), (55, 120, 0.9)])
def test_clopper_pearson_is_scipys_exact_interval(successes, trials, confidence):
    expected = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    assert clopper_pearson(successes, trials, confidence) == pytest.approx((expected.low, expected.high), rel=1e-9)


def test_mcnemar_exact_on_hand_worked_counts():
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 2**5)  # 0.0625: five flips one way are not yet significant
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)  # two-sided
    assert mcnemar_exact(6, 1) == pytest.approx(2 * (1 + 7) / 2**7)  # 2 * P(X <= 1 | 7, 1/2) = 0.125
    assert mcnemar_exact(8, 1) == pytest.approx(2 * (1 + 9) / 2**9)  # 0.0390625
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(30, 12) == pytest.approx(binomtest(30, 42, 0.5).pvalue)


def test_flip_rate_is_refused_only_when_the_whole_interval_is_above_the_bound():
    # 0 flips: nothing says the graph flips anything, even with a bound of 0.
    assert flip_rate_evidence(0, 100, 0.0, 0.95)["refused"] is False
    # 1 flip with a bound of 0: the interval's lower end is above 0.
    one = flip_rate_evidence(1, 100, 0.0, 0.95)
    assert one["refused"] is True and one["flip_rate"] == 0.01
    # 3 of 100 (3%) against a 2% bound: the interval reaches below 2%, so the evidence does not refuse it ...
    few = flip_rate_evidence(3, 100, 0.02, 0.95)
    assert few["flip_rate_interval"][0] < 0.02 and few["refused"] is False
    # ... but 3% of 10,000 texts does.
    many = flip_rate_evidence(300, 10_000, 0.02, 0.95)
    assert many["flip_rate_interval"][0] > 0.02 and many["refused"] is True
    assert many["flip_rate_interval"] == pytest.approx(list(clopper_pearson(300, 10_000, 0.95)))


def test_accuracy_drop_interval_and_refusal_on_hand_worked_counts():
    # 5 texts PyTorch got right and the graph wrong, none the other way, of 100: a 5-point drop, but given 5
    # discordant texts the share p of "worse" among them has exact interval [0.025^(1/5), 1] = [0.478176, 1], so
    # the drop d/n * (2p - 1) lies in [5 * (2 * 0.478176 - 1), 5] = [-0.218, 5] points: zero is inside.
    evidence = accuracy_evidence(5, 0, 100, 80, max_drop_points=0.5, confidence=0.95)
    assert evidence["drop_points"] == 5.0
    assert evidence["accuracy_pytorch"] == 80.0 and evidence["accuracy_graph"] == 75.0
    assert evidence["drop_points_interval"] == pytest.approx([5 * (2 * 0.025**0.2 - 1), 5.0])
    assert evidence["mcnemar_p_value"] == pytest.approx(0.0625)
    assert evidence["refused"] is False
    # Ten times the texts, ten times the flips: the drop is as large, and now the evidence refuses it.
    evidence = accuracy_evidence(50, 0, 1000, 800, max_drop_points=0.5, confidence=0.95)
    assert evidence["drop_points_interval"][0] == pytest.approx(5 * (2 * 0.025 ** (1 / 50) - 1))
    assert evidence["drop_points_interval"][0] > 0.5 and evidence["refused"] is True
    # As many better as worse: no drop, whatever the counts.
    even = accuracy_evidence(40, 40, 1000, 800, max_drop_points=0.5, confidence=0.95)
    assert even["drop_points"] == 0.0 and even["mcnemar_p_value"] == 1.0 and even["refused"] is False
    # No discordant text: nothing changed.
    assert accuracy_evidence(0, 0, 10, 7, 0.0, 0.95)["drop_points_interval"] == [0.0, 0.0]


def test_spearman_delta_evidence():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 5, size=400)
    reference = scores + rng.normal(0, 1, size=400)
    same = spearman_delta_evidence(reference, reference.copy(), scores, 0.5, 0.95)
    assert same["delta_points"] == 0.0 and same["delta_points_interval"] == [0.0, 0.0] and same["refused"] is False
    noisy = reference + rng.normal(0, 3, size=400)  # a graph whose similarities carry much more noise
    worse = spearman_delta_evidence(reference, noisy, scores, 0.5, 0.95)
    assert worse["delta_points"] < -5 and worse["delta_points_interval"][1] < -0.5 and worse["refused"] is True
    assert worse["pairs"] == 400


def test_spearman_delta_interval_is_scipys_bootstrap_of_the_spearman_difference():
    # The same paired percentile bootstrap run by scipy on `spearmanr` itself, one resample at a time: the interval the
    # gate refuses on is the interval of the Spearman difference in points, not of a rescaled or other statistic.
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 6, size=120).astype(float)
    reference = scores + rng.normal(0, 1, size=120)
    graph = reference + rng.normal(0, 1, size=120)

    def delta(reference_, graph_, gold):
        return 100 * (spearmanr(graph_, gold).statistic - spearmanr(reference_, gold).statistic)

    expected = bootstrap(
        (reference, graph, scores), delta, paired=True, vectorized=False, n_resamples=200, confidence_level=0.9,
        method="percentile", rng=np.random.default_rng(5),
    ).confidence_interval  # fmt: skip
    evidence = spearman_delta_evidence(reference, graph, scores, 0.5, 0.9, resamples=200, seed=5)
    assert evidence["delta_points_interval"] == pytest.approx([expected.low, expected.high], rel=1e-9)
    assert evidence["delta_points"] == pytest.approx(delta(reference, graph, scores), rel=1e-12)


def test_spearman_points_is_scipys_spearman_per_resample():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, size=(5, 50)).astype(float)  # ties, as STS-B's scores have
    y = x + rng.normal(0, 2, size=(5, 50))
    expected = [100 * spearmanr(row_x, row_y).statistic for row_x, row_y in zip(x, y, strict=True)]
    assert spearman_points(x, y) == pytest.approx(expected, rel=1e-12)
    assert spearman_points(x[0], y[0]) == pytest.approx(expected[0], rel=1e-12)


def test_bad_counts_and_levels_are_refused():
    with pytest.raises(ValueError, match=r"A count must lie in \[0, 10\] \(the number of trials\), got 11"):
        clopper_pearson(11, 10)
    with pytest.raises(ValueError, match=r"`confidence` must lie strictly between 0 and 1, got 95"):
        clopper_pearson(1, 10, 95)


def test_the_evidence_records_on_edge_counts_and_at_the_bounds():
    """What mutation testing found unpinned: the report's every key, the no-text branches, one trial, a confidence
    other than the default passed through, the interval's upper end with texts both ways, a bound met exactly."""
    assert clopper_pearson(0, 1) == pytest.approx((0.0, 0.975))  # one trial: not the no-trial answer (0, 1)
    assert flip_rate_evidence(0, 0, 0.02, 0.95) == {
        "texts": 0, "flips": 0, "flip_rate": 0.0, "flip_rate_interval": [0.0, 1.0], "max_flip_rate": 0.02,
        "refused": False,
    }  # fmt: skip
    assert accuracy_evidence(0, 0, 0, 0, 0.5, 0.95) == {
        "texts": 0, "accuracy_pytorch": 0.0, "accuracy_graph": 0.0, "pytorch_right_graph_wrong": 0,
        "pytorch_wrong_graph_right": 0, "drop_points": 0.0, "drop_points_interval": [0.0, 0.0],
        "mcnemar_p_value": 1.0, "max_drop_points": 0.5, "refused": False,
    }  # fmt: skip
    # 90% passed on, not the default 95%.
    assert flip_rate_evidence(3, 40, 0.02, 0.9)["flip_rate_interval"] == list(clopper_pearson(3, 40, 0.9))
    low, high = clopper_pearson(6, 7, 0.9)
    evidence = accuracy_evidence(6, 1, 100, 80, 0.5, 0.9)
    assert evidence["drop_points_interval"] == pytest.approx([7 * (2 * low - 1), 7 * (2 * high - 1)])
    assert (evidence["pytorch_right_graph_wrong"], evidence["pytorch_wrong_graph_right"]) == (6, 1)
    with pytest.raises(ValueError, match=r"A count must lie in \[0, 10\]"):
        accuracy_evidence(8, 5, 10, 7, 0.5, 0.95)  # 13 discordant texts of 10
    # A bound met exactly does not refuse: only an interval wholly beyond it does.
    at_bound = accuracy_evidence(50, 0, 1000, 800, 0.5, 0.95)["drop_points_interval"][0]
    assert accuracy_evidence(50, 0, 1000, 800, at_bound, 0.95)["refused"] is False
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 5, size=200)
    reference = scores + rng.normal(0, 1, size=200)
    noisy = reference + rng.normal(0, 3, size=200)
    first = spearman_delta_evidence(reference, noisy, scores, 0.5, 0.9)
    assert first == spearman_delta_evidence(reference, noisy, scores, 0.5, 0.9)  # seeded: the same interval
    assert (
        first["delta_points_interval"]
        != spearman_delta_evidence(reference, noisy, scores, 0.5, 0.95)["delta_points_interval"]
    )  # the confidence reaches the bootstrap
    assert set(first) == {"pairs", "pytorch", "graph", "delta_points", "delta_points_interval", "max_drop_points",
                          "refused"}  # fmt: skip
    met = -first["delta_points_interval"][1]
    assert spearman_delta_evidence(reference, noisy, scores, met, 0.9)["refused"] is False
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="`confidence` must lie strictly between 0 and 1"):
            clopper_pearson(1, 10, confidence)
