"""Data given in Python (`data=`): Datasets of PIL images, arrays, dicts of splits, resume."""

import copy

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import cnnlab
from cnnlab.config import load_config
from cnnlab.data import load_data
from cnnlab.data.python_data import convert
from cnnlab.errors import DataError
from tests.conftest import TINY, same_tensors


def _config(**train):
    config = copy.deepcopy(TINY)
    config["data"] = {"dataset": "digits", "batch_size": 16, "val_split": 0.25}
    config["model"] = {"arch": "simple_cnn", "widths": [4], "fc": [8]}
    config["train"].update({"epochs": 1, **train})
    return load_config(config)


def _pixels(count: int = 64, side: int = 10, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """NHWC uint8 images whose brightness says the class, plus noise: learnable, tiny."""
    rng = np.random.default_rng(0)
    labels = np.arange(count) % classes
    images = (labels[:, None, None, None] * 50 + rng.integers(0, 60, (count, side, side, 3)))
    return images.astype(np.uint8), labels


class PilImages(torch.utils.data.Dataset):
    """A torchvision-style dataset: PIL images, integer labels, `.classes`."""

    classes = ["dark", "dim", "light", "bright"]

    def __init__(self, count: int = 64):
        self.images, self.labels = _pixels(count)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return Image.fromarray(self.images[index]), int(self.labels[index])


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_a_dataset_of_pil_images_trains_and_the_run_says_what_it_trained_on(tmp_path):
    summary = cnnlab.train(_config(), tmp_path / "run", progress=False, data=PilImages())
    assert summary["status"] == "completed"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert saved["dataset"] == "python"
    assert saved["description"] == ("train: PilImages, 64 images; images 3x10x10, 4 classes")
    classes = (tmp_path / "run" / "classes.json").read_text()
    assert all(name in classes for name in PilImages.classes)
    # predict needs only what the run folder saved, not the data
    Image.fromarray(_pixels(1)[0][0]).save(tmp_path / "new.png")
    [result] = cnnlab.predict(tmp_path / "run", [tmp_path / "new.png"], top=1)["predictions"]
    assert result["class"] in PilImages.classes
    # evaluation reads the data again: refused without it, accepted with it
    with pytest.raises(DataError, match="cnnlab.evaluate_run"):
        cnnlab.evaluate_run(tmp_path / "run")
    assert cnnlab.evaluate_run(tmp_path / "run", data=PilImages())["images"] == 12  # 0.25 of the 52 left after the test split, per class


def test_arrays_nhwc_uint8_become_the_same_images_as_the_dataset():
    images, labels = _pixels()
    cfg = _config().data
    from_arrays, _ = convert((images, labels), cfg)
    from_dataset, description = convert(PilImages(), cfg)
    assert torch.equal(from_arrays.train.images, from_dataset.train.images)
    assert from_arrays.train.images.shape[1:] == (3, 10, 10)
    assert from_arrays.classes == ["0", "1", "2", "3"]
    assert from_dataset.classes == PilImages.classes
    # the test split is carved out with data.test_split like other sources (0.2 of each
    # class's 16, rounded: 3 per class)
    assert len(from_arrays.test) == 12 and len(from_arrays.train) == 52


def test_a_dict_with_its_own_test_and_val_splits_is_used_as_given():
    images, labels = _pixels(80)
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # NCHW floats
    data = {"train": (tensors[:48], torch.from_numpy(labels[:48])),
            "val": (tensors[48:64], labels[48:64]), "test": (images[64:], labels[64:])}
    cfg = _config().data
    raw, description = convert(data, cfg)
    bundle = load_data(cfg, raw)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (48, 16, 16)
    assert not bundle.val_is_test
    assert torch.equal(bundle.test.images, torch.from_numpy(images[64:]).permute(0, 3, 1, 2))
    assert description.startswith("train: arrays x (48, 3, 10, 10) float32, 48 images; "
                                   "val: arrays")


def test_grey_tensor_images_and_class_to_idx():
    items = Items([(torch.full((1, 8, 8), i / 8), i % 2) for i in range(8)])
    items.class_to_idx = {"odd": 1, "even": 0}
    raw, _ = convert(items, _config().data)
    assert raw.classes == ["even", "odd"]
    assert raw.train.images.shape[1:] == (1, 8, 8)


def test_mixed_sizes_are_resized_with_data_image_size():
    items = Items([(np.zeros((8 + i % 2, 8, 3), np.uint8), i % 2) for i in range(10)])
    cfg = _config().data
    with pytest.raises(DataError, match="different sizes"):
        convert(items, cfg)
    cfg.image_size = 6
    raw, _ = convert(items, cfg)
    assert raw.train.images.shape[1:] == (3, 6, 6)


@pytest.mark.parametrize("data, message", [
    (Items([(np.zeros((8, 8), np.uint8), 0)] * 4 + [(np.zeros((8, 8), np.uint8), 1.5)]),
     "integer class indices"),
    (Items([(np.zeros((8, 8), np.uint8), "cat")] * 4), "integer class indices"),
    (Items([(np.zeros((8, 8), np.uint8), 0), (np.zeros((9, 8), np.uint8), 1)]), "different sizes"),
    (Items([(np.zeros((2, 8, 8), np.uint8), 0)]), "2 channels"),
    (Items([]), "holds no images"),
    (Items([np.zeros((8, 8), np.uint8)]), "must return \\(image, label\\)"),
    (Items([("not an image", 0)]), "images must be tensors"),
    (Items([(torch.randn(3, 8, 8), 0)]), "leave Normalize out"),
    ((np.zeros((4, 8, 8), np.uint8), np.arange(3)), "4 images but y has 3 labels"),
    ({"val": (np.zeros((4, 8, 8), np.uint8), np.arange(4))}, "needs 'train'"),
    ("images/", "give a map-style Dataset"),
])
def test_bad_python_data_is_one_sentence(data, message):
    with pytest.raises(DataError, match=message) as caught:
        convert(data, _config().data)
    assert "\n" not in str(caught.value)


def test_a_label_beyond_the_classes_is_refused_before_training(tmp_path):
    dataset = PilImages()
    dataset.labels = dataset.labels.copy()
    dataset.labels[5] = 4  # four names in .classes
    with pytest.raises(DataError, match="label 4, outside \\[0, 4\\)"):
        cnnlab.train(_config(), tmp_path / "run", progress=False, data=dataset)


class Interrupt(Exception):
    pass


def _stop_in_epoch_2(record):
    if record["epoch"] == 2:
        raise Interrupt  # as if killed: the epoch-1 checkpoint is the last one


def test_resume_with_the_same_data_reproduces_the_uninterrupted_run(tmp_path):
    cfg = _config(epochs=3, checkpoint_every=2)
    cnnlab.train(cfg, tmp_path / "whole", progress=False, data=PilImages())
    with pytest.raises(Interrupt):
        cnnlab.train(cfg, tmp_path / "cut", progress=False, data=PilImages(),
                     on_epoch=_stop_in_epoch_2)
    with pytest.raises(DataError, match="cnnlab.resume\\(run_dir, data=...\\)"):
        cnnlab.resume(tmp_path / "cut", progress=False)
    with pytest.raises(DataError, match="but the run trained on"):
        cnnlab.resume(tmp_path / "cut", progress=False, data=PilImages(32))
    summary = cnnlab.resume(tmp_path / "cut", progress=False, data=PilImages())
    assert summary["status"] == "completed"
    assert same_tensors(load_file(str(tmp_path / "whole" / "model.safetensors")),
                        load_file(str(tmp_path / "cut" / "model.safetensors")))


def test_inspect_and_lr_find_take_data():
    from cnnlab.lr_finder import lr_find
    from cnnlab.propagation import inspect

    report = inspect(_config(), batch_size=32, data=PilImages())
    assert report["layers"]
    found = lr_find(_config(), steps=8, data=PilImages())
    assert len(found["lrs"]) > 0


def test_digits_given_as_arrays_train_the_same_weights_as_dataset_digits(tmp_path):
    # The same pixels through data= and through the built-in source: same split, statistics
    # and batches, so the same weights bit for bit.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    cfg = _config()
    cnnlab.train(cfg, tmp_path / "source", progress=False)
    cnnlab.train(cfg, tmp_path / "arrays", progress=False, data=(x.reshape(-1, 8, 8) / 16, y))
    assert same_tensors(load_file(str(tmp_path / "source" / "model.safetensors")),
                        load_file(str(tmp_path / "arrays" / "model.safetensors")))
