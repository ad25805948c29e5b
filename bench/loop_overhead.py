"""Images/s of cnnlab.train against a minimal hand-written PyTorch loop on the same model,
in-memory data, optimizer and batch size: diagnostics off, then on at their default setting.

    python bench/loop_overhead.py [--arch fastnet] [--batch 512] [--steps 50] [--repeats 3]
        [--amp bf16]

Both sides build the model the same way, hold uint8 images in memory and normalize each batch;
cnnlab's side is `cnnlab.train` on a one-epoch-at-a-time config (evaluation excluded from its
images/s). Runs alternate (plain, cnnlab, cnnlab+diagnostics) so load changes hit all three.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import cnnlab
from benchlib import build, cifar_images, header, median, plain_steps
from cnnlab.components.optimizers import build_optimizer
from cnnlab.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="fastnet")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50,
                        help="timed steps per measurement (50: one diagnostics sample each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", choices=["off", "bf16"], default="off")
    parser.add_argument("--synthetic", action="store_true", help="generated CIFAR-size data")
    args = parser.parse_args()
    header("loop overhead: cnnlab.train vs a hand-written loop")

    images, labels, source = cifar_images(args.batch * args.steps, args.synthetic)
    folder = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    data = folder / "data.npz"
    np.savez(data, x_train=images.numpy(), y_train=labels.numpy(),
             x_test=images[:args.batch].numpy(), y_test=labels[:args.batch].numpy())
    amp = torch.bfloat16 if args.amp == "bf16" else None

    def cnnlab_rate(every: int, index: int) -> tuple[float, float | None]:
        # Two epochs of `steps` steps; the second one is timed (the first pays kernel set-up).
        cfg = cnnlab.load_config({
            "data": {"dataset": "npz", "root": str(data), "batch_size": args.batch,
                     "val_split": 0, "eval_batch_size": args.batch},
            "model": {"arch": args.arch}, "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
            "schedule": "constant", "train": {"epochs": 2, "amp": args.amp},
            "diagnostics": {"every": every}})
        summary = cnnlab.train(cfg, out=folder / f"run{every}-{index}", progress=False)
        history = RunDir(folder / f"run{every}-{index}").read_metrics()
        overhead = (summary.get("diagnostics") or {}).get("overhead", {}).get("fraction")
        return history[-1]["images_per_s"], overhead

    def plain_rate() -> float:
        model = build(args.arch)
        cfg = cnnlab.load_config({"optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9}})
        optimizer = build_optimizer(cfg.optim, model, args.batch)
        plain_steps(model, optimizer, images, labels, args.batch, args.steps, amp)  # warm-up
        return args.batch * args.steps / plain_steps(model, optimizer, images, labels,
                                                      args.batch, args.steps, amp)

    plain, off, on, measured = [], [], [], []
    for index in range(args.repeats):
        plain.append(plain_rate())
        off.append(cnnlab_rate(0, index)[0])
        rate, overhead = cnnlab_rate(50, index)
        on.append(rate)
        measured.append(overhead)
        print(f"repeat {index + 1}: plain {plain[-1]:.1f} img/s, cnnlab {off[-1]:.1f}, "
              f"cnnlab+diagnostics {on[-1]:.1f}")
    print(f"data: {source}; model {args.arch}, batch {args.batch}, {args.steps} timed steps, "
          f"amp {args.amp}")
    # This machine's speed drifts between measurements, so each repeat's cnnlab runs are divided
    # by the plain loop measured just before them, and the median of those ratios is reported.
    ratio_off = median([o / p for o, p in zip(off, plain)])
    ratio_on = median([o / p for o, p in zip(on, plain)])
    print(f"plain loop              {median(plain):6.1f} img/s (median)")
    print(f"cnnlab, diagnostics off {median(off):6.1f} img/s  median paired ratio {ratio_off:.3f}"
          "  (target >= 0.99)")
    print(f"cnnlab, diagnostics on  {median(on):6.1f} img/s  median paired ratio {ratio_on:.3f}"
          "  (target >= 0.95; every 50 steps)")
    fractions = [m for m in measured if m is not None]
    if fractions:
        print(f"diagnostics cost measured inside the runs: {median(fractions):.2%} of step time")


if __name__ == "__main__":
    main()
