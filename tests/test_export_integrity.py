"""What an export writes can be trusted when it is read again (export/checksums.py, export/model_source.py, export.py):
sha256 per graph checked on load, the model's own tokenizer, no folder that mixes two models, no temporary folder left
behind by a signal."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CHECK_TEXTS, WORDS, require_module, save_tiny, tiny_config, word_tokenizer
from conftest import EXPORT_TEXTS as TEXTS


require_module("onnxruntime")
onnx = require_module("onnx")

from multitask_st import MultiTaskSTModel  # noqa: E402
from multitask_st.cli import export as export_cli  # noqa: E402
from multitask_st.export import onnx as onnx_export  # noqa: E402
from multitask_st.export.onnx import export_onnx  # noqa: E402
from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel  # noqa: E402
from multitask_st.inference_multitask_st import tokenizer_fingerprint  # noqa: E402
from multitask_st.sharing.staging import stage_model_dir  # noqa: E402


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _trained_tiny(tmp_path, tokenizer, name="model", seed=0) -> tuple[MultiTaskSTModel, Path]:
    """A tiny model folder whose config records its tokenizer's fingerprint, as `MultiTaskTrainer` leaves it."""
    torch.manual_seed(seed)
    model = MultiTaskSTModel(tiny_config()).eval()
    model.config.tokenizer_fingerprint = tokenizer_fingerprint(tokenizer)
    model.save_pretrained(tmp_path / name)
    tokenizer.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def test_a_graph_changed_after_its_export_is_refused_naming_the_file(tmp_path, tiny_tokenizer):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    report = export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    path = tmp_path / "out/onnx/model.onnx"
    assert report["fp32"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["fp32"]["exported_from"] == {
        "model.safetensors": hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    }
    clean = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out").encode(TEXTS)

    # A valid graph with other weights: onnxruntime loads it, and only the checksum tells it from the export.
    graph = onnx.load(str(path))
    weights = next(init for init in graph.graph.initializer if init.name.endswith("word_embeddings.weight"))
    array = onnx.numpy_helper.to_array(weights)
    weights.CopyFrom(onnx.numpy_helper.from_array(-array, weights.name))
    onnx.save(graph, str(path))
    with pytest.raises(ValueError) as refused:
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    assert str(refused.value).startswith(
        f"{path} is not the file its export wrote: its sha256 differs from the one recorded in "
        f"{tmp_path / 'out/onnx/export_report.json'} ({report['fp32']['sha256'][:12]}...)."
    )
    assert "verify_checksums=False" in str(refused.value)
    edited = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", verify_checksums=False).encode(TEXTS)
    assert not np.allclose(edited, clean, atol=1e-3)  # the user's edit is what runs


def test_the_onnx_runtime_checks_the_tokenizer_fingerprint_as_the_pytorch_model(tmp_path, tiny_tokenizer):
    model, model_dir = _trained_tiny(tmp_path, tiny_tokenizer)
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    runtime = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")  # its own tokenizer: same fingerprint
    np.testing.assert_allclose(runtime.encode(TEXTS), model.encode(TEXTS, tiny_tokenizer), atol=1e-5)

    # Another model's tokenizer.json, same size, other words: every id means something else.
    other = word_tokenizer(tmp_path, list(reversed(WORDS)), model_max_length=64)
    other.save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other/tokenizer.json", tmp_path / "out/tokenizer.json")
    with pytest.raises(ValueError) as refused:
        MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out")
    assert str(refused.value).startswith(
        f"{tmp_path / 'out/tokenizer.json'} is not the tokenizer this model was trained with: its vocabulary "
        f"fingerprint is {tokenizer_fingerprint(other)}, config.json's `tokenizer_fingerprint` is "
        f"{model.config.tokenizer_fingerprint}"
    )
    unchecked = MultiTaskSTOnnxModel.from_pretrained(tmp_path / "out", verify_checksums=False)
    assert unchecked.encode(TEXTS).shape == (len(TEXTS), 32)  # loads, at the user's own risk


@pytest.mark.parametrize("export_format", ["onnx", "sentence-transformers"])
def test_export_refuses_a_model_folder_without_a_usable_tokenizer(tmp_path, tiny_tokenizer, capsys, export_format):
    _, model_dir = _trained_tiny(tmp_path, tiny_tokenizer)
    capsys.readouterr()
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "vocab.txt").unlink(
        missing_ok=True
    )  # tokenizer_config.json alone: AutoTokenizer would build five tokens
    assert export_cli.main([str(model_dir), "--format", export_format, "--output", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"multitask-st export: error: {model_dir} has no usable tokenizer: none of tokenizer.json, vocab.txt (the vocabulary "
        "BertTokenizer reads) is there, so every word would become '[UNK]'. Save the model's tokenizer into it: "
        "`tokenizer.save_pretrained(model_dir)`.\n"
    )
    assert not (tmp_path / "out").exists()

    other = word_tokenizer(tmp_path, list(reversed(WORDS)), model_max_length=64)
    other.save_pretrained(model_dir)  # a tokenizer, but another model's
    assert export_cli.main([str(model_dir), "--format", export_format, "--output", str(tmp_path / "out")]) == 1
    assert f"The tokenizer in {model_dir} is not the one the model was trained with" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_an_export_and_refuses_another_models_folder(tmp_path, tiny_tokenizer, capsys):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    _, other_dir = _trained_tiny(tmp_path, tiny_tokenizer, name="other", seed=1)
    (other_dir / "training_summary.json").write_text("{}")
    before = _listing(other_dir)
    argv = [str(model_dir), "--format", "onnx", "--output", str(other_dir), "--overwrite"]
    capsys.readouterr()
    assert export_cli.main(argv) == 1
    assert capsys.readouterr().err == (
        f"multitask-st export: error: `output_dir` {str(other_dir)!r} holds another model (model.safetensors): overwrite "
        "replaces an earlier export, never another model's folder, whose weights would then disagree with the ONNX "
        "graph. Export into a new folder, or export that model into its own folder.\n"
    )
    assert _listing(other_dir) == before
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents/thesis.txt").write_text("not an export")
    with pytest.raises(ValueError, match=r"documents' is not an earlier export \(it has no onnx/export_report.json\)"):
        export_onnx(model_dir, tmp_path / "documents", overwrite=True)
    assert (tmp_path / "documents/thesis.txt").read_text() == "not an export"

    # An earlier export is replaced whole: nothing of it stays beside the new files.
    export_onnx(model_dir, tmp_path / "out", check_texts=CHECK_TEXTS)
    (tmp_path / "out/onnx/model_qint8_avx2.onnx").write_bytes(b"an int8 graph of the earlier export")
    (tmp_path / "out/notes.txt").write_text("left by hand")
    export_onnx(model_dir, tmp_path / "out", overwrite=True, check_texts=CHECK_TEXTS)
    assert sorted(_listing(tmp_path / "out")) == [
        "config.json", "onnx/export_report.json", "onnx/model.onnx", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip


def test_staging_refuses_an_onnx_export_of_other_weights_or_a_changed_graph(tmp_path, tiny_tokenizer):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    _, other_dir = save_tiny(tmp_path / "b", tiny_tokenizer, projection="mlp")
    export_onnx(model_dir, model_dir, check_texts=CHECK_TEXTS)
    staged = stage_model_dir(model_dir, tmp_path / "stage")
    report = json.loads((tmp_path / "stage/onnx/export_report.json").read_text())
    assert "onnx/model.onnx" in staged and len(report["fp32"]["sha256"]) == 64  # the staged folder records it

    shutil.copy(other_dir / "model.safetensors", model_dir / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.onnx was exported from other weights than the ones in .*model\b"):
        stage_model_dir(model_dir, tmp_path / "stage2")
    assert not (tmp_path / "stage2").exists()

    export_onnx(model_dir, model_dir, overwrite=True, check_texts=CHECK_TEXTS)  # fine again
    graph = model_dir / "onnx/model.onnx"
    graph.write_bytes(graph.read_bytes()[:-2000] + bytes(2000))
    with pytest.raises(ValueError, match=r"model.onnx is not the file its export wrote"):
        stage_model_dir(model_dir, tmp_path / "stage3")


def test_an_output_that_is_a_file_is_refused_before_exporting(tmp_path, tiny_tokenizer, capsys, monkeypatch):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(onnx_export.MultiTaskSTModel, "from_pretrained", None)  # nothing may load
    capsys.readouterr()
    assert (
        export_cli.main([str(model_dir), "--format", "onnx", "--output", str(tmp_path / "file"), "--overwrite"]) == 1
    )
    assert capsys.readouterr().err == (
        f"multitask-st export: error: `output_dir` {str(tmp_path / 'file')!r} is a file, not a folder; pass a new or empty "
        "folder.\n"
    )
    assert (tmp_path / "file").read_text() == "not a folder"


STALLED_EXPORT = textwrap.dedent(
    """
    import pathlib, signal, sys, time
    from multitask_st.cli import export
    from multitask_st.export import onnx_check

    # A shell's background job (`make test &`) starts with SIGINT ignored, and Python keeps it so: a Ctrl-C is the
    # point here, so the process takes SIGINT as an interactive one does.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def stalled(*args, **kwargs):  # the graph is written; the check would run now
        pathlib.Path({ready!r}).write_text("exporting")
        time.sleep(300)

    onnx_check.check_fp32 = stalled
    sys.exit(export.main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_export_removes_the_temporary_folder(tmp_path, tiny_tokenizer, signum):
    _, model_dir = save_tiny(tmp_path, tiny_tokenizer)
    temporary, ready = tmp_path / "tmp", tmp_path / "ready"
    temporary.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(STALLED_EXPORT.format(ready=str(ready)))
    env = {**os.environ, "TMPDIR": str(temporary), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(driver), str(model_dir), "--format", "onnx", "--output", str(tmp_path / "out")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), process.communicate(timeout=60)
        assert len(list(temporary.glob("multitask-st-onnx-*"))) == 1  # mid-export
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr
    assert stderr.endswith(
        f"multitask-st export: {signal.Signals(signum).name}: export interrupted; its temporary files were removed.\n"
    )
    assert list(temporary.glob("multitask-st-*")) == []
    assert not (tmp_path / "out").exists()
