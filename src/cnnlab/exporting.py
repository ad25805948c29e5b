"""`cnnlab export`: a trained run as one deployable file (ONNX or TorchScript), checked against
PyTorch before it is trusted.

The exported graph takes pixels, not normalized tensors: float32 images in [0, 1], N x C x H x W
at the run's channels and image size, any batch size. The run's normalization (mean and std of
its config.yaml) is inside the graph, and so are the test-time augmentation views the run was
evaluated with (`train.tta: flip` or `flip_translate`, cnnlab.tta), so the file gives what
`cnnlab predict` gives. The output is the logits, one
per class, in the order of the run's classes.json (softmax gives the probabilities).

The check runs the exported file (with onnxruntime, or torch.jit.load) on a batch of the run's
own validation images (random images in [0, 1] when its data cannot be loaded here) and compares
its logits with PyTorch's: it passes when the largest absolute difference is at most
`TOLERANCE` times the logits' scale, max(1, largest |logit|). The file is written under a
`.unverified` name first and gets its own name only once the check passes; a mismatch leaves it
there and stops with the difference.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ExportMismatch, UserError, did_you_mean
from cnnlab.outputs import check_parent_exists
from cnnlab.rundir import RunDir, export_record_path, unverified_path, write_json
from cnnlab.tta import tta_logits

FORMATS = ("onnx", "torchscript")
# Largest |exported - PyTorch| of a logit, as a share of max(1, largest |logit|): float32 kernels
# of two runtimes differ by reordered sums (about 1e-6 here), far under this.
TOLERANCE = 1e-4
CHECK_IMAGES = 16  # images in the check batch, by default
TRACE_BATCH = 2  # the batch the graph is traced with; the check uses another size on purpose
ONNX_OPSET = 18
ONNX_EXTRA = "pip install 'cnnlab[onnx]'"


class ExportedNetwork(nn.Module):
    """Pixels in [0, 1] -> the run's logits: its normalization, its network and, when it was
    evaluated so, its test-time augmentation views, in one module that exports as one graph."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], tta: str):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[None, :, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[None, :, None, None])
        self.tta = tta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, (images - self.mean) / self.std, self.tta)


@dataclass
class CheckBatch:
    images: torch.Tensor  # float32 in [0, 1]
    source: str  # what the images are, as said in the output


def _validate_request(format: str, out: str | Path | None, batch: int) -> None:
    """Everything that can be refused before the run is opened."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}{did_you_mean(str(format), FORMATS)}; "
                        f"accepted: {', '.join(FORMATS)}")
    if batch < 1:
        raise UserError(f"--batch must be at least 1 image, received {batch}")
    if out is not None:
        check_parent_exists(out, "--out")


def _require(module: str, why: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{why} needs the {module} package, which is not installed; install "
                        f"the export extra with {ONNX_EXTRA}") from None


def check_batch(cfg, channels: int, size: tuple[int, int], count: int) -> CheckBatch:
    """The first `count` validation (or test) images of the run's data, or seeded random images
    in [0, 1] when that data cannot be loaded on this machine."""
    from cnnlab.data import load_data

    try:
        data = load_data(cfg.data)
    except (UserError, OSError, RuntimeError) as error:
        first = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        images = torch.rand(count, channels, *size, generator=torch.Generator().manual_seed(0))
        return CheckBatch(images, f"random images (the run's data could not be loaded: {first})")
    split, name = ((data.test, "test") if data.val_is_test or len(data.val) == 0
                   else (data.val, "validation"))
    count = min(count, len(split))
    if split.in_memory:
        pixels = split.images[:count]
    else:
        from cnnlab.data.loaders import FileImages

        files = FileImages(split)
        pixels = torch.stack([files[i][0] for i in range(count)])
    if tuple(pixels.shape[1:]) != (channels, *size):
        raise UserError(f"the run's data now gives {tuple(pixels.shape[1:])} images but the run "
                        f"was trained on {(channels, *size)}; its data changed since training")
    return CheckBatch(pixels.float() / 255.0, f"{count} {name} images of the run")


def _export_onnx(network: nn.Module, example: torch.Tensor, path: Path) -> tuple[str, list[str]]:
    """Write `network` as ONNX with a dynamic batch dimension; (exporter, notes)."""
    _require("onnx", "ONNX export")
    notes = []
    try:
        _require("onnxscript", "the dynamo ONNX exporter")
        batch = torch.export.Dim("batch", min=1)
        # The exporter reports its progress on stdout; the command prints its own summary.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (example,), str(path), dynamo=True,
                              dynamic_shapes=({0: batch},), input_names=["images"],
                              output_names=["logits"], opset_version=ONNX_OPSET,
                              external_data=False, verbose=False)
        return "dynamo", notes
    except Exception as error:  # noqa: BLE001 - any failure of the new exporter falls back
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        notes.append(f"the dynamo exporter failed ({type(error).__name__}: {reason}); used the "
                     "TorchScript-based exporter instead")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice: the fallback is deliberate
        torch.onnx.export(network, (example,), str(path), dynamo=False,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=ONNX_OPSET)
    return "torchscript-based", notes


def _run_onnx(path: Path, images: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """The ONNX file's logits for `images` (None when onnxruntime is missing) and the runtime."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return None, "onnxruntime (not installed)"
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = session.run(None, {name: images.numpy()})[0]
    return torch.from_numpy(logits), f"onnxruntime {ort.__version__}"


