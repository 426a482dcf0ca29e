import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    LONG_TEXTS,
    POOLING_MODES,
    PROJECTIONS,
    TEXTS,
    TINY_TASKS,
    make_model,
    rotten_tomatoes_texts,
    run_python,
    tiny_backbone_config,
    tiny_config,
)
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, Trainer, TrainingArguments

import multitask_st
from multitask_st import MultiTaskSTConfig, MultiTaskSTModel
from multitask_st.task_fields_multitask_st import DEFAULT_TASKS


PACKAGE_DIR = Path(multitask_st.__file__).parent
PAYLOAD_FILES = (
    "configuration_multitask_st.py",
    "task_fields_multitask_st.py",
    "modeling_multitask_st.py",
    "encoding_multitask_st.py",
    "task_editing_multitask_st.py",
    "inference_multitask_st.py",
    "scores_multitask_st.py",
    "layers_multitask_st.py",
    "losses_multitask_st.py",
    "parts_multitask_st.py",
    "pipeline_multitask_st.py",
    "sentence_transformers_multitask_st.py",
)
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def hand_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor, tasks: list[str], weights: dict) -> torch.Tensor:
    """The documented loss: sum over tasks of weight * mean cross-entropy over the rows labelled for the task."""
    total = torch.zeros(())
    for column, task in enumerate(tasks):
        labelled = labels[:, column] != -100
        if labelled.any():
            total = total + weights[task] * F.cross_entropy(logits[task][labelled], labels[labelled, column])
    return total


# ---------------------------------------------------------------------------------------------------- config


def test_config_defaults():
    config = MultiTaskSTConfig()
    assert config.backbone_config.model_type == "bert"
    assert config.pooling_mode == "mean"
    assert config.projection == "linear"
    assert config.embedding_dim == config.projection_hidden_size == config.head_hidden_size == 768
    assert config.projection_activation == config.head_activation == "gelu"
    assert config.head_dropout == 0.1
    assert config.normalize_embeddings is False
    assert config.max_seq_length is None
    assert config.tasks == DEFAULT_TASKS and config.task_names == ["topic", "sentiment"]
    assert config.task_loss_weights == {"topic": 1.0, "sentiment": 1.0}

    tiny = tiny_config(embedding_dim=24)
    assert tiny.backbone_hidden_size == 32 and tiny.embedding_dim == tiny.head_hidden_size == 24
    assert tiny.projection_hidden_size == 32
    assert tiny.num_labels_of("topic") == 3


def test_config_accepts_backbone_config_as_dict():
    config = MultiTaskSTConfig(backbone_config=tiny_backbone_config().to_dict(), tasks=TINY_TASKS)
    assert type(config.backbone_config).__name__ == "BertConfig"
    assert config.backbone_config.hidden_size == 32


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"pooling_mode": "sum"}, ["pooling_mode", "'sum'", "'mean'", "'cls'", "'max'", "'attention'"]),
        ({"projection": "conv"}, ["projection", "'conv'", "'linear'", "'mlp'", "'none'"]),
        ({"projection": "none", "embedding_dim": 16}, ["embedding_dim", "16", "32"]),
        ({"projection_activation": "swish"}, ["projection_activation", "'swish'", "'gelu'", "'relu'", "'tanh'"]),
        ({"head_activation": "softmax"}, ["head_activation", "'softmax'", "'gelu'", "'silu'"]),
        ({"head_dropout": 1.0}, ["head_dropout", "1.0", "[0, 1)"]),
        ({"head_dropout": -0.1}, ["head_dropout", "-0.1", "[0, 1)"]),
        ({"head_dropout": "0.1"}, ["head_dropout", "'0.1'"]),
        ({"embedding_dim": 0}, ["embedding_dim", "positive integer", "0"]),
        ({"head_hidden_size": 2.5}, ["head_hidden_size", "2.5"]),
        ({"max_seq_length": -1}, ["max_seq_length", "-1"]),
        ({"normalize_embeddings": "yes"}, ["normalize_embeddings", "'yes'"]),
        ({"tasks": {}}, ["tasks", "non-empty"]),
        ({"tasks": ["topic", "sentiment"]}, ["tasks", "'topic'"]),
        ({"tasks": {"topic": ["only"]}}, ["'topic'", "at least 2 labels", "'only'"]),
        ({"tasks": {"topic": ["a", "b", "a"]}}, ["'topic'", "unique", "'a'"]),
        ({"tasks": {"topic": "ab"}}, ["'topic'", "'ab'"]),
        ({"tasks": {"topic": ["a", ""]}}, ["'topic'", "non-empty strings"]),
        ({"tasks": {"my task": ["a", "b"]}}, ["'my task'", "letters, digits"]),
        ({"tasks": {"topic": {"0": "a", "2": "b"}}}, ["'topic'", "0..1", "[0, 2]"]),
        ({"tasks": {"topic": {"x": "a", "y": "b"}}}, ["'topic'", "integers", "'x'"]),
        ({"tasks": [["topic", ["a", "b"]], ["topic", ["c", "d"]]]}, ["unique", "'topic'"]),
        ({"task_loss_weights": {"nope": 1.0}}, ["task_loss_weights", "'nope'", "'topic'", "'sentiment'"]),
        ({"task_loss_weights": {"topic": -0.5}}, ["task_loss_weights", "'topic'", "-0.5", "non-negative"]),
        ({"task_loss_weights": {"topic": "1"}}, ["task_loss_weights", "'topic'", "'1'"]),
    ],
)
def test_config_rejects_bad_values(overrides, expected):
    with pytest.raises(ValueError) as error:
        tiny_config(**overrides)
    message = str(error.value)
    missing = [part for part in expected if part not in message]
    assert not missing, f"{missing} not in error message: {message}"


