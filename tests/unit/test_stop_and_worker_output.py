"""A stop on request is not an error; quiet studies are quiet; workers' lines say whose they are
(issue 15, item 15)."""

import io

from cnnlab import cli
from cnnlab.errors import Interrupted
from cnnlab.progress import Progress, run_label

RECORD = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5,
          "lr": 0.1, "images_per_s": 100.0, "seconds": 1.0}


def test_a_stop_on_request_says_stopped_and_how_to_resume_without_error(monkeypatch, capsys):
    def stopped(args):
        raise Interrupted("stopped at step 7 (epoch 2) on request; resume with: "
                          "cnnlab train --resume runs/x")

    monkeypatch.setitem(cli.COMMANDS, "train", stopped)
    assert cli.main(["train", "x.yaml"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("stopped at step 7") and "error" not in err


def test_epoch_lines_inside_a_run_label_carry_it():
    stream = io.StringIO()
    with run_label("run 3 (optim.lr=0.1, seed 0)"):
        Progress(2, 10, stream=stream).epoch(RECORD)
    Progress(2, 10, stream=stream).epoch(RECORD)
    first, second = stream.getvalue().splitlines()
    assert first.startswith("[run 3 (optim.lr=0.1, seed 0)] epoch 1/2")
    assert second.startswith("epoch 1/2")


def test_quiet_studies_start_quiet_workers(monkeypatch):
    from cnnlab.experiments import launch

    started = []

    class FakeProcess:
        def __init__(self, command):
            started.append(command)

        def wait(self):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", FakeProcess)
    launch.launch_workers("runs/s.journal", "s", 2, 10.0, progress=False)
    assert started and all("--quiet" in command for command in started)
    started.clear()
    launch.launch_workers("runs/s.journal", "s", 2, 10.0, progress=True)
    assert started and not any("--quiet" in command for command in started)


def test_a_quiet_worker_prints_nothing_and_a_loud_one_labels_its_runs(tmp_path, capsys, tiny):
    from cnnlab.experiments.ablate import ablate

    config = tmp_path / "tiny.yaml"
    tiny["train"]["epochs"] = 1
    tiny["data"]["synthetic"].update(train_size=64, test_size=32)
    import yaml

    config.write_text(yaml.safe_dump(tiny))
    storage = str(tmp_path / "s.journal")
    ablate(str(config), vary=["optim.lr=0.05,0.1"], seeds=1, workers=1, storage_url=storage,
           study_name="quiet", progress=False, runs_root=str(tmp_path / "runs"))
    quiet = capsys.readouterr().err
    assert "worker:" not in quiet and "epoch " not in quiet  # only the study's one summary line
    ablate(str(config), vary=["optim.lr=0.02,0.03"], seeds=1, workers=1, storage_url=storage,
           study_name="loud", progress=True, runs_root=str(tmp_path / "runs"))
    err = capsys.readouterr().err
    assert "worker: starting run 0" in err and "[run 0] epoch 1/1" in err
