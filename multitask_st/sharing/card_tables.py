"""The model card's tables read from a model folder: the base model, the datasets, the calibrated heads, the task
lineage and the training plots."""

from __future__ import annotations

from typing import Any

from ..configuration_multitask_st import MultiTaskSTConfig
from ..model_folder import (
    CONFUSION_MATRIX_PLOT,
    EVALUATION_METRICS_PLOT,
    LABEL_F1_PLOT,
    PREDICTED_VS_TRUE_PLOT,
    RELIABILITY_DIAGRAM_PLOT,
    TRAINING_LOSS_PLOT,
)
from .card_format import NOT_RECORDED, format_metric, format_plain
from .model_dir import ModelDir
from .model_index import as_hub_id, is_number


def plot_files(folder: ModelDir) -> dict[str, Any]:
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


def lineage_rows(config: MultiTaskSTConfig) -> list[dict[str, str]]:
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
                "details": "; ".join(f"{key}: {format_plain(value)}" for key, value in details.items()) or "",
                "base_model": f"[{base}](https://huggingface.co/{base})" if base else "not a Hub model",
                "base_revision": f"`{entry['base_revision']}`" if entry.get("base_revision") else NOT_RECORDED,
                "date": entry.get("date", NOT_RECORDED),
            }
        )
    return rows


def calibration_rows(config: MultiTaskSTConfig, summary: dict) -> list[dict[str, str]]:
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
                    "examples": format_plain(stats.get("examples", NOT_RECORDED)),
                    **{
                        key: f"{100 * stats[key]:.2f}%" if is_number(stats.get(key)) else NOT_RECORDED
                        for key in ("ece_before", "ece_after")
                    },
                    **{key: format_metric(stats.get(key)) for key in ("nll_before", "nll_after")},
                }
            )
    return rows


def base_model_link(summary: dict, backbone_config) -> dict[str, str | None]:
    name = summary.get("base_model") or getattr(backbone_config, "_name_or_path", None) or None
    hub_id = as_hub_id(name)
    if hub_id:
        return {"hub_id": hub_id, "text": f"[{hub_id}](https://huggingface.co/{hub_id})"}
    if name:  # a local path: neither a Hub id nor worth publishing (it names someone's file system)
        return {"hub_id": None, "text": "a local checkpoint (not a Hub id)"}
    return {"hub_id": None, "text": NOT_RECORDED}


def dataset_rows(config: MultiTaskSTConfig, summary: dict) -> list[dict[str, Any]]:
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
                    key: format_plain(info.get(key, NOT_RECORDED))
                    for key in ("num_train", "num_validation", "num_test")
                },
            }
        )
    return rows