def test_config_rejects_bad_backbone_config_type():
    with pytest.raises(TypeError, match="backbone_config"):
        MultiTaskSTConfig(backbone_config=42)


def test_config_label_maps_survive_json_round_trip(tmp_path):
    # Task order on purpose not alphabetical: it is the column order of `labels` and must survive `sort_keys=True`.
    tasks = {"topic": ["world", "sports", "business"], "sentiment": {"1": "positive", "0": "negative"}}
    config = tiny_config(tasks=tasks, task_loss_weights={"sentiment": 2.5})
    assert config.tasks == {"topic": ["world", "sports", "business"], "sentiment": ["negative", "positive"]}
    assert config.task_id2label("sentiment") == {0: "negative", 1: "positive"}

    config.save_pretrained(tmp_path)
    from_json = MultiTaskSTConfig.from_dict(json.loads(config.to_json_string()))
    for reloaded in (MultiTaskSTConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path), from_json):
        assert isinstance(reloaded, MultiTaskSTConfig)
        assert reloaded.task_names == ["topic", "sentiment"]
        assert reloaded.tasks == config.tasks
        for task in config.task_names:
            id2label = reloaded.task_id2label(task)
            assert id2label == config.task_id2label(task)
            assert all(type(i) is int for i in id2label)
            assert reloaded.task_label2id(task) == config.task_label2id(task)
        assert reloaded.task_loss_weights == {"topic": 1.0, "sentiment": 2.5}
        assert reloaded.backbone_config.to_dict() == config.backbone_config.to_dict()

    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        config.task_id2label("nope")


