"""`encode`/`predict` over any iterable, chunk by chunk: same results as one list, bounded work per chunk, streaming
forms (`encode_chunks`, `predict_chunks`, `out=`), and the checks on the tokenizer."""

import logging
import random

import datasets
import numpy as np
import pytest
from conftest import LONG_TEXTS, TEXTS, WORDS, make_model, word_tokenizer
from transformers import BertTokenizerFast

from multitask_st.inference_multitask_st import tokenizer_fingerprint


def many_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(count)]


class CountingIterator:
    """An iterator without a length that records how many items were drawn from it."""

    def __init__(self, items):
        self.items, self.drawn = iter(items), 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.items)
        self.drawn += 1
        return item


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_encode_and_predict_any_iterable_match_the_list(tiny_tokenizer, tmp_path, chunk_size):
    model = make_model()
    texts = many_texts(23) + LONG_TEXTS
    expected = model.encode(texts, tiny_tokenizer, batch_size=4, chunk_size=10_000)
    expected_predictions = model.predict(texts, tiny_tokenizer, batch_size=4, chunk_size=10_000)
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n")
    column = datasets.Dataset.from_dict({"text": texts})["text"]
    with path.open() as lines:
        inputs = {
            "generator": (text for text in texts),
            "tuple": tuple(texts),
            "datasets column": column,
            "file lines": (line.rstrip("\n") for line in lines),
        }
        for name, sentences in inputs.items():
            got = model.encode(sentences, tiny_tokenizer, batch_size=4, chunk_size=chunk_size)
            assert got.shape == expected.shape and got.dtype == np.float32, name
            np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
    predictions = model.predict(iter(texts), tiny_tokenizer, batch_size=4, chunk_size=chunk_size)
    assert [p.keys() for p in predictions] == [p.keys() for p in expected_predictions]
    for got, want in zip(predictions, expected_predictions, strict=True):
        for task in want:
            assert got[task]["label"] == want[task]["label"]
            assert got[task]["score"] == pytest.approx(want[task]["score"], abs=1e-5)


def test_a_single_string_still_gives_one_vector_and_one_dict(tiny_tokenizer):
    model = make_model()
    vector = model.encode(TEXTS[0], tiny_tokenizer, chunk_size=1)
    assert vector.shape == (model.config.embedding_dim,)
    np.testing.assert_allclose(vector, model.encode(TEXTS, tiny_tokenizer)[0], atol=1e-5)
    assert set(model.predict(TEXTS[0], tiny_tokenizer, chunk_size=1)) == set(model.config.task_names)


def test_the_input_is_read_one_chunk_at_a_time(tiny_tokenizer, tmp_path):
    """Work and memory are per chunk: the streaming form draws only one chunk ahead of what it yielded, and the
    tokenizer never sees more than `chunk_size` texts at once."""
    model = make_model()
    texts = many_texts(10)
    source = CountingIterator(texts)
    word_tokenizer(tmp_path, WORDS)
    calls = []
    tokenizer_call = type(tiny_tokenizer).__call__

    class SpyTokenizer(BertTokenizerFast):
        def __call__(self, text, *args, **kwargs):
            calls.append(len(text))
            return tokenizer_call(self, text, *args, **kwargs)

    spy = SpyTokenizer(str(tmp_path / "vocab.txt"), model_max_length=64)
    chunks = model.encode_chunks(source, spy, batch_size=2, chunk_size=4)
    assert source.drawn == 0  # lazy
    first = next(chunks)
    assert first.shape == (4, model.config.embedding_dim) and source.drawn == 4
    rest = list(chunks)
    assert [len(chunk) for chunk in rest] == [4, 2] and calls == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate([first, *rest]), model.encode(texts, tiny_tokenizer), atol=1e-5)

    predicted = list(model.predict_chunks(iter(texts), tiny_tokenizer, chunk_size=4))
    assert [len(chunk) for chunk in predicted] == [4, 4, 2]
    assert [p for chunk in predicted for p in chunk] == model.predict(texts, tiny_tokenizer, chunk_size=4)


