"""The checks an exported graph must pass before it is written: the ONNX model against the PyTorch one on real texts.

fp32: on a sample of the built-in sets' texts, every embedding within cosine `FP32_MIN_COSINE` of PyTorch's and the
same label from every head.

Reduced precision (int8), a statistical gate: a graph is judged by how often it changes the model's own decisions, on
as many texts as are at hand (`gate_reference`: every split of the built-in set each head was trained on, labelled;
the other built-in sets' texts and STS-B test's sentences, unlabelled). Per head, the share of labels it changes and
its exact interval; on labelled texts, the paired accuracy change, its interval and the exact McNemar test; the STS-B
Spearman change with a paired bootstrap interval; the embeddings' mean and min cosine (`gate_statistics`). It is
refused only when the evidence says it is worse than a bound (`GateBounds`: the whole interval beyond it, at the
stated confidence), so a verdict does not hang on a handful of flips in one small test split.

Both sides run through their public doors (PyTorch: `MultiTaskSTModel.score_chunks`, what `encode` and `predict`
run, once for both, with the transformers tokenizer; `MultiTaskSTOnnxModel` with `tokenizer.json`), so tokenisation is
compared too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from datasets import concatenate_datasets
from transformers.utils import logging

from ..data.corpora import BUILTIN_DATASETS, stsb
from ..inference_multitask_st import MULTI_LABEL, REGRESSION, SINGLE_LABEL, text_head_tasks
from ..model_folder import load_training_summary
from ..scores_multitask_st import DEFAULT_THRESHOLD, label_rows, resolve_calibration, sigmoid
from .gate_statistics import accuracy_evidence, flip_rate_evidence, spearman_delta_evidence
from .onnx_runtime import (
    EMBEDDING_OUTPUT,
    LOGITS_PREFIX,
    PAIR_HEADS_FILE_NAME,
    MultiTaskSTOnnxModel,
    task_kinds_of,
)


logger = logging.get_logger(__name__)

FP32_MIN_COSINE = 0.99999
FP32_MAX_REGRESSION_DIFFERENCE = (
    1e-3  # a regression head's largest difference to PyTorch, in target standard deviations
)
DEFAULT_GATE_TEXTS = 2000  # per built-in set: the sets' every split, sampled down to this many texts
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
    cosine = _cosine(embeddings, reference)
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


@dataclass(frozen=True)
class GateBounds:
    """What a reduced-precision graph may cost, and how sure the evidence must be before it is refused.

    A graph is refused when, at `confidence`, a head's flip rate (texts labelled otherwise than PyTorch labels them;
    for a multi-label head, texts given another set of labels) lies above `max_flip_rate`, a regression head's mean
    absolute difference to PyTorch exceeds `max_regression_difference` target standard deviations, a head's accuracy drop on labelled texts lies above `max_accuracy_drop` points, or
    the STS-B Spearman drop lies above `max_spearman_drop` points (the whole interval beyond the bound, each time);
    or when the mean embedding cosine to PyTorch over all gate texts is below `min_mean_cosine`.
    """

    max_flip_rate: float = 0.02
    max_accuracy_drop: float = 0.5  # points (percent)
    max_spearman_drop: float = 0.5  # points (x 100)
    min_mean_cosine: float = 0.99
    max_regression_difference: float = 0.05
    confidence: float = 0.95

    def __post_init__(self):
        for name, low, high in (
            ("max_flip_rate", 0.0, 1.0),
            ("max_accuracy_drop", 0.0, 100.0),
            ("max_spearman_drop", 0.0, 200.0),
            ("min_mean_cosine", -1.0, 1.0),
            ("max_regression_difference", 0.0, 100.0),
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"`{name}` must be a number in [{low}, {high}], got {value!r}.")
        if not isinstance(self.confidence, float) or not 0 < self.confidence < 1:
            raise ValueError(f"`confidence` must be a float strictly between 0 and 1, got {self.confidence!r}.")


@dataclass
class GateReference:
    """The texts a reduced-precision graph is judged on, with PyTorch's decisions and embeddings for them.

    `texts` starts with STS-B test's `sentence1`s then `sentence2`s (`stsb_scores` has one score per pair); each
    labelled task has `(indices into texts, true label names, description)` in `labelled`.
    """

    texts: list[str]
    sources: dict[str, int]
    labelled: dict[str, tuple[np.ndarray, np.ndarray, str]]
    label_names: dict[str, list[str]]  # per head, in logit order
    labels: dict[str, np.ndarray]  # PyTorch's label for every text, per head
    embeddings: np.ndarray
    stsb_scores: np.ndarray


def gate_reference(
    model, tokenizer, model_dir: Path, max_texts_per_source: int | None = DEFAULT_GATE_TEXTS, seed: int | None = None
) -> GateReference:
    """Collect the gate's texts and run PyTorch on them once (every candidate graph is compared with this).

    Texts: for each task trained on a built-in set (per the folder's training_summary.json), every labelled split of
    it (train, validation and test, split with the run's seed), with its labels; the default tasks' other built-in
    sets' texts, unlabelled; and STS-B test's sentences. Each set is sampled down to `max_texts_per_source` texts (seeded;
    STS-B to half as many pairs; `None` keeps all). Texts a model was trained on still measure how often a graph changes its decisions, and the
    accuracy difference is paired, so the trained-on advantage is the same on both sides.
    """
    if max_texts_per_source is not None and (not isinstance(max_texts_per_source, int) or max_texts_per_source < 1):
        raise ValueError(f"`max_texts_per_source` must be a positive int or None, got {max_texts_per_source!r}.")
    seed, trained_on = _trained_on(model, model_dir, seed)
    rng = np.random.default_rng(seed)

    def sample(count: int) -> np.ndarray:
        keep = rng.permutation(count)
        return np.sort(keep if max_texts_per_source is None else keep[:max_texts_per_source])

    pairs = stsb()["test"]
    if max_texts_per_source is not None and 2 * len(pairs) > max_texts_per_source:  # two sentences per pair
        pairs = pairs.select(np.sort(rng.permutation(len(pairs))[: max(max_texts_per_source // 2, 2)]))
    texts = list(pairs["sentence1"]) + list(pairs["sentence2"])
    sources = {f"STS-B test sentences ({len(pairs)} pairs)": len(texts)}
    labelled = {}
    for name in _gate_sets(trained_on):
        splits = BUILTIN_DATASETS[name].loader(seed=seed)
        rows = concatenate_datasets([splits[split] for split in splits])
        rows = rows.select(sample(len(rows)))
        names = rows.features["label"].names
        start = len(texts)
        texts += list(rows["text"])
        split_names = "+".join(splits)
        description = f"{name} {split_names} (seed {seed}, {len(rows)} of {sum(len(s) for s in splits.values())})"
        sources[description + (", labelled" if name in trained_on else ", unlabelled")] = len(rows)
        for task in trained_on.get(name, []):
            gold = np.asarray([names[label] for label in rows["label"]])
            labelled[task] = (np.arange(start, len(texts)), gold, description)
    logger.info(f"Running PyTorch on the gate's {len(texts)} texts.")
    predictions, embeddings = pytorch_outputs(model, tokenizer, texts, show_progress_bar=True)
    head_tasks = text_head_tasks(model.config.task_kinds)
    labels = {task: decisions_of_predictions(model.config, task, predictions) for task in head_tasks}
    label_names = {task: list(model.config.tasks[task]) for task in head_tasks}
    scores = np.asarray(pairs["score"], dtype=float)
    return GateReference(texts, sources, labelled, label_names, labels, embeddings, scores)


def _trained_on(model, model_dir: Path, seed: int | None) -> tuple[int, dict[str, list[str]]]:
    """The seed the run split the built-in sets with (unless given), and per built-in set the tasks trained on it
    (per the folder's training_summary.json)."""
    summary = load_training_summary(model_dir)
    if seed is None:
        seed = (summary.get("training_args") or summary.get("training") or {}).get("seed", 0)
    trained_on = {}
    for task, info in (summary.get("datasets") or {}).items():
        name = info.get("name") if isinstance(info, dict) else None
        builtin = BUILTIN_DATASETS.get(name)
        if task in model.config.tasks and builtin is not None and builtin.label_names is not None:
            if set(builtin.label_names) <= set(model.config.tasks[task]):
                trained_on.setdefault(name, []).append(task)
    return seed, trained_on


def _gate_sets(trained_on: dict[str, list[str]]) -> list[str]:
    """The built-in single-label sets the gate reads: the default tasks' sets, and any other a task was trained on."""
    return [
        name
        for name, builtin in BUILTIN_DATASETS.items()
        if builtin.label_names is not None
        and builtin.kind == SINGLE_LABEL
        and (builtin.task is not None or name in trained_on)
    ]


def calibration_texts(model, model_dir: Path, count: int, seed: int | None = None) -> list[str]:
    """`count` training texts a static int8 graph is calibrated on: the train splits (as the run split them) of the
    built-in sets the gate reads, and STS-B train's sentences, in equal parts (seeded)."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"`count` must be a positive int, got {count!r}.")
    seed, trained_on = _trained_on(model, model_dir, seed)
    pools = [list(BUILTIN_DATASETS[name].loader(seed=seed)["train"]["text"]) for name in _gate_sets(trained_on)]
    pools.append(list(stsb()["train"]["sentence1"]))
    rng = np.random.default_rng(seed)
    per_pool = [count // len(pools) + (index < count % len(pools)) for index in range(len(pools))]
    return [pool[i] for pool, n in zip(pools, per_pool, strict=True) for i in rng.permutation(len(pool))[:n]]


def judge_graph(
    reference: GateReference, folder: Path, file_name: str, bounds: GateBounds, backend: str = "onnxruntime"
) -> dict:
    """The evidence on the graph `folder/onnx/file_name` against PyTorch, and its verdict (`refusals`, empty when
    it passes); raises nothing, so a caller can try another candidate. `backend="openvino"` judges the graph as
    OpenVINO runs it by default (bf16 where the CPU has it; see `openvino_session`)."""
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder, file_name=file_name, **_runtime(backend))
    started = time.perf_counter()
    embeddings, *logits = onnx_model.run(
        reference.texts,
        [EMBEDDING_OUTPUT, *(LOGITS_PREFIX + task for task in onnx_model.head_tasks)],
        batch_size=BATCH_SIZE,
    )
    seconds = time.perf_counter() - started
    config = _config_view(onnx_model.config)
    decisions = {
        task: decisions_of_outputs(config, task, task_logits)
        for task, task_logits in zip(onnx_model.head_tasks, logits, strict=True)
    }
    runtime = {"backend": backend, "precision": onnx_model.session.precision} if backend != "onnxruntime" else {}
    return {"file": file_name, **runtime, **judge_outputs(reference, config, decisions, embeddings, bounds, seconds)}


def judge_dtype(reference: GateReference, model, tokenizer, dtype, bounds: GateBounds | None = None) -> dict:
    """The same gate for PyTorch itself in a reduced precision: `encode`/`predict(..., dtype=dtype)` (e.g.
    `torch.bfloat16`, autocast) against the float32 `reference` (`gate_reference` of the same model), with the
    verdict; raises nothing on a refusal (read `passed` and `refusals`).

    Example:
        >>> reference = gate_reference(model, tokenizer, model_dir)
        >>> evidence = judge_dtype(reference, model, tokenizer, torch.bfloat16)
        >>> evidence["passed"], evidence["tasks"]["sentiment"]["flips"]["flips"]
    """
    bounds = GateBounds() if bounds is None else bounds
    started = time.perf_counter()
    predictions, embeddings = pytorch_outputs(model, tokenizer, reference.texts, dtype, show_progress_bar=True)
    seconds = time.perf_counter() - started
    decisions = {task: decisions_of_predictions(model.config, task, predictions) for task in reference.labels}
    name = str(dtype).removeprefix("torch.")
    return {"dtype": name, **judge_outputs(reference, model.config, decisions, embeddings, bounds, seconds)}


def judge_outputs(
    reference: GateReference, config, decisions: dict[str, np.ndarray], embeddings: np.ndarray, bounds: GateBounds,
    seconds: float,
) -> dict:  # fmt: skip
    """The gate's evidence and verdict on a candidate's decisions (per text head, for every gate text: labels, or
    regression outputs in target std, see `decisions_of_outputs`) and embeddings, however they were computed (an ONNX
    graph, PyTorch in another precision); `seconds` the candidate took on the texts."""
    confidence = bounds.confidence
    tasks, refusals = {}, []
    for task, got in decisions.items():
        expected = reference.labels[task]
        if config.task_kinds[task] == REGRESSION:
            difference = float(np.abs(got - expected).mean())
            tasks[task] = {"mean_abs_difference_std": difference}
            if difference > bounds.max_regression_difference:
                refusals.append(
                    f"head {task!r} differs from PyTorch by {difference:.3f} target std on average (bound "
                    f"{bounds.max_regression_difference})"
                )
            continue
        flips = flip_rate_evidence(int((got != expected).sum()), len(got), bounds.max_flip_rate, confidence)
        tasks[task] = {"flips": flips}
        if flips["refused"]:
            low = flips["flip_rate_interval"][0]
            refusals.append(
                f"head {task!r} changes {flips['flips']} of {flips['texts']} labels (at least {low:.2%} at "
                f"{confidence:.0%} confidence, bound {bounds.max_flip_rate:.2%})"
            )
        if task in reference.labelled:
            indices, gold, description = reference.labelled[task]
            right_reference, right_graph = expected[indices] == gold, got[indices] == gold
            accuracy = accuracy_evidence(
                int((right_reference & ~right_graph).sum()),
                int((~right_reference & right_graph).sum()),
                len(indices),
                int(right_reference.sum()),
                bounds.max_accuracy_drop,
                confidence,
            )
            tasks[task]["accuracy"] = {"data": description, **accuracy}
            if accuracy["refused"]:
                low = accuracy["drop_points_interval"][0]
                refusals.append(
                    f"head {task!r} accuracy {accuracy['accuracy_graph']:.2f}% vs PyTorch "
                    f"{accuracy['accuracy_pytorch']:.2f}% on {description} (drop at least {low:.2f} points at "
                    f"{confidence:.0%} confidence, McNemar p = {accuracy['mcnemar_p_value']:.2g}, bound "
                    f"{bounds.max_accuracy_drop} points)"
                )
    cosine = _cosine(embeddings, reference.embeddings)
    pairs = len(reference.stsb_scores)
    spearman = spearman_delta_evidence(
        _cosine(reference.embeddings[:pairs], reference.embeddings[pairs : 2 * pairs]),
        _cosine(embeddings[:pairs], embeddings[pairs : 2 * pairs]),
        reference.stsb_scores,
        bounds.max_spearman_drop,
        confidence,
    )
    if spearman["refused"]:
        refusals.append(
            f"STS-B Spearman {spearman['graph']:.2f} vs PyTorch {spearman['pytorch']:.2f} (drop at least "
            f"{-spearman['delta_points_interval'][1]:.2f} points at {confidence:.0%} confidence, bound "
            f"{bounds.max_spearman_drop} points)"
        )
    if cosine.mean() < bounds.min_mean_cosine:
        refusals.append(f"mean embedding cosine to PyTorch {cosine.mean():.4f} < {bounds.min_mean_cosine}")
    return {
        "texts": len(reference.texts),
        "sources": reference.sources,
        "tasks": tasks,
        "stsb_spearman": {"data": f"STS-B test ({pairs} pairs)", **spearman},
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "texts_per_second": len(reference.texts) / seconds,
        "bounds": asdict(bounds),
        "refusals": refusals,
        "passed": not refusals,
    }


def _config_view(config: dict):
    """The fields of a folder's config.json the decisions read, as attributes (the ONNX model holds the JSON)."""
    from types import SimpleNamespace

    tasks = dict(config["tasks"])
    return SimpleNamespace(
        tasks=tasks,
        task_kinds=task_kinds_of(config, tasks),
        task_calibration=config.get("task_calibration") or {},
        task_target_scaling=config.get("task_target_scaling") or {},
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)  # float32 rounds 1 - 1e-8 to 1
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _raise_if(problems: list[str], file_name: str):
    if problems:
        raise ValueError(
            f"The exported {file_name} misses the export bounds, so nothing was written: {'; '.join(problems)}."
        )


def graph_outputs(folder: Path, file_name: str, texts: list[str], backend: str = "onnxruntime") -> list[np.ndarray]:
    """The graph's embedding and every head's logits for `texts`, as `backend` runs it (OpenVINO: its default, bf16
    where the CPU has it)."""
    onnx_model = MultiTaskSTOnnxModel.from_pretrained(folder, file_name=file_name, **_runtime(backend))
    names = [EMBEDDING_OUTPUT, *(LOGITS_PREFIX + task for task in onnx_model.head_tasks)]
    return onnx_model.run(texts, names, batch_size=BATCH_SIZE)


def output_error(
    reference: list[np.ndarray], folder: Path, file_name: str, texts: list[str], backend: str = "onnxruntime"
) -> float:
    """How far the graph's outputs are from `reference` (`graph_outputs` of the fp32 graph on `texts`): the sum over
    the embedding and each head's logits of the squared error relative to the reference's squared norm."""
    pairs = zip(graph_outputs(folder, file_name, texts, backend), reference, strict=True)
    return float(sum(((got - expected) ** 2).sum() / max((expected**2).sum(), 1e-12) for got, expected in pairs))


def texts_per_second(
    folder: Path, file_names: list[str], texts: list[str], rounds: int = 2, backend: str = "onnxruntime"
) -> dict[str, float]:
    """Each graph's best-of-`rounds` throughput on `texts` (embedding and every head), the graphs interleaved."""
    models = {
        name: MultiTaskSTOnnxModel.from_pretrained(folder, file_name=name, **_runtime(backend)) for name in file_names
    }
    best = dict.fromkeys(file_names, 0.0)
    for _ in range(rounds):
        for name, onnx_model in models.items():
            started = time.perf_counter()
            onnx_model.run(texts, [EMBEDDING_OUTPUT, *(LOGITS_PREFIX + t for t in onnx_model.head_tasks)])
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    return best


def _runtime(backend: str) -> dict:
    """`from_pretrained`'s arguments for the CPU runtime `backend` in its default precision."""
    return {"provider": "CPUExecutionProvider"} if backend == "onnxruntime" else {"backend": backend}
