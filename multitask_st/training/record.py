"""The training record: what a run reports about itself (`training_summary.json`, saved next to the model)."""

from __future__ import annotations

import json
import os
from pathlib import Path


# What `MultiTaskTrainer.training_summary()` records about a run, saved next to the model for the card.
TRAINING_SUMMARY_NAME = "training_summary.json"


def save_training_summary(summary: dict, model_dir: str | os.PathLike) -> Path:
    """Write training_summary.json into a model directory (what `load_training_summary` reads back)."""
    path = Path(model_dir) / TRAINING_SUMMARY_NAME
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def load_training_summary(model_dir: str | os.PathLike) -> dict:
    """training_summary.json of a model directory as a dict; `{}` when there is none."""
    path = Path(model_dir) / TRAINING_SUMMARY_NAME
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}.") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(summary).__name__}.")
    return summary
