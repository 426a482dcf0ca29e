"""Accuracy and macro-F1 as an `evaluate` metric that loads offline, by path, from inside the package.

`evaluate.load("accuracy")` fetches its script from the Hub; this one ships with multitask-st and needs only numpy.
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = "Accuracy and macro-averaged F1 over the classes that occur in predictions or references."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted label ids.
    references (`list[int]`): true label ids.
    num_labels (`int`, *optional*): classes 0..num_labels-1 all count in the macro average, even when absent.
Returns:
    accuracy (`float`), f1 (`float`, macro-averaged).
"""


class AccuracyMacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            return {"accuracy": float("nan"), "f1": float("nan")}
        classes = np.arange(num_labels) if num_labels else np.union1d(predictions, references)
        f1_scores = []
        for label in classes:
            true_positive = np.sum((predictions == label) & (references == label))
            predicted = np.sum(predictions == label)
            actual = np.sum(references == label)
            # F1 = 2TP / (predicted + actual); a class never predicted nor present scores 0, as in scikit-learn.
            f1_scores.append(2 * true_positive / (predicted + actual) if predicted + actual else 0.0)
        return {"accuracy": float(np.mean(predictions == references)), "f1": float(np.mean(f1_scores))}
