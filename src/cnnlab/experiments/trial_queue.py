"""The queue of a study's runs, shared by any number of workers.

Every run of an ablation or search is a trial, created WAITING up front so that the set of runs
is known before any starts. A worker claims one with Optuna's atomic WAITING -> RUNNING update,
and while it trains a heartbeat thread stamps the trial every few seconds. A RUNNING trial whose
stamp is older than the grace period belongs to a dead worker: any process that notices puts it
back to WAITING (an idempotent update, so two processes noticing at once create nothing twice),
and the next worker to claim it resumes the run from its checkpoint.

Optuna's public API has no atomic claim and no way back from RUNNING, so this is the one module
of cnnlab that touches Optuna's private attributes (`study._storage`, `study._study_id`,
`trial._trial_id`); tests/unit/test_study.py keeps it so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT = "heartbeat"
DEFAULT_HEARTBEAT = 10.0  # seconds between a worker's stamps


def claim(study: optuna.Study) -> optuna.Trial | None:
    """Take one WAITING trial for this process (atomic), or None if none is left."""
    storage = study._storage
    for frozen in storage.get_all_trials(study._study_id, deepcopy=False,
                                         states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                return optuna.trial.Trial(study, frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial, interval: float) -> Iterator[None]:
    """Stamp the trial every `interval` seconds while the block runs."""
    storage, trial_id = study._storage, trial._trial_id
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except Exception:  # noqa: BLE001 - a missed beat must never kill the training
                pass
            if stop.wait(interval):
                return

    storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
    thread = threading.Thread(target=beat, name="cnnlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


def hand_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Put a trial this process claimed back in the queue (RUNNING -> WAITING), so that the next
    worker takes it over at once instead of after the grace period."""
    study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)


def last_beat(trial: FrozenTrial) -> float:
    stamp = trial.user_attrs.get(HEARTBEAT)
    if stamp is not None:
        return float(stamp)
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


def requeue_stale(study: optuna.Study, grace: float) -> list[int]:
    """Put RUNNING trials whose worker stopped beating back to WAITING; returns their numbers."""
    storage = study._storage
    now, requeued = time.time(), []
    for frozen in storage.get_all_trials(study._study_id, deepcopy=False,
                                         states=(TrialState.RUNNING,)):
        if now - last_beat(frozen) <= grace:
            continue
        try:
            storage.set_trial_state_values(frozen._trial_id, TrialState.WAITING)
            storage.set_trial_user_attr(frozen._trial_id, "requeued",
                                        int(frozen.user_attrs.get("requeued", 0)) + 1)
            requeued.append(frozen.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all
    return requeued
