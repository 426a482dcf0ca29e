"""The `pipeline()` door: the pipeline that ships with the model, and each head as a stock text classifier."""

import json
import textwrap

import pytest
import torch
from conftest import LONG_TEXTS, POOLING_MODES, PROJECTIONS, TEXTS, make_model, run_python
from transformers import pipeline

from multitask_st.pipeline_multitask_st import MultiTaskSTHeadView, MultiTaskSTPipeline


ALL_TEXTS = TEXTS + LONG_TEXTS


def saved(tmp_path, tokenizer, **overrides):
    model = make_model(**overrides)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return model, tmp_path / "model"


def assert_matches_predict(results, predictions, tasks):
    assert len(results) == len(predictions)
    for result, prediction in zip(results, predictions, strict=True):
        assert [key for key in result if key != "embedding"] == tasks
        for task in tasks:
            assert result[task]["label"] == prediction[task]["label"]
            assert result[task]["score"] == pytest.approx(prediction[task]["score"], abs=1e-6)


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("pooling_mode", POOLING_MODES)
def test_pipeline_equals_predict(tiny_tokenizer, pooling_mode, projection):
    model = make_model(pooling_mode=pooling_mode, projection=projection)
    classifier = MultiTaskSTPipeline(model=model, tokenizer=tiny_tokenizer)
    predictions = model.predict(ALL_TEXTS, tiny_tokenizer, batch_size=3)
    tasks = model.config.task_names
    assert_matches_predict(classifier(ALL_TEXTS, batch_size=3), predictions, tasks)
    # One text gives one dict; a generator streams through the standard pipeline loop, batched the pipeline's way.
    assert_matches_predict([classifier(ALL_TEXTS[0])], predictions[:1], tasks)
    assert_matches_predict(list(classifier(iter_texts(ALL_TEXTS), batch_size=4)), predictions, tasks)


def iter_texts(texts):
    yield from texts


def test_pipeline_from_the_saved_folder_declares_itself_and_loads_with_no_task(tmp_path, tiny_tokenizer):
    model, model_dir = saved(tmp_path, tiny_tokenizer, pooling_mode="attention", projection="mlp", embedding_dim=24)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "text-classification": {
            "impl": "pipeline_multitask_st.MultiTaskSTPipeline",
            "pt": ["AutoModel"],
            "type": "text",
        }
    }
    assert (model_dir / "pipeline_multitask_st.py").is_file()
    classifier = pipeline(model=str(model_dir), trust_remote_code=True, device="cpu")
    assert type(classifier).__name__ == "MultiTaskSTPipeline"
    assert type(classifier).__module__.startswith("transformers_modules.")  # the folder's copy, not ours
    assert_matches_predict(classifier(TEXTS), model.predict(TEXTS, tiny_tokenizer), model.config.task_names)
    # The Hub generates `pipeline("text-classification", model=repo, trust_remote_code=True)`: the same pipeline.
    named = pipeline("text-classification", model=str(model_dir), trust_remote_code=True)
    assert type(named).__name__ == "MultiTaskSTPipeline"


def test_pipeline_options(tiny_tokenizer):
    model = make_model()
    classifier = MultiTaskSTPipeline(model=model, tokenizer=tiny_tokenizer)
    predictions = model.predict(TEXTS, tiny_tokenizer, tasks=["sentiment"])
    only = classifier(TEXTS, tasks=["sentiment"])
    assert_matches_predict(only, predictions, ["sentiment"])

    every = classifier(TEXTS[0], top_k=None)
    for task, labels in model.config.tasks.items():
        probabilities = model.predict(TEXTS[0], tiny_tokenizer)[task]["probabilities"]
        assert sorted(entry["label"] for entry in every[task]) == sorted(labels)
        scores = [entry["score"] for entry in every[task]]
        assert scores == sorted(scores, reverse=True)
        assert {entry["label"]: entry["score"] for entry in every[task]} == pytest.approx(probabilities, abs=1e-6)
    assert [len(entries) for entries in classifier(TEXTS[0], top_k=2).values()] == [2, 2]

    with_embedding = classifier(ALL_TEXTS, return_embedding=True, batch_size=2)
    embeddings = torch.tensor([result["embedding"] for result in with_embedding])
    torch.testing.assert_close(
        embeddings, model.encode(ALL_TEXTS, tiny_tokenizer, convert_to_tensor=True), atol=1e-6, rtol=0
    )
    assert_matches_predict(with_embedding, model.predict(ALL_TEXTS, tiny_tokenizer), model.config.task_names)


