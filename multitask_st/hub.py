"""Share a trained model on the Hugging Face Hub: render its card, stage exactly the files to upload, push them.

A model directory (what `model.save_pretrained(dir)` + `tokenizer.save_pretrained(dir)` or `train.py` write) becomes a
Hub repository that loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)` without this package:

    config.json (with `auto_map`)            model.safetensors (or shards + model.safetensors.index.json)
    configuration_multitask_st.py            modeling_multitask_st.py          (the code `trust_remote_code` runs)
    tokenizer files                          training_summary.json (if any)    README.md (the rendered card)

Everything else in the directory (Trainer leftovers, checkpoints, logs) stays home, and no pickle file is ever staged.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HFValidationError, LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open
from torch import nn
from transformers import AutoTokenizer
from transformers.utils import logging

from . import configuration_multitask_st, modeling_multitask_st
from .configuration_multitask_st import MultiTaskSTConfig
from .modeling_multitask_st import MultiTaskSTModel


logger = logging.get_logger(__name__)

MODEL_CARD_TEMPLATE_NAME = "model_card.md"
MODEL_CARD_NAME = "README.md"
# What `MultiTaskTrainer.training_summary()` records about a run, saved next to the model for the card.
TRAINING_SUMMARY_NAME = "training_summary.json"
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
# On re-upload, weight files that the new commit does not contain are deleted, so a stale `model.safetensors` never
# shadows a new sharded checkpoint (or stale shards a new single file).
STALE_WEIGHT_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]

DEFAULT_LICENSE = "apache-2.0"
DEFAULT_LANGUAGE = "en"
CARD_TAGS = ["multitask-st", "sentence-embeddings", "text-classification", "multi-task", "custom_code"]
NOT_RECORDED = "not recorded"
# (split name in training_summary.json["metrics"], prefix of its metric keys); the model-index prefers the first.
METRIC_SPLITS = (("test", "test"), ("validation", "eval"))
# Trainer bookkeeping that `trainer.evaluate()` returns next to the metrics; not worth a row in the card.
METRIC_NOISE_SUFFIXES = ("runtime", "samples_per_second", "steps_per_second", "epoch")
POOLING_DESCRIPTIONS = {
    "mean": "mean pooling over the non-padding tokens",
    "cls": "first ([CLS]) token",
    "max": "max pooling over the non-padding tokens",
    "attention": "attention pooling (a learned query weighs the non-padding tokens)",
}
# Keys of training_summary.json["training"] that get their own card section; the rest are listed as hyperparameters.
MULTITASK_SETUP_KEYS = (
    "sampling_strategy",
    "sampling_temperature",
    "mixed_task_batches",
    "embedding_distillation_weight",
)
LEARNING_RATE_KEYS = ("layer_decay", "projection_lr_multiplier", "head_lr_multiplier", "freeze", "unfreeze_schedule")


# ---------------------------------------------------------------------------------------------------- the model card


def render_model_card(
    model_dir: str | os.PathLike,
    repo_id: str | None = None,
    revision: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = DEFAULT_LANGUAGE,
    template_path: str | os.PathLike | None = None,
) -> str:
    """Render the model card (README.md) of a model directory from its config.json and training_summary.json.

    Args:
        model_dir: A saved model directory (see [`stage_model_dir`]).
        repo_id: The Hub repository the card's usage snippets load from; defaults to the directory's name.
        revision: The revision the snippets pin; defaults to `"main"` (the card tells readers to pin a commit).
        license: License of the shared weights (a Hub license id), or None to leave it out.
        language: Language code(s) of the training data, or None to leave it out.
        template_path: A Jinja2 template to use instead of `model_card.md`.

    Returns:
        The card: YAML metadata (`library_name`, `pipeline_tag`, `tags`, `base_model`, `datasets`, `license`,
        `language`, a `model-index` with one result per task) followed by the Markdown body.
    """
    collect_model_files(model_dir)  # names everything missing
    model_dir = Path(model_dir)
    config = MultiTaskSTConfig.from_pretrained(model_dir)
    summary = load_training_summary(model_dir)
    model_name = (repo_id or model_dir.resolve().name).split("/")[-1]
    context = _card_context(model_dir, config, summary)
    eval_results = _eval_results(config, summary)
    card_data = ModelCardData(
        model_name=model_name if eval_results else None,  # the model-index's name; no index, no name
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=CARD_TAGS,
        base_model=context["base_model"]["hub_id"],
        datasets=[row["hub_id"] for row in context["datasets"] if row["hub_id"]] or None,
        license=license,
        language=language,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
    )
    languages = [language] if isinstance(language, str) else list(language or [])
    template = _load_template(template_path)
    text = template.render(
        card_data=card_data.to_yaml(),
        model_name=model_name,
        repo_id=repo_id or model_dir.resolve().name,
        revision=revision or "main",
        license_text=f"`{license}`" if license else "not specified",
        language_text=", ".join(languages) if languages else "not specified",
        **context,
    )
    # Parse it back the way the Hub does: a template error fails here, not after the upload.
    ModelCard(text, ignore_metadata_errors=False)
    return text


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


def _load_template(template_path: str | os.PathLike | None) -> jinja2.Template:
    if template_path is None:
        template_path = _default_template_path()
    environment = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["cell"] = _table_cell
    environment.filters["metric"] = _format_metric
    environment.filters["code"] = lambda value: f"`{value}`"
    return environment.from_string(Path(template_path).read_text(encoding="utf-8"))


def _default_template_path() -> Path:
    # The template is `model_card.md` at the repository root; `multitask_st/model_card.md` links to it, so wheels
    # (which copy the link's target) and checkouts both find it here.
    path = Path(__file__).resolve().parent / MODEL_CARD_TEMPLATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"The model card template {path} is missing; pass `template_path`.")
    return path


def _card_context(model_dir: Path, config: MultiTaskSTConfig, summary: dict) -> dict[str, Any]:
    """Everything the template shows, read from the model directory; missing facts become "not recorded"."""
    # Built on the meta device (no memory, no init): the card describes the modules the code really builds.
    with torch.device("meta"):
        model = MultiTaskSTModel(config)
    backbone = config.backbone_config
    training = summary.get("training") or {}
    max_length = model.default_max_length(AutoTokenizer.from_pretrained(model_dir))
    max_length_source = (
        "`max_seq_length` in config.json" if config.max_seq_length is not None else "tokenizer and position limit"
    )
    task_metrics, other_metrics, metric_splits = _metric_tables(config, summary)
    stsb = _first_metric(summary, "stsb_spearman")
    return {
        "base_model": _base_model(summary, backbone),
        "backbone": {
            "model_type": backbone.model_type,
            "num_hidden_layers": getattr(backbone, "num_hidden_layers", getattr(backbone, "n_layers", "?")),
            "hidden_size": config.backbone_hidden_size,
            "num_attention_heads": getattr(backbone, "num_attention_heads", getattr(backbone, "n_heads", "?")),
            "vocab_size": getattr(backbone, "vocab_size", "?"),
        },
        "num_parameters": f"{_count_parameters(model_dir):,}",
        "max_seq_length": f"{max_length} tokens ({max_length_source})",
        "max_seq_length_tokens": max_length,
        "embedding_dim": config.embedding_dim,
        "normalize_embeddings": config.normalize_embeddings,
        "pooling": POOLING_DESCRIPTIONS.get(config.pooling_mode, config.pooling_mode),
        "projection": "projection: " + _describe_module(model.projection),
        "heads": [
            {"task": task, "labels": list(labels), "layers": _describe_module(model.heads[task])}
            for task, labels in config.tasks.items()
        ],
        "task_metrics": task_metrics,
        "other_metrics": other_metrics,
        "metric_splits": metric_splits,
        "stsb_spearman": stsb[1] if stsb else None,
        "datasets": _dataset_rows(config, summary),
        "task_loss_weights": training.get("task_loss_weights") or config.task_loss_weights,
        "multitask_setup": [(key, _format_value(training, key)) for key in MULTITASK_SETUP_KEYS],
        "optimizer_groups": [
            {
                key: _format_plain(group.get(key, NOT_RECORDED))
                for key in ("name", "lr", "weight_decay", "num_parameters")
            }
            for group in training.get("optimizer_groups") or []
            if isinstance(group, dict)
        ],
        "learning_rate_settings": [(key, _format_value(training, key)) for key in LEARNING_RATE_KEYS],
        "hyperparameters": [
            (key, _format_value(training, key))
            for key in training
            if key not in (*MULTITASK_SETUP_KEYS, *LEARNING_RATE_KEYS, "task_loss_weights", "optimizer_groups")
        ],
        "framework_versions": [(name, version) for name, version in (summary.get("framework_versions") or {}).items()],
        "transformers_version": getattr(config, "transformers_version", None),
    }


def _describe_module(module: nn.Module) -> str:
    if isinstance(module, nn.Sequential):
        return " -> ".join(_describe_module(layer) for layer in module)
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features} -> {module.out_features})"
    if isinstance(module, nn.Dropout):
        return f"Dropout({module.p:g})"
    if isinstance(module, nn.Identity):
        return "none (identity)"
    return type(module).__name__.removesuffix("Activation")  # GELUActivation -> GELU


def _base_model(summary: dict, backbone_config) -> dict[str, str | None]:
    name = summary.get("base_model") or getattr(backbone_config, "_name_or_path", None) or None
    hub_id = _hub_id(name)
    if hub_id:
        return {"hub_id": hub_id, "text": f"[{hub_id}](https://huggingface.co/{hub_id})"}
    if name:  # a local path: neither a Hub id nor worth publishing (it names someone's file system)
        return {"hub_id": None, "text": "a local checkpoint (not a Hub id)"}
    return {"hub_id": None, "text": NOT_RECORDED}


def _hub_id(value) -> str | None:
    """`value` if it reads as a Hub repository id, None if it is missing or a local path."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith((".", "~")):
        return None
    if os.path.exists(value):
        return None
    try:
        validate_repo_id(value)
    except HFValidationError:
        return None
    return value


