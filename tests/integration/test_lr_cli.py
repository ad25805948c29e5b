import json

import pytest
import yaml

from tests.conftest import ROOT, cli

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
