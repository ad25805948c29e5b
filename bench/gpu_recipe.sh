#!/usr/bin/env bash
# The fast recipe on a GPU with torch.compile and bf16 autocast: 10 epochs against the tutorial
# recipe, 10 epochs eager (what compile buys), then longer schedules of the fast recipe.
#
#   bash bench/gpu_recipe.sh [CIFAR_ARCHIVE] [LOG_DIR]
#
# Env: EPOCHS (longer schedules, default "20 40"), EXTRA (more -o overrides, e.g. for a smoke
# test: EXTRA="-o data.train_subset=2000"), RUNS (run folders, default runs/gpu-recipe).
# Each step has its own time limit and logs to LOG_DIR/<step>.txt, so one failure keeps the rest.
set -u
DATA=${1:-../shared/datasets/cifar10-jpeg.tar.gz}
LOGS=${2:-runs/gpu-recipe-logs}
RUNS=${RUNS:-runs/gpu-recipe}
EPOCHS=${EPOCHS:-20 40}
EXTRA=${EXTRA:-}
export PYTHONUNBUFFERED=1
mkdir -p "$LOGS"
here=$(dirname "$0")

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$LOGS/machine.txt" 2>&1

step() {  # step NAME LIMIT_S ARGS...
  local name=$1 limit=$2
  shift 2
  echo "== $name" >&2
  timeout "$limit" python3 "$here/time_to_accuracy.py" --data "$DATA" "$@" $EXTRA \
    > "$LOGS/$name.txt" 2>&1 || echo "$name: exit $?" >> "$LOGS/$name.txt"
  grep -E "^device|test accuracy:|faster|final" "$LOGS/$name.txt" >&2 || tail -5 "$LOGS/$name.txt" >&2
}

step compiled-e10 300 -o train.compile=true -o train.epochs=10 --out "$RUNS/compiled-e10"
step eager-e10 120 --fast-only -o train.compile=false -o train.epochs=10 --out "$RUNS/eager-e10"
for epochs in $EPOCHS; do
  step "compiled-e$epochs" 180 --fast-only -o train.compile=true -o "train.epochs=$epochs" \
    --out "$RUNS/compiled-e$epochs"
done