def _dataset_rows(config: MultiTaskSTConfig, summary: dict) -> list[dict[str, Any]]:
    datasets = summary.get("datasets") or {}
    if not isinstance(datasets, dict) or not datasets:
        return []
    rows = []
    # The model's tasks first, in head order; then anything else the run recorded (an STS-B set, say).
    for task in [*config.task_names, *(name for name in datasets if name not in config.tasks)]:
        info = datasets.get(task) or {}
        hub_id = _hub_id(info.get("hub_id"))
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
                    key: _format_plain(info.get(key, NOT_RECORDED))
                    for key in ("num_train", "num_validation", "num_test")
                },
            }
        )
    return rows


def _split_metrics(summary: dict) -> list[tuple[str, str, dict[str, Any]]]:
    """`(split, key prefix, metrics)` for each split training_summary.json records, test first."""
    metrics = summary.get("metrics") or {}
    return [(split, prefix, metrics[split]) for split, prefix in METRIC_SPLITS if isinstance(metrics.get(split), dict)]


def _task_metric(values: dict, prefix: str, task: str, metric: str) -> float | None:
    value = values.get(f"{prefix}_{task}_{metric}")
    return float(value) if _is_number(value) else None


def _first_metric(summary: dict, name: str) -> tuple[str, float] | None:
    """`(split, value)` of a metric from the first split (test, then validation) that has it."""
    for split, prefix, values in _split_metrics(summary):
        value = values.get(f"{prefix}_{name}")
        if _is_number(value):
            return split, float(value)
    return None