def _export_torchscript(network: nn.Module, example: torch.Tensor, path: Path
                        ) -> tuple[str, list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(network, (example,), check_trace=False)
        torch.jit.save(traced, str(path))
    return "torch.jit.trace", []


def _run_torchscript(path: Path, images: torch.Tensor) -> tuple[torch.Tensor, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(images), f"torch.jit.load (torch {torch.__version__})"


EXPORTERS = {"onnx": (_export_onnx, _run_onnx), "torchscript": (_export_torchscript,
                                                                  _run_torchscript)}


def compare(reference: torch.Tensor, exported: torch.Tensor) -> dict:
    """The check's numbers: largest absolute difference, the logits' scale, and whether the
    difference is within TOLERANCE of that scale."""
    if exported.shape != reference.shape:
        return {"max_abs_difference": None, "scale": None, "relative_difference": None,
                "passed": False, "shape": list(exported.shape)}
    difference = float((exported.double() - reference.double()).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    relative = difference / scale
    return {"max_abs_difference": difference, "scale": scale, "relative_difference": relative,
            "passed": bool(relative <= TOLERANCE)}


def _versions(format: str) -> dict:
    from cnnlab import __version__

    versions = {"cnnlab": __version__, "torch": torch.__version__}
    if format == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            try:
                versions[module] = importlib.import_module(module).__version__
            except ImportError:
                versions[module] = None
    return versions


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None,
           weights: str = "final", batch: int = CHECK_IMAGES, model: object = None) -> dict:
    """Export a run's network (final or best weights) as ONNX or TorchScript, check the file's
    outputs against PyTorch's on `batch` images, and write a record beside it. Returns the
    record. A mismatch keeps the file as FILE.unverified and raises ExportMismatch. `model`:
    the network again (a module or factory), for a run trained on one given in Python."""
    from cnnlab.config import load_config
    from cnnlab.predict import open_run

    _validate_request(format, out, batch)
    run = RunDir.open(Path(run_dir))
    trained = open_run(run.path, weights, device="cpu", model=model)
    cfg = load_config(run.config)
    normalize = cfg.data.normalize
    network = ExportedNetwork(trained.model, list(normalize.mean), list(normalize.std),
                              tta=trained.tta).eval()
    path = Path(out) if out is not None else run.exported_model(format)
    pending = unverified_path(path)
    check = check_batch(cfg, trained.in_channels, trained.image_size, batch)
    example = check.images.new_zeros(TRACE_BATCH, *check.images.shape[1:]).uniform_(
        generator=torch.Generator().manual_seed(1))

    write, run_file = EXPORTERS[format]
    exporter, notes = write(network, example, pending)
    with torch.no_grad():
        reference = network(check.images)
    outputs, runtime = run_file(pending, check.images)
    record = {
        "format": format, "file": str(path), "run": str(run.path), "weights": weights,
        "exporter": exporter,
        "input": {"name": "images", "shape": ["batch", trained.in_channels,
                                              *trained.image_size],
                  "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW",
                  "normalization_inside": {"mean": list(normalize.mean),
                                           "std": list(normalize.std)},
                  "flip_averaging_inside": network.tta != "none",
                  "tta_inside": network.tta},
        "output": {"name": "logits", "shape": ["batch", len(trained.classes)],
                   "classes": trained.classes},
        "check": {"images": int(check.images.shape[0]), "source": check.source,
                  "runtime": runtime, "tolerance": TOLERANCE,
                  "rule": "max |exported - pytorch| <= tolerance * max(1, max |pytorch logit|)"},
        "versions": _versions(format), "notes": notes,
    }
    if outputs is None:
        record["check"].update(status="skipped", passed=None)
        notes.append(f"the check was skipped: onnxruntime is not installed ({ONNX_EXTRA})")
    else:
        record["check"].update(compare(reference, outputs))
        record["check"]["status"] = "passed" if record["check"]["passed"] else "failed"
    if record["check"]["status"] == "failed":
        record["file"] = str(pending)
        write_json(export_record_path(path), record)
        raise ExportMismatch(_mismatch_sentence(record["check"], pending))
    os.replace(pending, path)
    write_json(export_record_path(path), record)
    record["record"] = str(export_record_path(path))
    return record


def _mismatch_sentence(check: dict, pending: Path) -> str:
    if check["max_abs_difference"] is None:
        found = f"logits of shape {check['shape']}"
    else:
        found = (f"logits differing from PyTorch's by up to {check['max_abs_difference']:.3g} "
                 f"({check['relative_difference']:.3g} of their scale, tolerance "
                 f"{TOLERANCE:g})")
    return (f"the exported model gave {found} on {check['images']} images, so it was kept as "
            f"{pending} and is not to be trusted; report it with the record beside it")
