"""Calibrate `cnnlab inspect`'s verdict against how well each net actually trains.

    python examples/inspect_calibration.py [--epochs 4] [--verdicts-only] [--out runs/calibration]

For each net: the verdict at init (with the forward and backward ratios it was judged on) and the
validation accuracy after a few epochs of SGD. A verdict of vanishing, exploding, dead,
saturated or symmetric should predict a net that stays near chance; healthy, one that trains.
Prints a Markdown table (the README's, in "Signal at init") and the rule it supports. On two
shared CPU cores the whole table takes a few minutes; `--verdicts-only` skips training (seconds).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cnnlab
from cnnlab.propagation import inspect

HERE = Path(__file__).resolve().parent
QUICKSTART = HERE / "quickstart.yaml"  # simple_cnn, batch norm, kaiming_normal, relu
PLAIN = HERE / "deep_plain.yaml"  # plain conv stack, no norm, kaiming_normal, relu

# The quickstart net on synthetic images of growing size: the verdict must not move with H x W.
SYNTHETIC = ["data.dataset=synthetic", "diagnostics.every=0"]
# Plain stacks on digits (8x8, 10 classes) with deep_plain.yaml's SGD (lr 0.01, clipped): 32
# channels keep each run to seconds on a CPU, and batches of 32 give 34 steps an epoch.
DIGITS = ["data.dataset=digits", "model.width=32", "data.batch_size=32"]

CASES = [
    ("simple_cnn, batch norm, kaiming, relu, 8x8", QUICKSTART,
     SYNTHETIC + ["data.synthetic.image_size=8"]),
    ("simple_cnn, batch norm, kaiming, relu, 16x16", QUICKSTART,
     SYNTHETIC + ["data.synthetic.image_size=16"]),
    ("simple_cnn, batch norm, kaiming, relu, 32x32", QUICKSTART,
     SYNTHETIC + ["data.synthetic.image_size=32"]),
    ("simple_cnn, batch norm, kaiming, relu, 64x64", QUICKSTART,
     SYNTHETIC + ["data.synthetic.image_size=64"]),
    ("simple_cnn, zero init, digits", QUICKSTART, ["model.init=zeros", "diagnostics.every=0"]),
    ("plain-20, kaiming, relu, digits", PLAIN, DIGITS),
    ("plain-30, kaiming, relu, digits", PLAIN, DIGITS + ["model.depth=30"]),
    ("plain-20, kaiming, tanh, digits", PLAIN, DIGITS + ["model.activation=tanh"]),
    ("plain-10, kaiming, relu, digits", PLAIN, DIGITS + ["model.depth=10"]),
    ("plain-6, xavier, relu, digits", PLAIN, DIGITS + ["model.depth=6",
                                                       "model.init=xavier_normal"]),
    ("plain-10, xavier, relu, digits", PLAIN, DIGITS + ["model.depth=10",
                                                        "model.init=xavier_normal"]),
    ("plain-20, xavier, relu, digits", PLAIN, DIGITS + ["model.init=xavier_normal"]),
    ("plain-20, torch_default, relu, digits", PLAIN, DIGITS + ["model.init=torch_default"]),
    ("plain-20, normal(0, 0.01), relu, digits", PLAIN,
     DIGITS + ["model.init={name: normal, std: 0.01}"]),
    ("plain-20, kaiming, sigmoid, digits", PLAIN, DIGITS + ["model.activation=sigmoid"]),
    ("plain-20, normal(0, 1), relu, digits", PLAIN,
     DIGITS + ["model.init={name: normal, std: 1.0}"]),
]


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def verdicts() -> list[tuple[str, dict, object]]:
    """(label, inspect report, config) of every case, without training."""
    rows = []
    for label, config, overrides in CASES:
        cfg = cnnlab.load_config(config, overrides)
        rows.append((label, inspect(cfg), cfg))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--verdicts-only", action="store_true", help="skip training")
    parser.add_argument("--out", help="folder for the run folders (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="calibration-"))
    print(f"| net | image size | verdict | direction, where | forward: std last/input "
          f"| backward: grad norm first/last | val_acc after {args.epochs} epochs | chance |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    outcomes = []
    for index, (label, report, cfg) in enumerate(verdicts()):
        where = ", ".join(part for part in (report["direction"], report["layer"]) if part) or "-"
        size = "8x8" if cfg.data.dataset == "digits" else f"{cfg.data.synthetic.image_size}" \
            f"x{cfg.data.synthetic.image_size}"
        accuracy = chance = "-"
        if not args.verdicts_only:
            cfg.train.epochs = args.epochs
            summary = cnnlab.train(cfg, out=out / f"case{index}", progress=False)
            chance_value = 1.0 / summary["num_classes"]
            outcomes.append((report["verdict"], summary["final_val_acc"], chance_value))
            accuracy, chance = f"{summary['final_val_acc']:.3f}", f"{chance_value:.2f}"
        name = label.rsplit(", ", 1)[0] if "x" in label.rsplit(", ", 1)[1] else label
        print(f"| {name} | {size} | {report['verdict']} | {where} | "
              f"{fmt(report['forward_input_ratio'])} | {fmt(report['backward_ratio'])} | "
              f"{accuracy} | {chance} |", flush=True)
    if outcomes:
        flagged = [(acc, chance) for v, acc, chance in outcomes if v != "healthy"]
        healthy = [(acc, chance) for v, acc, chance in outcomes if v == "healthy"]
        print()
        if flagged:
            print(f"flagged (not healthy): {len(flagged)} nets, best val_acc minus chance "
                  f"{max(a - c for a, c in flagged):+.3f}")
        if healthy:
            print(f"healthy: {len(healthy)} nets, worst val_acc minus chance "
                  f"{min(a - c for a, c in healthy):+.3f}")


if __name__ == "__main__":
    main()
