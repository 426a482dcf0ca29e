"""Each kind's loss and the multi-task loss's label checks at their edges, on constructed outputs (no model): a single
labelled row or target, weights that sum below 1, label smoothing of a multi-label task, a hard negative of an
unlabelled row, a batch with no pair at all, and the exact error for each kind of bad label, in the batch row it is in.
The losses against a model's real outputs are in test_task_kinds.py and test_pair_kinds.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from multitask_st.layers_multitask_st import TaskInputs
from multitask_st.losses_multitask_st import multitask_loss


NAN = float("nan")
TASKS = {"topic": ["world", "sports", "business"], "tags": ["a", "b", "c"], "score": ["x", "y"]}
KINDS = {"tags": "multi_label", "score": "regression"}
PAIR_TASKS = {"nli": ["yes", "no"], "similar": ["score"], "para": ["cosine_similarity"]}
PAIR_KINDS = {"nli": "pair_classification", "similar": "pair_regression", "para": "embedding_contrastive"}


def single_texts(rows: int) -> TaskInputs:
    return TaskInputs(text=torch.zeros(rows, 4))


def with_pairs(has_pair: list[bool]) -> TaskInputs:
    rows = len(has_pair)
    return TaskInputs(text=torch.zeros(rows, 4), pair=torch.zeros(rows, 4), has_pair=torch.tensor(has_pair))


def losses(config, logits, labels, inputs=None) -> dict[str, torch.Tensor]:
    inputs = single_texts(labels.shape[0]) if inputs is None else inputs
    return multitask_loss(config, logits, labels, inputs)[1]


def kinds_logits(rows: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {task: torch.randn(rows, len(labels), generator=generator) for task, labels in TASKS.items()}


# ---------------------------------------------------------------------------------------------------- the losses


def test_class_weights_below_one_divide_by_the_labelled_rows_weight_sum_as_torch_does():
    # rows 0 and 1 are labelled 0 and 2: torch's weighted mean divides by 0.1 + 0.3 = 0.4, not by max(0.4, 1)
    config = tiny_config(
        tasks=TASKS, task_kinds=KINDS, task_loss_options={"topic": {"class_weights": [0.1, 0.2, 0.3]}}
    )
    logits = kinds_logits(3)
    labels = torch.full((3, 6), NAN)
    labels[:2, 0] = torch.tensor([0.0, 2.0])
    expected = F.cross_entropy(logits["topic"][:2], torch.tensor([0, 2]), weight=torch.tensor([0.1, 0.2, 0.3]))
    assert losses(config, logits, labels)["topic"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_weights_stay_float32_under_a_float64_default_dtype():
    # A program that set torch's default dtype to float64 still gets float32 weights next to the float32 logits.
    config = tiny_config(
        tasks=TASKS, task_kinds=KINDS, task_loss_options={"topic": {"class_weights": [1.0, 2.0, 3.0]}}
    )
    logits = kinds_logits(2)
    labels = torch.full((2, 6), NAN)
    labels[:, 0] = torch.tensor([0.0, 2.0])
    expected = F.cross_entropy(logits["topic"], torch.tensor([0, 2]), weight=torch.tensor([1.0, 2.0, 3.0]))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loss = losses(config, logits, labels)["topic"]
    finally:
        torch.set_default_dtype(default)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    "task, option",
    [("topic", "class_weights"), ("tags", "pos_weight")],
)
def test_balanced_weights_left_unresolved_are_named(task, option):
    config = tiny_config(tasks=TASKS, task_kinds=KINDS, task_loss_options={task: {option: "balanced"}})
    labels = torch.tensor([[0.0, 1, 0, 1, NAN, NAN]])
    with pytest.raises(ValueError) as error:
        losses(config, kinds_logits(1), labels)
    assert str(error.value) == (
        f"`task_loss_options[{task!r}][{option!r}]` is 'balanced', which `MultiTaskTrainer` turns into numbers from "
        "the training labels; train with it, or give the numbers."
    )


def test_multi_label_smoothing_pulls_each_target_towards_one_half():
    config = tiny_config(tasks=TASKS, task_kinds=KINDS, task_loss_options={"tags": {"label_smoothing": 0.2}})
    logits = kinds_logits(3)
    labels = torch.full((3, 6), NAN)
    labels[0, 1:4] = torch.tensor([1.0, 0.0, 1.0])
    labels[2, 1:4] = torch.tensor([0.0, 0.0, 1.0])
    # 1 -> 0.9, 0 -> 0.1; row 1 has no label and weighs nothing
    smoothed = torch.tensor([[0.9, 0.1, 0.9], [0.1, 0.1, 0.9]])
    expected = F.binary_cross_entropy_with_logits(logits["tags"][[0, 2]], smoothed)
    assert losses(config, logits, labels)["tags"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_single_labelled_value_is_its_own_mean():
    # One labelled row of a one-label multi-label task, one regression target present: each loss is that one term.
    config = tiny_config(
        tasks={"flag": ["on"], "level": ["x", "y"]}, task_kinds={"flag": "multi_label", "level": "regression"}
    )
    logits = {"flag": torch.tensor([[0.3], [-1.0]]), "level": torch.tensor([[2.0, 5.0], [0.0, 1.0]])}
    labels = torch.tensor([[1.0, NAN, NAN], [NAN, NAN, 3.5]])
    result = losses(config, logits, labels)
    assert result["flag"].item() == pytest.approx(-math.log(torch.sigmoid(torch.tensor(0.3)).item()), rel=1e-6)
    assert result["level"].item() == pytest.approx((1.0 - 3.5) ** 2, rel=1e-6)


def test_pair_regression_is_the_mean_squared_error_over_the_labelled_pairs():
    config = tiny_config(tasks=PAIR_TASKS, task_kinds=PAIR_KINDS)
    logits = {
        "nli": torch.zeros(3, 2),
        "similar": torch.tensor([[0.2], [0.9], [0.5]]),
        "para": torch.zeros(3, 13),
    }
    labels = torch.tensor([[NAN, 0.5, NAN], [NAN, NAN, NAN], [NAN, 0.1, NAN]])
    result = losses(config, logits, labels, with_pairs([True, True, True]))
    assert result["similar"].item() == pytest.approx(((0.2 - 0.5) ** 2 + (0.5 - 0.1) ** 2) / 2, rel=1e-6)


def contrastive_output(anchors, positives, negatives, has_negative) -> torch.Tensor:
    """An `embedding_contrastive` task's output as `_contrastive_output` lays it out: [anchor, positive, negative,
    has_negative] per row (unit vectors, given here directly)."""
    return torch.cat(
        [torch.tensor(anchors), torch.tensor(positives), torch.tensor(negatives), torch.tensor(has_negative)[:, None]],
        dim=-1,
    )


def test_contrastive_candidates_are_the_labelled_rows_positives_and_negatives_only():
    config = tiny_config(tasks=PAIR_TASKS, task_kinds=PAIR_KINDS)
    output = contrastive_output(
        anchors=[[1.0, 0, 0, 0], [0, 1.0, 0, 0]],
        positives=[[0.6, 0.8, 0, 0], [0, 0, 1.0, 0]],
        negatives=[[0.8, 0.6, 0, 0], [1.0, 0, 0, 0]],
        has_negative=[1.0, 1.0],
    )
    logits = {"nli": torch.zeros(2, 2), "similar": torch.zeros(2, 1), "para": output}
    # Row 0 alone is labelled: its anchor against its positive and its own hard negative; row 1's pair and hard
    # negative are no candidates. A single labelled row: the loss is that row's term, not half of it.
    labels = torch.tensor([[NAN, NAN, 0.0], [NAN, NAN, NAN]])
    expected = F.cross_entropy(torch.tensor([[0.6, 0.8]]) * 20, torch.tensor([0]))
    result = losses(config, logits, labels, with_pairs([True, True]))
    assert result["para"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_batch_without_any_pair_gives_exactly_zero_for_the_pair_tasks():
    # Single texts only: the contrastive output is all zeros (no anchor, positive or negative), the loss exactly 0.
    config = tiny_config(tasks=PAIR_TASKS, task_kinds=PAIR_KINDS)
    output = torch.zeros(2, 13, requires_grad=True)
    logits = {"nli": torch.zeros(2, 2), "similar": torch.zeros(2, 1), "para": output}
    result = losses(config, logits, torch.full((2, 3), NAN), single_texts(2))
    assert [result[task].item() for task in PAIR_TASKS] == [0.0, 0.0, 0.0]
    result["para"].backward()
    assert torch.equal(output.grad, torch.zeros(2, 13))


# ---------------------------------------------------------------------------------------------------- the label checks


def test_integer_labels_are_refused_when_a_task_takes_float_targets():
    config = tiny_config(tasks=TASKS, task_kinds=KINDS)
    with pytest.raises(ValueError) as error:
        losses(config, kinds_logits(1), torch.tensor([[0, 1, 0, 1, 2, 3]]))
    assert str(error.value) == (
        "`labels` must be a float32 tensor of shape (batch_size, label columns) = (1, 6) with the columns of "
        "['topic', 'tags', 'score'] (`config.label_slices()`), got torch.int64 of shape (1, 6)."
    )


def test_class_id_labels_of_the_wrong_shape_are_named():
    config = tiny_config()
    logits = {"topic": torch.zeros(2, 3), "sentiment": torch.zeros(2, 2)}
    with pytest.raises(ValueError) as error:
        losses(config, logits, torch.tensor([[0, 1, 1], [1, 0, 0]]))
    assert str(error.value) == (
        "`labels` must be an integer or float32 tensor of shape (batch_size, label columns) = (2, 2) with the columns "
        "of ['topic', 'sentiment'] (`config.label_slices()`), got torch.int64 of shape (2, 3)."
    )


@pytest.mark.parametrize(
    "column, values, message",
    [
        # row 0 valid, row 1 not (in its first column: not a column index taken for a row): the message names row 1
        (slice(1, 4), [[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]],
         "Labels [0.0, 2.0, 1.0] of task 'tags' (multi_label, batch row 1) are not valid: expected 0 or 1 per label "
         "(a soft target in [0, 1]), or NaN in every column."),
        (slice(4, 6), [[1.0, 2.0], [-math.inf, NAN]],
         "Labels [-inf, nan] of task 'score' (regression, batch row 1) are not valid: expected finite targets, or NaN "
         "where there is none."),
    ],
)  # fmt: skip
def test_a_bad_label_is_named_in_its_own_batch_row(column, values, message):
    config = tiny_config(tasks=TASKS, task_kinds=KINDS)
    labels = torch.full((2, 6), NAN)
    labels[:, column] = torch.tensor(values)
    with pytest.raises(ValueError) as error:
        losses(config, kinds_logits(2), labels)
    assert str(error.value) == message


def test_a_contrastive_label_other_than_zero_is_named():
    config = tiny_config(tasks=PAIR_TASKS, task_kinds=PAIR_KINDS)
    logits = {"nli": torch.zeros(1, 2), "similar": torch.zeros(1, 1), "para": torch.zeros(1, 13)}
    with pytest.raises(ValueError) as error:
        losses(config, logits, torch.tensor([[NAN, NAN, 1.0]]), with_pairs([True]))
    assert str(error.value) == (
        "Labels [1.0] of task 'para' (embedding_contrastive, batch row 0) are not valid: expected 0 (the row is an "
        "anchor and its positive), -100 or NaN."
    )


@pytest.mark.parametrize("target", [0.4, -100.0])  # -100 is a score like any other here: only NaN means "none"
def test_the_first_labelled_row_without_its_second_text_is_named(target):
    config = tiny_config(tasks=PAIR_TASKS, task_kinds=PAIR_KINDS)
    logits = {"nli": torch.zeros(3, 2), "similar": torch.zeros(3, 1), "para": torch.zeros(3, 13)}
    labels = torch.tensor([[NAN, 0.2, NAN], [NAN, target, NAN], [NAN, 0.9, NAN]])
    with pytest.raises(ValueError) as error:
        losses(config, logits, labels, with_pairs([True, False, False]))
    assert str(error.value) == (
        "Batch row 1 is labelled for task 'similar' (pair_regression), which takes pairs of texts, but has no second "
        "text (`pair_input_ids` / `pair_rows`)."
    )
