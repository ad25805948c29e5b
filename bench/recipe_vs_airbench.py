"""cnnlab's airbench recipes against airbench's own scripts, run on the same machine and data:
the table of bench/gpu_recipe.sh, made from its logs and run folders (it only reads).

    python bench/recipe_vs_airbench.py LOG_DIR RUNS_DIR

LOG_DIR/airbench94.txt and LOG_DIR/airbench94_muon.txt are airbench's printed tables; RUNS_DIR/
airbench/seed-*/ and RUNS_DIR/airbench_muon/seed-*/ are cnnlab run folders of
examples/cifar10_airbench.yaml and examples/cifar10_airbench_muon.yaml. A missing side prints as
"no runs", so a failed step leaves the rest of the table.

How each side is counted (airbench's own conventions, and the nearest cnnlab has):
- accuracy: airbench's final test accuracy with its test-time augmentation (`tta_val_acc`);
  cnnlab's last epoch's val_acc, which is the test set (val_split 0) under `train.tta`.
- training seconds: airbench's timer at its final row (whitening init, training, the final TTA
  evaluation; not the per-epoch evaluations); cnnlab's train_seconds summed over epochs (no
  evaluation). torch.compile compiles inside cnnlab's first epoch, which airbench94_muon keeps out
  with a warm-up run: so cnnlab's first epoch is counted as the median of its other epochs
  ("compile excluded"), and the sum with the compile is shown beside it.
- time to target: the target is 94% test accuracy when airbench's mean reaches it on this data,
  else airbench's own mean. Runs are averaged epoch by epoch (accuracy and cumulative seconds),
  and the time is that of the first epoch whose mean accuracy reaches the target. airbench's
  per-epoch accuracies are without TTA and only its final point has it; cnnlab's have train.tta
  at every epoch.
- ratio: cnnlab's time over airbench's (the goal of issue 19: at most 1.5).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from cnnlab.experiments.statistics import t_interval
from cnnlab.rundir import RunDir

TARGET_ACCURACY = 0.94
GOAL_RATIO = 1.5
# (airbench script, its log file, cnnlab config, the runs' subfolder)
PAIRS = [
    ("airbench94.py", "airbench94.txt", "cifar10_airbench.yaml", "airbench"),
    ("airbench94_muon.py", "airbench94_muon.txt", "cifar10_airbench_muon.yaml", "airbench_muon"),
]


@dataclass
class Run:
    """One training run: its final accuracy, and (cumulative training seconds, accuracy) after
    each epoch, the last point being the final accuracy."""

    name: str
    accuracy: float
    seconds: float                     # training seconds of the run as compared
    seconds_with_compile: float
    curve: list[tuple[float, float]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().split("|")[1:-1]]


def parse_airbench_log(text: str) -> list[Run]:
    """The runs in airbench's printed table: a header row naming the columns, then per run one
    row per epoch (the run number in its first row) and an `eval` row with `tta_val_acc`.
    The warm-up run airbench94_muon makes to compile is left out, and so is a run cut short."""
    columns: list[str] | None = None
    runs: list[Run] = []
    current: dict | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        if "epoch" in cells:
            columns = cells
            continue
        if columns is None or len(cells) != len(columns):
            continue
        row = dict(zip(columns, cells))
        time_key = next(key for key in columns if key.endswith("time_seconds"))
        if row["run"]:
            current = {"name": row["run"], "curve": []}
        if current is None:
            continue
        seconds = float(row[time_key])
        if row["epoch"] == "eval":
            accuracy = float(row["tta_val_acc"])
            if current["name"] != "warmup":
                runs.append(Run(current["name"], accuracy, seconds, seconds,
                                current["curve"] + [(seconds, accuracy)]))
            current = None
        else:
            current["curve"].append((seconds, float(row["val_acc"])))
    return runs


def read_cnnlab_run(folder: Path) -> Run | None:
    """A completed cnnlab run folder as a Run; None while it is unfinished or failed."""
    run = RunDir(folder)
    summary = run.read_summary()
    history = run.read_metrics()
    if not summary or summary.get("status") != "completed" or not history:
        return None
    epoch_seconds = [record["train_seconds"] for record in history]
    if len(epoch_seconds) > 1:
        # The first epoch holds torch.compile's compiling: count it as a typical epoch.
        epoch_seconds[0] = statistics.median(epoch_seconds[1:])
    curve, total = [], 0.0
    for seconds, record in zip(epoch_seconds, history):
        total += seconds
        curve.append((total, record["val_acc"]))
    with_compile = sum(record["train_seconds"] for record in history)
    return Run(folder.name, history[-1]["val_acc"], total, with_compile, curve)


def read_cnnlab_runs(folder: Path) -> list[Run]:
    runs = [read_cnnlab_run(path) for path in sorted(folder.glob("seed-*")) if path.is_dir()]
    return [run for run in runs if run is not None]


def mean_curve(runs: list[Run]) -> list[tuple[float, float]]:
    """Epoch by epoch means of cumulative seconds and accuracy, over the epochs all runs have."""
    length = min(len(run.curve) for run in runs)
    return [(statistics.fmean(run.curve[i][0] for run in runs),
             statistics.fmean(run.curve[i][1] for run in runs)) for i in range(length)]


def time_to(runs: list[Run], target: float) -> float | None:
    # A hair of slack: airbench's mean is its own target, reached at the final point exactly.
    for seconds, accuracy in mean_curve(runs):
        if accuracy >= target - 1e-9:
            return seconds
    return None


@dataclass
class Row:
    recipe: str
    runs: list[Run]
    target: float | None = None
    time_to_target: float | None = None

    @property
    def mean_accuracy(self) -> float:
        return statistics.fmean(run.accuracy for run in self.runs)

    @property
    def mean_seconds(self) -> float:
        return statistics.fmean(run.seconds for run in self.runs)

    @property
    def mean_seconds_with_compile(self) -> float:
        return statistics.fmean(run.seconds_with_compile for run in self.runs)


def compare(peer: list[Run], ours: list[Run], peer_name: str, our_name: str) -> tuple[Row, Row]:
    """The two rows of one pair, with the pair's target and each side's time to it."""
    peer_row, our_row = Row(peer_name, peer), Row(our_name, ours)
    if peer:
        target = TARGET_ACCURACY if peer_row.mean_accuracy >= TARGET_ACCURACY \
            else peer_row.mean_accuracy
        for row in (peer_row, our_row):
            row.target = target
            row.time_to_target = time_to(row.runs, target) if row.runs else None
    return peer_row, our_row


def _accuracy_cell(row: Row) -> str:
    low, high = t_interval([run.accuracy for run in row.runs])
    interval = "one run, no interval" if math.isnan(low) else f"{low:.4f} to {high:.4f}"
    return f"{row.mean_accuracy:.4f} ({interval})"


def _ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or peer <= 0:
        return "n/a"
    return f"{ours / peer:.2f}x"


def table(pairs: list[tuple[Row, Row]]) -> list[str]:
    lines = ["| recipe | runs | test accuracy: mean (95% t interval) | training s per run "
             "(compile excluded / with compile) | target | time to target s | "
             "cnnlab / airbench: time to target | cnnlab / airbench: training s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for peer_row, our_row in pairs:
        for row in (peer_row, our_row):
            if not row.runs:
                lines.append(f"| {row.recipe} | 0 | no runs | | | | | |")
                continue
            target = "" if row.target is None else f"{row.target:.4f}"
            reached = "" if row.target is None else (
                "not reached" if row.time_to_target is None else f"{row.time_to_target:.2f}")
            ours = row is our_row
            time_ratio = _ratio(row.time_to_target, peer_row.time_to_target) if ours else ""
            seconds_ratio = (_ratio(row.mean_seconds, peer_row.mean_seconds)
                             if ours and peer_row.runs else "")
            lines.append(f"| {row.recipe} | {len(row.runs)} | {_accuracy_cell(row)} | "
                         f"{row.mean_seconds:.2f} / {row.mean_seconds_with_compile:.2f} | "
                         f"{target} | {reached} | {time_ratio} | {seconds_ratio} |")
    return lines


def verdicts(pairs: list[tuple[Row, Row]]) -> list[str]:
    lines = []
    for peer_row, our_row in pairs:
        if peer_row.time_to_target is None or not our_row.runs:
            lines.append(f"{our_row.recipe}: not comparable (a side has no runs)")
        elif our_row.time_to_target is None:
            lines.append(f"{our_row.recipe}: never reached {peer_row.target:.4f} "
                         f"(mean {our_row.mean_accuracy:.4f}): goal missed")
        else:
            ratio = our_row.time_to_target / peer_row.time_to_target
            verdict = "met" if ratio <= GOAL_RATIO else "missed"
            lines.append(f"{our_row.recipe}: {ratio:.2f}x airbench's time to "
                         f"{peer_row.target:.4f}: goal (<= {GOAL_RATIO}x) {verdict}")
    return lines


def build_pairs(logs: Path, runs: Path) -> list[tuple[Row, Row]]:
    pairs = []
    for script, log_name, config, subfolder in PAIRS:
        log = logs / log_name
        peer = parse_airbench_log(log.read_text(errors="replace")) if log.exists() else []
        ours = read_cnnlab_runs(runs / subfolder)
        pairs.append(compare(peer, ours, script, f"cnnlab {config}"))
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, help="bench/gpu_recipe.sh's log folder")
    parser.add_argument("runs", type=Path, help="bench/gpu_recipe.sh's run folder")
    args = parser.parse_args(argv)
    if not args.logs.is_dir() and not args.runs.is_dir():
        sys.exit(f"neither {args.logs} nor {args.runs} exists; run bench/gpu_recipe.sh first")
    pairs = build_pairs(args.logs, args.runs)
    print("\n".join(table(pairs)))
    print()
    print("\n".join(verdicts(pairs)))


if __name__ == "__main__":
    main()
