"""Reduced precision without export: `encode`/`predict`/the pipeline with `dtype=` (autocast, the weights left as
loaded), and the gate that judges it (`precision_gate.judge_dtype`) as it judges an int8 graph."""

import os
import threading

import numpy as np
import pytest
import torch
from conftest import LONG_TEXTS, TEXTS, make_model, require_module, save_tiny

from multitask_st.export import precision_gate
from multitask_st.pipeline_multitask_st import MultiTaskSTPipeline


# bf16 keeps 8 bits of mantissa: on the tiny model an embedding moves by up to ~1e-2 (cosine ~0.9999) and a
# probability by a few 1e-3. The doors that run the same batches agree exactly; a text run alone (another batch
# shape, no padding) agrees within this.
BF16_ATOL = 2e-2
BAD_DTYPE = (
    "`dtype` must be one of torch.float32, torch.bfloat16, torch.float16 (or its name as a string) or None, got "
)


def cosine(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def probabilities(predictions, task):
    return np.asarray([list(row[task]["probabilities"].values()) for row in predictions])


def test_bf16_runs_in_bf16_close_to_fp32_and_leaves_the_weights_alone(tiny_tokenizer):
    model = make_model()
    texts = TEXTS + LONG_TEXTS
    fp32 = model.encode(texts, tiny_tokenizer)
    bf16 = model.encode(texts, tiny_tokenizer, dtype=torch.bfloat16)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # it did run in another precision
    assert cosine(bf16, fp32).min() > 0.999
    np.testing.assert_array_equal(model.encode(texts, tiny_tokenizer, dtype="bfloat16"), bf16)  # the name works too
    np.testing.assert_array_equal(model.encode(texts, tiny_tokenizer, dtype=torch.float32), fp32)  # no autocast
    assert {param.dtype for param in model.parameters()} == {torch.float32}
    np.testing.assert_array_equal(model.encode(texts, tiny_tokenizer), fp32)  # nothing left switched on

    expected = model.predict(texts, tiny_tokenizer)
    got = model.predict(texts, tiny_tokenizer, dtype=torch.bfloat16)
    for task in model.config.task_names:
        np.testing.assert_allclose(probabilities(got, task), probabilities(expected, task), atol=BF16_ATOL)
        assert not np.array_equal(probabilities(got, task), probabilities(expected, task))
    # predict's and encode's bf16 runs are the same forward passes
    chunks = model.score_chunks(texts, tiny_tokenizer, with_embeddings=True, dtype=torch.bfloat16)
    np.testing.assert_array_equal(np.concatenate(list(chunks))[:, -model.config.embedding_dim :], bf16)


def test_bf16_through_the_pipeline_matches_predict(tiny_tokenizer):
    model = make_model()
    texts = TEXTS + LONG_TEXTS
    expected = model.predict(texts, tiny_tokenizer, dtype=torch.bfloat16)
    classifier = MultiTaskSTPipeline(model=model, tokenizer=tiny_tokenizer)
    listed = classifier(texts, dtype=torch.bfloat16, top_k=None)  # the list path: predict's batches, exactly
    streamed = list(classifier((text for text in texts), dtype="bfloat16", top_k=None))  # one text per forward pass
    for task in model.config.task_names:
        want = probabilities(expected, task)
        for rows, exact in ((listed, True), (streamed, False)):
            got = np.asarray(
                [[dict((e["label"], e["score"]) for e in row[task])[label] for label in model.config.tasks[task]]
                 for row in rows]
            )  # fmt: skip
            if exact:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, atol=BF16_ATOL)
    fp32 = classifier(texts, top_k=None)
    assert fp32 != listed  # the per-call dtype applied, and only to its call


