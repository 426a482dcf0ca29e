"""ONNX export (multitask_st/export/onnx.py, onnx_check.py, precision_gate.py, quantize.py) and its runtime (onnx_runtime.py)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import CHECK_TEXTS, require_module, run_python, save_tiny
from conftest import EXPORT_TEXTS as TEXTS


require_module("onnxruntime")
onnx = require_module("onnx")

from multitask_st import MultiTaskSTModel  # noqa: E402
from multitask_st.configuration_multitask_st import POOLING_MODES, PROJECTIONS  # noqa: E402
from multitask_st.export import onnx_check, precision_gate  # noqa: E402
from multitask_st.export.onnx import export_onnx  # noqa: E402
from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel  # noqa: E402
from multitask_st.export.quantize import host_arch, int8_file_name  # noqa: E402
from multitask_st.sharing.model_card import render_model_card  # noqa: E402


REPO = Path(__file__).resolve().parents[1]


def assert_same_predictions(got: list[dict], expected: list[dict]):
    assert len(got) == len(expected)
    for row, reference in zip(got, expected, strict=True):
        assert list(row) == list(reference)
        for task, result in row.items():
            assert result["label"] == reference[task]["label"]
            assert list(result["probabilities"]) == list(reference[task]["probabilities"])
            np.testing.assert_allclose(
                list(result["probabilities"].values()), list(reference[task]["probabilities"].values()), atol=1e-5
            )


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("pooling_mode", POOLING_MODES)
def test_every_pooling_and_projection_exports_and_matches_pytorch(tmp_path, tiny_tokenizer, pooling_mode, projection):
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, pooling_mode=pooling_mode, projection=projection)
    report = export_onnx(model_dir, tmp_path / "onnx-model", check_texts=CHECK_TEXTS)

    assert report["fp32"]["file"] == "onnx/model.onnx"
    assert report["fp32"]["min_cosine"] >= onnx_check.FP32_MIN_COSINE
    assert report["fp32"]["labels_differing"] == {"topic": 0, "sentiment": 0}
    files = sorted(p.relative_to(tmp_path / "onnx-model").as_posix() for p in (tmp_path / "onnx-model").rglob("*"))
    assert files == [
        "config.json", "onnx", "onnx/export_report.json", "onnx/model.onnx", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    assert json.loads((tmp_path / "onnx-model/onnx/export_report.json").read_text()) == report

    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "onnx-model", threads=1)
    graph = onnx.load(str(tmp_path / "onnx-model/onnx/model.onnx"))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    assert [o.name for o in graph.graph.output] == [
        "sentence_embedding", "logits_topic", "logits_sentiment", "last_hidden_state",
    ]  # fmt: skip
    np.testing.assert_allclose(
        runtime.encode(TEXTS, batch_size=2), model.encode(TEXTS, tiny_tokenizer, batch_size=2), atol=1e-5
    )
    assert_same_predictions(runtime.predict(TEXTS, batch_size=2), model.predict(TEXTS, tiny_tokenizer, batch_size=2))


def test_normalising_config_and_the_override_both_ways(tmp_path, tiny_tokenizer):
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, normalize_embeddings=True)
    export_onnx(model_dir, model_dir, check_texts=CHECK_TEXTS)  # in place: adds onnx/ to the model folder
    runtime = MultiTaskSTOnnxModel.from_pretrained(model_dir)
    assert "sentence_embedding_unnormalized" in runtime.output_names
    for normalize in (None, True, False):
        expected = model.encode(TEXTS, tiny_tokenizer, normalize_embeddings=normalize)
        np.testing.assert_allclose(runtime.encode(TEXTS, normalize_embeddings=normalize), expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(runtime.encode(TEXTS), axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(runtime.encode(TEXTS, normalize_embeddings=False), axis=1), 1.0)


def test_runtime_shapes_and_argument_errors_follow_the_pytorch_model(tmp_path, tiny_tokenizer):
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    assert runtime.encode("the film").shape == (32,)
    assert isinstance(runtime.encode(TEXTS, convert_to_numpy=False), list)
    assert runtime.predict("the film", tasks="sentiment").keys() == {"sentiment"}
    assert_same_predictions([runtime.predict("the film")], [model.predict("the film", tiny_tokenizer)])
    np.testing.assert_allclose(runtime.encode(iter(TEXTS)), runtime.encode(TEXTS))  # any iterable
    with pytest.raises(ValueError, match=r"Unknown task\(s\) \['colour'\]; this model's tasks are"):
        runtime.predict(TEXTS, tasks=["colour"])
    np.testing.assert_allclose(runtime.encode(TEXTS, chunk_size=2), runtime.encode(TEXTS), atol=1e-6)
    assert_same_predictions(runtime.predict(TEXTS, chunk_size=2), model.predict(TEXTS, tiny_tokenizer, chunk_size=2))
    for bad, error in (
        (["fine", "  "], ValueError),
        (["fine", "\u200b"], ValueError),
        (["a", 3], TypeError),
        ([], ValueError),
    ):
        with pytest.raises(error) as ours:
            runtime.encode(bad)
        with pytest.raises(error) as pytorch:
            model.encode(bad, tiny_tokenizer)
        assert str(ours.value) == str(pytorch.value)
    with pytest.raises(ValueError, match=r"`max_length` must be an integer in 1..64 .*got 65"):
        runtime.encode(TEXTS, max_length=65)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        runtime.encode(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="needs torch"):
        runtime.encode(TEXTS, convert_to_tensor=True)
    with pytest.raises(ValueError, match="`threads` must be a positive integer, got 0"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", threads=0)
    with pytest.raises(ValueError, match="Execution provider 'NoSuchExecutionProvider' is not available"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", provider="NoSuchExecutionProvider")
    with pytest.raises(FileNotFoundError, match=r"No ONNX file 'model_fp16.onnx' in .*it has \['onnx/model.onnx'\]"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", file_name="model_fp16.onnx")


def test_runtime_streams_fills_out_and_warns_as_the_pytorch_model(tmp_path, tiny_tokenizer, caplog):
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    texts = TEXTS * 3
    whole = runtime.encode(texts)
    chunks = list(runtime.encode_chunks(iter(texts), chunk_size=4))
    assert [len(chunk) for chunk in chunks] == [4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), runtime.encode(texts, chunk_size=4))
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-6)
    predictions = [row for chunk in runtime.predict_chunks(iter(texts), tasks="topic", chunk_size=4) for row in chunk]
    assert predictions == runtime.predict(texts, tasks="topic", chunk_size=4)
    out = np.lib.format.open_memmap(tmp_path / "emb.npy", mode="w+", dtype=np.float32, shape=(len(texts), 32))
    assert runtime.encode((text for text in texts), out=out, chunk_size=4) is out
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), runtime.encode(texts, chunk_size=4))
    with pytest.raises(ValueError, match=r"`out` has 14 rows but `sentences` holds more texts than that"):
        runtime.encode(texts, out=np.empty((14, 32), dtype=np.float32))
    with pytest.raises(ValueError, match=r"`out` must be an array of shape \(n, 32\), got \(15, 8\)"):
        runtime.encode(texts, out=np.empty((15, 8), dtype=np.float32))

    class Lying(list):
        def __len__(self):
            return 99

    with caplog.at_level("WARNING"):
        runtime.encode(Lying(TEXTS))
    assert "`sentences` reported 99 texts but gave 5." in caplog.text

    # Per-token outputs: one (tokens, hidden) array per text, however the batches were padded.
    hidden, embeddings = runtime.run(texts, ["last_hidden_state", "sentence_embedding"], batch_size=2)
    lengths = [len(tiny_tokenizer(text)["input_ids"]) for text in texts]
    assert [state.shape for state in hidden] == [(length, 32) for length in lengths]
    np.testing.assert_allclose(embeddings, whole, atol=1e-6)


def test_runtime_names_the_bad_file_folder_or_value(tmp_path, tiny_tokenizer):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    with pytest.raises(TypeError, match=r"`tasks` must be a task name or a list of them .*got 5\."):
        runtime.predict(TEXTS, tasks=5)
    with pytest.raises(FileNotFoundError, match=r"No folder '.*no-such-folder' \(and it is not a Hub repo id"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "no-such-folder")
    with pytest.raises(FileNotFoundError, match=r"No folder 'not a repo!!' \(and it is not a Hub repo id"):
        MultiTaskSTOnnxModel.from_pretrained("not a repo!!")
    tokenizer_json = tmp_path / "out/tokenizer.json"
    saved = tokenizer_json.read_text()
    tokenizer_json.write_text("{}")
    with pytest.raises(ValueError, match=r"out/tokenizer.json is not a usable tokenizers file \("):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    tokenizer_json.write_text(saved)
    (tmp_path / "out/config.json").write_text('{"tasks": [')
    with pytest.raises(ValueError, match=r"out/config.json is not valid JSON \(Expecting value"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")


def test_corrupted_or_mismatched_onnx_file_is_a_clear_error(tmp_path, tiny_tokenizer):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    graph = tmp_path / "out/onnx/model.onnx"

    config = json.loads((tmp_path / "out/config.json").read_text())
    config["tasks"] = [["topic", ["world", "sports"]], ["sentiment", ["negative", "positive"]]]
    (tmp_path / "out/config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"does not match the config.json next to it: head 'topic' has 3 labels, config 2"
    ):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    config["tasks"] = [["topic", ["world", "sports", "money"]], ["sentiment", ["negative", "positive"]]]
    (tmp_path / "out/config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"label names .*business.*, config .*money"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")

    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model.onnx is not the file its export wrote: its sha256 differs"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    with pytest.raises(ValueError, match=r"Cannot load .*model.onnx as an ONNX model .*damaged or not an ONNX graph"):
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", verify_checksums=False)


def test_a_graph_that_misses_the_bounds_is_not_written(tmp_path, tiny_tokenizer, monkeypatch):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    monkeypatch.setattr(onnx_check, "FP32_MIN_COSINE", 1.5)  # no graph can pass
    with pytest.raises(ValueError, match=r"model.onnx misses the export bounds, so nothing was written: min cosine"):
        export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"misses the export bounds"):
        export_onnx(model_dir, model_dir, check_texts=CHECK_TEXTS)
    assert not (model_dir / "onnx").exists()


GATE_TEXTS = 40  # texts per built-in set the int8 gate judges on (the default, 2000, is for real models)
LOOSE = {
    "max_flip_rate": 1.0,
    "max_accuracy_drop": 100.0,
    "max_spearman_drop": 200.0,
    "min_mean_cosine": -1.0,
    "max_regression_difference": 100.0,
}
INTEGER_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}


def test_int8_is_judged_and_reported(tmp_path, tiny_tokenizer):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    # A random tiny model's heads sit near ties: loose bounds test the write path and the report.
    gate = precision_gate.GateBounds(**LOOSE)
    report = export_onnx(
        model_dir,
        tmp_path / "out",
        quantize="int8",
        arch="avx512_vnni",
        check_texts=CHECK_TEXTS,
        gate=gate,
        gate_texts=GATE_TEXTS,
    )
    int8 = report["int8"]
    assert int8["file"] == "onnx/model_qint8_avx512_vnni.onnx"
    assert int8["passed"] is True and int8["refusals"] == []
    assert int8["bounds"] == {**LOOSE, "confidence": 0.95}
    # No training record: no labelled texts; STS-B test sentences and both built-in sets' texts, unlabelled.
    assert int8["texts"] == 3 * GATE_TEXTS == sum(int8["sources"].values())  # STS-B: GATE_TEXTS / 2 pairs
    assert [source.split(" ")[0] for source in int8["sources"]] == ["STS-B", "bbc_news", "rotten_tomatoes"]
    assert all(source.endswith("unlabelled") for source in list(int8["sources"])[1:])
    for task in ("topic", "sentiment"):
        flips = int8["tasks"][task]["flips"]
        assert flips["texts"] == int8["texts"] and "accuracy" not in int8["tasks"][task]
        low, high = flips["flip_rate_interval"]
        assert low <= flips["flips"] / flips["texts"] == flips["flip_rate"] <= high
    assert int8["stsb_spearman"]["data"] == "STS-B test (20 pairs)" and int8["stsb_spearman"]["pairs"] == 20
    quantization = int8["quantization"]
    assert quantization["reduce_range"] is False and quantization["per_channel"] is True
    assert quantization["nodes_kept_fp32"] == [] and len(quantization["search"]) == 1  # the first graph passed
    graph = onnx.load(str(tmp_path / "out" / int8["file"]))
    quantized = [node.name for node in graph.graph.node if node.op_type in INTEGER_OPS]
    assert any(name.startswith("/backbone/") for name in quantized)
    assert any(name.startswith("Attention_") for name in quantized)  # the fused attention's projections
    kept = ("/projection/", "/topic/", "/sentiment/", "/pooling/")
    assert not [name for name in quantized if name.startswith(kept)]  # projection and heads stay fp32
    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", file_name="model_qint8_avx512_vnni.onnx")
    assert runtime.encode(TEXTS).shape == (len(TEXTS), 32)
    assert json.loads((tmp_path / "out/onnx/export_report.json").read_text())["int8"] == int8


def test_the_gate_judges_a_multi_label_heads_label_sets_and_a_regression_heads_values(tmp_path, tiny_tokenizer):
    kinds = {"tags": "multi_label", "score": "regression"}
    tasks = {"topic": ["world", "sports", "business"], "tags": ["a", "b"], "score": ["x", "y"]}
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=20.0, tasks=tasks, task_kinds=kinds)
    report = export_onnx(
        model_dir, tmp_path / "out", quantize="int8", arch="avx512_vnni", check_texts=CHECK_TEXTS,
        gate=precision_gate.GateBounds(**LOOSE), gate_texts=GATE_TEXTS,
    )  # fmt: skip
    fp32, int8 = report["fp32"], report["int8"]
    assert fp32["labels_differing"] == {"topic": 0, "tags": 0}  # the label sets, thresholds applied
    assert 0 <= fp32["regression_max_difference"]["score"] <= fp32["bounds"]["regression_max_difference"]
    assert set(int8["tasks"]["score"]) == {"mean_abs_difference_std"} and "flips" in int8["tasks"]["tags"]
    assert int8["tasks"]["score"]["mean_abs_difference_std"] > 0  # int8 moves the values a little
    assert int8["passed"] and int8["bounds"]["max_regression_difference"] == LOOSE["max_regression_difference"]


def test_the_gate_refuses_on_each_kind_of_evidence(tmp_path, tiny_tokenizer):
    """Every branch of the gate on a forced miss: a reference that the (fp32) graph disagrees with by construction."""
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, GATE_TEXTS)
    loose = precision_gate.GateBounds(**LOOSE)

    def judge(bounds=loose):
        return precision_gate.judge_graph(reference, tmp_path / "out", "model.onnx", bounds)

    same = judge(precision_gate.GateBounds(max_flip_rate=0.0))  # the fp32 graph: PyTorch's decisions exactly
    assert same["passed"] and all(row["flips"]["flips"] == 0 for row in same["tasks"].values())

    # Flips: PyTorch's topic label "changed" on a third of the texts.
    names = reference.label_names["topic"]
    original = reference.labels["topic"].copy()
    changed = np.arange(0, len(original), 3)
    reference.labels["topic"][changed] = [names[(names.index(label) + 1) % len(names)] for label in original[changed]]
    refused = judge(precision_gate.GateBounds(**{**LOOSE, "max_flip_rate": 0.2}))
    assert refused["tasks"]["topic"]["flips"]["flips"] == len(changed) and refused["passed"] is False
    assert refused["refusals"] == [
        f"head 'topic' changes {len(changed)} of {len(original)} labels (at least "
        f"{refused['tasks']['topic']['flips']['flip_rate_interval'][0]:.2%} at 95% confidence, bound 20.00%)"
    ]
    assert judge(precision_gate.GateBounds(**{**LOOSE, "max_flip_rate": 0.4}))["passed"]  # a third is within 40%

    # Accuracy: gold labels on which "PyTorch" (the changed labels) is right and the graph wrong.
    reference.labelled["topic"] = (changed, reference.labels["topic"][changed].copy(), "constructed")
    refused = judge(precision_gate.GateBounds(**{**LOOSE, "max_accuracy_drop": 10.0}))
    accuracy = refused["tasks"]["topic"]["accuracy"]
    assert accuracy["pytorch_right_graph_wrong"] == len(changed) and accuracy["pytorch_wrong_graph_right"] == 0
    assert accuracy["accuracy_pytorch"] == 100.0 and accuracy["accuracy_graph"] == 0.0
    assert accuracy["mcnemar_p_value"] == pytest.approx(2 * 0.5 ** len(changed))
    assert (
        refused["passed"] is False
        and len(refused["refusals"]) == 1
        and refused["refusals"][0].startswith(
            "head 'topic' accuracy 0.00% vs PyTorch 100.00% on constructed (drop at least"
        )
    )
    reference.labels["topic"], reference.labelled = original, {}

    # STS-B: "PyTorch" similarities that rank the pairs exactly as the gold scores do.
    pairs = len(reference.stsb_scores)
    angle = (5 - reference.stsb_scores) / 5 * np.pi / 2
    reference.embeddings[:pairs] = 0
    reference.embeddings[:pairs, 0] = 1
    reference.embeddings[pairs : 2 * pairs] = 0
    reference.embeddings[pairs : 2 * pairs, 0] = np.cos(angle)
    reference.embeddings[pairs : 2 * pairs, 1] = np.sin(angle)
    refused = judge()
    assert refused["stsb_spearman"]["pytorch"] == pytest.approx(100.0)
    assert refused["stsb_spearman"]["delta_points_interval"][1] < -5 and refused["passed"]  # loose: 200 points
    refused = judge(precision_gate.GateBounds(**{**LOOSE, "max_spearman_drop": 5.0}))
    assert refused["passed"] is False and len(refused["refusals"]) == 1
    assert refused["refusals"][0].startswith("STS-B Spearman ")

    # Embeddings: the opposite direction everywhere.
    reference.embeddings *= -1
    refused = judge(precision_gate.GateBounds(**{**LOOSE, "min_mean_cosine": 0.0}))
    assert refused["mean_cosine"] < 0.0 and refused["passed"] is False
    assert refused["refusals"] == [f"mean embedding cosine to PyTorch {refused['mean_cosine']:.4f} < 0.0"]


def test_a_refused_int8_graph_keeps_its_most_sensitive_nodes_in_fp32(tmp_path, tiny_tokenizer):
    from multitask_st.export.quantize import quantizable_nodes, quantize_int8

    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    # A record that says the sentiment head was trained on Rotten Tomatoes: its every split is labelled gate data.
    summary = {"datasets": {"sentiment": {"name": "rotten_tomatoes"}}, "training_args": {"seed": 0}}
    (model_dir / "training_summary.json").write_text(json.dumps(summary))
    export_onnx(model_dir, tmp_path / "fp32", check_texts=CHECK_TEXTS)
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, GATE_TEXTS)
    fp32 = tmp_path / "fp32/onnx/model.onnx"
    # A bound on the mean cosine halfway between the best whole-encoder int8 graph's and 1: every variant of the
    # whole-encoder graph is refused, the graph with every node in fp32 (the fp32 graph) passes.
    cosines = []
    for options in ({}, {"reduce_range": True}, {"per_channel": False}):
        quantize_int8(fp32, tmp_path / "fp32/onnx/candidate.onnx", "avx512_vnni", **options)
        loose = precision_gate.GateBounds(**LOOSE)
        cosines.append(
            precision_gate.judge_graph(reference, tmp_path / "fp32", "candidate.onnx", loose)["mean_cosine"]
        )
    bound = (1 + max(cosines)) / 2
    gate = precision_gate.GateBounds(**{**LOOSE, "min_mean_cosine": bound})
    report = export_onnx(
        model_dir,
        model_dir,
        quantize="int8",
        arch="avx512_vnni",
        check_texts=CHECK_TEXTS,
        gate=gate,
        gate_texts=GATE_TEXTS,
    )
    int8 = report["int8"]
    accuracy = int8["tasks"]["sentiment"]["accuracy"]
    assert accuracy["texts"] == GATE_TEXTS and accuracy["data"].startswith("rotten_tomatoes train+validation+test")
    assert "accuracy" not in int8["tasks"]["topic"]
    quantization = int8["quantization"]
    kept = quantization["nodes_kept_fp32"]
    nodes = quantizable_nodes(fp32)
    assert int8["passed"] and int8["mean_cosine"] >= bound
    assert 0 < len(kept) < len(nodes)
    search = quantization["search"]
    assert [attempt["passed"] for attempt in search[:3]] == [False, False, False]
    assert [(attempt["reduce_range"], attempt["per_channel"]) for attempt in search[:3]] == [
        (False, True),
        (True, True),
        (False, False),
    ]
    assert all(attempt["refusals"][0].startswith("mean embedding cosine") for attempt in search[:3])
    # The fewest: the most sensitive nodes, one fewer of which was tried and refused.
    assert kept == sorted(list(quantization["sensitivity"])[: len(kept)])
    assert sorted(quantization["sensitivity"]) == sorted(nodes)
    assert any(not attempt["passed"] and attempt["nodes_kept_fp32"] == len(kept) - 1 for attempt in search)
    assert search[-1]["passed"] or any(
        attempt["passed"] and attempt["nodes_kept_fp32"] == len(kept) for attempt in search
    )
    graph = onnx.load(str(model_dir / int8["file"]))
    by_name = {node.name: node.op_type for node in graph.graph.node}
    assert all(by_name[name] in ("MatMul", "Attention") for name in kept)  # still the fp32 ops
    assert any(op in INTEGER_OPS for op in by_name.values())  # the rest is int8
    speed = quantization["texts_per_second"]
    assert set(speed) == {"texts", "fp32", "int8_whole_encoder", "int8_this_graph"} and speed["texts"] > 0
    assert sorted(path.name for path in (model_dir / "onnx").iterdir()) == [
        "export_report.json",
        "model.onnx",
        "model_qint8_avx512_vnni.onnx",
    ]  # no scratch graph left behind

    card = render_model_card(model_dir, repo_id="org/tiny", revision="abc")
    row = next(line for line in card.splitlines() if line.startswith("| `onnx/model_qint8_avx512_vnni.onnx` | int8 |"))
    assert f"{int8['texts']} texts: STS-B test sentences (20 pairs)" in row
    flips = int8["tasks"]["sentiment"]["flips"]
    assert f"`sentiment` changes {flips['flips']} of {flips['texts']} labels" in row
    assert f"exact McNemar p = {accuracy['mcnemar_p_value']:.2g}" in row
    assert f"{len(kept)} encoder nodes kept in fp32: " + ", ".join(f"`{name}`" for name in kept) in row
    assert "texts/s at export" in row and "(Clopper-Pearson) interval, and on labelled texts the paired" in card


def test_no_int8_graph_at_all_is_refused_and_nothing_written(tmp_path, tiny_tokenizer, monkeypatch):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    judge = precision_gate.judge_graph

    def refuse_all(*args):  # a gate nothing passes, not even the graph with every encoder node in fp32
        return {**judge(*args), "passed": False, "refusals": ["forced"]}

    monkeypatch.setattr(precision_gate, "judge_graph", refuse_all)
    with pytest.raises(
        ValueError, match=r"No int8 graph passes the gate, not even with all \d+ encoder nodes in fp32: forced"
    ):
        export_onnx(
            model_dir, tmp_path / "out", quantize="int8", arch="avx2", check_texts=CHECK_TEXTS, gate_texts=GATE_TEXTS
        )
    assert not (tmp_path / "out").exists()


def test_export_arguments_are_checked(tmp_path, tiny_tokenizer):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    choices = r"`quantize` must be one of \['int8', 'int8_static', 'bf16'\], a list of them, or None, got "
    with pytest.raises(ValueError, match=choices + "'int4'"):
        export_onnx(model_dir, tmp_path / "out", quantize="int4")
    with pytest.raises(ValueError, match=choices + r"\['int8', 'fp16'\]"):
        export_onnx(model_dir, tmp_path / "out", quantize=["int8", "fp16"])
    with pytest.raises(ValueError, match=r"`arch` must be one of .*avx512_vnni.*, got 'sse2'"):
        export_onnx(model_dir, tmp_path / "out", quantize="int8", arch="sse2")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"`output_dir` .*busy' must be a new or empty folder"):
        export_onnx(model_dir, tmp_path / "busy")
    assert host_arch() in ("avx512_vnni", "avx512", "avx2", "arm64")
    assert int8_file_name("arm64") == "model_qint8_arm64.onnx"


def test_gate_options_are_checked_before_any_work(tmp_path, tiny_tokenizer, capsys):
    from multitask_st.cli import export as export_cli

    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    capsys.readouterr()
    argv = [str(model_dir), "--format", "onnx", "--output", str(tmp_path / "out")]
    for extra, message in [
        (["--max_flip_rate", "0.01"], "--max_flip_rate sets the int8 gate; it needs --quantize int8."),
        (
            ["--quantize", "int8", "--confidence", "95"],
            "`confidence` must be a float strictly between 0 and 1, got 95.0.",
        ),
        (["--quantize", "int8", "--max_flip_rate", "2"], "`max_flip_rate` must be a number in [0.0, 1.0], got 2.0."),
        (["--quantize", "int8", "--gate_texts", "many"], "--gate_texts takes a positive number or 'all', got 'many'."),
    ]:
        assert export_cli.main(argv + extra) == 1
        assert capsys.readouterr().err == f"multitask-st export: error: {message}\n"
    st_argv = [str(model_dir), "--format", "sentence-transformers", "--output", str(tmp_path / "out")]
    assert export_cli.main(st_argv + ["--gate_texts", "10"]) == 1
    assert capsys.readouterr().err == "multitask-st export: error: --gate_texts applies to --format onnx only.\n"
    with pytest.raises(TypeError, match=r"`gate` must be a GateBounds or None, got dict"):
        export_onnx(model_dir, tmp_path / "out", quantize="int8", gate={"max_flip_rate": 0.1})
    with pytest.raises(ValueError, match=r"`gate_texts` must be a positive int or None \(all texts\), got 0"):
        export_onnx(model_dir, tmp_path / "out", quantize="int8", gate_texts=0)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_runtime_imports_neither_torch_nor_transformers(tmp_path, tiny_tokenizer):
    """The ONNX door as an ONNX-only install sees it: torch and transformers blocked, the package root imported."""
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    script = f"""
import json, sys
import multitask_st
from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel
model = MultiTaskSTOnnxModel.from_pretrained({str(tmp_path / "out")!r}, threads=1)
try:
    model.predict("x", tasks=5)
