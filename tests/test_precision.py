"""Reduced precision without export: `encode`/`predict`/the pipeline with `dtype=` (autocast, the weights left as
loaded), and the gate that judges it (`onnx_check.judge_dtype`) as it judges an int8 graph."""

import threading

import numpy as np
import pytest
import torch
from conftest import LONG_TEXTS, TEXTS, make_model, require_module, save_tiny

from multitask_st.export import onnx_check
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
    reference = onnx_check.gate_reference(model, tiny_tokenizer, model_dir, 40)
    # The reference is predict's and encode's fp32 output, from one pass.
    np.testing.assert_array_equal(reference.embeddings, model.encode(reference.texts, tiny_tokenizer))
    predictions = model.predict(reference.texts, tiny_tokenizer)
    for task in model.config.task_names:
        assert reference.labels[task].tolist() == [row[task]["label"] for row in predictions]

    same = onnx_check.judge_dtype(
        reference, model, tiny_tokenizer, torch.float32, onnx_check.GateBounds(max_flip_rate=0)
    )
    assert same["dtype"] == "float32" and same["passed"] and same["refusals"] == []
    assert all(row["flips"]["flips"] == 0 for row in same["tasks"].values()) and same["min_cosine"] > 0.99999

    evidence = onnx_check.judge_dtype(reference, model, tiny_tokenizer, torch.bfloat16)
    assert evidence["dtype"] == "bfloat16" and evidence["texts"] == len(reference.texts)
    bf16 = model.predict(reference.texts, tiny_tokenizer, dtype=torch.bfloat16)
    for task in model.config.task_names:
        flips = sum(row[task]["label"] != want[task]["label"] for row, want in zip(bf16, predictions, strict=True))
        assert evidence["tasks"][task]["flips"]["flips"] == flips
    embeddings = model.encode(reference.texts, tiny_tokenizer, dtype=torch.bfloat16)
    assert evidence["mean_cosine"] == pytest.approx(cosine(embeddings, reference.embeddings).mean(), abs=1e-6)
    assert evidence["passed"] == (evidence["refusals"] == [])
    assert evidence["bounds"] == {**onnx_check.GateBounds().__dict__}
    strict = onnx_check.judge_dtype(
        reference, model, tiny_tokenizer, torch.bfloat16, onnx_check.GateBounds(min_mean_cosine=1.0)
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


def test_openvino_bf16_is_judged_by_the_gate(exported, tiny_tokenizer):
    require_module("openvino")
    model, model_dir, folder = exported
    reference = onnx_check.gate_reference(model, tiny_tokenizer, model_dir, 40)
    evidence = onnx_check.judge_graph(reference, folder, "model.onnx", onnx_check.GateBounds(), backend="openvino")
    assert evidence["backend"] == "openvino" and evidence["file"] == "model.onnx"
    assert evidence["precision"] in ("<Type: 'bfloat16'>", "<Type: 'float32'>")
    assert evidence["texts"] == len(reference.texts) and set(evidence["tasks"]) == set(model.config.task_names)
    assert evidence["passed"] == (evidence["refusals"] == [])
    refused = onnx_check.judge_graph(
        reference, folder, "model.onnx", onnx_check.GateBounds(min_mean_cosine=1.0), backend="openvino"
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