def test_encode_fills_a_callers_memmap(tiny_tokenizer, tmp_path):
    model = make_model()
    texts = many_texts(11)
    out = np.lib.format.open_memmap(tmp_path / "e.npy", mode="w+", dtype=np.float32, shape=(11, 32))
    returned = model.encode(iter(texts), tiny_tokenizer, chunk_size=4, out=out)
    assert returned is out
    out.flush()
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), model.encode(texts, tiny_tokenizer), atol=1e-5)
    with pytest.raises(ValueError, match="`out` has 10 rows but `sentences` holds more texts"):
        model.encode(iter(texts), tiny_tokenizer, chunk_size=4, out=np.zeros((10, 32), np.float32))
    with pytest.raises(ValueError, match="`out` has 12 rows but `sentences` held 11 texts"):
        model.encode(iter(texts), tiny_tokenizer, chunk_size=4, out=np.zeros((12, 32), np.float32))
    with pytest.raises(ValueError, match="`out`"):
        model.encode(texts, tiny_tokenizer, out=out, convert_to_tensor=True)


def test_bad_items_are_named_by_their_index_in_the_whole_input(tiny_tokenizer):
    model = make_model()
    texts = many_texts(9)
    for bad, error in (("", ValueError), ("\u200b\ufeff", ValueError), (None, TypeError), (3, TypeError)):
        source = iter([*texts[:7], bad, texts[8]])
        with pytest.raises(error, match=r"`sentences\[7\]`"):
            model.encode(source, tiny_tokenizer, chunk_size=3)
        with pytest.raises(error, match=r"`sentences\[7\]`"):
            model.predict(iter([*texts[:7], bad]), tiny_tokenizer, chunk_size=2)
    with pytest.raises(ValueError, match="`sentences` is empty"):
        model.encode(iter([]), tiny_tokenizer)
    with pytest.raises(ValueError, match="`sentences` is empty"):
        model.predict(datasets.Dataset.from_dict({"text": []})["text"], tiny_tokenizer)


def test_control_character_texts_count_as_empty_but_text_around_them_does_not(tiny_tokenizer):
    model = make_model()
    for text in ("\x00\x01", "\u200b", "\xad", "\ufeff", " \u200b\t\x7f "):
        with pytest.raises(ValueError, match="only control/format characters"):
            model.encode(text, tiny_tokenizer)
    np.testing.assert_allclose(
        model.encode("\ufeffthe movie\u200b", tiny_tokenizer), model.encode("the movie", tiny_tokenizer), atol=1e-5
    )
    assert tiny_tokenizer("the movie")["input_ids"] == [2, 5, 7, 3]  # real words, not [UNK]


def test_a_tokenizer_too_big_for_the_embedding_matrix_is_refused(tiny_tokenizer, tmp_path):
    model = make_model()  # 99 embedding rows
    big = word_tokenizer(tmp_path, [f"word{i}" for i in range(120)])
    for method in (model.encode, model.predict):
        with pytest.raises(ValueError, match="The tokenizer has 125 tokens but this model's embedding matrix has 99"):
            method(["word1"], big)


def test_a_different_tokenizer_of_the_same_size_warns_once(tiny_tokenizer, tmp_path, caplog):
    model = make_model()
    model.config.tokenizer_fingerprint = tokenizer_fingerprint(tiny_tokenizer)
    other = word_tokenizer(tmp_path, WORDS[::-1])  # same tokens, other ids
    assert len(other) == len(tiny_tokenizer)
    with caplog.at_level(logging.WARNING):
        model.encode(TEXTS, tiny_tokenizer)
        assert "not the one this model was trained with" not in caplog.text
        model.encode(TEXTS, other)
        model.predict(TEXTS, other)
    warnings = [r for r in caplog.records if "not the one this model was trained with" in r.getMessage()]
    assert len(warnings) == 1
    assert tokenizer_fingerprint(other) in warnings[0].getMessage()
    assert model.config.tokenizer_fingerprint in warnings[0].getMessage()


def test_tokenizer_fingerprint_depends_on_the_vocabulary_only(tiny_tokenizer, tmp_path):
    again = word_tokenizer(tmp_path, WORDS, model_max_length=16)
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tiny_tokenizer)
    again.add_tokens(["zebra"])
    assert tokenizer_fingerprint(again) != tokenizer_fingerprint(tiny_tokenizer)
