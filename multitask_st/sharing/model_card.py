"""The model card (README.md) of a model folder, rendered from its config.json and training_summary.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2
import torch
from huggingface_hub import ModelCard, ModelCardData
from torch import nn
from transformers.utils import logging

from ..export.sentence_transformers_folder import plain_export_plan
from ..inference_multitask_st import EMBEDDING, EMBEDDING_CONTRASTIVE, PAIR_KINDS, text_head_tasks
from ..modeling_multitask_st import MultiTaskSTModel
from .card_format import NOT_RECORDED, format_metric, format_plain, format_value, table_cell
from .card_tables import base_model_link, calibration_rows, dataset_rows, lineage_rows, plot_files
from .export_evidence import onnx_exports
from .model_dir import ModelDir, read_model_dir
from .model_index import REPORTED_METRICS, eval_results, metric_tables, reported_metric


logger = logging.get_logger(__name__)


MODEL_CARD_TEMPLATE_NAME = "model_card.md"


DEFAULT_LICENSE = "apache-2.0"


DEFAULT_LANGUAGE = "en"


# Every door the card's snippets open: transformers (remote code, `pipeline`), sentence-transformers (with remote code).
CARD_TAGS = [
    "multitask-st",
    "sentence-transformers",
    "sentence-similarity",
    "feature-extraction",
    "sentence-embeddings",
    "text-classification",
    "multi-task",
    "custom_code",
]


POOLING_DESCRIPTIONS = {
    "mean": "mean pooling over the non-padding tokens",
    "cls": "first ([CLS]) token",
    "max": "max pooling over the non-padding tokens",
    "attention": "attention pooling (a learned query weighs the non-padding tokens)",
}


# Training arguments and run facts (training_summary.json["training_args"] and ["run"]) with their own card section.
MULTITASK_SETUP_KEYS = (
    "sampling_strategy",
    "sampling_temperature",
    "mixed_task_batches",
    "embedding_distillation_weight",
)


LEARNING_RATE_KEYS = (
    "layer_decay",
    "projection_lr_multiplier",
    "head_lr_multiplier",
    "freeze",
    "unfreeze_schedule",
    "unfreeze_stages",
)


# Hyperparameters listed whatever their value; other training arguments only where they differ from the default.
ALWAYS_LISTED_ARGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "seed",
)


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
    results = eval_results(config, summary)
    card_data = ModelCardData(
        model_name=model_name if results else None,  # the model-index's name; no index, no name
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=CARD_TAGS,
        base_model=context["base_model"]["hub_id"],
        datasets=[row["hub_id"] for row in context["datasets"] if row["hub_id"]] or None,
        license=license,
        language=language,
        metrics=sorted({result.metric_type for result in results}) or None,
        eval_results=results or None,
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
    environment.filters["cell"] = table_cell
    environment.filters["metric"] = format_metric
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
    arguments, run = summary.get("training_args") or {}, summary.get("run") or {}
    training = {**arguments, **run}  # what the run resolved (frozen parts, distillation applied) wins
    sections = (*MULTITASK_SETUP_KEYS, *LEARNING_RATE_KEYS, "task_loss_weights", "optimizer_groups")
    listed_args = [*ALWAYS_LISTED_ARGS, *(summary.get("non_default_args") or [])]
    max_length = model.default_max_length(folder.tokenizer)
    max_length_source = (
        "`max_seq_length` in config.json" if config.max_seq_length is not None else "tokenizer and position limit"
    )
    task_metrics, other_metrics, metric_splits = metric_tables(config, summary)
    stsb = reported_metric(summary, "stsb_spearman")
    return {
        "base_model": base_model_link(summary, backbone),
        "backbone": {
            "model_type": backbone.model_type,
            "num_hidden_layers": backbone.num_hidden_layers,  # DistilBERT's n_layers, n_heads: via attribute_map
            "hidden_size": config.backbone_hidden_size,
            "num_attention_heads": backbone.num_attention_heads,
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
            {
                "task": task,
                "kind": config.task_kinds[task],
                "labels": list(labels),
                "layers": _describe_module(model.heads[task]),
            }  # fmt: skip
            for task, labels in config.tasks.items()
            if task in text_head_tasks(config.task_kinds)
        ],
        "pair_tasks": [
            {
                "task": task,
                "kind": config.task_kinds[task],
                "labels": list(labels),
                "layers": PAIR_TASK_DESCRIPTIONS[config.task_kinds[task]].format(
                    head=_describe_module(model.heads[task]) if task in model.heads else ""
                ),
            }
            for task, labels in config.tasks.items()
            if config.task_kinds[task] in PAIR_KINDS
        ],
        "trains_embedding": any(kind in (EMBEDDING, EMBEDDING_CONTRASTIVE) for kind in config.task_kinds.values()),
        "score_metrics": [
            {**row, "kind": kind, "metrics": {shown: row.get(name) for name, shown, *_ in REPORTED_METRICS[kind]}}
            for kind in PAIR_KINDS
            for row in task_metrics[kind]
        ],
        "task_metrics": task_metrics["classification"],
        "multi_label_metrics": task_metrics["multi_label"],
        "regression_metrics": task_metrics["regression"],
        "other_metrics": other_metrics,
        "metric_splits": metric_splits,
        "stsb_spearman": stsb[1] if stsb else None,
        "datasets": dataset_rows(config, summary),
        "calibration": calibration_rows(config, summary),
        "lineage": lineage_rows(config),
        "held_tasks": list(run.get("held_tasks") or []),
        "trained_tasks": [task for task in config.task_names if task not in (run.get("held_tasks") or [])],
        "calibrated_tasks": [
            task for task in config.task_names if "temperature" in config.task_calibration.get(task, {})
        ],
        "plots": plot_files(folder),
        "onnx": onnx_exports(folder),
        "task_loss_weights": training.get("task_loss_weights") or config.task_loss_weights,
        "multitask_setup": [(key, format_value(training, key)) for key in MULTITASK_SETUP_KEYS],
        "optimizer_groups": [
            {
                key: format_plain(group.get(key, NOT_RECORDED))
                for key in ("name", "lr", "weight_decay", "num_parameters")
            }
            for group in training.get("optimizer_groups") or []
            if isinstance(group, dict)
        ],
        "learning_rate_settings": [(key, format_value(training, key)) for key in LEARNING_RATE_KEYS],
        "hyperparameters": [
            (key, format_value(training, key))
            for key in [*dict.fromkeys(key for key in listed_args if key in arguments), *run]
            if key not in sections
        ],
        "framework_versions": [(name, version) for name, version in (summary.get("framework_versions") or {}).items()],
        "transformers_version": getattr(config, "transformers_version", None),
        "plain_export": plain_export_plan(config),
    }


# What each kind of pair task does, for the card's architecture sketch (`{head}`: the head's layers).
PAIR_TASK_DESCRIPTIONS = {
    "pair_classification": "pair head over (u, v, |u - v|, u * v) of the two texts' embeddings: {head}",
    "pair_regression": "pair regression head over (u, v, |u - v|, u * v) of the two texts' embeddings: {head}",
    "embedding": "no head: trains the embedding on scored pairs (CoSENT); its score is the pair's cosine",
    "embedding_contrastive": "no head: trains the embedding with in-batch negatives; its score is the pair's cosine",
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
