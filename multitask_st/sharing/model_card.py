"""The model card (README.md) of a model folder, rendered from its config.json and training_summary.json."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import jinja2
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from torch import nn
from transformers.utils import logging

from ..configuration_multitask_st import MultiTaskSTConfig
from ..modeling_multitask_st import MultiTaskSTModel
from .model_dir import ModelDir, read_model_dir


logger = logging.get_logger(__name__)


MODEL_CARD_TEMPLATE_NAME = "model_card.md"


DEFAULT_LICENSE = "apache-2.0"


DEFAULT_LANGUAGE = "en"


CARD_TAGS = ["multitask-st", "sentence-embeddings", "text-classification", "multi-task", "custom_code"]


NOT_RECORDED = "not recorded"


# (split name in training_summary.json["metrics"], prefix of its metric keys); the model-index prefers the first.
METRIC_SPLITS = (("test", "test"), ("validation", "eval"))


# Trainer bookkeeping that `trainer.evaluate()` returns next to the metrics; not worth a row in the card.
METRIC_NOISE_SUFFIXES = ("runtime", "samples_per_second", "steps_per_second", "epoch")


POOLING_DESCRIPTIONS = {
    "mean": "mean pooling over the non-padding tokens",
    "cls": "first ([CLS]) token",
    "max": "max pooling over the non-padding tokens",
    "attention": "attention pooling (a learned query weighs the non-padding tokens)",
}


# Keys of training_summary.json["training"] that get their own card section; the rest are listed as hyperparameters.
MULTITASK_SETUP_KEYS = (
    "sampling_strategy",
    "sampling_temperature",
    "mixed_task_batches",
    "embedding_distillation_weight",
)


LEARNING_RATE_KEYS = ("layer_decay", "projection_lr_multiplier", "head_lr_multiplier", "freeze", "unfreeze_schedule")


def render_model_card(
    model_dir: str | os.PathLike | ModelDir,
    repo_id: str | None = None,
    revision: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = DEFAULT_LANGUAGE,
    template_path: str | os.PathLike | None = None,
) -> str:
    """Render the model card (README.md) of a model directory from its config.json and training_summary.json.

    Args:
        model_dir: A saved model directory (or a [`ModelDir`] read from it; see [`stage_model_dir`]).
        repo_id: The Hub repository the card's usage snippets load from; defaults to the directory's name.
        revision: The revision the snippets pin; defaults to `"main"` (the card tells readers to pin a commit).
        license: License of the shared weights (a Hub license id), or None to leave it out.
        language: Language code(s) of the training data, or None to leave it out.
        template_path: A Jinja2 template to use instead of `model_card.md`.

    Returns:
        The card: YAML metadata (`library_name`, `pipeline_tag`, `tags`, `base_model`, `datasets`, `license`,
        `language`, a `model-index` with one result per task) followed by the Markdown body.
    """
    folder = read_model_dir(model_dir)  # names everything missing
    config, summary = folder.config, folder.summary
    model_name = (repo_id or folder.path.resolve().name).split("/")[-1]
    context = _card_context(folder)
    eval_results = _eval_results(config, summary)
    card_data = ModelCardData(
        model_name=model_name if eval_results else None,  # the model-index's name; no index, no name
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=CARD_TAGS,
        base_model=context["base_model"]["hub_id"],
        datasets=[row["hub_id"] for row in context["datasets"] if row["hub_id"]] or None,
        license=license,
        language=language,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
    )
    languages = [language] if isinstance(language, str) else list(language or [])
    template = _load_template(template_path)
    text = template.render(
        card_data=card_data.to_yaml(),
        model_name=model_name,
        repo_id=repo_id or folder.path.resolve().name,
        revision=revision or "main",
        license_text=f"`{license}`" if license else "not specified",
        language_text=", ".join(languages) if languages else "not specified",
        **context,
    )
    # Parse it back the way the Hub does: a template error fails here, not after the upload.
    ModelCard(text, ignore_metadata_errors=False)
    return text


def _load_template(template_path: str | os.PathLike | None) -> jinja2.Template:
    if template_path is None:
        template_path = _default_template_path()
    environment = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["cell"] = _table_cell
    environment.filters["metric"] = _format_metric
    environment.filters["code"] = lambda value: f"`{value}`"
    return environment.from_string(Path(template_path).read_text(encoding="utf-8"))


def _default_template_path() -> Path:
    # The template is `model_card.md` at the repository root; `multitask_st/model_card.md` links to it, so wheels
    # (which copy the link's target) and checkouts both find it here.
    path = Path(__file__).resolve().parent / MODEL_CARD_TEMPLATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"The model card template {path} is missing; pass `template_path`.")
    return path


def _card_context(folder: ModelDir) -> dict[str, Any]:
    """Everything the template shows, read from the model directory; missing facts become "not recorded"."""
    config, summary = folder.config, folder.summary
    # Built on the meta device (no memory, no init): the card describes (and counts) the modules the code builds.
    with torch.device("meta"):
        model = MultiTaskSTModel(config)
    backbone = config.backbone_config
    training = summary.get("training") or {}
    max_length = model.default_max_length(folder.tokenizer)
    max_length_source = (
        "`max_seq_length` in config.json" if config.max_seq_length is not None else "tokenizer and position limit"
    )
    task_metrics, other_metrics, metric_splits = _metric_tables(config, summary)
    stsb = _first_metric(summary, "stsb_spearman")
    return {
        "base_model": _base_model(summary, backbone),
        "backbone": {
            "model_type": backbone.model_type,
            "num_hidden_layers": getattr(backbone, "num_hidden_layers", getattr(backbone, "n_layers", "?")),
            "hidden_size": config.backbone_hidden_size,
            "num_attention_heads": getattr(backbone, "num_attention_heads", getattr(backbone, "n_heads", "?")),
            "vocab_size": getattr(backbone, "vocab_size", "?"),
        },
        "num_parameters": f"{model.num_parameters():,}",
        "max_seq_length": f"{max_length} tokens ({max_length_source})",
        "max_seq_length_tokens": max_length,
        "embedding_dim": config.embedding_dim,
        "normalize_embeddings": config.normalize_embeddings,
        "pooling": POOLING_DESCRIPTIONS.get(config.pooling_mode, config.pooling_mode),
        "projection": "projection: " + _describe_module(model.projection),
        "heads": [
            {"task": task, "labels": list(labels), "layers": _describe_module(model.heads[task])}
            for task, labels in config.tasks.items()
        ],
        "task_metrics": task_metrics,
        "other_metrics": other_metrics,
        "metric_splits": metric_splits,
        "stsb_spearman": stsb[1] if stsb else None,
        "datasets": _dataset_rows(config, summary),
        "task_loss_weights": training.get("task_loss_weights") or config.task_loss_weights,
        "multitask_setup": [(key, _format_value(training, key)) for key in MULTITASK_SETUP_KEYS],
        "optimizer_groups": [
            {
                key: _format_plain(group.get(key, NOT_RECORDED))
                for key in ("name", "lr", "weight_decay", "num_parameters")
            }
            for group in training.get("optimizer_groups") or []
            if isinstance(group, dict)
        ],
        "learning_rate_settings": [(key, _format_value(training, key)) for key in LEARNING_RATE_KEYS],
        "hyperparameters": [
            (key, _format_value(training, key))
            for key in training
            if key not in (*MULTITASK_SETUP_KEYS, *LEARNING_RATE_KEYS, "task_loss_weights", "optimizer_groups")
        ],
        "framework_versions": [(name, version) for name, version in (summary.get("framework_versions") or {}).items()],
        "transformers_version": getattr(config, "transformers_version", None),
    }


def _describe_module(module: nn.Module) -> str:
    if isinstance(module, nn.Sequential):
        return " -> ".join(_describe_module(layer) for layer in module)
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features} -> {module.out_features})"
    if isinstance(module, nn.Dropout):
        return f"Dropout({module.p:g})"
    if isinstance(module, nn.Identity):
        return "none (identity)"
    return type(module).__name__.removesuffix("Activation")  # GELUActivation -> GELU


def _base_model(summary: dict, backbone_config) -> dict[str, str | None]:
    name = summary.get("base_model") or getattr(backbone_config, "_name_or_path", None) or None
    hub_id = _hub_id(name)
    if hub_id:
        return {"hub_id": hub_id, "text": f"[{hub_id}](https://huggingface.co/{hub_id})"}
    if name:  # a local path: neither a Hub id nor worth publishing (it names someone's file system)
        return {"hub_id": None, "text": "a local checkpoint (not a Hub id)"}
    return {"hub_id": None, "text": NOT_RECORDED}


def _hub_id(value) -> str | None:
    """`value` if it reads as a Hub repository id, None if it is missing or a local path."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith((".", "~")):
        return None
    if os.path.exists(value):
        return None
    try:
        validate_repo_id(value)
    except HFValidationError:
        return None
    return value


