"""Every bad input of issue 20 (items 9, 10, 12, 13, and others found on the way) and of
issue 17 (list files, `data.dataset: python` in a config) through the CLI.

Each case writes its files into a fresh folder and runs `python -m cnnlab train ...` (or
`cnnlab export ...`) in a subprocess, as a user would. A case passes when the run ends with exit status 2 and exactly one
line on stderr, `error: ...`, short enough to read (no traceback, no echo of a huge value, no
warning before it). The script prints one line per case and the count that passed.

    python bench/bad_inputs.py            # every case
    python bench/bad_inputs.py -k npz     # the cases whose name contains "npz"

tests/reliability/test_bad_inputs.py runs the same catalogue in-process.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

# Longest stderr line that still counts as one readable sentence.
MAX_MESSAGE = 1000
# The line saying which model file was imported (`model: {arch: file}`): the user's code ran,
# which cnnlab always says; it is a fact, not a warning, so it may precede the error.
IMPORT_NOTE = "model: importing "

BASE_CONFIG = {
    "name": "bad-input",
    "seed": 0,
    "data": {"dataset": "synthetic", "batch_size": 16, "val_split": 0.2,
             "synthetic": {"num_classes": 4, "image_size": 8, "train_size": 64, "test_size": 16}},
    "model": {"arch": "simple_cnn", "widths": [4], "fc": [8]},
    "optim": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 1, "threads": 1},
    "diagnostics": {"every": 0},
}


@dataclass(frozen=True)
class Case:
    name: str
    item: str  # where it comes from: "9", "10", "12", "13" (issue 20), "17" (issue 17) or "more"
    build: Callable[[Path], list[str]]  # writes its files into the folder, returns CLI args
    expect: str = ""  # what the sentence must say, where a vaguer refusal would miss the point


def _config(folder: Path, changes: dict | None = None) -> str:
    config = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    for section, values in (changes or {}).items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _train(folder: Path, *overrides: str, changes: dict | None = None) -> list[str]:
    args = ["train", _config(folder, changes), "--out", str(folder / "run"), "--quiet"]
    for override in overrides:
        args += ["-o", override]
    return args


def _override(*overrides: str) -> Callable[[Path], list[str]]:
    return lambda folder: _train(folder, *overrides)


def _npz(**arrays) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        path = folder / "data.npz"
        np.savez(path, **arrays)
        return _train(folder, changes={"data": {"dataset": "npz", "root": str(path)}})
    return build


def _images(n: int = 40, side: int = 8, fill: float = 0.5) -> np.ndarray:
    return np.full((n, side, side), fill, np.float32)


def _labels(n: int = 40) -> np.ndarray:
    return np.arange(n) % 4


def _nan_images() -> np.ndarray:
    images = np.random.default_rng(0).random((40, 8, 8), dtype=np.float32)
    images[3, 2, 2] = np.nan
    return images


def _stray_label() -> np.ndarray:
    labels = _labels()
    labels[7] = 255
    return labels


def _zero_byte_npz(folder: Path) -> list[str]:
    path = folder / "data.npz"
    path.write_bytes(b"")
    return _train(folder, changes={"data": {"dataset": "npz", "root": str(path)}})


def _object_npz(folder: Path) -> list[str]:
    path = folder / "data.npz"
    images = np.empty(40, dtype=object)
    images[:] = [np.zeros((8, 8)) for _ in range(40)]
    np.savez(path, x_train=images, y_train=_labels())
    return _train(folder, changes={"data": {"dataset": "npz", "root": str(path)}})


def _binary_config(folder: Path) -> list[str]:
    path = folder / "config.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    return ["train", str(path), "--out", str(folder / "run")]


def _alias_bomb(folder: Path) -> list[str]:
    # "Billion laughs": ten levels of nine aliases each, about 1 KB that stands for 10^9 strings.
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("name: *a9")
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return ["train", str(path), "--out", str(folder / "run")]


def _alias_bomb_in_known_key(folder: Path) -> list[str]:
    # A smaller bomb (59,049 strings, under the expansion limit) as the value of a key that
    # exists: validation reaches it, and its error message must not echo it all.
    def level(n: int) -> str:
        if n == 0:
            return "&x0 [" + ",".join(["lol"] * 9) + "]"
        return f"&x{n} [{level(n - 1)}, " + ", ".join([f"*x{n - 1}"] * 8) + "]"
    path = folder / "config.yaml"
    path.write_text(f"name: {level(4)}\n")
    return ["train", str(path), "--out", str(folder / "run")]


def _png(width: int, height: int) -> bytes:
    """A grey 1-bit PNG that declares `width` x `height` pixels but holds almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _folder_with(folder: Path, odd: bytes | None, side: int = 8) -> Path:
    from PIL import Image

    root = folder / "images"
    for label in range(2):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((side, side), 40 * i, np.uint8)).save(
                root / f"c{label}" / f"{i}.png")
    if odd is not None:
        (root / "c0" / "odd.png").write_bytes(odd)
    return root


