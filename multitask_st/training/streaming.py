"""Multi-task training on streams: tasks whose data is a `datasets.IterableDataset`, read as training needs it.

Each task's stream is split across the processes (`process_share`, as `datasets.distributed.split_dataset_by_node`
splits: whole files where their count allows, else every `world_size`-th row), tokenised on the fly (the map-style
path's tokenisation, `_tokenize_batch`), repeated without end, shuffled in a buffer, and the tasks are mixed by
`datasets.interleave_datasets` with the weights of the map-style sampler (`sampling.task_sampling_weights`, from the
tasks' known or declared sizes; declared probabilities win; `round_robin` takes the tasks in turn).
`mixed_task_batches=False` mixes whole single-task batches instead of rows. The run is as long as `max_steps` says: a
stream has no epochs to count.

Resuming: every process saves, with each checkpoint, the state of its own stream after exactly the examples its training
steps consumed (`stream_state-rank<r>.json`; `TaskStreams.state_at`), and a resumed run loads it and reads on from
there, instead of Trainer's re-reading of the stream from its start. The guarantee: with no shuffle buffer the
resumed run trains on exactly the batches the uninterrupted run would have (the same final weights); with a shuffle
buffer, the rows that sat in the buffer when the checkpoint was written are dropped for this pass over the data (the
`datasets` buffer is not saved), the rest continue from where the stream stopped: no row is trained twice in a pass.
"""

from __future__ import annotations

import json
import math
from collections import deque
from functools import partial
from pathlib import Path

import datasets
import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback
from transformers.utils import logging

from ..inference_multitask_st import MODEL_INPUTS, SINGLE_LABEL
from ..task_fields_multitask_st import BALANCED
from .collator import SECOND_TEXT_PREFIXES
from .label_statistics import fit_to_training_labels, needing_label_statistics
from .sampling import task_sampling_weights
from .tokenization import LABEL_ENCODERS, SECOND_TEXT_COLUMNS, _tokenize_batch


logger = logging.get_logger(__name__)

STREAM_STATE_FILE = "stream_state-rank{rank}.json"


def is_task_stream(train_dataset) -> bool:
    """Whether `train_dataset` (a `{task: dataset}` dict or one dataset) holds streams."""
    values = train_dataset.values() if isinstance(train_dataset, dict) else [train_dataset]
    streams = [isinstance(value, (datasets.IterableDataset, TokenizedTaskStream)) for value in values]
    if any(streams) and not all(streams):
        kinds = {task: type(value).__name__ for task, value in train_dataset.items()}
        raise TypeError(
            f"Give every task a stream (`datasets.IterableDataset`) or every task a map-style `Dataset`, not both: "
            f"got {kinds}. A map-style task streams too: `dataset.to_iterable_dataset()`."
        )
    return any(streams)


