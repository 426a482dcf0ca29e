"""Training plots: the losses and evaluation metrics against steps, and one test plot per head (by its kind).

PNG files written into the output folder, named in `multitask_st.model_folder` (the Hub staging carries them and the
model card shows them):

    training_loss.png            each task's training loss (validation loss dashed) and the distillation loss
    evaluation_metrics.png       per-task accuracy and macro-F1, and the STS-B Spearman, at each evaluation
    confusion_matrix_<task>.png  per classification head on the test split, normalised per row (true label)
    label_f1_<task>.png          per multi-label head: each label's F1 on the test split at the tuned thresholds
    predicted_vs_true_<task>.png per regression head: predictions against targets on the test split, per output
    reliability_diagram_<task>.png  per calibrated classification head on the test split: accuracy against
                                 confidence per bin, before and after its temperature (`training.calibration`)

matplotlib is optional and imported only here, lazily. Figures are drawn with `matplotlib.figure.Figure` on the Agg
canvas, never through `pyplot`: no window opens and the caller's own matplotlib backend stays untouched. Without
matplotlib nothing fails; one line says that no plot was written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from transformers import TrainerCallback
from transformers.utils import logging

from ..inference_multitask_st import MULTI_LABEL, PAIR_CLASSIFICATION, PAIR_REGRESSION, REGRESSION, SINGLE_LABEL
from ..losses_multitask_st import labelled_rows
from ..model_folder import (
    CONFUSION_MATRIX_PLOT,
    EVALUATION_METRICS_PLOT,
    LABEL_F1_PLOT,
    PREDICTED_VS_TRUE_PLOT,
    RELIABILITY_DIAGRAM_PLOT,
    TRAINING_LOSS_PLOT,
)
from ..scores_multitask_st import DEFAULT_THRESHOLD, sigmoid
from .calibration import ECE_BINS, expected_calibration_error, reliability_bins, scaled_softmax
from .metrics import multi_label_f1


logger = logging.get_logger(__name__)


DISTILLATION_LOSS = "embedding_distillation_loss"
DPI = 110
_warned_missing = False


def _figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas, or None (with a one-line note, once) when matplotlib is missing."""
    global _warned_missing
    try:
        from matplotlib.figure import Figure
    except ImportError:
        if not _warned_missing:
            logger.warning("matplotlib is not installed, so no training plots are written (pip install matplotlib).")
            _warned_missing = True
        return None
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    logger.info(f"Wrote {path}.")
    return path


