"""The four classic claims about initialization and activations, measured.

    python examples/init_evidence.py [--plot propagation.png] [--out DIR] [--verdicts-only]

For each case: `cnnlab inspect` (signal at init: verdict, forward and backward std ratios) and a
short training run (final validation accuracy against chance). Prints the README's table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cnnlab
from cnnlab.propagation import inspect
from cnnlab.report.propagation_plot import plot_propagation

HERE = Path(__file__).resolve().parent
PLAIN = HERE / "deep_plain.yaml"
CASES = [
    ("1. zero init, simple_cnn, digits", HERE / "zero_init.yaml", []),
    ("2. normal std 0.01, plain-20, relu", PLAIN, ["model.init={name: normal, std: 0.01}"]),
    ("2. kaiming_normal, plain-20, relu", PLAIN, []),
    ("3. kaiming_normal, plain-20, sigmoid", PLAIN, ["model.activation=sigmoid"]),
    ("4. xavier_normal, plain-30, relu", PLAIN, ["model.depth=30", "model.init=xavier_normal"]),
    ("4. kaiming_normal, plain-30, relu", PLAIN, ["model.depth=30"]),
]


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="std-vs-depth plot of the plain-net cases (PNG)")
    parser.add_argument("--out", help="folder for the run folders (default: a temporary one)")
    parser.add_argument("--verdicts-only", action="store_true",
                        help="inspect only, no training (seconds instead of many minutes)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="evidence-"))
    rows, reports = [], []
    for index, (label, config, overrides) in enumerate(CASES):
        cfg = cnnlab.load_config(config, overrides)
        report = inspect(cfg)
        report["name"] = label
        if "plain" in label:
            reports.append(report)
        accuracy = chance = "-"
        if not args.verdicts_only:
            summary = cnnlab.train(cfg, out=out / f"case{index}", progress=False)
            accuracy = f"{summary['final_val_acc']:.3f}"
            chance = f"{1.0 / summary['num_classes']:.2f}"
        rows.append((label, report["verdict"], report["layer"] or "-",
                     fmt(report["forward_ratio"]), fmt(report["backward_std_ratio"]), accuracy,
                     chance))
    print("| case | verdict | where | forward std last/first | backward std first/last "
          "| final val_acc | chance |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.plot:
        plot_propagation(reports, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
