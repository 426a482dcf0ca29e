"""The model-folder contract: the names every part uses are the ones the payload and transformers write."""

import json

import pytest
from transformers.utils import CONFIG_NAME

from multitask_st import model_folder
from multitask_st.inference_multitask_st import PAYLOAD_FILES, SENTENCE_TRANSFORMERS_FILES


def test_the_named_files_are_what_save_pretrained_writes(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    written = {path.name for path in tmp_path.iterdir()}
    assert {name for name in written if name.endswith(".py")} == set(model_folder.PAYLOAD_FILES)
    assert set(model_folder.SENTENCE_TRANSFORMERS_FILES) <= written
    assert model_folder.SENTENCE_TRANSFORMERS_FILES == SENTENCE_TRANSFORMERS_FILES  # the payload's own list
    assert sorted(model_folder.PAYLOAD_FILES) == sorted(PAYLOAD_FILES)
    assert model_folder.CONFIG_NAME == CONFIG_NAME in written
    # every file the model itself writes is staged (the weights and tokenizer are picked per model, not by pattern)
    assert all(name in model_folder.UPLOAD_PATTERNS for name in written - {"model.safetensors"})


def test_training_summary_round_trip_and_bad_files(tmp_path):
    assert model_folder.load_training_summary(tmp_path) == {}
    path = model_folder.save_training_summary({"metrics": {"tasks": {}}, "when": tmp_path}, tmp_path / "new")
    assert path == tmp_path / "new" / model_folder.TRAINING_SUMMARY_NAME
    assert model_folder.load_training_summary(tmp_path / "new") == {"metrics": {"tasks": {}}, "when": str(tmp_path)}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"^{path} must hold a JSON object, got list\.$"):
        model_folder.load_training_summary(tmp_path / "new")
    path.write_text("{oops")
    with pytest.raises(ValueError, match=rf"^{path} is not valid JSON: "):
        model_folder.load_training_summary(tmp_path / "new")


def test_export_report_lists_only_the_files_still_there(tmp_path):
    assert model_folder.read_export_report(tmp_path) == {}
    report = {"fp32": {"file": "onnx/model.onnx", "min_cosine": 1.0}, "int8": {"file": "onnx/model_q.onnx"}}
    path = model_folder.write_export_report(report, tmp_path)
    assert path == tmp_path / model_folder.ONNX_SUBFOLDER / model_folder.EXPORT_REPORT_NAME
    assert json.loads(path.read_text()) == report
    assert model_folder.read_export_report(tmp_path) == {}  # no graph in the folder: nothing to report
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"graph")
    assert model_folder.read_export_report(tmp_path) == {"fp32": report["fp32"]}
