#!/usr/bin/env bash
# The GPU check, in one call on a lent GPU machine (device tool), from the repo root with .gpu/ carried
# (made here by bench/gpu_bundle.sh):
#   bash bench/gpu_check.sh           # ~2 min: short bf16 and fp16 runs of train.py, encode throughput
#   FULL=1 bash bench/gpu_check.sh    # + the quality (issue budget, run first), training-speed and strategies
#                                     # benchmarks: about 10 min
# Logs land in $OUT (default /tmp/gpu-check) as each step finishes; each step has its own time limit, so one that
# hangs cannot take the others' time.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python3 -c "import datasets, evaluate" 2>/dev/null || python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, datasets, sentence_transformers as st; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'datasets', datasets.__version__, 'sentence-transformers', st.__version__)" \
  | tee -a "$OUT/gpu.txt"
DATA="--backbone .gpu/minilm --tasks topic=.gpu/data/bbc_news sentiment=.gpu/data/rotten_tomatoes"
BENCH="--backbone .gpu/minilm --data-dir .gpu/data"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, show its tail
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1 && echo "== $name: ok ($((SECONDS - start)) s)" \
    || { echo "== $name: FAILED or timed out ($((SECONDS - start)) s)"; status=1; }
}
if [ -n "${FULL:-}" ]; then
  step quality 290 python3 bench/quality.py $BENCH --json-out "$OUT/quality.json"
  sed -n '/^Quality on/,$p' "$OUT/quality.log"
fi
for precision in bf16 fp16; do
  step "train_$precision" 90 python3 train.py $DATA --$precision --max_steps 40 \
    --max_train_samples topic=512 sentiment=1024 --max_eval_samples 256 --eval_strategy no --save_strategy no \
    --load_best_model_at_end false --stsb_eval false --logging_steps 10 --disable_tqdm true \
    --output_dir "/tmp/$precision"
  grep -E "'loss'|train_samples_per_second|test_(topic|sentiment)_accuracy" "$OUT/train_$precision.log" | tail -4
done
if [ -n "${FULL:-}" ]; then
  step train_speed 110 python3 bench/train_speed.py $BENCH --steps 60 --bbc-steps 40 --bbc-max-length 512
  sed -n '/^Part 1/,$p' "$OUT/train_speed.log" | tail -16
  step strategies 200 python3 bench/strategies.py $BENCH --steps 300 --json-out "$OUT/strategies.json"
  sed -n '/^Strategies,/,$p' "$OUT/strategies.log"
fi
step encode 90 python3 bench/encode.py $BENCH --texts 4000 --batch-size 128 --repeats 3
tail -9 "$OUT/encode.log"
exit $status
