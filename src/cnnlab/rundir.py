"""The run folder: the files a run leaves behind, and their names.

    config.yaml         the resolved config (defaults, data statistics and runtime filled in)
    config.sha256       hash of the resolved config, so an edit is detected on resume
    .lock               held (flock) by the process writing the run, for the run's life
    environment.json    versions, device, threads, git commit
    metrics.jsonl       one JSON line per epoch
    summary.json        status and final/best metrics (rewritten as the run goes)
    checkpoints/        last.pt, previous.pt, best.safetensors, early_stopping_best.safetensors
    model.safetensors   the final weights, written when training ends
    model_raw.safetensors  the trained weights, when model.safetensors is an EMA or SWA average
    classes.json        class names (in label order) and the input shape, for `cnnlab predict`
    model_source.json   path and SHA-256 of the user's model file (`model: {arch: file}`)
    diagnostics.npz     the sampled per-layer statistics (when diagnostics are on)
    diagnostics.json    their layers, alarms and measured overhead
    tensorboard/        TensorBoard event files (with train.tensorboard: true)
    model.onnx, model.torchscript.pt   `cnnlab export` output, each with a .export.json record

Every file name of a run folder is defined here and nowhere else: other modules take the paths
from a `RunDir` (or these constants), so that a renamed or added file is one edit. Analysis opens
a folder with `RunDir.open` or `RunDir.at`, which never lock it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

from cnnlab.atomic import replace_atomically
from cnnlab.errors import UserError

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
FINAL_WEIGHTS = "model.safetensors"
RAW_WEIGHTS = "model_raw.safetensors"  # the trained weights, when model.safetensors is an average
BEST_WEIGHTS = "best.safetensors"
EARLY_STOPPING_WEIGHTS = "early_stopping_best.safetensors"
CONFIG_HASH = "config.sha256"
LOCK = ".lock"
CLASSES = "classes.json"
MODEL_SOURCE = "model_source.json"  # path and sha256 of a `model: {arch: file}` run's file
DIAGNOSTICS = "diagnostics.npz"
DIAGNOSTICS_META = "diagnostics.json"  # layers, alarms and overhead of diagnostics.npz
TENSORBOARD = "tensorboard"  # a folder of event files, written beside metrics.jsonl
# `cnnlab export`: the default output of each format, and what goes beside an exported file.
ONNX_MODEL = "model.onnx"
TORCHSCRIPT_MODEL = "model.torchscript.pt"
EXPORT_RECORD_SUFFIX = ".export.json"  # model.onnx -> model.onnx.export.json
UNVERIFIED_SUFFIX = ".unverified"  # an export whose outputs did not match PyTorch's
# Inside CHECKPOINTS; cnnlab.checkpoint rotates last -> previous on every save.
LAST_CHECKPOINT = "last.pt"
PREVIOUS_CHECKPOINT = "previous.pt"


def config_hash(resolved: dict) -> str:
    """sha256 of the resolved config as canonical JSON (sorted keys): equal configs, equal hash."""
    text = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _shown(path: Path, limit: int = 120) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


def _cannot_create(path: Path, error: OSError, doing: str = "create the run folder",
                   fix: str = "choose another --out") -> UserError:
    if error.errno == errno.ENAMETOOLONG:
        why = "the path is longer than this file system allows"
    elif error.errno in (errno.EEXIST, errno.ENOTDIR):
        why = "it, or a folder above it, is an existing file"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "this user may not write there"
    else:
        why = error.strerror or str(error)
    return UserError(f"cannot {doing} {_shown(path)}: {why}; {fix}")


def _json_safe(value):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class TornFileWarning(UserWarning):
    """A results file ends in a record that was never completely written (the process writing
    it was killed, or the disk filled up); the complete part was read and the rest skipped."""


def read_json_lines(path: Path) -> list[dict]:
    """The records of a JSON-lines file such as metrics.jsonl. A line that does not parse (a
    torn last line) is skipped with a warning naming the file and its byte offset."""
    records, offset = [], 0
    for line in Path(path).read_bytes().splitlines(keepends=True):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                warnings.warn(f"{path}: skipped an incomplete line at byte {offset} (a write "
                              "that never finished); the lines before it are read",
                              TornFileWarning, stacklevel=2)
        offset += len(line)
    return records


def read_json_file(path: Path) -> dict | None:
    """A JSON file such as summary.json; None when it is missing, and None with a warning when
    it is torn, so that readers treat the run as one whose status is unknown."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError as error:
        where = getattr(error, "pos", len(data))
        warnings.warn(f"{path}: not valid JSON (torn at byte {where} of {len(data)}); the run "
                      "is treated as one whose status is unknown", TornFileWarning, stacklevel=2)
        return None


def write_json(path: Path, data) -> None:
    replace_atomically(path, json.dumps(_json_safe(data), indent=2) + "\n")


