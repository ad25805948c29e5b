"""A write that never finished: torn lines in the study journal, metrics.jsonl and summary.json
(issue 20, item 5). Finished results must stay readable and the damage must be reported."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from cnnlab.experiments.ablate import ablate
from cnnlab.experiments.compare import analyse, from_runs, from_study
from cnnlab.experiments.store import load_study, open_storage
from cnnlab.report.page import build_report
from cnnlab.rundir import RunDir
from tests.conftest import cli, write_config

# The warnings are cnnlab's TornFileWarning, a UserWarning: matched by their text, so that these
# tests run (and fail for the right reason) on code from before the fix too.
TORN_RECORD = b'{"op_code":8,"worker_id":"killed","trial_id":0,"user_attr":{"heartb'


def finished_study(tmp_path: Path, tiny: dict) -> Path:
    """A 2x2 ablation whose four runs are all finished, without training: each is claimed and
    told a value the way a worker would."""
    journal = tmp_path / "optuna.journal"
    config = write_config(tmp_path / "tiny.yaml", tiny)
    ablate(str(config), vary=["optim.lr=0.05,0.02"], seeds=2, workers=0,
           storage_url=str(journal), study_name="done", runs_root=str(tmp_path / "runs"))
    study = load_study(open_storage(str(journal)), "done")
    for frozen in study.get_trials():
        trial = optuna.trial.Trial(study, frozen._trial_id)
        study._storage.set_trial_state_values(frozen._trial_id, optuna.trial.TrialState.RUNNING)
        trial.set_user_attr("status", "completed")
        study.tell(trial, 0.5 + 0.1 * frozen.number)
    return journal


def values(journal: Path) -> dict:
    results = from_study(str(journal), "done")
    return {key: dict(seeds) for key, seeds in results.cells.items()}


def test_a_torn_last_journal_line_is_cut_off_kept_aside_and_compare_still_works(tmp_path, tiny):
    journal = finished_study(tmp_path, tiny)
    complete = journal.read_bytes()
    with open(journal, "ab") as handle:
        handle.write(TORN_RECORD)  # a worker killed in the middle of an append

    result = cli("compare", "done", "--storage", str(journal), "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["rows"]) == 2
    assert f"torn record at byte {len(complete)}" in result.stderr
    kept = journal.with_name(f"optuna.journal.torn-{len(complete)}")
    assert kept.read_bytes() == complete + TORN_RECORD
    assert journal.read_bytes() == complete


def test_a_launch_after_a_torn_line_creates_its_study_and_keeps_the_finished_one(tmp_path,
                                                                                 tiny):
    journal = finished_study(tmp_path, tiny)
    before = values(journal)
    with open(journal, "ab") as handle:
        handle.write(TORN_RECORD)

    # Today the new study's record is glued onto the torn one: "Should not reach", then a
    # JSONDecodeError for every command on this file.
    with pytest.warns(UserWarning, match="torn record at byte"):
        ablate(str(tmp_path / "tiny.yaml"), vary=["model.activation=relu,gelu"], seeds=1,
               workers=0, storage_url=str(journal), study_name="next",
               runs_root=str(tmp_path / "runs"))

    storage = open_storage(str(journal))
    assert len(load_study(storage, "next").get_trials()) == 2
    assert values(journal) == before


def test_a_torn_record_with_a_later_record_glued_on_is_repaired_for_a_reader_already_open(
        tmp_path, tiny):
    journal = finished_study(tmp_path, tiny)
    reader = load_study(open_storage(str(journal)), "done")  # a process that reads on and on
    assert len(reader.get_trials()) == 4
    # What a writer unaware of the tear leaves: the torn bytes, then a full record, then more.
    glued = json.dumps({"op_code": 2, "worker_id": "w", "study_id": 0,
                        "user_attr": {"note": "after the tear"}}, separators=(",", ":"))
    later = json.dumps({"op_code": 2, "worker_id": "w", "study_id": 0,
                        "user_attr": {"later": "also read"}}, separators=(",", ":"))
    size = journal.stat().st_size
    with open(journal, "ab") as handle:
        handle.write(TORN_RECORD + glued.encode() + b"\n" + later.encode() + b"\n")
    length = journal.stat().st_size

    with pytest.warns(UserWarning, match=f"torn record at byte {size}"):
        trials = reader.get_trials()

    assert len(trials) == 4 and all(t.user_attrs["status"] == "completed" for t in trials)
    assert reader.user_attrs["note"] == "after the tear"
    assert reader.user_attrs["later"] == "also read"
    assert journal.stat().st_size == length  # repaired in place: offsets others hold stay valid
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fresh reader finds nothing left to repair
        fresh = load_study(open_storage(str(journal)), "done")
        assert len(fresh.get_trials()) == 4 and fresh.user_attrs["later"] == "also read"


def fake_runs(tmp_path: Path) -> list[Path]:
    """Two finished runs that differ in optim.lr, as `cnnlab train` leaves them."""
    folders = []
    for lr, accuracy in ((0.05, 0.6), (0.02, 0.7)):
        folder = tmp_path / f"lr{lr}"
        run = RunDir.create(folder)
        run.write_config(yaml.safe_dump({"name": "tiny", "seed": 0, "optim": {"lr": lr}}))
        run.write_metrics([{"epoch": 1, "val_acc": accuracy - 0.1},
                           {"epoch": 2, "val_acc": accuracy}])
        run.write_summary({"status": "completed", "seed": 0, "final_val_acc": accuracy})
        folders.append(folder)
    return folders


def test_a_torn_last_metrics_line_is_skipped_with_its_file_and_offset(tmp_path):
    first, second = fake_runs(tmp_path)
    metrics = first / "metrics.jsonl"
    size = metrics.stat().st_size
    with open(metrics, "a") as handle:
        handle.write('{"epoch": 3, "val_a')

    with pytest.warns(UserWarning, match=f"{metrics}: skipped .* at byte {size}"):
        results = from_runs([str(first), str(second)])
    assert results.curves[("0.05",)][0] == [pytest.approx(0.5), pytest.approx(0.6)]
    assert len(analyse(results)["rows"]) == 2

    with pytest.warns(UserWarning, match=f"at byte {size}"):
        page = build_report([str(first), str(second)], tmp_path / "report.md")
    assert "lr0.05" in page.read_text()


def test_a_torn_summary_makes_its_run_one_of_unknown_status_and_the_others_compare(tmp_path):
    folders = fake_runs(tmp_path)
    third = tmp_path / "lr0.01"
    RunDir.create(third).write_config(yaml.safe_dump({"name": "tiny", "seed": 0,
                                                      "optim": {"lr": 0.01}}))
    (third / "summary.json").write_text('{"status": "completed", "seed": 0, "final_va')

    with pytest.warns(UserWarning, match=f"{third / 'summary.json'}: not valid JSON"):
        results = from_runs([str(f) for f in folders] + [str(third)])
    assert set(results.cells) == {("0.05",), ("0.02",)}
    with pytest.warns(UserWarning):
        assert RunDir.open(third).read_summary() is None


def test_damaged_lines_with_no_record_in_them_are_neutralized_and_the_study_reads(tmp_path, tiny):
    journal = finished_study(tmp_path, tiny)
    lines = journal.read_bytes().splitlines(keepends=True)
    # Zeroed sectors after a power cut (long) and a stray short line, among complete records.
    damaged = lines[:3] + [b"\x00" * 120 + b"\n"] + lines[3:5] + [b"x\r\n"] + lines[5:]
    journal.write_bytes(b"".join(damaged))
    first = len(b"".join(lines[:3]))

    with pytest.warns(UserWarning, match=f"torn record at byte {first} and 1 more"):
        trials = load_study(open_storage(str(journal)), "done").get_trials()

    assert [t.user_attrs["status"] for t in trials] == ["completed"] * 4
    assert journal.with_name(f"optuna.journal.torn-{first}").read_bytes() == b"".join(damaged)
    assert b"\x00" not in journal.read_bytes() and b"x\r\n" not in journal.read_bytes()
