"""Every kind of task streams (`multitask_st/data/streaming.py`): a streamed row is the row the map-style loader makes
of it, the same rows give the same batches and the same loss, a bad row is named with its value, and the label
statistics (`"balanced"` weights, regression target scaling) come from a declared number of first rows."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORDS, tiny_config
from test_streaming import streaming_args

from multitask_st import MultiTaskSTModel
from multitask_st.data.streaming import load_task_stream
from multitask_st.data.task_datasets import load_task_dataset
from multitask_st.training.label_statistics import fit_to_training_labels
from multitask_st.training.streaming import mix_task_streams, tokenize_task_stream
from multitask_st.training.tokenization import concatenate_task_datasets, tokenize_task_dataset
from multitask_st.training.trainer import MultiTaskTrainer


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))


# Per kind: the loader's arguments and a row of the source. Numbers are multiples of 1/4 (exact in float32, so the
# streamed rows compare exactly with the map-style loader's float32 columns).
KIND_SOURCES = {
    "multi_label": (dict(label_names=["a", "b", "c"], label_delimiter=";"),
                    lambda rng: {"text": text(rng), "label": rng.choice(["a", "a; b", "", "c;b", ["c"], [0, 2]])}),
    "regression": (dict(label_column=["x", "y"], label_names=["size", "price"]),
                   lambda rng: {"text": text(rng), "x": rng.randint(0, 40) / 4, "y": str(rng.randint(-8, 8) / 4)}),
    "pair_classification": (dict(text_pair_column="second", label_names=["no", "yes"]),
                            lambda rng: {"text": text(rng), "second": text(rng), "label": rng.choice(["no", "yes"])}),
    "pair_regression": (dict(text_pair_column="second", label_column="score"),
                        lambda rng: {"text": text(rng), "second": text(rng), "score": rng.randint(0, 20) / 4}),
    "embedding": (dict(text_pair_column="second"),
                  lambda rng: {"text": text(rng), "second": text(rng), "label": rng.randint(0, 4) / 4}),
    "embedding_contrastive": (dict(text_pair_column="second", negative_column="hard"),
                              lambda rng: {"text": text(rng), "second": text(rng),
                                           "hard": rng.choice([None, text(rng)])}),
}  # fmt: skip


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def kind_file(folder: Path, kind: str, rows: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    return write_jsonl(folder / f"{kind}.jsonl", [KIND_SOURCES[kind][1](rng) for _ in range(rows)])


def plain(rows) -> list[dict]:
    """Rows as Python values, floats rounded to float32 (the map-style columns' precision)."""

    def value(v):
        if isinstance(v, float):
            return float(np.float32(v))
        if isinstance(v, dict):
            return {key: value(item) for key, item in v.items()}
        return list(map(value, v)) if isinstance(v, list) else v

    return [{key: value(v) for key, v in row.items()} for row in rows]


@pytest.mark.parametrize("kind", list(KIND_SOURCES))
def test_each_kind_streams_the_map_style_rows_batches_and_loss(tmp_path, tiny_tokenizer, kind):
    """The same file, streamed or loaded whole: the same rows (held-out rows first, as the stream carves them), then,
    tokenised and mixed, the same collated batch and exactly the same loss from the same model."""
    options = KIND_SOURCES[kind][0]
    path = kind_file(tmp_path, kind, 24)
    whole = load_task_dataset(path, kind=kind, validation_size=0, test_size=0, **options)["train"]
    train_stream, held, names = load_task_stream(path, kind=kind, held_out=3, **options)
    assert held["validation"].features == whole.features  # the loader's features: label names, float32 targets
    assert plain(held["validation"]) == plain(whole.select(range(3)))
    assert plain(held["test"]) == plain(whole.select(range(3, 6)))
    assert plain(train_stream) == plain(whole.select(range(6, 24)))

    config = tiny_config(tasks={"task": names}, task_kinds={"task": kind})
    model_inputs = tokenize_task_dataset({"train": whole}, tiny_tokenizer, max_length=16, cache_dir=tmp_path)
    map_style, _ = concatenate_task_datasets({"task": model_inputs["train"].select(range(6, 14))}, ["task"], config)
    streamed = mix_task_streams({"task": tokenize_task_stream(train_stream, tiny_tokenizer, max_length=16)},
                                ["task"], None, seed=0, batch_size=8, shuffle_buffer_size=0, config=config)  # fmt: skip
    torch.manual_seed(0)
    model = MultiTaskSTModel(config)
    trainer = MultiTaskTrainer(model=model, args=streaming_args(tmp_path), processing_class=tiny_tokenizer)
    batches = [trainer.data_collator(list(rows)) for rows in (map_style, streamed.take(8))]
    assert batches[0].keys() == batches[1].keys()
    for key in batches[0]:
        assert torch.equal(batches[0][key], batches[1][key]), key
    losses = [model.eval()(**batch).loss for batch in batches]  # eval: no dropout draws between the two
    assert torch.isfinite(losses[0]) and torch.equal(losses[0], losses[1])


@pytest.mark.parametrize(
    ("kind", "row", "message"),
    [
        ("multi_label", {"text": "the film", "label": "a;d"},
         "column 'label', row 4: label 'd' is not one of the task's labels ['a', 'b', 'c']."),
        ("multi_label", {"text": "the film", "label": 5},
         "column 'label', row 4: 5 is not a list of labels or a ';'-separated string of them."),
        ("regression", {"text": "the film", "x": 1.0, "y": "cheap"},
         "column 'y', row 4: 'cheap' is not a number; a regression target must be a finite number."),
        ("pair_classification", {"text": "the film", "second": "a movie", "label": "maybe"},
         "column 'label', row 4: label 'maybe' is not one of the task's labels ['no', 'yes'] (or their ids)."),
        ("pair_regression", {"text": "the film", "second": "a movie", "score": None},
         "column 'score', row 4: score None is not a finite number; a pair_regression task needs a real-valued score "
         "on every row."),
        ("embedding", {"text": "the film", "second": " ", "label": 0.5},
         "column 'second', row 4: empty text ' '; expected a non-blank string (not only whitespace or control "
         "characters)."),
        ("embedding_contrastive", {"text": "the film", "second": "a movie", "hard": ""},
         "column 'hard', row 4: empty text ''; expected a non-blank string (not only whitespace or control "
         "characters)."),
    ],
)  # fmt: skip
def test_a_bad_streamed_row_of_each_kind_is_named_with_its_value(tmp_path, kind, row, message):
    rng = random.Random(0)
    path = write_jsonl(tmp_path / "task.jsonl", [KIND_SOURCES[kind][1](rng) for _ in range(4)] + [row])
    train_stream, _, _ = load_task_stream(path, kind=kind, held_out=1, **KIND_SOURCES[kind][0])
    with pytest.raises(ValueError) as error:
        list(train_stream)  # found when training reads the row
    assert str(error.value) == f"Dataset {str(path)!r}, split 'train', {message}"


def test_streamed_kinds_need_their_columns_and_names(tmp_path):
    path = kind_file(tmp_path, "multi_label", 6)
    with pytest.raises(ValueError) as error:
        load_task_stream(path, kind="multi_label", held_out=1)
    assert str(error.value).startswith(f"Dataset {str(path)!r} is streamed, so its label names cannot be collected")
    with pytest.raises(ValueError) as error:
        load_task_stream(path, kind="pair_classification", label_names=["a", "b"], held_out=1)
    assert str(error.value) == (
        f"Dataset {str(path)!r}: a pair_classification task takes pairs of texts: pass `text_pair_column=` (hard "
        "negatives, `negative_column`, are for embedding_contrastive tasks); got text_pair_column=None, "
        "negative_column=None."
    )
    path = kind_file(tmp_path, "regression", 6)
    with pytest.raises(ValueError) as error:
        load_task_stream(path, kind="regression", label_column=["x", "y"], label_names=["size"], held_out=1)
    assert str(error.value) == (
        f"Dataset {str(path)!r}: a regression task names one distinct output per label column ['x', 'y'], got "
        "`label_names` ['size']."
    )


# ---------------------------------------------------------------- label statistics from the first rows


def statistics_model(kinds_options: dict) -> MultiTaskSTModel:
    torch.manual_seed(0)
    return MultiTaskSTModel(tiny_config(
        tasks={"topic": ["a", "b", "c"], "tags": ["a", "b", "c"], "price": ["size", "price"]},
        task_kinds={"tags": "multi_label", "price": "regression"},
        task_loss_options=kinds_options,
    ))  # fmt: skip


def test_balanced_weights_and_target_scaling_come_from_the_first_declared_rows(tmp_path, tiny_tokenizer):
    """`stream_statistics_rows=K`: exactly the numbers a map-style run computes from the stream's first K training
    rows (K past the end: from all of them); unset, the run is refused before anything is read."""
    rng = random.Random(0)
    topic = write_jsonl(tmp_path / "topic.jsonl",
                        [{"text": text(rng), "label": "abbccc"[i % 6]} for i in range(40)])  # fmt: skip
    paths = {
        "topic": topic,
        "tags": kind_file(tmp_path, "multi_label", 40),
        "price": kind_file(tmp_path, "regression", 40),
    }
    loaders = {"topic": dict(label_names=["a", "b", "c"]), **{task: KIND_SOURCES[kind][0] for task, kind in
               (("tags", "multi_label"), ("price", "regression"))}}  # fmt: skip
    kinds = {"topic": "classification", "tags": "multi_label", "price": "regression"}
    options = {"topic": {"class_weights": "balanced"}, "tags": {"pos_weight": "balanced"}}

    def streamed_config(rows):
        streams = {}
        for task, path in paths.items():
            stream, _, _ = load_task_stream(path, kind=kinds[task], held_out=2, **loaders[task])
            streams[task] = tokenize_task_stream(stream, tiny_tokenizer, max_length=16)
        args = streaming_args(tmp_path, stream_statistics_rows=rows)
        trainer = MultiTaskTrainer(model=statistics_model(options), args=args, train_dataset=streams,
                                   processing_class=tiny_tokenizer)  # fmt: skip
        return trainer.model.config

    def map_style_config(rows):
        parts = {}
        for task, path in paths.items():
            whole = load_task_dataset(path, kind=kinds[task], validation_size=0, test_size=0, **loaders[task])
            parts[task] = whole["train"].select(range(4, min(4 + rows, 40)))
        model = statistics_model(options)
        fit_to_training_labels(model, concatenate_task_datasets(parts, model.config.task_names, model.config)[0])
        return model.config

    for rows in (10, 1000):
        streamed, map_style = streamed_config(rows), map_style_config(rows)
        assert streamed.task_loss_options == map_style.task_loss_options
        assert streamed.task_target_scaling == map_style.task_target_scaling
    assert streamed.task_loss_options["topic"]["class_weights"] == pytest.approx([2.0, 1.0, 2 / 3], rel=1e-3)
    assert streamed_config(10).task_target_scaling != map_style.task_target_scaling  # an estimate from 10 rows

    with pytest.raises(ValueError) as error:
        streamed_config(None)
    assert str(error.value) == (
        "Task(s) ['topic', 'tags', 'price'] need their training labels counted before step 1 ('balanced' class or "
        "positive weights, or a regression task's target scaling), and a stream is not read whole. Declare how many "
        "first rows of each stream to count (`stream_statistics_rows`, e.g. --stream_statistics_rows 100000), or give "
        "the numbers: weights as numbers, the scaling with `model.set_target_scaling` (or --normalize_targets "
        "task=false)."
    )
