from collections import Counter

import pytest

from multitask_st.training.sampling import MultiTaskSampler, task_sampling_weights


def test_sampling_weights_for_each_strategy():
    assert task_sampling_weights([300, 100], "proportional") == pytest.approx([0.75, 0.25])
    assert task_sampling_weights([300, 100], "round_robin") == pytest.approx([0.5, 0.5])
    # size ** (1/T): 900 ** 0.5 = 30, 100 ** 0.5 = 10
    assert task_sampling_weights([900, 100], "temperature", 2.0) == pytest.approx([0.75, 0.25])
    assert task_sampling_weights([900, 100], "temperature", 1.0) == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize(
    "args, message",
    [((([10], "nope")), "Unknown sampling strategy"), (([0, 0], "proportional"), "at least one"),
     (([5, -1], "proportional"), ">= 0"),
     (([10], "temperature", 0.0), "> 0")],
)  # fmt: skip
def test_sampling_weights_errors(args, message):
    with pytest.raises(ValueError, match=message):
        task_sampling_weights(*args)


def _task_counts(indices, sizes):
    return Counter(0 if index < sizes[0] else 1 for index in indices)


def test_proportional_mixed_visits_every_example_once():
    sampler = MultiTaskSampler([30, 10], batch_size=4, strategy="proportional")
    indices = list(sampler)
    assert sorted(indices) == list(range(40))
    assert len(sampler) == 40


@pytest.mark.parametrize("strategy, expected", [("round_robin", 0.5), ("temperature", 0.75), ("proportional", 0.9)])
def test_drawn_proportions_follow_the_strategy(strategy, expected):
    sizes = [900, 100]
    sampler = MultiTaskSampler(sizes, batch_size=1, strategy=strategy, temperature=2.0, num_samples=4000)
    counts = _task_counts(list(sampler), sizes)
    assert counts[0] / sum(counts.values()) == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize("strategy", ["proportional", "round_robin", "temperature"])
def test_single_task_batches_never_mix_tasks(strategy):
    sizes, batch_size = [37, 13], 8
    sampler = MultiTaskSampler(sizes, batch_size=batch_size, strategy=strategy, mixed_batches=False)
    indices = list(sampler)
    assert len(indices) == len(sampler) and len(indices) % batch_size == 0
    for start in range(0, len(indices), batch_size):
        assert len(_task_counts(indices[start : start + batch_size], sizes)) == 1
    if strategy == "proportional":  # every example still seen in the epoch (partial blocks are topped up)
        assert set(indices) == set(range(50))


def test_deterministic_for_seed_and_epoch():
    def draw(seed, epoch):
        sampler = MultiTaskSampler([20, 20], batch_size=4, strategy="temperature", seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0, 0) == draw(0, 0)
    assert draw(0, 0) != draw(1, 0)
    assert draw(0, 0) != draw(0, 1)


@pytest.mark.parametrize("mixed", [True, False])
def test_length_grouping_makes_batches_of_similar_length(mixed):
    sizes, batch_size = [200, 200], 8
    lengths = [(i * 37) % 101 + 1 for i in range(400)]
    grouped = list(MultiTaskSampler(sizes, batch_size, mixed_batches=mixed, lengths=lengths))
    plain = list(MultiTaskSampler(sizes, batch_size, mixed_batches=mixed))

    def padding(order):
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert sorted(grouped) == sorted(plain)  # same examples, other order
    assert padding(grouped) < padding(plain) / 3
    if not mixed:
        for start in range(0, len(grouped), batch_size):
            assert len(_task_counts(grouped[start : start + batch_size], sizes)) == 1


@pytest.mark.parametrize("strategy", ["proportional", "round_robin", "temperature"])
@pytest.mark.parametrize("mixed", [True, False])
def test_a_task_without_training_data_is_never_drawn(strategy, mixed):
    sampler = MultiTaskSampler([0, 12], batch_size=4, strategy=strategy, mixed_batches=mixed)
    indices = list(sampler)
    assert indices and set(indices) <= set(range(12))


def test_proportional_single_task_batches_cover_every_example_of_every_task():
    # sum(ceil(size / 32)) = 2 + 1 + 1 blocks, more than ceil(60 / 32) = 2: no block may be cut off
    sizes = [40, 10, 10]
    indices = list(MultiTaskSampler(sizes, batch_size=32, strategy="proportional", mixed_batches=False))
    assert set(indices) == set(range(60))
    assert len(indices) == 4 * 32


def test_an_empty_task_has_weight_zero_in_every_strategy():
    for strategy in ("proportional", "round_robin", "temperature"):
        assert task_sampling_weights([0, 100, 1], strategy, 2.0)[0] == 0.0, strategy
    assert task_sampling_weights([0, 100, 1], "round_robin") == pytest.approx([0.0, 0.5, 0.5])
    assert task_sampling_weights([0, 100, 1], "temperature", 2.0) == pytest.approx([0.0, 10 / 11, 1 / 11])


