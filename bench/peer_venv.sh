#!/usr/bin/env bash
# Builds a sentence-transformers peer for bench/onnx_encode.py in a venv of its own, outside the repository:
# `sentence-transformers[onnx]` (optimum-onnx) and `sentence-transformers[openvino]` (optimum-intel, OpenVINO, NNCF) pin
# their own transformers/sentence-transformers versions, which must not touch ours, nor each other's. torch goes in
# first and pinned (the CPU wheel), so nothing pulls a CUDA build.
#
#     bash bench/peer_venv.sh [VENV_DIR] [EXTRA]    # EXTRA: onnx (default) or openvino
#     bash bench/peer_venv.sh /work/peer-onnx-venv onnx
#     bash bench/peer_venv.sh /work/peer-openvino-venv openvino
set -euo pipefail
EXTRA="${2:-onnx}"
case "$EXTRA" in onnx | openvino) ;; *) echo "EXTRA must be onnx or openvino, got '$EXTRA'" >&2; exit 2 ;; esac
VENV_DIR="${1:-$(cd "$(dirname "$0")/../.." && pwd)/peer-$EXTRA-venv}"
PYTHON="${PYTHON:-python3}"
test -x "$VENV_DIR/bin/python" || "$PYTHON" -m venv "$VENV_DIR"
"$VENV_DIR/bin/python" -m pip install --upgrade pip
"$VENV_DIR/bin/python" -m pip install torch==2.13.0
# The pin again with the extra: a resolver that wanted another torch fails here instead of fetching a CUDA build.
# datasets: the static int8 OpenVINO export builds its calibration set with it.
"$VENV_DIR/bin/python" -m pip install torch==2.13.0 "sentence-transformers[$EXTRA]" datasets
# optimum-intel pulls PyPI's torchvision, built against the CUDA torch: with the CPU torch its import fails
# ("operator torchvision::nms does not exist") and takes transformers' PreTrainedModel with it. Nothing here needs it.
if [ "$EXTRA" = openvino ]; then "$VENV_DIR/bin/python" -m pip uninstall -y torchvision; fi
RUNTIME=$([ "$EXTRA" = onnx ] && echo onnxruntime || echo openvino)
"$VENV_DIR/bin/python" -c "import sentence_transformers, transformers, torch, $RUNTIME as runtime; print('peer venv:', \
sentence_transformers.__version__, 'transformers', transformers.__version__, '$RUNTIME', runtime.__version__, \
'torch', torch.__version__)"
echo "$VENV_DIR"
