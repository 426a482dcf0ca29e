"""Static int8 for OpenVINO: NNCF's post-training quantisation of the whole exported graph (embedding and every head
in one graph), calibrated on training texts.

Dynamic int8 (`quantize.py`) quantises activations per batch at run time with onnxruntime's integer kernels; static
int8 fixes every activation's scale from calibration texts ahead of time, which is what OpenVINO's int8 kernels (VNNI,
AMX) run fastest. NNCF reads an ONNX graph of standard ops only, so it quantises the *unfused* export (onnxruntime's
fused `Attention`/`SkipLayerNormalization` ops are unknown to it) and writes a QDQ graph (`QuantizeLinear` /
`DequantizeLinear` pairs around the encoder's matmuls), `onnx/model_qint8_static.onnx`: one file, which OpenVINO
reads and runs with int8 matmuls (`MultiTaskSTOnnxModel.from_pretrained(folder, file_name=STATIC_INT8_FILE_NAME,
backend="openvino")`). As with dynamic int8, only the encoder's matmuls are quantised; the pooling, the projection and
the heads stay fp32 (an NNCF ignored scope). The export judges the graph with the statistical gate as OpenVINO runs it
and, when it is refused, keeps the most sensitive encoder matmuls in fp32 (`quantize.accuracy_aware_search`).
"""

from __future__ import annotations

import logging as std_logging
import os

import numpy as np
from transformers.utils import logging


logger = logging.get_logger(__name__)

STATIC_INT8_FILE_NAME = "model_qint8_static.onnx"
CALIBRATION_SAMPLES = 300  # texts, one per calibration sample (sentence-transformers' static int8 default too)
# Everything outside the encoder stays fp32: NNCF's ignored scope, as a pattern on node names (re.match).
OUTSIDE_ENCODER = r"^(?!/backbone/)"
# The whole-graph candidates the export tries before the per-node search: NNCF's transformer defaults (SmoothQuant on
# the matmuls, which moves activation outliers into the weights), then without SmoothQuant.
VARIANTS = ({}, {"smooth_quant": False})


def quantizable_nodes(source: str | os.PathLike) -> list[str]:
    """The encoder's `MatMul` nodes of the unfused graph `source` (its linear layers and the attention's two
    products), in graph order: what `quantize_static_int8` quantises and may keep in fp32."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.name.startswith("/backbone/")]


def calibration_samples(tokenizer, texts: list[str], input_names: list[str], max_length: int) -> list[dict]:
    """One feed per text (no padding, so no padded positions enter the activation ranges), as the graph takes it."""
    samples = []
    for text in texts:
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")
        samples.append({name: np.asarray(encoded[name], dtype=np.int64) for name in input_names})
    return samples


def quantize_static_int8(
    source: str | os.PathLike,
    target: str | os.PathLike,
    calibration: list[dict],
    *,
    keep_fp32: list[str] | tuple[str, ...] = (),
    only: list[str] | None = None,
    smooth_quant: bool = True,
) -> dict:
    """Write the static int8 (QDQ) form of the unfused fp32 graph `source` to `target`; returns what was done, for
    the export report.

    Args:
        calibration: The graph's feeds for the calibration texts (`calibration_samples`).
        keep_fp32: Encoder matmuls (see `quantizable_nodes`) to leave in fp32 as well.
        only: Quantise these matmuls alone (the per-node sensitivity runs).
        smooth_quant: NNCF's SmoothQuant on the matmuls (its default for transformers).
    """
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    if not calibration:
        raise ValueError("Static int8 needs calibration texts; got none.")
    nodes = quantizable_nodes(source)
    unknown = sorted(set(keep_fp32).union(only or ()) - set(nodes))
    if unknown:
        raise ValueError(f"No quantisable node is named {unknown}; the graph's are {nodes}.")
    ignored = [node for node in nodes if node in keep_fp32 or (only is not None and node not in only)]
    smoothing = AdvancedSmoothQuantParameters() if smooth_quant else AdvancedSmoothQuantParameters(matmul=-1)
    nncf_logger = std_logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(std_logging.WARNING)  # its INFO names every op left unquantised: hundreds of lines a graph
    try:
        quantized = nncf.quantize(
            onnx.load(str(source)),
            nncf.Dataset(calibration),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=ignored, patterns=[OUTSIDE_ENCODER], validate=False),
            advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=smoothing),
        )
    finally:
        nncf_logger.setLevel(level)
    onnx.save(quantized, str(target))
    logger.info(f"Static int8 quantised {source} to {target} ({len(nodes) - len(ignored)} of {len(nodes)} matmuls).")
    return {
        "method": f"NNCF {nncf.__version__} post-training static quantization (QDQ), for OpenVINO",
        "calibration_texts": len(calibration),
        "smooth_quant": smooth_quant,
        "kept_fp32": "pooling, projection, heads" + (" and the nodes listed" if keep_fp32 else ""),
        "quantized_nodes": len(nodes) - len(ignored),
        "nodes_kept_fp32": sorted(keep_fp32),
    }


def quantized_matmuls(path: str | os.PathLike) -> list[str]:
    """The `MatMul` nodes of a QDQ graph whose weight or input passes through a `DequantizeLinear` (quantised)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    return [node.name for node in graph.node if node.op_type == "MatMul" and dequantized.intersection(node.input)]
