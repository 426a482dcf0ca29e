"""What a saved multitask-st model folder holds, and the check that it is complete enough to share."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers.utils import logging

from .. import configuration_multitask_st, modeling_multitask_st
from ..configuration_multitask_st import MultiTaskSTConfig
from ..training.record import TRAINING_SUMMARY_NAME, load_training_summary


logger = logging.get_logger(__name__)


MODEL_CARD_NAME = "README.md"


CONFIG_NAME = "config.json"


SAFE_WEIGHTS_NAME = "model.safetensors"


SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


# The code `trust_remote_code` runs: the two payload modules, named as `save_pretrained` copies them.
PAYLOAD_FILES = tuple(Path(module.__file__).name for module in (configuration_multitask_st, modeling_multitask_st))


# Every file a Hugging Face tokenizer may write (`*.model` below covers sentencepiece vocabularies).
TOKENIZER_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


TOKENIZER_VOCABULARIES = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model")


# Files that `torch.load` unpickles (and so may run code): never uploaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def collect_model_files(model_dir: str | os.PathLike) -> dict[str, Path]:
    """The files of a model directory that belong on the Hub, as `{name in the repo: path}`, README.md excepted.

    Raises a `ValueError` that names everything missing when the directory is not a complete multitask-st model.
    """
    model_dir = _check_model_dir(model_dir)
    missing = []
    files: dict[str, Path] = {}

    config_path = model_dir / CONFIG_NAME
    if config_path.is_file():
        files[CONFIG_NAME] = config_path
        config = _read_json(config_path)
        if config.get("model_type") != MultiTaskSTConfig.model_type:
            raise ValueError(
                f"{config_path} has model_type {config.get('model_type')!r}; expected "
                f"{MultiTaskSTConfig.model_type!r} (a directory saved by MultiTaskSTModel.save_pretrained)."
            )
        auto_map = config.get("auto_map") or {}
        if not {"AutoConfig", "AutoModel"} <= set(auto_map):
            missing.append(f"`auto_map` with AutoConfig and AutoModel in {CONFIG_NAME} (got {auto_map!r})")
    else:
        missing.append(CONFIG_NAME)

    weights = _weight_files(model_dir)
    if weights:
        files.update({path.name: path for path in weights})
        if (model_dir / SAFE_WEIGHTS_INDEX_NAME).is_file() and not (model_dir / SAFE_WEIGHTS_NAME).is_file():
            files[SAFE_WEIGHTS_INDEX_NAME] = model_dir / SAFE_WEIGHTS_INDEX_NAME
    else:
        pickled = sorted(path.name for path in model_dir.glob("pytorch_model*.bin"))
        if pickled:
            raise ValueError(
                f"{model_dir} holds only pickle weights ({', '.join(pickled)}), which are never uploaded. Re-save them "
                "as safetensors: `MultiTaskSTModel.from_pretrained(model_dir).save_pretrained(model_dir)`."
            )
        missing.append(f"{SAFE_WEIGHTS_NAME} (or {SAFE_WEIGHTS_INDEX_NAME} and its shards)")

    for name in PAYLOAD_FILES:
        if (model_dir / name).is_file():
            files[name] = model_dir / name
        else:
            missing.append(name)

    tokenizer_files = [path for path in model_dir.iterdir() if path.is_file() and _is_tokenizer_file(path.name)]
    if not (model_dir / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not any(path.match(pattern) for path in tokenizer_files for pattern in TOKENIZER_VOCABULARIES):
        missing.append(f"a tokenizer vocabulary (one of {', '.join(TOKENIZER_VOCABULARIES)})")
    files.update({path.name: path for path in tokenizer_files})

    if missing:
        raise ValueError(
            f"{model_dir} is not a complete multitask-st model directory: missing {'; '.join(missing)}. Save it with "
            "`model.save_pretrained(model_dir)` and `tokenizer.save_pretrained(model_dir)`."
        )
    if (model_dir / TRAINING_SUMMARY_NAME).is_file():
        load_training_summary(model_dir)  # fails on a malformed file
        files[TRAINING_SUMMARY_NAME] = model_dir / TRAINING_SUMMARY_NAME
    return dict(sorted(files.items()))


def _check_model_dir(model_dir: str | os.PathLike) -> Path:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Model directory {str(model_dir)!r} does not exist or is not a directory.")
    return model_dir


def _weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a model directory: the single file if present, else the shards its index lists."""
    single = model_dir / SAFE_WEIGHTS_NAME
    if single.is_file():
        return [single]
    index_path = model_dir / SAFE_WEIGHTS_INDEX_NAME
    if not index_path.is_file():
        return []
    weight_map = _read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path} has no `weight_map`; expected the index `save_pretrained` writes.")
    shards = [model_dir / name for name in sorted(set(weight_map.values()))]
    absent = [path.name for path in shards if not path.is_file()]
    if absent:
        raise ValueError(f"{model_dir} is missing the weight shards {absent} listed in {SAFE_WEIGHTS_INDEX_NAME}.")
    return shards


def _is_tokenizer_file(name: str) -> bool:
    return name in TOKENIZER_FILES or name.endswith(".model")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
