"""List files (`dataset: filelist`): CSV and JSON lists of path,label[,split] of images."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.config import load_config
from cnnlab.data import load_data
from cnnlab.errors import DataError
from tests.conftest import TINY

NAMES = ["cat", "dog"]


def _images(folder, count: int = 12, side: int = 8) -> list[tuple[str, str]]:
    """Tiny PNGs in one flat folder (not class folders); (relative path, class name) each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        label = NAMES[i % 2]
        pixels = (i % 2) * 120 + rng.integers(0, 100, (side, side, 3))
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
        rows.append((f"{folder.name}/{i}.png", label))
    return rows


def _split(i: int) -> str:
    return "test" if i >= 10 else "val" if i >= 8 else "train"


def _cfg(root, **data):
    return load_config({"data": {"dataset": "filelist", "root": str(root), "val_split": 0,
                                 "batch_size": 4, **data}, "train": {"threads": 1}})


def test_a_csv_with_a_header_and_a_split_column(tmp_path):
    rows = _images(tmp_path / "pictures")
    lines = ["path,label,split"] + [f"{p},{label},{_split(i)}" for i, (p, label) in
                                    enumerate(rows)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = load_data(_cfg(tmp_path / "labels.csv").data)
    assert data.classes == NAMES
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    assert not data.val_is_test
    assert data.train.labels.tolist() == [0, 1] * 4
    expected = np.array(Image.open(tmp_path / "pictures" / "10.png")).transpose(2, 0, 1).copy()
    assert torch.equal(data.test.images[0], torch.from_numpy(expected))


def test_a_flat_json_list_with_a_split_key(tmp_path):
    rows = _images(tmp_path / "pictures")
    entries = [{"path": p, "label": label, "split": _split(i)} for i, (p, label) in enumerate(rows)]
    (tmp_path / "list.json").write_text(json.dumps(entries))
    data = load_data(_cfg(tmp_path / "list.json").data)
    assert data.classes == NAMES
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)


def test_a_json_list_by_split_with_integer_labels_and_no_header_csv(tmp_path):
    rows = _images(tmp_path / "pictures")
    by_split = {"train": [], "test": []}
    for i, (path, label) in enumerate(rows):
        by_split["test" if i >= 10 else "train"].append({"path": path, "label": NAMES.index(label)})
    (tmp_path / "list.json").write_text(json.dumps(by_split))
    data = load_data(_cfg(tmp_path / "list.json").data)
    assert data.classes == ["0", "1"]
    assert (len(data.train), len(data.test)) == (10, 2)
    # the same images as a header-less CSV without splits: test carved out by data.test_split
    (tmp_path / "plain.csv").write_text("".join(f"{p},{NAMES.index(label)}\n"
                                                for p, label in rows))
    plain = load_data(_cfg(tmp_path / "plain.csv", test_split=0.2).data)
    assert len(plain.train) + len(plain.test) == 12 and len(plain.test) == 2


def test_a_streamed_list_file_trains(tmp_path):
    rows = _images(tmp_path / "pictures", count=16)
    (tmp_path / "labels.csv").write_text("".join(f"{p},{label}\n" for p, label in rows))
    config = copy.deepcopy(TINY)
    config["data"] = {"dataset": "filelist", "root": str(tmp_path / "labels.csv"),
                      "in_memory": False, "workers": 0, "batch_size": 4, "val_split": 0.25}
    config["model"] = {"arch": "simple_cnn", "widths": [4], "fc": [8]}
    config["train"]["epochs"] = 1
    cfg = load_config(config)
    assert not load_data(cfg.data).train.in_memory
    summary = cnnlab.train(cfg, tmp_path / "run", progress=False)
    assert summary["status"] == "completed"
    assert "cat" in (tmp_path / "run" / "classes.json").read_text()


def test_a_list_file_uses_the_image_cache(tmp_path):
    rows = _images(tmp_path / "pictures")
    (tmp_path / "labels.csv").write_text("".join(f"{p},{label}\n" for p, label in rows))
    cfg = _cfg(tmp_path / "labels.csv", cache_dir=str(tmp_path / "cache")).data
    assert not load_data(cfg).cache_hit
    assert load_data(cfg).cache_hit


@pytest.mark.parametrize("lines, message", [
    (["pictures/0.png,cat", "pictures/99.png,dog"], "line 2: .*99.png does not exist"),
    (["pictures/0.png,cat,training"], "line 1 has split 'training'; accepted: train, val, test"),
    (["pictures/0.png,cat", "pictures/1.png,1"], "mixes class names and numbers"),
    ([], "lists no images"),
    (["pictures/0.png,cat", "notes.txt,dog"], "cannot decode image .*notes.txt"),
    (["pictures/0.png"], "line 1 has 1 columns"),
])
def test_bad_list_files_are_one_sentence(tmp_path, lines, message):
    _images(tmp_path / "pictures", count=2)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "labels.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=message) as caught:
        load_data(_cfg(tmp_path / "labels.csv").data)
    assert "\n" not in str(caught.value)


def test_a_json_entry_without_a_label_is_named(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"path": "a.png"}]))
    with pytest.raises(DataError, match="entry 1 is"):
        load_data(_cfg(tmp_path / "list.json").data)