def _metric_tables(config: MultiTaskSTConfig, summary: dict) -> tuple[list[dict], list[dict], list[str]]:
    # Validation before test in the tables, as the run produced them.
    splits = list(reversed(_split_metrics(summary)))
    task_rows = []
    for task in config.task_names:
        for split, prefix, values in splits:
            accuracy, f1 = (_task_metric(values, prefix, task, metric) for metric in ("accuracy", "f1"))
            if accuracy is not None or f1 is not None:
                task_rows.append({"task": task, "split": split, "accuracy": accuracy, "f1": f1})
    per_task = {f"{task}_{metric}" for task in config.task_names for metric in ("accuracy", "f1")}
    names = []
    for _, prefix, values in splits:
        for key, value in values.items():
            name = key.removeprefix(f"{prefix}_")
            if _is_number(value) and name not in per_task and not name.endswith(METRIC_NOISE_SUFFIXES):
                if name not in names:
                    names.append(name)
    other_rows = [
        {"name": name, "values": [values.get(f"{prefix}_{name}") for _, prefix, values in splits]} for name in names
    ]
    return task_rows, other_rows, [split for split, _, _ in splits]


def _reported_task_metrics(summary: dict, task: str) -> tuple[str, dict[str, float | None]] | None:
    """`(split, {"accuracy": ..., "f1": ...})` of a task from the first split (test, then validation) that has any."""
    for split, prefix, values in _split_metrics(summary):
        metrics = {metric: _task_metric(values, prefix, task, metric) for metric in ("accuracy", "f1")}
        if any(value is not None for value in metrics.values()):
            return split, metrics
    return None


