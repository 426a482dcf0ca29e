"""Whether text-embeddings-inference (TEI) would serve a sentence-transformers folder's vectors unchanged.

TEI cannot run here, so this reads the folder the way TEI's router and candle backend do (checked against
huggingface/text-embeddings-inference, 2026): `config.json` must name a model type TEI implements and an
`architectures` entry that is not a classifier; `tokenizer.json` must exist; the pooling comes from
`1_Pooling/config.json` (CLS or mean only); `sentence_bert_config.json` must give an integer `max_seq_length`;
`modules.json` is parsed with exactly four module types (`sentence_transformers.models.{Transformer, Pooling, Dense,
Normalize}`; any other makes TEI skip every Dense module), and a Dense module may only use the identity or tanh
activation. Normalisation is TEI's per-request `normalize` flag (on by default), not the folder's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


# `model_type`s TEI's candle backend implements (its `Config` enum).
TEI_MODEL_TYPES = (
    "bert",
    "camembert",
    "deberta-v2",
    "distilbert",
    "gemma3_text",
    "gte",
    "new",
    "mpnet",
    "modernbert",
    "nomic_bert",
    "qwen2",
    "qwen3",
    "roberta",
    "xlm-roberta",
)
# The module types TEI's `modules.json` parser accepts.
TEI_MODULE_TYPES = {
    f"sentence_transformers.models.{name}" for name in ("Transformer", "Pooling", "Dense", "Normalize")
}
TEI_DENSE_ACTIVATIONS = ("torch.nn.modules.linear.Identity", "torch.nn.modules.activation.Tanh")


def tei_problems(folder: str | os.PathLike) -> list[str]:
    """Why TEI would not serve this folder's vectors as sentence-transformers computes them; `[]` when it would."""
    folder = Path(folder)
    problems = []
    config = _read_json(folder / "config.json")
    if config is None:
        return ["no readable config.json"]
    if config.get("model_type") not in TEI_MODEL_TYPES:
        problems.append(f"config.json model_type {config.get('model_type')!r} is not one TEI implements")
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        problems.append("config.json has no `architectures` list")
    elif any(str(name).endswith("Classification") for name in architectures):
        problems.append(f"config.json architectures {architectures} make TEI serve a classifier")
    if not (folder / "tokenizer.json").is_file():
        problems.append("no tokenizer.json (TEI only runs fast tokenizers)")
    settings = _read_json(folder / "sentence_bert_config.json")
    if (
        settings is None
        or isinstance(settings.get("max_seq_length"), bool)
        or not isinstance(settings.get("max_seq_length"), int)
    ):
        problems.append("sentence_bert_config.json gives no integer `max_seq_length`")
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    if pooling is None:
        problems.append("no 1_Pooling/config.json")
    elif not (pooling.get("pooling_mode_cls_token") is True or pooling.get("pooling_mode_mean_tokens") is True):
        problems.append(f"pooling {_pooling_name(pooling)!r} is not CLS or mean, the two TEI applies")
    modules = _read_json(folder / "modules.json", expect=list)
    if modules is None:
        problems.append("no readable modules.json")
        return problems
    for module in modules:
        module_type = module.get("type")
        if module_type not in TEI_MODULE_TYPES:
            problems.append(f"module {module_type!r} is not one TEI applies (and makes TEI skip every Dense module)")
        elif module_type.endswith(".Dense"):
            dense = _read_json(folder / module.get("path", "") / "config.json") or {}
            activation = dense.get("activation_function", TEI_DENSE_ACTIVATIONS[0])
            if activation not in TEI_DENSE_ACTIVATIONS:
                problems.append(
                    f"Dense module {module.get('path')!r} uses activation {activation!r}; TEI applies identity or tanh"
                )
    return problems


def _pooling_name(pooling: dict) -> str:
    if isinstance(pooling.get("pooling_mode"), str):
        return pooling["pooling_mode"]
    chosen = [
        key.removeprefix("pooling_mode_")
        for key, value in pooling.items()
        if key.startswith("pooling_mode_") and value is True
    ]
    return "+".join(chosen) or "none"


def _read_json(path: Path, expect: type = dict):
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, expect) else None
