"""The checks an exported graph must pass before it is written: the ONNX model against the PyTorch one on real texts.

fp32: on a sample of the built-in sets' texts, every embedding within cosine `FP32_MIN_COSINE` of PyTorch's and the
same label from every head. int8: on each task's test split (the built-in set the model was trained on, per its
training_summary.json, split with the same seed), accuracy within `INT8_MAX_ACCURACY_DELTA` points of PyTorch's; on
STS-B test, Spearman within `INT8_MAX_SPEARMAN_DELTA` points; over all those texts, mean embedding cosine at least
`INT8_MIN_MEAN_COSINE`. A task trained on other data is held to agreeing with PyTorch's label on at least
`INT8_MIN_AGREEMENT` of the texts (which bounds its accuracy change by the same amount).

Both sides run through their public doors (`MultiTaskSTModel.encode`/`predict` with the transformers tokenizer,
`MultiTaskSTOnnxModel` with `tokenizer.json`), so tokenisation is compared too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from transformers.utils import logging

from ..data.corpora import BUILTIN_DATASETS, stsb
from ..model_folder import load_training_summary
from .onnx_runtime import EMBEDDING_OUTPUT, LOGITS_PREFIX, MultiTaskSTOnnxModel


logger = logging.get_logger(__name__)

FP32_MIN_COSINE = 0.99999
INT8_MAX_ACCURACY_DELTA = 0.5  # points (percent)
INT8_MAX_SPEARMAN_DELTA = 0.5  # points (x 100)
INT8_MIN_MEAN_COSINE = 0.99
INT8_MIN_AGREEMENT = 0.995
BATCH_SIZE = 32
STSB_PAIRS = None  # all of STS-B test


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


def check_fp32(model, tokenizer, folder: Path, file_name: str, texts: list[str]) -> dict:
    """Compare the fp32 graph with PyTorch on `texts`; raises `ValueError` on a miss, returns the measurements."""
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder, file_name=file_name, provider="CPUExecutionProvider")
    reference = model.encode(texts, tokenizer, batch_size=BATCH_SIZE, show_progress_bar=False)
    embeddings, *logits = onnx_model.run(
        texts, [EMBEDDING_OUTPUT, *(LOGITS_PREFIX + task for task in onnx_model.task_names)], batch_size=BATCH_SIZE
    )
    cosine = _cosine(embeddings, reference)
    expected = model.predict(texts, tokenizer, batch_size=BATCH_SIZE, show_progress_bar=False)
    differing = {}
    for task, task_logits in zip(onnx_model.task_names, logits, strict=True):
        labels = model.config.tasks[task]
        got = [labels[index] for index in task_logits.argmax(axis=-1)]
        differing[task] = sum(g != e[task]["label"] for g, e in zip(got, expected, strict=True))
    result = {
        "file": file_name,
        "texts": len(texts),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "labels_differing": differing,
        "bounds": {"min_cosine": FP32_MIN_COSINE, "labels_differing": 0},
    }
    problems = (
        [f"min cosine to PyTorch {cosine.min():.7f} < {FP32_MIN_COSINE}"] if cosine.min() < FP32_MIN_COSINE else []
    )
    problems += [
        f"head {task!r} gives another label on {n} of {len(texts)} texts" for task, n in differing.items() if n
    ]
    _raise_if(problems, file_name)
    return result


def check_int8(model, tokenizer, folder: Path, file_name: str, model_dir: Path, seed: int | None = None) -> dict:
    """Compare the int8 graph with PyTorch on each task's test split and STS-B test; raises `ValueError` on a miss."""
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder, file_name=file_name, provider="CPUExecutionProvider")
    task_data, other_texts = _task_test_sets(model, model_dir, seed)
    pairs = stsb()["test"]
    if STSB_PAIRS is not None:
        pairs = pairs.select(range(min(STSB_PAIRS, len(pairs))))
    sentences = list(pairs["sentence1"]) + list(pairs["sentence2"])
    problems, tasks = [], {}
    cosines = []
    for task, (texts, labels, source) in task_data.items():
        reference, got, cosine = _run_both(model, tokenizer, onnx_model, texts, task)
        cosines.append(cosine)
        accuracy_torch = 100 * float(np.mean(np.asarray(reference) == labels))
        accuracy_onnx = 100 * float(np.mean(np.asarray(got) == labels))
        delta = accuracy_onnx - accuracy_torch
        tasks[task] = {
            "data": source,
            "examples": len(texts),
            "accuracy_pytorch": round(accuracy_torch, 3),
            "accuracy_onnx": round(accuracy_onnx, 3),
            "delta_points": round(delta, 3),
        }
        if abs(delta) > INT8_MAX_ACCURACY_DELTA:
            problems.append(
                f"head {task!r} accuracy {accuracy_onnx:.2f}% vs PyTorch {accuracy_torch:.2f}% on {source}"
            )
    for task in model.config.task_names:
        if task in task_data:
            continue
        texts = other_texts or sentences
        reference, got, cosine = _run_both(model, tokenizer, onnx_model, texts, task)
        cosines.append(cosine)
        agreement = float(np.mean(np.asarray(reference) == np.asarray(got)))
        tasks[task] = {"data": f"agreement with PyTorch on {len(texts)} built-in texts", "agreement": agreement}
        if agreement < INT8_MIN_AGREEMENT:
            problems.append(
                f"head {task!r} agrees with PyTorch on {agreement:.2%} < {INT8_MIN_AGREEMENT:.1%} of texts"
            )

    reference = model.encode(sentences, tokenizer, batch_size=BATCH_SIZE, show_progress_bar=False)
    embeddings = onnx_model.encode(sentences, batch_size=BATCH_SIZE)
    cosines.append(_cosine(embeddings, reference))
    half = len(pairs)
    spearman_torch = 100 * _spearman(reference[:half], reference[half:], pairs["score"])
    spearman_onnx = 100 * _spearman(embeddings[:half], embeddings[half:], pairs["score"])
    cosine = np.concatenate(cosines)
    result = {
        "file": file_name,
        "tasks": tasks,
        "stsb_spearman": {
            "data": f"STS-B test ({half} pairs)",
            "pytorch": round(spearman_torch, 3),
            "onnx": round(spearman_onnx, 3),
            "delta_points": round(spearman_onnx - spearman_torch, 3),
        },
        "texts": int(cosine.size),
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "bounds": {
            "accuracy_delta_points": INT8_MAX_ACCURACY_DELTA,
            "stsb_spearman_delta_points": INT8_MAX_SPEARMAN_DELTA,
            "mean_cosine": INT8_MIN_MEAN_COSINE,
            "agreement_without_test_split": INT8_MIN_AGREEMENT,
        },
    }
    if abs(spearman_onnx - spearman_torch) > INT8_MAX_SPEARMAN_DELTA:
        problems.append(f"STS-B Spearman {spearman_onnx:.2f} vs PyTorch {spearman_torch:.2f}")
    if cosine.mean() < INT8_MIN_MEAN_COSINE:
        problems.append(f"mean embedding cosine to PyTorch {cosine.mean():.4f} < {INT8_MIN_MEAN_COSINE}")
    _raise_if(problems, file_name)
    return result


