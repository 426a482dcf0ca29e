"""What a multitask-st model folder holds: the one place that names its files, for every part that reads or writes one.

    config.json  model.safetensors (or shards + index)  tokenizer files      `save_pretrained` (model and tokenizer)
    *_multitask_st.py                                    the payload: the code `trust_remote_code` runs
    modules.json  config_sentence_transformers.json  sentence_bert_config.json   what sentence-transformers reads
    training_summary.json                                the training record (`multitask_st.training.record`)
    training_loss.png  evaluation_metrics.png  confusion_matrix_<task>.png       the training plots
    label_f1_<task>.png  predicted_vs_true_<task>.png                          (multi-label, regression heads)
    reliability_diagram_<task>.png                       each calibrated classification head, before and after
    onnx/model.onnx  onnx/model_qint8_<cpu>.onnx  onnx/export_report.json        an ONNX export (`multitask_st.export`)
    README.md                                            the model card (rendered when staged: `multitask_st.sharing`)

Training writes the record and the plots, export writes `onnx/`, sharing reads all of them through this module, never
through each other. It imports nothing but the standard library, so the ONNX runtime (no torch) uses it too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


CONFIG_NAME = "config.json"  # transformers.utils.CONFIG_NAME, named here so this module needs no transformers
MODEL_CARD_NAME = "README.md"

# The payload: every `*_multitask_st.py` file at the package root (configuration, modeling, pipeline,
# sentence-transformers, ...). `save_pretrained` copies them next to the weights for `trust_remote_code`.
PAYLOAD_SUFFIX = "_multitask_st.py"
PAYLOAD_FILES = tuple(sorted(path.name for path in Path(__file__).parent.glob(f"*{PAYLOAD_SUFFIX}")))

# What `SentenceTransformer(folder, trust_remote_code=True)` reads besides the payload. The payload writes them in
# `save_pretrained` under the same names (it cannot import this module; tests/test_model_folder.py checks they agree).
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")

# The training record: what a run reports about itself (layout in `multitask_st.training.record`).
TRAINING_SUMMARY_NAME = "training_summary.json"

# The training plots (`multitask_st.training.plots`), which the model card shows.
TRAINING_LOSS_PLOT = "training_loss.png"
EVALUATION_METRICS_PLOT = "evaluation_metrics.png"
CONFUSION_MATRIX_PLOT = "confusion_matrix_{task}.png"
LABEL_F1_PLOT = "label_f1_{task}.png"  # a multi-label head's per-label F1
PREDICTED_VS_TRUE_PLOT = "predicted_vs_true_{task}.png"  # a regression head's predictions against the targets
RELIABILITY_DIAGRAM_PLOT = "reliability_diagram_{task}.png"  # a calibrated head's accuracy against confidence
PLOT_PATTERNS = (
    TRAINING_LOSS_PLOT,
    EVALUATION_METRICS_PLOT,
    *(
        name.format(task="*")
        for name in (CONFUSION_MATRIX_PLOT, LABEL_F1_PLOT, PREDICTED_VS_TRUE_PLOT, RELIABILITY_DIAGRAM_PLOT)
    ),
)

# An ONNX export (`multitask_st.export.onnx`): its graphs and what the export measured against PyTorch.
ONNX_SUBFOLDER = "onnx"
ONNX_FILE_NAME = "model.onnx"
# The pair heads' graph (`pair_classification` / `pair_regression` tasks): it reads two texts' embeddings, as the
# main graph gives them, so each text is run through the encoder once.
PAIR_HEADS_FILE_NAME = "pair_heads.onnx"
EXPORT_REPORT_NAME = "export_report.json"
ONNX_PATTERNS = (f"{ONNX_SUBFOLDER}/*.onnx", f"{ONNX_SUBFOLDER}/{EXPORT_REPORT_NAME}")

# What a Hub repository gets from a model folder besides its weights and tokenizer files (which depend on the model:
# `multitask_st.sharing.model_dir` picks those), as `upload_folder`-style patterns on paths relative to the folder.
# To ship another kind of file, add a pattern.
UPLOAD_PATTERNS = (
    CONFIG_NAME,
    *PAYLOAD_FILES,
    *SENTENCE_TRANSFORMERS_FILES,
    TRAINING_SUMMARY_NAME,
    *PLOT_PATTERNS,
    *ONNX_PATTERNS,
)

# Files that `torch.load` unpickles (and so may run code): never uploaded.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")

# Never uploaded, whatever matches above: Trainer checkpoints and logs, the card (rendered apart), and pickles.
IGNORE_PATTERNS = ("checkpoint-*", "runs/*", MODEL_CARD_NAME, *PICKLE_PATTERNS)


def save_training_summary(summary: dict, model_dir: str | os.PathLike) -> Path:
    """Write training_summary.json into a model folder (what `load_training_summary` reads back)."""
    path = Path(model_dir) / TRAINING_SUMMARY_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def load_training_summary(model_dir: str | os.PathLike) -> dict:
    """training_summary.json of a model folder as a dict; `{}` when there is none."""
    path = Path(model_dir) / TRAINING_SUMMARY_NAME
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}.") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(summary).__name__}.")
    return summary


def write_export_report(report: dict, folder: str | os.PathLike) -> Path:
    """Write `onnx/export_report.json` (per exported file, what its export checked) into a folder."""
    path = Path(folder) / ONNX_SUBFOLDER / EXPORT_REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def read_export_report(folder: str | os.PathLike) -> dict:
    """`onnx/export_report.json` of a folder (what the export measured against PyTorch), `{}` when there is none.

    Entries whose ONNX file is no longer in the folder are left out.
    """
    path = Path(folder) / ONNX_SUBFOLDER / EXPORT_REPORT_NAME
    if not path.is_file():
        return {}
    report = json.loads(path.read_text(encoding="utf-8"))
    return {key: entry for key, entry in report.items() if (Path(folder) / entry.get("file", "")).is_file()}
