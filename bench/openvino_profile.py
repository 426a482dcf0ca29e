"""Where OpenVINO's time goes in our exported graph: per-operation CPU time by kind, and the matmuls' own rate (issue 19).

The bench's contenders are judged against the bf16 matmul ceiling (`bench/onnx_encode.py`); this says why a graph
sits where it does. It runs a graph of a model folder on OpenVINO with its per-node counters on (`PERF_COUNT`) over the
same Rotten Tomatoes snippets as the bench, batched as our runtime batches one call (sorted by token count, 32 a
batch, one batch at a time), and sums each node's time by its kind (`FullyConnected` = the encoder's dense matmuls and the
heads; `Subgraph` = OpenVINO's fused attention: scores, mask, softmax, weighted sum). Per-token outputs are dropped
from the graph, as our runtime does for `predict`.

    python bench/openvino_profile.py /work/models/demo --file model_qint8_static.onnx
    python bench/openvino_profile.py /work/models/demo --file model.onnx            # bf16 on AMX
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
from onnx_encode import encoder_flops, matmul_gflops, rotten_tomatoes_texts
from transformers import AutoConfig, AutoTokenizer

from multitask_st.export.onnx import HIDDEN_STATE_OUTPUT
from multitask_st.inference_multitask_st import length_ordered_batches


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--file", default="model_qint8_static.onnx", help="a graph in MODEL_DIR/onnx")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=2, help="profiled passes after one warm-up pass; the best counts"
    )
    args = parser.parse_args(argv)

    import openvino

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    backbone = AutoConfig.from_pretrained(args.model_dir, trust_remote_code=True).backbone_config
    core = openvino.Core()
    graph = core.read_model(f"{args.model_dir}/onnx/{args.file}")
    kept = [output for output in graph.outputs if HIDDEN_STATE_OUTPUT not in output.get_names()]
    graph = openvino.Model(kept, graph.get_parameters(), "without_per_token_outputs")
    compiled = core.compile_model(graph, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    inputs = [parameter.get_any_name() for parameter in graph.inputs]

    # Batched as the inference engine batches one call (its own batching: longest first, by token count).
    encoded = tokenizer(rotten_tomatoes_texts(args.texts), truncation=True, max_length=args.max_length)
    order, _ = length_ordered_batches([len(ids) for ids in encoded["input_ids"]], args.batch_size)
    batches = []
    for rows in order:
        padded_batch = tokenizer.pad(
            [{name: encoded[name][row] for name in inputs} for row in rows], return_tensors="np"
        )
        batches.append({name: np.asarray(padded_batch[name], dtype=np.int64) for name in inputs})
    tokens = [int(sum(row)) for batch in batches for row in batch["attention_mask"]]
    padded = sum(batch["attention_mask"].size for batch in batches)

    for batch in batches:  # warm-up: every shape seen once
        request.infer(batch)
    best = None
    for _ in range(args.rounds):
        by_kind: collections.Counter = collections.Counter()
        for batch in batches:
            request.infer(batch)
            for node in request.profiling_info:
                by_kind[(node.node_type, node.exec_type)] += node.real_time.total_seconds()
        if best is None or sum(by_kind.values()) < sum(best.values()):
            best = by_kind
    total = sum(best.values())
    flops = encoder_flops(tokens, backbone)
    ceiling = matmul_gflops(args.threads, "bf16")
    print(f"{args.file}, {args.texts} texts ({sum(tokens)} tokens, {padded} with padding), {len(batches)} batches")
    print(f"node time summed: {total:.3f} s -> {flops / total / 1e9:.0f} GFLOP/s of encoder work")
    print(f"bf16 matmul ceiling (2048^2, this run): {ceiling:.0f} GFLOP/s\n")
    print("| node kind | kernel | s | share |")
    print("|---|---|---:|---:|")
    for (kind, kernel), seconds in best.most_common(12):
        print(f"| {kind} | {kernel} | {seconds:.3f} | {seconds / total:.1%} |")
    dense = sum(seconds for (kind, _), seconds in best.items() if kind.startswith("FullyConnected"))
    hidden, layers = backbone.hidden_size, backbone.num_hidden_layers
    dense_flops = 2 * sum(tokens) * layers * (4 * hidden * hidden + 2 * hidden * backbone.intermediate_size)
    print(
        f"\nFullyConnected: {dense:.3f} s for {dense_flops / flops:.1%} of the encoder's FLOPs -> "
        f"{dense_flops / dense / 1e9:.0f} GFLOP/s ({dense_flops / dense / 1e9 / ceiling:.0%} of the bf16 ceiling)"
    )
    print(
        f"everything else: {total - dense:.3f} s ({(total - dense) / total:.0%} of the time) for "
        f"{1 - dense_flops / flops:.1%} of the FLOPs"
    )
    started = time.perf_counter()
    for batch in batches:
        request.infer(batch)
    print(f"one pass with the counters on: {time.perf_counter() - started:.3f} s wall")


if __name__ == "__main__":
    main()
