"""Issue 20 item 14: model files are byte-reproducible and get the run's usual permissions."""

from __future__ import annotations

import hashlib
import json
import os
import stat

from torch import nn

METADATA = {"weights": "final", "average": "none", "epoch": "3", "note": "x", "extra": "y"}


def small_model() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    for index, parameter in enumerate(model.parameters()):
        nn.init.constant_(parameter, 0.1 * index)
    return model


def test_the_same_weights_give_byte_identical_files(tmp_path):
    from cnnlab.checkpoint import save_weights

    model = small_model()
    digests = set()
    for attempt in range(12):  # safetensors' metadata order changed from one save to the next
        path = tmp_path / f"w{attempt}.safetensors"
        save_weights(model, path, dict(METADATA))
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_the_header_is_in_sorted_order_and_still_loads(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from cnnlab.checkpoint import save_weights

    model = small_model()
    path = tmp_path / "w.safetensors"
    save_weights(model, path, dict(METADATA))
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    assert length % 8 == 0
    header = json.loads(data[8:8 + length])
    assert list(header) == sorted(header)
    assert list(header["__metadata__"]) == sorted(METADATA)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == METADATA
    loaded = load_file(str(path))
    assert all((loaded[k] == v).all() for k, v in model.state_dict().items())


def test_weight_files_get_the_same_permissions_as_the_other_files(tmp_path):
    from cnnlab.checkpoint import save_weights
    from cnnlab.rundir import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "summary.json", {"status": "completed"})
        save_weights(small_model(), tmp_path / "model.safetensors", dict(METADATA))
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
