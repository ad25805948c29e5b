"""Everything a user can get wrong ends in one clear sentence and exit code 2 (3 for a diverged
run), never a traceback; and a run that diverges loses nothing already written."""

import json

import numpy as np
from PIL import Image

from tests.conftest import cli, write_config


def assert_one_clear_error(result, *fragments, code=2):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], \
        result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_a_diverging_run_stops_naming_the_step_and_keeps_its_checkpoint(tmp_path, tiny):
    # A sane first epoch, then the step schedule multiplies the LR by a million.
    tiny["train"].update(epochs=3)
    tiny["schedule"] = {"name": "step", "step_size": 1, "gamma": 1e6}
    tiny["model"]["norm"] = "none"
    out = tmp_path / "nan"
    result = cli("train", str(write_config(tmp_path / "c.yaml", tiny)), "--out", str(out))
    assert_one_clear_error(result, "loss became", "(epoch 2)", "last good checkpoint is",
                           code=3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 2
    assert not (out / "model.safetensors").exists()
    assert (out / "checkpoints" / "last.pt").exists()
    metrics = (out / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1 and json.loads(metrics[0])["epoch"] == 1
    assert summary["diverged_step"] >= json.loads(metrics[0])["step"]


def test_each_bad_config_is_one_sentence_naming_the_key(tmp_path, tiny):
    config = write_config(tmp_path / "c.yaml", tiny)
    cases = [
        (["-o", "train.colour=red"], ["train.colour: unknown key"]),
        (["-o", "optim.lr=fast"], ["optim.lr: received 'fast'"]),
        (["-o", "data.dataset=imagenet"], ["data.dataset: received 'imagenet'", "digits"]),
        (["-o", "model.arch=resnet99"], ["model.arch: unknown name 'resnet99'", "resnet56"]),
        (["-o", "optim.name=sgdd"], ["optim.name: unknown name 'sgdd'", "adamw"]),
        (["-o", "model.activation=swish"], ["model.activation.name: unknown name 'swish'", "silu"]),
        (["-o", "model.init=he"], ["model.init.default.name: unknown name 'he'",
                                   "kaiming_normal"]),
    ]
    for overrides, fragments in cases:
        assert_one_clear_error(cli("train", str(config), *overrides), *fragments)
    assert_one_clear_error(cli("train", str(tmp_path / "nope.yaml")), "does not exist")


def test_bad_data_is_named_before_training_starts(tmp_path, tiny):
    def run(data: dict, **model):
        cfg = tiny | {"data": {**tiny["data"], **data}}
        if model:
            cfg["model"] = {**tiny["model"], **model}
        return cli("train", str(write_config(tmp_path / "c.yaml", cfg)), "--out",
                   str(tmp_path / "out" / str(len(list(tmp_path.glob("out/*"))))))

    assert_one_clear_error(run({"dataset": "imagefolder", "root": str(tmp_path / "missing")}),
                           "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_clear_error(run({"dataset": "imagefolder", "root": str(tmp_path / "empty")}),
                           "has no class sub-folders")
    folder = tmp_path / "folder"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for k in range(4):
            Image.new("RGB", (8, 8), (k, 0, 0)).save(folder / name / f"{k}.png")
    (folder / "c").mkdir()
    assert_one_clear_error(run({"dataset": "imagefolder", "root": str(folder)}),
                           "class folder", "c holds no images")
    (folder / "c").rmdir()
    Image.new("RGB", (9, 9)).save(folder / "a" / "odd.png")
    assert_one_clear_error(run({"dataset": "imagefolder", "root": str(folder)}),
                           "different sizes", "data.image_size")
    (folder / "a" / "odd.png").unlink()
    (folder / "b" / "2.png").write_bytes(b"garbage")
    assert_one_clear_error(run({"dataset": "imagefolder", "root": str(folder)}),
                           "cannot decode image", "2.png")
    labels = tmp_path / "labels.npz"
    np.savez(labels, x_train=np.zeros((20, 8, 8), np.uint8), y_train=np.arange(20) % 4)
    assert_one_clear_error(run({"dataset": "npz", "root": str(labels), "num_classes": 3}),
                           "label 3, outside [0, 3)")
    assert_one_clear_error(run({}, in_channels=1),
                           "model.in_channels is 1 but the synthetic images have 3 channels")


def test_missing_torchvision_data_explains_download(tmp_path, tiny):
    cfg = tiny | {"data": {"dataset": "cifar10", "root": str(tmp_path)}}
    result = cli("train", str(write_config(tmp_path / "c.yaml", cfg)))
    assert_one_clear_error(result, "no cifar10 files", "data.download=true")
