"""The check an exported fp32 graph must pass before it is written: the ONNX model against the PyTorch one on real
texts. On a sample of the built-in sets' texts, every embedding within cosine `FP32_MIN_COSINE` of PyTorch's and the
same label from every head (`check_fp32`; pair and embedding tasks: `check_pairs`).

Also what the reduced-precision gate (`precision_gate`) shares with it: PyTorch's outputs in one pass
(`pytorch_outputs`) and the decisions compared on each head (`decisions_of_predictions`, `decisions_of_outputs`).

Both sides run through their public doors (PyTorch: `MultiTaskSTModel.score_chunks`, what `encode` and `predict`
run, once for both, with the transformers tokenizer; `MultiTaskSTOnnxModel` with `tokenizer.json`), so tokenisation is
compared too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.corpora import BUILTIN_DATASETS, stsb
from ..inference_multitask_st import MULTI_LABEL, REGRESSION, SINGLE_LABEL, text_head_tasks
from ..scores_multitask_st import DEFAULT_THRESHOLD, label_rows, resolve_calibration, sigmoid
from .onnx_runtime import (
    EMBEDDING_OUTPUT,
    LOGITS_PREFIX,
    PAIR_HEADS_FILE_NAME,
    MultiTaskSTOnnxModel,
)


FP32_MIN_COSINE = 0.99999
FP32_MAX_REGRESSION_DIFFERENCE = (
    1e-3  # a regression head's largest difference to PyTorch, in target standard deviations
)
BATCH_SIZE = 32


def check_texts(count: int, seed: int = 0) -> list[str]:
    """`count` real texts: Rotten Tomatoes snippets, BBC News articles and STS-B sentences in equal parts."""
    return list(_check_texts(count, seed))


@lru_cache(maxsize=4)  # loading the corpora takes seconds; tests export many models
def _check_texts(count: int, seed: int) -> tuple[str, ...]:
    pools = [
        list(BUILTIN_DATASETS["rotten_tomatoes"].loader(seed=seed)["test"]["text"]),
        list(BUILTIN_DATASETS["bbc_news"].loader(seed=seed)["test"]["text"]),
        list(stsb()["test"]["sentence1"]),
    ]
    rng = np.random.default_rng(seed)
    per_pool = [count // 3 + (index < count % 3) for index in range(3)]
    return tuple(pool[i] for pool, n in zip(pools, per_pool, strict=True) for i in rng.permutation(len(pool))[:n])


def decisions_of_predictions(config, task: str, predictions: list[dict]) -> np.ndarray:
    """What `predict` decided for each text on one head: the label (classification), the labels given joined by
    `|` in label order (multi-label), or the values in target standard deviations, `(n, outputs)` (regression)."""
    kind, names = config.task_kinds[task], config.tasks[task]
    if kind == SINGLE_LABEL:
        return np.asarray([row[task]["label"] for row in predictions])
    if kind == MULTI_LABEL:
        return np.asarray(["|".join(name for name in names if name in row[task]["labels"]) for row in predictions])
    values = np.asarray([[row[task]["values"][name] for name in names] for row in predictions], dtype=np.float64)
    return values / _target_std(config, task)


def decisions_of_outputs(config, task: str, outputs: np.ndarray) -> np.ndarray:
    """`decisions_of_predictions` from a graph's raw outputs of one head (`logits_<task>`)."""
    kind, names = config.task_kinds[task], np.asarray(config.tasks[task])
    if kind == SINGLE_LABEL:
        return names[outputs.argmax(axis=-1)]
    if kind == MULTI_LABEL:
        thresholds = config.task_calibration.get(task, {}).get("thresholds") or [DEFAULT_THRESHOLD] * len(names)
        given = sigmoid(outputs.astype(np.float32)) >= np.asarray(thresholds)
        return np.asarray(["|".join(names[row]) for row in given])
    return outputs.astype(np.float64) / _target_std(config, task)


def _target_std(config, task: str) -> np.ndarray:
    return np.asarray(config.task_target_scaling.get(task, {}).get("std") or [1.0] * len(config.tasks[task]))


