"""The reduced-precision gate's verdict (`precision_gate.judge_outputs`) and the decisions it compares, on constructed
outputs: no model, no graph, so each case runs in milliseconds (and `make mutate MODULES=int8_gate` in minutes).
`test_onnx_export.py` runs the same verdict on real exported graphs (`judge_graph`)."""

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest

from multitask_st.export import onnx_check, precision_gate
from multitask_st.export.gate_statistics import accuracy_evidence, flip_rate_evidence


PAIRS = 12
TEXTS = 2 * PAIRS + 18  # STS-B's sentence1s, then sentence2s, then 18 more texts
SCORES = np.linspace(0.0, 5.0, PAIRS)


def config(**kinds):
    tasks = {"topic": ["a", "b", "c"], "tags": ["x", "y"], "score": ["value", "other"]}
    return SimpleNamespace(
        tasks=tasks,
        task_kinds={"topic": "classification", "tags": "multi_label", "score": "regression", **kinds},
        task_calibration={"tags": {"thresholds": [0.3, 0.9]}},
        task_target_scaling={"score": {"mean": [1.0, 0.0], "std": [2.0, 4.0]}},
    )


def embeddings_ranked_like_the_scores() -> np.ndarray:
    """Unit embeddings whose pair cosines order the pairs exactly as `SCORES` does (STS-B Spearman 100)."""
    rows = np.zeros((TEXTS, 4))
    rows[:, 2] = 1.0  # the texts after the pairs
    angle = (5 - SCORES) / 5 * np.pi / 2
    rows[:PAIRS] = [1.0, 0.0, 0.0, 0.0]
    rows[PAIRS : 2 * PAIRS, 0], rows[PAIRS : 2 * PAIRS, 1] = np.cos(angle), np.sin(angle)
    return rows


def reference(labelled=None) -> precision_gate.GateReference:
    rng = np.random.default_rng(0)
    return precision_gate.GateReference(
        texts=[f"text {i}" for i in range(TEXTS)],
        sources={"stsb": 2 * PAIRS, "other": TEXTS - 2 * PAIRS},
        labelled=labelled or {},
        label_names={"topic": ["a", "b", "c"]},
        labels={
            "topic": np.asarray(["a", "b", "c"])[np.arange(TEXTS) % 3],
            "tags": np.asarray(["x", "x|y", ""])[np.arange(TEXTS) % 3],
            "score": rng.normal(size=(TEXTS, 2)),
        },
        embeddings=embeddings_ranked_like_the_scores(),
        stsb_scores=SCORES,
    )


def same_decisions(ref: precision_gate.GateReference) -> dict:
    return {task: labels.copy() for task, labels in ref.labels.items()}


def judge(ref, decisions, embeddings=None, seconds=2.0, **bounds):
    embeddings = ref.embeddings.copy() if embeddings is None else embeddings
    return precision_gate.judge_outputs(
        ref, config(), decisions, embeddings, precision_gate.GateBounds(**bounds), seconds
    )


def test_identical_outputs_pass_with_the_whole_evidence():
    ref = reference()
    evidence = judge(ref, same_decisions(ref), seconds=2.0, max_flip_rate=0.0)
    assert evidence["passed"] and evidence["refusals"] == []
    assert evidence["texts"] == TEXTS and evidence["sources"] == ref.sources
    assert evidence["texts_per_second"] == pytest.approx(TEXTS / 2.0)
    assert evidence["bounds"] == asdict(precision_gate.GateBounds(max_flip_rate=0.0))
    assert evidence["tasks"]["topic"] == {"flips": flip_rate_evidence(0, TEXTS, 0.0, 0.95)}
    assert evidence["tasks"]["tags"]["flips"]["flips"] == 0
    assert evidence["tasks"]["score"] == {"mean_abs_difference_std": 0.0}
    assert evidence["mean_cosine"] == pytest.approx(1.0) and evidence["min_cosine"] == pytest.approx(1.0)
    spearman = evidence["stsb_spearman"]
    assert spearman["data"] == f"STS-B test ({PAIRS} pairs)" and spearman["pairs"] == PAIRS
    assert spearman["pytorch"] == pytest.approx(100.0) and spearman["graph"] == pytest.approx(100.0)


