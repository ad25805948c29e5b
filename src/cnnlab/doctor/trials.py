"""The doctor's runs on an Optuna study, so an interrupted doctor resumes where it stopped.

Runs are queued up front (like `ablate`'s) and trained by the experiments' runner; this module
only decides which to queue and serves them while the budget lasts. With --workers N, N-1
`cnnlab worker` processes join this one on the same study, and are stopped (their runs
checkpointed and handed back) when the budget runs out.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cnnlab.doctor.plan import Clock, duration
from cnnlab.experiments.design import run_dir
from cnnlab.experiments.runner import run_trial
from cnnlab.experiments.store import open_storage, store_lock
from cnnlab.experiments.study import create_or_resume, next_trial
from cnnlab.experiments.trial_queue import DEFAULT_HEARTBEAT, hand_back, heartbeat, \
    requeue_stale
from cnnlab.metric_names import summary_value
from cnnlab.models.user_code import SuppliedModel, study_model_source
from cnnlab.rundir import RunDir, read_json_lines

METRIC = "val_acc"


@dataclass(frozen=True)
class Run:
    """One queued run: a config (label) with its overrides, on one seed."""
    label: str
    overrides: tuple[str, ...]
    seed: int
    baseline: bool = False
    # A run the LR phase already trained with this very config: the trial takes its folder,
    # whose finished run the runner reads instead of training again.
    folder: Path | None = None


def open_phase(storage_url: str, name: str, base: dict, labels: list[str], seeds: list[int],
               pruned: bool, epochs: int, val_images: int | None = None,
               looks: list[int] | None = None) -> optuna.Study:
    """The phase's study, created or resumed (the same design resumes; see create_or_resume).
    `epochs` (each run's length) is recorded when the study is created; a resume keeps it.
    `val_images`: the validation set's size, from which the pruner knows a difference's noise.
    `looks`: the seed counts the trials may be judged at (doctor.rounds), kept on a resume."""
    spec = {"kind": "doctor", "config": base, "seeds": seeds, "metric": METRIC,
            "factors": [{"key": "candidate", "values": labels, "baseline": labels[0]}],
            "pruner": "successive_halving" if pruned else "none", "trial_epochs": epochs,
            "val_images": val_images, "looks": looks}
    spec.update(study_model_source(base))  # a model file: every worker checks it is unchanged
    with store_lock(storage_url, f"study:{name}"):
        return create_or_resume(open_storage(storage_url), name, spec)


def enqueue(study: optuna.Study, runs: list[Run], runs_root: Path) -> int:
    """Queue every run that has no trial yet, or whose trial crashed; returns how many."""
    settled = {(t.user_attrs.get("label"), t.user_attrs.get("seed"))
               for t in study.get_trials(deepcopy=False)
               if not (t.state == TrialState.FAIL and t.user_attrs.get("status") == "failed")}
    added = 0
    for run in runs:
        if (run.label, run.seed) in settled:
            continue
        study.enqueue_trial(
            {"candidate": run.label, "seed": run.seed},
            user_attrs={"label": run.label, "seed": run.seed, "unpruned": run.baseline,
                        "overrides": list(run.overrides) + [f"seed={run.seed}"],
                        "run_dir": str(run.folder or run_dir(runs_root, study.study_name,
                                                             run.label, run.seed))})
        added += 1
    return added


def serve(study: optuna.Study, clock: Clock, run_seconds: float, say: Callable[[str], None],
          phase: str, workers: int = 1, storage_url: str | None = None,
          supplied: SuppliedModel | None = None) -> bool:
    """Train the study's waiting runs while the budget holds one more; returns True when every
    run finished, False when the budget stopped them (the rest stay queued for a resume).
    `supplied`: the network given as model= (then workers is 1: it lives in this process)."""
    helpers = _start_helpers(storage_url, study.study_name, workers - 1)
    total = len(study.get_trials(deepcopy=False))
    dropped: set[str] = set()
    try:
        while True:
            requeue_stale(study, 3 * DEFAULT_HEARTBEAT + 5)
            if not any(t.state in (TrialState.RUNNING, TrialState.WAITING)
                       for t in study.get_trials(deepcopy=False)):
                return True
            if clock.left() < run_seconds:
                say(f"{phase}: budget spent ({duration(clock.left())} left, a run takes "
                    f"{duration(run_seconds)}); stopping with what is finished")
                return False
            trial = next_trial(study)
            if trial is None:
                time.sleep(1.0)  # the helper workers are still training
                continue
            try:
                status = _run(study, trial, dropped, total, say, phase, clock, supplied)
            except BaseException:
                # Interrupted (Ctrl-C) between claiming the run and finishing it: put it back at
                # once, so a resume takes it without waiting for its heartbeat to go stale.
                if not _finished(study, trial.number):
                    hand_back(study, trial)
                raise
            if status is None:
                continue
    finally:
        _stop_helpers(helpers)


def _finished(study: optuna.Study, number: int) -> bool:
    return any(t.number == number and t.state.is_finished()
               for t in study.get_trials(deepcopy=False))


def _run(study: optuna.Study, trial: optuna.Trial, dropped: set[str], total: int,
         say: Callable[[str], None], phase: str, clock: Clock,
         supplied: SuppliedModel | None) -> str | None:
    """Train one claimed run; None when it was skipped as part of a dropped candidate."""
    label = trial.user_attrs["label"]
    if label in dropped:
        # Successive halving stopped this candidate on an earlier seed: its other seeds would
        # spend the budget on a config that already lost.
        trial.set_user_attr("status", "pruned")
        study.tell(trial, state=TrialState.PRUNED)
        return None
    done = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
    say(f"{phase}: run {done + 1}/{total} ({label}, seed {trial.user_attrs['seed']}), "
        f"{duration(clock.left())} left")
    with heartbeat(study, trial, DEFAULT_HEARTBEAT):
        status = run_trial(study, trial, threads=None, progress=False, supplied=supplied)
    if status == "pruned":
        dropped.add(label)
        say(f"{phase}: {label} stopped by successive halving (behind the others)")
    elif status != "completed":
        say(f"{phase}: {label} {status}")
    return status


def _start_helpers(storage_url: str | None, name: str, count: int) -> list[subprocess.Popen]:
    if count <= 0 or storage_url is None:
        return []
    command = [sys.executable, "-m", "cnnlab", "worker", "--storage", storage_url, "--study",
               name, "--threads", "1", "--quiet"]
    return [subprocess.Popen(command + ["--salt", str(i + 1)]) for i in range(count)]


def _stop_helpers(helpers: list[subprocess.Popen]) -> None:
    # SIGINT: a worker checkpoints its run and hands it back to the queue, so a resume goes on.
    for process in helpers:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in helpers:
        process.wait()


def results(study: optuna.Study) -> dict[str, dict[int, float | None]]:
    """label -> seed -> final metric of the finished runs. A diverged run counts as 0: it left
    no usable network, which is a loss in a paired comparison, not a missing pair. Pruned and
    failed runs are left out (a pruned run was only behind, not finished)."""
    table: dict[str, dict[int, float | None]] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            value = trial.value
        elif trial.user_attrs.get("status") == "diverged":
            value = 0.0
        else:
            continue
        table.setdefault(trial.user_attrs["label"], {})[trial.user_attrs["seed"]] = value
    return table


def pruned_seeds(study: optuna.Study) -> dict[str, set[int]]:
    """label -> the seeds on which successive halving stopped its run (or dropped it, after
    stopping it on an earlier seed)."""
    table: dict[str, set[int]] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.PRUNED:
            table.setdefault(trial.user_attrs["label"], set()).add(trial.user_attrs["seed"])
    return table


def outcomes(study: optuna.Study) -> dict[str, tuple[str, float | None]]:
    """label -> (how its finished run ended, its metric or None), for one-seed phases."""
    return {trial.user_attrs["label"]: (trial.user_attrs.get("status", "completed"),
                                        trial.value if trial.state == TrialState.COMPLETE
                                        else None)
            for trial in study.get_trials(deepcopy=False) if trial.state.is_finished()}


def completed_folders(study: optuna.Study) -> dict[str, Path]:
    """label -> run folder of each run that completed, for one-seed phases."""
    return {trial.user_attrs["label"]: Path(trial.user_attrs["run_dir"])
            for trial in study.get_trials(deepcopy=False)
            if trial.state == TrialState.COMPLETE and trial.user_attrs.get("run_dir")}


def curves(study: optuna.Study) -> dict[str, list[list[float | None]]]:
    """label -> one val_acc curve per seed, from the run folders."""
    table: dict[str, list[list[float | None]]] = {}
    for trial in study.get_trials(deepcopy=False):
        folder = trial.user_attrs.get("run_dir")
        path = RunDir.at(Path(folder)).metrics_path if folder else None
        if not trial.state.is_finished() or path is None or not path.exists():
            continue
        table.setdefault(trial.user_attrs["label"], []).append(
            [line.get(METRIC) for line in read_json_lines(path)])
    return table


def epoch_seconds(study: optuna.Study) -> tuple[float, float] | None:
    """(seconds of one epoch, seconds of one run outside its epochs) measured on the first
    finished run: the estimate the plan is made from."""
    for trial in study.get_trials(deepcopy=False):
        folder = trial.user_attrs.get("run_dir")
        if trial.state != TrialState.COMPLETE or not folder:
            continue
        run = RunDir.at(Path(folder))
        lines = read_json_lines(run.metrics_path) if run.metrics_path.exists() else []
        if lines and summary_value(run.read_summary() or {}, "seconds") is not None:
            started = trial.datetime_start
            wall = (trial.datetime_complete - started).total_seconds() if started else 0.0
            return split_run_time(lines, wall)
    return None


def split_run_time(lines: list[dict], wall: float) -> tuple[float, float]:
    """(the longest epoch, the rest of `wall`) from a run's metrics lines, whose `seconds` is the
    time since training started, not the epoch's own (a resume starts it again from 0)."""
    elapsed = [line["seconds"] for line in lines]
    epochs = [later - earlier if later >= earlier else later
              for earlier, later in zip([0.0] + elapsed[:-1], elapsed)]
    return max(epochs), max(wall - sum(epochs), 0.0)
