#!/usr/bin/env bash
# DRC at CPU scale: compress a trained small DRN x4 with each method at each rate, fine-tune every
# pruned model with the same budget, and evaluate on Set5/Set14/BSD100.
#
#   experiments/compress_cpu_x4.sh BASE.safetensors OUT_DIR "0.5" "drc dcp l1 uniform" [FT_STEPS]
#
# "Rate" is the fraction of channels the uniform ("manually designed") configuration removes in
# every layer; `dualsr search` (second order) finds a configuration with exactly as many parameters
# (within 2%), and drc, dcp and l1 prune to that searched configuration, so every method is
# compared at an equal parameter budget. Every pruned model is fine-tuned with the dual regression
# loss plus distillation from BASE for FT_STEPS steps (default 400) on T91 + BSD200.
# Environment: DATA (datasets folder), SEARCH_STEPS (200), SEARCH_ARGS (extra `dualsr search`
# options, e.g. "--lr-alpha 0.03"), PRUNE_ARGS (extra `dualsr prune` options, e.g. "--gamma 100")
# and SUFFIX (appended to every model name, e.g. "-g100", so such variants sit beside the defaults).
set -euo pipefail
BASE=$1; OUT=$2; RATES=$3; METHODS=$4; FT_STEPS=${5:-400}
DATA="${DATA:-../shared/datasets}"
DUALSR="${DUALSR:-.venv/bin/dualsr}"
TRAIN_DIRS="$DATA/T91 $DATA/BSD200"
BENCH="$DATA/Set5 $DATA/Set14 $DATA/BSD100"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for rate in $RATES; do
  tag="r$(python3 -c "print(int(round($rate*100)))")"
  search_dir="$OUT/search-$tag"
  if [ ! -f "$search_dir/channel_config.txt" ]; then
    budget=$(.venv/bin/python - "$BASE" "$rate" <<'PY'
# equal budget: the parameter count of the uniform configuration at this rate
import sys
import dualsr
from dualsr.compression.budget import config_cost
from dualsr.compression.criteria import uniform_config
m = dualsr.load_model(sys.argv[1])
print(config_cost(m.arch, uniform_config(m.channel_widths(), float(sys.argv[2])), None)[0])
PY
)
    "$DUALSR" search --model "$BASE" --data $TRAIN_DIRS --rate "$rate" --select budget --budget-params "$budget" \
      --order second --steps "${SEARCH_STEPS:-200}" --patch-size 96 --batch-size 8 \
      --cache-dir runs/cache ${SEARCH_ARGS:-} -o "$search_dir"
  fi
  for method in $METHODS; do
    name="$method-$tag${SUFFIX:-}"
    if [ ! -f "$OUT/$name.safetensors" ]; then
      if [ "$method" = uniform ]; then
        "$DUALSR" prune --model "$BASE" --rate "$rate" --method uniform --rate-rounding multiple4 -o "$OUT/$name.safetensors"
      else
        "$DUALSR" prune --model "$BASE" --config "$search_dir/channel_config.txt" --method "$method" \
          --greedy moments --data $TRAIN_DIRS --images 64 --patch-size 128 --batch-size 16 \
          ${PRUNE_ARGS:-} -o "$OUT/$name.safetensors"  # moments: what the recorded results used
      fi
    fi
    if [ -d "$OUT/ft-$name/checkpoints" ]; then
      "$DUALSR" train --resume "$OUT/ft-$name"   # continues an interrupted run; no-op when done
    else
      "$DUALSR" finetune --model "$OUT/$name.safetensors" --teacher "$BASE" --steps "$FT_STEPS" \
        --config configs/cpu-drn-x4.yaml --data $TRAIN_DIRS -o "$OUT/ft-$name" \
        --set optim.lr=1e-4 --set val.every="$FT_STEPS" --set run.save_every=100 \
        --set train.threads=1 --set data.workers=0
    fi
    "$DUALSR" eval --model "$OUT/ft-$name/latest.safetensors" --data $BENCH --out "$OUT/eval-$name"
  done
done
