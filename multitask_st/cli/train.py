"""Train a multi-task sentence transformer with the Hugging Face Trainer (`multitask-st train`; `python train.py`).

    multitask-st train                                # the embedded default: MiniLM + BBC News + Rotten Tomatoes
    multitask-st train config.yaml                    # every argument from a YAML (or JSON) file
    multitask-st train --tasks topic=ag_news sentiment=stanfordnlp/sst2 --text_columns sentiment=sentence --bf16
    multitask-st train --tasks tags=20newsgroups_tags spread=election_tweets \
        --task_kinds tags=multi_label spread=regression --pos_weight tags=balanced
    multitask-st train --init_model outputs/multitask-st --tasks newsgroup=20newsgroups   # add a task later
    accelerate launch -m multitask_st train ...       # several GPUs / processes (or torchrun --nproc_per_node N -m ...)

Arguments: the dataclasses of `train_arguments.py` plus every `TrainingArguments` flag (`multitask-st train --help`).
"""

from __future__ import annotations

import logging as std_logging
import sys
from pathlib import Path

import numpy as np
from transformers import EarlyStoppingCallback, set_seed
from transformers.utils import SAFE_WEIGHTS_NAME, logging

from multitask_st import MultiTaskSTModel
from multitask_st.cli.train_arguments import (
    DEFAULT_TASKS,
    PROG,
    DataArguments,
    check_task_options,
    data_budget,
    parse_arguments,
    parse_label_names,
    parse_task_pairs,
)
from multitask_st.cli.train_model import (
    held_dataset_records,
    held_evaluation_data,
    start_from_backbone,
    start_from_trained_model,
)
from multitask_st.data.corpora import stsb
from multitask_st.data.labels import label_names_of, output_names
from multitask_st.data.streaming import load_task_stream
from multitask_st.data.task_datasets import load_task_dataset, subsample
from multitask_st.inference_multitask_st import (
    EMBEDDING,
    EMBEDDING_CONTRASTIVE,
    PAIR_KINDS,
    PAIR_REGRESSION,
    SINGLE_LABEL,
)
from multitask_st.training.distillation import is_partitioned
from multitask_st.training.output_dir import check_free_space, checkpoint_bytes, prepare_output_dir
from multitask_st.training.processes import check_one_job
from multitask_st.training.record import dataset_record
from multitask_st.training.streaming import check_streaming_args, tokenize_task_stream
from multitask_st.training.tokenization import tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer


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


def load_tasks(data_args: DataArguments, seed: int) -> dict:
    datasets_by_task = check_task_options(data_args)
    kinds = parse_task_pairs(data_args.task_kinds, "task_kinds")
    text_columns = parse_task_pairs(data_args.text_columns, "text_columns")
    text_pair_columns = parse_task_pairs(data_args.text_pair_columns, "text_pair_columns")
    negative_columns = parse_task_pairs(data_args.negative_columns, "negative_columns")
    label_columns = parse_task_pairs(data_args.label_columns, "label_columns")
    delimiters = parse_task_pairs(data_args.label_delimiters, "label_delimiters")
    label_names = parse_label_names(data_args.task_label_names)
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
    if data_args.max_train_samples:
        raise ValueError("--streaming reads each stream as far as --max_steps needs; leave out --max_train_samples.")
    kinds = parse_task_pairs(data_args.task_kinds, "task_kinds")
    columns = {option: parse_task_pairs(getattr(data_args, option), option) for option in ("text_columns",
               "text_pair_columns", "negative_columns", "label_columns", "label_delimiters")}  # fmt: skip
    label_names = parse_label_names(data_args.task_label_names)
    streams, held_out = {}, {}
    for task, name in datasets_by_task.items():
        kind = kinds.get(task, SINGLE_LABEL)
        label_column = columns["label_columns"].get(task, "label")
        streams[task], held_out[task], _ = load_task_stream(
            name,
            kind=kind,
            text_column=columns["text_columns"].get(task, "text"),
            label_column=label_column.split(",") if kind == "regression" else label_column,
            label_names=label_names.get(task),
            label_delimiter=columns["label_delimiters"].get(task, ","),
            text_pair_column=columns["text_pair_columns"].get(task),
            negative_column=columns["negative_columns"].get(task),
            held_out=data_args.max_eval_samples or STREAMING_HELD_OUT,
        )
    return streams, held_out


def task_labels(data_args: DataArguments, task_data: dict) -> dict[str, list[str]]:
    """`config.tasks`: per task its label (or output) names from its data; a pair regression or embedding task's one
    output name (see `output_names`)."""
    kinds = parse_task_pairs(data_args.task_kinds, "task_kinds")
    label_columns = parse_task_pairs(data_args.label_columns, "label_columns")
    label_names = parse_label_names(data_args.task_label_names)
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
    kinds = parse_task_pairs(data_args.task_kinds, "task_kinds")
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
        task: dataset_record(name, task_data[task])
        for task, name in parse_task_pairs(data_args.tasks, "tasks").items()
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
        if is_partitioned(trainer.model) and training_args.world_size > 1:
            # Each process holds a slice of the weights: a forward pass on this process alone would wait for the others.
            if (Path(training_args.output_dir) / SAFE_WEIGHTS_NAME).is_file():
                print(f"\nModel saved to {training_args.output_dir} (DeepSpeed ZeRO-3: load it to try it).")
            else:
                print(
                    f"\nDeepSpeed ZeRO-3 saved its partitioned checkpoint in {training_args.output_dir}, no "
                    f'{SAFE_WEIGHTS_NAME}: set "stage3_gather_16bit_weights_on_model_save": true in the DeepSpeed '
                    "config for one (or gather it with DeepSpeed's zero_to_fp32.py)."
                )
        else:
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
