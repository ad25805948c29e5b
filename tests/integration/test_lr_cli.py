import copy
import json

import numpy as np
import pytest
import yaml

import cnnlab
from cnnlab.cli import main
from tests.conftest import ROOT, cli, write_config

QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def test_schedule_json_gives_lr_and_momentum_for_every_step(tmp_path):
    out = json.loads(cli("schedule", QUICKSTART, "-o", "schedule={name: one_cycle}", "--json",
                         check=True).stdout)
    # digits: 1294 training images / 64 = 20 steps per epoch, 10 epochs.
    assert out["total_steps"] == 200 == len(out["lr"]) == len(out["momentum"])
    assert max(out["lr"]) <= 0.05 + 1e-12 and out["momentum"][0] == 0.95
    plain = json.loads(cli("schedule", QUICKSTART, "-o", "optim.momentum=0", "--json",
                           check=True).stdout)
    assert plain["momentum"] is None and plain["warmup_steps"] == 20
    plot = tmp_path / "s.png"
    text = cli("schedule", QUICKSTART, "-o", "schedule={name: cosine_restarts, period: 2}",
               "--plot", str(plot), check=True).stdout
    assert "restarts at [40, 80, 120, 160]" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_lr_find_reports_suggestions_repeats_plot_and_applies_the_valley(tmp_path):
    plot, applied = tmp_path / "lr.png", tmp_path / "applied.yaml"
    result = cli("lr-find", QUICKSTART, "--steps", "40", "--start", "1e-5", "--end", "5",
                 "--repeats", "2", "--plot", str(plot), "--apply", str(applied), "--json",
                 check=True)
    out = json.loads(result.stdout)
    assert set(out["suggestions"]) == {"valley", "steep", "minimum"}
    assert len(out["lrs"]) == len(out["losses"]) <= 40
    assert out["repeats"]["count"] == 2
    assert len(out["repeats"]["suggestions"]["valley"]["values"]) <= 2
    assert plot.read_bytes()[:4] == b"\x89PNG"
    written = yaml.safe_load(applied.read_text())
    assert written["optim"]["lr"] == out["suggestions"]["valley"]


def test_lr_find_rejects_a_backwards_range():
    result = cli("lr-find", QUICKSTART, "--start", "1", "--end", "1e-3")
    assert result.returncode == 2 and "--start" in result.stderr


def test_lr_find_in_validation_mode_applies_the_valley_as_the_one_cycle_peak(tmp_path):
    applied = tmp_path / "applied.yaml"
    result = cli("lr-find", QUICKSTART, "-o", "schedule={name: one_cycle}", "--steps", "30",
                 "--start", "1e-4", "--end", "10", "--validation", "--apply", str(applied),
                 check=True)
    assert "validation loss" in result.stdout and "(the one-cycle peak)" in result.stdout
    written = yaml.safe_load(applied.read_text())
    assert written["schedule"]["name"] == "one_cycle"
    # one_cycle peaks at optim.lr, so the applied config's schedule tops out at the valley LR.
    trace = json.loads(cli("schedule", str(applied), "--json", check=True).stdout)
    assert max(trace["lr"]) == pytest.approx(written["optim"]["lr"])


def test_the_sweep_stops_once_the_smoothed_loss_passes_the_stop_factor():
    out = json.loads(cli("lr-find", QUICKSTART, "--steps", "60", "--start", "1e-3", "--end",
                         "1e4", "--stop-factor", "2", "--json", check=True).stdout)
    assert out["stopped"] in ("loss passed 2x its best", "non-finite loss")
    assert len(out["lrs"]) < 60


def test_lr_find_apply_writes_config_units_so_the_run_trains_at_the_suggested_lr(
        tmp_path, tiny, capsys):
    # optim.lr is in units of base_batch_size: at batch 64 against base 32 the optimizer uses
    # twice optim.lr, so the applied config must hold half the (absolute) suggestion.
    tiny["data"]["batch_size"] = 64
    tiny["optim"].update(scale_lr="linear", base_batch_size=32)
    tiny["schedule"] = {"name": "constant"}
    tiny["train"]["epochs"] = 1
    source = write_config(tmp_path / "own.yaml", tiny)
    applied = tmp_path / "applied.yaml"
    assert main(["lr-find", str(source), "--steps", "40", "--start", "1e-4", "--end", "10",
                 "--apply", str(applied), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    valley = out["suggestions"]["valley"]
    assert out["optim_lr"]["valley"] == pytest.approx(valley / 2)
    written = yaml.safe_load(applied.read_text())
    # The user's config with only the LR changed, not the expanded one.
    expected = copy.deepcopy(tiny)
    expected["optim"]["lr"] = pytest.approx(valley / 2)
    assert written == expected
    summary = cnnlab.train(cnnlab.load_config(applied), out=tmp_path / "run", progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert summary["status"] == "completed"
    assert metrics[0]["lr"] == pytest.approx(valley)  # what the optimizer used


def test_lr_find_apply_keeps_relative_paths_working_from_another_folder(tmp_path, tiny,
                                                                         monkeypatch):
    tiny["data"] = {"dataset": "npz", "root": "data.npz", "batch_size": 16}
    rng = np.random.default_rng(0)
    (tmp_path / "configs").mkdir()
    np.savez(tmp_path / "configs" / "data.npz",
             x_train=rng.integers(0, 255, (64, 8, 8, 1), dtype=np.uint8),
             y_train=np.arange(64) % 2)
    source = write_config(tmp_path / "configs" / "own.yaml", tiny)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert main(["lr-find", str(source), "--steps", "30", "--start", "1e-4", "--end", "10",
                 "--apply", "out/applied.yaml", "--json"]) == 0
    written = yaml.safe_load((tmp_path / "out" / "applied.yaml").read_text())
    assert written["data"]["root"] == str(tmp_path / "configs" / "data.npz")
    assert cnnlab.load_config(tmp_path / "out" / "applied.yaml").data.root == \
        str(tmp_path / "configs" / "data.npz")


def test_lr_find_says_when_the_sweep_never_beat_a_uniform_guess(tmp_path, tiny, capsys):
    # Huge random logits are confidently wrong, and LRs this small cannot move them.
    tiny["model"]["init"] = {"name": "normal", "std": 1.0}
    source = write_config(tmp_path / "stuck.yaml", tiny)
    assert main(["lr-find", str(source), "--steps", "10", "--start", "1e-12",
                 "--end", "1e-11"]) == 0
    out = capsys.readouterr().out
    assert "note: the loss never fell below 1.39, a uniform guess's" in out
    assert main(["lr-find", str(source), "--steps", "10", "--start", "1e-12", "--end", "1e-11",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["below_chance"] is False
