"""Exports of a trained model for other runtimes.

`onnx` writes one ONNX graph (embedding and every head) and checks it against PyTorch; `quantize` makes its int8
form; `onnx_runtime` runs it with onnxruntime, tokenizers and numpy alone. Nothing is imported here, so the runtime
module loads without torch.
"""
