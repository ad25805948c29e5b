"""A worker: claim waiting runs of a study and train them until none is left.

Any number of workers, on one machine or many, can serve one study. A worker leaves only when no
run is waiting and none is running; while others still run it keeps watching, so that if one of
them dies its run is put back and taken over.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from cnnlab.errors import UserError
from cnnlab.experiments.runner import run_trial
from cnnlab.experiments.store import count_states, describe_storage, open_storage
from cnnlab.experiments.study import next_trial, open_study
from cnnlab.experiments.trial_queue import DEFAULT_HEARTBEAT, heartbeat, requeue_stale
from cnnlab.models.user_code import SuppliedModel, check_unchanged
from cnnlab.progress import run_label


def grace_period(interval: float) -> float:
    """A worker is presumed dead after missing three beats."""
    return 3.0 * interval + 5.0


def work(storage_url: str | None, study_name: str, *, threads: int | None = None,
         interval: float = DEFAULT_HEARTBEAT, progress: bool = False, log=None,
         salt: int | None = None, supplied: SuppliedModel | None = None) -> int:
    """Serve the study until it is done; returns the number of runs this worker finished.
    `salt` varies a search's sampler seed between workers (default: the process id).
    `supplied` is the network of a study made with model= (in this process only)."""
    storage = open_storage(storage_url)
    # The study says what it is (ablation or search); `next_trial` serves either.
    study = open_study(storage, study_name, describe_storage(storage_url), salt)
    check_model(study, supplied)
    # --quiet: not even the worker's own lines; stderr looked up now, not at import.
    log = (log or sys.stderr) if progress else None
    done = 0
    while True:
        requeued = requeue_stale(study, grace_period(interval))
        for number in requeued:
            _say(log, f"worker: run {number} lost its worker; put back in the queue")
        trial = next_trial(study)
        if trial is None:
            counts = count_states(study)
            if counts.get("RUNNING", 0) == 0 and counts.get("WAITING", 0) == 0:
                return done
            time.sleep(min(interval, 5.0))  # others are running: watch for a dead one
            continue
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        label = trial.user_attrs.get("label", f"trial {trial.number}")
        _say(log, f"worker: starting run {trial.number} ({label}, seed "
                  f"{trial.user_attrs.get('seed', study.user_attrs.get('seed'))})")
        # Several workers share a terminal: each epoch line says which run it belongs to.
        with heartbeat(study, trial, interval), run_label(f"run {trial.number}"):
            status = run_trial(study, trial, threads, progress, supplied)
        _say(log, f"worker: run {trial.number} {status}")
        done += 1


def check_model(study, supplied: SuppliedModel | None) -> None:
    """Refuse to join a study whose model this worker cannot build as the study did: a model
    file changed since the study was made, or a network given in Python to another process."""
    recorded = study.user_attrs.get("model_source")
    if recorded is not None:
        check_unchanged(recorded, f"study {study.study_name}")
    model = study.user_attrs.get("config", {}).get("model")
    if isinstance(model, dict) and model.get("arch") == "python" and supplied is None:
        raise UserError(f"study {study.study_name} trains a network given in Python "
                        f"({model.get('name')}), which a worker process cannot receive; run it "
                        "with cnnlab.ablate(..., model=FACTORY, workers=1), or put the network "
                        "in a file and use model: {arch: file, path: ..., factory: ...}")


def _say(log, text: str) -> None:
    if log is not None:
        print(text, file=log, flush=True)
