#!/usr/bin/env bash
# Builds the sentence-transformers ONNX peer for bench/encode.py in a venv of its own, outside the repository:
# `sentence-transformers[onnx]` (optimum-onnx) pins its own transformers/sentence-transformers versions, which must not
# touch ours. torch goes in first and pinned, so nothing pulls a CUDA build.
#
#     bash bench/peer_venv.sh [VENV_DIR]        # default: ../peer-onnx-venv next to the checkout
set -euo pipefail
VENV_DIR="${1:-$(cd "$(dirname "$0")/../.." && pwd)/peer-onnx-venv}"
PYTHON="${PYTHON:-python3}"
test -x "$VENV_DIR/bin/python" || "$PYTHON" -m venv "$VENV_DIR"
"$VENV_DIR/bin/python" -m pip install --upgrade pip
"$VENV_DIR/bin/python" -m pip install torch==2.13.0
"$VENV_DIR/bin/python" -m pip install "sentence-transformers[onnx]"
"$VENV_DIR/bin/python" -c "import sentence_transformers, optimum, onnxruntime, transformers; print('peer venv:', \
sentence_transformers.__version__, 'transformers', transformers.__version__, 'onnxruntime', onnxruntime.__version__)"
echo "$VENV_DIR"
