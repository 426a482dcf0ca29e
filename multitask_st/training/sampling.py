"""How examples of several tasks are mixed into one training stream.

The task datasets are concatenated (task `t` occupies indices `offsets[t] .. offsets[t] + sizes[t] - 1`); the sampler
yields indices of that concatenation. `Trainer` cuts its stream into consecutive batches, so for single-task batches
the sampler emits blocks of exactly `batch_size` indices of one task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


SAMPLING_STRATEGIES = ("proportional", "round_robin", "temperature")
# Length grouping sorts windows of this many batches by length: batches pad little yet stay shuffled.
_LENGTH_WINDOW_BATCHES = 50


def task_sampling_weights(sizes: Sequence[int], strategy: str, temperature: float = 1.0) -> list[float]:
    """Probability of drawing each task.

    `proportional`: size / total. `round_robin`: equal. `temperature`: size^(1/T), normalised (T=1 is proportional,
    large T tends to equal).

    Example:
        >>> task_sampling_weights([900, 100], "temperature", temperature=2.0)
        [0.75, 0.25]
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"Unknown sampling strategy {strategy!r}; choose one of {list(SAMPLING_STRATEGIES)}.")
    if not sizes or any(size < 0 for size in sizes) or not any(sizes):
        raise ValueError(f"Task sizes must be >= 0 with at least one training example, got {list(sizes)}.")
    # A task without training data (a head kept as it is while others train) is never drawn.
    if strategy == "round_robin":
        raw = [float(size > 0) for size in sizes]
    elif strategy == "proportional":
        raw = [float(size) for size in sizes]
    else:
        if temperature <= 0:
            raise ValueError(f"`sampling_temperature` must be > 0, got {temperature}.")
        raw = [size ** (1.0 / temperature) if size else 0.0 for size in sizes]
    total = sum(raw)
    return [value / total for value in raw]


class MultiTaskSampler(Sampler[int]):
    """Yields indices into the concatenated task datasets, one epoch of `num_samples` at a time.

    - `proportional` visits every example exactly once per epoch (shuffled); the other strategies draw each batch's
      (or example's) task at random with `task_sampling_weights` — `round_robin` cycles through the tasks in turn — and
      go through each task's examples in a fresh shuffled order, restarting a task when it is used up.
    - `mixed_batches=False` keeps every batch to a single task (blocks of `batch_size`; a task's last partial block is
      topped up with other examples of that task).
    - `lengths` (tokens per example) turns on length grouping: within windows of 50 batches examples are sorted by
      length, so batches pad little.

    Deterministic for `seed` and the epoch (`set_epoch`, which Trainer/Accelerate call). Every process draws the
    same stream; Accelerate hands each process its own batches of it.
    """

    def __init__(
        self,
        task_sizes: Sequence[int],
        batch_size: int,
        strategy: str = "proportional",
        temperature: float = 1.0,
        mixed_batches: bool = True,
        seed: int = 0,
        num_samples: int | None = None,
        lengths: Sequence[int] | None = None,
    ):
        self.task_sizes = list(task_sizes)
        self.weights = task_sampling_weights(self.task_sizes, strategy, temperature)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        self.batch_size = batch_size
        self.strategy = strategy
        self.mixed_batches = mixed_batches
        self.seed = seed
        self.offsets = [sum(self.task_sizes[:t]) for t in range(len(self.task_sizes))]
        total = sum(self.task_sizes)
        self.num_samples = total if num_samples is None else num_samples
        if lengths is not None and len(lengths) != total:
            raise ValueError(f"`lengths` has {len(lengths)} entries for {total} examples.")
        self.lengths = None if lengths is None else torch.as_tensor(lengths)
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self) -> int:
        if self.mixed_batches:
            return self.num_samples
        if self.strategy == "proportional" and self.num_samples == sum(self.task_sizes):
            # every task's examples in whole blocks (its last one topped up): sum of ceil(size / batch) blocks
            return sum(-(-size // self.batch_size) for size in self.task_sizes) * self.batch_size
        return -(-self.num_samples // self.batch_size) * self.batch_size  # whole single-task blocks

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        unit = 1 if self.mixed_batches else self.batch_size
        num_units = len(self) // unit
        if self.strategy == "proportional":
            blocks = self._proportional_blocks(generator, unit)
        else:
            blocks = self._drawn_blocks(generator, unit, num_units)
        if self.lengths is not None:
            blocks = self._group_by_length(blocks, unit, generator)
        for block in blocks[:num_units]:
            yield from block

    def _task_stream(self, task: int, generator: torch.Generator) -> Iterator[int]:
        """Endless shuffled passes over one task's examples."""
        while True:
            yield from (self.offsets[task] + torch.randperm(self.task_sizes[task], generator=generator)).tolist()

    def _proportional_blocks(self, generator: torch.Generator, unit: int) -> list[list[int]]:
        if unit == 1:
            order = torch.randperm(sum(self.task_sizes), generator=generator).tolist()
            return [[index] for index in order]
        blocks = []
        for task, size in enumerate(self.task_sizes):
            stream = self._task_stream(task, generator)
            blocks.extend([next(stream) for _ in range(unit)] for _ in range(-(-size // unit)))
        return [blocks[i] for i in torch.randperm(len(blocks), generator=generator).tolist()]

    def _drawn_blocks(self, generator: torch.Generator, unit: int, num_units: int) -> list[list[int]]:
        if self.strategy == "round_robin":
            present = [task for task, size in enumerate(self.task_sizes) if size]
            tasks = [present[u % len(present)] for u in range(num_units)]
        else:
            tasks = torch.multinomial(torch.tensor(self.weights), num_units, replacement=True, generator=generator)
            tasks = tasks.tolist()
        streams = [self._task_stream(task, generator) for task in range(len(self.task_sizes))]
        return [[next(streams[task]) for _ in range(unit)] for task in tasks]

    def _group_by_length(self, blocks: list[list[int]], unit: int, generator: torch.Generator) -> list[list[int]]:
        """Within windows of 50 batches, re-cut the stream so similar lengths share a batch, then shuffle the batches
        of the window. Single-task blocks are re-cut within their task, so no batch mixes tasks."""
        window = _LENGTH_WINDOW_BATCHES * self.batch_size // unit
        grouped = []
        for start in range(0, len(blocks), window):
            by_task: dict[int, list[int]] = {}
            for block in blocks[start : start + window]:
                by_task.setdefault(0 if unit == 1 else self._task_of(block[0]), []).extend(block)
            batches = []
            for indices in by_task.values():
                indices.sort(key=lambda index: -int(self.lengths[index]))
                batches.extend(indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size))
            for batch in (batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()):
                grouped.extend([[index] for index in batch] if unit == 1 else [batch])
        return grouped

    def _task_of(self, index: int) -> int:
        for task in reversed(range(len(self.offsets))):
            if index >= self.offsets[task]:
                return task
        raise IndexError(index)
