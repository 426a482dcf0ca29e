"""The reduced-precision steps of an ONNX export: each candidate (onnxruntime int8, OpenVINO static int8, OpenVINO
bf16) built next to the fp32 graph, judged by the gate (`precision_gate`), searched for the fewest nodes to keep in fp32
when refused; each returns its export-report entry."""

from __future__ import annotations

from pathlib import Path

from transformers.utils import logging

from ..model_folder import ONNX_FILE_NAME, ONNX_SUBFOLDER
from ..modeling_multitask_st import MultiTaskSTModel
from .precision_gate import GateBounds


logger = logging.get_logger(__name__)

# Texts the int8 searches measure node sensitivity and speed on (a spread of the gate texts).
CALIBRATION_TEXTS = 128


def quantize_int8_gated(staging: Path, arch: str, reference, gate: GateBounds) -> dict:
    """Write the int8 graph next to the fp32 one in `staging`: the one `accuracy_aware_int8` finds to pass the gate
    (the whole encoder in int8 if that passes, else the fewest sensitive nodes kept fp32). Returns its report entry:
    the gate's evidence, the quantisation settings and search, and, when nodes stayed fp32, the speed it cost."""
    from . import precision_gate
    from . import quantize as quantization

    onnx_dir = staging / ONNX_SUBFOLDER
    int8_name = quantization.int8_file_name(arch)
    calibration = _sensitivity_texts(reference)
    fp32_outputs = precision_gate.graph_outputs(staging, ONNX_FILE_NAME, calibration)
    settings, evidence = quantization.accuracy_aware_int8(
        onnx_dir / ONNX_FILE_NAME,
        onnx_dir / int8_name,
        arch,
        judge=lambda path: precision_gate.judge_graph(reference, staging, path.name, gate),
        output_error=lambda path: precision_gate.output_error(fp32_outputs, staging, path.name, calibration),
    )
    if settings["nodes_kept_fp32"]:
        settings["texts_per_second"] = _cost_of_kept_nodes(
            staging,
            int8_name,
            lambda whole: quantization.quantize_int8(onnx_dir / ONNX_FILE_NAME, whole, arch),
            calibration,
        )
    evidence["quantization"] = settings
    return evidence


def _sensitivity_texts(reference) -> list[str]:
    """A spread of the gate's texts (every source) the searches measure node sensitivity and speed on."""
    step = max(1, len(reference.texts) // CALIBRATION_TEXTS)
    return reference.texts[::step][:CALIBRATION_TEXTS]


def quantize_static_int8_gated(
    model: MultiTaskSTModel, tokenizer, model_dir: Path, staging: Path, reference, gate: GateBounds, write_unfused
) -> dict:
    """Write the static int8 graph for OpenVINO (`static_int8`) next to the fp32 one in `staging`: NNCF's quantisation
    of the unfused graph (written by `write_unfused(path)`), calibrated on training texts, judged by the gate as
    OpenVINO runs it, with the fewest sensitive encoder matmuls kept fp32 if the whole encoder is refused. Returns its
    report entry."""
    import onnx

    from . import precision_gate, static_int8
    from . import quantize as quantization

    onnx_dir = staging / ONNX_SUBFOLDER
    target = onnx_dir / static_int8.STATIC_INT8_FILE_NAME
    unfused = onnx_dir / "model.unfused.onnx"  # NNCF's input; not published
    write_unfused(unfused)
    try:
        texts = precision_gate.calibration_texts(model, model_dir, static_int8.CALIBRATION_SAMPLES)
        input_names = [node.name for node in onnx.load(str(unfused), load_external_data=False).graph.input]
        samples = static_int8.calibration_samples(tokenizer, texts, input_names, model.default_max_length(tokenizer))
        measured = _sensitivity_texts(reference)
        fp32_outputs = precision_gate.graph_outputs(staging, ONNX_FILE_NAME, measured)
        settings, evidence = quantization.accuracy_aware_search(
            lambda path, **options: static_int8.quantize_static_int8(unfused, path, samples, **options),
            static_int8.quantizable_nodes(unfused),
            list(static_int8.VARIANTS),
            target,
            judge=lambda path: precision_gate.judge_graph(reference, staging, path.name, gate, backend="openvino"),
            output_error=lambda path: precision_gate.output_error(
                fp32_outputs, staging, path.name, measured, "openvino"
            ),
            option_keys=("smooth_quant",),
            kind="static int8",
        )
        if settings["nodes_kept_fp32"]:  # "fp32": onnx/model.onnx as OpenVINO runs it (bf16 where the CPU has it)
            options = {"smooth_quant": settings["smooth_quant"]}
            settings["texts_per_second"] = _cost_of_kept_nodes(
                staging,
                target.name,
                lambda whole: static_int8.quantize_static_int8(unfused, whole, samples, **options),
                measured,
                backend="openvino",
            )
    finally:
        unfused.unlink(missing_ok=True)
    settings["calibration"] = f"{len(texts)} training texts (train splits of the built-in sets, STS-B train)"
    evidence["quantization"] = settings
    return evidence


def judge_bf16(staging: Path, reference, gate: GateBounds) -> dict:
    """The gate on `onnx/model.onnx` as OpenVINO runs it in bf16 (`backend="openvino"`, its default): the report's
    `bf16` entry. No file is written; a refusal raises (no search: bf16 has no nodes to keep)."""
    from . import precision_gate

    evidence = precision_gate.judge_graph(reference, staging, ONNX_FILE_NAME, gate, backend="openvino")
    if "bfloat16" not in evidence["precision"]:
        logger.warning(
            f"OpenVINO runs {ONNX_FILE_NAME} in {evidence['precision']} on this CPU (no AVX-512 BF16 or AMX): the "
            "report's bf16 entry measures that precision, not bf16."
        )
    if not evidence["passed"]:
        raise ValueError(
            f"OpenVINO bf16 of {ONNX_FILE_NAME} is refused by the gate, so nothing was written: "
            f"{'; '.join(evidence['refusals'])}. Export without bf16, or loosen the bounds."
        )
    return evidence


def require_openvino(precision: str):
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        raise ImportError(f"quantize={precision!r} runs OpenVINO: pip install 'multitask-st[openvino]'.")
    if precision == "int8_static" and importlib.util.find_spec("nncf") is None:
        raise ImportError("quantize='int8_static' quantises with NNCF: pip install 'multitask-st[openvino]'.")


def _cost_of_kept_nodes(
    staging: Path, graph_name: str, write_whole_encoder, texts: list[str], backend: str = "onnxruntime"
) -> dict:
    """What keeping nodes in fp32 costs: texts/s of the fp32 graph, the whole encoder quantised (written by
    `write_whole_encoder(path)` for this measurement only) and `graph_name`, interleaved on `texts`."""
    from . import precision_gate

    onnx_dir = staging / ONNX_SUBFOLDER
    whole = f"{Path(graph_name).stem}.whole.onnx"
    write_whole_encoder(onnx_dir / whole)
    try:
        speeds = precision_gate.texts_per_second(staging, [ONNX_FILE_NAME, whole, graph_name], texts, backend=backend)
    finally:
        (onnx_dir / whole).unlink()
    return {
        "texts": len(texts),
        "fp32": speeds[ONNX_FILE_NAME],
        "int8_whole_encoder": speeds[whole],
        "int8_this_graph": speeds[graph_name],
    }