def _dataset_rows(config: MultiTaskSTConfig, summary: dict) -> list[dict[str, Any]]:
    datasets = summary.get("datasets") or {}
    if not isinstance(datasets, dict) or not datasets:
        return []
    rows = []
    # The model's tasks first, in head order; then anything else the run recorded (an STS-B set, say).
    for task in [*config.task_names, *(name for name in datasets if name not in config.tasks)]:
        info = datasets.get(task) or {}
        hub_id = _hub_id(info.get("hub_id"))
        name = info.get("name") or hub_id
        if hub_id:
            dataset = f"[{name}](https://huggingface.co/datasets/{hub_id})"
        else:
            dataset = name or NOT_RECORDED
        rows.append(
            {
                "task": task,
                "name": name,
                "hub_id": hub_id,
                "dataset": dataset,
                "description": " ".join(
                    part
                    for part in (info.get("description"), f"Source: {info['source']}." if info.get("source") else None)
                    if part
                )
                or NOT_RECORDED,
                **{
                    key: _format_plain(info.get(key, NOT_RECORDED))
                    for key in ("num_train", "num_validation", "num_test")
                },
            }
        )
    return rows


def _split_metrics(summary: dict) -> list[tuple[str, str, dict[str, Any]]]:
    """`(split, key prefix, metrics)` for each split training_summary.json records, test first."""
    metrics = summary.get("metrics") or {}
    return [(split, prefix, metrics[split]) for split, prefix in METRIC_SPLITS if isinstance(metrics.get(split), dict)]


