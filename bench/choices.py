"""Which settings make fastnet train fastest here: channels_last vs NCHW, torch.compile vs eager
(compile time included), 1 vs all threads, batch size, bf16 autocast vs fp32. Ratios.

    python bench/choices.py [--steps 8] [--skip-compile]
"""

from __future__ import annotations

import argparse
import time

import torch

import cnnlab
from benchlib import build, cifar_images, header, plain_steps
from cnnlab.components.optimizers import build_optimizer
from cnnlab.runtime import available_cores, cpu_has_fast_bf16


def rate(images, labels, batch, steps, channels_last=True, amp=None, compile_model=False,
         warm=2) -> tuple[float, float]:
    """(images/s over the timed steps, seconds for warm-up + timed steps including compile)."""
    model = build("fastnet", channels_last=channels_last)
    optimizer = build_optimizer(cnnlab.load_config({}).optim, model, batch)
    started = time.perf_counter()
    if compile_model:
        model = torch.compile(model)
    plain_steps(model, optimizer, images, labels, batch, warm, amp, channels_last)
    seconds = plain_steps(model, optimizer, images, labels, batch, steps, amp, channels_last)
    return batch * steps / seconds, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--synthetic", action="store_true")
    args = parser.parse_args()
    header("fastnet training choices")
    images, labels, source = cifar_images(4096, args.synthetic)
    print(f"data: {source}; {args.steps} timed steps after 2 warm-up steps")
    base, _ = rate(images, labels, args.batch, args.steps)
    print(f"baseline: channels_last, eager, fp32, {torch.get_num_threads()} threads, batch "
          f"{args.batch}: {base:.0f} images/s")
    nchw, _ = rate(images, labels, args.batch, args.steps, channels_last=False)
    print(f"NCHW instead of channels_last: {nchw:.0f} images/s, channels_last is "
          f"{base / nchw:.2f}x")
    if cpu_has_fast_bf16():
        bf16, _ = rate(images, labels, args.batch, args.steps, amp=torch.bfloat16)
        print(f"bf16 autocast (this CPU has AMX/AVX-512 BF16): {bf16:.0f} images/s, "
              f"{bf16 / base:.2f}x fp32")
    else:
        print("bf16 autocast: skipped, this CPU has no AMX/AVX-512 BF16 (it would be slower)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one, _ = rate(images, labels, args.batch, args.steps)
    torch.set_num_threads(threads)
    print(f"1 thread: {one:.0f} images/s; {threads} threads are {base / one:.2f}x "
          f"({available_cores()} cores)")
    for batch in (128, 256, 1024):
        other, _ = rate(images, labels, batch, max(2, args.steps * args.batch // batch))
        print(f"batch {batch}: {other:.0f} images/s, {other / base:.2f}x batch {args.batch}")
    if not args.skip_compile:
        eager, eager_total = rate(images, labels, args.batch, args.steps)
        compiled, compiled_total = rate(images, labels, args.batch, args.steps,
                                        compile_model=True)
        print(f"torch.compile: {compiled:.0f} images/s after compiling, {compiled / eager:.2f}x "
              f"eager; with compile time, {args.steps + 2} steps took {compiled_total:.0f} s vs "
              f"{eager_total:.0f} s eager ({eager_total / compiled_total:.2f}x)")


if __name__ == "__main__":
    main()
