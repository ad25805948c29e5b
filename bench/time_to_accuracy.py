"""Time to accuracy on the real CIFAR-10: the fast recipe against a typical tutorial recipe on
the same net (fastnet), test accuracy after every epoch against wall-clock time.

    python bench/time_to_accuracy.py [--fast examples/cifar10_fastnet.yaml]
        [--tutorial examples/cifar10_tutorial.yaml] [-o key=value ...] [--out runs/tta]

Both configs validate on the 10,000 test images (val_split 0), so each epoch's val_acc is the
test accuracy. The ratio is the tutorial's time to its final accuracy over the fast recipe's time
to the same accuracy. Needs ../shared/datasets/cifar10-jpeg.tar.gz.
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


def time_to(history: list[dict], accuracy: float) -> float | None:
    for record in history:
        if record["val_acc"] >= accuracy:
            return record["seconds"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", default=str(ROOT / "examples" / "cifar10_fastnet.yaml"))
    parser.add_argument("--tutorial", default=str(ROOT / "examples" / "cifar10_tutorial.yaml"))
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="applied to both configs")
    parser.add_argument("--out", default="runs/time-to-accuracy")
    args = parser.parse_args()
    if not SHARED_CIFAR.exists():
        sys.exit(f"needs the real CIFAR-10 at {SHARED_CIFAR}")
    header("time to accuracy on CIFAR-10")
    out = Path(args.out)
    fast = run(args.fast, args.override, out / "fast")
    tutorial = run(args.tutorial, args.override, out / "tutorial")
    print("| recipe | epoch | seconds | test accuracy |")
    print("| --- | --- | --- | --- |")
    for name, history in (("fast", fast), ("tutorial", tutorial)):
        for record in history:
            print(f"| {name} | {record['epoch']} | {record['seconds']:.0f} | "
                  f"{record['val_acc']:.4f} |")
    target = tutorial[-1]["val_acc"]
    fast_time, tutorial_time = time_to(fast, target), time_to(tutorial, target)
    print(f"\ntutorial recipe: final test accuracy {target:.4f} after {tutorial[-1]['seconds']:.0f}"
          f" s ({tutorial_time:.0f} s to first reach it)")
    if fast_time is None:
        print("fast recipe: never reached it")
    else:
        print(f"fast recipe: reached {target:.4f} after {fast_time:.0f} s -> "
              f"{tutorial_time / fast_time:.1f}x faster")
    for accuracy, limit in ((0.90, 15 * 60), (0.94, 60 * 60)):
        reached = time_to(fast, accuracy)
        verdict = ("not reached" if reached is None else
                   f"reached after {reached / 60:.1f} min ({'within' if reached <= limit else 'over'} "
                   f"the {limit // 60}-minute target)")
        print(f"fast recipe, {accuracy:.0%} test accuracy: {verdict}")
    print(f"fast recipe final: {fast[-1]['val_acc']:.4f} after {fast[-1]['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
