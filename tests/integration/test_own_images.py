"""The README's "Train on your own images" walk-through, run as written: a folder of class
sub-folders, `cnnlab train examples/own_images.yaml`, then `cnnlab predict` on new images."""

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from tests.conftest import ROOT

OWN_IMAGES = str(ROOT / "examples" / "own_images.yaml")
COLOURS = {"blue": (30, 60, 220), "red": (220, 40, 30)}
# A few seconds of training on CPU: the example's settings, shrunk.
SMALL = ["data.image_size=12", "model.arch=simple_cnn", "model.widths=[8,16]", "model.fc=[16]",
         "train.epochs=3", "train.threads=1", "diagnostics.every=0", "data.batch_size=8",
         "data.val_split=0.25", "train.label_smoothing=0"]


def photo(path: Path, colour, size, seed: int) -> Path:
    """A noisy image of one colour: the class is learnable in a few steps."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def my_images(root: Path) -> Path:
    for index, (name, colour) in enumerate(COLOURS.items()):
        for k in range(12):
            # Mixed sizes, as a phone's photos are: data.image_size resizes them all.
            photo(root / name / f"{k}.png", colour, (14 + k % 3, 12 + k % 2), 100 * index + k)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("own")
    my_images(base / "my_images")
    here = Path.cwd()
    try:
        os.chdir(base)  # -o paths are relative to the folder the command runs in
        overrides = [arg for item in ["data.root=my_images", *SMALL] for arg in ("-o", item)]
        assert main(["train", OWN_IMAGES, *overrides, "--out", "runs/own", "--quiet"]) == 0
    finally:
        os.chdir(here)
    return base, base / "runs" / "own"


def test_the_run_folder_saves_class_names_and_an_absolute_data_root(trained):
    base, run = trained
    saved = json.loads((run / "classes.json").read_text())
    assert saved == {"classes": ["blue", "red"], "in_channels": 3, "image_size": [12, 12]}
    config = cnnlab.load_config(run / "config.yaml")
    assert config.data.root == str(base / "my_images")


def test_predict_names_the_class_of_new_images_of_any_size(trained, tmp_path, capsys):
    _, run = trained
    red = photo(tmp_path / "new_red.png", COLOURS["red"], (40, 30), 7)
    blue = photo(tmp_path / "new_blue.jpg", COLOURS["blue"], (9, 9), 8)
    assert main(["predict", str(run), str(red), str(blue), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["blue", "red"]
    first, second = out["predictions"]
    assert (first["image"], first["class"]) == (str(red), "red")
    assert (second["image"], second["class"]) == (str(blue), "blue")
    for item in out["predictions"]:
        assert [g["class"] for g in item["top"]] in (["red", "blue"], ["blue", "red"])
        assert sum(g["probability"] for g in item["top"]) == pytest.approx(1.0, abs=1e-5)
        assert item["top"][0]["probability"] >= item["top"][1]["probability"]
    # --top 1 and the plain text form: one line per image.
    assert main(["predict", str(run), str(red), "--top", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(red)) and line.split()[-2] == "red"


def test_predict_reads_folders_and_archives_and_writes_csv(trained, tmp_path, capsys):
    _, run = trained
    folder = tmp_path / "batch"
    photo(folder / "a.png", COLOURS["red"], (12, 12), 1)
    photo(folder / "sub" / "b.png", COLOURS["blue"], (12, 12), 2)
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(folder / "a.png", "pics/c.png")
    assert main(["predict", str(run), str(folder), str(archive), "--csv", "--top", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "image,rank,class,probability"
    images = [row.split(",")[0] for row in rows[1:]]
    assert images == [str(folder / "a.png")] * 2 + [str(folder / "sub" / "b.png")] * 2 + \
        [f"{archive}:c.png"] * 2
    assert [row.split(",")[1] for row in rows[1:]] == ["1", "2"] * 3


def test_predict_refuses_missing_paths_and_files_that_are_not_images(trained, tmp_path, capsys):
    _, run = trained
    assert main(["predict", str(run), str(tmp_path / "nope.png")]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "nope.png does not exist" in message
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    assert main(["predict", str(run), str(broken)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and f"cannot read {broken} as an image" in message
    assert main(["predict", str(run), str(broken), "--top", "0"]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err


def test_load_model_gives_the_network_in_eval_mode_with_its_class_names(trained):
    _, run = trained
    model = cnnlab.load_model(run)
    assert not model.training and model.classes == ["blue", "red"]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 12, 12)).shape == (1, 2)


def test_eval_works_from_another_folder(trained, tmp_path, monkeypatch, capsys):
    _, run = trained
    monkeypatch.chdir(tmp_path)  # the data root was given relative to another folder
    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] > 0


def test_the_readme_walks_from_a_folder_of_class_sub_folders_to_a_prediction():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Train on your own images", 1)[1].split("\n## ", 1)[0]
    for needed in ("data.root", "data.image_size", "examples/own_images.yaml", "cnnlab predict",
                   "cnnlab.load_model"):
        assert needed in section


def test_a_run_folder_without_classes_json_takes_the_names_from_its_data(trained, tmp_path):
    _, run = trained
    older = tmp_path / "older"
    shutil.copytree(run, older)
    (older / "classes.json").unlink()  # as written by cnnlab before classes.json existed
    red = photo(tmp_path / "red.png", COLOURS["red"], (12, 12), 3)
    result = cnnlab.predict(older, [red], top=1)
    assert result["classes"] == ["blue", "red"] and result["predictions"][0]["class"] == "red"