def _task_metric(values: dict, prefix: str, task: str, metric: str) -> float | None:
    value = values.get(f"{prefix}_{task}_{metric}")
    return float(value) if _is_number(value) else None


def _first_metric(summary: dict, name: str) -> tuple[str, float] | None:
    """`(split, value)` of a metric from the first split (test, then validation) that has it."""
    for split, prefix, values in _split_metrics(summary):
        value = values.get(f"{prefix}_{name}")
        if _is_number(value):
            return split, float(value)
    return None


def _metric_tables(config: MultiTaskSTConfig, summary: dict) -> tuple[list[dict], list[dict], list[str]]:
    # Validation before test in the tables, as the run produced them.
    splits = list(reversed(_split_metrics(summary)))
    task_rows = []
    for task in config.task_names:
        for split, prefix, values in splits:
            accuracy, f1 = (_task_metric(values, prefix, task, metric) for metric in ("accuracy", "f1"))
            if accuracy is not None or f1 is not None:
                task_rows.append({"task": task, "split": split, "accuracy": accuracy, "f1": f1})
    per_task = {f"{task}_{metric}" for task in config.task_names for metric in ("accuracy", "f1")}
    names = []
    for _, prefix, values in splits:
        for key, value in values.items():
            name = key.removeprefix(f"{prefix}_")
            if _is_number(value) and name not in per_task and not name.endswith(METRIC_NOISE_SUFFIXES):
                if name not in names:
                    names.append(name)
    other_rows = [
        {"name": name, "values": [values.get(f"{prefix}_{name}") for _, prefix, values in splits]} for name in names
    ]
    return task_rows, other_rows, [split for split, _, _ in splits]


def _reported_task_metrics(summary: dict, task: str) -> tuple[str, dict[str, float | None]] | None:
    """`(split, {"accuracy": ..., "f1": ...})` of a task from the first split (test, then validation) that has any."""
    for split, prefix, values in _split_metrics(summary):
        metrics = {metric: _task_metric(values, prefix, task, metric) for metric in ("accuracy", "f1")}
        if any(value is not None for value in metrics.values()):
            return split, metrics
    return None


def _eval_results(config: MultiTaskSTConfig, summary: dict) -> list[EvalResult]:
    """One model-index result per task (accuracy and macro-F1, test split else validation), plus STS-B if measured."""
    datasets = summary.get("datasets") if isinstance(summary.get("datasets"), dict) else {}
    results, seen = [], {}
    for task in config.task_names:
        found = _reported_task_metrics(summary, task)
        if found is None:
            continue  # no metric recorded for this task: nothing to report, nothing invented
        split, metrics = found
        info = datasets.get(task) or {}
        dataset_name = info.get("name") or _hub_id(info.get("hub_id")) or task
        dataset_type = _hub_id(info.get("hub_id")) or dataset_name
        # The Hub groups results by (task type, dataset, config, split): two heads trained on one dataset stay apart.
        dataset_config = task if (dataset_type, split) in seen else None
        seen[(dataset_type, split)] = task
        metric_names = {"accuracy": "Accuracy", "f1": "Macro-F1"}
        for metric, value in metrics.items():
            if value is not None:
                results.append(
                    EvalResult(
                        task_type="text-classification",
                        task_name=f"Text classification ({task})",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_config=dataset_config,
                        dataset_split=split,
                        metric_type=metric,
                        metric_name=metric_names[metric],
                        metric_value=value,
                        metric_config="macro" if metric == "f1" else None,
                    )
                )
    stsb = _first_metric(summary, "stsb_spearman")
    if stsb is not None:
        info = datasets.get("stsb") or {}
        name = info.get("name") or "stsb"
        results.append(
            EvalResult(
                task_type="sentence-similarity",
                task_name="Semantic textual similarity",
                dataset_type=_hub_id(info.get("hub_id")) or name,
                dataset_name=name,
                dataset_split=stsb[0],
                metric_type="spearmanr",
                metric_name="Spearman (cosine similarity)",
                metric_value=stsb[1],
            )
        )
    return results


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format_metric(value) -> str:
    return f"{value:.4f}" if _is_number(value) else NOT_RECORDED


def _format_plain(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return str(value)


def _format_value(mapping: dict, key: str) -> str:
    return _format_plain(mapping[key]) if key in mapping else NOT_RECORDED


def _table_cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")
