"""The SentenceTransformer door: a saved model folder loads in `SentenceTransformer(..., trust_remote_code=True)`."""

import json
import textwrap

import numpy as np
import pytest
import torch
from conftest import (
    LONG_TEXTS,
    POOLING_MODES,
    PROJECTIONS,
    TEXTS,
    make_model,
    require_module,
    rotten_tomatoes_texts,
    run_python,
)
from transformers import AutoModel, AutoTokenizer


sentence_transformers = require_module("sentence_transformers")
SentenceTransformer = sentence_transformers.SentenceTransformer
ALL_TEXTS = TEXTS + LONG_TEXTS


def save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def min_cosine(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("pooling_mode", POOLING_MODES)
def test_sentence_transformer_loads_the_folder_with_identical_vectors(
    tmp_path, tiny_tokenizer, pooling_mode, projection
):
    model = make_model(pooling_mode=pooling_mode, projection=projection)
    folder = save(model, tiny_tokenizer, tmp_path / "model")
    st = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
    ours = model.encode(ALL_TEXTS, tiny_tokenizer, batch_size=3)
    theirs = st.encode(ALL_TEXTS, batch_size=3)
    assert theirs.shape == ours.shape
    assert min_cosine(theirs, ours) >= 0.99999
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_sentence_transformer_behaves_as_users_expect(tmp_path, tiny_tokenizer):
    model = make_model(pooling_mode="attention", projection="mlp", embedding_dim=24, normalize_embeddings=True)
    folder = save(model, tiny_tokenizer, tmp_path / "model")
    for name in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
        assert (tmp_path / "model" / name).is_file(), name
    assert json.loads((tmp_path / "model" / "modules.json").read_text()) == [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers_multitask_st.MultiTaskSTSentenceEncoder"}
    ]
    st = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
    assert st.get_embedding_dimension() == 24
    assert st.max_seq_length == model.default_max_length(tiny_tokenizer) == 64
    assert st.similarity_fn_name == "cosine"

    # Normalisation as configured (the config says normalise), and `normalize_embeddings=True` keeps unit vectors.
    vectors = st.encode(ALL_TEXTS, convert_to_tensor=True, batch_size=2)
    assert isinstance(vectors, torch.Tensor)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(len(ALL_TEXTS)))
    torch.testing.assert_close(
        vectors, model.encode(ALL_TEXTS, tiny_tokenizer, convert_to_tensor=True), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        st.encode(ALL_TEXTS, normalize_embeddings=True, convert_to_tensor=True), vectors, atol=1e-6, rtol=0
    )
    similarity = st.similarity(vectors, vectors)
    torch.testing.assert_close(similarity, vectors @ vectors.T, atol=1e-5, rtol=0)
    assert st.encode(TEXTS[0]).shape == (24,)

    # max_seq_length truncates exactly as `encode(max_length=...)` does.
    st.max_seq_length = 5
    np.testing.assert_allclose(
        st.encode(LONG_TEXTS), model.encode(LONG_TEXTS, tiny_tokenizer, max_length=5), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="`max_seq_length` must be a positive integer or None, got 0."):
        st.max_seq_length = 0
    with pytest.raises(TypeError, match="must be a string, got int: 7."):
        st[0].preprocess(["fine", 7])


def test_sentence_transformer_save_round_trip_keeps_every_door(tmp_path, tiny_tokenizer):
    model = make_model(pooling_mode="max", projection="linear")
    st = SentenceTransformer(save(model, tiny_tokenizer, tmp_path / "model"), trust_remote_code=True, device="cpu")
    st.max_seq_length = 16
    st.save(str(tmp_path / "resaved"))
    reloaded = SentenceTransformer(str(tmp_path / "resaved"), trust_remote_code=True, device="cpu")
    assert reloaded.max_seq_length == 16
    np.testing.assert_allclose(reloaded.encode(ALL_TEXTS), st.encode(ALL_TEXTS), atol=1e-6, rtol=0)
    again = AutoModel.from_pretrained(tmp_path / "resaved", trust_remote_code=True)
    np.testing.assert_allclose(
        again.encode(TEXTS, tiny_tokenizer), model.encode(TEXTS, tiny_tokenizer), atol=1e-6, rtol=0
    )


def test_sentence_transformer_needs_trust_remote_code(tmp_path, tiny_tokenizer):
    folder = save(make_model(), tiny_tokenizer, tmp_path / "model")
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SentenceTransformer(folder, device="cpu")


def test_to_sentence_transformer_shares_the_weights(tiny_tokenizer):
    model = make_model(pooling_mode="cls", projection="none")
    st = model.to_sentence_transformer(tiny_tokenizer)
    assert {id(p) for p in st.parameters()} == {id(p) for p in model.parameters()}
    np.testing.assert_allclose(st.encode(ALL_TEXTS), model.encode(ALL_TEXTS, tiny_tokenizer), atol=1e-5, rtol=0)


def test_sentence_transformer_batches_like_encode(tmp_path, tiny_tokenizer):
    """Sorted by tokens, as `encode` sorts: a short text with many characters is not batched with long ones."""
    model = make_model()
    st = SentenceTransformer(save(model, tiny_tokenizer, tmp_path / "model"), trust_remote_code=True, device="cpu")
    widths = []
    hook = st[0].model.backbone.embeddings.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    texts = ["stock"] * 2 + ["zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"] * 2 + ["the movie was great team won"] * 2
    st.encode(texts, batch_size=2)
    hook.remove()
    assert sorted(widths) == [3, 3, 8]  # ([CLS] x [SEP]: the 41-character word is one unknown token)


@pytest.mark.slow
def test_sentence_transformer_on_real_minilm_and_real_texts(tmp_path, minilm):
    from multitask_st import MultiTaskSTModel

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    texts = rotten_tomatoes_texts()[:300]
    for pooling_mode, projection in (("attention", "mlp"), ("mean", "linear")):
        torch.manual_seed(0)
        model = MultiTaskSTModel.from_backbone(str(minilm), pooling_mode=pooling_mode, projection=projection).eval()
        folder = save(model, tokenizer, tmp_path / pooling_mode)
        st = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
        assert st.max_seq_length == 256
        assert min_cosine(st.encode(texts, batch_size=32), model.encode(texts, tokenizer)) >= 0.99999


@pytest.mark.slow
def test_sentence_transformer_without_the_package(tmp_path, tiny_tokenizer):
    model = make_model(pooling_mode="attention", projection="mlp", embedding_dim=24)
    folder = save(model, tiny_tokenizer, tmp_path / "model")
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer({folder!r}, trust_remote_code=True, device="cpu")
        assert type(model[0]).__module__.startswith("transformers_modules."), type(model[0]).__module__
        np.save({str(tmp_path / "vectors.npy")!r}, model.encode({ALL_TEXTS!r}, batch_size=3))
        """
    )
    # multitask_st blocked (it may be installed): only the folder's code may run
    result = run_python(script, tmp_path, block=("multitask_st",), timeout=180)
    assert result.returncode == 0, result.stderr
    vectors = np.load(tmp_path / "vectors.npy")
    assert min_cosine(vectors, model.encode(ALL_TEXTS, tiny_tokenizer)) >= 0.99999
