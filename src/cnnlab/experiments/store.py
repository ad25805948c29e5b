"""The results store: Optuna studies, in a journal file on the local disk or in a database.

Every command finds its storage through `resolve_storage` (--storage, else $CNNLAB_STORAGE, else
runs/optuna.journal) and opens it here; launches that must not race take `store_lock`. How
workers share the runs of a study (claim, heartbeat, take-over) is `trial_queue`'s job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from cnnlab.errors import UserError, first_line

try:
    import fcntl
except ImportError:  # Windows: no OS file locks; concurrent launches there are not serialized
    fcntl = None

DEFAULT_STORAGE = "runs/optuna.journal"
STORAGE_ENV = "CNNLAB_STORAGE"
# How long a process waits for another that holds the database (SQLite) or is creating its
# tables before giving up with an error that says so.
SQLITE_BUSY_SECONDS = 30.0
LOCK_WAIT_SECONDS = 120.0
# What drivers say when another process is creating the same tables or holds the file.
CONTENTION_HINTS = ("locked", "already exists", "duplicate", "unique constraint", "busy")


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
        return _open_database(url)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalStorage

    from cnnlab.experiments.journal import RepairingJournalBackend

    # Optuna's recommendation for several processes on one machine: an append-only journal
    # file with a lock, free of SQLite's "database is locked" under concurrent writers; torn
    # records left by a killed writer are repaired instead of making the file unreadable.
    return JournalStorage(RepairingJournalBackend(str(path)))


def _open_database(url: str) -> optuna.storages.RDBStorage:
    """Open (on first use: create) an Optuna database. Processes starting together would race
    to create its tables, so creation is serialized by `store_lock`; an error that still says
    "another process got there first" (a database other than SQLite and PostgreSQL) is retried."""
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Wait for a writer holding the file instead of failing at once (sqlite3's default: 5 s).
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            with store_lock(url, "schema"):
                return optuna.storages.RDBStorage(url, engine_kwargs=dict(engine_kwargs))
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - any driver error is reported in one sentence
            cause = first_line(error)
            contended = any(hint in cause.lower() for hint in CONTENTION_HINTS)
            if contended and time.monotonic() < deadline:
                time.sleep(0.05 + 0.1 * random.random())
                continue
            raise UserError(_database_error(url, cause, contended)) from None


def _database_error(url: str, cause: str, contended: bool) -> str:
    if contended and "locked" in cause.lower():
        return (f"--storage {url}: the database {_sqlite_file(url) or url} stayed locked by "
                f"another process for {SQLITE_BUSY_SECONDS:g} s ({cause}); wait for that process "
                "to finish or stop it, and give several local workers the default journal file "
                "(--storage runs/optuna.journal), which has no such lock")
    if contended:
        return (f"--storage {url}: other processes kept changing the database's tables for "
                f"{SQLITE_BUSY_SECONDS:g} s while this one created them ({cause}); run the "
                "command again once they have started")
    return (f"--storage {url}: cannot open the database ({cause}); check the URL, the server "
            "and that its driver (e.g. psycopg) is installed")


def _sqlite_file(url: str) -> str | None:
    """The file of a sqlite:///PATH URL; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return database if database and database != ":memory:" else None


@contextmanager
def store_lock(url: str | None, purpose: str) -> Iterator[None]:
    """Hold an exclusive lock on the store for `purpose` (e.g. one study's name) across
    processes: an OS file lock beside a journal or SQLite file, an advisory lock on PostgreSQL
    (which holds across machines). Other databases get no lock; callers must stay correct
    without one. A lock still held by another process after LOCK_WAIT_SECONDS is an error."""
    url, _ = resolve_storage(url)
    if url.startswith("postgresql"):
        with _postgres_lock(url, purpose):
            yield
        return
    file = _sqlite_file(url) if "://" in url else url
    lock_path = Path(f"{file}.cnnlab-lock") if file else None
    if lock_path is None or fcntl is None or not lock_path.parent.is_dir():
        yield  # nothing to lock; a missing folder is the database driver's error to report
        return
    with open(lock_path, "a+b") as handle:
        # One byte per purpose: launches of different studies do not wait for each other.
        byte = _lock_key(purpose) % (1 << 30)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise UserError(f"{lock_path} is still locked by another cnnlab process "
                                    f"after {LOCK_WAIT_SECONDS:g} s (it is setting up "
                                    f"'{purpose}'); wait for it to finish, or stop it") from None
                time.sleep(0.02 + 0.05 * random.random())
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN, 1, byte)


@contextmanager
def _postgres_lock(url: str, purpose: str) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(url, poolclass=NullPool)
        connection = engine.connect()
    except Exception as error:  # noqa: BLE001 - reported like any other unreachable database
        raise UserError(_database_error(url, first_line(error), False)) from None
    key = _lock_key(purpose)
    try:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        connection.close()
        engine.dispose()


def _lock_key(purpose: str) -> int:
    """A stable signed 63-bit number for a lock name (Python's hash() changes per process)."""
    return int.from_bytes(hashlib.sha256(f"cnnlab:{purpose}".encode()).digest()[:8], "big") >> 1


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


def count_states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