def _image_folder(odd: bytes | None = None, side: int = 8, *overrides: str
                  ) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        root = _folder_with(folder, odd, side)
        return _train(folder, *overrides, changes={"data": {
            "dataset": "imagefolder", "root": str(root), "cache_dir": str(folder / "cache")}})
    return build


# Issue 17: the user's own network (model: {arch: file}) and timm names.
NETS = """
import torch.nn.functional as F
from torch import nn


def build(in_channels, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def raises(in_channels, num_classes):
    raise RuntimeError("unsupported width")


def not_a_module(in_channels, num_classes):
    return [in_channels, num_classes]


def wrong_classes(in_channels, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 1))


class Functional(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.group_norm(F.relu(self.conv(x)), 2)
        return self.fc(x.mean((2, 3)))
"""


def _own_model(folder: Path, model: dict) -> list[str]:
    """Train with the config's whole model section replaced by `model`."""
    args = _train(folder)
    config = yaml.safe_load(Path(args[1]).read_text())
    Path(args[1]).write_text(yaml.safe_dump({**config, "model": model}, sort_keys=False))
    return args


def _model_file(factory: str, write: bool = True, **keys) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        if write:
            (folder / "my_nets.py").write_text(NETS)
        return _own_model(folder, {"arch": "file", "path": "my_nets.py", "factory": factory,
                                   **keys})

    return build


def _zip_bomb(folder: Path) -> list[str]:
    root = _folder_with(folder, None)
    archive = folder / "images.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(root.rglob("*.png")):
            bundle.write(path, path.relative_to(root).as_posix())
        bundle.writestr("c0/padding.bin", b"\x00" * (64 << 20))  # 64 MiB in ~64 KB
    return _train(folder, "data.archive_max_gb=0.01", changes={"data": {
        "dataset": "imagefolder", "root": str(archive), "cache_dir": str(folder / "cache")}})


def _zip_many_members(folder: Path) -> list[str]:
    archive = folder / "images.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i in range(200):
            bundle.writestr(f"c{i % 2}/{i}.txt", b"")
    return _train(folder, "data.archive_max_files=100", changes={"data": {
        "dataset": "imagefolder", "root": str(archive), "cache_dir": str(folder / "cache")}})


def _run_folder(folder: Path, best_epoch: bool) -> Path:
    """A run folder as `cnnlab train` leaves it before its first epoch ends (only its config)
    or, with `best_epoch`, after one epoch (the best epoch's weights, no final ones). The
    weight file is empty: the commands refuse before reading it."""
    from cnnlab.rundir import RunDir

    run = RunDir.at(folder / "trained")
    run.checkpoints.mkdir(parents=True)
    run.write_config(yaml.safe_dump(BASE_CONFIG, sort_keys=False))
    if best_epoch:
        run.best_weights.write_bytes(b"")
    return run.path


def _export(*args: str, best_epoch: bool = False) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        return ["export", str(_run_folder(folder, best_epoch)),
                *[a.replace("{folder}", str(folder)) for a in args]]
    return build


