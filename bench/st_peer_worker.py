"""The sentence-transformers side of bench/onnx_encode.py, run in the peer venv (bench/peer_venv.sh builds it).

sentence-transformers' ONNX and OpenVINO backends need optimum-onnx / optimum-intel, which pin other
transformers/sentence-transformers versions than ours (and than each other), so they run in processes of their own.
With `--backends onnx` this worker loads PyTorch, `backend="onnx"` and its own `export_dynamic_quantized_onnx_model`
int8; with `--backends openvino`, `backend="openvino"` (OpenVINO's CPU plugin picks its own inference precision: bf16
where the CPU has AVX-512 BF16 or AMX) and its `export_static_quantized_openvino_model` int8, calibrated on the
`--calibration` texts (its default calibration set, GLUE SST-2, is on the Hub, which the bench machines cannot reach:
the same function runs with these texts in its place). Then it answers one JSON request per line on stdin:

    {"contender": "st-onnx", "chunk": 3}      ->  {"seconds": 1.23}         (times encode of that chunk)
    {"embed": "st-onnx-int8"}                 ->  {"path": "/tmp/x.npy"}    (all texts' embeddings, for the check)

It imports nothing from multitask_st.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--texts", required=True, help="JSON file: list of chunks (lists of texts)")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--arch", default="avx512_vnni")
    parser.add_argument("--backends", choices=["onnx", "openvino"], default="onnx")
    parser.add_argument("--calibration", help="JSON file: texts the static int8 OpenVINO export calibrates on")
    args = parser.parse_args()

    import sentence_transformers
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    chunks = json.loads(open(args.texts, encoding="utf-8").read())
    work = tempfile.mkdtemp(prefix="st-peer-")
    load = load_onnx if args.backends == "onnx" else load_openvino
    models, versions = load(args, work)
    for model in models.values():
        model.max_seq_length = args.max_length
    versions.update(
        {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
    )
    print(json.dumps({"ready": list(models), "versions": versions}), flush=True)

    common = {"batch_size": args.batch_size, "show_progress_bar": False}
    for line in sys.stdin:
        request = json.loads(line)
        if "embed" in request:
            embeddings = np.concatenate([models[request["embed"]].encode(chunk, **common) for chunk in chunks])
            path = os.path.join(work, f"{request['embed']}.npy")
            np.save(path, embeddings.astype(np.float32))
            print(json.dumps({"path": path}), flush=True)
            continue
        model, chunk = models[request["contender"]], chunks[request["chunk"]]
        start = time.perf_counter()
        model.encode(chunk, **common)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
    shutil.rmtree(work, ignore_errors=True)


def load_onnx(args, work: str) -> tuple[dict, dict]:
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    onnx_kwargs = {"provider": "CPUExecutionProvider", "session_options": options}

    models = {"st-torch": SentenceTransformer(args.backbone, device="cpu", model_kwargs={"dtype": torch.float32})}
    onnx_model = SentenceTransformer(args.backbone, device="cpu", backend="onnx", model_kwargs=onnx_kwargs)
    onnx_dir = os.path.join(work, "onnx-model")
    onnx_model.save_pretrained(onnx_dir)  # a full sentence-transformers folder with onnx/model.onnx
    export_dynamic_quantized_onnx_model(onnx_model, args.arch, onnx_dir)
    models["st-onnx"] = onnx_model
    int8_file = f"onnx/model_qint8_{args.arch}.onnx"
    models["st-onnx-int8"] = SentenceTransformer(
        onnx_dir, device="cpu", backend="onnx", model_kwargs={**onnx_kwargs, "file_name": int8_file}
    )
    return models, {"onnxruntime": onnxruntime.__version__}


def load_openvino(args, work: str) -> tuple[dict, dict]:
    import openvino
    from datasets import Dataset
    from optimum.intel import OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model

    ov_config = {"INFERENCE_NUM_THREADS": str(args.threads), "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
    model = SentenceTransformer(args.backbone, device="cpu", backend="openvino", model_kwargs={"ov_config": ov_config})
    model_dir = os.path.join(work, "openvino-model")
    model.save_pretrained(model_dir)  # a full sentence-transformers folder with openvino/openvino_model.xml
    calibration = json.loads(open(args.calibration, encoding="utf-8").read())

    def calibration_dataset(self, dataset_name, preprocess_function=None, num_samples=None, **kwargs):
        rows = Dataset.from_dict({"sentence": calibration[:num_samples]})
        return (
            rows.map(preprocess_function, batched=True, remove_columns=["sentence"]) if preprocess_function else rows
        )

    OVQuantizer.get_calibration_dataset = calibration_dataset  # the Hub's SST-2 -> our calibration texts
    # A model of its own to quantise: the quantiser works on the model object it is given, and the bf16 contender must
    # stay the bf16 graph (a run that quantised `model` itself gave both contenders the same embeddings).
    to_quantize = SentenceTransformer(
        model_dir, device="cpu", backend="openvino", model_kwargs={"ov_config": ov_config}
    )
    export_static_quantized_openvino_model(to_quantize, OVQuantizationConfig(num_samples=len(calibration)), model_dir)
    int8 = SentenceTransformer(
        model_dir,
        device="cpu",
        backend="openvino",
        model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml", "ov_config": ov_config},
    )
    core = openvino.Core()
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    return {"st-openvino": model, "st-openvino-int8": int8}, {
        "openvino": openvino.__version__,
        "openvino_cpu_inference_precision": str(precision),
    }


if __name__ == "__main__":
    main()
