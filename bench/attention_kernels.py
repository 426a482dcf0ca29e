"""Attention alone, at the shape our `predict` batches have, on every kernel the runtimes at hand offer (issue 19).

`bench/openvino_profile.py` shows OpenVINO's fused attention taking a third of our fastest graph's time for ~1% of its
FLOPs. This times that one step (scores, scale, padding mask, softmax, weighted sum) by itself, as:

- `openvino decomposed`: MatMul, Multiply, Add, Softmax, MatMul (what our ONNX export gives OpenVINO);
- `openvino sdpa`: OpenVINO's own `ScaledDotProductAttention` op (what `ov.convert_model` makes of PyTorch's SDPA);
- `openvino sdpa + state`: the same in a model that also holds a state variable: OpenVINO's CPU plugin keeps its SDPA
  kernel only for models with state (LLMs) and decomposes it otherwise, so this is the one way to reach that kernel;
- `torch sdpa` and `torch matmul-softmax`: PyTorch's `scaled_dot_product_attention` and the same five steps by hand.

Each route reports milliseconds per call (best of `--rounds`), its attention GFLOP/s (the two matmuls'
multiply-adds), and for OpenVINO the node kinds it runs (`Subgraph` = OpenVINO's fused, decomposed attention).

    python bench/attention_kernels.py               # 32 texts x 12 heads x 27 tokens x 32: MiniLM, the bench's snippets
    python bench/attention_kernels.py --tokens 128  # long texts
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np


def openvino_attention(batch: int, heads: int, head_size: int, native: bool, state: bool):
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.op.util import Variable, VariableInfo

    query, key, value = (ops.parameter([-1, heads, -1, head_size], ov.Type.f32, name=name) for name in "qkv")
    mask = ops.parameter([-1, 1, 1, -1], ov.Type.f32, name="mask")
    scale = ops.constant(np.float32(head_size**-0.5))
    if native:
        attended = ops.scaled_dot_product_attention(query, key, value, mask, scale=scale)
    else:
        scores = ops.add(ops.multiply(ops.matmul(query, key, False, True), scale), mask)
        attended = ops.matmul(ops.softmax(scores, -1), value, False, False)
    results, sinks = [ops.result(attended)], []
    if state:  # a one-number state the graph reads and writes back: the plugin then treats the model as an LLM's
        info = VariableInfo()
        info.data_shape, info.data_type, info.variable_id = ov.PartialShape([1]), ov.Type.f32, "state"
        variable = Variable(info)
        read = ops.read_value(ops.constant(np.zeros([1], np.float32)), variable)
        sinks.append(ops.assign(read, variable))
        results.append(ops.result(read))
    return ov.Model(results, sinks, [query, key, value, mask], "attention")


def time_calls(call, calls: int, rounds: int) -> float:
    for _ in range(max(calls // 10, 3)):
        call()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=27, help="padded length of the batch (the bench's mean: ~27)")
    parser.add_argument("--head-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import openvino as ov
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    shape = (args.batch, args.heads, args.tokens, args.head_size)
    query, key, value = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    mask = np.zeros((args.batch, 1, 1, args.tokens), np.float32)
    mask[::3, ..., args.tokens * 3 // 4 :] = np.finfo(np.float32).min  # a third of the texts padded by a quarter
    inputs = [query, key, value, mask]
    flops = 2 * 2 * args.batch * args.heads * args.tokens**2 * args.head_size

    print(f"attention of {args.batch} texts x {args.heads} heads x {args.tokens} tokens x {args.head_size}, "
          f"{args.threads} threads; {flops / 1e6:.1f} MFLOP a call")  # fmt: skip
    print(f"{'route':34s} {'precision':9s} {'ms/call':>8s} {'GFLOP/s':>8s}  OpenVINO node kinds")
    reference = None
    core = ov.Core()
    routes = {
        "openvino decomposed": (False, False),
        "openvino sdpa": (True, False),
        "openvino sdpa + state": (True, True),
    }
    for name, (native, state) in routes.items():
        for precision in ("bf16", "f32"):
            config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": args.threads}
            compiled = core.compile_model(
                openvino_attention(args.batch, args.heads, args.head_size, native, state), "CPU", config
            )
            request = compiled.create_infer_request()
            seconds = time_calls(functools.partial(request.infer, inputs), args.calls, args.rounds)
            nodes = compiled.get_runtime_model().get_ordered_ops()
            kinds = sorted(
                {node.get_rt_info()["layerType"].astype(str) for node in nodes} - {"Input", "Output", "Const"}
            )
            output = request.get_output_tensor(0).data.copy()
            reference = output if reference is None else reference
            assert np.abs(output - reference).max() < 0.05, f"{name} {precision} gives other numbers"
            print(f"{name:34s} {precision:9s} {seconds * 1e3:8.3f} {flops / seconds / 1e9:8.1f}  {', '.join(kinds)}")

    def by_hand(query, key, value, mask):
        return torch.softmax(query @ key.transpose(-1, -2) * args.head_size**-0.5 + mask, -1) @ value

    def sdpa(query, key, value, mask):
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)

    tensors = [torch.from_numpy(array) for array in inputs]
    for dtype, precision in ((torch.bfloat16, "bf16"), (torch.float32, "f32")):
        typed = [tensor.to(dtype) for tensor in tensors]
        for name, attention in (("torch sdpa", sdpa), ("torch matmul-softmax", by_hand)):
            call = functools.partial(attention, *typed)
            with torch.inference_mode():
                seconds = time_calls(call, args.calls, args.rounds)
                assert np.abs(call().float().numpy() - reference).max() < 0.05, f"{name} gives other numbers"
            print(f"{name:34s} {precision:9s} {seconds * 1e3:8.3f} {flops / seconds / 1e9:8.1f}")


if __name__ == "__main__":
    main()