@pytest.mark.parametrize("strategy", ["proportional", "round_robin", "temperature"])
@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("lengths", [None, [(i * 37) % 101 + 1 for i in range(60)]])
def test_every_strategy_is_deterministic_for_seed_and_epoch(strategy, mixed, lengths):
    def draw(seed, epoch):
        sampler = MultiTaskSampler([40, 20], 4, strategy=strategy, mixed_batches=mixed, seed=seed, lengths=lengths)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(3, 1) == draw(3, 1)
    assert draw(3, 1) != draw(4, 1) and draw(3, 1) != draw(3, 2) and draw(3, 1) != draw(3, 0)


@pytest.mark.parametrize("mixed", [True, False])
def test_length_grouping_covers_every_window(mixed):
    # 600 examples in batches of 4: 150 batches, three windows of 50
    sizes, batch_size = [300, 300], 4
    lengths = [(i * 53) % 97 + 1 for i in range(600)]
    grouped = list(MultiTaskSampler(sizes, batch_size, mixed_batches=mixed, lengths=lengths))
    assert sorted(grouped) == list(range(600))  # proportional: every example once, whatever the window
    for start in range(0, 600, 200):  # within each window the batches are sorted runs of length
        window = grouped[start : start + 200]
        batches = [window[i : i + batch_size] for i in range(0, 200, batch_size)]
        spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
        assert spread < 10  # random batches of 4 from 1..97 spread ~50


def test_proportional_weights_ignore_the_temperature():
    # The temperature belongs to the `temperature` strategy: proportional stays size / total whatever it is.
    assert task_sampling_weights([900, 100], "proportional", temperature=2.0) == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (([10], "nope"), {}, "Unknown sampling strategy 'nope'; choose one of ['proportional', 'round_robin', "
                             "'temperature']."),
        (([5, -1], "proportional"), {}, "Task sizes must be >= 0 with at least one training example, got [5, -1]."),
        (([0, 0], "round_robin"), {}, "Task sizes must be >= 0 with at least one training example, got [0, 0]."),
        (([10], "temperature", 0.0), {}, "`sampling_temperature` must be > 0, got 0.0."),
    ],
)  # fmt: skip
def test_sampling_weight_errors_say_what_was_expected(args, kwargs, message):
    with pytest.raises(ValueError) as error:
        task_sampling_weights(*args, **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "`batch_size` must be >= 1, got 0."),
        ({"batch_size": 2, "lengths": [3] * 9}, "`lengths` has 9 entries for 10 examples."),
    ],
)
def test_sampler_errors_say_what_was_expected(kwargs, message):
    with pytest.raises(ValueError) as error:
        MultiTaskSampler([6, 4], **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("strategy", ["round_robin", "temperature"])
@pytest.mark.parametrize("mixed", [True, False])
def test_drawing_strategies_yield_num_samples_indices(strategy, mixed):
    # 10 examples, an epoch of 14 draws: single-task blocks of 4 round it up to 16
    sampler = MultiTaskSampler([6, 4], batch_size=4, strategy=strategy, mixed_batches=mixed, num_samples=14)
    expected = 14 if mixed else 16
    assert len(sampler) == expected and len(list(sampler)) == expected


def test_round_robin_takes_the_tasks_in_turn():
    # Single-task batches of 2 from tasks of 6, 0 and 4 examples: task 0, task 2, task 0, ... (the empty task skipped)
    sizes = [6, 0, 4]
    sampler = MultiTaskSampler(sizes, batch_size=2, strategy="round_robin", mixed_batches=False, seed=3)
    indices = list(sampler)
    tasks = [0 if indices[start] < 6 else 2 for start in range(0, len(indices), 2)]
    assert tasks == [0, 2, 0, 2, 0]
    mixed = list(MultiTaskSampler(sizes, batch_size=2, strategy="round_robin", seed=3))
    assert [0 if index < 6 else 2 for index in mixed] == [0, 2] * 5


def test_the_defaults_are_temperature_one_seed_zero_and_epoch_zero():
    # Temperature 1 is proportional; an unseeded sampler draws seed 0's stream, and a fresh one epoch 0's.
    assert task_sampling_weights([900, 100], "temperature") == pytest.approx([0.9, 0.1])
    assert MultiTaskSampler([900, 100], batch_size=4, strategy="temperature").weights == pytest.approx([0.9, 0.1])
    fresh = MultiTaskSampler([6, 4], batch_size=2, strategy="temperature")
    epoch_zero = MultiTaskSampler([6, 4], batch_size=2, strategy="temperature", seed=0)
    epoch_zero.set_epoch(0)
    assert list(fresh) == list(epoch_zero)


def test_single_task_blocks_of_a_drawing_strategy_round_the_epoch_up_to_whole_batches():
    # 10 examples in single-task batches of 4: three batches (12 indices), not each task's own blocks (2 + 2)
    sampler = MultiTaskSampler([5, 5], batch_size=4, strategy="round_robin", mixed_batches=False)
    assert len(sampler) == 12 and len(list(sampler)) == 12
