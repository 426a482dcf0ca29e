"""Before the first training step: the output folder may be written, holds no other run, and has room for a checkpoint.

Without these checks a finished model is silently trained over, an interrupted rerun leaves the checkpoints of two
runs side by side (and `--resume_from_checkpoint` may pick the wrong one), and a read-only or full disk is found at the
first save, after the training it was meant to keep.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging


logger = logging.get_logger(__name__)


def prepare_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, resuming: bool = False) -> Path:
    """Refuses a non-empty `output_dir` unless `overwrite` (then the old run's `checkpoint-*` folders are removed) or
    `resuming`; creates it and checks it can be written to. Returns it as a `Path`."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"The output folder {str(path)!r} is a file; pass another `--output_dir`.")
    entries = sorted(entry.name for entry in path.iterdir()) if path.is_dir() else []
    if entries and not (overwrite or resuming):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise FileExistsError(
            f"The output folder {str(path)!r} is not empty ({shown}): a run there would overwrite it. Pass "
            "`--overwrite_output_dir` to replace it, `--resume_from_checkpoint <checkpoint>` to continue its run, or "
            "another `--output_dir`."
        )
    if entries and overwrite and not resuming:
        old = [
            path / name for name in entries if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and (path / name).is_dir()
        ]
        for checkpoint in old:
            shutil.rmtree(checkpoint)
        if old:
            logger.warning(f"--overwrite_output_dir: removed {len(old)} checkpoint(s) of the previous run in {path}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise PermissionError(
            f"Cannot write to the output folder {str(path)!r} ({error.strerror or error}); training would fail at the "
            "first save. Pass a writable `--output_dir`."
        ) from error
    return path


def checkpoint_bytes(model, with_optimizer: bool = True) -> int:
    """About what one checkpoint of `model` takes on disk: its weights, plus Adam's two moments per trainable one."""
    weights = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    moments = sum(p.numel() * 4 * 2 for p in model.parameters() if p.requires_grad) if with_optimizer else 0
    return weights + moments


def check_free_space(output_dir: str | os.PathLike, needed: int):
    """Raises when the disk under `output_dir` has less than `needed` bytes free."""
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        raise OSError(
            f"Not enough free disk space in {str(output_dir)!r}: {free / 2**20:.0f} MiB free, one checkpoint needs about "
            f"{needed / 2**20:.0f} MiB. Free some space or pass another `--output_dir`."
        )
