"""Issue 20 items 2 and 9: a run folder belongs to one process at a time, and a --out that
cannot be a run folder is one sentence."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import yaml

from tests.reliability.runs import copy_run, interrupted_run, run_cli, tiny_config


def _train_when_told(start, config: str, out: str, seed: int, err_file: str) -> None:
    """A forked process: wait for the start signal, then run `cnnlab train` and exit with its
    code (fork shares the imported torch, so the two start within microseconds, not seconds)."""
    import contextlib

    from cnnlab.cli import main

    start.wait()
    with open(err_file, "w") as err, contextlib.redirect_stderr(err):
        code = main(["train", config, "--out", out, "-o", f"seed={seed}", "--quiet"])
    os._exit(code)


def race(config: Path, out: Path) -> list[tuple[int, int, str]]:
    """Two `cnnlab train --out OUT` released at the same instant; (seed, exit code, stderr)."""
    import cnnlab.cli  # noqa: F401 - imported once here, shared by both forks
    import cnnlab.train  # noqa: F401

    context = multiprocessing.get_context("fork")
    start = context.Event()
    errs = {seed: out.with_name(f"{out.name}.err{seed}") for seed in (0, 1)}
    processes = {seed: context.Process(target=_train_when_told,
                                       args=(start, str(config), str(out), seed, str(errs[seed])))
                 for seed in errs}
    for process in processes.values():
        process.start()
    start.set()
    for process in processes.values():
        process.join(timeout=120)
        if process.is_alive():  # a hung child fails the test below instead of hanging pytest
            process.kill()
            process.join()
    return [(seed, process.exitcode, errs[seed].read_text())
            for seed, process in processes.items()]


def consistent(out: Path, epochs: int) -> bool:
    """One run's files: the seed of config.yaml is the summary's, one metrics line per epoch."""
    config = yaml.safe_load((out / "config.yaml").read_text())
    summary = json.loads((out / "summary.json").read_text())
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return (config["seed"] == summary["seed"] and summary["status"] == "completed"
            and [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1)))


def test_two_runs_started_at_once_into_one_folder_one_is_refused(tmp_path):
    config = tiny_config(tmp_path, epochs=2)
    for attempt in range(3):
        out = tmp_path / f"race{attempt}"
        results = race(config, out)
        assert sorted(code for _, code, _ in results) == [0, 2], results
        winner = next(seed for seed, code, _ in results if code == 0)
        refused = next(err for _, code, err in results if code == 2)
        assert str(out) in refused and refused.count("error:") == 1
        assert "in use by another cnnlab process" in refused or "already holds a run" in refused
        assert consistent(out, 2)
        assert json.loads((out / "summary.json").read_text())["seed"] == winner


def test_a_resume_of_a_run_still_running_is_refused(tmp_path, capsys):
    from cnnlab.rundir import RunDir

    run = interrupted_run(tmp_path)
    holder = RunDir(run)
    holder.lock()  # what the running process holds; a second open file description conflicts
    try:
        code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
        assert code == 2 and "in use by another cnnlab process" in err and str(run) in err
        assert json.loads((run / "summary.json").read_text())["status"] == "running"
        config = tiny_config(tmp_path)
        code, _, err = run_cli(capsys, "train", config, "--out", tmp_path / "other", "--quiet")
        assert code == 0, err  # other folders are not affected
    finally:
        holder.unlock()
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err  # the lock went with its holder


def test_a_run_that_ended_leaves_its_folder_resumable_in_the_same_process(tmp_path, capsys):
    # The library releases the lock when train() returns, so a study's worker process can
    # resume or evaluate its own trials afterwards.
    run = copy_run(interrupted_run(tmp_path), tmp_path / "again")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    code, out, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0 and "already finished" in out, err


def refused_out(capsys, tmp_path, out) -> str:
    code, _, err = run_cli(capsys, "train", tiny_config(tmp_path), "--out", out, "--quiet")
    assert code == 2, err
    message = err.strip()
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_an_out_that_is_an_existing_file_is_one_sentence(tmp_path, capsys):
    existing = tmp_path / "file"
    existing.write_text("not a folder")
    assert "existing file" in refused_out(capsys, tmp_path, existing)
    assert "existing file" in refused_out(capsys, tmp_path, existing / "run")


def test_an_out_too_long_for_the_file_system_is_one_sentence(tmp_path, capsys):
    message = refused_out(capsys, tmp_path, tmp_path / ("x" * 300))
    assert "longer than this file system allows" in message and len(message) < 400


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's read-only /sys")
def test_an_out_nobody_may_write_is_one_sentence(tmp_path, capsys):
    # /sys refuses new folders even to root, where chmod-based tests cannot fail.
    assert "may not write there" in refused_out(capsys, tmp_path, "/sys/cnnlab-run")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders; covered by the /sys test")
def test_an_out_in_a_read_only_folder_is_one_sentence(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "may not write there" in refused_out(capsys, tmp_path, locked / "run")