def _list_file(*lines: str) -> Callable[[Path], list[str]]:
    """A CSV list file beside a folder of six tiny PNGs (pictures/0.png ...) and a text file."""
    def build(folder: Path) -> list[str]:
        from PIL import Image

        (folder / "pictures").mkdir()
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / "pictures" / f"{i}.png")
        (folder / "notes.txt").write_text("not an image")
        path = folder / "labels.csv"
        path.write_text("".join(line + "\n" for line in lines))
        return _train(folder, changes={"data": {"dataset": "filelist", "root": str(path),
                                                "cache_dir": str(folder / "cache")}})
    return build


CASES = [
    # Item 9: tracebacks.
    Case("npz_zero_bytes", "9", _zero_byte_npz),
    Case("npz_no_arrays", "9", _npz()),
    Case("npz_no_images", "9", _npz(x_train=np.zeros((0, 8, 8), np.uint8),
                                    y_train=np.zeros(0, np.int64))),
    Case("npz_object_dtype", "9", _object_npz),
    Case("png_decompression_bomb", "9", _image_folder(_png(30000, 30000))),
    Case("png_over_pixel_limit", "9", _image_folder(_png(10000, 10000))),
    Case("binary_config", "9", _binary_config),
    Case("train_subset_1", "9", _override("data.train_subset=1")),
    Case("lr_1e300", "9", _override("optim.lr=1e300")),
    Case("fc_negative", "9", _override("model.fc=[-5]")),
    Case("widths_zero", "more", _override("model.widths=[0]")),
    Case("threads_100000", "9", _override("train.threads=100000")),
    # Item 10: accepted silently.
    Case("npz_nan_pixel", "10", _npz(x_train=_nan_images(), y_train=_labels())),
    Case("npz_all_nan", "10", _npz(x_train=_images(fill=np.nan), y_train=_labels())),
    Case("npz_inf_pixel", "more", _npz(x_train=np.where(_nan_images() != _nan_images(),
                                                        np.inf, 0.5).astype(np.float32),
                                       y_train=_labels()), "NaN or infinite"),
    Case("npz_stray_label_255", "10", _npz(x_train=_images(), y_train=_stray_label())),
    Case("npz_1x1_images", "10", _npz(x_train=_images(side=1), y_train=_labels())),
    Case("imagefolder_1x1_images", "10", _image_folder(side=1)),
    Case("lr_inf", "10", _override("optim.lr=.inf")),
    Case("lr_nan", "more", _override("optim.lr=.nan")),
    Case("mixup_inf", "10", _override("train.mixup=.inf")),
    Case("epochs_true", "10", _override("train.epochs=true")),
    Case("batch_size_false", "more", _override("data.batch_size=false"), "true/false"),
    Case("image_size_1", "more", _override("data.image_size=1")),
    # Item 12: archives.
    Case("zip_expands_over_limit", "12", _zip_bomb, "expands to 67,109,"),
    Case("zip_too_many_members", "12", _zip_many_members, "holds 200 members"),
    # Item 13: huge echoes and alias bombs.
    Case("yaml_alias_bomb", "13", _alias_bomb),
    Case("yaml_alias_bomb_known_key", "13", _alias_bomb_in_known_key),
    Case("override_alias_bomb", "13", _override(
        "name=[&a [1,1,1,1,1,1,1,1,1], &b [" + ",".join(["*a"] * 9) + "], ["
        + ",".join(["*b"] * 9) + "]]")),
    Case("long_value_echo", "13", _override("name=" + "x" * 5000 + "!")),
    # Issue 17: `cnnlab export`.
    Case("export_unknown_format", "17", _export("--format", "tflite"),
         "accepted: onnx, torchscript"),
    Case("export_run_without_weights", "17", _export("--format", "onnx"), "no weights yet"),
    Case("export_unfinished_run", "17",
         _export("--format", "onnx", best_epoch=True),
         "--weights best"),
    Case("export_out_in_missing_folder", "17",
         _export("--out", "{folder}/missing/model.onnx"), "does not exist"),
    # Issue 17: models cnnlab did not write.
    Case("model_file_missing", "17", _model_file("build", write=False), "does not exist"),
    Case("model_file_no_factory", "17", _model_file("buld"), "has no function or class 'buld'"),
    Case("model_factory_raises", "17", _model_file("raises"), "raised RuntimeError"),
    Case("model_factory_not_a_module", "17", _model_file("not_a_module"), "not an nn.Module"),
    Case("model_wrong_class_count", "17", _model_file("wrong_classes"), "4 classes"),
    # model.activation / model.norm cannot replace functional calls in a forward: refused.
    Case("activation_over_functional_relu", "17", _model_file("Functional", activation="gelu"),
         "cannot replace the functional calls F.relu after conv"),
    Case("norm_over_functional_group_norm", "17", _model_file("Functional", norm="batch"),
         "cannot replace the functional calls F.group_norm"),
    # Without timm installed, the sentence names the extra to install instead.
    Case("timm_unknown_name", "17", lambda folder: _own_model(
        folder, {"arch": "timm.resnet181"}), "timm"),
    Case("torchvision_unknown_name", "17", lambda folder: _own_model(
        folder, {"arch": "torchvision.resnet181"}), "did you mean"),
    # Issue 17: list files and data given in Python.
    Case("filelist_missing_image", "17", _list_file("pictures/0.png,a", "pictures/1.png,b",
                                                    "pictures/9.png,b"), "line 3"),
    Case("filelist_unknown_split", "17", _list_file("pictures/0.png,a,train",
                                                    "pictures/1.png,b,validation"),
         "split 'validation'"),
    Case("filelist_names_and_numbers", "17", _list_file("pictures/0.png,a", "pictures/1.png,1"),
         "mixes class names and numbers"),
    Case("filelist_empty", "17", _list_file(), "lists no images"),
    Case("filelist_not_an_image", "17", _list_file("pictures/0.png,a", "pictures/1.png,b",
                                                   "notes.txt,b"), "notes.txt"),
    Case("python_data_in_a_config", "17", _override("data.dataset=python"), "data="),
]

