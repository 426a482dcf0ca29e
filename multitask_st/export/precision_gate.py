"""The statistical gate every reduced-precision form passes (int8, OpenVINO static int8, bf16; graphs and PyTorch).

A candidate is judged by how often it changes the model's own decisions, on as many texts as are at hand
(`gate_reference`: every split of the built-in set each head was trained on, labelled; the other built-in sets' texts
and STS-B test's sentences, unlabelled). Per head, the share of labels it changes and its exact interval; on labelled
texts, the paired accuracy change, its interval and the exact McNemar test; the STS-B Spearman change with a paired
bootstrap interval; the embeddings' mean and min cosine (`gate_statistics`). It is refused only when the evidence says
it is worse than a bound (`GateBounds`: the whole interval beyond it, at the stated confidence), so a verdict does not
hang on a handful of flips in one small test split.

Also the graph measurements the accuracy-aware search reads (`output_error`, `texts_per_second`) and the texts a static
int8 graph is calibrated on (`calibration_texts`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from datasets import concatenate_datasets
from transformers.utils import logging

from ..data.corpora import BUILTIN_DATASETS, stsb
from ..inference_multitask_st import REGRESSION, SINGLE_LABEL, text_head_tasks
from ..model_folder import load_training_summary
from .gate_statistics import accuracy_evidence, flip_rate_evidence, spearman_delta_evidence
from .onnx_check import BATCH_SIZE, decisions_of_outputs, decisions_of_predictions, pytorch_outputs, row_cosines
from .onnx_runtime import EMBEDDING_OUTPUT, LOGITS_PREFIX, MultiTaskSTOnnxModel, task_kinds_of


logger = logging.get_logger(__name__)

DEFAULT_GATE_TEXTS = 2000  # per built-in set: the sets' every split, sampled down to this many texts


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
    cosine = row_cosines(embeddings, reference.embeddings)
    pairs = len(reference.stsb_scores)
    spearman = spearman_delta_evidence(
        row_cosines(reference.embeddings[:pairs], reference.embeddings[pairs : 2 * pairs]),
        row_cosines(embeddings[:pairs], embeddings[pairs : 2 * pairs]),
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