except TypeError as error:
    refused = str(error)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "transformers") and sys.modules[name])
print(json.dumps({{"embeddings": model.encode({TEXTS!r}).tolist(), "predictions": model.predict({TEXTS!r}),
                  "loaded": loaded, "refused": refused}}))
"""
    result = run_python(script, tmp_path, block=("torch", "transformers"), timeout=300)  # any such import fails
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["loaded"] == []
    np.testing.assert_allclose(output["embeddings"], model.encode(TEXTS, tiny_tokenizer), atol=1e-5)
    assert_same_predictions(output["predictions"], model.predict(TEXTS, tiny_tokenizer))
    with pytest.raises(TypeError) as pytorch_error:
        model.predict("x", tiny_tokenizer, tasks=5)
    assert output["refused"] == str(pytorch_error.value)  # the engine's own message, with or without torch


@pytest.mark.slow
def test_runtime_equals_pytorch_on_minilm(minilm_exported):
    from transformers import AutoTokenizer

    from multitask_st.data.corpora import rotten_tomatoes

    model = MultiTaskSTModel.from_pretrained(minilm_exported.model_dir).eval()
    assert model.config.projection == "mlp"
    tokenizer = AutoTokenizer.from_pretrained(minilm_exported.model_dir)
    assert minilm_exported.report["fp32"]["min_cosine"] >= 0.99999

    texts = list(rotten_tomatoes()["test"]["text"][:200])
    runtime = MultiTaskSTOnnxModel.from_pretrained(minilm_exported.onnx_dir, threads=2)
    graph = onnx.load(str(minilm_exported.onnx_dir / "onnx/model.onnx"), load_external_data=False)
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= {n.op_type for n in graph.graph.node}
    np.testing.assert_allclose(runtime.encode(texts), model.encode(texts, tokenizer), atol=2e-5)
    assert_same_predictions(runtime.predict(texts), model.predict(texts, tokenizer))


def test_staging_uploads_the_export_and_the_card_shows_it(tmp_path, tiny_tokenizer):
    from multitask_st.sharing.staging import STALE_WEIGHT_PATTERNS, stage_model_dir

    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx/notes.txt").write_text("not an export file")
    staged_without = stage_model_dir(model_dir, tmp_path / "stage0")
    assert not [name for name in staged_without if name.startswith("onnx/")]
    assert "Fast CPU inference" not in (tmp_path / "stage0/README.md").read_text()

    (model_dir / "onnx/notes.txt").unlink()
    (model_dir / "onnx").rmdir()
    report = export_onnx(model_dir, model_dir, check_texts=CHECK_TEXTS)
    staged = stage_model_dir(model_dir, tmp_path / "stage", repo_id="org/tiny")
    assert {"onnx/model.onnx", "onnx/export_report.json"} <= set(staged)
    card = (tmp_path / "stage/README.md").read_text()
    assert "### Fast CPU inference (ONNX)" in card
    assert "MultiTaskSTOnnxModel.from_pretrained(" in card and '"org/tiny", file_name="onnx/model.onnx"' in card
    assert f"min embedding cosine {report['fp32']['min_cosine']:.6f}; labels differing: 0" in card
    assert "onnx/*.onnx" in STALE_WEIGHT_PATTERNS  # a re-upload without an export removes the old one


# ---------------------------------------------------------------------------------------------------- export.py


def _export_py(*args: str, timeout: int = 300):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, str(REPO / "export.py"), *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


@pytest.mark.slow  # two runs of export.py, each a fresh interpreter
def test_export_py_onnx_as_a_command(tmp_path, tiny_tokenizer, capsys):
    from multitask_st.cli import export

    model, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    out = tmp_path / "out"
    # As a command: the script's exit status, its report on stdout, its error named after it on stderr.
    first = _export_py(str(model_dir), "--format", "onnx", "--output", str(out))
    assert first.returncode == 0, first.stderr
    line = next(line for line in first.stdout.splitlines() if line.startswith("onnx/model.onnx: "))
    assert json.loads(line.split(": ", 1)[1])["labels_differing"] == {"topic": 0, "sentiment": 0}
    runtime = MultiTaskSTOnnxModel.from_pretrained(out)
    np.testing.assert_allclose(runtime.encode(TEXTS), model.encode(TEXTS, tiny_tokenizer), atol=1e-5)

    again = _export_py(str(model_dir), "--format", "onnx", "--output", str(out))
    assert again.returncode == 1 and again.stdout == ""
    assert (
        again.stderr.startswith("export.py: error: `output_dir`")
        and "pass overwrite=True (--overwrite)" in again.stderr
    )

    # The rest is the same `main` the script calls (exit status returned, errors on stderr): run in this process.
    def export_py(*args: str) -> tuple[int, str]:
        code = export.main(list(args), prog="export.py")
        return code, capsys.readouterr().err

    (out / "onnx" / "model.onnx").write_bytes(b"stale")
    code, error = export_py(str(model_dir), "--format", "onnx", "--output", str(out), "--overwrite")
    assert code == 0, error
    assert MultiTaskSTOnnxModel.from_pretrained(out).encode(TEXTS).shape == (len(TEXTS), 32)

    code, error = export_py(
        str(model_dir), "--format", "sentence-transformers", "--output", str(tmp_path / "st"), "--quantize", "int8"
    )
    assert code == 1 and "export.py: error: --quantize applies to --format onnx only." in error
    code, error = export_py(str(tmp_path / "nope"), "--format", "onnx", "--output", str(tmp_path / "x"))
    assert code == 1 and "does not exist or is not a directory" in error


def test_export_py_int8_miss_exits_1_and_writes_nothing(tmp_path, tiny_tokenizer, monkeypatch, capsys):
    from multitask_st.cli import export

    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    judge = precision_gate.judge_graph
    monkeypatch.setattr(
        precision_gate, "judge_graph", lambda *args: {**judge(*args), "passed": False, "refusals": ["forced"]}
    )
    code = export.main(
        [str(model_dir), "--format", "onnx", "--quantize", "int8", "--arch", "avx2", "--output", str(model_dir),
         "--gate_texts", str(GATE_TEXTS)]
    )  # fmt: skip
    assert code == 1
    error = capsys.readouterr().err
    assert "error: No int8 graph passes the gate, not even with all" in error and "forced" in error
    assert not (
        model_dir / "onnx"
    ).exists()  # in place: not even the fp32 graph, which passed  # in place: not even the fp32 graph, which passed
