"""Dynamic int8 quantisation of an exported graph with onnxruntime: int8 weights, activations quantised per batch.

Only the encoder's matmuls become integer ops (the fused `Attention` -> `QAttention`, `MatMul` ->
`MatMulInteger`/`DynamicQuantizeMatMul`); the word embeddings, the pooling, the projection and the heads (`Gemm`) stay
fp32, where int8 would cost accuracy for no speed. Weights are symmetric and per output channel. On CPUs with AVX-512
VNNI (and on ARM) the full int8 range is used; on older x86 (`avx2`, `avx512`) weights use 7 bits (`reduce_range`), as
the u8 x s8 products there can saturate 16-bit accumulators. The file is named as sentence-transformers names its
own (`model_qint8_avx512_vnni.onnx`, ...), so it sits where their loaders look.

`accuracy_aware_int8` is what the export runs: when the whole encoder in int8 fails the gate (`precision_gate`), it tries
7-bit and per-tensor weights, then keeps the fewest, most sensitive encoder nodes in fp32 until a graph passes
(`accuracy_aware_search`, which the static int8 graph for OpenVINO, `static_int8.py`, runs too).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm
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


def quantizable_nodes(source: str | os.PathLike) -> list[str]:
    """The names of the nodes `quantize_int8` turns into integer ops (the encoder's matmuls and attentions), in
    graph order."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    kept = set(_always_fp32(graph))
    return [node.name for node in graph.node if node.op_type in QUANTIZED_OP_TYPES and node.name not in kept]


def quantize_int8(
    source: str | os.PathLike,
    target: str | os.PathLike,
    arch: str,
    *,
    reduce_range: bool | None = None,
    per_channel: bool = True,
    keep_fp32: list[str] | tuple[str, ...] = (),
    only: list[str] | None = None,
) -> dict:
    """Write the int8 form of the fp32 graph `source` to `target`; returns what was done, for the export report.

    Args:
        reduce_range: 7-bit weights; defaults to the arch's need (`avx2`, `avx512`).
        per_channel: One weight scale per output channel (else one per tensor).
        keep_fp32: Names of quantisable nodes (see `quantizable_nodes`) to leave in fp32 as well.
        only: Quantise these nodes alone (the per-node sensitivity runs).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if arch not in ARCHS:
        raise ValueError(f"`arch` must be one of {list(ARCHS)}, got {arch!r}.")
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    quantizable = set(quantizable_nodes(source))
    unknown = sorted(set(keep_fp32).union(only or ()) - quantizable)
    if unknown:
        raise ValueError(f"No quantisable node is named {unknown}; the graph's are {sorted(quantizable)}.")
    kept = _always_fp32(graph) + list(keep_fp32)
    settings = {
        "op_types_to_quantize": list(QUANTIZED_OP_TYPES),
        "nodes_to_quantize": list(only) if only is not None else None,
        # also under the name a Gemm's matmul gets when the quantiser splits it
        "nodes_to_exclude": kept + [f"{name}_MatMul" for name in kept],
        "per_channel": per_channel,
        "reduce_range": arch in ("avx2", "avx512") if reduce_range is None else reduce_range,
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
        "kept_fp32": "word embeddings, pooling, projection, heads" + (" and the nodes listed" if keep_fp32 else ""),
        "quantized_nodes": len(only) if only is not None else len(quantizable) - len(keep_fp32),
        "nodes_kept_fp32": sorted(keep_fp32),
    }


def _always_fp32(graph) -> list[str]:
    # The quantiser would turn Gemm into integer matmuls too; projection and heads (the only Gemms: the encoder's
    # linears act on 3-D states, so they export as MatMul) and the pooling stay fp32.
    return [node.name for node in graph.node if node.op_type == "Gemm" or node.name.startswith("/pooling/")]


def accuracy_aware_int8(
    source: str | os.PathLike,
    target: str | os.PathLike,
    arch: str,
    judge: Callable[[Path], dict],
    output_error: Callable[[Path], float],
) -> tuple[dict, dict]:
    """Dynamic int8 (`quantize_int8`) that passes `judge`, keeping the fewest encoder nodes in fp32
    (`accuracy_aware_search`): the whole encoder with the arch's settings, then 7-bit weights (`reduce_range`, where the
    arch does not use them already), then one weight scale per tensor, then the per-node search on the best of them."""
    variants = [{}]
    if arch not in ("avx2", "avx512"):
        variants.append({"reduce_range": True})
    variants.append({"per_channel": False})
    return accuracy_aware_search(
        lambda path, **options: quantize_int8(source, path, arch, **options),
        quantizable_nodes(source),
        variants,
        target,
        judge,
        output_error,
        option_keys=("reduce_range", "per_channel"),
    )


def accuracy_aware_search(
    quantize: Callable[..., dict],
    nodes: list[str],
    variants: list[dict],
    target: str | os.PathLike,
    judge: Callable[[Path], dict],
    output_error: Callable[[Path], float],
    option_keys: tuple[str, ...] = (),
    kind: str = "int8",
) -> tuple[dict, dict]:
    """Quantise to `target` so that the graph passes `judge`, keeping the fewest of `nodes` in fp32.

    First every node quantised, with each of `variants` in turn. If none passes, each node's sensitivity is measured
    on the best of them (`output_error` of a graph with that node alone quantised; the graph is written to a scratch
    file next to `target`), and the most sensitive nodes are kept in fp32: 1, 2, 4, ... of them until a graph passes,
    then the fewest between the last failing and the first passing count (bisection).

    Args:
        quantize: `quantize(path, keep_fp32=[...], only=[...] or None, **variant)` writes a graph to `path` and returns
            its settings (with `nodes_kept_fp32`), e.g. `quantize_int8` or `static_int8.quantize_static_int8`.
        nodes: The quantisable nodes, the candidates to keep in fp32.
        judge: Takes a graph's path, returns the gate's evidence (with `passed`, `refusals` and per-head flips).
        output_error: Takes a graph's path, returns how far its outputs are from the fp32 graph's (lower is better).
        option_keys: The settings each attempt in the search records (what distinguishes the variants).
        kind: What the graphs are, for the error ("int8", "static int8").

    Returns:
        `(settings, evidence)` of the graph left in `target`; `settings["search"]` lists every graph tried.

    Raises:
        ValueError: when even the graph with every node in fp32 fails the gate.
    """
    target = Path(target)
    attempts = []

    def attempt(options: dict, keep_fp32: list[str] = ()) -> tuple[dict, dict]:
        settings = quantize(target, keep_fp32=list(keep_fp32), **options)
        evidence = judge(target)
        attempts.append(
            {
                **{key: settings[key] for key in option_keys},
                "nodes_kept_fp32": len(keep_fp32),
                "passed": evidence["passed"],
                "flips": {task: row["flips"]["flips"] for task, row in evidence["tasks"].items() if "flips" in row},
                "refusals": evidence["refusals"],
                "texts_per_second": evidence["texts_per_second"],
            }
        )
        logger.info(f"{kind} candidate {attempts[-1]}")
        return settings, evidence

    tried = []
    for options in variants:
        settings, evidence = attempt(options)
        if evidence["passed"]:
            return _with_search(settings, attempts), evidence
        tried.append((options, evidence))

    def badness(item):
        evidence = item[1]
        flips = sum(row["flips"]["flips"] for row in evidence["tasks"].values() if "flips" in row)  # not regression
        return len(evidence["refusals"]), flips

    options = min(tried, key=badness)[0]
    scratch = target.with_name(f"{target.stem}.sensitivity{target.suffix}")
    errors = {}
    try:
        for node in tqdm(nodes, desc="Per-node sensitivity", disable=not nodes):
            quantize(scratch, only=[node], **options)
            errors[node] = output_error(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    order = sorted(nodes, key=lambda node: errors[node], reverse=True)
    logger.info(f"Most sensitive nodes: {[(node, errors[node]) for node in order[:8]]}")

    failing, count, passing = 0, 1, None
    while passing is None:
        count = min(count, len(nodes))
        settings, evidence = attempt(options, order[:count])
        if evidence["passed"]:
            passing = (count, settings, evidence)
        elif count == len(nodes):
            raise ValueError(
                f"No {kind} graph passes the gate, not even with all {len(nodes)} encoder nodes in fp32: "
                f"{'; '.join(evidence['refusals'])}."
            )
        else:
            failing, count = count, count * 2
    while passing[0] - failing > 1:  # the fewest nodes kept, between the last failing and the first passing count
        count = (failing + passing[0]) // 2
        settings, evidence = attempt(options, order[:count])
        if evidence["passed"]:
            passing = (count, settings, evidence)
        else:
            failing = count
    count, settings, evidence = passing
    if attempts[-1]["nodes_kept_fp32"] != count:  # the last graph written failed: write the passing one again
        settings = quantize(target, keep_fp32=order[:count], **options)
    settings["sensitivity"] = {node: errors[node] for node in order}
    return _with_search(settings, attempts), evidence


def _with_search(settings: dict, attempts: list[dict]) -> dict:
    settings["search"] = attempts
    return settings
