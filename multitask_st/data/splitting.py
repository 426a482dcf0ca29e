"""Seeded, stratified (and optionally grouped) train/validation/test splits of row indices."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value


SPLITS = ("train", "validation", "test")


def _largest_remainder(quotas: Sequence[float], total: int, rng: np.random.Generator) -> list[int]:
    """Integers summing to `total`, each the floor of its quota or one more (random tie-breaks, seeded)."""
    counts = [math.floor(q) for q in quotas]
    fractions = np.array([q - c for q, c in zip(quotas, counts, strict=True)])
    order = rng.permutation(len(quotas))
    order = order[np.argsort(-fractions[order], kind="stable")]
    for i in order[: max(0, total - sum(counts))]:
        counts[i] += 1
    return counts


def _check_sizes(validation_size: float, test_size: float) -> None:
    for name, size in (("validation_size", validation_size), ("test_size", test_size)):
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 <= size < 1:
            raise ValueError(f"`{name}` must be a fraction in [0, 1), got {size!r}.")
    if validation_size + test_size >= 1:
        raise ValueError(
            f"`validation_size` + `test_size` must leave rows for training, got {validation_size} + {test_size}."
        )


def split_indices(
    labels: Sequence[Hashable],
    *,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, list[int]]:
    """Seeded, stratified train/validation/test split of row indices.

    Per label, `validation_size` and `test_size` of the rows go to validation and test; the split totals are exact
    (rounded) fractions of all rows. With `groups`, every row of a group lands in the same split (a group counts
    as one unit, stratified by its most common label), so near-copies or reviews of one film cannot leak across
    splits. Each split's indices come back in a seeded random order.

    Example:
        >>> {k: len(v) for k, v in split_indices([0] * 50 + [1] * 50, seed=0).items()}
        {'train': 80, 'validation': 10, 'test': 10}
    """
    _check_sizes(validation_size, test_size)
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"`groups` has {len(groups)} entries but there are {len(labels)} labels.")
    rng = np.random.default_rng(seed)
    units: dict[Hashable, list[int]] = {}
    for row, group in enumerate(range(len(labels)) if groups is None else groups):
        units.setdefault(group, []).append(row)
    unit_rows = list(units.values())
    by_label: dict[Hashable, list[int]] = {}
    for unit, rows in enumerate(unit_rows):
        label = Counter(labels[row] for row in rows).most_common(1)[0][0]
        by_label.setdefault(label, []).append(unit)
    strata = [rng.permutation(units_of_label).tolist() for units_of_label in by_label.values()]

    # Held-out (validation + test) first, then divide it, so no stratum gives away more units than it has.
    sizes = [len(stratum) for stratum in strata]
    held_out_size = validation_size + test_size
    held = _largest_remainder([n * held_out_size for n in sizes], round(len(unit_rows) * held_out_size), rng)
    test_share = test_size / held_out_size if held_out_size else 0.0
    test = _largest_remainder([h * test_share for h in held], round(sum(held) * test_share), rng)

    assigned = {split: [] for split in SPLITS}
    for stratum, n_held, n_test in zip(strata, held, test, strict=True):
        assigned["test"] += stratum[:n_test]
        assigned["validation"] += stratum[n_test:n_held]
        assigned["train"] += stratum[n_held:]
    # Shuffle each split's units so that rows do not come sorted by label.
    return {
        split: [row for unit in rng.permutation(units) for row in unit_rows[unit]] for split, units in assigned.items()
    }


def _column(data: Dataset, column: str) -> list:
    """A column as a plain Python list, whatever the dataset's format."""
    return list(data.with_format(None)[column])


def _build_splits(
    texts: list[str],
    labels: list[int],
    label_names: list[str],
    *,
    groups: Sequence[Hashable] | None,
    validation_size: float,
    test_size: float,
    seed: int,
    info: DatasetInfo,
) -> DatasetDict:
    info.features = Features({"text": Value("string"), "label": ClassLabel(names=label_names)})
    splits = split_indices(labels, validation_size=validation_size, test_size=test_size, seed=seed, groups=groups)
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {"text": [texts[i] for i in rows], "label": [labels[i] for i in rows]}, info=info.copy(), split=split
            )
            for split, rows in splits.items()
            if rows
        }
    )
