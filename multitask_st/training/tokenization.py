"""Task datasets -> model inputs: tokenisation (cached), and one training dataset in which each row knows its task.

A task's id is its position in the model's task list (`config.task_names`); it is given in one place,
[`concatenate_task_datasets`], from the key each dataset is passed under.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import datasets
import numpy as np
from datasets import DatasetDict
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

from ..inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    MODEL_INPUTS,
    MULTI_LABEL,
    PAIR_CLASSIFICATION,
    PAIR_REGRESSION,
    REGRESSION,
    SINGLE_LABEL,
)
from ..task_fields_multitask_st import LABEL_WIDTHS


# Bump when the tokenised layout changes, so stale cache files are not picked up.
_TOKENIZED_CACHE_VERSION = "3"
# The second texts of pair and embedding tasks, and contrastive rows' hard negatives: each tokenised on its own (two
# sequences, never one concatenation), under its prefix (`pair_input_ids`, ...), as the model's forward takes them.
SECOND_TEXT_COLUMNS = {"text_pair": "pair_", "negative": "negative_"}


def _tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what decides a tokenizer's output, stable across calls and processes.

    Not `Hasher.hash(tokenizer)`: calling a tokenizer with `truncation=True` rewrites its backend's truncation
    settings, which would change that hash after the first use.
    """
    hasher = Hasher()
    hasher.update(type(tokenizer).__name__)
    hasher.update([tokenizer.truncation_side, tokenizer.padding_side, list(tokenizer.model_input_names)])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        hasher.update(json.dumps(state, sort_keys=True))
    else:
        hasher.update(sorted(tokenizer.get_vocab().items()))
        hasher.update(tokenizer.all_special_tokens)
        simple = (str, int, float, bool, type(None))
        kwargs = {
            key: value
            for key, value in tokenizer.init_kwargs.items()
            if isinstance(value, simple) and key != "name_or_path" and not key.endswith("_file")
        }
        hasher.update(json.dumps(kwargs, sort_keys=True, default=str))
    return hasher.hexdigest()


def _tokenize_batch(batch: dict, *, tokenizer, text_column: str, max_length: int) -> dict:
    encoded = tokenizer(batch[text_column], truncation=True, max_length=max_length)
    columns = {key: encoded[key] for key in MODEL_INPUTS if key in encoded}
    for column, prefix in SECOND_TEXT_COLUMNS.items():
        if column in batch:
            texts = batch[column]
            present = [
                index for index, text in enumerate(texts) if text is not None
            ]  # a triplet's negative is optional
            second = tokenizer([texts[index] for index in present], truncation=True, max_length=max_length)
            for key in MODEL_INPUTS:
                if key in second:
                    values = [None] * len(texts)
                    for index, value in zip(present, second[key], strict=True):
                        values[index] = value
                    columns[prefix + key] = values
    return columns


def default_cache_dir() -> Path:
    """Where tokenised task datasets are cached: `$HF_DATASETS_CACHE/multitask_st/tokenized`."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "multitask_st" / "tokenized"


def tokenize_task_dataset(
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    text_column: str = "text",
    label_column: str = "label",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 1000,
) -> DatasetDict:
    """Tokenises every split once (truncated, unpadded: the collator pads).

    Returns columns `input_ids`, `attention_mask`, `token_type_ids` (when the tokenizer makes them) and `label`, and,
    for a split with a `text_pair` (or `negative`) column, the same columns of those texts, tokenised on their own, as
    `pair_input_ids`, ... (`negative_input_ids`, ...); the
    task a row belongs to is given where the task datasets meet (see [`concatenate_task_datasets`]). Results are
    cached in `cache_dir` (default: `default_cache_dir()`) under a key made of the split's fingerprint, the tokenizer
    and `max_length`, so a second call loads them instead of re-tokenising.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"`max_length` must be a positive integer, got {max_length!r}.")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    use_cache = datasets.is_caching_enabled()  # respect `datasets.disable_caching()`
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_key = _tokenizer_fingerprint(tokenizer)
    function = partial(_tokenize_batch, tokenizer=tokenizer, text_column=text_column, max_length=max_length)
    tokenized = {}
    for split, data in dataset.items():
        for column in (text_column, label_column):
            if column not in data.column_names:
                raise ValueError(f"Split {split!r} has no column {column!r}; its columns are {data.column_names}.")
        # `_fingerprint` is content-derived for in-memory datasets and cache-file-derived for loaded ones.
        key = Hasher.hash(
            [
                _TOKENIZED_CACHE_VERSION,
                data._fingerprint,
                tokenizer_key,
                max_length,
                text_column,
                label_column,
            ]
        )
        tokenized[split] = data.map(
            function,
            batched=True,
            batch_size=batch_size,
            remove_columns=[column for column in data.column_names if column != label_column],
            cache_file_name=str(cache_dir / f"{key}.arrow") if use_cache else None,
            load_from_cache_file=use_cache,
            new_fingerprint=key,
            desc=f"Tokenizing {split}",
        )
        if label_column != "label":
            tokenized[split] = tokenized[split].rename_column(label_column, "label")
    return DatasetDict(tokenized)


def _multi_hot(label_ids: list[int], num_labels: int) -> list[float]:
    row = [0.0] * num_labels
    for label_id in label_ids:
        row[label_id] = 1.0
    return row


