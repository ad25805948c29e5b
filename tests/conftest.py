"""Shared fixtures: tiny configs, a CLI runner, and the optional real data beside the project."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
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


def same_tensors(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """Whether two name -> tensor dicts (state dicts, safetensors files) hold the same names and
    equal tensors: bit for bit by default, within rtol/atol when given. Comparing nothing is an
    error, not a pass: an empty dict here means the caller loaded the wrong thing."""
    import torch

    if not a or not b:
        raise AssertionError(f"nothing to compare: {len(a)} and {len(b)} tensors")
    if a.keys() != b.keys():
        return False
    compared = 0
    for name in a:
        if a[name].shape != b[name].shape:
            return False
        if rtol == 0.0 and atol == 0.0:
            equal = bool((a[name] == b[name]).all())
        else:
            equal = torch.allclose(a[name], b[name], rtol=rtol, atol=atol)
        if not equal:
            return False
        compared += 1
    assert compared == len(a) > 0
    return True


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


def _pg_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server on a free local port, for the life of the test session.

    Uses $CNNLAB_TEST_POSTGRES_URL when set; otherwise starts a cluster with Debian's binaries
    (run as the `postgres` user when the tests run as root, since initdb refuses root)."""
    import pwd
    import shutil
    import socket

    if os.environ.get("CNNLAB_TEST_POSTGRES_URL"):
        yield os.environ["CNNLAB_TEST_POSTGRES_URL"]
        return
    binaries = _pg_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql); "
                    ".ci/run installs it")
    pytest.importorskip("psycopg", reason="the psycopg driver is needed (pip install "
                        "'psycopg[binary]', part of the test extra)")
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"

    def run(*command):
        subprocess.run(prefix + [str(binaries / command[0]), *command[1:]], check=True,
                       capture_output=True, text=True, timeout=120)

    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "cnnlab")
        run("pg_ctl", "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=100",
            "start")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {error.stderr.strip()[:300]}")
    try:
        yield f"postgresql+psycopg://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
