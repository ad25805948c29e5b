"""Progress output on stderr: one refreshing line on a terminal, a line per epoch elsewhere."""

from __future__ import annotations

import contextlib
import contextvars
import shutil
import sys
import time
from collections.abc import Iterator
from typing import TextIO

# The run whose lines these are, when several runs share one terminal (workers of a study); set
# by whoever starts the run, so the training loop need not know it is part of a study.
_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("progress_label", default="")


@contextlib.contextmanager
def run_label(label: str) -> Iterator[None]:
    """Prefix every progress line written inside with `[label] `."""
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def _format_rate(value: float) -> str:
    return f"{value:,.0f}"


class Progress:
    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool = True,
                 stream: TextIO | None = None):
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interactive = enabled and self.stream.isatty()
        self._last_draw = 0.0
        self._open_line = False

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        self._clear()
        label = _LABEL.get()
        print(f"[{label}] {text}" if label else text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._open_line:
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self._open_line = False

    def step(self, epoch: int, step: int, loss: float, acc: float, lr: float,
             images_per_s: float, note: str = "") -> None:
        """The live line: epoch, step, running loss and accuracy, LR, throughput."""
        if not self.interactive:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and step < self.steps:
            return
        self._last_draw = now
        done = int(20 * step / max(self.steps, 1))
        bar = "#" * done + "." * (20 - done)
        text = (f"epoch {epoch}/{self.epochs} [{bar}] step {step}/{self.steps} loss {loss:.4f} "
                f"acc {acc:.4f} lr {lr:.3g} {_format_rate(images_per_s)} img/s{note}")
        width = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r" + text[: width - 1])
        self.stream.flush()
        self._open_line = True

    def epoch(self, record: dict) -> None:
        parts = [f"epoch {record['epoch']}/{self.epochs}",
                 f"train_loss {record['train_loss']:.4f}", f"train_acc {record['train_acc']:.4f}",
                 f"val_loss {record['val_loss']:.4f}", f"val_acc {record['val_acc']:.4f}"]
        if "val_top5" in record:
            parts.append(f"val_top5 {record['val_top5']:.4f}")
        parts += [f"lr {record['lr']:.3g}", f"{_format_rate(record['images_per_s'])} img/s",
                  f"{record['seconds']:.1f}s"]
        self.write("  ".join(parts))

    def close(self) -> None:
        if self.enabled:
            self._clear()