def test_bf16_is_padding_invariant_within_the_tolerance(tiny_tokenizer):
    model = make_model()
    alone = np.stack([model.encode(text, tiny_tokenizer, dtype=torch.bfloat16) for text in TEXTS])
    padded = model.encode(TEXTS + LONG_TEXTS, tiny_tokenizer, batch_size=64, dtype=torch.bfloat16)[: len(TEXTS)]
    np.testing.assert_allclose(padded, alone, atol=BF16_ATOL)
    assert cosine(padded, alone).min() > 0.999


def test_bf16_and_fp32_calls_from_two_threads_do_not_mix(tiny_tokenizer):
    model = make_model()
    texts = (TEXTS + LONG_TEXTS) * 3
    expected = {None: model.encode(texts, tiny_tokenizer), torch.bfloat16: model.encode(texts, tiny_tokenizer,
                                                                                        dtype=torch.bfloat16)}  # fmt: skip
    results, errors = {}, []

    def run(dtype):
        try:
            results[dtype] = [model.encode(texts, tiny_tokenizer, batch_size=2, dtype=dtype) for _ in range(4)]
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(dtype,)) for dtype in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for dtype, runs in results.items():
        for got in runs:  # batch size 2 here, 32 above: the same rows within the tolerance, never the other dtype's
            np.testing.assert_allclose(got, expected[dtype], atol=1e-5 if dtype is None else BF16_ATOL)
    assert not np.allclose(expected[None], expected[torch.bfloat16], atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.int8, "half", "bf16", 16, torch.float64])
def test_a_bad_dtype_is_named_on_every_door(tiny_tokenizer, dtype):
    model = make_model()
    message = BAD_DTYPE + repr(dtype)
    with pytest.raises(ValueError) as raised:
        model.encode(TEXTS, tiny_tokenizer, dtype=dtype)
    assert str(raised.value) == message + "."
    for call in (
        lambda: model.predict(TEXTS, tiny_tokenizer, dtype=dtype),
        lambda: model.encode_chunks(TEXTS, tiny_tokenizer, dtype=dtype),  # at the call, before any text is read
        lambda: MultiTaskSTPipeline(model=model, tokenizer=tiny_tokenizer)(TEXTS, dtype=dtype),
    ):
        with pytest.raises(ValueError, match=r"^" + __import__("re").escape(message + ".") + r"$"):
            call()


def test_the_gate_judges_bf16_against_fp32(tmp_path, tiny_tokenizer):
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, 40)
    # The reference is predict's and encode's fp32 output, from one pass.
    np.testing.assert_array_equal(reference.embeddings, model.encode(reference.texts, tiny_tokenizer))
    predictions = model.predict(reference.texts, tiny_tokenizer)
    for task in model.config.task_names:
        assert reference.labels[task].tolist() == [row[task]["label"] for row in predictions]

    same = precision_gate.judge_dtype(
        reference, model, tiny_tokenizer, torch.float32, precision_gate.GateBounds(max_flip_rate=0)
    )
    assert same["dtype"] == "float32" and same["passed"] and same["refusals"] == []
    assert all(row["flips"]["flips"] == 0 for row in same["tasks"].values()) and same["min_cosine"] > 0.99999

    evidence = precision_gate.judge_dtype(reference, model, tiny_tokenizer, torch.bfloat16)
    assert evidence["dtype"] == "bfloat16" and evidence["texts"] == len(reference.texts)
    bf16 = model.predict(reference.texts, tiny_tokenizer, dtype=torch.bfloat16)
    for task in model.config.task_names:
        flips = sum(row[task]["label"] != want[task]["label"] for row, want in zip(bf16, predictions, strict=True))
        assert evidence["tasks"][task]["flips"]["flips"] == flips
    embeddings = model.encode(reference.texts, tiny_tokenizer, dtype=torch.bfloat16)
    assert evidence["mean_cosine"] == pytest.approx(cosine(embeddings, reference.embeddings).mean(), abs=1e-6)
    assert evidence["passed"] == (evidence["refusals"] == [])
    assert evidence["bounds"] == {**precision_gate.GateBounds().__dict__}
    strict = precision_gate.judge_dtype(
        reference, model, tiny_tokenizer, torch.bfloat16, precision_gate.GateBounds(min_mean_cosine=1.0)
    )
    assert not strict["passed"] and strict["refusals"][-1].startswith("mean embedding cosine to PyTorch ")


