#!/usr/bin/env bash
# The GPU check, in one call on a lent GPU machine (device tool), from the repo root with .gpu/ carried
# (made here by bench/gpu_bundle.sh):
#   bash bench/gpu_check.sh            # logs land in $OUT (default /tmp/gpu-check)
# 1. short bf16 and fp16 training runs of train.py; 2. encode throughput vs sentence-transformers;
# 3. the quality benchmark; 4. the training strategies; 5. training speed vs the plain Trainer.
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
for precision in bf16 fp16; do
  python3 train.py $DATA --$precision --max_steps 60 --max_train_samples topic=all sentiment=all \
    --eval_strategy no --save_strategy no --load_best_model_at_end false --stsb_eval false \
    --logging_steps 20 --disable_tqdm true --output_dir "/tmp/$precision" > "$OUT/train_$precision.log" 2>&1 \
    && echo "train.py --$precision: ok" || { echo "train.py --$precision: FAILED"; status=1; }
  grep -E "train_samples_per_second|test_(topic|sentiment)_accuracy" "$OUT/train_$precision.log" | tail -3
done
python3 bench/encode.py $BENCH --device cuda --texts 4000 --batch-size 64 2>&1 | tee "$OUT/encode.log" | tail -15
python3 bench/quality.py $BENCH --json-out "$OUT/quality.json" > "$OUT/quality.log" 2>&1 || status=1
tail -12 "$OUT/quality.log"
python3 bench/strategies.py $BENCH --steps 400 --json-out "$OUT/strategies.json" > "$OUT/strategies.log" 2>&1 || status=1
tail -10 "$OUT/strategies.log"
python3 bench/train_speed.py $BENCH --steps 60 --bbc-steps 40 --bbc-max-length 512 > "$OUT/train_speed.log" 2>&1 || status=1
tail -14 "$OUT/train_speed.log"
exit $status
