"""Ablations and searches on a real Optuna store, run from the CLI as a user would."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import yaml

from cnnlab.experiments.store import open_storage
from tests.conftest import ROOT, cli

QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def trials(storage: Path, study: str):
    return optuna.load_study(study_name=study, storage=open_storage(str(storage))).get_trials()


def test_a_2x2x3_ablation_on_digits_runs_and_prints_its_table(tmp_path):
    storage = tmp_path / "store.journal"
    result = cli("ablate", QUICKSTART, "-o", "train.epochs=3", "--vary",
                 "model.activation=relu,gelu", "--vary", "optim.lr=0.05,0.01", "--seeds", "3",
                 "--storage", str(storage), "--study", "grid", "--runs", str(tmp_path / "runs"),
                 "--quiet", check=True, cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert "baseline model.activation=relu,optim.lr=0.05" in lines[0]
    assert len([line for line in lines if line.startswith("model.activation=")]) == 4
    assert any(line.startswith("main effect of optim.lr=0.01") for line in lines)
    assert any(line.startswith("interaction model.activation=gelu x optim.lr=0.01")
               for line in lines)
    done = trials(storage, "grid")
    assert len(done) == 12 and all(t.state.name == "COMPLETE" for t in done)
    assert Counter((t.params["model.activation"], t.params["optim.lr"]) for t in done) == {
        ("relu", "0.05"): 3, ("relu", "0.01"): 3, ("gelu", "0.05"): 3, ("gelu", "0.01"): 3}
    one = done[0]
    assert set(one.intermediate_values) == {1, 2, 3}
    assert Path(one.user_attrs["run_dir"], "summary.json").exists()

    # The same study through compare, as JSON, and a re-run that repeats nothing.
    analysis = json.loads(cli("compare", "grid", "--storage", str(storage), "--json",
                              check=True).stdout)
    assert [r["n"] for r in analysis["rows"]] == [3, 3, 3, 3]
    assert {"label", "mean", "ci", "diff", "diff_ci", "p_value", "p_holm", "effect_size",
            "verdict", "diverged"} <= set(analysis["rows"][1])
    again = cli("ablate", QUICKSTART, "-o", "train.epochs=3", "--vary",
                "model.activation=relu,gelu", "--vary", "optim.lr=0.05,0.01", "--seeds", "3",
                "--storage", str(storage), "--study", "grid", "--runs", str(tmp_path / "runs"),
                "--quiet", check=True, cwd=tmp_path)
    assert "0 queued now" in again.stderr
    assert len(trials(storage, "grid")) == 12


def test_two_workers_share_a_study_and_a_killed_workers_run_is_finished_once(tmp_path):
    storage, study = tmp_path / "store.journal", "shared"
    command = [sys.executable, "-m", "cnnlab", "ablate", QUICKSTART, "-o", "train.epochs=12",
               "--vary", "model.activation=relu,gelu", "--vary", "optim.lr=0.05,0.02",
               "--seeds", "2", "--workers", "2", "--heartbeat", "1", "--storage", str(storage),
               "--study", study, "--runs", str(tmp_path / "runs"), "--quiet"]
    ablate = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.1)
        if storage.exists():
            running = [t for t in trials(storage, study)
                       if t.state.name == "RUNNING" and "worker" in t.user_attrs]
            if running:
                victim = running[0]
    assert victim is not None, "no worker was seen running a trial"
    # Each worker stamps its trial with host:pid; kill the one running this trial mid-run.
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    out, err = ablate.communicate(timeout=300)
    assert "database is locked" not in err

    # Re-running the command finishes whatever is left; nothing runs twice.
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "database is locked" not in rerun.stderr
    final = trials(storage, study)
    assert len(final) == 8
    assert all(t.state.name == "COMPLETE" for t in final)
    keys = Counter((t.user_attrs["label"], t.user_attrs["seed"]) for t in final)
    assert set(keys.values()) == {1}
    taken_over = next(t for t in final if t.number == victim.number)
    assert taken_over.user_attrs.get("requeued") == 1
    assert taken_over.user_attrs["worker"] != victim.user_attrs["worker"]


def test_search_with_pruning_finishes_and_writes_the_best_config(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {low: 0.003, high: 0.3, log: true}\n"
                     "model.activation: {choices: [relu, gelu]}\n"
                     "model.init: {choices: [kaiming_normal, {name: normal, std: 0.01}]}\n")
    best = tmp_path / "best.yaml"
    storage = tmp_path / "store.journal"
    result = cli("search", QUICKSTART, "-o", "train.epochs=4", "--space", str(space),
                 "--trials", "8", "--pruner", "median", "--best", str(best), "--storage",
                 str(storage), "--runs", str(tmp_path / "runs"), "--json", "--quiet",
                 check=True, cwd=tmp_path)
    summary = json.loads(result.stdout)
    states = summary["trials"]
    assert sum(states.values()) == 8 and states.get("complete", 0) >= 2
    assert "fail" not in states
    written = yaml.safe_load(best.read_text())
    chosen = dict(o.split("=", 1) for o in summary["best"]["overrides"])
    assert written["optim"]["lr"] == float(chosen["optim.lr"])
    assert written["model"]["activation"]["name"] == chosen["model.activation"]


def test_a_diverging_combination_is_recorded_as_diverged_not_as_a_number(tmp_path):
    storage = tmp_path / "store.journal"
    cli("ablate", QUICKSTART, "-o", "train.epochs=2", "--vary", "optim.lr=0.05,1e4", "--seeds",
        "2", "--storage", str(storage), "--study", "div", "--runs", str(tmp_path / "runs"),
        "--quiet", check=True, cwd=tmp_path)
    diverged = [t for t in trials(storage, "div") if t.params["optim.lr"] == "1e4"]
    assert len(diverged) == 2
    assert all(t.state.name == "FAIL" and t.user_attrs["status"] == "diverged"
               and t.value is None for t in diverged)
    rows = json.loads(cli("compare", "div", "--storage", str(storage), "--json",
                          check=True).stdout)["rows"]
    assert (rows[0]["n"], rows[0]["diverged"]) == (2, 0)
    assert (rows[1]["n"], rows[1]["diverged"]) == (0, 2)
    assert rows[1]["verdict"] == "diverged in all 2 runs"


def test_bad_experiment_arguments_are_clear_errors(tmp_path):
    for args, fragment in [
        (["--vary", "model.activation=relu"], "at least two values"),
        (["--vary", "model.activation=relu,swish"], "unknown name 'swish'"),
        (["--vary", "model.activation=relu,gelu", "--baseline", "model.activation=tanh"],
         "is not among the values varied"),
    ]:
        result = cli("ablate", QUICKSTART, *args, "--storage", str(tmp_path / "s.journal"),
                     cwd=tmp_path)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    missing = cli("compare", "no-such-study", "--storage", str(tmp_path / "s.journal"),
                  cwd=tmp_path)
    assert missing.returncode == 2 and "no study 'no-such-study'" in missing.stderr
