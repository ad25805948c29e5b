"""One study, several workers, a real PostgreSQL server: the multi-machine set-up on one host."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna

from cnnlab.experiments.store import open_storage
from tests.conftest import ROOT, cli

QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def test_three_workers_finish_twelve_runs_once_even_when_one_is_killed(tmp_path, postgres_url):
    study = "pg-study"
    queued = cli("ablate", QUICKSTART, "-o", "train.epochs=12", "--vary",
                 "model.activation=relu,gelu,silu", "--vary", "optim.lr=0.05,0.02",
                 "--seeds", "2", "--workers", "0", "--storage", postgres_url, "--study", study,
                 "--runs", str(tmp_path / "runs"), check=True, cwd=tmp_path)
    assert "12 queued now" in queued.stderr and "cnnlab worker" in queued.stderr
    command = [sys.executable, "-m", "cnnlab", "worker", "--storage", postgres_url, "--study",
               study, "--threads", "1", "--heartbeat", "1", "--quiet"]
    workers = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    storage = open_storage(postgres_url)
    deadline, victim = time.monotonic() + 120, None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.1)
        running = [t for t in optuna.load_study(study_name=study, storage=storage).get_trials()
                   if t.state.name == "RUNNING" and "worker" in t.user_attrs]
        if running:
            victim = running[0]
    assert victim is not None, "no worker started a run"
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert not any("database is locked" in e or "Traceback" in e for e in errors), errors

    final = optuna.load_study(study_name=study, storage=storage).get_trials()
    assert len(final) == 12
    assert all(t.state.name == "COMPLETE" for t in final)
    assert set(Counter((t.user_attrs["label"], t.user_attrs["seed"]) for t in final).values()) \
        == {1}
    taken_over = next(t for t in final if t.number == victim.number)
    assert taken_over.user_attrs["requeued"] == 1
    assert taken_over.user_attrs["worker"] != victim.user_attrs["worker"]
