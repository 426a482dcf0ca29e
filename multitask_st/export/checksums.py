"""The sha256 of every file an export writes, recorded in its report and checked whenever the folder is read again.

`export_onnx` records, per graph in `onnx/export_report.json`, the file's `sha256` and the sha256 of the weight files
it was exported from (`exported_from`). The ONNX runtime checks the graph it loads (`check_artifacts`), and staging
checks every graph and that they were exported from the weights next to them (`check_exported_from`) before anything
is uploaded; the runtime also checks the folder's `tokenizer.json` against the model's `config.tokenizer_fingerprint`
(`check_tokenizer`). A graph damaged or edited after its export, an export of another model's weights or another
model's tokenizer is an error naming the file instead of silently wrong output.

No torch here: the ONNX runtime imports this module where torch is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path


SHA256_KEY = "sha256"
EXPORTED_FROM_KEY = "exported_from"
SKIP_HINT = (
    "for files changed on purpose, load with `MultiTaskSTOnnxModel.from_pretrained(..., verify_checksums=False)`"
)


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in blocks (graphs and weights can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_checksums(model_dir: str | os.PathLike) -> dict[str, str]:
    """`{file name: sha256}` of a model folder's safetensors files (a single file or shards)."""
    return {path.name: file_sha256(path) for path in sorted(Path(model_dir).glob("*.safetensors"))}


def record_checksums(entry: dict, folder: Path, weights: dict[str, str]) -> dict:
    """Adds to a report entry (whose `file` is relative to `folder`) the file's sha256 and the `weight_checksums` of
    the model it was exported from."""
    entry[SHA256_KEY] = file_sha256(folder / entry["file"])
    entry[EXPORTED_FROM_KEY] = weights
    return entry


def check_artifacts(report_path: str | os.PathLike, files: Iterable[Path] | None = None):
    """Raises a `ValueError` naming the file when a graph's bytes differ from the sha256 its export recorded.

    Args:
        report_path: The export report (`onnx/export_report.json`); its `file` entries are relative to the folder
            that holds `onnx/`. No report, or an entry without a checksum (an export made before checksums were
            recorded), leaves nothing to check.
        files: The graphs to check; defaults to every recorded graph that is on disk.
    """
    report_path = Path(report_path)
    folder = report_path.parent.parent
    recorded = {
        (folder / entry["file"]).resolve(): entry[SHA256_KEY]
        for entry in _entries(report_path)
        if isinstance(entry.get("file"), str) and entry.get(SHA256_KEY)
    }
    paths = [Path(path).resolve() for path in files] if files is not None else [p for p in recorded if p.is_file()]
    for path in paths:
        if path in recorded and file_sha256(path) != recorded[path]:
            raise ValueError(
                f"{path} is not the file its export wrote: its sha256 differs from the one recorded in {report_path} "
                f"({recorded[path][:12]}...). The file was damaged or changed after the export; export the model "
                f"again (`python export.py MODEL_DIR --format onnx --overwrite`); {SKIP_HINT}."
            )


def check_exported_from(report_path: str | os.PathLike):
    """Raises a `ValueError` when a graph in the report was exported from other weights than the safetensors files
    next to it (an export added to a model folder): the folder would hold two models whose PyTorch and ONNX outputs
    disagree."""
    report_path = Path(report_path)
    weights = weight_checksums(report_path.parent.parent)
    if not weights:  # an export folder of its own (config, tokenizer, graphs): no weights to compare with
        return
    for entry in _entries(report_path):
        exported_from = entry.get(EXPORTED_FROM_KEY)
        if not isinstance(exported_from, dict) or exported_from == weights:
            continue
        differing = sorted(name for name in {*exported_from, *weights} if exported_from.get(name) != weights.get(name))
        raise ValueError(
            f"{report_path.parent.parent / entry['file']} was exported from other weights than the ones in "
            f"{report_path.parent.parent} ({', '.join(differing)} differ): the folder mixes two models. Export this "
            "one again: `python export.py MODEL_DIR --format onnx --output MODEL_DIR --overwrite`."
        )


def check_tokenizer(config: Mapping, vocabulary: Mapping[str, int], tokenizer_path: str | os.PathLike):
    """Raises a `ValueError` naming `tokenizer_path` when its vocabulary is not the model's: another fingerprint than
    `config["tokenizer_fingerprint"]` (recorded by training), or more tokens than the embedding matrix has rows (the
    PyTorch model's two checks in `MultiTaskSTModel._check_tokenizer`; here the tokenizer is the folder's own, so
    either is an error)."""
    from ..inference_multitask_st import vocabulary_fingerprint  # no torch, no transformers

    rows = (config.get("backbone_config") or {}).get("vocab_size")
    if isinstance(rows, int) and len(vocabulary) > rows:
        raise ValueError(
            f"{tokenizer_path} has {len(vocabulary)} tokens but the model's embedding matrix has {rows} rows: it is "
            f"not this model's tokenizer. Export the model again with its own tokenizer; {SKIP_HINT}."
        )
    expected = config.get("tokenizer_fingerprint")
    found = vocabulary_fingerprint(vocabulary) if expected else None
    if found != expected:
        raise ValueError(
            f"{tokenizer_path} is not the tokenizer this model was trained with: its vocabulary fingerprint is "
            f"{found}, config.json's `tokenizer_fingerprint` is {expected}, so embeddings and predictions would be "
            f"wrong. Export the model again with its own tokenizer; {SKIP_HINT}."
        )


def _entries(report_path: Path) -> list[dict]:
    if not report_path.is_file():
        return []
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the export report {report_path}: {error}.") from None
    if not isinstance(report, dict):
        raise ValueError(f"The export report {report_path} is not a JSON object; export the model again.")
    return [entry for entry in report.values() if isinstance(entry, dict)]
