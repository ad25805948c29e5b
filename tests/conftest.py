"""Shared fixtures: tiny configs, a CLI runner, and the optional real data beside the project."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {
        "dataset": "synthetic",
        "batch_size": 32,
        "val_split": 0.2,
        "synthetic": {"num_classes": 4, "image_size": 12, "train_size": 320, "test_size": 64,
                      "noise": 0.3},
    },
    "model": {"arch": "simple_cnn", "widths": [8, 16], "fc": [32]},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine"},
    "train": {"epochs": 2, "threads": 1},
    "diagnostics": {"every": 0},
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Decoded image folders and extracted archives go to a per-session cache, never ~/.cache.
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cnnlab-cache"))


@pytest.fixture
def tiny() -> dict:
    return copy.deepcopy(TINY)


def write_config(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m cnnlab ARGS` in a fresh process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True,
                            text=True, cwd=cwd, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"cnnlab {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def shared_cifar10() -> Path:
    archive = SHARED_DATASETS / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        pytest.skip(f"needs the real CIFAR-10 at {archive}, which a fresh clone does not have "
                    "(it lives in ../shared/datasets beside the project)")
    return archive
