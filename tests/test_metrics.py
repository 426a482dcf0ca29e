"""Evaluation numbers against hand-computed values and scipy: macro-F1 on an imbalanced case, STS-B Spearman."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from multitask_st.training.metrics import build_compute_metrics, multitask_classification_metrics, stsb_spearman


def _one_hot_logits(predicted: list[int], num_labels: int) -> np.ndarray:
    logits = np.zeros((len(predicted), num_labels), dtype=np.float32)
    logits[np.arange(len(predicted)), predicted] = 1.0
    return logits


# An imbalanced 3-class case where macro-F1 differs from accuracy and from micro/weighted F1:
#   truth      0 0 0 0 0 0 1 1 2 2
#   predicted  0 0 0 0 0 1 1 0 2 1
# class 0: precision 5/6, recall 5/6 -> F1 5/6; class 1: precision 1/3, recall 1/2 -> F1 0.4;
# class 2: precision 1, recall 1/2 -> F1 2/3.  Macro-F1 = (5/6 + 0.4 + 2/3) / 3 = 0.63333..., accuracy 7/10.
TOPIC_TRUTH = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
TOPIC_PREDICTED = [0, 0, 0, 0, 0, 1, 1, 0, 2, 1]
TOPIC_MACRO_F1 = (5 / 6 + 0.4 + 2 / 3) / 3
# sentiment, labelled on 4 rows only (the others -100): truth 1 1 1 0, predicted 1 1 0 0
#   class 0: P 1/2, R 1 -> 2/3; class 1: P 1, R 2/3 -> 0.8; macro 0.73333..., accuracy 3/4
SENTIMENT_MACRO_F1 = (2 / 3 + 0.8) / 2


def _mixed_case():
    sentiment_truth = [-100] * 6 + [1, 1, 1, 0]
    sentiment_predicted = [0] * 6 + [1, 1, 0, 0]  # the unlabelled rows' predictions must not count
    labels = np.array([TOPIC_TRUTH, sentiment_truth]).T
    predictions = {"topic": _one_hot_logits(TOPIC_PREDICTED, 3), "sentiment": _one_hot_logits(sentiment_predicted, 2)}
    return predictions, labels


def test_macro_f1_and_accuracy_match_a_hand_computed_imbalanced_case():
    predictions, labels = _mixed_case()
    metrics = multitask_classification_metrics(predictions, labels, ["topic", "sentiment"])
    assert metrics["topic_accuracy"] == pytest.approx(0.7)
    assert metrics["topic_f1"] == pytest.approx(TOPIC_MACRO_F1)  # 0.6333, not accuracy, micro or weighted F1
    assert metrics["sentiment_accuracy"] == pytest.approx(0.75)
    assert metrics["sentiment_f1"] == pytest.approx(SENTIMENT_MACRO_F1)
    assert metrics["mean_accuracy"] == pytest.approx((0.7 + 0.75) / 2)
    assert metrics["mean_f1"] == pytest.approx((TOPIC_MACRO_F1 + SENTIMENT_MACRO_F1) / 2)
    assert set(metrics) == {f"{t}_{m}" for t in ("topic", "sentiment", "mean") for m in ("accuracy", "f1")}


def test_a_task_with_no_labelled_row_gets_no_metric():
    predictions, labels = _mixed_case()
    labels[:, 1] = -100
    metrics = multitask_classification_metrics(predictions, labels, ["topic", "sentiment"])
    assert set(metrics) == {"topic_accuracy", "topic_f1", "mean_accuracy", "mean_f1"}
    assert metrics["mean_f1"] == pytest.approx(TOPIC_MACRO_F1)


def test_compute_metrics_reads_the_logits_from_the_prediction_tuple():
    from transformers import EvalPrediction

    predictions, labels = _mixed_case()
    embeddings = np.zeros((10, 4), dtype=np.float32)
    metrics = build_compute_metrics(["topic", "sentiment"])(EvalPrediction((predictions, embeddings), labels))
    assert metrics["topic_f1"] == pytest.approx(TOPIC_MACRO_F1)


def test_stsb_spearman_equals_scipy_on_the_models_cosines(tiny_model, tiny_tokenizer):
    first = ["the movie", "a team won", "stock market rose", "the phone", "bad film", "the election vote"]
    second = ["the film", "the election", "market fell", "phone launch", "great movie", "team lost"]
    a = tiny_model.encode(first, tiny_tokenizer, normalize_embeddings=True)
    b = tiny_model.encode(second, tiny_tokenizer, normalize_embeddings=True)
    cosine = (a * b).sum(axis=1)
    # Gold scores that rank the pairs almost as the model does (two ranks swapped): a clearly positive Spearman, so
    # a flipped sign or a Pearson in its place shows.
    order = np.argsort(cosine)
    scores = np.empty(len(first))
    scores[order] = np.arange(len(first), dtype=float)
    scores[order[[0, 1]]] = scores[order[[1, 0]]]
    expected = spearmanr(cosine, scores).statistic
    assert expected == pytest.approx(1 - 6 * 2 / (6 * 35))  # one adjacent swap among 6: 1 - 6*sum(d^2)/(n(n^2-1))
    pairs = {"sentence1": first, "sentence2": second, "score": list(scores)}
    assert stsb_spearman(tiny_model, tiny_tokenizer, pairs, batch_size=4) == pytest.approx(expected)


def test_a_task_without_labels_does_not_hide_the_tasks_after_it():
    predictions, labels = _mixed_case()
    labels[:, 0] = -100  # the first task unlabelled, the second labelled
    metrics = multitask_classification_metrics(predictions, labels, ["topic", "sentiment"])
    assert set(metrics) == {"sentiment_accuracy", "sentiment_f1", "mean_accuracy", "mean_f1"}
    assert metrics["mean_f1"] == pytest.approx(SENTIMENT_MACRO_F1)


def test_compute_metrics_takes_the_logits_alone_too():
    from transformers import EvalPrediction

    predictions, labels = _mixed_case()
    metrics = build_compute_metrics(["topic", "sentiment"])(EvalPrediction(predictions, labels))
    assert metrics["topic_f1"] == pytest.approx(TOPIC_MACRO_F1)


class _FixedEmbeddings:
    """A stand-in model whose embeddings have very different norms: ranking by dot product differs from cosine."""

    VECTORS = {
        "a1": [1.0, 0.0], "a2": [10.0, 1.0], "a3": [0.1, 0.1],
        "b1": [1.0, 0.2], "b2": [1.0, 1.0], "b3": [0.0, 5.0],
    }  # fmt: skip

    def __init__(self):
        self.batch_sizes = []

    def encode(self, texts, tokenizer, batch_size=32, normalize_embeddings=False):
        self.batch_sizes.append(batch_size)
        vectors = np.array([self.VECTORS[text] for text in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if normalize_embeddings else vectors


def test_stsb_spearman_ranks_by_cosine_not_by_dot_product():
    pairs = {"sentence1": ["a1", "a2", "a3"], "sentence2": ["b1", "b2", "b3"], "score": [3.0, 2.0, 1.0]}
    first = np.array([_FixedEmbeddings.VECTORS[t] for t in pairs["sentence1"]])
    second = np.array([_FixedEmbeddings.VECTORS[t] for t in pairs["sentence2"]])
    cosine = (first * second).sum(1) / np.linalg.norm(first, axis=1) / np.linalg.norm(second, axis=1)
    dot = (first * second).sum(1)
    assert spearmanr(cosine, pairs["score"]).statistic == pytest.approx(1.0)  # cosines 0.98, 0.77, 0.71
    assert spearmanr(dot, pairs["score"]).statistic < 0.9  # dot products 1.0, 11.0, 0.5
    model = _FixedEmbeddings()
    assert stsb_spearman(model, None, pairs, batch_size=7) == pytest.approx(1.0)
    assert model.batch_sizes == [7, 7]