def _series(log_history: Sequence[Mapping], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged quantity, skipping entries without it or with a non-finite value."""
    points = [
        (entry["step"], float(entry[key]))
        for entry in log_history
        if isinstance(entry.get(key), (int, float)) and math.isfinite(entry[key]) and "step" in entry
    ]
    return [step for step, _ in points], [value for _, value in points]


def plot_training_loss(
    log_history: Sequence[Mapping], task_names: Sequence[str], path: str | os.PathLike
) -> Path | None:
    """Each task's training loss against steps (and its validation loss, dashed), plus the distillation loss.

    `log_history` is `trainer.state.log_history`. Returns the PNG path, or None when nothing was logged (or
    matplotlib is missing).
    """
    tasks = [task for task in task_names if _series(log_history, f"{task}_loss")[0]]
    distillation = _series(log_history, DISTILLATION_LOSS)
    total = _series(log_history, "loss")
    if not tasks and not total[0]:
        return None
    panels = 2 if distillation[0] else 1
    figure = _figure(6.0 * panels, 4.2)
    if figure is None:
        return None
    axes = figure.subplots(1, panels, squeeze=False)[0]
    losses = axes[0]
    for index, task in enumerate(tasks):
        color = f"C{index % 10}"
        losses.plot(*_series(log_history, f"{task}_loss"), color=color, label=f"{task} (train)")
        steps, values = _series(log_history, f"eval_{task}_loss")
        if steps:
            losses.plot(steps, values, color=color, linestyle="--", marker="o", label=f"{task} (validation)")
    if total[0] and distillation[0]:
        losses.plot(*total, color="0.5", linewidth=1, label="total (weighted, incl. distillation)")
    elif total[0] and not tasks:
        losses.plot(*total, color="0.3", label="total")
    losses.set(title="Task losses (cross-entropy)", xlabel="training step", ylabel="loss")
    losses.legend(fontsize="small")
    losses.grid(alpha=0.3)
    if distillation[0]:
        axes[1].plot(*distillation, color="C3", label="embedding distillation (unweighted)")
        axes[1].set(
            title="Embedding distillation loss", xlabel="training step", ylabel="mean squared similarity difference"
        )
        axes[1].legend(fontsize="small")
        axes[1].grid(alpha=0.3)
    figure.suptitle("Training losses")
    return _save(figure, Path(path))


def plot_evaluation_metrics(
    log_history: Sequence[Mapping], task_names: Sequence[str], path: str | os.PathLike
) -> Path | None:
    """Per-task accuracy and macro-F1, and the STS-B Spearman, at each evaluation (`eval_*` entries of the log)."""
    tasks = [task for task in task_names if _series(log_history, f"eval_{task}_accuracy")[0]]
    stsb = _series(log_history, "eval_stsb_spearman")
    panels = [(metric, title) for metric, title in (("accuracy", "Accuracy"), ("f1", "Macro-F1")) if tasks]
    if stsb[0]:
        panels.append(("stsb_spearman", "STS-B Spearman (embedding)"))
    if not panels:
        return None
    figure = _figure(4.6 * len(panels), 4.0)
    if figure is None:
        return None
    for axis, (metric, title) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        if metric == "stsb_spearman":
            axis.plot(*stsb, marker="o", color="C4", label="validation pairs")
        else:
            for index, task in enumerate(tasks):
                axis.plot(*_series(log_history, f"eval_{task}_{metric}"), marker="o", color=f"C{index}", label=task)
        axis.set(title=title, xlabel="training step", ylabel=title.split(" (")[0])
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    figure.suptitle("Validation metrics during training")
    return _save(figure, Path(path))


def confusion_matrix(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> np.ndarray:
    """Counts `(num_labels, num_labels)`: row = true label, column = predicted label."""
    predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
    return np.bincount(references * num_labels + predictions, minlength=num_labels**2).reshape(num_labels, num_labels)


def plot_confusion_matrix(
    counts: np.ndarray, label_names: Sequence[str], path: str | os.PathLike, title: str
) -> Path | None:
    """A row-normalised confusion matrix with the label names on both axes; each cell shows its share and count."""
    counts = np.asarray(counts)
    size = len(label_names)
    figure = _figure(max(4.5, 1.0 * size + 2.5), max(3.8, 0.85 * size + 2.0))
    if figure is None:
        return None
    axis = figure.subplots()
    shares = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, label="share of the true label's examples")
    for row in range(size):
        for column in range(size):
            color = "white" if shares[row, column] > 0.6 else "black"
            text = f"{shares[row, column]:.2f}\n({counts[row, column]})"
            axis.text(column, row, text, ha="center", va="center", color=color, fontsize="small")
    axis.set_xticks(range(size), labels=label_names, rotation=30, ha="right")
    axis.set_yticks(range(size), labels=label_names)
    axis.set(xlabel="predicted label", ylabel="true label", title=title)
    return _save(figure, Path(path))


def plot_label_f1(
    f1: Sequence[float], support: Sequence[int], label_names: Sequence[str], path: str | os.PathLike, title: str
) -> Path | None:
    """A bar per label: its F1, with the number of texts that have the label."""
    figure = _figure(max(5.0, 0.45 * len(label_names) + 2.5), 3.8)
    if figure is None:
        return None
    axis = figure.subplots()
    bars = axis.bar(range(len(label_names)), f1, color="C0")
    for bar, value, count in zip(bars, f1, support, strict=True):
        axis.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}\n(n={count})", ha="center",
                  va="bottom", fontsize="x-small")  # fmt: skip
    axis.set_xticks(range(len(label_names)), labels=label_names, rotation=30, ha="right")
    axis.set(ylim=(0, 1.15), ylabel="F1", title=title)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, Path(path))


def plot_predicted_vs_true(
    predicted: np.ndarray, gold: np.ndarray, output_names: Sequence[str], path: str | os.PathLike, title: str
) -> Path | None:
    """Per output, a scatter of the predictions against the targets, with the diagonal (a perfect prediction)."""
    figure = _figure(4.2 * len(output_names) + 0.5, 4.2)
    if figure is None:
        return None
    axes = np.atleast_1d(figure.subplots(1, len(output_names)))
    for column, (axis, name) in enumerate(zip(axes, output_names, strict=True)):
        present = ~np.isnan(gold[:, column])
        x, y = gold[present, column], predicted[present, column]
        axis.scatter(x, y, s=6, alpha=0.4, color="C0")
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        axis.plot([low, high], [low, high], color="C3", linewidth=1, label="predicted = true")
        axis.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=name)
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    return _save(figure, Path(path))


def _confusion_plot(outputs, columns, config, task, path, title):
    names = config.tasks[task]
    counts = confusion_matrix(outputs.argmax(axis=-1), columns[:, 0], len(names))
    return plot_confusion_matrix(counts, list(names), path, f"{title} (rows sum to 1)")


def _label_f1_plot(outputs, columns, config, task, path, title):
    names = config.tasks[task]
    thresholds = config.task_calibration.get(task, {}).get("thresholds") or [DEFAULT_THRESHOLD] * len(names)
    scores = multi_label_f1(sigmoid(outputs.astype(np.float64)), columns, thresholds)
    support = (columns >= 0.5).sum(axis=0).astype(int).tolist()
    return plot_label_f1(scores["per_label"].tolist(), support, names, path, f"{title}, F1 per label")


def _scatter_plot(outputs, columns, config, task, path, title):
    return plot_predicted_vs_true(outputs, columns, config.tasks[task], path, title)


# Per kind of task: its test plot's file name and how to draw it from the head's outputs and the task's label columns.
TEST_PLOTS = {
    SINGLE_LABEL: (CONFUSION_MATRIX_PLOT, _confusion_plot),
    MULTI_LABEL: (LABEL_F1_PLOT, _label_f1_plot),
    REGRESSION: (PREDICTED_VS_TRUE_PLOT, _scatter_plot),
    PAIR_CLASSIFICATION: (CONFUSION_MATRIX_PLOT, _confusion_plot),
    PAIR_REGRESSION: (PREDICTED_VS_TRUE_PLOT, _scatter_plot),
    # Embedding tasks: no head, no plot (their metrics are in the record).
}


def save_test_plots(
    logits: Mapping[str, np.ndarray], label_ids: np.ndarray, config, output_dir: str | os.PathLike, split: str = "test"
) -> list[Path]:
    """One plot per head with labelled examples, by its kind (`TEST_PLOTS`): `confusion_matrix_<task>.png`,
    `label_f1_<task>.png` or `predicted_vs_true_<task>.png`.

    Args:
        logits: per task, the head's outputs `(n, num_labels)` (the first element of `trainer.predict(...).predictions`).
        label_ids: the `labels` matrix (`config.label_slices()`; `-100`/NaN where an example has no label for a task).
        config: the model's config.
        output_dir: where the PNGs go.
        split: named in the titles.
    """
    label_ids = np.asarray(label_ids, dtype=np.float64)
    slices = config.label_slices()
    written = []
    for task in config.task_names:
        kind = config.task_kinds[task]
        columns = label_ids[:, slices[task]]
        labelled = labelled_rows(columns, kind)
        if task not in logits or not labelled.any() or kind not in TEST_PLOTS:
            continue
        file_name, draw = TEST_PLOTS[kind]
        title = f"{task} head: {split} split, {int(labelled.sum())} examples"
        path = draw(np.asarray(logits[task])[labelled], columns[labelled], config, task,
                    Path(output_dir) / file_name.format(task=task), title)  # fmt: skip
        if path is None:
            break  # matplotlib is missing (already said once)
        written.append(path)
    return written


def plot_reliability_diagram(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: str | os.PathLike, title: str
) -> Path | None:
    """One panel per `(name, confidence, correct, ece)`: the accuracy of each of the 15 confidence bins as a bar at
    the bin, the diagonal a calibrated head would follow, the gap shaded, and each bin's share of the examples."""
    figure = _figure(4.6 * len(panels), 4.4)
    if figure is None:
        return None
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / ECE_BINS
    for axis, (name, confidence, correct, ece) in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        counts, accuracy, mean_confidence = reliability_bins(confidence, correct, ECE_BINS)
        filled = counts > 0
        axis.bar(centres[filled], accuracy[filled], width=width, color="C0", edgecolor="white", label="accuracy")
        axis.bar(
            centres[filled], mean_confidence[filled] - accuracy[filled], bottom=accuracy[filled], width=width,
            color="C3", alpha=0.35, edgecolor="C3", label="gap to confidence",
        )  # fmt: skip
        axis.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="calibrated")
        share = axis.twinx()
        share.plot(centres[filled], counts[filled] / counts.sum(), color="C2", marker=".", linewidth=1)
        share.set_ylabel("share of examples", color="C2")
        share.set_ylim(0, 1)
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (highest probability)", ylabel="accuracy")
        axis.set_title(f"{name}: ECE {100 * ece:.2f}%")
        axis.legend(fontsize="small", loc="upper left")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    return _save(figure, Path(path))