# Issue 18: `cnnlab doctor`'s own arguments.
def _doctor(*args: str, user_file: bool = False) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        out = folder / "doctor-out"
        if user_file:
            out.mkdir()
            (out / "notes.txt").write_text("the user's own file")
        return ["doctor", _config(folder), "--out", str(out), *args]
    return build


CASES += [
    Case("doctor_budget_not_a_duration", "18", _doctor("--budget", "soon"), "not a duration"),
    Case("doctor_budget_zero", "18", _doctor("--budget", "0m"), "positive duration"),
    Case("doctor_one_seed", "18", _doctor("--seeds", "1"), "confidence interval"),
    Case("doctor_max_seeds_below_seeds", "18", _doctor("--max-seeds", "2"), "is below --seeds"),
    Case("doctor_out_with_user_files", "18", _doctor(user_file=True),
         "not made by cnnlab doctor"),
]


def verdict(returncode: int, stderr: str, expect: str = "") -> str | None:
    """Why an outcome is not one sentence and exit 2 (saying `expect`), or None when it is."""
    lines = [line for line in stderr.splitlines()
             if line.strip() and not line.startswith(IMPORT_NOTE)]
    if returncode != 2:
        return f"exit {returncode}"
    if "Traceback" in stderr:
        return "traceback"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"{len(lines)} lines on stderr"
    if len(lines[0]) > MAX_MESSAGE:
        return f"message of {len(lines[0])} characters"
    if expect not in lines[0]:
        return f"the message does not say '{expect}'"
    return None


def run(case: Case, folder: Path, timeout: float = 300) -> tuple[int, str]:
    args = case.build(folder)
    try:
        result = subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True,
                                text=True, timeout=timeout, env={**os.environ})
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    return result.returncode, result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    chosen = [case for case in CASES if args.k in case.name]
    passed = 0
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("CNNLAB_CACHE", str(Path(scratch) / "cache"))
        for case in chosen:
            folder = Path(scratch) / case.name
            folder.mkdir()
            returncode, stderr = run(case, folder)
            problem = verdict(returncode, stderr, case.expect)
            passed += problem is None
            last = (stderr.strip().splitlines() or [""])[-1]
            print(f"{'ok  ' if problem is None else 'FAIL'} {case.name:28} (item {case.item}) "
                  f"{problem or ''} {last[:150]}", flush=True)
    print(f"{passed} of {len(chosen)} bad inputs ended in one sentence and exit 2")
    return 0 if passed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
