"""Where and how a run executes: device, threads, mixed precision, memory format, environment."""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from cnnlab.errors import UserError


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: without them bf16 autocast on a CPU is many times slower than fp32."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device is {name} but no CUDA GPU is available here; use "
                        "train.device=cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"train.device is {name} but MPS is not available here; use cpu or auto")
    return device


def resolve_amp(setting: str, device: torch.device) -> str:
    """`auto`: bf16 on GPUs that support it (fp16 on older ones); fp32 on CPUs (see the
    benchmarks in bench/ for why CPUs stay fp32 by default)."""
    if setting == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "off"
    if setting == "fp16" and device.type != "cuda":
        raise UserError(f"train.amp=fp16 needs a CUDA GPU but the device is {device}; use "
                        "train.amp=bf16 or off")
    if setting == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn("train.amp=bf16 asks for bf16 autocast, but this CPU has neither AMX nor "
                      "AVX-512 BF16, where it runs many times slower than fp32; training in "
                      "fp32 instead (the run's config.yaml records amp: 'off')", stacklevel=2)
        return "off"
    return setting


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    device: torch.device
    threads: int
    amp: str  # off | bf16 | fp16
    channels_last: bool

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES.get(self.amp)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def apply(self) -> None:
        torch.set_num_threads(self.threads)


def check_threads(threads: int) -> None:
    """More threads than the machine has CPUs only slows training down, and a huge count
    crashes torch's thread pool (a segmentation fault at 100,000), so it is refused."""
    cpus = os.cpu_count() or 1
    if threads > cpus:
        raise UserError(f"train.threads is {threads:,} but this machine has {cpus} CPU cores; "
                        f"use at most {cpus}, or leave it unset to use every core this process "
                        "may use")


def resolve_runtime(train_cfg, world=None) -> Runtime:
    """Device, threads, precision and memory format of this process. Under torchrun each
    process takes its local rank's GPU, or an equal share of the cores."""
    device = resolve_device(train_cfg.device)
    local_rank, local_size = (world.local_rank, world.local_size) if world else (0, 1)
    if device.type == "cuda" and local_size > 1:
        device = torch.device("cuda", local_rank)
    threads = train_cfg.threads or max(1, available_cores() // local_size)
    check_threads(threads)
    amp = resolve_amp(train_cfg.amp, device)
    channels_last = train_cfg.channels_last if train_cfg.channels_last != "auto" else True
    return Runtime(device, threads, amp, bool(channels_last))


def git_commit(directory: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding `directory`, or (None, None)."""
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(directory), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def environment(runtime: Runtime) -> dict:
    from cnnlab import __version__

    commit, dirty = git_commit(Path(__file__).resolve().parent)
    if runtime.device.type == "cuda":
        device_name = torch.cuda.get_device_name(runtime.device)
    else:
        device_name = cpu_name()
    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(runtime.device),
        "device_name": device_name,
        "threads": runtime.threads,
        "cores": available_cores(),
        "amp": runtime.amp,
        "channels_last": runtime.channels_last,
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
