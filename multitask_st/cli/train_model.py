"""The model a `multitask-st train` run starts from: a backbone with a new head per task, or a trained model
(`--init_model`) with new heads added and its other heads held, scored after training on their own data."""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict
from transformers import AutoTokenizer
from transformers.utils import logging

from multitask_st import MultiTaskSTModel
from multitask_st.cli.train_arguments import ModelArguments, task_loss_options
from multitask_st.data.corpora import BUILTIN_DATASETS
from multitask_st.data.resources import resolve_backbone
from multitask_st.data.task_datasets import load_task_dataset, subsample
from multitask_st.inference_multitask_st import KIND_ALIASES, SINGLE_LABEL, check_max_length
from multitask_st.model_folder import load_training_summary
from multitask_st.task_fields_multitask_st import normalize_task_loss_options


logger = logging.get_logger("multitask_st.cli.train")

# The architecture arguments a trained model already fixes: `--init_model` refuses them when set.
ARCHITECTURE_ARGS = ("backbone", "pooling_mode", "projection", "embedding_dim", "normalize_embeddings",
                     "head_hidden_size", "head_dropout", "attn_implementation")  # fmt: skip


def start_from_trained_model(model_args: ModelArguments, tasks: dict[str, list[str]], kinds: dict[str, str]):
    """The trained model `--init_model` names, with a new head for each task of `tasks` it lacks; its tokenizer; and
    the name the record credits as the base model."""
    defaults = ModelArguments()
    given = [name for name in ARCHITECTURE_ARGS if getattr(model_args, name) != getattr(defaults, name)]
    if given:
        raise ValueError(
            f"--init_model {model_args.init_model} starts from a trained model, whose architecture is fixed; "
            f"leave out {', '.join('--' + name for name in given)}."
        )
    model = MultiTaskSTModel.from_pretrained(model_args.init_model)
    config = model.config
    for task, labels in tasks.items():
        if task not in config.tasks:
            model.add_task(task, labels, kind=kinds.get(task, SINGLE_LABEL))
        elif config.tasks[task] != labels:
            raise ValueError(
                f"Task {task!r} of --init_model {model_args.init_model} has labels {config.tasks[task]}, but "
                f"its data has {labels}: use another task name, or `rename_labels` / `add_labels` on the model first."
            )
        elif KIND_ALIASES.get(kinds.get(task), kinds.get(task, config.task_kinds[task])) != config.task_kinds[task]:
            raise ValueError(
                f"Task {task!r} of --init_model {model_args.init_model} is a {config.task_kinds[task]} task, but "
                f"--task_kinds makes it {kinds[task]}: a trained head keeps its kind; use another task name."
            )
    # What the loss and length flags say applies to the trained model as it would to a new one (checked by the config).
    config.task_loss_options = normalize_task_loss_options(
        {**config.task_loss_options, **task_loss_options(model_args)}, config.tasks, config.task_kinds
    )
    if model_args.max_seq_length not in (None, defaults.max_seq_length):  # the demo's default is not a choice
        config.max_seq_length = check_max_length(model_args.max_seq_length, None, model.position_limit())
    held = [task for task in model.config.task_names if task not in tasks]
    logger.info(f"Starting from {model_args.init_model}: training {list(tasks)}; holding {held} by distillation.")
    return model, AutoTokenizer.from_pretrained(model_args.init_model), model_args.init_model


def held_dataset_records(init_model: str, model: MultiTaskSTModel, tasks: dict) -> dict[str, dict]:
    """The starting model's own records of the datasets its held heads were trained on (a local folder's), so the
    card keeps crediting them."""
    previous = load_training_summary(init_model).get("datasets") or {} if Path(init_model).is_dir() else {}
    return {task: previous[task] for task in model.config.task_names if task not in tasks and task in previous}


def held_evaluation_data(init_model: str, model: MultiTaskSTModel, tasks: dict) -> dict:
    """Per held head whose starting record names a built-in dataset, that dataset's validation and test splits as the
    starting run scored them (its seed, its split sizes), so this run's record scores the old heads on the same texts
    after training: the before/after of adding a task, from the two records. A head whose labels or kind no longer
    match the data (renamed, appended), or whose data is not built in, is not scored (said in the log)."""
    if not Path(init_model).is_dir():
        return {}
    previous = load_training_summary(init_model)
    records, seed = previous.get("datasets") or {}, (previous.get("training_args") or {}).get("seed", 0)
    config, data = model.config, {}
    for task in [task for task in config.task_names if task not in tasks and task in records]:
        record = records[task]
        builtin = BUILTIN_DATASETS.get(record.get("name"))
        if builtin is None or builtin.kind != config.task_kinds[task] or builtin.label_names != config.tasks[task]:
            logger.info(
                f"Held head {task!r} is not scored after training: its data {record.get('name')!r} is not a built-in "
                f"dataset with its kind {config.task_kinds[task]!r} and labels {config.tasks[task]}."
            )
            continue
        splits = load_task_dataset(record["name"], kind=builtin.kind, seed=seed)
        sizes = {split: record.get(f"num_{split}") for split in ("validation", "test") if split in splits}
        data[task] = subsample(DatasetDict({split: splits[split] for split in sizes}), sizes, seed=seed)
    if data:
        logger.info(f"The held heads {list(data)} are scored after training on their starting record's splits.")
    return data


def start_from_backbone(model_args: ModelArguments, tasks: dict[str, list[str]], kinds: dict[str, str]):
    """A new model on the `--backbone` encoder with one head per task; its tokenizer; the base model's name."""
    backbone, base_model = resolve_backbone(model_args.backbone)
    model = MultiTaskSTModel.from_backbone(
        backbone,
        tasks=tasks,
        task_kinds=kinds,
        task_loss_options=task_loss_options(model_args),
        attn_implementation=model_args.attn_implementation,
        pooling_mode=model_args.pooling_mode,
        projection=model_args.projection,
        embedding_dim=model_args.embedding_dim,
        normalize_embeddings=model_args.normalize_embeddings,
        head_hidden_size=model_args.head_hidden_size,
        head_dropout=model_args.head_dropout,
        max_seq_length=model_args.max_seq_length,
    )
    return model, AutoTokenizer.from_pretrained(backbone), base_model