def test_pipeline_forward_runs_once_per_batch_for_all_heads(tiny_tokenizer, monkeypatch):
    model = make_model()
    classifier = MultiTaskSTPipeline(model=model, tokenizer=tiny_tokenizer)
    calls, forward = [], model.forward

    def counting_forward(*args, **kwargs):
        output = forward(*args, **kwargs)
        calls.append((len(kwargs["input_ids"]), list(output.logits)))
        return output

    monkeypatch.setattr(model, "forward", counting_forward)
    classifier(ALL_TEXTS, batch_size=3, return_embedding=True)
    # 8 texts in batches of 3: three passes, each running both heads (and giving the embedding).
    assert calls == [(3, ["topic", "sentiment"]), (3, ["topic", "sentiment"]), (2, ["topic", "sentiment"])]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c(TEXTS, top_k=0), ValueError, "`top_k` must be a positive integer or None (every label), got 0."),
        (lambda c: c(TEXTS, tasks=["colour"]), ValueError, "Unknown task(s) ['colour']"),
        (lambda c: c(TEXTS, temperature=2), TypeError, "Unexpected argument(s) ['temperature']"),
        (lambda c: c([]), ValueError, "`sentences` is empty"),
        (lambda c: c(["fine", 3]), TypeError, "`sentences[1]` must be a string, got int: 3."),
        (lambda c: c(TEXTS, return_embedding="yes"), TypeError, "`return_embedding` must be True or False"),
    ],
)
def test_pipeline_rejects_bad_arguments(tiny_tokenizer, call, error, message):
    classifier = MultiTaskSTPipeline(model=make_model(), tokenizer=tiny_tokenizer)
    with pytest.raises(error) as raised:
        call(classifier)
    assert message in str(raised.value)


def test_head_view_in_the_stock_text_classification_pipeline(tiny_tokenizer, caplog):
    model = make_model(pooling_mode="max", projection="mlp")
    view = model.head_view("topic")
    assert isinstance(view, MultiTaskSTHeadView)
    assert view.config.id2label == {0: "world", 1: "sports", 2: "business"}
    assert view.config.label2id == {"world": 0, "sports": 1, "business": 2}
    # Shares the weights: the very same parameter objects, nothing copied.
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}

    with caplog.at_level("ERROR"):
        classifier = pipeline("text-classification", model=view, tokenizer=tiny_tokenizer)
    assert "is not supported" not in caplog.text
    predictions = model.predict(TEXTS, tiny_tokenizer)
    best = classifier(TEXTS)
    assert [r["label"] for r in best] == [p["topic"]["label"] for p in predictions]
    assert [r["score"] for r in best] == pytest.approx([p["topic"]["score"] for p in predictions], abs=1e-6)
    every = classifier(TEXTS[0], top_k=None)
    assert {r["label"]: r["score"] for r in every} == pytest.approx(predictions[0]["topic"]["probabilities"], abs=1e-6)
    raw = classifier(TEXTS[0], top_k=None, function_to_apply="none")
    with torch.no_grad():
        logits = model(**tiny_tokenizer([TEXTS[0]], return_tensors="pt")).logits["topic"][0]
    assert {r["label"]: r["score"] for r in raw} == pytest.approx(
        dict(zip(view.config.id2label.values(), logits.tolist(), strict=True)), abs=1e-5
    )


def test_head_view_rejects_an_unknown_task():
    with pytest.raises(
        ValueError, match=r"Unknown task\(s\) \['colour'\]; this model's tasks are \['topic', 'sentiment'\]"
    ):
        make_model().head_view("colour")


@pytest.mark.slow
def test_pipeline_without_the_package(tmp_path, tiny_tokenizer):
    model, model_dir = saved(tmp_path, tiny_tokenizer, pooling_mode="attention", projection="linear")
    script = textwrap.dedent(
        f"""
        import json
        from transformers import pipeline

        classifier = pipeline(model={str(model_dir)!r}, trust_remote_code=True, device="cpu", batch_size=2)
        report = {{
            "module": type(classifier).__module__,
            "list": classifier({ALL_TEXTS!r}),
            "single": classifier({TEXTS[0]!r}, top_k=None),
            "embedding": classifier({TEXTS[0]!r}, return_embedding=True)["embedding"],
            "view": pipeline("text-classification", model=classifier.model.head_view("sentiment"),
                             tokenizer=classifier.tokenizer)({TEXTS!r}),
        }}
        with open({str(tmp_path / "report.json")!r}, "w") as file:
            json.dump(report, file)
        """
    )
    # multitask_st blocked (it may be installed): only the folder's code may run
    result = run_python(script, tmp_path, block=("multitask_st",), timeout=180)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["module"].startswith("transformers_modules.")
    predictions = model.predict(ALL_TEXTS, tiny_tokenizer)
    assert_matches_predict(report["list"], predictions, model.config.task_names)
    assert {e["label"]: e["score"] for e in report["single"]["topic"]} == pytest.approx(
        predictions[0]["topic"]["probabilities"], abs=1e-6
    )
    assert report["embedding"] == pytest.approx(model.encode(TEXTS[0], tiny_tokenizer).tolist(), abs=1e-6)
    assert [r["label"] for r in report["view"]] == [p["sentiment"]["label"] for p in predictions[: len(TEXTS)]]
