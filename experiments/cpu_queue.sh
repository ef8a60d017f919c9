#!/usr/bin/env bash
# The CPU work queue behind the shipped models and the paper experiments, in order; every stage
# is resumable, so after an interruption (end of a session) run it again:
#
#   nohup setsid bash experiments/cpu_queue.sh > ~/dualsr-runs/cpu_queue.log 2>&1 &
#
# 1. compress-x4: the shipped drn-t-x4 (BASE) compressed by DRC to the parameter budget of a
#    uniform 50% channel cut: search (--select budget), prune (drc), fine-tune 2,000 bf16 steps
#    with distillation from BASE -> the lightweight x4 model.
# 2. x8 size selection: n_feats 4 and 6 (10 RCABs) at equal CPU time (each's step count from a
#    60-step probe of its idle speed, $X8_SIZE_MINUTES minutes each, default 15), then the long
#    x8 run ($X8_HOURS hours, default 2.5) on the one with the better Set5.
# 2b. experiments/greedy_vs_official.py on BASE at 30% (16 images of 96 px).
# 3. The paper experiments (experiments/paper_grid.py): lambda, dual-hr, search, methods, x8, in
#    two one-thread lanes.
# Run directories live in $RUNS (default ~/dualsr-runs), outside the checkout.
set -u
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
R=${RUNS:-$HOME/dualsr-runs}
DATA=${DATA:-$(cd ../shared/datasets && pwd)}
BASE=${BASE:-src/dualsr/weights/drn-t-x4.safetensors}
X8_HOURS=${X8_HOURS:-2.5} X8_SIZE_MINUTES=${X8_SIZE_MINUTES:-15}
D=.venv/bin/dualsr
PY=.venv/bin/python
TRAIN_DIRS="$DATA/T91 $DATA/BSD200"
COMMON=(--set data.cache_dir=$R/cache --set train.threads=2 --set run.tensorboard=false
  --set run.progress=false)
mkdir -p "$R"

train() {  # run_dir, then `dualsr train` options for a new run; resumes an existing one
  local dir=$1; shift
  [ -f "$dir/DONE" ] && return 0
  if [ -f "$dir/config.yaml" ]; then
    $D train --resume "$dir" >> "$dir.log" 2>&1 || return 1
  else
    $D train --run-dir "$dir" "$@" > "$dir.log" 2>&1 || return 1
  fi
  touch "$dir/DONE"
}

# 1. the lightweight x4 model
C=$R/compress-x4
mkdir -p "$C"
if [ ! -f "$C/search/channel_config.txt" ]; then
  budget=$($PY - "$BASE" <<'PY'
import sys
import dualsr
from dualsr.compression.budget import config_cost
from dualsr.compression.criteria import uniform_config
m = dualsr.load_model(sys.argv[1])
print(config_cost(m.arch, uniform_config(m.channel_widths(), 0.5), None)[0])
PY
)
  if [ -f "$C/search/config.yaml" ] || [ -d "$C/search/checkpoints" ]; then
    $D search --resume "$C/search" >> "$C/search.log" 2>&1 || exit 1
  else
    $D search --model "$BASE" --data $TRAIN_DIRS --rate 0.5 --select budget \
      --budget-params "$budget" --steps 600 --patch-size 96 --batch-size 8 --val "$DATA/Set5" \
      --cache-dir "$R/cache" \
      -o "$C/search" > "$C/search.log" 2>&1 || exit 1
  fi
fi
if [ ! -f "$C/pruned.safetensors" ]; then
  $D prune --model "$BASE" --config "$C/search/channel_config.txt" --method drc --greedy moments \
    --data $TRAIN_DIRS \
    --images 64 --patch-size 128 --batch-size 16 -o "$C/pruned.safetensors" > "$C/prune.log" 2>&1 || exit 1
fi
if [ ! -f "$C/ft/DONE" ]; then
  if [ -f "$C/ft/config.yaml" ]; then
    $D train --resume "$C/ft" >> "$C/ft.log" 2>&1 || exit 1
  else
    $D finetune --model "$C/pruned.safetensors" --teacher "$BASE" --steps 2000 \
      --config configs/cpu-drn-x4.yaml --data $TRAIN_DIRS -o "$C/ft" "${COMMON[@]}" \
      --set optim.lr=1e-4 --set val.every=500 --set "val.folders=[$DATA/Set5,$DATA/Set14]" \
      > "$C/ft.log" 2>&1 || exit 1
  fi
  touch "$C/ft/DONE"
