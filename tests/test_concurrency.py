"""Thread-safe inference on every door: 8 threads calling with mixed arguments (`max_length`, `tasks`, `batch_size`,
`normalize_embeddings`) get bit-identical results to the same calls made one after another, with the model in train
mode (dropout on: what `from_backbone` returns) and its mode left as it was."""

import threading

import numpy as np
import pytest
import torch
from conftest import LONG_TEXTS, TEXTS, TINY_TASKS, tiny_backbone_config
from doors import Doors

from multitask_st import MultiTaskSTConfig, MultiTaskSTModel


pytest.importorskip("onnxruntime")
pytest.importorskip("sentence_transformers")

from multitask_st.export.onnx import export_onnx  # noqa: E402


THREADS = 8
ROUNDS = 3
ALL_TEXTS = TEXTS + LONG_TEXTS
# (method, kwargs): each thread runs all of them, starting at a different one, so different arguments overlap.
CALLS = [
    ("encode", {"max_length": 6, "batch_size": 1}),
    ("predict", {"tasks": "topic", "max_length": 16, "batch_size": 2}),
    ("encode", {"normalize_embeddings": True, "batch_size": 3}),
    ("predict", {"tasks": ["sentiment"], "batch_size": 16}),
    ("encode", {"max_length": 48, "batch_size": 4, "normalize_embeddings": False}),
    ("predict", {"max_length": 5, "batch_size": 5}),
]
DOOR_ARGUMENTS = {  # what each door takes of the mixed arguments
    "model": {"max_length", "tasks", "batch_size", "normalize_embeddings"},
    "pipeline": {"max_length", "tasks", "batch_size"},
    "onnx": {"max_length", "tasks", "batch_size", "normalize_embeddings"},
    "sentence-transformers": {"batch_size", "normalize_embeddings"},
}


def calls_for(door: str) -> list[tuple[str, dict]]:
    calls = []
    for method, kwargs in CALLS:
        if method == "predict" and door == "sentence-transformers":
            continue
        calls.append((method, {key: value for key, value in kwargs.items() if key in DOOR_ARGUMENTS[door]}))
    return calls


def run(doors: Doors, door: str, method: str, kwargs: dict, texts):
    return getattr(doors, method)(door, texts, **kwargs)


def assert_threads_match_sequential(
    doors: Doors, door: str, texts: list[str], streaming: bool = False, rounds: int = ROUNDS
):
    calls = calls_for(door)
    make = (lambda: iter(texts)) if streaming else (lambda: list(texts))
    expected = [run(doors, door, method, kwargs, make()) for method, kwargs in calls]
    results, errors = {}, []
    barrier = threading.Barrier(THREADS)

    def worker(index: int):
        try:
            barrier.wait()
            for round_ in range(rounds):
                for step in range(len(calls)):
                    position = (index + step) % len(calls)
                    method, kwargs = calls[position]
                    results[(index, round_, position)] = run(doors, door, method, kwargs, make())
        except Exception as error:  # reported below with the thread it happened in
            errors.append((index, repr(error)))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == THREADS * rounds * len(calls)
    for (index, round_, position), got in results.items():
        where = f"{door}: thread {index}, round {round_}, call {calls[position]}"
        if isinstance(got, np.ndarray):
            assert np.array_equal(got, expected[position]), where  # bit-identical, not close
        else:
            assert got == expected[position], where


def model_with_dropout(seed: int = 0) -> MultiTaskSTModel:
    torch.manual_seed(seed)
    backbone = tiny_backbone_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    return MultiTaskSTModel(MultiTaskSTConfig(backbone_config=backbone, tasks=TINY_TASKS, head_dropout=0.3)).train()


@pytest.fixture(scope="module")
def doors(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("concurrency")
    model = model_with_dropout()
    model.save_pretrained(folder / "model")
    tiny_tokenizer.save_pretrained(folder / "model")
    export_onnx(folder / "model", folder / "onnx", check_texts=8)
    return Doors(folder / "model", model, tiny_tokenizer, folder / "onnx")


def test_train_mode_model_gives_eval_results_and_keeps_its_mode(doors, tiny_tokenizer):
    model = doors.model
    assert model.training
    eval_twin = MultiTaskSTModel(model.config).eval()
    eval_twin.load_state_dict(model.state_dict())
    for method, kwargs in calls_for("model"):
        got = getattr(model, method)(ALL_TEXTS, tiny_tokenizer, **kwargs)
        want = getattr(eval_twin, method)(ALL_TEXTS, tiny_tokenizer, **kwargs)
        assert np.array_equal(got, want) if method == "encode" else got == want, (method, kwargs)
    assert model.training and all(module.training for module in model.modules())


@pytest.mark.parametrize("door", ["model", "pipeline", "onnx", "sentence-transformers"])
def test_eight_threads_with_mixed_arguments_match_sequential_calls(doors, door):
    assert_threads_match_sequential(doors, door, ALL_TEXTS)
    assert doors.model.training  # no door flipped the shared model's mode


@pytest.mark.parametrize("door", ["model", "pipeline", "onnx"])
def test_streaming_inputs_from_eight_threads(doors, door):
    assert_threads_match_sequential(doors, door, ALL_TEXTS, streaming=True)


@pytest.mark.slow
def test_eight_threads_on_real_minilm(minilm_exported):
    from transformers import AutoTokenizer

    from multitask_st.data.corpora import rotten_tomatoes

    model = MultiTaskSTModel.from_pretrained(minilm_exported.model_dir).train()  # in train mode, dropout 0.1
    tokenizer = AutoTokenizer.from_pretrained(minilm_exported.model_dir)
    doors = Doors(minilm_exported.model_dir, model, tokenizer, minilm_exported.onnx_dir)
    # The tiny model's tests above run every call 3 rounds on every door; here the real backbone and tokenizer (longer
    # forward passes, so the 8 threads' calls overlap the more) need one round on 16 reviews: 8x less work than 3
    # rounds on 48, the same 8 threads x 6 mixed calls in flight at once.
    texts = list(rotten_tomatoes()["test"]["text"][:16])
    for door in ("model", "pipeline", "onnx", "sentence-transformers"):
        assert_threads_match_sequential(doors, door, texts, rounds=1)
    assert model.training
