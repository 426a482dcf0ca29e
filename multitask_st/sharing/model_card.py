"""The model card (README.md) of a model folder, rendered from its config.json and training_summary.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jinja2
import torch
from huggingface_hub import ModelCard, ModelCardData
from torch import nn
from transformers.utils import logging

from ..configuration_multitask_st import MultiTaskSTConfig
from ..export.sentence_transformers_folder import plain_export_plan
from ..inference_multitask_st import EMBEDDING, EMBEDDING_CONTRASTIVE, PAIR_KINDS, text_head_tasks
from ..model_folder import (
    CONFUSION_MATRIX_PLOT,
    EVALUATION_METRICS_PLOT,
    LABEL_F1_PLOT,
    PREDICTED_VS_TRUE_PLOT,
    RELIABILITY_DIAGRAM_PLOT,
    TRAINING_LOSS_PLOT,
    read_export_report,
)
from ..modeling_multitask_st import MultiTaskSTModel
from .model_dir import ModelDir, read_model_dir
from .model_index import REPORTED_METRICS, as_hub_id, eval_results, is_number, metric_tables, reported_metric


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


NOT_RECORDED = "not recorded"


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
        "base_model": _base_model(summary, backbone),
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
        "datasets": _dataset_rows(config, summary),
        "calibration": _calibration_rows(config, summary),
        "lineage": _lineage_rows(config),
        "held_tasks": list(run.get("held_tasks") or []),
        "trained_tasks": [task for task in config.task_names if task not in (run.get("held_tasks") or [])],
        "calibrated_tasks": [
            task for task in config.task_names if "temperature" in config.task_calibration.get(task, {})
        ],
        "plots": _plots(folder),
        "onnx": _onnx_exports(folder),
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
            for key in [*dict.fromkeys(key for key in listed_args if key in arguments), *run]
            if key not in sections
        ],
        "framework_versions": [(name, version) for name, version in (summary.get("framework_versions") or {}).items()],
        "transformers_version": getattr(config, "transformers_version", None),
        "plain_export": plain_export_plan(config),
    }


def _plots(folder: ModelDir) -> dict[str, Any]:
    """The training plots (`multitask_st.training.plots`) the folder holds, as the relative paths the card links."""

    def present(name: str) -> str | None:
        return name if (folder.path / name).is_file() else None

    def per_task(pattern: str) -> list[dict]:
        return [
            {"task": task, "file": name}
            for task in folder.config.task_names
            if (name := present(pattern.format(task=task)))
        ]

    return {
        "training_loss": present(TRAINING_LOSS_PLOT),
        "evaluation_metrics": present(EVALUATION_METRICS_PLOT),
        "confusion_matrices": per_task(CONFUSION_MATRIX_PLOT),
        "label_f1": per_task(LABEL_F1_PLOT),
        "predicted_vs_true": per_task(PREDICTED_VS_TRUE_PLOT),
        "confusion_split": "test",
        "reliability_diagrams": per_task(RELIABILITY_DIAGRAM_PLOT),
    }


def _lineage_rows(config: MultiTaskSTConfig) -> list[dict[str, str]]:
    """`config.lineage` as table rows: each change, its details, and the model it was made to."""
    rows = []
    for entry in config.lineage:
        details = {
            key: value
            for key, value in entry.items()
            if key not in ("change", "task", "base_model", "base_revision", "date")
        }
        if isinstance(details.get("labels"), list) and len(details["labels"]) > 6:
            details["labels"] = f"{len(details['labels'])} labels: {', '.join(details['labels'][:3])}, ..."
        base = as_hub_id(entry.get("base_model"))
        rows.append(
            {
                "change": entry["change"],
                "task": entry.get("task", ""),
                "details": "; ".join(f"{key}: {_format_plain(value)}" for key, value in details.items()) or "",
                "base_model": f"[{base}](https://huggingface.co/{base})" if base else "not a Hub model",
                "base_revision": f"`{entry['base_revision']}`" if entry.get("base_revision") else NOT_RECORDED,
                "date": entry.get("date", NOT_RECORDED),
            }
        )
    return rows


def _calibration_rows(config: MultiTaskSTConfig, summary: dict) -> list[dict[str, str]]:
    """One row per calibrated head and split: the temperature config.json holds (what every door applies) and the
    ECE/NLL before and after that the record measured with it."""
    recorded = summary.get("calibration") or {}
    rows = []
    for task in config.task_names:
        temperature = config.task_calibration.get(task, {}).get("temperature")
        entry = recorded.get(task) or {}
        if temperature is None:
            continue
        for split in ("validation", "test"):
            stats = entry.get(split)
            if not isinstance(stats, dict):
                continue
            rows.append(
                {
                    "task": task,
                    "temperature": f"{temperature:.3f}",
                    "split": split,
                    "examples": _format_plain(stats.get("examples", NOT_RECORDED)),
                    **{
                        key: f"{100 * stats[key]:.2f}%" if is_number(stats.get(key)) else NOT_RECORDED
                        for key in ("ece_before", "ece_after")
                    },
                    **{key: _format_metric(stats.get(key)) for key in ("nll_before", "nll_after")},
                }
            )
    return rows


def _onnx_exports(folder: ModelDir) -> list[dict[str, str]]:
    """The ONNX files `export.py --format onnx` added to the folder, each with what its export checked."""
    rows = []
    for precision, entry in read_export_report(folder.path).items():
        if precision == "fp32":
            differing = sum(entry["labels_differing"].values())
            checked = f"{entry['texts']} texts of the built-in sets"
            result = f"min embedding cosine {entry['min_cosine']:.6f}; labels differing: {differing}"
        elif "refusals" in entry:  # judged by the statistical gate
            checked, result = gate_evidence(entry)
        else:  # an export from before the statistical gate: fixed bounds on each task's test split
            checked = "; ".join(f"`{task}`: {row['data']}" for task, row in entry["tasks"].items())
            checked += f"; {entry['stsb_spearman']['data']}"
            deltas = [
                f"`{task}` accuracy {row['delta_points']:+.2f}"
                if "delta_points" in row
                else f"`{task}` agreement {row['agreement']:.2%}"
                for task, row in entry["tasks"].items()
            ]
            spearman = entry["stsb_spearman"]["delta_points"]
            result = f"{', '.join(deltas)} points; STS-B Spearman {spearman:+.2f} points; mean cosine "
            result += f"{entry['mean_cosine']:.4f}"
        rows.append({"file": entry["file"], "precision": precision, "checked": checked, "result": result})
    return rows


def gate_evidence(entry: dict) -> tuple[str, str]:
    """The reduced-precision gate's evidence in two table cells: what it was judged on, and what it measured (also
    what `multitask-st gate` prints)."""
    bounds = entry["bounds"]
    level = f"{bounds['confidence']:.0%}"
    checked = f"{entry['texts']} texts: " + ", ".join(entry["sources"])
    parts = []
    for task, row in entry["tasks"].items():
        if "mean_abs_difference_std" in row:  # a regression head
            parts.append(
                f"`{task}` differs by {row['mean_abs_difference_std']:.3f} target std on average (bound "
                f"{bounds.get('max_regression_difference')})"
            )
            continue
        flips = row["flips"]
        low, high = flips["flip_rate_interval"]
        text = (
            f"`{task}` changes {flips['flips']} of {flips['texts']} labels ({flips['flip_rate']:.2%}; {level} "
            f"interval {low:.2%}-{high:.2%}, bound {bounds['max_flip_rate']:.2%})"
        )
        if "accuracy" in row:
            accuracy = row["accuracy"]
            low, high = accuracy["drop_points_interval"]
            text += (
                f", accuracy {accuracy['accuracy_graph']:.2f}% vs {accuracy['accuracy_pytorch']:.2f}% on "
                f"{accuracy['texts']} labelled texts (drop {accuracy['drop_points']:+.2f} points, {level} interval "
                f"{low:+.2f} to {high:+.2f}, bound {bounds['max_accuracy_drop']}; exact McNemar p = "
                f"{accuracy['mcnemar_p_value']:.2g})"
            )
        parts.append(text)
    spearman = entry["stsb_spearman"]
    low, high = spearman["delta_points_interval"]
    parts.append(
        f"STS-B Spearman {spearman['delta_points']:+.2f} points ({level} interval {low:+.2f} to {high:+.2f}, "
        f"bound -{bounds['max_spearman_drop']})"
    )
    parts.append(
        f"embedding cosine mean {entry['mean_cosine']:.4f} (bound {bounds['min_mean_cosine']}), "
        f"min {entry['min_cosine']:.4f}"
    )
    kept = entry.get("quantization", {}).get("nodes_kept_fp32") or []
    if kept:
        speed = entry["quantization"].get("texts_per_second", {})
        cost = (
            f" (texts/s at export: {speed['int8_this_graph']:.0f} vs {speed['int8_whole_encoder']:.0f} all-int8, "
            f"{speed['fp32']:.0f} fp32)"
            if speed
            else ""
        )
        parts.append(f"{len(kept)} encoder nodes kept in fp32: {', '.join(f'`{n}`' for n in kept)}{cost}")
    return checked, "; ".join(parts)


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


def _base_model(summary: dict, backbone_config) -> dict[str, str | None]:
    name = summary.get("base_model") or getattr(backbone_config, "_name_or_path", None) or None
    hub_id = as_hub_id(name)
    if hub_id:
        return {"hub_id": hub_id, "text": f"[{hub_id}](https://huggingface.co/{hub_id})"}
    if name:  # a local path: neither a Hub id nor worth publishing (it names someone's file system)
        return {"hub_id": None, "text": "a local checkpoint (not a Hub id)"}
    return {"hub_id": None, "text": NOT_RECORDED}


def _dataset_rows(config: MultiTaskSTConfig, summary: dict) -> list[dict[str, Any]]:
    datasets = summary.get("datasets") or {}
    if not isinstance(datasets, dict) or not datasets:
        return []
    rows = []
    # The model's tasks first, in head order; then anything else the run recorded (an STS-B set, say).
    for task in [*config.task_names, *(name for name in datasets if name not in config.tasks)]:
        info = datasets.get(task) or {}
        hub_id = as_hub_id(info.get("hub_id"))
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


def _format_metric(value) -> str:
    return f"{value:.4f}" if is_number(value) else NOT_RECORDED


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
