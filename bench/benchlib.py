"""Shared pieces of the benchmarks: CIFAR-size data, a minimal hand-written training step, timing.

Every benchmark compares two things measured side by side in one process run and reports the
ratio; absolute times alone depend on the machine and its load.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def machine() -> str:
    from cnnlab.runtime import available_cores, cpu_name

    return (f"{cpu_name()}, {available_cores()} cores, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def cifar_images(count: int | None = None, synthetic: bool = False):
    """CIFAR-10 training images (uint8 N x 3 x 32 x 32) and labels from ../shared through cnnlab's
    image-folder cache, or generated ones of the same shape with --synthetic (or if absent)."""
    if not synthetic and SHARED_CIFAR.exists():
        import cnnlab
        from cnnlab.data import load_data

        cfg = cnnlab.load_config({"data": {"dataset": "imagefolder", "root": str(SHARED_CIFAR),
                                           "val_split": 0}})
        data = load_data(cfg.data)
        images, labels = data.train.images, data.train.labels
        source = "CIFAR-10 (../shared/datasets)"
    else:
        gen = torch.Generator().manual_seed(0)
        total = count or 50_000
        images = torch.randint(0, 256, (total, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, 10, (total,), generator=gen)
        source = "synthetic CIFAR-size images"
    if count is not None:
        images, labels = images[:count], labels[:count]
    return images, labels, source


def build(arch: str = "fastnet", channels_last: bool = True, **keys):
    from pydantic import TypeAdapter

    from cnnlab.models import ModelSpec, build_model

    model, _ = build_model(TypeAdapter(ModelSpec).validate_python({"arch": arch, **keys}), 3, 10,
                           (32, 32), seed=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def normalize(images: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = images.to(torch.float32, memory_format=fmt)
    return x.sub_(127.5).div_(64.0)


def plain_steps(model, optimizer, images, labels, batch: int, steps: int,
                amp: torch.dtype | None = None, channels_last: bool = True,
                label_smoothing: float = 0.0) -> float:
    """The minimal hand-written loop: index, normalize, forward, backward, step. Returns s."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        index = order[(step * batch) % (len(images) - batch + 1):][:batch]
        x, y = normalize(images[index], channels_last), labels[index]
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# command: python {' '.join(sys.argv)}")
    print(f"# threads: {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
