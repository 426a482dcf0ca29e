#!/usr/bin/env bash
# Embedding distillation under FSDP, and streaming training, on a lent GPU machine in one call (device tool), from the
# repo root with .gpu/ carried (made here by bench/gpu_bundle.sh). PREPARED, NOT RUN YET (no GPU was lent when it was
# written): see BENCHMARKS.md, "Streaming training".
#   bash bench/gpu_fsdp_distillation.sh     # ~4 min on one GPU; with 2+ GPUs it adds the 2-process runs
# What it checks, each step with its own time limit (logs in $OUT, default /tmp/gpu-fsdp):
#   fsdp_distill      train.py under FSDP (full_shard, 1 process): distillation on, from a frozen whole copy per
#                     batch; the log must show `embedding_distillation_loss` and no "is ignored" warning
#   fsdp_no_distill   the same run with --embedding_distillation_weight 0 (speed and accuracy without it; STS-B is
#                     not scored: the GPU image lacks the STS-B package)
#   stream_distill    train.py --streaming on generated CSV files, distillation per batch, bf16 (1 process)
#   fsdp_2proc        (2+ GPUs) the FSDP run with 2 processes (torchrun), world_size 2 in training_summary.json
set -uo pipefail
OUT=${OUT:-/tmp/gpu-fsdp}
mkdir -p "$OUT"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python3 -c "import datasets, evaluate" 2>/dev/null || python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
GPUS=$(nvidia-smi -L | wc -l)
DATA="--backbone .gpu/minilm --tasks topic=.gpu/data/bbc_news sentiment=.gpu/data/rotten_tomatoes"
SHORT="--max_steps 60 --max_train_samples topic=512 sentiment=1024 --max_eval_samples 256 --eval_strategy no
  --save_strategy no --load_best_model_at_end false --logging_steps 10 --disable_tqdm true --bf16 --stsb_eval false"
FSDP=(--fsdp "full_shard auto_wrap" --fsdp_config '{"transformer_layer_cls_to_wrap": ["BertLayer"]}')
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1 && echo "== $name: ok ($((SECONDS - start)) s)" \
    || { echo "== $name: FAILED or timed out ($((SECONDS - start)) s)"; status=1; }
}
check() {  # check NAME: the distillation loss is logged, nothing says it was skipped; the metrics
  grep -q "embedding_distillation_loss" "$OUT/$1.log" && ! grep -q "is ignored" "$OUT/$1.log" \
    && echo "   distillation ran" || { echo "   distillation did NOT run"; status=1; }
  grep -E "train_samples_per_second|test_(topic|sentiment)_accuracy" "$OUT/$1.log" | tail -3
}
# one process under FSDP: torchrun makes it a distributed job, which FSDP needs
step fsdp_distill 120 torchrun --standalone --nproc_per_node 1 train.py $DATA $SHORT "${FSDP[@]}" \
  --output_dir /tmp/fsdp_distill
check fsdp_distill
step fsdp_no_distill 120 torchrun --standalone --nproc_per_node 1 train.py $DATA $SHORT "${FSDP[@]}" \
  --embedding_distillation_weight 0 --output_dir /tmp/fsdp_no_distill
grep -E "train_samples_per_second|test_(topic|sentiment)_accuracy" "$OUT/fsdp_no_distill.log" | tail -3
python3 - <<'PY'
import sys
sys.path.insert(0, "bench")
from pathlib import Path
from streaming import write_data
files = write_data(Path("/tmp/stream-data"), 200_000)
print("wrote", *files.values())
PY
step stream_distill 120 python3 train.py --backbone .gpu/minilm --streaming \
  --tasks topic=/tmp/stream-data/topic-200000.csv sentiment=/tmp/stream-data/sentiment-200000.csv \
  --task_label_names topic=world,sports,business sentiment=neg,pos --sampling_strategy round_robin \
  --max_steps 200 --per_device_train_batch_size 64 --max_eval_samples 256 --eval_strategy no --save_strategy no \
  --load_best_model_at_end false --logging_steps 20 --disable_tqdm true --bf16 --stsb_eval false \
  --output_dir /tmp/stream_distill
check stream_distill
if [ "$GPUS" -ge 2 ]; then
  step fsdp_2proc 180 torchrun --standalone --nproc_per_node 2 train.py $DATA $SHORT "${FSDP[@]}" \
    --output_dir /tmp/fsdp_2proc
  check fsdp_2proc
  python3 -c "import json; r = json.load(open('/tmp/fsdp_2proc/training_summary.json'))['run']; \
print('world_size', r['world_size'], r['distributed_type'])"
fi
exit $status