def new_run_path(name: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    suffix = 2
    while path.exists():
        path = root / f"{name}-{stamp}-{suffix}"
        suffix += 1
    return path


def _holds_run(path: Path) -> bool:
    try:
        return (path / CONFIG).exists()
    except OSError:  # a name too long to look up holds nothing; creating it says why
        return False


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_handle = None

    @classmethod
    def create(cls, path: Path) -> RunDir:
        """Claim a new run folder for this process: created if needed, locked for the run's
        life, and refused when it already holds a run, so two runs never share one folder."""
        path = Path(path)
        if _holds_run(path):
            raise UserError(f"{path} already holds a run; continue it with `cnnlab train --resume "
                            f"{path}` or choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:  # exist_ok still refuses a file in the way
            raise _cannot_create(path, error) from None
        except OSError as error:
            raise _cannot_create(path, error) from None
        run = cls(path)
        run.lock()
        # Checked again under the lock: another process may have claimed the folder between
        # the first check and the lock, and finished already.
        if _holds_run(path):
            run.unlock()
            raise UserError(f"{path} already holds a run; continue it with `cnnlab train --resume "
                            f"{path}` or choose another --out")
        return run

    def lock(self) -> None:
        """Hold an exclusive lock on the run folder until `unlock` or the process ends (the OS
        drops it even on kill -9, so a killed run can be resumed at once)."""
        try:
            handle = open(self.lock_path, "a")
        except OSError as error:
            raise _cannot_create(self.path, error, "write in the run folder",
                                 "a run is trained and resumed where it may write") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{self.path} is in use by another cnnlab process (a run still "
                            "running, or its resume); wait for it to end, stop it, or choose "
                            "another --out") from None
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing the file releases the lock
            self._lock_handle = None

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise UserError(f"{path} is not a run folder (no {CONFIG}); give the folder that "
                            "`cnnlab train` printed")
        return cls(path)

    @classmethod
    def at(cls, path: Path) -> RunDir:
        """The run folder at `path`, unchecked and never locked: for analysis that reads what
        may be there (a folder still being written, or one that never got its config)."""
        return cls(Path(path))

    # Paths
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def final_weights(self) -> Path:
        return self.path / FINAL_WEIGHTS

    @property
    def best_weights(self) -> Path:
        return self.checkpoints / BEST_WEIGHTS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def config_hash_path(self) -> Path:
        return self.path / CONFIG_HASH

    @property
    def environment_path(self) -> Path:
        return self.path / ENVIRONMENT

    @property
    def classes_path(self) -> Path:
        return self.path / CLASSES

    @property
    def model_source_path(self) -> Path:
        return self.path / MODEL_SOURCE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def diagnostics_path(self) -> Path:
        return self.path / DIAGNOSTICS

    @property
    def diagnostics_meta_path(self) -> Path:
        return self.path / DIAGNOSTICS_META

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD

    def exported_model(self, format: str) -> Path:
        """The default file `cnnlab export --format FORMAT` writes (onnx or torchscript)."""
        return self.path / {"onnx": ONNX_MODEL, "torchscript": TORCHSCRIPT_MODEL}[format]

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def previous_checkpoint(self) -> Path:
        return self.checkpoints / PREVIOUS_CHECKPOINT

    # Reading and writing
    def write_config(self, text: str) -> None:
        replace_atomically(self.config, text)

    def read_config_text(self) -> str | None:
        """The resolved config as written (YAML text); None when the folder has none."""
        return self.config.read_text() if self.config.exists() else None

    def write_config_hash(self, resolved: dict) -> None:
        replace_atomically(self.config_hash_path, config_hash(resolved) + "\n")

    def read_config_hash(self) -> str | None:
        path = self.config_hash_path
        return path.read_text().strip() if path.exists() else None

    def write_environment(self, env: dict) -> None:
        write_json(self.environment_path, env)

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite metrics.jsonl from the history a checkpoint holds, so that the file never
        has lines from epochs a resumed run will repeat."""
        lines = "".join(json.dumps(_json_safe(h)) + "\n" for h in history)
        replace_atomically(self.metrics_path, lines)

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(_json_safe(record)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict]:
        """Every complete line of metrics.jsonl ([] without the file); a torn last line is
        skipped with a TornFileWarning."""
        path = self.metrics_path
        if not path.exists():
            return []
        return read_json_lines(path)

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def read_summary(self) -> dict | None:
        """summary.json; None when it is missing or torn (status unknown)."""
        return read_json_file(self.summary_path)

    def write_classes(self, classes: list[str], in_channels: int,
                      image_size: tuple[int, int]) -> None:
        """What a prediction needs beyond config.yaml: the name of each output and the input
        shape the network was trained on."""
        write_json(self.classes_path, {"classes": list(classes), "in_channels": in_channels,
                                         "image_size": list(image_size)})

    def read_classes(self) -> dict | None:
        path = self.path / CLASSES
        return json.loads(path.read_text()) if path.exists() else None

    def write_model_source(self, record: dict) -> None:
        """The user's model file of an `arch: file` run: its path and SHA-256."""
        write_json(self.model_source_path, record)

    def read_model_source(self) -> dict | None:
        return read_json_file(self.model_source_path)

    def read_environment(self) -> dict | None:
        path = self.path / ENVIRONMENT
        return json.loads(path.read_text()) if path.exists() else None

    @property
    def early_stopping_weights(self) -> Path:
        """The weights of early stopping's best epoch, restored at the end when it says so."""
        return self.checkpoints / EARLY_STOPPING_WEIGHTS

    @property
    def raw_weights(self) -> Path:
        """The trained weights themselves, kept beside model.safetensors when that is an average."""
        return self.path / RAW_WEIGHTS


def export_record_path(model_file: Path) -> Path:
    """The JSON record written beside an exported model (its check and versions)."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + EXPORT_RECORD_SUFFIX)


def unverified_path(model_file: Path) -> Path:
    """Where an exported model is kept while, or when, its outputs are not shown to match."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + UNVERIFIED_SUFFIX)