def _eval_results(config: MultiTaskSTConfig, summary: dict) -> list[EvalResult]:
    """One model-index result per task (accuracy and macro-F1, test split else validation), plus STS-B if measured."""
    datasets = summary.get("datasets") if isinstance(summary.get("datasets"), dict) else {}
    results, seen = [], {}
    for task in config.task_names:
        found = _reported_task_metrics(summary, task)
        if found is None:
            continue  # no metric recorded for this task: nothing to report, nothing invented
        split, metrics = found
        info = datasets.get(task) or {}
        dataset_name = info.get("name") or _hub_id(info.get("hub_id")) or task
        dataset_type = _hub_id(info.get("hub_id")) or dataset_name
        # The Hub groups results by (task type, dataset, config, split): two heads trained on one dataset stay apart.
        dataset_config = task if (dataset_type, split) in seen else None
        seen[(dataset_type, split)] = task
        metric_names = {"accuracy": "Accuracy", "f1": "Macro-F1"}
        for metric, value in metrics.items():
            if value is not None:
                results.append(
                    EvalResult(
                        task_type="text-classification",
                        task_name=f"Text classification ({task})",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_config=dataset_config,
                        dataset_split=split,
                        metric_type=metric,
                        metric_name=metric_names[metric],
                        metric_value=value,
                        metric_config="macro" if metric == "f1" else None,
                    )
                )
    stsb = _first_metric(summary, "stsb_spearman")
    if stsb is not None:
        info = datasets.get("stsb") or {}
        name = info.get("name") or "stsb"
        results.append(
            EvalResult(
                task_type="sentence-similarity",
                task_name="Semantic textual similarity",
                dataset_type=_hub_id(info.get("hub_id")) or name,
                dataset_name=name,
                dataset_split=stsb[0],
                metric_type="spearmanr",
                metric_name="Spearman (cosine similarity)",
                metric_value=stsb[1],
            )
        )
    return results


def _count_parameters(model_dir: Path) -> int:
    """Number of parameters stored in the directory's safetensors files (read from their headers only)."""
    total = 0
    for path in _weight_files(model_dir):
        with safe_open(path, framework="pt") as weights:
            for name in weights.keys():
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format_metric(value) -> str:
    return f"{value:.4f}" if _is_number(value) else NOT_RECORDED


