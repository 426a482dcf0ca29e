"""The sentence-transformers side of bench/onnx_encode.py, run in the peer venv (bench/peer_venv.sh builds it).

sentence-transformers' ONNX backends need optimum-onnx, which pins other transformers/sentence-transformers versions
than ours, so they run in a process of their own. This worker loads the three contenders (PyTorch, `backend="onnx"`,
and its own `export_dynamic_quantized_onnx_model` int8), then answers one JSON request per line on stdin:

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
    args = parser.parse_args()

    import onnxruntime
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    torch.set_num_threads(args.threads)
    chunks = json.loads(open(args.texts, encoding="utf-8").read())
    work = tempfile.mkdtemp(prefix="st-peer-")
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
    for model in models.values():
        model.max_seq_length = args.max_length
    versions = {
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }
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


if __name__ == "__main__":
    main()
