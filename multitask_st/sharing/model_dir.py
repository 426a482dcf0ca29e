"""A saved multitask-st model folder, read and validated once: what the card, staging and pushing all start from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.tokenization_utils_base import (
    ADDED_TOKENS_FILE,
    CHAT_TEMPLATE_DIR,
    CHAT_TEMPLATE_FILE,
    FULL_TOKENIZER_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
)
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from ..configuration_multitask_st import MultiTaskSTConfig
from ..model_folder import CONFIG_NAME, PAYLOAD_FILES, SENTENCE_TRANSFORMERS_FILES, load_training_summary


# What a folder needs for its tokenizer to load: its config and one of these vocabularies.
TOKENIZER_VOCABULARIES = (FULL_TOKENIZER_FILE, "vocab.txt", "vocab.json", "*.model")


@dataclass(frozen=True)
class ModelDir:
    """A complete multitask-st model folder (`model.save_pretrained` + `tokenizer.save_pretrained`), checked.

    Build it with [`read_model_dir`]; every sharing function takes either a path or a `ModelDir`, so one call reads
    and validates the folder once.

    Args:
        path: The folder.
        config: Its config.json.
        tokenizer: Its tokenizer, loaded.
        weight_files: The safetensors files a load reads: `model.safetensors`, or the shards its index lists (then
            the index too).
        summary: Its training_summary.json, `{}` if it has none.
    """

    path: Path
    config: MultiTaskSTConfig
    tokenizer: PreTrainedTokenizerBase
    weight_files: list[Path]
    summary: dict = field(default_factory=dict)

    @property
    def tokenizer_patterns(self) -> list[str]:
        """The file names this tokenizer may be saved as (its class's vocabulary files and the shared ones)."""
        shared = [TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, ADDED_TOKENS_FILE, FULL_TOKENIZER_FILE]
        return [*shared, *self.tokenizer.vocab_files_names.values(), CHAT_TEMPLATE_FILE, f"{CHAT_TEMPLATE_DIR}/*"]


def read_model_dir(model_dir: str | os.PathLike | ModelDir) -> ModelDir:
    """Reads a model folder; raises a `ValueError` naming everything missing when it is not a complete model.

    A `ModelDir` passes through unchanged.
    """
    if isinstance(model_dir, ModelDir):
        return model_dir
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"Model directory {str(model_dir)!r} does not exist or is not a directory.")
    missing = []

    config_path = path / CONFIG_NAME
    if config_path.is_file():
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

    weight_files = _weight_files(path)
    if not weight_files:
        pickled = sorted(file.name for file in path.glob("pytorch_model*.bin"))
        if pickled:
            raise ValueError(
                f"{path} holds only pickle weights ({', '.join(pickled)}), which are never uploaded. Re-save them "
                "as safetensors: `MultiTaskSTModel.from_pretrained(model_dir).save_pretrained(model_dir)`."
            )
        missing.append(f"{SAFE_WEIGHTS_NAME} (or {SAFE_WEIGHTS_INDEX_NAME} and its shards)")

    missing += [name for name in (*PAYLOAD_FILES, *SENTENCE_TRANSFORMERS_FILES) if not (path / name).is_file()]
    if not (path / TOKENIZER_CONFIG_FILE).is_file():
        missing.append(TOKENIZER_CONFIG_FILE)
    if not any(file.is_file() for pattern in TOKENIZER_VOCABULARIES for file in path.glob(pattern)):
        missing.append(f"a tokenizer vocabulary (one of {', '.join(TOKENIZER_VOCABULARIES)})")
    if missing:
        raise ValueError(
            f"{path} is not a complete multitask-st model directory: missing {'; '.join(missing)}. Save it with "
            "`model.save_pretrained(model_dir)` and `tokenizer.save_pretrained(model_dir)`."
        )
    return ModelDir(
        path=path,
        config=MultiTaskSTConfig.from_pretrained(path),
        tokenizer=AutoTokenizer.from_pretrained(path),
        weight_files=weight_files,
        summary=load_training_summary(path),  # fails on a malformed file
    )


def _weight_files(model_dir: Path) -> list[Path]:
    """The single safetensors file if present, else the index and the shards it lists; `[]` if neither."""
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
    absent = [file.name for file in shards if not file.is_file()]
    if absent:
        raise ValueError(f"{model_dir} is missing the weight shards {absent} listed in {SAFE_WEIGHTS_INDEX_NAME}.")
    return [index_path, *shards]


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
