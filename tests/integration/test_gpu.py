"""Training on a CUDA GPU: mixed precision, the fp16 grad scaler, diagnostics, compile and resume.

Skipped where no CUDA GPU is present (CI and most machines); run on a GPU machine with
`python -m pytest tests/integration/test_gpu.py`.
"""

import json
import math
import signal
import time

import pytest
import torch

from tests.conftest import cli, write_config
from tests.integration.test_resume import start, wait_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gpu_config(tiny: dict, **train) -> dict:
    tiny["train"].update(device="cuda", **train)
    tiny["diagnostics"] = {"every": 3}
    return tiny


@pytest.mark.parametrize("amp", ["auto", "fp16", "off"])
def test_mixed_precision_runs_train_on_the_gpu(tmp_path, tiny, amp):
    config = write_config(tmp_path / "c.yaml", gpu_config(tiny, amp=amp, checkpoint_every=4))
    out = tmp_path / "run"
    cli("train", str(config), "--out", str(out), "--quiet", check=True)
    env = json.loads((out / "environment.json").read_text())
    expected = {"auto": "bf16" if torch.cuda.is_bf16_supported() else "fp16"}.get(amp, amp)
    assert env["device"].startswith("cuda") and env["amp"] == expected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and math.isfinite(summary["final_train_loss"])
    assert summary["best_val_acc"] > 0.5  # 4 separable classes: chance is 0.25
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert (state["scaler"] is not None) == (expected == "fp16")
    steps = json.loads(cli("diagnose", str(out), "--json", check=True).stdout)["steps"]
    assert steps and steps[0] == 0


def test_compiled_gpu_run_follows_the_eager_one(tmp_path, tiny):
    accuracy = {}
    for compiled in (False, True):
        config = write_config(tmp_path / f"c{compiled}.yaml",
                              gpu_config(dict(tiny, train=dict(tiny["train"])), amp="off",
                                         compile=compiled))
        out = tmp_path / f"run-{compiled}"
        cli("train", str(config), "--out", str(out), "--quiet", check=True)
        accuracy[compiled] = json.loads((out / "summary.json").read_text())["final_val_acc"]
    assert accuracy[True] == pytest.approx(accuracy[False], abs=0.05)


def test_gpu_run_killed_mid_training_resumes_to_the_end(tmp_path, tiny):
    tiny["data"]["synthetic"].update(train_size=1600)
    config = write_config(tmp_path / "c.yaml",
                          gpu_config(tiny, amp="fp16", epochs=3, checkpoint_every=9))
    out = tmp_path / "run"
    process = start(config, out)
    wait_for(out / "checkpoints" / "last.pt", process)
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    cli("train", "--resume", str(out), "--quiet", check=True)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    # The weights load on a machine without a GPU.
    result = cli("eval", str(out), "-o", "train.device=cpu", "--json", check=True,
                 env={"CUDA_VISIBLE_DEVICES": ""})
    assert 0.0 <= json.loads(result.stdout)["val_acc"] <= 1.0