# ---------------------------------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("pooling_mode", POOLING_MODES)
def test_save_load_gives_identical_outputs(tmp_path, tiny_tokenizer, pooling_mode, projection):
    embedding_dim = None if projection == "none" else 24
    model = make_model(pooling_mode=pooling_mode, projection=projection, embedding_dim=embedding_dim)
    inputs = tokenize(tiny_tokenizer, TEXTS + LONG_TEXTS)
    with torch.no_grad():
        expected = model(**inputs)
    model.save_pretrained(tmp_path)

    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == sorted(["config.json", "model.safetensors", *PAYLOAD_FILES, *SENTENCE_TRANSFORMERS_FILES])
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_multitask_st.MultiTaskSTConfig",
        "AutoModel": "modeling_multitask_st.MultiTaskSTModel",
    }
    for name in PAYLOAD_FILES:
        assert (tmp_path / name).read_bytes() == (PACKAGE_DIR / name).read_bytes()

    for loaded in (MultiTaskSTModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is MultiTaskSTModel and not loaded.training
        assert loaded.config.pooling_mode == pooling_mode and loaded.config.projection == projection
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert state.keys() == loaded_state.keys()
        assert all(torch.equal(state[key], loaded_state[key]) for key in state)
        with torch.no_grad():
            output = loaded(**inputs)
        assert torch.equal(output.embeddings, expected.embeddings)
        assert output.logits.keys() == expected.logits.keys()
        for task in expected.logits:
            assert torch.equal(output.logits[task], expected.logits[task])


@pytest.mark.slow
def test_remote_code_loads_without_the_package(tmp_path, tiny_tokenizer):
    model = make_model(pooling_mode="attention", projection="mlp", embedding_dim=24)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    inputs = tokenize(tiny_tokenizer, TEXTS + LONG_TEXTS)
    torch.save(inputs, tmp_path / "inputs.pt")

    # multitask_st blocked (it may be installed): the Hub payload is all the script can use
    script = textwrap.dedent(
        f"""
        import json
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            import multitask_st  # noqa: F401
            importable = True
        except ImportError:
            importable = False
        model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(model_dir)!r})
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            output = model(**inputs)
        torch.save(
            {{
                "logits": dict(output.logits),
                "embeddings": output.embeddings,
                "encode": model.encode({TEXTS!r}, tokenizer, batch_size=4, convert_to_tensor=True),
            }},
            {str(tmp_path / "outputs.pt")!r},
        )
        report = {{
            "importable": importable,
            "model_module": type(model).__module__,
            "config_module": type(model.config).__module__,
            "training": model.training,
            "predict": model.predict({TEXTS!r}, tokenizer, batch_size=4),
        }}
        with open({str(tmp_path / "report.json")!r}, "w") as file:
            json.dump(report, file)
        """
    )
    result = run_python(script, tmp_path, block=("multitask_st",), timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["importable"] is False
    assert report["model_module"].startswith("transformers_modules.")  # not `multitask_st.modeling_multitask_st`
    assert report["config_module"].startswith("transformers_modules.")
    assert report["training"] is False

    remote = torch.load(tmp_path / "outputs.pt")
    with torch.no_grad():
        expected = model(**inputs)
    assert torch.equal(remote["embeddings"], expected.embeddings)
    assert remote["logits"].keys() == expected.logits.keys()
    for task in expected.logits:
        assert torch.equal(remote["logits"][task], expected.logits[task])
    assert torch.equal(remote["encode"], model.encode(TEXTS, tiny_tokenizer, batch_size=4, convert_to_tensor=True))
    # Through JSON, as the subprocess printed it: floats survive exactly.
    assert report["predict"] == json.loads(json.dumps(model.predict(TEXTS, tiny_tokenizer, batch_size=4)))


# ---------------------------------------------------------------------------------------------------- padding


@pytest.mark.parametrize("pooling_mode", POOLING_MODES)
def test_embedding_does_not_depend_on_padding(tiny_tokenizer, pooling_mode):
    model = make_model(pooling_mode=pooling_mode)
    with torch.no_grad():
        for text in TEXTS[:3]:
            alone = model(**tokenize(tiny_tokenizer, [text]))
            padded_inputs = tokenize(tiny_tokenizer, [text, *LONG_TEXTS])
            assert padded_inputs["attention_mask"][0].sum() * 4 < padded_inputs["attention_mask"].shape[1]
            padded = model(**padded_inputs)
            torch.testing.assert_close(padded.embeddings[0], alone.embeddings[0], atol=1e-5, rtol=0)
            for task in TINY_TASKS:
                torch.testing.assert_close(padded.logits[task][0], alone.logits[task][0], atol=1e-5, rtol=0)


def test_pooling_ignores_padding_values():
    model = make_model(pooling_mode="max")
    states = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    poisoned = states.clone()
    poisoned[0, 2:] = 1e4  # padding positions: must not win the max, nor move a mean
    for mode in POOLING_MODES:
        model.pooling.mode = mode
        if mode == "attention":
            model.pooling.attention_query = torch.nn.Linear(32, 1)
        torch.testing.assert_close(model.pooling(poisoned, mask), model.pooling(states, mask))
    model.pooling.mode = "mean"
    torch.testing.assert_close(model.pooling(states, mask)[0], states[0, :2].mean(dim=0))


def test_encode_is_independent_of_batch_composition_and_keeps_order(tiny_tokenizer):
    model = make_model()
    texts = [TEXTS[0], LONG_TEXTS[0], TEXTS[3], TEXTS[1], LONG_TEXTS[1], TEXTS[4]]
    one_by_one = np.stack([model.encode(text, tiny_tokenizer) for text in texts])
    for batch_size in (1, 2, 4, 32):
        batched = model.encode(texts, tiny_tokenizer, batch_size=batch_size)
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=0)
    reversed_batch = model.encode(texts[::-1], tiny_tokenizer, batch_size=4)
    np.testing.assert_allclose(reversed_batch[::-1], one_by_one, atol=1e-5, rtol=0)
    # Row i is text i, not a neighbour: the texts embed differently.
    assert np.abs(one_by_one[0] - one_by_one[2]).max() > 1e-3


def test_encode_batches_texts_of_equal_token_count(tiny_tokenizer):
    model = make_model()
    # Token counts 1, 4, 1, 4 (plus [CLS]/[SEP]); by characters the order would pair a long text with a short one.
    texts = ["election", "a a a a", "vote", "the a the a"]
    masks = []
    hook = model.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs["attention_mask"]), with_kwargs=True
    )
    embeddings = model.encode(texts, tiny_tokenizer, batch_size=2)
    hook.remove()
    assert [tuple(mask.shape) for mask in masks] == [(2, 6), (2, 3)]
    assert all(bool(mask.all()) for mask in masks)  # no padding at all
    np.testing.assert_allclose(embeddings[1], model.encode(texts[1], tiny_tokenizer), atol=1e-5)


# ---------------------------------------------------------------------------------------------------- loss


def test_loss_is_the_weighted_sum_of_per_task_means(tiny_tokenizer):
    weights = {"topic": 0.5, "sentiment": 2.0}
    model = make_model(task_loss_weights=weights)
    inputs = tokenize(tiny_tokenizer, TEXTS[:5])
    labels = torch.tensor([[0, 1], [-100, 0], [2, -100], [1, -100], [-100, -100]])
    output = model(**inputs, labels=labels)
    assert torch.isfinite(output.loss)

    logits = {task: value.detach() for task, value in output.logits.items()}
    expected_topic = F.cross_entropy(logits["topic"][[0, 2, 3]], labels[[0, 2, 3], 0])
    expected_sentiment = F.cross_entropy(logits["sentiment"][[0, 1]], labels[[0, 1], 1])
    torch.testing.assert_close(output.task_losses["topic"].detach(), expected_topic)
    torch.testing.assert_close(output.task_losses["sentiment"].detach(), expected_sentiment)
    torch.testing.assert_close(output.loss.detach(), 0.5 * expected_topic + 2.0 * expected_sentiment)
    torch.testing.assert_close(output.loss.detach(), hand_loss(logits, labels, model.config.task_names, weights))