def test_flips_refuse_only_when_the_whole_interval_is_above_the_bound():
    ref = reference()
    decisions = same_decisions(ref)
    changed = np.arange(0, TEXTS, 2)  # half the topic labels changed
    decisions["topic"][changed] = np.where(decisions["topic"][changed] == "a", "b", "a")
    refused = judge(ref, decisions, max_flip_rate=0.2)
    flips = flip_rate_evidence(len(changed), TEXTS, 0.2, 0.95)
    assert refused["tasks"]["topic"]["flips"] == flips and flips["refused"]
    assert refused["refusals"] == [
        f"head 'topic' changes {len(changed)} of {TEXTS} labels (at least {flips['flip_rate_interval'][0]:.2%} at "
        "95% confidence, bound 20.00%)"
    ]
    assert not refused["passed"]
    # The same flips within a looser bound (the interval's low end is below it) pass.
    assert judge(ref, decisions, max_flip_rate=flips["flip_rate_interval"][0] + 1e-9)["passed"]
    # A multi-label head flips when its label set differs.
    decisions = same_decisions(ref)
    decisions["tags"][:] = "y"
    refused = judge(ref, decisions, max_flip_rate=0.2)
    assert refused["tasks"]["tags"]["flips"]["flips"] == TEXTS and refused["refusals"][0].startswith(
        f"head 'tags' changes {TEXTS} of {TEXTS} labels"
    )


def test_accuracy_on_labelled_texts_is_a_paired_comparison():
    indices = np.arange(TEXTS)
    ref = reference()
    gold = ref.labels["topic"].copy()
    ref = reference({"topic": (indices, gold, "constructed test split")})
    decisions = same_decisions(ref)
    decisions["topic"][:10] = "wrong"  # the graph misses 10 texts PyTorch gets right
    decisions["topic"][10] = "wrong"
    ref.labels["topic"][10] = "also wrong"  # and one both miss
    evidence = judge(ref, decisions, max_flip_rate=1.0, max_accuracy_drop=5.0)
    expected = accuracy_evidence(10, 0, TEXTS, TEXTS - 1, 5.0, 0.95)
    assert evidence["tasks"]["topic"]["accuracy"] == {"data": "constructed test split", **expected}
    assert expected["refused"] and evidence["refusals"] == [
        f"head 'topic' accuracy {expected['accuracy_graph']:.2f}% vs PyTorch {expected['accuracy_pytorch']:.2f}% on "
        f"constructed test split (drop at least {expected['drop_points_interval'][0]:.2f} points at 95% confidence, "
        f"McNemar p = {expected['mcnemar_p_value']:.2g}, bound 5.0 points)"
    ]
    # Texts the graph gets right where PyTorch did not count for the graph.
    decisions["topic"][:10] = gold[:10]
    decisions["topic"][10] = gold[10]
    better = judge(ref, decisions, max_flip_rate=1.0, max_accuracy_drop=5.0)["tasks"]["topic"]["accuracy"]
    assert (better["pytorch_right_graph_wrong"], better["pytorch_wrong_graph_right"]) == (0, 1)
    assert not better["refused"]


def test_a_regression_head_is_judged_by_its_mean_difference_in_target_std():
    ref = reference()
    decisions = same_decisions(ref)
    decisions["score"] = decisions["score"] + np.asarray([0.1, -0.3])  # mean |difference| 0.2 std
    evidence = judge(ref, decisions, max_regression_difference=0.25)
    assert evidence["tasks"]["score"]["mean_abs_difference_std"] == pytest.approx(0.2)
    assert evidence["passed"]
    refused = judge(ref, decisions, max_regression_difference=0.15)
    assert refused["refusals"] == ["head 'score' differs from PyTorch by 0.200 target std on average (bound 0.15)"]
    assert "flips" not in refused["tasks"]["score"]
    # At the bound exactly it passes (refused only beyond it): 0.25 and 0.75 average to 0.5 exactly.
    decisions["score"] = same_decisions(ref)["score"] + np.asarray([0.25, -0.75])
    assert judge(ref, decisions, max_regression_difference=0.5)["passed"]
    # A regression head judged first leaves the next heads judged too.
    first = {"score": decisions["score"], "topic": decisions["topic"]}
    assert set(judge(ref, first, max_regression_difference=0.5)["tasks"]) == {"score", "topic"}


def test_stsb_and_embedding_agreement_refuse_on_their_own():
    ref = reference()
    flattened = ref.embeddings.copy()
    flattened[PAIRS : 2 * PAIRS] = ref.embeddings[PAIRS : 2 * PAIRS][::-1]  # the pairs' order reversed
    refused = judge(ref, same_decisions(ref), flattened, max_spearman_drop=5.0, min_mean_cosine=-1.0)
    spearman = refused["stsb_spearman"]
    assert spearman["graph"] == pytest.approx(-100.0) and spearman["delta_points"] == pytest.approx(-200.0)
    assert len(refused["refusals"]) == 1 and refused["refusals"][0] == (
        f"STS-B Spearman {spearman['graph']:.2f} vs PyTorch 100.00 (drop at least "
        f"{-spearman['delta_points_interval'][1]:.2f} points at 95% confidence, bound 5.0 points)"
    )
    opposite = judge(ref, same_decisions(ref), -ref.embeddings, min_mean_cosine=0.5, max_spearman_drop=200.0)
    assert opposite["mean_cosine"] == pytest.approx(-1.0) and opposite["min_cosine"] == pytest.approx(-1.0)
    assert opposite["refusals"] == [f"mean embedding cosine to PyTorch {opposite['mean_cosine']:.4f} < 0.5"]
    # The cosine ignores the norm; a mean cosine at the bound exactly passes.
    scaled = ref.embeddings * 3.0
    tilted = scaled.copy()
    tilted[-1] = [1.0, 1.0, 1.0, 0.0]
    mean = float(onnx_check.row_cosines(tilted, ref.embeddings).mean())
    assert mean < 1.0 and judge(ref, same_decisions(ref), tilted, min_mean_cosine=mean)["passed"]


