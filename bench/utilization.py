"""How much of the CPU a fastnet training step uses: FLOPs counted by torch.utils.flop_counter,
achieved FLOP/s in training, against the nominal fp32 peak (cores x clock x 32 FLOP/cycle,
AVX2+FMA) and against a large matrix multiply measured in the same run.

    python bench/utilization.py [--batch 512] [--steps 10] [--amp off|bf16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from benchlib import build, cifar_images, header, plain_steps
from cnnlab.components.optimizers import build_optimizer
from cnnlab.runtime import available_cores


def clock_ghz() -> float:
    """The highest clock the kernel reports (lscpu's max MHz, else /proc/cpuinfo's MHz)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1000.0
    return 3.0


def matmul_flops(size: int = 4096, dtype=torch.float32, repeats: int = 5) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def step_flops(model, batch: int, amp) -> int:
    x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        F.cross_entropy(model(x).float(), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--amp", choices=["off", "bf16"], default="off")
    parser.add_argument("--synthetic", action="store_true")
    args = parser.parse_args()
    header("utilization of fastnet training")
    amp = torch.bfloat16 if args.amp == "bf16" else None
    images, labels, source = cifar_images(args.batch * args.steps, args.synthetic)
    model = build("fastnet")
    flops = step_flops(model, args.batch, amp)
    optimizer = build_optimizer(cnnlab.load_config({}).optim, model, args.batch)
    plain_steps(model, optimizer, images, labels, args.batch, 2, amp)
    seconds = plain_steps(model, optimizer, images, labels, args.batch, args.steps, amp)
    achieved = flops * args.steps / seconds
    cores, ghz = available_cores(), clock_ghz()
    nominal = cores * ghz * 1e9 * 32
    matmul = matmul_flops(dtype=amp or torch.float32)
    print(f"data: {source}; batch {args.batch}, amp {args.amp}")
    print(f"FLOPs per training step (forward + backward): {flops / 1e9:.1f} GFLOP "
          f"({flops / args.batch / 1e9:.3f} GFLOP per image)")
    print(f"achieved in training: {achieved / 1e9:.1f} GFLOP/s ({args.batch * args.steps / seconds:.0f}"
          " images/s)")
    print(f"nominal fp32 peak: {cores} cores x {ghz:.2f} GHz x 32 FLOP/cycle = "
          f"{nominal / 1e9:.1f} GFLOP/s -> {achieved / nominal:.1%} of nominal (target >= 65%)")
    print(f"4096x4096 {'bf16' if amp else 'fp32'} matmul in this run: {matmul / 1e9:.1f} GFLOP/s "
          f"-> training reaches {achieved / matmul:.1%} of it")


if __name__ == "__main__":
    main()