def test_task_absent_from_batch_contributes_exactly_zero(tiny_tokenizer):
    model = make_model(task_loss_weights={"topic": 0.5, "sentiment": 3.0})
    inputs = tokenize(tiny_tokenizer, TEXTS[:3])
    labels = torch.tensor([[0, -100], [2, -100], [-100, -100]])
    output = model(**inputs, labels=labels)
    assert output.task_losses["sentiment"].item() == 0.0
    expected_topic = F.cross_entropy(output.logits["topic"].detach()[:2], labels[:2, 0])
    torch.testing.assert_close(output.loss.detach(), 0.5 * expected_topic)

    output.loss.backward()
    # The absent task's head is still in the graph (DDP needs every parameter used), with a zero gradient.
    for param in model.heads["sentiment"].parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) == 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.count_nonzero(model.heads["topic"][0].weight.grad) > 0


def test_loss_with_a_task_subset_and_int32_labels(tiny_tokenizer):
    model = make_model()
    inputs = tokenize(tiny_tokenizer, TEXTS[:2])
    labels = torch.tensor([[1, 0], [0, -100]], dtype=torch.int32)
    output = model(**inputs, labels=labels, tasks=["sentiment"])
    assert list(output.logits) == ["sentiment"]
    expected = F.cross_entropy(output.logits["sentiment"].detach()[:1], torch.tensor([0]))
    torch.testing.assert_close(output.loss.detach(), expected)


@pytest.mark.parametrize(
    "labels, expected",
    [
        (torch.tensor([0, 1, 2]), "shape"),
        (torch.tensor([[0, 1, 0], [1, 0, 0], [2, 1, 0]]), "shape"),
        (torch.tensor([[0.0, 1.0], [1.5, 0.0], [2.0, 1.0]]), "Label 1.5 of task 'topic' (batch row 1) is not in"),
        (torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]], dtype=torch.float64), "float32"),
        (torch.tensor([[0, 1], [3, 0], [2, 1]]), "Label 3 of task 'topic' (batch row 1) is not in 0..2"),
        (torch.tensor([[0, 1], [1, 0], [2, 2]]), "Label 2 of task 'sentiment' (batch row 2) is not in 0..1"),
        (torch.tensor([[0, 1], [1, -1], [2, 1]]), "Label -1 of task 'sentiment'"),
    ],
)
def test_bad_labels_raise(tiny_tokenizer, labels, expected):
    model = make_model()
    with pytest.raises(ValueError) as error:
        model(**tokenize(tiny_tokenizer, TEXTS[:3]), labels=labels)
    assert expected in str(error.value)


def test_forward_without_input_ids_raises():
    with pytest.raises(ValueError, match="input_ids"):
        make_model()(attention_mask=torch.ones(1, 3, dtype=torch.long))


def test_forward_return_tuple_and_backbone_states(tiny_tokenizer, tmp_path):
    model = make_model()
    inputs = tokenize(tiny_tokenizer, TEXTS[:2])
    assert model(**inputs).hidden_states is None
    assert len(model(**inputs, output_hidden_states=True).hidden_states) == 3
    # SDPA (the default) returns no attention weights; the attention implementation passes through to the backbone.
    model.save_pretrained(tmp_path)
    eager = MultiTaskSTModel.from_pretrained(tmp_path, attn_implementation="eager")
    assert eager.backbone.config._attn_implementation == "eager"
    output = eager(**inputs, output_attentions=True)
    length = inputs["input_ids"].shape[1]
    assert len(output.attentions) == 2 and output.attentions[0].shape == (2, 4, length, length)
    as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[1], output.embeddings)  # no labels: (logits, embeddings)


# ---------------------------------------------------------------------------------------------------- Trainer


