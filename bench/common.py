"""What the bench scripts share: where the backbone and the built-in data come from, and the machine they ran on.

`--data-dir` lets a machine without the data packages (e.g. a lent GPU box) read datasets saved with
`python bench/common.py --export DIR` (`DatasetDict.save_to_disk`) instead of the packages.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from multitask_st.data.corpora import BUILTIN_DATASETS  # noqa: E402
from multitask_st.data.resources import resolve_backbone  # noqa: E402


def add_common_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--backbone", default=None, help="Encoder checkpoint (default: the packaged MiniLM).")
    parser.add_argument("--data-dir", default=None, help="Read built-in datasets saved by --export from here.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)


def load_builtin(name: str, data_dir: str | None = None, seed: int = 0) -> datasets.DatasetDict:
    if data_dir:
        return datasets.load_from_disk(str(Path(data_dir) / name))
    loader = BUILTIN_DATASETS[name].loader
    return loader() if name == "stsb" else loader(seed=seed)


def backbone_path(backbone: str | None) -> str:
    return resolve_backbone(backbone)[0]


def machine() -> str:
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return (
        f"{device}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Export the built-in datasets with save_to_disk.")
    parser.add_argument("--export", required=True, help="Folder to write bbc_news/, rotten_tomatoes/, stsb/ into.")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    for dataset_name in BUILTIN_DATASETS:
        load_builtin(dataset_name, seed=arguments.seed).save_to_disk(str(Path(arguments.export) / dataset_name))
        print(f"wrote {Path(arguments.export) / dataset_name}")
