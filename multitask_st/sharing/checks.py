"""What staging checks before it reports success: weights that can be read and hold only finite numbers, and a staged
folder that loads as a model with its tokenizer (no dangling link, nothing missing)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer

from ..modeling_multitask_st import MultiTaskSTModel
from ..parts_multitask_st import non_finite_parameters


def check_weight_files(files: list[Path]):
    """Raises a `ValueError` naming the file when a safetensors file is truncated or corrupt, or holds NaN/inf."""
    for path in files:
        if path.suffix != ".safetensors":
            continue  # the shard index
        non_finite = []
        try:
            with safe_open(os.fspath(path), framework="pt") as weights:
                for name in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
                    tensor = weights.get_tensor(name)
                    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                        non_finite.append(name)
        except SafetensorError as error:
            raise ValueError(
                f"Cannot read the weight file {str(path)!r}: {error}. It is truncated or corrupt: save the model again."
            ) from error
        if non_finite:
            shown = ", ".join(non_finite[:5]) + (f" and {len(non_finite) - 5} more" if len(non_finite) > 5 else "")
            raise ValueError(
                f"Refusing to stage {str(path)!r}: weights {shown} hold NaN or inf (the training diverged); the "
                "model would give NaN embeddings and predictions."
            )


def check_staged_folder(stage_dir: Path):
    """Loads the staged folder as the Hub would serve it; raises a `ValueError` saying what fails."""
    try:
        model = MultiTaskSTModel.from_pretrained(stage_dir)
        AutoTokenizer.from_pretrained(stage_dir)
    except Exception as error:
        raise ValueError(
            f"The staged folder {str(stage_dir)!r} does not load: {type(error).__name__}: {error}"
        ) from error
    if non_finite_parameters(model):
        raise ValueError(f"The staged folder {str(stage_dir)!r} holds NaN or inf weights.")