def test_plain_trainer_evaluate_and_predict(tmp_path, tiny_tokenizer):
    import datasets

    weights = {"topic": 0.25, "sentiment": 1.5}
    model = make_model(task_loss_weights=weights)
    texts = TEXTS + LONG_TEXTS[:1]
    # The second batch (rows 3..5) has no sentiment label at all.
    labels = [[0, 1], [1, 0], [2, -100], [-100, -100], [1, -100], [0, -100], [-100, 1]]
    rows = [{**tiny_tokenizer(text), "labels": label} for text, label in zip(texts, labels, strict=True)]
    dataset = datasets.Dataset.from_list(rows)

    def collate(features):
        batch = tiny_tokenizer.pad(
            [{k: v for k, v in f.items() if k != "labels"} for f in features], return_tensors="pt"
        )
        batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=3, report_to=[], use_cpu=True, dataloader_num_workers=0
    )
    trainer = Trainer(model=model, args=args, data_collator=collate, eval_dataset=dataset)
    assert trainer.label_names == ["labels"]
    assert trainer.model_accepts_loss_kwargs is False  # else Trainer skips the gradient-accumulation division

    # Trainer averages the per-batch losses weighted by batch size.
    batch_losses, sizes, all_logits = [], [], {task: [] for task in model.config.task_names}
    with torch.no_grad():
        for start in range(0, len(rows), 3):
            batch = collate(rows[start : start + 3])
            batch_labels = batch.pop("labels")
            logits = model(**batch).logits
            batch_losses.append(hand_loss(logits, batch_labels, model.config.task_names, weights))
            sizes.append(len(batch_labels))
            for task in all_logits:
                all_logits[task].append(logits[task])
    expected_loss = sum(loss * size for loss, size in zip(batch_losses, sizes, strict=True)) / sum(sizes)

    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)

    prediction = trainer.predict(dataset)
    np.testing.assert_array_equal(prediction.label_ids, np.array(labels))
    logits, embeddings = prediction.predictions
    assert set(logits) == set(model.config.task_names)
    for task in model.config.task_names:
        np.testing.assert_allclose(logits[task], torch.cat(all_logits[task]).numpy(), atol=1e-6)
    np.testing.assert_allclose(embeddings, model.encode(texts, tiny_tokenizer), atol=1e-5)
    assert prediction.metrics["test_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- inference


def test_encode_shapes_and_types(tiny_tokenizer):
    model = make_model(embedding_dim=24)
    array = model.encode(TEXTS, tiny_tokenizer, batch_size=4)
    assert isinstance(array, np.ndarray) and array.shape == (len(TEXTS), 24) and array.dtype == np.float32
    single = model.encode(TEXTS[0], tiny_tokenizer)
    assert single.shape == (24,)
    np.testing.assert_allclose(single, array[0], atol=1e-5)
    tensor = model.encode(TEXTS, tiny_tokenizer, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (len(TEXTS), 24)
    as_list = model.encode(TEXTS, tiny_tokenizer, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(TEXTS) and as_list[0].shape == (24,)
    assert isinstance(model.encode(TEXTS[0], tiny_tokenizer, convert_to_tensor=True), torch.Tensor)
    # `encode` is `forward`'s embedding.
    with torch.no_grad():
        forward = model(**tokenize(tiny_tokenizer, TEXTS)).embeddings
        embed = model.embed(**tokenize(tiny_tokenizer, TEXTS))
    np.testing.assert_allclose(array, forward.numpy(), atol=1e-5)
    torch.testing.assert_close(embed, forward)


def test_normalized_embeddings(tiny_tokenizer):
    model = make_model()
    raw = model.encode(TEXTS, tiny_tokenizer)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    unit = model.encode(TEXTS, tiny_tokenizer, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)

    model.config.normalize_embeddings = True
    np.testing.assert_allclose(model.encode(TEXTS, tiny_tokenizer), unit, atol=1e-6)
    with torch.no_grad():
        output = model(**tokenize(tiny_tokenizer, TEXTS))
    torch.testing.assert_close(output.embeddings.norm(dim=-1), torch.ones(len(TEXTS)))
    # The heads read the un-normalised embedding: logits do not change with the flag.
    model.config.normalize_embeddings = False
    with torch.no_grad():
        unnormalised = model(**tokenize(tiny_tokenizer, TEXTS))
    torch.testing.assert_close(output.logits["topic"], unnormalised.logits["topic"])
    np.testing.assert_allclose(model.encode(TEXTS, tiny_tokenizer, normalize_embeddings=False), raw, atol=1e-6)


def test_encode_truncates_to_max_seq_length(tiny_tokenizer):
    model = make_model(max_seq_length=6)
    long_text = LONG_TEXTS[0]
    truncated = tiny_tokenizer(long_text, truncation=True, max_length=6, return_tensors="pt")
    with torch.no_grad():
        expected = model(**truncated).embeddings[0]
    np.testing.assert_allclose(model.encode(long_text, tiny_tokenizer), expected.numpy(), atol=1e-5)
    # An explicit max_length wins over the config.
    full = model.encode(long_text, tiny_tokenizer, max_length=64)
    assert np.abs(full - expected.numpy()).max() > 1e-3


def test_predict(tiny_tokenizer):
    model = make_model()
    predictions = model.predict(TEXTS, tiny_tokenizer, batch_size=4)
    assert isinstance(predictions, list) and len(predictions) == len(TEXTS)
    with torch.no_grad():
        logits = model(**tokenize(tiny_tokenizer, TEXTS)).logits
    for row, prediction in enumerate(predictions):
        assert list(prediction) == ["topic", "sentiment"]
        for task, labels in TINY_TASKS.items():
            result = prediction[task]
            assert list(result["probabilities"]) == labels
            probabilities = list(result["probabilities"].values())
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
            assert result["label"] == labels[int(logits[task][row].argmax())]
            assert result["score"] == max(probabilities) == result["probabilities"][result["label"]]
            expected = logits[task][row].softmax(-1).tolist()
            assert probabilities == pytest.approx(expected, abs=1e-5)

    single = model.predict(TEXTS[0], tiny_tokenizer)
    assert isinstance(single, dict) and single["topic"]["label"] == predictions[0]["topic"]["label"]
    assert list(model.predict(TEXTS, tiny_tokenizer, tasks="sentiment")[0]) == ["sentiment"]
    subset = model.predict(TEXTS, tiny_tokenizer, tasks=["sentiment", "topic"])
    assert list(subset[2]) == ["sentiment", "topic"]
    assert subset[2]["topic"]["probabilities"] == pytest.approx(predictions[2]["topic"]["probabilities"])


def test_encode_and_predict_run_in_eval_mode_and_restore_training_mode(tiny_tokenizer):
    model = make_model(head_dropout=0.5).train()
    first = model.predict(TEXTS, tiny_tokenizer)
    assert model.training
    assert model.predict(TEXTS, tiny_tokenizer) == first  # no dropout while predicting
    model.encode(TEXTS, tiny_tokenizer)
    assert model.training


@pytest.mark.parametrize(
    "sentences, kwargs, error, match",
    [
        ([], {}, ValueError, "empty"),
        ("", {}, ValueError, r"sentences\[0\]"),
        (["fine", "   "], {}, ValueError, r"sentences\[1\]"),
        (["fine", 3], {}, TypeError, r"sentences\[1\].*int"),
        (("fine", None), {}, TypeError, r"sentences\[1\]"),
        ({"a": 1}, {}, TypeError, "string or an iterable of strings, got dict"),
        (5, {}, TypeError, "string or an iterable of strings, got int"),
        (b"bytes", {}, TypeError, "got bytes"),
        (["fine", "\x00\x01"], {}, ValueError, r"sentences\[1\]` is '\\x00\\x01': empty, whitespace or only control"),
        (["fine", "ok", "\u200b"], {}, ValueError, r"sentences\[2\]"),
        (["\xad"], {}, ValueError, r"sentences\[0\]"),
        (["\ufeff \t"], {}, ValueError, r"sentences\[0\]"),
        (["fine"], {"chunk_size": 0}, ValueError, "chunk_size` must be a positive integer, got 0"),
        (["fine"], {"max_length": 0}, ValueError, r"`max_length` must be an integer in 1\.\.64 .*got 0"),
        (["fine"], {"max_length": 65}, ValueError, r"1\.\.64 .*got 65"),
        (["fine"], {"batch_size": 0}, ValueError, "batch_size"),
        (["fine"], {"batch_size": 2.5}, ValueError, "batch_size"),
    ],
)
@pytest.mark.parametrize("method", ["encode", "predict"])
def test_bad_inference_inputs(tiny_tokenizer, method, sentences, kwargs, error, match):
    model = make_model()
    with pytest.raises(error, match=match):
        getattr(model, method)(sentences, tiny_tokenizer, **kwargs)


def test_bad_inference_tasks_and_tokenizer(tiny_tokenizer):
    model = make_model()
    with pytest.raises(ValueError) as error:
        model.predict(TEXTS, tiny_tokenizer, tasks=["topic", "nope"])
    assert "'nope'" in str(error.value) and "['topic', 'sentiment']" in str(error.value)
    with pytest.raises(ValueError, match="tasks"):
        model.predict(TEXTS, tiny_tokenizer, tasks=[])
    with pytest.raises(
        TypeError, match=r"`tasks` must be a task name or a list of them \(of \['topic', 'sentiment'\]\), got 5"
    ):
        model.predict(TEXTS, tiny_tokenizer, tasks=5)
    with pytest.raises(TypeError, match="tokenizer"):
        model.encode(TEXTS, None)


# ---------------------------------------------------------------------------------------------------- freezing


def trainable_parts(model: MultiTaskSTModel) -> set[str]:
    parts = model.parameter_parts()
    flags = {part: {param.requires_grad for _, param in params} for part, params in parts.items()}
    assert all(len(f) == 1 for f in flags.values()), f"a part is half frozen: {flags}"
    return {part for part, f in flags.items() if f == {True}}


def test_parameter_parts_cover_every_parameter_once():
    for projection, pooling_mode in (("mlp", "attention"), ("none", "mean")):
        model = make_model(projection=projection, pooling_mode=pooling_mode)
        parts = model.parameter_parts()
        expected = ["backbone.embeddings", "backbone.layer.0", "backbone.layer.1"]
        expected += ["pooling"] if pooling_mode == "attention" else []
        expected += ["projection"] if projection != "none" else []
        assert list(parts) == [*expected, "head:topic", "head:sentiment"]
        listed = [(name, id(param)) for params in parts.values() for name, param in params]
        assert sorted(listed) == sorted((name, id(param)) for name, param in model.named_parameters())
        assert len({param_id for _, param_id in listed}) == len(listed)
        assert all(name.startswith("backbone.encoder.layer.1.") for name, _ in parts["backbone.layer.1"])


@pytest.mark.parametrize(
    "target, frozen",
    [
        ("backbone", {"backbone.embeddings", "backbone.layer.0", "backbone.layer.1"}),
        ("heads", {"head:topic", "head:sentiment"}),
        ("head:topic", {"head:topic"}),
        ("backbone.layer.1", {"backbone.layer.1"}),
        ("backbone.embeddings", {"backbone.embeddings"}),
        ("projection", {"projection"}),
        ("all", None),
    ],
)
def test_freeze_and_unfreeze(target, frozen):
    model = make_model()
    everything = set(model.parameter_parts())
    frozen = everything if frozen is None else frozen
    assert model.freeze(target) is model
    assert trainable_parts(model) == everything - frozen
    model.unfreeze(target)
    assert trainable_parts(model) == everything


def test_freeze_combinations_and_errors():
    model = make_model()
    model.freeze("all").unfreeze("head:sentiment", "backbone.layer.1")
    assert trainable_parts(model) == {"head:sentiment", "backbone.layer.1"}
    assert model.resolve_parts("heads", "backbone.layer.0") == ["backbone.layer.0", "head:topic", "head:sentiment"]
    with pytest.raises(ValueError) as error:
        model.freeze("encoder")
    assert "'encoder'" in str(error.value) and "head:topic" in str(error.value) and "backbone" in str(error.value)
    with pytest.raises(ValueError, match="head:nope"):
        model.freeze("head:nope")
    with pytest.raises(ValueError, match="at least one"):
        model.freeze()
    # A failed call changes nothing.
    assert trainable_parts(model) == {"head:sentiment", "backbone.layer.1"}


def pretrained_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A tiny BERT checkpoint (NSP pooler included, as real ones ship it) whose weights differ from any fresh init."""
    from transformers import BertModel

    torch.manual_seed(seed)
    bert = BertModel(tiny_backbone_config())
    with torch.no_grad():
        for param in bert.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    bert.save_pretrained(folder)
    return folder


def test_from_backbone_adopts_the_pretrained_weights_bit_for_bit(tmp_path, tiny_tokenizer):
    folder = pretrained_tiny_bert(tmp_path / "bert")
    model = MultiTaskSTModel.from_backbone(str(folder), tasks=TINY_TASKS).eval()
    checkpoint = {key: value for key, value in load_file(folder / "model.safetensors").items()}
    state = model.backbone.state_dict()
    assert state.keys() == {key for key in checkpoint if not key.startswith("pooler.")}
    for key, value in state.items():
        assert torch.equal(value, checkpoint[key]), key
    assert model.config.backbone_config is model.backbone.config
    assert model.config.backbone_config._name_or_path == str(folder)
    # The rest is freshly initialised as `_init_weights` says (heads' biases zero, LayerNorm weight one).
    assert all(torch.count_nonzero(head[-1].bias) == 0 and head[-1].weight.std() > 0 for head in model.heads.values())
    assert torch.equal(model.projection[-1].weight, torch.ones(model.config.embedding_dim))

    model.save_pretrained(tmp_path / "saved")
    reloaded = MultiTaskSTModel.from_pretrained(tmp_path / "saved").eval()
    batch = tokenize(tiny_tokenizer, TEXTS)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(model(**batch).embeddings, reloaded(**batch).embeddings)


def test_from_backbone_passes_dtype_and_attn_implementation(tmp_path, tiny_tokenizer):
    folder = pretrained_tiny_bert(tmp_path / "bert")
    checkpoint = load_file(folder / "model.safetensors")
    model = MultiTaskSTModel.from_backbone(str(folder), tasks=TINY_TASKS, dtype=torch.bfloat16)
    assert {param.dtype for param in model.parameters()} == {torch.bfloat16}
    word_embeddings = checkpoint["embeddings.word_embeddings.weight"].to(torch.bfloat16)
    assert torch.equal(model.backbone.embeddings.word_embeddings.weight, word_embeddings)

    eager = MultiTaskSTModel.from_backbone(str(folder), tasks=TINY_TASKS, attn_implementation="eager").eval()
    sdpa = MultiTaskSTModel.from_backbone(str(folder), tasks=TINY_TASKS, attn_implementation="sdpa").eval()
    assert eager.backbone.config._attn_implementation == "eager"
    assert sdpa.backbone.config._attn_implementation == "sdpa"
    batch = tokenize(tiny_tokenizer, TEXTS)
    with torch.no_grad():
        hidden = [m.backbone(**batch).last_hidden_state for m in (eager, sdpa)]
    torch.testing.assert_close(hidden[0], hidden[1], atol=1e-5, rtol=1e-5)
    # As in transformers, the implementation is a loading choice, not saved: from_pretrained takes it again.
    eager.save_pretrained(tmp_path / "eager")
    reloaded = MultiTaskSTModel.from_pretrained(tmp_path / "eager", attn_implementation="eager")
    assert reloaded.backbone.config._attn_implementation == "eager"


def test_init_adopts_a_backbone_without_reinitialising_it():
    from transformers import BertModel, DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    bert = BertModel(tiny_backbone_config(), add_pooling_layer=False)
    with torch.no_grad():
        for param in bert.parameters():
            param.fill_(0.5)
    # Strip the marks transformers left on it, so only the adoption itself can keep post_init off its weights.
    for tensor in [*bert.modules(), *bert.parameters(), *bert.buffers()]:
        tensor.__dict__.pop("_is_hf_initialized", None)
    before = {key: value.clone() for key, value in bert.state_dict().items()}
    model = MultiTaskSTModel(tiny_config(), backbone=bert)
    assert model.backbone is bert and model.config.backbone_config is bert.config
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key

    with pytest.raises(TypeError, match="got Linear"):
        MultiTaskSTModel(tiny_config(), backbone=torch.nn.Linear(2, 2))
    distilbert = DistilBertModel(DistilBertConfig(vocab_size=99, dim=32, n_layers=1, n_heads=4, hidden_dim=37))
    with pytest.raises(ValueError, match="'distilbert' model but `config.backbone_config` describes a 'bert' one"):
        MultiTaskSTModel(tiny_config(), backbone=distilbert)


# ---------------------------------------------------------------------------------------------------- real MiniLM


@pytest.mark.slow
def test_from_backbone_loads_the_real_minilm(minilm):
    model = MultiTaskSTModel.from_backbone(str(minilm), tasks=TINY_TASKS, projection="mlp", embedding_dim=128)
    assert model.config.max_seq_length == 256  # from sentence_bert_config.json, not the 512 positions
    assert model.config.embedding_dim == 128 and model.config.backbone_hidden_size == 384
    assert model.config.backbone_config._name_or_path == str(minilm)
    checkpoint = load_file(minilm / "model.safetensors")
    backbone = dict(model.backbone.named_parameters())
    assert backbone.keys() == {key for key in checkpoint if not key.startswith("pooler.")} - {
        "embeddings.position_ids"
    }
    for name, param in backbone.items():
        assert torch.equal(param, checkpoint[name]), name


@pytest.mark.slow
def test_encode_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = rotten_tomatoes_texts()
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=260, replace=False)]
    # Snippets stop at 255 characters: join a few into texts past the 256-token limit, which must truncate alike.
    sample += [" ".join(sample[i : i + 12]) for i in range(0, 48, 12)]
    model = MultiTaskSTModel.from_backbone(str(minilm), tasks=TINY_TASKS, pooling_mode="mean", projection="none")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    assert len(tokenizer(sample[-1])["input_ids"]) > 256

    ours = model.encode(sample, tokenizer, batch_size=32, convert_to_tensor=True)
    reference = SentenceTransformer(str(minilm), device="cpu")
    assert reference.max_seq_length == 256
    theirs = reference.encode(sample, batch_size=32, convert_to_tensor=True)
    cosine = F.cosine_similarity(ours, theirs, dim=-1)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.99999, f"cosine {cosine.min():.6f} for {sample[worst]!r}"


def test_parse_part_reads_every_part_name(tiny_model):
    from multitask_st.parts_multitask_st import parse_part

    parsed = {part: parse_part(part) for part in tiny_model.parameter_parts()}
    assert parsed == {
        "backbone.embeddings": ("backbone.embeddings", None),
        "backbone.layer.0": ("backbone.layer", 0),
        "backbone.layer.1": ("backbone.layer", 1),
        "projection": ("projection", None),
        "head:topic": ("head", "topic"),
        "head:sentiment": ("head", "sentiment"),
    }
    assert parse_part("head:a.b") == ("head", "a.b") and parse_part("backbone.layer.x") == ("backbone.layer.x", None)


def test_distilbert_backbone_names_come_through_its_attribute_map():
    from transformers import DistilBertConfig

    backbone = DistilBertConfig(
        vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=37, max_position_embeddings=64
    )
    model = MultiTaskSTModel(MultiTaskSTConfig(backbone_config=backbone, tasks={"a": ["x", "y"]})).eval()
    assert model.config.backbone_hidden_size == 32 and len(model.backbone_layers()) == 3
    assert [part for part in model.parameter_parts() if part.startswith("backbone.layer.")] == [
        "backbone.layer.0",
        "backbone.layer.1",
        "backbone.layer.2",
    ]
    assert model.embed(torch.tensor([[1, 5, 7, 2]])).shape == (1, 32)


def test_heads_are_built_from_each_tasks_kind(tmp_path):
    from multitask_st.inference_multitask_st import SINGLE_LABEL
    from multitask_st.layers_multitask_st import TASK_HEADS, TASK_OUTPUTS, TASK_SCORES
    from multitask_st.losses_multitask_st import TASK_LOSSES
    from multitask_st.scores_multitask_st import LABEL_ROW_FORMATTERS, NUMPY_SCORES
    from multitask_st.task_fields_multitask_st import LABEL_WIDTHS, TASK_KINDS
    from multitask_st.training.metrics import MAIN_METRIC, TASK_METRICS
    from multitask_st.training.tokenization import LABEL_ENCODERS

    # One place each: every kind the config accepts has a head, a loss, scores, label columns, metrics and a label-row
    # formatter.
    tables = (TASK_HEADS, TASK_OUTPUTS, TASK_LOSSES, TASK_SCORES, LABEL_ROW_FORMATTERS, LABEL_WIDTHS, TASK_METRICS)
    assert all(set(table) == set(TASK_KINDS) for table in (*tables, MAIN_METRIC, LABEL_ENCODERS))
    # NUMPY_SCORES: the kinds with a head (the embedding tasks' score is the pair's cosine, computed by the runtime)
    assert set(NUMPY_SCORES) == {kind for kind in TASK_KINDS if TASK_HEADS[kind] is not None}
    assert TASK_KINDS == (
        "classification", "multi_label", "regression", "pair_classification", "pair_regression", "embedding",
        "embedding_contrastive",
    )  # fmt: skip
    config = tiny_config()
    assert config.task_kinds == {"topic": SINGLE_LABEL, "sentiment": SINGLE_LABEL}
    # transformers' problem_type names are read as ours
    aliases = tiny_config(
        task_kinds={"topic": "single_label_classification", "sentiment": "multi_label_classification"}
    )
    assert aliases.task_kinds == {"topic": "classification", "sentiment": "multi_label"}
    with pytest.raises(
        ValueError,
        match=r"`task_kinds\['topic'\]` must be one of \['classification', 'multi_label', 'regression', 'pair_class",
    ):
        tiny_config(task_kinds={"topic": "ranking"})
    with pytest.raises(ValueError, match=r"`task_kinds` names task\(s\) \['colour'\] that `tasks` does not have"):
        tiny_config(task_kinds={"colour": SINGLE_LABEL})
    # A config.json written before kinds existed loads as it did: every task single-label.
    model = make_model()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task_kinds"] == {}  # only kinds other than the default are written
    del saved["task_kinds"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = MultiTaskSTModel.from_pretrained(tmp_path)
    assert loaded.config.task_kinds == config.task_kinds
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