def save_reliability_diagrams(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    temperatures: Mapping[str, float],
    output_dir: str | os.PathLike,
    split: str = "test",
) -> list[Path]:
    """One `reliability_diagram_<task>.png` per head in `temperatures`: its raw softmax and its softmax at the fitted
    temperature, side by side. `pairs`: per task, `(logits, labels)` of its labelled rows (see
    `calibration.labelled_logits`)."""
    written = []
    for task, temperature in temperatures.items():
        if task not in pairs:
            continue
        logits, labels = pairs[task]
        panels = []
        for name, scale in (("raw softmax", 1.0), (f"temperature {temperature:.2f}", temperature)):
            probabilities = scaled_softmax(logits, scale)
            ece = expected_calibration_error(probabilities, labels)
            panels.append((name, probabilities.max(axis=-1), probabilities.argmax(axis=-1) == labels, ece))
        title = f"{task} head: {split} split, {len(labels)} examples, before and after calibration"
        path = plot_reliability_diagram(panels, Path(output_dir) / RELIABILITY_DIAGRAM_PLOT.format(task=task), title)
        if path is None:
            break  # matplotlib is missing (already said once)
        written.append(path)
    return written


def save_training_plots(
    log_history: Sequence[Mapping], task_names: Sequence[str], output_dir: str | os.PathLike
) -> list[Path]:
    """`training_loss.png` and `evaluation_metrics.png` from `trainer.state.log_history` (those with data)."""
    output_dir = Path(output_dir)
    paths = [
        plot_training_loss(log_history, task_names, output_dir / TRAINING_LOSS_PLOT),
        plot_evaluation_metrics(log_history, task_names, output_dir / EVALUATION_METRICS_PLOT),
    ]
    return [path for path in paths if path is not None]


class TrainingPlotsCallback(TrainerCallback):
    """Writes `training_loss.png` and `evaluation_metrics.png` into `args.output_dir` when training ends.

    `MultiTaskTrainer` adds it unless `args.save_plots` is False; it works with any `Trainer` that logs per-task
    losses (`<task>_loss`) and `eval_<task>_accuracy`-style metrics.
    """

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            task_names = list(getattr(getattr(model, "config", None), "tasks", None) or {})
            save_training_plots(state.log_history, task_names, args.output_dir)
