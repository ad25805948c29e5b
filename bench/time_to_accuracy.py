"""Time to accuracy on the real CIFAR-10: the fast recipe against a typical tutorial recipe on
the same net (fastnet), test accuracy after every epoch against wall-clock time.

    python bench/time_to_accuracy.py [--fast examples/cifar10_fastnet.yaml]
        [--tutorial examples/cifar10_tutorial.yaml] [--data ARCHIVE] [--fast-only]
        [-o key=value ...] [--out runs/tta]

Both configs validate on the 10,000 test images (val_split 0), so each epoch's val_acc is the
test accuracy. Times are given two ways: training time (the sum of the epochs' train_seconds;
like airbench, evaluation is not counted) and wall-clock time including the evaluation after
every epoch. The ratio is the tutorial's training time to its final accuracy over the fast
recipe's training time to the same accuracy; the targets are judged on training time.
Needs the CIFAR-10 archive (default ../shared/datasets/cifar10-jpeg.tar.gz). Finished runs in
--out are reused. bench/gpu_recipe.sh runs it on a GPU with and without torch.compile.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cnnlab
from benchlib import SHARED_CIFAR, ROOT, header
from cnnlab.rundir import RunDir


def run(config: str, overrides: list[str], out: Path) -> list[dict]:
    if (out / "summary.json").exists() and json.loads((out / "summary.json").read_text()).get(
            "status") == "completed":
        return RunDir(out).read_metrics()  # re-use a finished run (re-running prints again)
    cnnlab.train(cnnlab.load_config(config, overrides), out=out, progress=True)
    return RunDir(out).read_metrics()


def with_training_time(history: list[dict]) -> list[dict]:
    total = 0.0
    for record in history:
        total += record["train_seconds"]
        record["training_seconds"] = total
    return history


def time_to(history: list[dict], accuracy: float, key: str = "training_seconds") -> float | None:
    for record in history:
        if record["val_acc"] >= accuracy:
            return record[key]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", default=str(ROOT / "examples" / "cifar10_fastnet.yaml"))
    parser.add_argument("--tutorial", default=str(ROOT / "examples" / "cifar10_tutorial.yaml"))
    parser.add_argument("--data", default=str(SHARED_CIFAR),
                        help="the CIFAR-10 archive (default: ../shared/datasets)")
    parser.add_argument("--fast-only", action="store_true",
                        help="train the fast recipe alone (e.g. longer schedules on a GPU)")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="applied to both configs")
    parser.add_argument("--out", default="runs/time-to-accuracy")
    args = parser.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"needs the real CIFAR-10 at {args.data}; pass --data PATH")
    header("time to accuracy on CIFAR-10")
    out = Path(args.out)
    overrides = [f"data.root={args.data}", *args.override]
    recipes = {"fast": with_training_time(run(args.fast, overrides, out / "fast"))}
    if not args.fast_only:
        recipes["tutorial"] = with_training_time(run(args.tutorial, overrides, out / "tutorial"))
    device = json.loads((out / "fast" / "environment.json").read_text())["device_name"]
    print(f"device: {device}; overrides: {' '.join(args.override) or 'none'}")
    print("| recipe | epoch | training s | wall s (with evaluation) | test accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for name, history in recipes.items():
        for record in history:
            print(f"| {name} | {record['epoch']} | {record['training_seconds']:.1f} | "
                  f"{record['seconds']:.1f} | {record['val_acc']:.4f} |")
    fast = recipes["fast"]
    if "tutorial" in recipes:
        tutorial = recipes["tutorial"]
        target = tutorial[-1]["val_acc"]
        fast_time, tutorial_time = time_to(fast, target), time_to(tutorial, target)
        print(f"\ntutorial recipe: final test accuracy {target:.4f}, first reached after "
              f"{tutorial_time:.0f} s of training")
        if fast_time is None:
            print("fast recipe: never reached it")
        else:
            print(f"fast recipe: reached {target:.4f} after {fast_time:.0f} s of training -> "
                  f"{tutorial_time / fast_time:.1f}x faster")
    for accuracy, limit in ((0.90, 15 * 60), (0.94, 60 * 60)):
        reached = time_to(fast, accuracy)
        wall = time_to(fast, accuracy, "seconds")
        verdict = ("not reached" if reached is None else
                   f"reached after {reached:.1f} s of training "
                   f"({'within' if reached <= limit else 'over'} the {limit // 60}-minute "
                   f"target of the 2-core CPU; {wall:.1f} s wall-clock with evaluation)")
        print(f"fast recipe, {accuracy:.0%} test accuracy: {verdict}")
    print(f"fast recipe final: {fast[-1]['val_acc']:.4f} after "
          f"{fast[-1]['training_seconds']:.1f} s of training")


if __name__ == "__main__":
    main()