fi

# 2. x8: size by equal CPU time, then the long run
X8=(--config configs/cpu-drn-x8.yaml --set "data.train=[$DATA/T91,$DATA/BSD200]"
  --set "val.folders=[$DATA/Set5]" "${COMMON[@]}")
best="" best_psnr=0
for f in 4 6; do
  probe=$R/x8-probe-f$f
  train "$probe" "${X8[@]}" --set model.n_feats=$f --set train.steps=60 --set val.every=0 \
    --set run.log_every=5 || exit 1
  steps=$($PY - "$probe" "$X8_SIZE_MINUTES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"patches_per_s"' in l]
step_s = 16 / statistics.median(r["patches_per_s"] for r in rows[4:])  # steps 25-60: warm
print(int(float(sys.argv[2]) * 60 / step_s) // 10 * 10)
PY
)
  run=$R/x8-size-f$f
  train "$run" "${X8[@]}" --set model.n_feats=$f --set train.steps=$steps \
    --set val.every=$((steps / 4)) || exit 1
  psnr=$($PY -c "import json; print([json.loads(l)['val_psnr'] for l in open('$run/metrics.jsonl') if 'val_psnr' in l][-1])")
  line="x8 n_feats $f: $steps steps, Set5 $psnr"
  grep -qxF "$line" "$R/x8-size.txt" 2>/dev/null || echo "$line" >> "$R/x8-size.txt"
  if $PY -c "import sys; sys.exit(0 if $psnr > $best_psnr else 1)"; then best=$f best_psnr=$psnr; fi
done
if [ ! -f "$R/x8-long/config.yaml" ]; then
  steps=$($PY - "$R/x8-probe-f$best" "$X8_HOURS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"patches_per_s"' in l]
step_s = 16 / statistics.median(r["patches_per_s"] for r in rows[4:])
print(int(float(sys.argv[2]) * 3600 / step_s) // 1000 * 1000)
PY
)
  echo "x8 long run: n_feats $best, $steps steps" >> "$R/x8-size.txt"
fi
train "$R/x8-long" "${X8[@]}" --set model.n_feats=$best --set train.steps=${steps:-0} \
  --set val.every=1000 --set run.save_every=250 \
  --set "val.folders=[$DATA/Set5,$DATA/Set14]" || exit 1

# 2b. does the moments greedy pick the official loop's channels? (small pruning data: the
#     official loop costs two full passes per kept channel)
G=$R/greedy_vs_official-drn-t-x4-r30.json
if [ ! -f "$G" ]; then
  OMP_NUM_THREADS=2 $PY experiments/greedy_vs_official.py --model "$BASE" --data "$DATA/T91" \
    --rate 0.3 --images 16 --patch-size 96 --batch-size 8 --out "$G" > "$R/greedy_vs_official.log" 2>&1 || exit 1
fi

# 3. the paper experiments, in two lanes of one thread each; a lane takes the next job the other
#    is not working on (jobs are locked, see experiments/paper_grid.py)
lane() {
  local grid=($PY experiments/paper_grid.py run --data "$DATA" --out "$R/paper" --threads 1)
  # cheapest claims first; the search family (18 jobs, 9 searches) is the most expensive.
  # A failed job is reported and the lane goes on with the other jobs and families.
  local failed=0
  for family in lambda dual-hr; do
    "${grid[@]}" $family || failed=1
  done
  "${grid[@]}" methods --base "$BASE" || failed=1
  local x8=src/dualsr/weights/drn-t-x8.safetensors  # the shipped x8 model, else the run's
  [ -f "$x8" ] || x8=$R/x8-long/latest.safetensors
  "${grid[@]}" x8 --base "$x8" || failed=1
  "${grid[@]}" search --base "$BASE" || failed=1
  return $failed
}
lane 0 >> "$R/paper-lane0.log" 2>&1 &
lane 1 >> "$R/paper-lane1.log" 2>&1 &
fails=0
for pid in $(jobs -p); do wait "$pid" || fails=$((fails + 1)); done
[ "$fails" = 0 ] || { echo "a paper lane failed: see $R/paper-lane*.log"; exit 1; }
echo "queue done"