# Per kind of task: a task dataset's `label` value (see `data.task_datasets`) -> the task's columns of the model's
# `labels` matrix (`configuration_multitask_st.LABEL_WIDTHS`), given the task's label (or output) names.
LABEL_ENCODERS = {
    SINGLE_LABEL: lambda label, names: [float(label)],
    MULTI_LABEL: lambda label, names: _multi_hot(label, len(names)),
    REGRESSION: lambda label, names: [float(label[name]) for name in names],
    # A pair task's class id or score, an `embedding_contrastive` row's 0 ("labelled").
    **dict.fromkeys(
        (PAIR_CLASSIFICATION, PAIR_REGRESSION, EMBEDDING, EMBEDDING_CONTRASTIVE), lambda label, names: [float(label)]
    ),
}


def _encode_label_columns(dataset: datasets.Dataset, task: str, kind: str, names: list[str]) -> datasets.Dataset:
    """The `label` column as the task's float columns of `labels` (a regression target is read by output name)."""
    encode = LABEL_ENCODERS[kind]
    width = LABEL_WIDTHS[kind](len(names))
    if kind == REGRESSION:
        feature = dataset.features["label"]
        if not isinstance(feature, dict) or sorted(feature) != sorted(names):
            raise ValueError(
                f"The dataset given for regression task {task!r} must have `label` = {{output: number}} for its "
                f"outputs {names}, got {feature}."
            )
    values = [encode(label, names) for label in dataset.with_format(None)["label"]]
    if any(len(row) != width for row in values):
        raise ValueError(f"The labels of task {task!r} must take {width} column(s) of `labels`.")
    dataset = dataset.remove_columns("label")
    return dataset.add_column("label", values, feature=datasets.Sequence(datasets.Value("float32")))


def concatenate_task_datasets(
    task_datasets: dict[str, datasets.Dataset] | datasets.Dataset, task_names: list[str], config=None
) -> tuple[datasets.Dataset, list[int]]:
    """One dataset with every task's examples grouped by task (task order = `task_names`), and each task's size.

    Accepts `{task: tokenised dataset}`, whose rows get `task_id = task_names.index(task)`, or one dataset that
    already has a `task_id` column. A dict's dataset may carry a `task_id` column only if it agrees with its key.
    With `config` (the model's) and a task that is not single-label classification, every task's `label` becomes its
    float columns of the model's `labels` matrix (`LABEL_ENCODERS`); otherwise labels stay integer ids.
    """
    kinds = config.task_kinds if config is not None else dict.fromkeys(task_names, SINGLE_LABEL)
    as_columns = any(kind != SINGLE_LABEL for kind in kinds.values())
    if isinstance(task_datasets, dict):
        unknown = sorted(set(task_datasets) - set(task_names))
        if unknown:
            raise ValueError(f"Datasets given for unknown task(s) {unknown}; the model's tasks are {task_names}.")
        parts = []
        for task_id, task in enumerate(task_names):
            if task not in task_datasets:
                continue
            dataset = task_datasets[task]
            if "task_id" in dataset.column_names:
                found = sorted(set(dataset.unique("task_id")))
                if found != [task_id]:
                    raise ValueError(
                        f"The dataset given for task {task!r} has `task_id` values {found}, but {task!r} is task "
                        f"{task_id} of {task_names}. Drop its `task_id` column: the key decides the task."
                    )
                dataset = dataset.remove_columns("task_id")
            dataset = dataset.add_column("task_id", [task_id] * len(dataset))
            # Tasks' label features differ (ClassLabel names, kinds): make them one type so they concatenate.
            if "label" in dataset.column_names and as_columns:
                dataset = _encode_label_columns(dataset, task, kinds[task], config.tasks[task])
            elif "label" in dataset.column_names:
                dataset = dataset.cast_column("label", datasets.Value("int64"))
            parts.append(dataset)
        if not parts:
            raise ValueError(f"No task dataset given; pass {{task: dataset}} for some of {task_names}.")
        combined = datasets.concatenate_datasets(_aligned_columns(parts))
    else:
        combined = task_datasets
    if "task_id" not in combined.column_names:
        raise ValueError(f"The dataset needs a `task_id` column; it has {combined.column_names}.")
    task_ids = np.asarray(combined["task_id"])
    if np.any(np.diff(task_ids) < 0):
        combined = combined.select(np.argsort(task_ids, kind="stable"))
        task_ids = np.sort(task_ids, kind="stable")
    sizes = np.bincount(task_ids, minlength=len(task_names)).tolist()
    return combined, sizes


def _aligned_columns(parts: list[datasets.Dataset]) -> list[datasets.Dataset]:
    """The task datasets with one set of columns, so they concatenate: a column some tasks lack (`pair_input_ids`...)
    added to the others as missing values (None)."""
    features = {}
    for part in parts:
        for name, feature in part.features.items():
            features.setdefault(name, feature)
    aligned = []
    for part in parts:
        for name, feature in features.items():
            if name not in part.column_names:
                part = part.add_column(name, [None] * len(part), feature=feature)
        aligned.append(part.select_columns(list(features)).cast(datasets.Features(features)))
    return aligned
