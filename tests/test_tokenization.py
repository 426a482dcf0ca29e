from pathlib import Path

import pytest
from conftest import make_task_dataset
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from multitask_st.training import tokenization
from multitask_st.training.tokenization import concatenate_task_datasets, tokenize_task_dataset


LABELS = ["negative", "positive"]
TEXTS = [f"{'great' if i % 2 else 'bad'} film number {i}" for i in range(40)]
TASKS = ["topic", "sentiment"]


def make_dataset(texts, labels, label_names) -> DatasetDict:
    features = Features({"text": Value("string"), "label": ClassLabel(names=label_names)})
    return DatasetDict({"train": Dataset.from_dict({"text": texts, "label": labels}, features=features)})


def test_tokenize_task_dataset_columns(tiny_tokenizer, tmp_path):
    dataset = make_dataset(["great movie", "the stock market fell " * 20], [1, 0], LABELS)
    tokenized = tokenize_task_dataset(dataset, tiny_tokenizer, max_length=8, cache_dir=tmp_path)
    train = tokenized["train"]
    assert sorted(train.column_names) == ["attention_mask", "input_ids", "label", "token_type_ids"]  # no task id
    assert train.features["label"].names == LABELS
    assert train["label"] == [1, 0]
    assert [len(ids) for ids in train["input_ids"]] == [4, 8]  # [CLS] great movie [SEP]; truncated to 8, unpadded
    assert train[0]["input_ids"] == tiny_tokenizer("great movie")["input_ids"]


def test_tokenize_task_dataset_is_cached(tiny_tokenizer, tmp_path, monkeypatch):
    calls = []
    tokenize_batch = tokenization._tokenize_batch
    monkeypatch.setattr(
        tokenization, "_tokenize_batch", lambda batch, **kw: calls.append(1) or tokenize_batch(batch, **kw)
    )
    dataset = make_dataset(TEXTS, [i % 2 for i in range(40)], LABELS)
    first = tokenize_task_dataset(dataset, tiny_tokenizer, max_length=16, cache_dir=tmp_path)
    assert calls and Path(first["train"].cache_files[0]["filename"]).parent == tmp_path
    calls.clear()
    # A rebuilt (identical) dataset and a tokenizer used in between still hit the cache.
    tiny_tokenizer(["great film"], truncation=True, max_length=3)
    again = tokenize_task_dataset(
        make_dataset(TEXTS, [i % 2 for i in range(40)], LABELS),
        tiny_tokenizer,
        max_length=16,
        cache_dir=tmp_path,
    )
    assert calls == []
    assert again["train"].to_dict() == first["train"].to_dict()
    tokenize_task_dataset(dataset, tiny_tokenizer, max_length=8, cache_dir=tmp_path)
    assert calls  # another max_length is another cache entry


def test_tokenize_task_dataset_rejects_bad_arguments(tiny_tokenizer):
    dataset = make_dataset(["great"], [1], LABELS)
    with pytest.raises(TypeError, match="task_id"):  # a task's id is given where the task datasets meet
        tokenize_task_dataset(dataset, tiny_tokenizer, task_id=0, max_length=8)
    with pytest.raises(ValueError, match="max_length"):
        tokenize_task_dataset(dataset, tiny_tokenizer, max_length=0)


def test_task_id_comes_from_the_key(tiny_tokenizer):
    sentiment = make_task_dataset(tiny_tokenizer, 3, 2, seed=1)
    topic = make_task_dataset(tiny_tokenizer, 2, 3, seed=2)
    combined, sizes = concatenate_task_datasets({"sentiment": sentiment, "topic": topic}, TASKS)

    assert sizes == [2, 3]
    assert list(combined["task_id"]) == [0, 0, 1, 1, 1]  # grouped in the model's task order, whatever the dict's order
    assert list(combined["input_ids"]) == [*topic["input_ids"], *sentiment["input_ids"]]
    # A task_id column that agrees with its key is accepted (and a lone dataset with task ids passes through).
    again, _ = concatenate_task_datasets({"topic": topic.add_column("task_id", [0, 0])}, TASKS)
    assert list(again["task_id"]) == [0, 0]
    assert concatenate_task_datasets(combined, TASKS)[1] == [2, 3]


def test_task_id_column_disagreeing_with_its_key_is_an_error(tiny_tokenizer):
    sentiment = make_task_dataset(tiny_tokenizer, 3, 2, seed=1).add_column("task_id", [0, 1, 1])
    with pytest.raises(ValueError, match=r"task 'sentiment' has `task_id` values \[0, 1\], but 'sentiment' is task 1"):
        concatenate_task_datasets({"sentiment": sentiment}, TASKS)
    with pytest.raises(
        ValueError, match=r"unknown task\(s\) \['color'\]; the model's tasks are \['topic', 'sentiment'\]"
    ):
        concatenate_task_datasets({"color": sentiment}, TASKS)
