"""Issue 20 item 10: npz labels with a gap are an error that reports the label set, unless
data.num_classes says the missing classes are meant."""

import numpy as np
import pytest

from cnnlab.config import load_config
from cnnlab.data import load_data
from cnnlab.errors import DataError


def npz_cfg(tmp_path, labels, **data):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros((len(labels), 8, 8), np.uint8), y_train=np.array(labels))
    return load_config({"data": {"dataset": "npz", "root": str(path), "val_split": 0,
                                 **data}}).data


def test_a_stray_label_is_refused_with_the_label_set(tmp_path):
    labels = [0, 1, 2, 3] * 10
    labels[5] = 255
    with pytest.raises(DataError, match=r"labels are 0\.\.3, 255 \(5 distinct values\), so 251 "
                                        r"of the classes 0\.\.255 have no images.*"
                                        r"data\.num_classes=256"):
        load_data(npz_cfg(tmp_path, labels))


def test_a_missing_class_in_the_middle_is_a_gap_too(tmp_path):
    with pytest.raises(DataError, match=r"labels are 0, 1, 3 \(3 distinct values\)"):
        load_data(npz_cfg(tmp_path, [0, 1, 3] * 10))


def test_num_classes_says_the_gap_is_meant(tmp_path):
    labels = [0, 1, 2, 3] * 10
    labels[5] = 255
    bundle = load_data(npz_cfg(tmp_path, labels, num_classes=256))
    assert bundle.num_classes == 256


def test_labels_without_a_gap_give_their_class_count(tmp_path):
    assert load_data(npz_cfg(tmp_path, [0, 1, 2, 3] * 10)).num_classes == 4