def test_the_gate_command_prints_the_evidence_and_the_verdict(tmp_path, tiny_tokenizer, capsys):
    from multitask_st import cli

    _, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    evidence_file = tmp_path / "bf16.json"
    status = cli.main(["gate", str(model_dir), "--gate_texts", "40", "--json", str(evidence_file)])
    out, err = capsys.readouterr()
    evidence = __import__("json").loads(evidence_file.read_text())
    assert evidence["dtype"] == "bfloat16" and evidence["texts"] == 120
    assert status == (0 if evidence["passed"] else 1)
    assert out.startswith("bfloat16 vs float32 on 120 texts: STS-B test sentences (20 pairs)")
    flips = evidence["tasks"]["topic"]["flips"]
    assert f"`topic` changes {flips['flips']} of 120 labels" in out
    # A bound nothing meets: refused, exit status 1, the refusal on stderr.
    assert cli.main(["gate", str(model_dir), "--gate_texts", "40", "--min_mean_cosine", "1.0"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bars
    assert last.startswith("multitask-st gate: refused: mean embedding cosine to PyTorch ") and last.endswith(" < 1.0")
    assert cli.main(["gate", str(tmp_path / "missing")]) == 1
    assert "does not exist or is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- OpenVINO


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_tokenizer):
    from multitask_st.export.onnx import export_onnx

    tmp_path = tmp_path_factory.mktemp("openvino")
    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    export_onnx(model_dir, tmp_path / "out", check_texts=24)
    return model, model_dir, tmp_path / "out"


def test_the_exported_graph_runs_on_openvino_behind_the_same_api(exported):
    require_module("openvino")
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    _, _, folder = exported
    texts = TEXTS + LONG_TEXTS
    ort = MultiTaskSTOnnxModel.from_pretrained(folder, threads=1)
    f32 = MultiTaskSTOnnxModel.from_pretrained(folder, backend="openvino", dtype="float32", threads=1)
    assert f32.session.precision == "<Type: 'float32'>"
    np.testing.assert_allclose(f32.encode(texts), ort.encode(texts), atol=1e-4)
    for task in ort.task_names:
        np.testing.assert_allclose(
            probabilities(f32.predict(texts), task), probabilities(ort.predict(texts), task), atol=1e-4
        )
    chunks = list(f32.predict_chunks(texts, chunk_size=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, len(texts) - 6]
    for task in f32.task_names:  # other batches (other padding): equal within float rounding
        np.testing.assert_allclose(
            probabilities(sum(chunks, []), task), probabilities(f32.predict(texts), task), atol=1e-5
        )
    default = MultiTaskSTOnnxModel.from_pretrained(folder, backend="openvino", threads=1)
    bf16 = default.encode(texts)
    assert cosine(bf16, ort.encode(texts)).min() > 0.99
    if default.session.precision == "<Type: 'bfloat16'>":  # a CPU with AVX-512 BF16 or AMX (this project's has)
        assert not np.allclose(bf16, ort.encode(texts), atol=1e-5)

    results, errors = [], []

    def run():
        try:
            results.append(default.encode(texts * 4, batch_size=2))
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 3
    for got in results:  # one infer request per thread: no call sees another's outputs
        np.testing.assert_allclose(got, np.concatenate([default.encode(texts, batch_size=2)] * 4), atol=1e-6)


def test_the_throughput_hint_runs_batches_at_once_with_the_same_outputs(exported):
    require_module("openvino")
    from multitask_st.export.onnx import HIDDEN_STATE_OUTPUT
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    _, _, folder = exported
    texts = (TEXTS + LONG_TEXTS) * 3
    latency = MultiTaskSTOnnxModel.from_pretrained(folder, backend="openvino", dtype="float32")
    throughput = MultiTaskSTOnnxModel.from_pretrained(
        folder, backend="openvino", dtype="float32", performance_hint="throughput"
    )
    assert latency.session.concurrent_batches == 1
    if len(os.sched_getaffinity(0)) > 1:  # one stream per core this process may use (the plugin's choice)
        assert throughput.session.concurrent_batches > 1
    throughput.session.concurrent_batches = max(2, throughput.session.concurrent_batches)  # in flight at once
    calls = []
    run_batches = throughput.session.run_batches
    throughput.session.run_batches = lambda *args: calls.append(1) or run_batches(*args)
    # Many small batches, finishing out of order: every row back in its place, the same numbers as one at a time.
    np.testing.assert_array_equal(throughput.encode(texts, batch_size=2), latency.encode(texts, batch_size=2))
    for task in latency.task_names:
        np.testing.assert_array_equal(
            probabilities(throughput.predict(texts, batch_size=3, show_progress_bar=True), task),
            probabilities(latency.predict(texts, batch_size=3), task),
        )
    (tokens,) = throughput.run(texts, [HIDDEN_STATE_OUTPUT], batch_size=2)  # per-token outputs, cut per text
    (expected,) = latency.run(texts, [HIDDEN_STATE_OUTPUT], batch_size=2)
    assert [len(row) for row in tokens] == [len(row) for row in expected]
    for got, want in zip(tokens, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(calls) == 2 + len(latency.task_names)  # every call above ran its batches at once
    # embeddings and heads ran on the graph without the per-token output (a copy of every token's vector per batch)
    session = throughput.session
    pooled = session._compiled_for(["sentence_embedding"])
    names = {port.get_any_name() for port in pooled.outputs}
    assert names == {port.get_any_name() for port in session.compiled.outputs} - {HIDDEN_STATE_OUTPUT}
    assert session._compiled_for([HIDDEN_STATE_OUTPUT]) is session.compiled
    with pytest.raises(
        ValueError, match=r"^`performance_hint` must be one of \['latency', 'throughput'\], got 'fast'\.$"
    ):
        MultiTaskSTOnnxModel.from_pretrained(folder, backend="openvino", performance_hint="fast")
    with pytest.raises(
        ValueError,
        match=r"^`performance_hint` is OpenVINO's \(backend='openvino'\); got 'throughput' for onnxruntime\.$",
    ):
        MultiTaskSTOnnxModel.from_pretrained(folder, performance_hint="throughput")


def test_openvino_bf16_is_judged_by_the_gate(exported, tiny_tokenizer):
    require_module("openvino")
    model, model_dir, folder = exported
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, 40)
    evidence = precision_gate.judge_graph(
        reference, folder, "model.onnx", precision_gate.GateBounds(), backend="openvino"
    )
    assert evidence["backend"] == "openvino" and evidence["file"] == "model.onnx"
    assert evidence["precision"] in ("<Type: 'bfloat16'>", "<Type: 'float32'>")
    assert evidence["texts"] == len(reference.texts) and set(evidence["tasks"]) == set(model.config.task_names)
    assert evidence["passed"] == (evidence["refusals"] == [])
    refused = precision_gate.judge_graph(
        reference, folder, "model.onnx", precision_gate.GateBounds(min_mean_cosine=1.0), backend="openvino"
    )
    if evidence["precision"] == "<Type: 'bfloat16'>":
        assert not refused["passed"] and refused["refusals"][-1].startswith("mean embedding cosine to PyTorch ")


def test_backend_and_dtype_are_checked(exported):
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    _, _, folder = exported
    with pytest.raises(
        ValueError, match=r"^`backend` must be one of \['onnxruntime', 'openvino'\], got 'tensorrt'\.$"
    ):
        MultiTaskSTOnnxModel.from_pretrained(folder, backend="tensorrt")
    with pytest.raises(
        ValueError,
        match=r"^`dtype` 'bfloat16' is not offered on onnxruntime, which runs \['float32'\] \(bf16: backend='openvino'\)\.$",
    ):
        MultiTaskSTOnnxModel.from_pretrained(folder, dtype="bfloat16")
    with pytest.raises(ValueError, match=r"^`dtype` 'float16' is not offered on openvino, which runs \['bfloat16', "):
        MultiTaskSTOnnxModel.from_pretrained(folder, backend="openvino", dtype="float16")
    with pytest.raises(ValueError, match=r"`provider` and `session_options` are onnxruntime's"):
        MultiTaskSTOnnxModel.from_pretrained(folder, backend="openvino", provider="CPUExecutionProvider")


def test_a_callers_session_options_are_used_as_given(exported):
    import onnxruntime as ort

    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel

    _, _, folder = exported
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    MultiTaskSTOnnxModel.from_pretrained(folder, session_options=options)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # not overridden
    with pytest.raises(ValueError, match=r"^Pass `threads` or `session_options` \(set its intra_op_num_threads\)"):
        MultiTaskSTOnnxModel.from_pretrained(folder, session_options=options, threads=2)


# ------------------------------------------------------------------ every reduced precision in the export report


GATE_TEXTS = 40
LOOSE = {"max_flip_rate": 1.0, "max_accuracy_drop": 100.0, "max_spearman_drop": 200.0, "min_mean_cosine": -1.0}


def card_row(card: str, file: str, precision: str) -> str:
    return next(line for line in card.splitlines() if line.startswith(f"| `{file}` | {precision} |"))


def test_openvino_bf16_evidence_goes_to_the_export_report_and_the_card(tmp_path, tiny_tokenizer):
    require_module("openvino")
    from multitask_st.export.onnx import export_onnx
    from multitask_st.model_folder import read_export_report
    from multitask_st.sharing.model_card import render_model_card

    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    report = export_onnx(model_dir, model_dir, quantize="bf16", check_texts=24, gate_texts=GATE_TEXTS)
    assert list(report) == ["fp32", "bf16"]
    bf16 = report["bf16"]
    # The fp32 graph, judged as OpenVINO runs it; the same file and checksum as the fp32 entry.
    assert bf16["file"] == report["fp32"]["file"] == "onnx/model.onnx" and bf16["sha256"] == report["fp32"]["sha256"]
    assert bf16["backend"] == "openvino" and bf16["passed"] and bf16["refusals"] == []
    assert bf16["texts"] == 3 * GATE_TEXTS and bf16["bounds"] == {**precision_gate.GateBounds().__dict__}
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, GATE_TEXTS)
    again = precision_gate.judge_graph(
        reference, model_dir, "model.onnx", precision_gate.GateBounds(), backend="openvino"
    )
    for task in model.config.task_names:  # the report holds the gate's whole evidence
        assert bf16["tasks"][task]["flips"] == again["tasks"][task]["flips"]
    assert bf16["mean_cosine"] == pytest.approx(again["mean_cosine"], abs=1e-9)
    assert read_export_report(model_dir)["bf16"] == bf16

    card = render_model_card(model_dir, repo_id="org/tiny", revision="abc")
    row = card_row(card, "onnx/model.onnx", "bf16 (OpenVINO)")
    flips = bf16["tasks"]["topic"]["flips"]
    assert f"{bf16['texts']} texts: STS-B test sentences (20 pairs)" in row
    assert f"`topic` changes {flips['flips']} of {flips['texts']} labels" in row
    precision = bf16["precision"].removeprefix("<Type: '").removesuffix("'>")
    assert row.endswith(f"judged on openvino, which ran it in {precision} |")
    assert card_row(card, "onnx/model.onnx", "fp32")  # the fp32 check keeps its own row
    assert 'backend="openvino"' in card and 'pip install "multitask-st[openvino]"' in card
    assert "(`onnx/model.onnx`). It runs on onnxruntime or, where the table says OpenVINO" in card


def test_a_refused_bf16_fails_the_export_and_writes_nothing(tmp_path, tiny_tokenizer):
    require_module("openvino")
    from multitask_st.export.onnx import export_onnx

    _, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    with pytest.raises(
        ValueError,
        match=r"^OpenVINO bf16 of model.onnx is refused by the gate, so nothing was "
        r"written: mean embedding cosine to PyTorch 0\.\d+ < 1\.0\. Export without",
    ):
        export_onnx(model_dir, tmp_path / "out", quantize=["bf16"], check_texts=24, gate_texts=GATE_TEXTS,
                    gate=precision_gate.GateBounds(min_mean_cosine=1.0))  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_static_int8_for_openvino_is_exported_gated_and_runs_behind_the_same_api(tmp_path, tiny_tokenizer):
    require_module("nncf")
    from multitask_st.export import static_int8
    from multitask_st.export.onnx import export_onnx
    from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel
    from multitask_st.sharing.model_card import render_model_card

    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    gate = precision_gate.GateBounds(**LOOSE)
    report = export_onnx(
        model_dir, model_dir, quantize="int8_static", check_texts=24, gate=gate, gate_texts=GATE_TEXTS
    )
    entry = report["int8_static"]
    assert entry["file"] == "onnx/model_qint8_static.onnx" and entry["backend"] == "openvino"
    assert entry["passed"] and entry["texts"] == 3 * GATE_TEXTS
    settings = entry["quantization"]
    assert settings["method"].startswith("NNCF ") and settings["smooth_quant"] is True
    assert settings["calibration_texts"] == static_int8.CALIBRATION_SAMPLES
    assert settings["nodes_kept_fp32"] == [] and len(settings["search"]) == 1  # the first graph passed
    graph = model_dir / entry["file"]
    quantized = static_int8.quantized_matmuls(graph)
    assert quantized and all(name.startswith("/backbone/encoder/") for name in quantized)  # heads etc. stay fp32
    assert sorted(path.name for path in (model_dir / "onnx").iterdir()) == [
        "export_report.json",
        "model.onnx",
        "model_qint8_static.onnx",
    ]  # no unfused or scratch graph left behind

    # The runtime API: the same outputs through every door, as the gate measured them.
    runtime = MultiTaskSTOnnxModel.from_pretrained(model_dir, file_name="model_qint8_static.onnx", backend="openvino")
    texts = TEXTS + LONG_TEXTS
    embeddings = runtime.encode(texts)
    assert embeddings.shape == (len(texts), model.config.embedding_dim)
    assert cosine(embeddings, model.encode(texts, tiny_tokenizer)).min() > 0.9
    predictions = runtime.predict(texts)
    streamed = [row for chunk in runtime.predict_chunks(texts, chunk_size=3) for row in chunk]
    for task in model.config.task_names:
        np.testing.assert_allclose(probabilities(streamed, task), probabilities(predictions, task), atol=1e-5)
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, GATE_TEXTS)
    again = precision_gate.judge_graph(reference, model_dir, graph.name, gate, backend="openvino")
    assert {task: row["flips"] for task, row in again["tasks"].items()} == {
        task: row["flips"] for task, row in entry["tasks"].items()
    }

    card = render_model_card(model_dir, repo_id="org/tiny", revision="abc")
    row = card_row(card, "onnx/model_qint8_static.onnx", "int8 static (OpenVINO)")
    assert f"calibrated on {settings['calibration']}" in row and "judged on openvino" in row
    assert (
        'file_name="onnx/model_qint8_static.onnx", revision="abc", backend="openvino",\n    performance_hint="throughput",'
        in card
    )
    (snippet,) = [block for block in card.split("```python\n")[1:] if "MultiTaskSTOnnxModel" in block]
    compile(snippet.split("```")[0], "card", "exec")  # the snippet as a user copies it is Python


