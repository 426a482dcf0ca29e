#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for bench/gpu_check.sh on a lent GPU machine, which has PyTorch, transformers and
# sentence-transformers but no network, no `datasets`/`evaluate` and none of our data packages:
#   .gpu/wheels  datasets, evaluate and their two missing dependencies (Python 3.12 wheels for the GPU image)
#   .gpu/minilm  all-MiniLM-L6-v2 with fp16 weights (45 MB: the carry limit is 64 MB), loaded as fp32 there
#   .gpu/data    the built-in datasets, saved with save_to_disk
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .gpu/wheels .gpu/minilm
$PY -m pip download -q --no-deps -d .gpu/wheels datasets==5.2.0 evaluate==0.4.6 dill==0.4.1
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/wheels multiprocess==0.70.19
MINILM=$($PY -c "from multitask_st.resources import embedded_minilm_path; print(embedded_minilm_path())")
for f in 1_Pooling config.json config_sentence_transformers.json modules.json sentence_bert_config.json \
         special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt; do
  cp -r "$MINILM/$f" .gpu/minilm/
done
$PY - "$MINILM" <<'PY'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(f"{sys.argv[1]}/model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, ".gpu/minilm/model.safetensors", {"format": "pt"})
PY
$PY bench/common.py --export .gpu/data
du -sh .gpu
