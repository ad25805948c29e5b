#!/usr/bin/env bash
# cnnlab's airbench recipes against airbench's own scripts, on one GPU, on the same data, one
# after the other; then the table of bench/recipe_vs_airbench.py (accuracy over seeds with a 95%
# t interval, training seconds per run, time to 94% or to airbench's own mean, cnnlab/airbench).
#
#   bash bench/gpu_recipe.sh [CIFAR_ARCHIVE] [LOG_DIR]
#
# Steps (STEPS, default "data airbench cnnlab table"; "fast" adds the older fast-recipe runs):
#   data      airbench's cifar10/{train,test}.pt made offline from the JPEG archive
#             (airbench's cifar_pt_from_jpeg.py) into WORK; cnnlab's image cache decoded
#   airbench  airbench94.py, then airbench94_muon.py (compiled; its warm-up run is not counted),
#             SEEDS runs each, in WORK
#   cnnlab    examples/cifar10_airbench.yaml (10 epochs), then cifar10_airbench_muon.yaml
#             (8 epochs), with train.compile=true, seeds 0..SEEDS-1, into RUNS/<recipe>/seed-<S>
#   table     python bench/recipe_vs_airbench.py LOG_DIR RUNS (also written to LOG_DIR/table.txt)
# Env: SEEDS (runs per recipe, 5), BUDGET_S (seconds for this invocation, 690: every step's own
# limit is cut to what is left, so the table always runs), AIRBENCH_DIR (the airbench peer,
# ../shared/peers/airbench), WORK (airbench's folder, ${TMPDIR:-/tmp}/cnnlab-airbench), RUNS
# (runs/gpu-recipe), COMPILE (true), EXTRA (more -o overrides for the cnnlab runs), PYTHON.
# Each step logs to LOG_DIR/<step>.txt and has its own time limit, so one failure keeps the rest;
# a finished cnnlab run and made .pt files are reused, so the steps can be split over two calls
# (STEPS="data airbench", then STEPS="cnnlab table") where one command may run 10 minutes at most.
# Without a CUDA GPU (airbench needs one) the airbench steps are skipped and the cnnlab side runs
# as a smoke check of the plumbing: SEEDS 1 and EXTRA a 500-image, 1-epoch, eager run, no TTA.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(realpath -m "${1:-$ROOT/../shared/datasets/cifar10-jpeg.tar.gz}")
LOGS=$(realpath -m "${2:-runs/gpu-recipe-logs}")
RUNS=$(realpath -m "${RUNS:-runs/gpu-recipe}")
WORK=$(realpath -m "${WORK:-${TMPDIR:-/tmp}/cnnlab-airbench}")
AIRBENCH_DIR=$(realpath -m "${AIRBENCH_DIR:-$ROOT/../shared/peers/airbench}")
STEPS=${STEPS:-data airbench cnnlab table}
BUDGET_S=${BUDGET_S:-690}
COMPILE=${COMPILE:-true}
PY=${PYTHON:-python3}
RESERVE_S=20  # kept back for the table
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
deadline=$((SECONDS + BUDGET_S))
mkdir -p "$LOGS" "$RUNS" "$WORK"

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  gpu=1
  SEEDS=${SEEDS:-5}
  EXTRA=${EXTRA:-}
  # The first seed of a recipe compiles from nothing; the later ones find inductor's cache warm.
  first_run_s=120 run_s=75
else
  gpu=0
  SEEDS=${SEEDS:-1}
  # Eager and no TTA: on a CPU, compiling and the TTA views of the 10,000 test images take minutes.
  EXTRA=${EXTRA:--o data.train_subset=500 -o train.epochs=1 -o train.threads=1 -o train.compile=false -o train.tta=none}
  first_run_s=300 run_s=300
  echo "no CUDA GPU here: airbench's scripts need one (fp16 and .cuda() throughout), so the" \
    "airbench steps are skipped; the cnnlab side runs as a smoke check (SEEDS=$SEEDS, EXTRA=$EXTRA)" >&2
fi

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "SEEDS=$SEEDS COMPILE=$COMPILE EXTRA=$EXTRA STEPS=$STEPS DATA=$DATA"
} >> "$LOGS/machine.txt" 2>&1

