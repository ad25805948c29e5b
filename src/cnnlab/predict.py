"""New images through a trained run: `cnnlab.load_model` and `cnnlab predict`.

A prediction reads an image the way training read it: decoded to the run's channels and resized
to its image size with the same code as image folders, then normalized with the run's own
statistics (config.yaml). Class names come from the run folder's classes.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.archives import ARCHIVE_SUFFIXES, extract, is_archive
from cnnlab.data.augment import Normalizer
from cnnlab.data.imagefolder import EXTENSIONS, decode, default_cache_dir
from cnnlab.errors import DataError, UserError
from cnnlab.rundir import RunDir
from cnnlab.tta import tta_logits

BATCH = 64  # images decoded and classified at a time


@dataclass
class TrainedRun:
    """A run's model with what it needs to read new images the way it was trained."""

    model: nn.Module
    classes: list[str]
    in_channels: int
    image_size: tuple[int, int]
    normalizer: Normalizer
    tta: str
    device: torch.device


def _inputs_of(run: RunDir, cfg) -> dict:
    saved = run.read_classes()
    if saved is not None:
        return saved
    # A run folder from before classes.json: the names come from its data, read again.
    from cnnlab.data import load_data

    data = load_data(cfg.data)
    return {"classes": data.classes, "in_channels": data.in_channels,
            "image_size": list(data.image_size)}


def open_run(run_dir: str | Path, weights: str = "final", device: str = "cpu",
             model: object = None) -> TrainedRun:
    """Build the run's model on `device`, load its final (or best) weights, put it in eval
    mode; no training data is read. `model`: the network again, for a run trained on one given
    in Python."""
    from cnnlab.checkpoint import load_weights
    from cnnlab.config import load_config
    from cnnlab.model_arg import for_run
    from cnnlab.models import build_model
    from cnnlab.runtime import resolve_device

    run = RunDir.open(Path(run_dir))
    if weights not in ("final", "best"):
        raise UserError(f"weights must be 'final' or 'best', received {weights!r}")
    path = run.final_weights if weights == "final" else run.best_weights
    if not path.exists():
        if weights == "final" and run.best_weights.exists():
            hint = ("the run has not finished; use the best epoch's weights (--weights best) or "
                    "resume it first")
        else:  # not one epoch has ended: there are no weights to use at all
            hint = (f"the run has no weights yet (no epoch has finished); continue it with "
                    f"`cnnlab train --resume {run.path}` first")
        raise UserError(f"{path} does not exist: {hint}")
    cfg = load_config(run.config)
    inputs = _inputs_of(run, cfg)
    channels, size = int(inputs["in_channels"]), tuple(int(s) for s in inputs["image_size"])
    try:
        target = resolve_device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N, mps, auto") \
            from None
    # Weights are loaded over the initialization, so data-dependent inits (LSUV, whitening)
    # may look at noise here.
    network, _ = build_model(cfg.model, channels, len(inputs["classes"]), size, cfg.seed,
                             sample_batch=lambda: torch.randn(64, channels, *size),
                             dataset=cfg.data.dataset,
                             supplied=for_run(cfg, model, f"run {run.path}"), announce=False)
    load_weights(network, path)
    network = network.to(target).eval()
    mean, std = cfg.data.normalize.mean, cfg.data.normalize.std
    return TrainedRun(network, list(inputs["classes"]), channels, size,
                      Normalizer(mean, std, target, channels_last=False), cfg.train.tta, target)


def load_model(run_dir: str | Path, weights: str = "final", device: str = "cpu",
               model: object = None) -> nn.Module:
    """The run's trained network in eval mode, with its class names as `model.classes`
    (output index i is `model.classes[i]`). A run trained on a network given in Python needs
    it again as `model` (its weights are loaded into a fresh copy)."""
    trained = open_run(run_dir, weights, device, model)
    trained.model.classes = trained.classes
    return trained.model


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def image_files(items: list[str | Path]) -> list[tuple[str, Path]]:
    """(name shown, file) for every image in the given files, folders and archives, in order."""
    found: list[tuple[str, Path]] = []
    for item in items:
        path = Path(item).expanduser()
        if not path.exists():
            raise UserError(f"{item} does not exist; give image files, folders of images, or an "
                            f"archive of them ({', '.join(ARCHIVE_SUFFIXES)})")
        if is_archive(path):
            folder = extract(path, default_cache_dir())
            members = _images_in(folder)
            found.extend((f"{item}:{p.relative_to(folder).as_posix()}", p) for p in members)
        elif path.is_dir():
            members = _images_in(path)
            found.extend((str(p), p) for p in members)
        else:
            members = [path]
            found.append((str(item), path))
        if not members:
            raise UserError(f"{item} holds no images (accepted extensions: "
                            f"{', '.join(sorted(EXTENSIONS))}); give a folder or archive of images")
    return found


def _read(path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    try:
        return torch.from_numpy(decode(str(path), channels, size))
    except DataError:
        raise DataError(f"cannot read {path} as an image; give PNG, JPEG, BMP, GIF, TIFF or "
                        "WebP files (or folders or archives of them)") from None


@torch.no_grad()
def _probabilities(trained: TrainedRun, pixels: torch.Tensor) -> torch.Tensor:
    x = trained.normalizer(pixels.to(trained.device))
    # The views the run was evaluated with (train.tta): predict the same way.
    logits = tta_logits(trained.model, x, trained.tta)
    return torch.softmax(logits, dim=1).cpu()


def predict(run_dir: str | Path, items: list[str | Path], top: int = 5, weights: str = "final",
            device: str = "cpu", model: object = None) -> dict:
    """Class probabilities of every image in `items` (files, folders, archives): each image's
    `top` most likely classes, most likely first."""
    if top < 1:
        raise UserError(f"--top must be at least 1, received {top}")
    if not items:
        raise UserError("predict needs at least one image, folder or archive")
    trained = open_run(run_dir, weights, device, model)
    files = image_files(items)
    k = min(top, len(trained.classes))
    predictions = []
    for start in range(0, len(files), BATCH):
        chunk = files[start:start + BATCH]
        pixels = torch.stack([_read(path, trained.in_channels, trained.image_size)
                              for _, path in chunk])
        probabilities = _probabilities(trained, pixels)
        values, indices = probabilities.topk(k, dim=1)
        for (name, _), row_values, row_indices in zip(chunk, values.tolist(), indices.tolist()):
            ranked = [{"class": trained.classes[i], "probability": p}
                      for p, i in zip(row_values, row_indices)]
            predictions.append({"image": name, "class": ranked[0]["class"],
                                "probability": ranked[0]["probability"], "top": ranked})
    return {"run": str(run_dir), "weights": weights, "classes": trained.classes,
            "image_size": list(trained.image_size), "channels": trained.in_channels,
            "predictions": predictions}
