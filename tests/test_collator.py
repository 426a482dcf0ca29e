import pytest
import torch

from multitask_st.training.collator import MultiTaskDataCollator


def test_labels_matrix_has_one_label_per_example_and_minus_100_elsewhere(tiny_tokenizer):
    collator = MultiTaskDataCollator(tiny_tokenizer, num_tasks=3)
    features = [
        {"input_ids": [2, 7, 3], "task_id": 1, "label": 0},
        {"input_ids": [2, 8, 9, 10, 3], "task_id": 0, "label": 4},
        {"input_ids": [2, 3], "task_id": 2, "label": 1},
        {"input_ids": [2, 3], "labels": [1, -100, 0]},  # an example labelled for two tasks
        {"input_ids": [2, 11, 3]},  # unlabelled
    ]
    batch = collator(features)
    assert batch["labels"].tolist() == [
        [-100, 0, -100],
        [4, -100, -100],
        [-100, -100, 1],
        [1, -100, 0],
        [-100, -100, -100],
    ]
    assert batch["labels"].dtype == torch.long


def test_dynamic_padding_to_longest_and_to_multiple(tiny_tokenizer):
    features = [{"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1], "task_id": 0, "label": 1}, {"input_ids": [2, 3]}]
    batch = MultiTaskDataCollator(tiny_tokenizer, num_tasks=1)(features)
    assert batch["input_ids"].tolist() == [[2, 7, 3], [2, 3, tiny_tokenizer.pad_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    padded = MultiTaskDataCollator(tiny_tokenizer, num_tasks=1, pad_to_multiple_of=8)(features)
    assert padded["input_ids"].shape == (2, 8)
    assert padded["attention_mask"][:, 3:].sum() == 0


def test_token_type_ids_padded_when_present(tiny_tokenizer):
    features = [dict(tiny_tokenizer("the movie")), dict(tiny_tokenizer("the movie was great"))]
    batch = MultiTaskDataCollator(tiny_tokenizer, num_tasks=2)(features)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape


def test_single_task_batch(tiny_tokenizer):
    features = [{"input_ids": [2, 3], "task_id": 1, "label": label} for label in (0, 1, 1)]
    batch = MultiTaskDataCollator(tiny_tokenizer, num_tasks=2)(features)
    assert batch["labels"][:, 0].eq(-100).all()
    assert batch["labels"][:, 1].tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    "features, message",
    [
        ([], "empty"),
        ([{"input_ids": [2, 3], "task_id": 5, "label": 0}], "task_id"),
        ([{"input_ids": [2, 3], "labels": [0]}], "one id per task"),
    ],
)
def test_bad_features_raise(tiny_tokenizer, features, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskDataCollator(tiny_tokenizer, num_tasks=2)(features)
