"""Several `cnnlab ablate` launches of one study at the same moment (issue 20, items 3 and 4).

Each launch runs in a forked process that only queues the grid (--workers 0), released by one
barrier so that they really start together; the store must end up with each run queued once.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import optuna
import pytest

from cnnlab.experiments.store import open_storage
from tests.conftest import write_config

LAUNCHES = 6


def _launch(barrier, config: str, storage: str, runs: str, errors) -> None:
    from cnnlab.experiments.ablate import ablate

    barrier.wait(timeout=30)
    try:
        ablate(config, vary=["optim.lr=0.05,0.02"], seeds=2, workers=0, storage_url=storage,
               study_name="race", runs_root=runs)
    except Exception as error:  # noqa: BLE001 - the parent asserts on what each launch raised
        errors.put(f"{type(error).__name__}: {error}")
        raise SystemExit(1) from None


def launch_together(config: Path, storage: str, runs: Path, count: int = LAUNCHES) -> list[str]:
    """Run `count` queue-only ablate launches at once; returns the errors they raised."""
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(count), context.Queue()
    processes = [context.Process(target=_launch, args=(barrier, str(config), storage, str(runs),
                                                         errors)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    codes = [process.exitcode for process in processes]
    assert all(code is not None for code in codes), "a launch hung"
    return found + [f"exit code {c}" for c in codes if c != 0 and not found]


def queued(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="race", storage=open_storage(storage)).get_trials()


def assert_each_run_queued_once(trials) -> None:
    keys = Counter((t.user_attrs["label"], t.user_attrs["seed"]) for t in trials)
    folders = Counter(t.user_attrs["run_dir"] for t in trials)
    assert len(trials) == 4, f"{len(trials)} trials queued for 4 runs: {keys}"
    assert set(keys.values()) == {1} and set(folders.values()) == {1}


def test_simultaneous_ablate_launches_on_a_journal_queue_each_run_once(tmp_path, tiny):
    config = write_config(tmp_path / "tiny.yaml", tiny)
    storage = str(tmp_path / "optuna.journal")
    errors = launch_together(config, storage, tmp_path / "runs")
    assert errors == []
    assert_each_run_queued_once(queued(storage))


def test_simultaneous_relaunches_requeue_each_crashed_run_once(tmp_path, tiny):
    config = write_config(tmp_path / "tiny.yaml", tiny)
    storage = str(tmp_path / "optuna.journal")
    assert launch_together(config, storage, tmp_path / "runs", count=1) == []
    study = optuna.load_study(study_name="race", storage=open_storage(storage))
    for trial in study.get_trials():  # every worker crashed: all four runs must be re-run
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)

    errors = launch_together(config, storage, tmp_path / "runs")

    assert errors == []
    waiting = [t for t in queued(storage) if t.state.name == "WAITING"]
    assert_each_run_queued_once(waiting)


def test_simultaneous_first_use_of_a_sqlite_file_succeeds_and_queues_each_run_once(tmp_path,
                                                                                    tiny):
    config = write_config(tmp_path / "tiny.yaml", tiny)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    errors = launch_together(config, storage, tmp_path / "runs", count=4)
    assert errors == []
    assert_each_run_queued_once(queued(storage))


def test_simultaneous_ablate_launches_on_postgresql_queue_each_run_once(tmp_path, tiny,
                                                                         postgres_url):
    from sqlalchemy import create_engine, text

    # A fresh database per test run, so that the session's server can hold other studies.
    database = f"race{tmp_path.name.replace('-', '_').lower()}"[:60]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    storage = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    config = write_config(tmp_path / "tiny.yaml", tiny)
    errors = launch_together(config, storage, tmp_path / "runs")
    assert errors == []
    assert_each_run_queued_once(queued(storage))


def test_a_sqlite_store_that_stays_locked_fails_with_one_sentence_naming_the_lock(tmp_path,
                                                                                  monkeypatch):
    import sqlite3

    from cnnlab.errors import UserError
    from cnnlab.experiments import store

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    monkeypatch.setattr(store, "SQLITE_BUSY_SECONDS", 0.5)
    try:
        with pytest.raises(UserError) as caught:
            store.open_storage(f"sqlite:///{path}")
    finally:
        holder.rollback()
        holder.close()
    message = str(caught.value)
    assert "locked" in message and str(path) in message
    assert "check the URL" not in message and "\n" not in message
