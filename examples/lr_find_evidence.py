"""Does the range test's valley suggestion land near the best learning rate of a real grid?

    python examples/lr_find_evidence.py examples/quickstart.yaml --epochs 3
    python examples/lr_find_evidence.py examples/cifar10_fastnet.yaml -o data.train_subset=5000 \\
        --epochs 3

Runs `cnnlab lr-find` on the config, then trains the config at 8 log-spaced learning rates
(half a decade apart) for a few epochs each and prints a table: the grid's best LR (highest final
validation accuracy, ties broken by lower validation loss) against the valley suggestion.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cnnlab
from cnnlab.lr_finder import lr_find



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--grid-low", type=float, default=-3.5,
                        help="log10 of the grid's lowest LR; 8 points half a decade apart")
    parser.add_argument("--out", help="folder for run folders (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lr-evidence-"))
    overrides = args.override + [f"train.epochs={args.epochs}", "diagnostics.every=0"]
    cfg = cnnlab.load_config(args.config, overrides)
    found = lr_find(cfg)
    # The grid sets optim.lr, so compare in config units (equal to the optimizer's LR unless
    # optim.scale_lr is on).
    valley = found["optim_lr"]["valley"]

    grid = [10 ** (args.grid_low + 0.5 * i) for i in range(8)]
    rows = []
    for index, lr in enumerate(grid):
        run = cnnlab.load_config(args.config, overrides + [f"optim.lr={lr}"])
        summary = cnnlab.train(run, out=out / f"lr{index}", progress=False)
        rows.append((lr, summary.get("final_val_acc") or 0.0, summary.get("final_val_loss")))
    best = max(rows, key=lambda r: (r[1], -(r[2] if r[2] is not None else float("inf"))))
    print(f"config: {args.config} {' '.join(args.override)}, {args.epochs} epochs per grid point")
    print("| lr | final val_acc | final val_loss |")
    print("| --- | --- | --- |")
    for lr, acc, loss in rows:
        mark = " (best)" if lr == best[0] else ""
        loss_text = "diverged" if loss is None else f"{loss:.3f}"
        print(f"| {lr:.3g}{mark} | {acc:.4f} | {loss_text} |")
    ratio = max(valley, best[0]) / min(valley, best[0]) if valley else None
    print(f"\nvalley suggestion {valley:.3g}; grid best {best[0]:.3g}; ratio "
          f"{ratio:.2f} ({'within' if ratio and ratio <= 3 else 'NOT within'} a factor of 3)")
    print(f"other suggestions: steep {found['suggestions']['steep']}, "
          f"minimum {found['suggestions']['minimum']}")


if __name__ == "__main__":
    main()
