"""Dynamic int8 quantisation of an exported graph with onnxruntime: int8 weights, activations quantised per batch.

Only the encoder's matmuls become integer ops (the fused `Attention` -> `QAttention`, `MatMul` ->
`MatMulInteger`/`DynamicQuantizeMatMul`); the word embeddings, the pooling, the projection and the heads (`Gemm`) stay
fp32, where int8 would cost accuracy for no speed. Weights are symmetric and per output channel. On CPUs with AVX-512
VNNI (and on ARM) the full int8 range is used; on older x86 (`avx2`, `avx512`) weights use 7 bits (`reduce_range`), as
the u8 x s8 products there can saturate 16-bit accumulators. The file is named as sentence-transformers names its
own (`model_qint8_avx512_vnni.onnx`, ...), so it sits where their loaders look.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from transformers.utils import logging


logger = logging.get_logger(__name__)

ARCHS = ("avx512_vnni", "avx512", "avx2", "arm64")
QUANTIZED_OP_TYPES = ("MatMul", "Attention")


def host_arch() -> str:
    """The int8 target of this machine: `avx512_vnni`, `avx512`, `avx2` or `arm64`."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        flags = ""
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def int8_file_name(arch: str) -> str:
    return f"model_qint8_{arch}.onnx"


def quantize_int8(source: str | os.PathLike, target: str | os.PathLike, arch: str) -> dict:
    """Write the int8 form of the fp32 graph `source` to `target`; returns what was done, for the export report."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if arch not in ARCHS:
        raise ValueError(f"`arch` must be one of {list(ARCHS)}, got {arch!r}.")
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    # The quantiser would turn Gemm into integer matmuls too; projection and heads (the only Gemms: the encoder's
    # linears act on 3-D states, so they export as MatMul) and the pooling stay fp32.
    kept = [node.name for node in graph.node if node.op_type == "Gemm" or node.name.startswith("/pooling/")]
    settings = {
        "op_types_to_quantize": list(QUANTIZED_OP_TYPES),
        # also under the name a Gemm's matmul gets when the quantiser splits it
        "nodes_to_exclude": kept + [f"{name}_MatMul" for name in kept],
        "per_channel": True,
        "reduce_range": arch in ("avx2", "avx512"),
        "weight_type": QuantType.QInt8,
        # The fused contrib ops defeat ONNX shape inference; their tensors are fp32.
        "extra_options": {"MatMulConstBOnly": True, "DefaultTensorType": 1},
    }
    quantize_dynamic(str(source), str(target), **settings)
    logger.info(f"Quantised {source} to {target} for {arch}.")
    return {
        "method": "onnxruntime dynamic quantization",
        "arch": arch,
        "op_types": list(QUANTIZED_OP_TYPES),
        "per_channel": settings["per_channel"],
        "reduce_range": settings["reduce_range"],
        "weight_type": "int8",
        "kept_fp32": "word embeddings, pooling, projection, heads",
        "nodes_kept_fp32": len(kept),
    }