def _task_test_sets(model, model_dir: Path, seed: int | None) -> tuple[dict, list[str]]:
    """Per task trained on a built-in set, its test split as `(texts, label names, description)`; plus those texts."""
    summary = load_training_summary(model_dir)
    if seed is None:  # the seed the run split the built-in sets with
        seed = (summary.get("training_args") or summary.get("training") or {}).get("seed", 0)
    found, texts = {}, []
    for task, info in (summary.get("datasets") or {}).items():
        name = info.get("name") if isinstance(info, dict) else None
        builtin = BUILTIN_DATASETS.get(name)
        if task not in model.config.tasks or builtin is None or builtin.label_names is None:
            continue
        if not set(builtin.label_names) <= set(model.config.tasks[task]):
            continue
        test = builtin.loader(seed=seed)["test"]
        names = test.features["label"].names
        labels = np.asarray([names[label] for label in test["label"]])
        found[task] = (list(test["text"]), labels, f"{name} test split (seed {seed})")
        texts += list(test["text"])
    return found, texts


def _run_both(model, tokenizer, onnx_model, texts: list[str], task: str):
    """PyTorch's and the graph's labels for `task` on `texts`, and the embeddings' cosines."""
    reference = model.encode(texts, tokenizer, batch_size=BATCH_SIZE, show_progress_bar=False)
    expected = model.predict(texts, tokenizer, tasks=[task], batch_size=BATCH_SIZE, show_progress_bar=False)
    embeddings, logits = onnx_model.run(texts, [EMBEDDING_OUTPUT, LOGITS_PREFIX + task], batch_size=BATCH_SIZE)
    labels = model.config.tasks[task]
    got = [labels[index] for index in logits.argmax(axis=-1)]
    return [e[task]["label"] for e in expected], got, _cosine(embeddings, reference)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _spearman(first: np.ndarray, second: np.ndarray, scores) -> float:
    return float(spearmanr(_cosine(first, second), np.asarray(scores)).statistic)


def _raise_if(problems: list[str], file_name: str):
    if problems:
        raise ValueError(
            f"The exported {file_name} misses the export bounds, so nothing was written: {'; '.join(problems)}."
        )