def tokenize_task_stream(stream: datasets.IterableDataset, tokenizer: PreTrainedTokenizerBase, *, max_length: int):
    """A task stream (`load_task_stream`'s rows: `text`, `text_pair`/`negative` where the kind has them, `label`)
    tokenised on the fly, as `tokenize_task_dataset` tokenises a split (truncated, unpadded: the collator pads; second
    texts and hard negatives on their own, as `pair_input_ids`, ... / `negative_input_ids`, ...)."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"`max_length` must be a positive integer, got {max_length!r}.")
    return TokenizedTaskStream(stream, tokenizer, max_length)


class TokenizedTaskStream:
    """A tokenised task stream waiting for its task id: `mix_task_streams` tokenises, encodes the label as the task's
    columns of `labels` and adds `task_id` in one batched map (each further map of a `datasets` stream costs about as
    much per row again)."""

    def __init__(
        self, stream: datasets.IterableDataset, tokenizer: PreTrainedTokenizerBase | None, max_length: int = 0
    ):
        self.stream = stream
        self.tokenizer = tokenizer
        self.tokenize = tokenizer and partial(
            _tokenize_batch, tokenizer=tokenizer, text_column="text", max_length=max_length
        )

    def columns(self) -> list[str]:
        """The columns this stream gives once tokenised (its first row read where its source does not say)."""
        names = self.stream.column_names or list(next(iter(self.stream.take(1)), {}))
        if self.tokenize is None:
            return [name for name in names if name != "task_id"]
        inputs = [key for key in MODEL_INPUTS if key in self.tokenizer("a")]
        prefixes = [""] + [prefix for column, prefix in SECOND_TEXT_COLUMNS.items() if column in names]
        return [prefix + key for prefix in prefixes for key in inputs] + ["label"]

    def with_task_id(
        self,
        task_id: int,
        rank: int = 0,
        world_size: int = 1,
        encode_label=None,
        features: datasets.Features | None = None,
    ) -> datasets.IterableDataset:
        """This process's share (split before tokenising: each process tokenises only its own rows), tokenised, each
        row with `task_id` and its label as `encode_label` makes it (the task's columns of `labels`; None: as is), in
        `features` (the columns every task of the mix gives, missing ones None)."""
        stream = process_share(self.stream, rank, world_size)

        def tokenize(batch: dict) -> dict:
            labels = batch["label"] if encode_label is None else [encode_label(label) for label in batch["label"]]
            columns = self.tokenize(batch) if self.tokenize is not None else {}
            return {**columns, "label": labels, "task_id": [task_id] * len(labels)}

        if self.tokenize is None:  # tokenised already: only the label and task id change
            remove = ["label"]
        else:
            remove = stream.column_names or [*SECOND_TEXT_COLUMNS, "text", "label"]
        return stream.map(tokenize, batched=True, remove_columns=remove, features=features)


def process_share(stream: datasets.IterableDataset, rank: int, world_size: int) -> datasets.IterableDataset:
    """This process's rows of a task's stream, as `datasets.distributed.split_dataset_by_node` splits: whole shards
    (files) when their count is a multiple of `world_size`, else every `world_size`-th row from `rank` on.

    Not `split_dataset_by_node` itself: it marks the stream, and the split happens where the stream is read, which is
    after the tasks are mixed: the mix would be split, handing a process whole tasks (in turn: all of one task) instead
    of a share of each.
    """
    if world_size == 1:
        return stream
    if stream.num_shards % world_size == 0:
        return stream.shard(num_shards=world_size, index=rank, contiguous=False)
    return stream.filter(lambda row, index: index % world_size == rank, with_indices=True)


def stream_sampling_weights(
    task_names: list[str],
    strategy: str,
    temperature: float,
    sizes: dict[str, int | None],
    probabilities: dict[str, float] | None = None,
) -> list[float] | None:
    """Each streamed task's probability of giving the next example (or single-task batch), in `task_names` order, or
    `None` for `round_robin` (tasks in turn).

    Declared `probabilities` (normalised) win; else `task_sampling_weights` of the sizes, which `proportional` and
    `temperature` need for every task (a stream's size is known only when its source declares it, or you do).
    """
    if probabilities:
        unknown = sorted(set(probabilities) - set(task_names))
        missing = [task for task in task_names if task not in probabilities]
        if unknown or missing:
            raise ValueError(
                f"`task_sampling_probabilities` must give one probability per streamed task {task_names}; got "
                f"{probabilities}."
            )
        values = [probabilities[task] for task in task_names]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or v == math.inf for v in values):
            raise ValueError(f"`task_sampling_probabilities` must be finite numbers >= 0, got {probabilities}.")
        if not sum(values) > 0:
            raise ValueError(f"`task_sampling_probabilities` must not all be 0, got {probabilities}.")
        return [value / sum(values) for value in values]
    if strategy == "round_robin":
        return None
    unknown_sizes = [task for task in task_names if sizes.get(task) is None]
    if unknown_sizes:
        raise ValueError(
            f"sampling_strategy={strategy!r} weighs the tasks by their sizes, but the size of the streamed task(s) "
            f"{unknown_sizes} is unknown. Declare the sizes (`stream_task_sizes`, e.g. "
            f"--stream_task_sizes '{json.dumps(dict.fromkeys(unknown_sizes, 1000000))}') or the probabilities "
            "(`task_sampling_probabilities`), or use sampling_strategy='round_robin'."
        )
    return task_sampling_weights([sizes[task] for task in task_names], strategy, temperature)


def known_stream_size(stream: datasets.IterableDataset) -> int | None:
    """The number of rows a stream's source declares (a Hub dataset's info), else None."""
    splits = getattr(stream.info, "splits", None) or {}
    split = splits.get(str(stream.split)) if stream.split is not None else None
    return None if split is None or not split.num_examples else int(split.num_examples)


def mix_task_streams(
    streams: dict[str, datasets.IterableDataset],
    task_names: list[str],
    weights: list[float] | None,
    *,
    seed: int,
    batch_size: int,
    mixed_batches: bool = True,
    shuffle_buffer_size: int = 1000,
    rank: int = 0,
    world_size: int = 1,
    config=None,
) -> datasets.IterableDataset:
    """One endless stream of tokenised examples of every task (`task_id` = the task's position in `task_names`), this
    process's share only. `weights` as `stream_sampling_weights` gives them, for the tasks of `streams` in
    `task_names` order. With `config` (the model's) and a task that is not single-label classification, every label
    becomes its task's float columns of `labels` (`LABEL_ENCODERS`, as `concatenate_task_datasets` makes them);
    otherwise labels stay integer ids."""
    tasks = [task for task in task_names if task in streams]
    streams = {task: _as_tokenized(streams[task]) for task in tasks}
    kinds = config.task_kinds if config is not None else dict.fromkeys(task_names, SINGLE_LABEL)
    as_columns = any(kind != SINGLE_LABEL for kind in kinds.values())
    features = None  # one task: no columns to align
    if len(tasks) > 1:
        features = _mixed_features({task: stream.columns() for task, stream in streams.items()}, as_columns)
    parts = []
    for task in tasks:
        encode = partial(LABEL_ENCODERS[kinds[task]], names=config.tasks[task]) if as_columns else None
        stream = streams[task].with_task_id(task_names.index(task), rank, world_size, encode, features)
        stream = stream.repeat(None)  # the run is as long as max_steps says
        if shuffle_buffer_size:
            stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        if not mixed_batches:
            stream = stream.batch(batch_size, drop_last_batch=True)
        parts.append(stream)
    mixed = parts[0] if len(parts) == 1 else datasets.interleave_datasets(parts, probabilities=weights, seed=seed)
    if not mixed_batches:  # back to rows: each block of `batch_size` rows (one collated batch) holds one task
        mixed = mixed.map(lambda block: {key: values[0] for key, values in block.items()}, batched=True, batch_size=1)
    return mixed


def _as_tokenized(stream) -> TokenizedTaskStream:
    # a stream of tokenised rows (`input_ids`, ..., `label`) as it is
    return stream if isinstance(stream, TokenizedTaskStream) else TokenizedTaskStream(stream, tokenizer=None)


def _mixed_features(columns: dict[str, list[str]], as_columns: bool) -> datasets.Features:
    """The columns of the mixed stream, typed up front: the union of the tasks' (a task's missing ones are None), so
    `interleave_datasets` need not guess a type from a first row whose optional hard negative is None."""
    tokens = datasets.List(datasets.Value("int64"))
    label = datasets.List(datasets.Value("float32")) if as_columns else datasets.Value("int64")
    names = dict.fromkeys(name for task_columns in columns.values() for name in task_columns)
    return datasets.Features(
        {**{name: tokens for name in names if name != "label"}, "label": label, "task_id": datasets.Value("int64")}
    )


class TaskStreams(torch.utils.data.IterableDataset):
    """The mixed stream as the training DataLoader reads it, and where it stood after each batch it gave.

    The DataLoader and Trainer read ahead of the steps (a whole gradient-accumulation step at once), so the stream's
    state at checkpoint time is not the state after the examples trained on: the state after each of the last batches
    is kept (`state_at`).
    """

    def __init__(
        self, mixed: datasets.IterableDataset, batch_size: int, kept_batches: int = 256, tasks: list[str] = ()
    ):
        self.mixed = mixed
        self.batch_size = batch_size
        self.tasks = list(tasks)  # the tasks that have a stream (the others' heads may be held: `_held_tasks`)
        # What the collator takes: the model inputs (of second texts and hard negatives too), task id and label.
        self.columns = {prefix + key for prefix in ("", *SECOND_TEXT_PREFIXES) for key in MODEL_INPUTS}
        self.columns |= {"task_id", "label"}
        self.examples = 0  # examples given so far (by this process), counting those of resumed runs
        self._states = deque([(0, None)], maxlen=kept_batches)

    def __iter__(self):
        for example in self.mixed:
            self.examples += 1
            if self.examples % self.batch_size == 0:
                self._states.append((self.examples, self.mixed.state_dict()))
            yield {key: value for key, value in example.items() if key in self.columns}

    def state_at(self, examples: int) -> dict:
        """The state of the stream right after its first `examples` examples (a batch boundary it passed lately)."""
        for seen, state in reversed(self._states):
            if seen == examples:
                return {"examples": examples, "stream": state}
        raise RuntimeError(
            f"The stream's state after {examples} examples is no longer known (kept: "
            f"{[seen for seen, _ in self._states]}); the DataLoader read further ahead than expected."
        )

    def load_state(self, state: dict):
        """Continue after the examples `state` (from `state_at`) counts."""
        if state["stream"] is not None:
            self.mixed.load_state_dict(state["stream"])
        self.examples = state["examples"]
        self._states = deque([(self.examples, state["stream"])], maxlen=self._states.maxlen)


def check_streaming_args(args):
    """Raises when `MultiTaskTrainingArguments` cannot drive a streaming run (checked before anything is loaded)."""
    if args.max_steps is None or args.max_steps <= 0:
        raise ValueError(
            f"Streaming training needs `max_steps` > 0 (got max_steps={args.max_steps}): a stream has no length to "
            "count epochs in, so the run is as long as max_steps says."
        )
    if args.dataloader_num_workers:
        raise ValueError(
            f"Streaming training reads its streams in the main process (got dataloader_num_workers="
            f"{args.dataloader_num_workers}): each worker would read the whole stream, and checkpoints keep the "
            "stream's state. Set dataloader_num_workers=0."
        )


def build_task_streams(train_dataset, model, args) -> TaskStreams:
    """`{task: tokenised stream}` -> the mixed stream this process trains on, after checking that the run can stream.

    What a map-style run takes from its training labels before step 1 (`fit_to_training_labels`: `"balanced"` class
    and positive weights, regression target scaling) comes from the first `args.stream_statistics_rows` training rows
    of each stream that needs it (see `stream_label_statistics`).

    Args:
        train_dataset: `{task: datasets.IterableDataset}` of tokenised rows (`tokenize_task_stream`), with `label` ids.
        model: the model (its config's task names and kinds; its loss options and target scaling are set here).
        args: `MultiTaskTrainingArguments` (`max_steps`, the sampling settings, `stream_*`, the process's rank).
    """
    if not isinstance(train_dataset, dict):
        raise TypeError(
            "Give streamed training data as {task: datasets.IterableDataset}, got one "
            f"{type(train_dataset).__name__}."
        )
    config = model.config
    task_names = config.task_names
    unknown = sorted(set(train_dataset) - set(task_names))
    if unknown:
        raise ValueError(f"Streams given for unknown task(s) {unknown}; the model's tasks are {task_names}.")
    check_streaming_args(args)
    streamed = [task for task in task_names if task in train_dataset]
    stream_label_statistics(model, {task: train_dataset[task] for task in streamed}, args.stream_statistics_rows)
    sizes = {task: known_stream_size(_as_tokenized(train_dataset[task]).stream) for task in streamed}
    sizes.update({task: size for task, size in (args.stream_task_sizes or {}).items() if task in sizes})
    weights = stream_sampling_weights(
        streamed, args.sampling_strategy, args.sampling_temperature, sizes, args.task_sampling_probabilities
    )
    mixed = mix_task_streams(
        train_dataset,
        task_names,
        weights,
        seed=args.data_seed if args.data_seed is not None else args.seed,
        batch_size=args.per_device_train_batch_size,
        mixed_batches=args.mixed_task_batches,
        shuffle_buffer_size=args.stream_shuffle_buffer_size,
        rank=args.process_index,
        world_size=args.world_size,
        config=config,
    )
    described = "in turn" if weights is None else dict(zip(streamed, [round(w, 4) for w in weights], strict=True))
    logger.info(f"Streaming {streamed} (process {args.process_index} of {args.world_size}), tasks drawn {described}.")
    return TaskStreams(mixed, args.per_device_train_batch_size, tasks=streamed)


def stream_label_statistics(model, streams: dict, rows: int | None):
    """`fit_to_training_labels` (the map-style run's `"balanced"` weights and regression target scaling), from the
    first `rows` training rows of each stream that needs it, read before the streams are split across processes:
    every process reads the same rows and sets the same numbers.

    The guarantee: the weights and scaling are exactly those a map-style run computes from those rows (all of a
    stream's rows when it holds no more than `rows`); on a larger stream they are an estimate, as good as its first
    rows are a sample of the rest (shuffle a file whose order follows its labels). Declared numbers need no rows:
    class weights or `pos_weight` as numbers, a target scaling set on the model (`model.set_target_scaling`, or a
    trained model's), `normalize_targets=False`.
    """
    config = model.config
    needs = needing_label_statistics(config, list(streams))
    if not needs:
        return
    if rows is None:
        raise ValueError(
            f"Task(s) {needs} need their training labels counted before step 1 ({BALANCED!r} class or positive "
            "weights, or a regression task's target scaling), and a stream is not read whole. Declare how many first "
            "rows of each stream to count (`stream_statistics_rows`, e.g. --stream_statistics_rows 100000), or give "
            "the numbers: weights as numbers, the scaling with `model.set_target_scaling` (or "
            "--normalize_targets task=false)."
        )
    as_columns = any(kind != SINGLE_LABEL for kind in config.task_kinds.values())
    task_ids, labels = [], []
    for task in needs:
        encode = partial(LABEL_ENCODERS[config.task_kinds[task]], names=config.tasks[task])
        sample = [row["label"] for row in _as_tokenized(streams[task]).stream.take(rows)]
        task_ids += [config.task_names.index(task)] * len(sample)
        labels += [encode(label) if as_columns else label for label in sample]
        logger.info(f"Task {task!r}: label statistics from its first {len(sample)} training rows (of {rows} asked).")
    # float32 labels, as the map-style training set holds them: the same rows give the same numbers
    label = datasets.List(datasets.Value("float32")) if as_columns else datasets.Value("int64")
    features = datasets.Features({"task_id": datasets.Value("int64"), "label": label})
    fit_to_training_labels(model, datasets.Dataset.from_dict({"task_id": task_ids, "label": labels}, features))


class StreamStateCallback(TrainerCallback):
    """Saves each process's stream state with every checkpoint (`stream_state-rank<r>.json`), after exactly the
    examples its steps trained on."""

    def __init__(self, streams: TaskStreams, rank: int):
        self.streams, self.rank = streams, rank

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        consumed = state.global_step * args.gradient_accumulation_steps * args.per_device_train_batch_size
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / STREAM_STATE_FILE.format(rank=self.rank)
        path.write_text(json.dumps(self.streams.state_at(consumed)))


def load_stream_state(streams: TaskStreams, checkpoint: str, rank: int, world_size: int):
    """Continue `streams` where the run that wrote `checkpoint` left this process's stream."""
    path = Path(checkpoint) / STREAM_STATE_FILE.format(rank=rank)
    saved = sorted(Path(checkpoint).glob(STREAM_STATE_FILE.format(rank="*")))
    if len(saved) != world_size or not path.is_file():
        raise ValueError(
            f"Cannot resume the streams from {checkpoint!r}: it holds the stream states of {len(saved)} process(es) "
            f"({[file.name for file in saved]}), this run has {world_size}. Resume with as many processes as wrote "
            "it, or start a new run."
        )
    streams.load_state(json.loads(path.read_text()))
    logger.info(f"Streams resumed after {streams.examples} examples of this process (from {path}).")
