"""Exports of a trained model for other runtimes.

`sentence_transformers_folder` writes the embedding as a plain sentence-transformers folder (no remote code; `tei`
says whether text-embeddings-inference serves it as is). `onnx` writes one ONNX graph (embedding and every head) and
checks it against PyTorch; `quantize` makes its int8 form; `onnx_runtime` runs it with onnxruntime, tokenizers and
numpy alone. Nothing is imported here, so the runtime module loads without torch.
"""
