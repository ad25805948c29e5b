"""Issue 16 items 6 and 10: the run folder, its file names, writers and readers, and the one
atomic-write helper every rewritten file goes through."""

from __future__ import annotations

import errno
import json
import math

import pytest

from cnnlab import atomic
from cnnlab.errors import UserError
from cnnlab.rundir import RunDir, TornFileWarning, config_hash


def test_every_file_has_its_path(tmp_path):
    run = RunDir.at(tmp_path)
    paths = {"config": run.config, "config.sha256": run.config_hash_path,
             "lock": run.lock_path, "environment": run.environment_path,
             "metrics": run.metrics_path, "summary": run.summary_path,
             "classes": run.classes_path, "final": run.final_weights,
             "diagnostics": run.diagnostics_path, "diagnostics meta": run.diagnostics_meta_path,
             "checkpoints": run.checkpoints, "best": run.best_weights,
             "last": run.last_checkpoint, "previous": run.previous_checkpoint}
    relative = {key: str(path.relative_to(tmp_path)) for key, path in paths.items()}
    assert relative == {"config": "config.yaml", "config.sha256": "config.sha256",
                        "lock": ".lock", "environment": "environment.json",
                        "metrics": "metrics.jsonl", "summary": "summary.json",
                        "classes": "classes.json", "final": "model.safetensors",
                        "diagnostics": "diagnostics.npz", "diagnostics meta": "diagnostics.json",
                        "checkpoints": "checkpoints", "best": "checkpoints/best.safetensors",
                        "last": "checkpoints/last.pt", "previous": "checkpoints/previous.pt"}


def test_the_checkpoint_module_uses_the_run_folder_names():
    from cnnlab import checkpoint

    assert (checkpoint.LAST, checkpoint.PREVIOUS) == ("last.pt", "previous.pt")


def test_create_claims_and_locks_the_folder(tmp_path):
    run = RunDir.create(tmp_path / "run")
    assert run.lock_path.exists()
    with pytest.raises(UserError, match="in use by another cnnlab process"):
        RunDir(run.path).lock()  # another open of the lock file, as another process's
    run.write_config("name: x\n")
    run.unlock()
    with pytest.raises(UserError, match="already holds a run; continue it with"):
        RunDir.create(run.path)
    again = RunDir(run.path)
    again.lock()  # released by unlock: a resume may take it
    again.unlock()


def test_open_wants_a_run_and_at_reads_anything_without_locking(tmp_path):
    with pytest.raises(UserError, match="is not a run folder"):
        RunDir.open(tmp_path)
    run = RunDir.at(tmp_path / "not yet")
    assert (run.read_summary(), run.read_metrics(), run.read_config_text()) == (None, [], None)
    assert not (tmp_path / "not yet").exists()  # reading creates nothing, not even the lock
    RunDir.at(tmp_path).write_config("a: 1\n")
    assert RunDir.open(tmp_path).read_config_text() == "a: 1\n"


def test_writers_and_readers_round_trip(tmp_path):
    run = RunDir.at(tmp_path)
    run.write_config_hash({"b": 1, "a": [2]})
    assert run.read_config_hash() == config_hash({"a": [2], "b": 1})
    run.write_environment({"torch": "2", "threads": 2})
    assert run.read_environment() == {"torch": "2", "threads": 2}
    run.write_classes(["cat", "dog"], 3, (32, 32))
    assert run.read_classes() == {"classes": ["cat", "dog"], "in_channels": 3,
                                  "image_size": [32, 32]}
    run.write_summary({"status": "completed", "val_loss": math.nan})
    assert run.read_summary() == {"status": "completed", "val_loss": None}  # NaN is not JSON
    run.write_metrics([{"epoch": 1}, {"epoch": 2, "loss": math.inf}])
    run.append_metrics({"epoch": 3})
    assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2, "loss": None}, {"epoch": 3}]
    run.write_metrics([{"epoch": 1}])  # a resume rewrites what its checkpoint holds
    assert run.read_metrics() == [{"epoch": 1}]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_torn_metrics_line_is_skipped_and_the_rest_read(tmp_path):
    run = RunDir.at(tmp_path)
    run.metrics_path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    with pytest.warns(TornFileWarning, match="incomplete line at byte 26"):
        assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2}]


def test_a_torn_summary_reads_as_status_unknown(tmp_path):
    run = RunDir.at(tmp_path)
    run.summary_path.write_text('{"status": "compl')
    with pytest.warns(TornFileWarning, match="status is unknown"):
        assert run.read_summary() is None


def test_replace_atomically_writes_text_bytes_and_writers(tmp_path):
    target = tmp_path / "f"
    atomic.replace_atomically(target, "text é")
    assert target.read_text(encoding="utf-8") == "text é"
    atomic.replace_atomically(target, b"\x00\x01", durable=True)
    assert target.read_bytes() == b"\x00\x01"
    atomic.replace_atomically(target, lambda handle: handle.write(b"from a writer"))
    assert target.read_bytes() == b"from a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")

    def fills_the_disk(handle):
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as failure:
        atomic.replace_atomically(target, fills_the_disk)
    assert failure.value.filename == str(atomic.temporary_for(target))  # it says which file
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_named_temporary_is_used_and_renamed(tmp_path):
    target, temporary = tmp_path / "images.npy", tmp_path / "images.123.tmp.npy"
    atomic.replace_atomically(target, json.dumps([1]), temporary=temporary)
    assert json.loads(target.read_text()) == [1] and not temporary.exists()
