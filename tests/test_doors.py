"""The door-parity matrix: one table of inputs (`doors.input_table`) through `model.encode/predict`, the pipeline,
`SentenceTransformer(folder)` and `MultiTaskSTOnnxModel`; every door gives the same outputs (within its backend's
tolerance) and raises the same exception type with the same message."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import LONG_TEXTS, POOLING_MODES, PROJECTIONS, TEXTS, make_model, run_python
from doors import DOORS, Doors, batch_local, run_table


pytest.importorskip("onnxruntime")
pytest.importorskip("sentence_transformers")

from multitask_st.export.onnx import export_onnx  # noqa: E402


TESTS = Path(__file__).resolve().parent
LONG_TEXT = " ".join(["the great movie team won the vote"] * 20)  # > 64 tokens: truncated by every door
TOLERANCE = 1e-5  # fused ONNX kernels and the pipeline's per-text streaming batches differ from PyTorch by ~1e-7
# What the model door must answer (every other door then answers the same): the error type and the message.
POSITION_LIMIT_MESSAGE = "`max_length` must be an integer in 1..64 (the backbone's `max_position_embeddings`), got {}."
EXPECTED_ERRORS = {
    "an empty string": ("ValueError", "`sentences[1]` is '': empty, whitespace or only control/format characters; "
                        "every text needs content to embed."),
    "whitespace": ("ValueError", "`sentences[1]` is ' \\t\\n': empty, whitespace or only control/format characters; "
                   "every text needs content to embed."),
    "control characters only": ("ValueError", "`sentences[2]` is '\\x00\\u200b': empty, whitespace or only "
                                "control/format characters; every text needs content to embed."),
    "None": ("TypeError", "`sentences[1]` must be a string, got NoneType: None."),
    "a number": ("TypeError", "`sentences[0]` must be a string, got int: 5."),
    "a bad text late in a generator": ("ValueError", f"`sentences[{len(TEXTS)}]` is '\\u200b': empty, whitespace or "
                                       "only control/format characters; every text needs content to embed."),
    "an empty list": ("ValueError", "`sentences` is empty: pass at least one string."),
    "None first in a generator": ("TypeError", "`sentences[0]` must be a string, got NoneType: None."),
    "calibrated='no'": ("TypeError", "`calibrated` must be True or False, got 'no'."),
    "bytes": ("TypeError", "`sentences` must be a string or an iterable of strings, got bytes."),
    "a dict": ("TypeError", "`sentences` must be a string or an iterable of strings, got dict."),
    "an unknown task": ("ValueError", "Unknown task(s) ['colour']; this model's tasks are ['topic', 'sentiment']."),
    "tasks=5": ("TypeError", "`tasks` must be a task name or a list of them (of ['topic', 'sentiment']), got 5."),
    "no task": ("ValueError", "`tasks` is empty; name one or more of this model's tasks ['topic', 'sentiment']."),
    "chunk_size=0": ("ValueError", "`chunk_size` must be a positive integer, got 0."),
    "batch_size=0": ("ValueError", "`batch_size` must be a positive integer, got 0."),
    "max_length=0": ("ValueError", POSITION_LIMIT_MESSAGE.format(0)),
    "max_length=10000": ("ValueError", POSITION_LIMIT_MESSAGE.format(10000)),
    "max_length=10000, streaming": ("ValueError", POSITION_LIMIT_MESSAGE.format(10000)),
}  # fmt: skip


def folder_with_every_door(tmp_path, tokenizer, **config):
    model = make_model(**config)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "onnx", check_texts=8)
    return model, tmp_path / "model", tmp_path / "onnx"


def assert_parity(results: dict, reference_door: str = "model", expected_errors=EXPECTED_ERRORS):
    by_call = {}
    for key, result in results.items():
        case, method, door = key.split("/")
        by_call.setdefault((case, method), {})[door] = result
    for (case, method), outcomes in by_call.items():
        reference = outcomes[reference_door]
        where = f"{case!r} {method}"
        if case in expected_errors:
            assert (reference.get("error"), reference.get("message")) == expected_errors[case], where
        else:
            assert "output" in reference, f"{where}: {reference}"
        for door, got in outcomes.items():
            if "error" in reference:
                assert "error" in got, f"{where} on {door}: no error, {reference['message']!r} expected"
                same_message = batch_local if door == "sentence-transformers" else str
                assert (got["error"], same_message(got["message"])) == (
                    reference["error"],
                    same_message(reference["message"]),
                ), f"{where} on {door}"
            elif method == "encode":
                assert "output" in got, f"{where} on {door}: {got}"
                np.testing.assert_allclose(
                    got["output"], reference["output"], atol=TOLERANCE, err_msg=f"{where} {door}"
                )
            else:
                assert "output" in got, f"{where} on {door}: {got}"
                assert_same_predictions(got["output"], reference["output"], f"{where} on {door}")


def assert_same_predictions(got, expected, where):
    got, expected = ([got], [expected]) if isinstance(expected, dict) else (got, expected)
    assert len(got) == len(expected), where
    for row, reference in zip(got, expected, strict=True):
        assert sorted(row) == sorted(reference), where
        for task, entry in reference.items():
            assert row[task]["label"] == entry["label"], where
            labels = list(entry["probabilities"])
            np.testing.assert_allclose([row[task]["probabilities"][label] for label in labels],
                                       [entry["probabilities"][label] for label in labels], atol=TOLERANCE,
                                       err_msg=where)  # fmt: skip


# Each pooling mode once, each projection at least once: the table's cases are the doors' own code (text rule,
# streaming, chunking, argument checks), the same for every configuration; every one of the 12 pooling x projection
# cells is compared with `model.encode/predict` door by door in test_pipeline.py, test_sentence_transformers_door.py,
# test_onnx_export.py and (save, load, `AutoModel`) test_modeling.py.
CONFIGURATIONS = [("mean", "linear"), ("cls", "mlp"), ("max", "none"), ("attention", "mlp")]
assert {pooling for pooling, _ in CONFIGURATIONS} == set(POOLING_MODES)
assert {projection for _, projection in CONFIGURATIONS} == set(PROJECTIONS)


@pytest.mark.parametrize(("pooling_mode", "projection"), CONFIGURATIONS)
def test_every_door_gives_the_same_outputs_and_errors(tmp_path, tiny_tokenizer, pooling_mode, projection):
    model, folder, onnx_folder = folder_with_every_door(
        tmp_path, tiny_tokenizer, pooling_mode=pooling_mode, projection=projection
    )
    results = run_table(Doors(folder, model, tiny_tokenizer, onnx_folder), DOORS, TEXTS, LONG_TEXT, "sentiment")
    assert_parity(results)
    # Every door ran every case it takes (the table is not silently skipped).
    assert {key.split("/")[2] for key in results} == set(DOORS)
    assert sum(key.endswith("/model") for key in results) == 54


@pytest.mark.slow
def test_doors_without_the_package_match_the_installed_model(tmp_path, tiny_tokenizer):
    """The pipeline and SentenceTransformer doors as a user without the package runs them (the folder's own code,
    `multitask_st` blocked), through the same table, against the installed model in this process."""
    model, folder, onnx_folder = folder_with_every_door(tmp_path, tiny_tokenizer, pooling_mode="attention")
    script = textwrap.dedent(
        f"""
        import json
        from doors import Doors, run_table

        doors = Doors({str(folder)!r})
        results = run_table(doors, ["pipeline", "sentence-transformers"], {TEXTS!r}, {LONG_TEXT!r}, "sentiment")
        modules = {{name: type(doors.door(name)).__module__ for name in ("pipeline",)}}
        modules["sentence-transformers"] = type(doors.door("sentence-transformers")[0]).__module__
        with open({str(tmp_path / "report.json")!r}, "w") as file:
            json.dump({{"results": results, "modules": modules}}, file)
        """
    )
    # the package may be installed: only the folder's code may run
    result = run_python(script, tmp_path, block=("multitask_st",), env={"PYTHONPATH": str(TESTS)}, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(module.startswith("transformers_modules.") for module in report["modules"].values()), report["modules"]
    here = run_table(Doors(folder, model, tiny_tokenizer, onnx_folder), ["model"], TEXTS, LONG_TEXT, "sentiment")
    blocked = {key: value for key, value in report["results"].items() if key.replace("/pipeline", "/model")
               .replace("/sentence-transformers", "/model") in here}  # fmt: skip
    assert len(blocked) == len(report["results"])
    assert_parity({**here, **blocked})


@pytest.mark.slow
def test_every_door_on_real_minilm(minilm_exported):
    from transformers import AutoTokenizer

    from multitask_st import MultiTaskSTModel

    model = MultiTaskSTModel.from_pretrained(minilm_exported.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_exported.model_dir)
    texts = TEXTS + LONG_TEXTS + ["Shares fell sharply after the results.", "A warm, funny film."]
    long_text = " ".join(["the markets rallied as investors cheered the news"] * 80)  # > 256 tokens
    results = run_table(Doors(minilm_exported.model_dir, model, tokenizer, minilm_exported.onnx_dir), DOORS, texts,
                        long_text, "sentiment")  # fmt: skip
    limit = "`max_length` must be an integer in 1..512 (the backbone's `max_position_embeddings`), got {}."
    expected = {**EXPECTED_ERRORS, "a bad text late in a generator": (
        "ValueError", f"`sentences[{len(texts)}]` is '\\u200b': empty, whitespace or only control/format characters; "
        "every text needs content to embed.")}  # fmt: skip
    expected.update({case: ("ValueError", limit.format(case.split("=")[1].split(",")[0])) for case in expected
                     if case.startswith("max_length=")})  # fmt: skip
    assert_parity(results, expected_errors=expected)