def check_fp32(model, tokenizer, folder: Path, file_name: str, texts: list[str]) -> dict:
    """Compare the fp32 graph with PyTorch on `texts`; raises `ValueError` on a miss, returns the measurements."""
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder, file_name=file_name, provider="CPUExecutionProvider")
    expected, reference = pytorch_outputs(model, tokenizer, texts)
    embeddings, *logits = onnx_model.run(
        texts, [EMBEDDING_OUTPUT, *(LOGITS_PREFIX + task for task in onnx_model.head_tasks)], batch_size=BATCH_SIZE
    )
    cosine = row_cosines(embeddings, reference)
    differing, regression = {}, {}
    for task, task_logits in zip(onnx_model.head_tasks, logits, strict=True):
        got = decisions_of_outputs(model.config, task, task_logits)
        reference = decisions_of_predictions(model.config, task, expected)
        if model.config.task_kinds[task] == REGRESSION:
            regression[task] = float(np.abs(got - reference).max())
        else:
            differing[task] = int((got != reference).sum())
    result = {
        "file": file_name,
        "texts": len(texts),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "labels_differing": differing,
        "bounds": {"min_cosine": FP32_MIN_COSINE, "labels_differing": 0},
    }
    if regression:  # in target standard deviations
        result["regression_max_difference"] = regression
        result["bounds"]["regression_max_difference"] = FP32_MAX_REGRESSION_DIFFERENCE
    problems = (
        [f"min cosine to PyTorch {cosine.min():.7f} < {FP32_MIN_COSINE}"] if cosine.min() < FP32_MIN_COSINE else []
    )
    problems += [
        f"head {task!r} gives another label on {n} of {len(texts)} texts" for task, n in differing.items() if n
    ]
    problems += [
        f"head {task!r} differs by up to {difference:.2g} target std (bound {FP32_MAX_REGRESSION_DIFFERENCE})"
        for task, difference in regression.items()
        if difference > FP32_MAX_REGRESSION_DIFFERENCE
    ]
    _raise_if(problems, file_name)
    return result


# The most a pair task's score (a probability, a regression output, a cosine) may differ from PyTorch's in fp32.
FP32_MAX_PAIR_SCORE_DIFFERENCE = 1e-4


def check_pairs(model, tokenizer, folder: Path, texts: list[str]) -> dict:
    """Compare the fp32 graphs' pair and embedding tasks with PyTorch on pairs of `texts` (each with the next one);
    raises `ValueError` on a miss, returns the measurements (with the pair heads' graph file, if any)."""
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder, provider="CPUExecutionProvider")
    pairs = list(zip(texts, texts[1:] + texts[:1], strict=True))
    expected = model.predict(pairs, tokenizer, batch_size=BATCH_SIZE, show_progress_bar=False)
    got = onnx_model.predict(pairs, batch_size=BATCH_SIZE)
    differences, differing = {}, {}
    for task in expected[0]:
        scores = [(e[task].get("probabilities") or e[task]["values"], g[task].get("probabilities") or g[task]["values"])
                  for e, g in zip(expected, got, strict=True)]  # fmt: skip
        differences[task] = max(abs(e[name] - g[name]) for e, g in scores for name in e)
        if "label" in expected[0][task]:
            differing[task] = sum(e[task]["label"] != g[task]["label"] for e, g in zip(expected, got, strict=True))
    result = {
        "pairs": len(pairs),
        "max_score_difference": differences,
        "labels_differing": differing,
        "bounds": {"max_score_difference": FP32_MAX_PAIR_SCORE_DIFFERENCE, "labels_differing": 0},
    }
    if onnx_model.pair_session is not None:
        result = {"file": PAIR_HEADS_FILE_NAME, **result}
    problems = [
        f"task {task!r} scores differ by {value:.2e} > {FP32_MAX_PAIR_SCORE_DIFFERENCE}"
        for task, value in differences.items()
        if value > FP32_MAX_PAIR_SCORE_DIFFERENCE
    ]
    problems += [
        f"task {task!r} gives another label on {n} of {len(pairs)} pairs" for task, n in differing.items() if n
    ]
    _raise_if(problems, PAIR_HEADS_FILE_NAME)
    return result


def pytorch_outputs(
    model, tokenizer, texts: list[str], dtype=None, show_progress_bar: bool = False
) -> tuple[list[dict], np.ndarray]:
    """PyTorch's predictions for `texts` (every text head, as `predict` gives them) and their embeddings
    `(n, embedding_dim)`, from ONE forward pass per batch: `score_chunks` with the embedding after the heads' scores,
    formatted by the engine's `label_rows` as `predict` formats them (so the predictions are `predict`'s and the
    embeddings `encode`'s). `dtype` as in `predict` (e.g. `torch.bfloat16`)."""
    config = model.config
    tasks = text_head_tasks(config.task_kinds)
    chunks = model.score_chunks(
        texts, tokenizer, tasks, with_embeddings=True, batch_size=BATCH_SIZE, show_progress_bar=show_progress_bar,
        dtype=dtype,
    )  # fmt: skip
    rows = np.concatenate(list(chunks))
    width = config.embedding_dim
    calibration = resolve_calibration(config.task_calibration, config.tasks, config.task_kinds, None)
    return label_rows(rows[:, :-width], config.tasks, tasks, config.task_kinds, calibration), rows[:, -width:]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of `a` with the same row of `b`, in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)  # float32 rounds 1 - 1e-8 to 1
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _raise_if(problems: list[str], file_name: str):
    if problems:
        raise ValueError(
            f"The exported {file_name} misses the export bounds, so nothing was written: {'; '.join(problems)}."
        )
