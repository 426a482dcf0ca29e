"""The exported ONNX graph on OpenVINO's runtime, behind the few calls `MultiTaskSTOnnxModel` makes of an onnxruntime
session (`get_inputs`, `get_outputs`, `get_modelmeta`, `run`), so the same runtime API (`from_pretrained`, `encode`,
`predict`, `*_chunks`) runs our whole graph, embedding and every head, on OpenVINO.

Why: OpenVINO's CPU plugin runs the graph in bf16 where the CPU has AVX-512 BF16 or AMX (its `INFERENCE_PRECISION_HINT`),
which onnxruntime's CPU kernels do not. OpenVINO reads the fused graph `export_onnx` writes as it is (its ONNX frontend
knows onnxruntime's `Attention`, `EmbedLayerNormalization`, `SkipLayerNormalization`, `BiasGelu`). bf16 costs accuracy
like int8 does, so it is judged by the same gate (`precision_gate.judge_graph(..., backend="openvino")`). No torch here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


# `dtype` -> OpenVINO's inference precision on CPU.
OPENVINO_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}
# OpenVINO's performance hints: "latency" runs one batch at a time on every core (one text answered soonest);
# "throughput" splits the cores into streams and runs one batch per stream at once (`run_batches`): many texts sooner.
PERFORMANCE_HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class _Node:
    name: str
    shape: list


@dataclass(frozen=True)
class _Metadata:
    custom_metadata_map: dict


class OpenVINOSession:
    """An onnxruntime-like session over an OpenVINO compiled model (CPU), safe from several threads at once (one infer
    request per thread: a request is not thread-safe, the compiled model is)."""

    def __init__(
        self,
        model_path: str | Path,
        threads: int | None = None,
        dtype: str = "bfloat16",
        performance_hint: str = "latency",
    ):
        try:
            import openvino
        except ImportError as error:
            raise ImportError(
                "backend='openvino' needs OpenVINO: pip install 'multitask-st[openvino]' (or pip install openvino)."
            ) from error
        if dtype not in OPENVINO_PRECISIONS:
            raise ValueError(f"`dtype` must be one of {list(OPENVINO_PRECISIONS)} on OpenVINO, got {dtype!r}.")
        if performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(f"`performance_hint` must be one of {list(PERFORMANCE_HINTS)}, got {performance_hint!r}.")
        self.model_path = Path(model_path)
        core = openvino.Core()
        try:
            model = core.read_model(str(model_path))
        except RuntimeError as error:
            raise ValueError(f"OpenVINO cannot read {model_path} ({str(error).splitlines()[0]}).") from None
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[dtype], "PERFORMANCE_HINT": performance_hint.upper()}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)  # every output
        # Calls for the embedding and the heads alone (most) run on the graph without its per-token outputs
        # (`last_hidden_state`): those cost a copy of every token's vector per batch (5-10% of predict's time on the
        # `make demo` model, BENCHMARKS.md). Compiled on first use, with the same settings.
        self._model, self._core, self._config = model, core, config
        self._per_token = {
            port.get_any_name() for port in model.outputs if port.get_partial_shape().rank.get_length() > 2
        }
        self._without_per_token = None
        self._compile_lock = threading.Lock()
        # What the CPU plugin settled on: bf16 is asked for, and granted only where the CPU has it.
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        # How many batches `run_batches` keeps in flight: one per stream the plugin made (1 under "latency").
        self.concurrent_batches = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._inputs = [_Node(port.get_any_name(), _dims(port)) for port in self.compiled.inputs]
        self._outputs = [_Node(port.get_any_name(), _dims(port)) for port in self.compiled.outputs]
        self._metadata = _Metadata(_onnx_metadata(self.model_path))
        self._local = threading.local()

    def get_inputs(self) -> list[_Node]:
        return self._inputs

    def get_outputs(self) -> list[_Node]:
        return self._outputs

    def get_modelmeta(self) -> _Metadata:
        return self._metadata

    def _compiled_for(self, output_names: list[str]):
        """The compiled graph that gives `output_names`: without the per-token outputs unless one is asked for."""
        if not self._per_token or self._per_token & set(output_names):
            return self.compiled
        with self._compile_lock:
            if self._without_per_token is None:
                import openvino

                kept = [
                    result
                    for result in self._model.get_results()
                    if result.get_output_tensor(0).get_any_name() not in self._per_token
                ]
                graph = openvino.Model(kept, self._model.get_parameters(), "without_per_token_outputs")
                self._without_per_token = self._core.compile_model(graph, "CPU", self._config)
            return self._without_per_token

    def run(self, output_names: list[str], feeds: dict) -> list:
        compiled = self._compiled_for(output_names)
        requests = self._local.__dict__.setdefault("requests", {})  # this thread's, one per compiled graph
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        results = request.infer(feeds)  # copies out of the request's buffers (share_outputs=False)
        return [results[name] for name in output_names]

    def run_batches(self, output_names: list[str], feeds: Iterable[dict], on_done=None) -> list[list]:
        """`run` over several batches, `concurrent_batches` of them in flight at once (an `AsyncInferQueue` of its own
        per call, so calls from several threads do not share requests); each batch's outputs, in the order of `feeds`.
        `on_done(index)` is called (from OpenVINO's thread) as each batch finishes."""
        import openvino

        queue = openvino.AsyncInferQueue(self._compiled_for(output_names), self.concurrent_batches)
        results: list = []
        errors: list = []

        def finished(request, index):
            try:  # copied out: the request's buffers are reused by the next batch it runs
                results[index] = [request.get_tensor(name).data.copy() for name in output_names]
                if on_done is not None:
                    on_done(index)
            except Exception as error:  # noqa: BLE001 -- raised again in the caller's thread below
                errors.append(error)

        queue.set_callback(finished)
        try:
            for index, feed in enumerate(feeds):
                results.append(None)
                queue.start_async(feed, index)  # raises an earlier batch's inference error, if any
        except BaseException:
            with contextlib.suppress(RuntimeError):  # no request left running (nor calling `on_done`) after this
                queue.wait_all()
            raise
        queue.wait_all()
        if errors:
            raise errors[0]
        return results


def _dims(port) -> list:
    return [dim.get_length() if dim.is_static else None for dim in port.get_partial_shape()]


def _onnx_metadata(path: Path) -> dict:
    """The graph's metadata (its tasks and normalisation, which `check_graph` compares with config.json); OpenVINO does
    not keep ONNX metadata, so it is read with `onnx` where that is installed (else nothing is compared)."""
    try:
        import onnx
    except ImportError:
        return {}
    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