wants() { [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME LIMIT_S COMMAND...: runs COMMAND under the smaller of LIMIT_S and the time left
  local name=$1 wanted=$2
  shift 2
  local left=$((deadline - SECONDS - RESERVE_S))
  local limit=$((wanted < left ? wanted : left))
  if ((limit < 5)); then
    echo "$name: skipped, BUDGET_S=$BUDGET_S is spent" | tee "$LOGS/$name.txt" >&2
    return 1
  fi
  echo "== $name (limit ${limit} s)" >&2
  local started=$SECONDS rc=0
  timeout "$limit" "$@" > "$LOGS/$name.txt" 2>&1 || rc=$?
  local verdict="exit $rc"
  ((rc == 124)) && verdict="timed out"
  echo "$name: $verdict after $((SECONDS - started)) s" | tee -a "$LOGS/$name.txt" >&2
  return "$rc"
}

airbench_script() {  # airbench_script NAME: a copy of the peer script in WORK doing SEEDS runs
  local name=$1
  # The run count is a literal in each script's main block (25 and 200).
  sed -E "s/for run in range\([0-9]+\)/for run in range($SEEDS)/" "$AIRBENCH_DIR/$name.py" \
    > "$WORK/$name.py"
  if ! grep -q "for run in range($SEEDS)" "$WORK/$name.py"; then
    echo "$name.py: its run loop was not found; running it as it is" >&2
    cp "$AIRBENCH_DIR/$name.py" "$WORK/$name.py"
  fi
}

if wants data; then
  if ((gpu)); then
    if [[ -f $WORK/cifar10/train.pt && -f $WORK/cifar10/test.pt ]]; then
      echo "airbench-data: $WORK/cifar10 already made" >&2
    else
      step airbench-data 120 "$PY" "$AIRBENCH_DIR/cifar_pt_from_jpeg.py" "$DATA" "$WORK/cifar10"
    fi
  fi
  step cnnlab-data 150 "$PY" -c "
import cnnlab
from cnnlab.data import load_data
data = load_data(cnnlab.load_config({'data': {'dataset': 'imagefolder', 'root': '$DATA',
                                              'val_split': 0}}).data)
print('cnnlab image cache ready:', len(data.train.labels), 'training images')"
fi

if wants airbench && ((gpu)); then
  # airbench94: not compiled, no warm-up run (its first run pays cudnn's autotuning), ~4 s a run.
  airbench_script airbench94
  step airbench94 $((60 + 15 * SEEDS)) env -C "$WORK" "$PY" airbench94.py
  # airbench94_muon: compiled with max-autotune during a warm-up run on random labels.
  airbench_script airbench94_muon
  step airbench94_muon $((240 + 10 * SEEDS)) env -C "$WORK" "$PY" airbench94_muon.py
  grep -h "^Mean" "$LOGS/airbench94.txt" "$LOGS/airbench94_muon.txt" >&2
fi

if wants cnnlab; then
  for recipe in airbench airbench_muon; do
    for ((seed = 0; seed < SEEDS; seed++)); do
      out=$RUNS/$recipe/seed-$seed
      if grep -qs '"status": "completed"' "$out/summary.json"; then
        echo "cnnlab-$recipe-seed$seed: done already ($out)" >&2
        continue
      fi
      rm -rf "$out"  # a run cut off by its time limit starts over
      # shellcheck disable=SC2086  # EXTRA is a list of words
      step "cnnlab-$recipe-seed$seed" $((seed == 0 ? first_run_s : run_s)) \
        "$PY" -m cnnlab train "$ROOT/examples/cifar10_$recipe.yaml" -o "seed=$seed" \
        -o "data.root=$DATA" -o "train.compile=$COMPILE" $EXTRA --out "$out"
      grep -h "^best\|^epoch" "$LOGS/cnnlab-$recipe-seed$seed.txt" | tail -2 >&2
    done
  done
fi

if wants fast; then  # the fast recipe's runs of README section 4b (not in the default budget)
  # shellcheck disable=SC2086
  step fast-compiled-e10 300 "$PY" "$ROOT/bench/time_to_accuracy.py" --data "$DATA" \
    -o train.compile=true -o train.epochs=10 $EXTRA --out "$RUNS/fast-compiled-e10"
  # shellcheck disable=SC2086
  step fast-eager-e10 120 "$PY" "$ROOT/bench/time_to_accuracy.py" --data "$DATA" --fast-only \
    -o train.compile=false -o train.epochs=10 $EXTRA --out "$RUNS/fast-eager-e10"
fi

if wants table; then
  RESERVE_S=0
  step table 60 "$PY" "$ROOT/bench/recipe_vs_airbench.py" "$LOGS" "$RUNS"
  grep -v "^table: " "$LOGS/table.txt"
fi