def _format_plain(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return str(value)


def _format_value(mapping: dict, key: str) -> str:
    return _format_plain(mapping[key]) if key in mapping else NOT_RECORDED


def _table_cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------------------- staging


def stage_model_dir(
    model_dir: str | os.PathLike,
    stage_dir: str | os.PathLike,
    repo_id: str | None = None,
    revision: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = DEFAULT_LANGUAGE,
    template_path: str | os.PathLike | None = None,
) -> list[str]:
    """Write to `stage_dir` exactly the folder that [`push_model_dir`] uploads.

    That is config.json, the safetensors weights, the tokenizer files, the two payload `.py` files,
    training_summary.json if present, and README.md (the rendered card). Trainer leftovers (`checkpoint-*/`, `runs/`,
    `training_args.bin`, `trainer_state.json`, optimizer states...) stay behind, and no pickle file is staged.

    Args:
        model_dir: The saved model directory.
        stage_dir: Where to write; must be empty or not exist yet.
        repo_id, revision, license, language, template_path: passed to [`render_model_card`].

    Returns:
        The staged file names, sorted.

    Example:
        >>> stage_model_dir("outputs/model", "staged")  # doctest: +SKIP
        ['README.md', 'config.json', 'configuration_multitask_st.py', 'model.safetensors', ...]
    """
    files = collect_model_files(model_dir)
    stage_dir = _check_stage_dir(stage_dir)
    card = render_model_card(
        model_dir, repo_id=repo_id, revision=revision, license=license, language=language, template_path=template_path
    )
    stage_dir.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        _link_or_copy(source, stage_dir / name)
    (stage_dir / MODEL_CARD_NAME).write_text(card, encoding="utf-8")
    staged = sorted(path.relative_to(stage_dir).as_posix() for path in stage_dir.rglob("*") if path.is_file())
    pickles = [name for name in staged if name.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:  # cannot happen with the allow-list above; the last line of defence against publishing a pickle
        raise RuntimeError(f"Refusing to stage pickle files {pickles}.")
    left_out = sorted(
        path.name + ("/" if path.is_dir() else "")
        for path in Path(model_dir).iterdir()
        if path.name not in files and path.name != MODEL_CARD_NAME
    )
    if (Path(model_dir) / MODEL_CARD_NAME).is_file():
        logger.info(f"The directory's own {MODEL_CARD_NAME} is replaced by the rendered card.")
    if left_out:
        logger.info(f"Not uploading these entries of {model_dir}: {', '.join(left_out)}.")
    logger.info(f"Staged {len(staged)} files in {stage_dir}.")
    return staged


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


def _check_stage_dir(stage_dir: str | os.PathLike) -> Path:
    stage_dir = Path(stage_dir)
    if stage_dir.exists() and (not stage_dir.is_dir() or any(stage_dir.iterdir())):
        raise ValueError(f"`stage_dir` {str(stage_dir)!r} must be an empty directory or not exist yet.")
    return stage_dir


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


def _link_or_copy(source: Path, target: Path):
    # Weights can be gigabytes: hard-link them when the file system allows (nobody edits them in place); copy the
    # small files, which a user may edit in a staged folder.
    if source.suffix == ".safetensors":
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


# ---------------------------------------------------------------------------------------------------- pushing


def push_model_dir(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = DEFAULT_LANGUAGE,
    stage_dir: str | os.PathLike | None = None,
):
    """Upload a model directory to the Hub as one commit: the folder [`stage_model_dir`] writes, card included.

    Args:
        model_dir: The saved model directory.
        repo_id: `"org/name"` (or `"name"` for your own namespace); created if it does not exist.
        private: Create the repository private. Has no effect on a repository that exists already.
        revision: Branch to commit to; created from `main` when it does not exist yet. Defaults to `main`.
        create_pr: Open a pull request against the default branch instead of committing directly (huggingface_hub
            opens pull requests only there, so it excludes `revision`).
        commit_message: Defaults to `"Upload multitask-st model"`.
        token: Defaults to the `HF_TOKEN` environment variable, else the token `hf auth login` stored.
        license, language: passed to [`render_model_card`].
        stage_dir: Keep the staged folder there (empty or new); defaults to a temporary directory.

    Returns:
        `huggingface_hub.CommitInfo`, a `str` holding the commit URL, with `.oid` (the commit hash to pin) and `.pr_url`.
    """
    # Everything that can fail locally fails before anything touches the network.
    collect_model_files(model_dir)
    if stage_dir is not None:
        _check_stage_dir(stage_dir)
    validate_repo_id(repo_id)
    if create_pr and revision not in (None, "main"):
        raise ValueError(
            f"`create_pr` opens a pull request against the default branch; it cannot target revision {revision!r}. "
            "Pass one of the two."
        )
    if constants.is_offline_mode():
        raise OfflineModeIsEnabled(
            "Cannot push to the Hub: offline mode is enabled (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE, or only stage "
            "the files with `stage_model_dir`."
        )
    if token is None and get_token() is None:
        raise LocalTokenNotFoundError(
            "No Hugging Face token: run `hf auth login`, set the HF_TOKEN environment variable or pass `token`."
        )
    from . import __version__

    api = HfApi(token=token, library_name="multitask-st", library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision not in (None, "main") and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)  # upload_folder needs the branch to exist
    with tempfile.TemporaryDirectory(prefix="multitask-st-upload-") as temporary_dir:
        folder = Path(stage_dir) if stage_dir is not None else Path(temporary_dir)
        files = stage_model_dir(
            model_dir, folder, repo_id=repo_id, revision=revision, license=license, language=language
        )
        logger.info(f"Uploading {len(files)} files to {repo_id}: {', '.join(files)}.")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message or "Upload multitask-st model",
            delete_patterns=STALE_WEIGHT_PATTERNS,
        )
    logger.info(f"Pushed {repo_id}: {commit.pr_url or commit.commit_url}")
    return commit