def test_a_refused_static_int8_graph_keeps_its_most_sensitive_matmuls_in_fp32(tmp_path, tiny_tokenizer, monkeypatch):
    require_module("nncf")
    from multitask_st.export import static_int8
    from multitask_st.export.onnx import export_graph, export_onnx

    # A few calibration texts: every candidate of the search is calibrated again (300 texts each cost minutes here).
    monkeypatch.setattr(static_int8, "CALIBRATION_SAMPLES", 24)

    model, model_dir = save_tiny(tmp_path, tiny_tokenizer, encoder_scale=25.0)
    export_onnx(model_dir, tmp_path / "fp32", check_texts=24)
    onnx_dir = tmp_path / "fp32/onnx"
    unfused = export_graph(model, tiny_tokenizer, onnx_dir / "unfused.onnx", fuse=False)
    texts = precision_gate.calibration_texts(model, model_dir, static_int8.CALIBRATION_SAMPLES)
    names = [node.name for node in __import__("onnx").load(str(unfused)).graph.input]
    samples = static_int8.calibration_samples(tiny_tokenizer, texts, names, 64)
    reference = precision_gate.gate_reference(model, tiny_tokenizer, model_dir, GATE_TEXTS)
    cosines = []
    for options in static_int8.VARIANTS:  # every whole-encoder candidate the export tries
        static_int8.quantize_static_int8(unfused, onnx_dir / "candidate.onnx", samples, **options)
        loose = precision_gate.GateBounds(**LOOSE)
        evidence = precision_gate.judge_graph(
            reference, tmp_path / "fp32", "candidate.onnx", loose, backend="openvino"
        )
        cosines.append(evidence["mean_cosine"])
    # A mean-cosine bound halfway between the best whole-encoder graph's and 1: each refused, passed with nodes fp32.
    bound = (1 + max(cosines)) / 2
    report = export_onnx(
        model_dir, tmp_path / "out", quantize=["int8_static"], check_texts=24, gate_texts=GATE_TEXTS,
        gate=precision_gate.GateBounds(**{**LOOSE, "min_mean_cosine": bound}),
    )  # fmt: skip
    entry = report["int8_static"]
    settings = entry["quantization"]
    kept, search = settings["nodes_kept_fp32"], settings["search"]
    assert entry["passed"] and entry["mean_cosine"] >= bound
    assert [(attempt["smooth_quant"], attempt["passed"]) for attempt in search[:2]] == [(True, False), (False, False)]
    assert search[0]["refusals"][0].startswith("mean embedding cosine")
    assert 0 < len(kept) and kept == sorted(list(settings["sensitivity"])[: len(kept)])
    quantized = static_int8.quantized_matmuls(tmp_path / "out" / entry["file"])
    assert quantized and not set(kept) & set(quantized)  # the kept matmuls run fp32, the rest int8
    assert set(settings["texts_per_second"]) == {"texts", "fp32", "int8_whole_encoder", "int8_this_graph"}


def test_the_card_describes_the_pair_heads_graph_as_checked(tmp_path):
    from types import SimpleNamespace

    from multitask_st.model_folder import write_export_report
    from multitask_st.sharing.export_evidence import onnx_exports

    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx/pair_heads.onnx").write_bytes(b"graph")
    entry = {"file": "onnx/pair_heads.onnx", "pairs": 24, "max_score_difference": {"nli": 3.1e-7, "sts": 1.2e-6},
             "labels_differing": {"nli": 0}, "bounds": {"max_score_difference": 1e-4, "labels_differing": 0}}  # fmt: skip
    write_export_report({"pair_heads": entry}, tmp_path)
    assert onnx_exports(SimpleNamespace(path=tmp_path)) == [
        {
            "file": "onnx/pair_heads.onnx",
            "precision": "pair_heads",
            "backend": None,
            "checked": "24 pairs of built-in texts",
            "result": "largest score difference 1.20e-06; labels differing: 0",
        }
    ]
