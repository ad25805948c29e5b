"""The results store: an Optuna study, in a journal file on the local disk or in a database.

Every run of an ablation or search is a trial, created WAITING up front so that the set of runs
is known before any starts. A worker claims one with Optuna's atomic WAITING -> RUNNING update,
and while it trains a heartbeat thread stamps the trial every few seconds. A RUNNING trial whose
stamp is older than the grace period belongs to a dead worker: any process that notices puts it
back to WAITING (an idempotent update, so two processes noticing at once create nothing twice),
and the next worker to claim it resumes the run from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import UserError

DEFAULT_STORAGE = "runs/optuna.journal"
STORAGE_ENV = "CNNLAB_STORAGE"
HEARTBEAT = "heartbeat"


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Re-reporting an epoch after a resume is expected; Optuna warns and ignores the repeat.
    warnings.filterwarnings("ignore", message=".*is already reported.*")
    logging.getLogger("optuna").setLevel(logging.WARNING)


def resolve_storage(url: str | None) -> tuple[str, str]:
    """The storage every command uses, and where that choice came from (for error messages):
    --storage when given, else $CNNLAB_STORAGE when set, else runs/optuna.journal."""
    if url:
        return url, "--storage"
    from_env = os.environ.get(STORAGE_ENV, "").strip()
    if from_env:
        return from_env, f"${STORAGE_ENV}"
    return DEFAULT_STORAGE, "the default"


def describe_storage(url: str | None) -> str:
    where, origin = resolve_storage(url)
    return f"{where} (from {origin})"


def open_existing_storage(url: str | None, name: str) -> optuna.storages.BaseStorage:
    """The storage a command that only reads a study opens: a journal file that does not exist
    is an error here (opening it would create it), which names both readings of `name`."""
    where, _ = resolve_storage(url)
    if "://" not in where and not Path(where).exists():
        raise UserError(f"no study '{name}': {name} is not an existing path, and the study "
                        f"storage {describe_storage(url)} does not exist; give run folders, or a "
                        f"study name with --storage JOURNAL_OR_URL (or ${STORAGE_ENV})")
    return open_storage(url)


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """A database URL (postgresql+psycopg://..., sqlite:///...) or a journal file path; None
    means $CNNLAB_STORAGE or the default journal (see `resolve_storage`)."""
    quiet_optuna()
    url, _ = resolve_storage(url)
    if "://" in url:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as error:  # noqa: BLE001 - any driver error is a bad URL to the user
            raise UserError(f"--storage {url}: cannot open the database ({_first_line(error)}); "
                            "check the URL, the server and that its driver (e.g. psycopg) is "
                            "installed") from None
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    # Optuna's recommendation for several processes on one machine: an append-only journal
    # file with a lock, free of SQLite's "database is locked" under concurrent writers.
    return JournalStorage(JournalFileBackend(str(path)))


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def load_study(storage, name: str, where: str | None = None) -> optuna.Study:
    """The study `name`; `where` (the storage as the user named it) goes into the error."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        place = f"storage {where}" if where else "this storage"
        hint = (f", and {name} is not an existing path either" if os.sep in name or "/" in name
                else "")
        raise UserError(f"no study '{name}' in {place}{hint}; the storage has: "
                        f"{', '.join(names) or 'no study'}; pass one of those names, or point "
                        f"--storage or ${STORAGE_ENV} at the storage that has it") from None


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
def heartbeat(study: optuna.Study, trial_id: int, interval: float) -> Iterator[None]:
    """Stamp the trial every `interval` seconds while the block runs."""
    storage = study._storage
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


def count_states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
