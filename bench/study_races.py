"""Races and torn files of studies (issue 20, items 3-5), counted over repeated trials.

Races: LAUNCHES processes start `cnnlab ablate` of the same 2x2 study (one seed-pair grid of 4
tiny runs, each launch also working as one worker) at the same moment, released by one barrier,
on a fresh store each repeat: a journal file, a SQLite file, and PostgreSQL when --postgres is
given. Modes: launches that only queue (--workers 0); launches that only queue, of a study whose
4 runs all crashed before (each launch re-queues crashed runs); launches that queue and work.
Counted: launches that failed, trials queued beyond the 4 runs, run folders shared by
more than one trial, runs completed.

Torn files: a finished study's journal, a run's metrics.jsonl and a run's summary.json each get
a torn last line (a write cut short); counted: whether `compare` still reads them.

    python bench/study_races.py [--repeats 5] [--launches 6] [--postgres URL]

Run it with PYTHONPATH pointing at another checkout's src/ to count the same on that code.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import yaml

TINY = {
    "name": "tiny", "seed": 0,
    "data": {"dataset": "synthetic", "batch_size": 32, "val_split": 0.2,
             "synthetic": {"num_classes": 4, "image_size": 12, "train_size": 160,
                           "test_size": 32, "noise": 0.3}},
    "model": {"arch": "simple_cnn", "widths": [8, 16], "fc": [32]},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 1, "threads": 1},
    "diagnostics": {"every": 0},
}
GRID = ["optim.lr=0.05,0.02"]
SEEDS = 2
RUNS = 2 * SEEDS


def _launch(barrier, folder: str, storage: str, workers: int, failures) -> None:
    from cnnlab.experiments.ablate import ablate

    # The workers' progress lines would drown the table: this process's stderr goes to a file.
    log = os.open(Path(folder) / f"launch-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT)
    os.dup2(log, 2)
    barrier.wait(timeout=60)
    try:
        ablate(str(Path(folder) / "tiny.yaml"), vary=GRID, seeds=SEEDS, workers=workers,
               storage_url=storage, study_name="race", runs_root=str(Path(folder) / "runs"),
               interval=1.0)
    except BaseException as error:  # noqa: BLE001 - counted by the parent
        failures.put(f"{type(error).__name__}: {str(error)[:160]}")
        raise SystemExit(1) from None


def race(folder: Path, storage: str, launches: int, workers: int) -> dict:
    import optuna

    from cnnlab.experiments.store import open_storage

    context = multiprocessing.get_context("fork")
    barrier, failures = context.Barrier(launches), context.Queue()
    processes = [context.Process(target=_launch, args=(barrier, str(folder), storage, workers,
                                                         failures)) for _ in range(launches)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    messages = []
    while not failures.empty():
        messages.append(failures.get())
    failed = sum(1 for p in processes if p.exitcode != 0)
    try:
        trials = optuna.load_study(study_name="race", storage=open_storage(storage)).get_trials()
    except Exception as error:  # noqa: BLE001 - a store nobody could create counts as empty
        messages.append(f"reading the study: {type(error).__name__}: {error}"[:200])
        trials = []
    trials = [t for t in trials if t.state.name != "FAIL"]  # crashed before the launches
    folders = Counter(t.user_attrs.get("run_dir") for t in trials)
    return {"failed": failed, "extra": max(0, len(trials) - RUNS),
            "shared": sum(1 for n in folders.values() if n > 1),
            "completed": sum(1 for t in trials if t.state.name == "COMPLETE"),
            "messages": messages}


def crash_every_run(folder: Path, storage: str) -> None:
    """Queue the study with one launch, then mark all its runs crashed, as if every worker died:
    the launches that follow must re-queue each of them once."""
    import optuna

    from cnnlab.experiments.ablate import ablate
    from cnnlab.experiments.store import open_storage

    with contextlib.redirect_stderr(io.StringIO()):
        ablate(str(folder / "tiny.yaml"), vary=GRID, seeds=SEEDS, workers=0, storage_url=storage,
               study_name="race", runs_root=str(folder / "runs"))
    study = optuna.load_study(study_name="race", storage=open_storage(storage))
    for trial in study.get_trials():
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def fresh_postgres(url: str, tag: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"bench_race_{os.getpid()}_{int(time.time())}_{tag}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def readable_after_tear(folder: Path) -> dict:
    """Tear the last line of the finished study's journal, of one run's metrics.jsonl and of one
    run's summary.json; can `compare` (of the study, and of the run folders) still read them?"""
    from cnnlab.experiments.ablate import ablate
    from cnnlab.experiments.compare import analyse, from_runs, from_study

    journal = folder / "optuna.journal"
    results = {}
    with open(journal, "ab") as handle:
        handle.write(b'{"op_code":8,"worker_id":"killed","trial_id":0,"user_attr":{"hea')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # the next launch on this file, then compare the finished study
            with contextlib.redirect_stderr(io.StringIO()):
                ablate(str(folder / "tiny.yaml"), vary=GRID, seeds=SEEDS, workers=0,
                       storage_url=str(journal), study_name="next",
                       runs_root=str(folder / "runs"))
            results["launch"] = True
        except Exception:  # noqa: BLE001 - counted
            results["launch"] = False
        try:
            analyse(from_study(str(journal), "race"))
            results["journal"] = True
        except Exception:  # noqa: BLE001 - counted
            results["journal"] = False
        runs = sorted(p.parent for p in (folder / "runs").rglob("summary.json"))
        with open(runs[0] / "metrics.jsonl", "a") as handle:
            handle.write('{"epoch": 2, "val_a')
        try:
            analyse(from_runs([str(r) for r in runs]))
            results["metrics"] = True
        except Exception:  # noqa: BLE001
            results["metrics"] = False
        summary = runs[1] / "summary.json"
        summary.write_text(summary.read_text()[:40])
        try:
            analyse(from_runs([str(r) for r in runs]))
            results["summary"] = True
        except Exception:  # noqa: BLE001
            results["summary"] = False
    results["warned"] = sum(1 for w in caught if "byte" in str(w.message))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--launches", type=int, default=6)
    parser.add_argument("--postgres", help="a PostgreSQL URL whose server may create databases")
    args = parser.parse_args()
    stores = ["journal", "sqlite"] + (["postgresql"] if args.postgres else [])
    # Workers per launch (--workers 0 only queues), and whether the study's runs all crashed
    # before the launches (so that each launch would re-queue them).
    modes = {"queue only": (0, False), "re-queue crashed runs": (0, True),
             "queue and work": (1, False)}
    totals = {(m, s): Counter() for m in modes for s in stores}
    torn = Counter()
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for (mode, store), total in totals.items():
            folder = Path(tempfile.mkdtemp(prefix=f"race-{store}-"))
            (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY))
            url = {"journal": str(folder / "optuna.journal"),
                   "sqlite": f"sqlite:///{folder / 'race.db'}"}.get(store)
            workers, crashed = modes[mode]
            url = url or fresh_postgres(args.postgres, f"{repeat}_{workers}_{int(crashed)}")
            if crashed:
                crash_every_run(folder, url)
            outcome = race(folder, url, args.launches, workers)
            for message in outcome.pop("messages")[:2]:
                print(f"  {store}, {mode}, repeat {repeat}: {message}")
            total.update(outcome)
            total["launches"] += args.launches
            if store == "journal" and workers and outcome["completed"] == RUNS:
                torn.update({k: int(v) for k, v in readable_after_tear(folder).items()})
                torn["tries"] += 1
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.repeats} repeats of {args.launches} simultaneous `ablate` launches of one "
          f"{RUNS}-run study per store ({time.perf_counter() - started:.0f} s)")
    print("| mode | store | launches | failed launches | duplicate trials | "
          "shared run folders | runs completed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (mode, store), t in totals.items():
        done = f"{t['completed']} of {RUNS * args.repeats}" if modes[mode][0] else "-"
        print(f"| {mode} | {store} | {t['launches']} | {t['failed']} | {t['extra']} | "
              f"{t['shared']} | {done} |")
    print(f"torn last line of a finished study's files (in {torn['tries']} studies): the next "
          f"launch on the journal succeeded {torn['launch']}, `compare` of the study read it "
          f"{torn['journal']}; `compare` of run folders with a torn metrics.jsonl read them "
          f"{torn['metrics']}, with a torn summary.json {torn['summary']}; warnings naming a "
          f"byte offset: {torn['warned']}")


if __name__ == "__main__":
    main()
