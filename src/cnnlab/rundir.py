"""The run folder: the files a run leaves behind, and their names.

    config.yaml         the resolved config (defaults, data statistics and runtime filled in)
    environment.json    versions, device, threads, git commit
    metrics.jsonl       one JSON line per epoch
    summary.json        status and final/best metrics (rewritten as the run goes)
    checkpoints/        last.pt, previous.pt, best.safetensors
    model.safetensors   the final weights, written when training ends
    classes.json        class names (in label order) and the input shape, for `cnnlab predict`
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from cnnlab.errors import UserError

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
FINAL_WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "best.safetensors"
CLASSES = "classes.json"


def _json_safe(value):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(_json_safe(data), indent=2) + "\n")


def new_run_path(name: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    suffix = 2
    while path.exists():
        path = root / f"{name}-{stamp}-{suffix}"
        suffix += 1
    return path


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path) -> RunDir:
        path = Path(path)
        if path.exists() and (path / CONFIG).exists():
            raise UserError(f"{path} already holds a run; continue it with `cnnlab train --resume "
                            f"{path}` or choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise UserError(f"{path} is not a run folder (no {CONFIG}); give the folder that "
                            "`cnnlab train` printed")
        return cls(path)

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

    # Reading and writing
    def write_config(self, text: str) -> None:
        write_atomic(self.config, text)

    def write_environment(self, env: dict) -> None:
        write_json(self.path / ENVIRONMENT, env)

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite metrics.jsonl from the history a checkpoint holds, so that the file never
        has lines from epochs a resumed run will repeat."""
        lines = "".join(json.dumps(_json_safe(h)) + "\n" for h in history)
        write_atomic(self.path / METRICS, lines)

    def append_metrics(self, record: dict) -> None:
        with open(self.path / METRICS, "a") as handle:
            handle.write(json.dumps(_json_safe(record)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict]:
        path = self.path / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def read_summary(self) -> dict | None:
        if not self.summary_path.exists():
            return None
        return json.loads(self.summary_path.read_text())

    def write_classes(self, classes: list[str], in_channels: int,
                      image_size: tuple[int, int]) -> None:
        """What a prediction needs beyond config.yaml: the name of each output and the input
        shape the network was trained on."""
        write_json(self.path / CLASSES, {"classes": list(classes), "in_channels": in_channels,
                                         "image_size": list(image_size)})

    def read_classes(self) -> dict | None:
        path = self.path / CLASSES
        return json.loads(path.read_text()) if path.exists() else None

    def read_environment(self) -> dict | None:
        path = self.path / ENVIRONMENT
        return json.loads(path.read_text()) if path.exists() else None
