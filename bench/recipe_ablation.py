"""Which of the recipe's techniques matter: examples/cifar10_airbench.yaml with one technique
removed at a time, over paired seeds, on a CIFAR-10 subset a CPU can train.

    python bench/recipe_ablation.py --out runs/recipe-ablation            # defaults below
    python bench/recipe_ablation.py --subset 2500 --seeds 3 --threads 1 --jobs 2

It is `cnnlab ablate` with one difference: the ablation's factors are not values of one key but
whole techniques (alternating flip is one key, the parameter roles a list), so each variant is a
set of -o overrides, and the full recipe's runs are shared by every comparison instead of being
trained once per technique. Each run is an ordinary `cnnlab train` run folder; the comparison is
`cnnlab.experiments.statistics.compare_paired` (paired Student t over the seeds), as in
`cnnlab compare`. Test-time augmentation changes only the evaluation, so its rows evaluate the
full recipe's own weights with `train.tta` set otherwise (`cnnlab eval`), pairing each seed with
itself. Runs that finished are kept: run the same command again to fill in what is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cnnlab.experiments.statistics import compare_paired
from cnnlab.runtime import cpu_name

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "cifar10_airbench.yaml"

# Each technique and the overrides that take it out of the recipe.
REMOVALS = {
    "alternating flip (random flip instead)": ["data.augment.flip=true"],
    "dirac init of the 3x3 convs (torch default instead)":
        ["model.init={default: torch_default, rules: [{match: stem.0, init: whitening}]}"],
    "parameter roles (frozen whitening and norm scales, 64x norm shifts, stem bias 3 epochs)":
        ["optim.groups=[]"],
    "lookahead (plain weights)": ["train.lookahead=null"],
}
TTA_ROWS = {"flip + translate TTA (flip only)": "flip", "flip + translate TTA (none)": "none"}


def train(folder: Path, overrides: list[str]) -> dict | None:
    """One run (skipped when its folder already holds a finished one); its summary."""
    summary = folder / "summary.json"
    if not summary.exists():
        command = [sys.executable, "-m", "cnnlab", "train", str(CONFIG), "--out", str(folder)]
        for item in overrides:
            command += ["-o", item]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{folder.name}: exit {result.returncode}: {result.stderr.strip()[-400:]}",
                  file=sys.stderr)
            return None
    return json.loads(summary.read_text())


def evaluate(folder: Path, tta: str, threads: int) -> float | None:
    """Test accuracy of a finished run's final weights, evaluated with `train.tta=tta`."""
    import cnnlab

    if not (folder / "summary.json").exists():
        return None
    result = cnnlab.evaluate_run(folder, split="test",
                                 overrides=[f"train.tta={tta}", f"train.threads={threads}"])
    return float(result["test_acc"])


def table_row(name: str, full: dict[int, float | None], other: dict[int, float | None]) -> str:
    stats = compare_paired(full, other)
    low, high = stats["diff_ci"]
    # The technique's contribution: the full recipe minus the recipe without it.
    return (f"| {name} | {stats['n']} | {-stats['diff']:+.4f} | [{-high:+.4f}, {-low:+.4f}] | "
            f"{stats['p_value']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/recipe-ablation")
    parser.add_argument("--subset", type=int, default=2500, help="training images (of 50,000)")
    parser.add_argument("--val", type=float, default=0.2, help="share of them held out")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    args = parser.parse_args()
    out = Path(args.out)
    # Test accuracy is read without TTA in training runs, so that each removal is measured on
    # the same evaluation; the TTA rows then evaluate the full recipe's weights with it.
    common = [f"data.train_subset={args.subset}", f"data.val_split={args.val}",
              f"data.batch_size={args.batch}", f"train.epochs={args.epochs}",
              f"train.threads={args.threads}", "train.tta=none", "train.amp=off"]
    variants = {"full recipe": []} | REMOVALS
    jobs = [(name, seed) for seed in range(args.seeds) for name in variants]

    def run(job):
        name, seed = job
        folder = out / f"{list(variants).index(name)}-seed{seed}"
        summary = train(folder, common + variants[name] + [f"seed={seed}"])
        return name, seed, None if summary is None else summary.get("test_acc")

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, jobs))
    acc = {name: {} for name in variants}
    for name, seed, value in results:
        acc[name][seed] = value
    full = acc["full recipe"]
    tta = {mode: {seed: evaluate(out / f"0-seed{seed}", mode, args.threads * args.jobs)
                  for seed in range(args.seeds)} for mode in ("flip_translate", "flip", "none")}

    print(f"examples/cifar10_airbench.yaml on {args.subset} CIFAR-10 training images "
          f"({args.val:.0%} held out), batch {args.batch}, {args.epochs} epochs, fp32, "
          f"{args.seeds} paired seeds; {cpu_name()}")
    means = {name: [v for v in values.values() if v is not None] for name, values in acc.items()}
    print("full recipe test accuracy without TTA: "
          + ", ".join(f"{v:.4f}" for v in means["full recipe"]))
    print("\n| technique removed | n | its contribution (test acc) | 95% CI | p |")
    print("| --- | --- | --- | --- | --- |")
    for name in REMOVALS:
        print(table_row(name, full, acc[name]))
    for name, mode in TTA_ROWS.items():
        print(table_row(name, tta["flip_translate"], tta[mode]))
    (out / "ablation.json").write_text(json.dumps({"test_acc": acc, "tta": tta,
                                                   "args": vars(args), "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