def test_decisions_from_raw_outputs_and_from_predict_agree_per_kind():
    cfg = config()
    logits = np.asarray([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert onnx_check.decisions_of_outputs(cfg, "topic", logits).tolist() == ["b", "a"]
    # Multi-label: the tuned thresholds (0.3, 0.9) on the sigmoid, labels joined in label order.
    tag_logits = np.asarray(
        [[0.0, 3.0], [-1.0, 2.0], [-2.0, -2.0]]
    )  # sigmoids (0.5, 0.95), (0.27, 0.88), (0.12, 0.12)
    assert onnx_check.decisions_of_outputs(cfg, "tags", tag_logits).tolist() == ["x|y", "", ""]
    untuned = config()
    untuned.task_calibration = {}
    assert onnx_check.decisions_of_outputs(untuned, "tags", tag_logits).tolist() == ["x|y", "y", ""]
    # Regression: values divided by the targets' std, per output.
    values = np.asarray([[2.0, 8.0], [-4.0, 4.0]])
    assert onnx_check.decisions_of_outputs(cfg, "score", values).tolist() == [[1.0, 2.0], [-2.0, 1.0]]
    unscaled = config()
    unscaled.task_target_scaling = {}
    assert onnx_check.decisions_of_outputs(unscaled, "score", values).tolist() == values.tolist()

    predictions = [
        {"topic": {"label": "b"}, "tags": {"labels": ["y", "x"]}, "score": {"values": {"value": 2.0, "other": 8.0}}},
        {"topic": {"label": "a"}, "tags": {"labels": []}, "score": {"values": {"value": -4.0, "other": 4.0}}},
    ]
    assert onnx_check.decisions_of_predictions(cfg, "topic", predictions).tolist() == ["b", "a"]
    assert onnx_check.decisions_of_predictions(cfg, "tags", predictions).tolist() == ["x|y", ""]
    assert onnx_check.decisions_of_predictions(cfg, "score", predictions).tolist() == [[1.0, 2.0], [-2.0, 1.0]]


def test_the_config_view_reads_a_folders_config_json():
    view = precision_gate._config_view(
        {
            "tasks": [["topic", ["a", "b"]], ["tags", ["x", "y"]]],
            "task_kinds": {"tags": "multi_label_classification"},
            "task_calibration": {"tags": {"thresholds": [0.2, 0.4]}},
            "task_target_scaling": {"topic": {"mean": [0.0], "std": [2.0]}},
        }
    )
    assert view.tasks == {"topic": ["a", "b"], "tags": ["x", "y"]}
    assert view.task_kinds == {"topic": "classification", "tags": "multi_label"}
    assert view.task_calibration == {"tags": {"thresholds": [0.2, 0.4]}}
    assert view.task_target_scaling == {"topic": {"mean": [0.0], "std": [2.0]}}
    bare = precision_gate._config_view({"tasks": {"topic": ["a", "b"]}, "task_kinds": None})
    assert bare.task_kinds == {"topic": "classification"} and bare.task_calibration == {}
    assert bare.task_target_scaling == {}


def test_cosine_is_exact_in_float64_and_ignores_norms():
    a = np.asarray([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    b = np.asarray([[2.0, 0.0], [-4.0, 3.0], [1.0, 0.0]], dtype=np.float32)
    assert onnx_check.row_cosines(a, b).tolist() == [1.0, 0.0, 0.0]
    short = np.asarray([[0.5, 0.0]], dtype=np.float32)  # norms below 1 are not clipped
    assert onnx_check.row_cosines(short, short).tolist() == [1.0]
    nearly, axis = np.asarray([[1.0, 1e-4]], dtype=np.float32), np.asarray([[1.0, 0.0]], dtype=np.float32)
    assert (
        onnx_check.row_cosines(nearly, axis)[0] < 1.0
    )  # float32 arithmetic would round it to 1: each side in float64
    assert onnx_check.row_cosines(axis, nearly)[0] < 1.0
