"""Does the LR the doctor confirms land within 3x of the best of a grid on the same budget?

    python examples/doctor_lr_evidence.py examples/quickstart.yaml -o train.threads=1
    python examples/doctor_lr_evidence.py examples/quickstart.yaml -o model.arch=resnet20

For one config (with -o overrides) this runs the doctor's own LR phase pieces: its range test
(`cnnlab.doctor.lr.learned_sweep`) and its bracket around the valley (`cnnlab.doctor.lr.bracket`).
Then it trains a grid of LRs half a decade apart, from 1/10 to 100x the valley, at the config's
full length over --seeds seeds, which contains the bracket. It prints, for each way of
confirming (one epoch on the first seed, or the config's full length on the first seed, with
the doctor's pick rule `cnnlab.doctor.lr.best_of`, the highest LR within noise of the best), the
LR picked and its ratio to the grid's best mean val_acc (to the nearest, where several tie).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import cnnlab
from cnnlab.doctor.lr import BRACKET, best_of, bracket, learned_sweep, lr_text, valley_of
from cnnlab.errors import NonFiniteLossError
from cnnlab.experiments.statistics import accuracy_difference_noise


def final_acc(cfg, out: Path) -> float:
    """Final val_acc of one run; a run that diverged counts as 0, as in the doctor."""
    if (out / "summary.json").exists():  # finished earlier: run the command again to reuse it
        summary = json.loads((out / "summary.json").read_text())
    else:
        try:
            summary = cnnlab.train(cfg, out=out, progress=False)
        except NonFiniteLossError:
            return 0.0
    value = summary.get("final_val_acc")
    return 0.0 if value is None or not math.isfinite(value) else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="folder for run folders (default: a temporary one)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="doctor-lr-"))
    overrides = args.override + ["diagnostics.every=0"]
    cfg = cnnlab.load_config(args.config, overrides)
    sweep = learned_sweep(cfg, print, "config")
    valley = valley_of(sweep)  # None where the sweep had none, or learned nothing
    tried = bracket(sweep, cfg.optim.lr)
    # The grid: the bracket's points and half-decades around them (1/10 to 100x the valley).
    step = math.sqrt(10.0)
    # (A point within 2% of a bracket LR, a rounding apart, is that LR.)
    around = [float(lr_text(tried[0] * step ** k)) for k in range(-3, 5)]
    grid = sorted(set(tried) | {lr for lr in around
                                if all(abs(lr / t - 1) > 0.02 for t in tried)})
    seeds = [cfg.seed + k for k in range(args.seeds)]
    full = {lr: [final_acc(cnnlab.load_config(args.config, overrides + [
        f"optim.lr={lr}", f"seed={seed}"]), out / f"lr{lr}-s{seed}") for seed in seeds]
        for lr in grid}
    short = {lr: final_acc(cnnlab.load_config(args.config, overrides + [
        f"optim.lr={lr}", "train.epochs=1"]), out / f"lr{lr}-1epoch") for lr in tried}
    mean = {lr: sum(v) / len(v) for lr, v in full.items()}
    grid_best = max(mean, key=lambda lr: (mean[lr], -lr))
    # LRs whose mean ties the best (a flat top): a pick's ratio is to the nearest of them.
    tied = [lr for lr in grid if mean[lr] == mean[grid_best]]
    val_images = sweep["val_images"]
    picks = {"one epoch, first seed, best (the doctor before)": best_of(short),
             f"{cfg.train.epochs} epochs, first seed, highest within noise (the doctor now)":
                 best_of({lr: full[lr][0] for lr in tried}, val_images)}

    print(f"config: {args.config} {' '.join(args.override)}; {cfg.train.epochs} epochs, "
          f"{args.seeds} seeds per grid point")
    print(f"{val_images} validation images: noise(0.95) = {accuracy_difference_noise(0.95, val_images):.4f}")
    print(f"range test valley {valley if valley is None else f'{valley:.3g}'}; bracket (x{', x'.join(f'{f:.3g}' for f in BRACKET)})"
          f": {', '.join(lr_text(lr) for lr in tried)}")
    print("| lr | mean val_acc | per seed | one-epoch val_acc |")
    print("| --- | --- | --- | --- |")
    for lr in grid:
        mark = " (grid best)" if lr in tied else ""
        one = f"{short[lr]:.4f}" if lr in short else ""
        print(f"| {lr_text(lr)}{mark} | {mean[lr]:.4f} | "
              f"{', '.join(f'{v:.3f}' for v in full[lr])} | {one} |")
    result = {"config": args.config, "overrides": args.override, "valley": valley,
              "tried": tried, "grid": {lr_text(lr): full[lr] for lr in grid},
              "one_epoch": {lr_text(lr): short[lr] for lr in tried},
              "grid_best": grid_best, "picks": {}}
    for rule, lr in picks.items():
        ratio = min(max(lr, best) / min(lr, best) for best in tied)
        result["picks"][rule] = {"lr": lr, "ratio": ratio, "mean_val_acc": mean[lr]}
        print(f"{rule}: picks {lr_text(lr)} (mean val_acc {mean[lr]:.4f}), ratio to the grid's "
              f"best {ratio:.2f}: {'within' if ratio <= 3.0001 else 'NOT within'} 3x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
