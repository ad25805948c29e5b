"""`train.tensorboard: true`: the run's curves and per-layer statistics as TensorBoard events in
RUN_DIR/tensorboard/, so that `tensorboard --logdir runs` shows every run of a study side by side.

An observer only: it writes what metrics.jsonl and the diagnostics already record, from the same
records, after they are recorded; nothing reads it back, and metrics.jsonl stays the source of
truth. The x axis is the optimizer steps completed (a metrics line's `step`; a diagnostics sample
taken at step index s is drawn at s + 1), so that after a resume from a checkpoint at step S the
writer purges every event from S + 1 on that the interrupted process wrote, and no step appears
twice.

Tags: `train/loss`, `train/acc`, `val/loss`, `val/acc` (and `val/top5`, `ema/val_acc`, ...),
`epoch/lr`, `epoch/images_per_s`, `time/seconds`; per layer, `layers/<statistic>/<layer>` for
the activation mean, std, peak, dead and saturated fractions and the weight norm, gradient norm
and update ratio, `histograms/<layer>` for the output histograms, and `diagnostics/lr` and
`diagnostics/global_grad_norm`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

EXTRA = "pip install 'cnnlab[tensorboard]'"
# A metrics key with one of these prefixes is drawn as prefix/rest (val_loss -> val/loss), so
# that TensorBoard groups the curves by split; every other number goes under epoch/.
SPLITS = ("train", "val", "test", "ema", "swa")
NOT_CURVES = ("epoch", "step")  # the x axis, not a curve
TIMES = ("train_seconds", "seconds")  # time/..., not the train split's
LAYER_STATISTICS = ("mean", "std", "peak", "dead", "saturated")
WEIGHT_STATISTICS = ("weight_norm", "grad_norm", "update_ratio")


def summary_writer_class():
    """torch's SummaryWriter; a UserError naming the extra when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(f"train.tensorboard is true but the tensorboard package is not "
                        f"installed; install it with {EXTRA}, or set train.tensorboard=false") \
            from None
    return SummaryWriter


def metric_tag(key: str) -> str:
    if key in TIMES:
        return f"time/{key}"
    prefix, _, rest = key.partition("_")
    return f"{prefix}/{rest}" if prefix in SPLITS and rest else f"epoch/{key}"


class TensorBoardLog:
    """Writes each metrics line and each diagnostics sample once, as TensorBoard events."""

    def __init__(self, folder: Path, resumed_at_step: int | None = None):
        writer = summary_writer_class()
        # purge_step: events the interrupted process wrote after its last checkpoint go.
        self.writer = writer(log_dir=str(folder),
                             purge_step=resumed_at_step + 1 if resumed_at_step else None)
        self.last_sample_step = resumed_at_step - 1 if resumed_at_step else -1

    def epoch(self, record: dict) -> None:
        step = record["step"]
        for key, value in record.items():
            if key in NOT_CURVES or not _number(value):
                continue
            self.writer.add_scalar(metric_tag(key), value, step)
        self.writer.flush()  # an epoch's curves survive a kill, as its metrics line does

    def samples(self, records: list[dict], layers: list, weighted: list[int]) -> None:
        """Every diagnostics sample newer than the last one written (records are in step
        order; only the newest are new, so the scan stops at the first old one)."""
        new = []
        for record in reversed(records):
            if record["step"] <= self.last_sample_step:
                break
            new.append(record)
        for record in reversed(new):
            self._sample(record, layers, weighted)
            self.last_sample_step = record["step"]

    def _sample(self, record: dict, layers: list, weighted: list[int]) -> None:
        step = record["step"] + 1  # steps completed once the sampled update is done
        add = self.writer.add_scalar
        add("diagnostics/lr", record["lr"], step)
        if _number(record["global_grad_norm"]):
            add("diagnostics/global_grad_norm", record["global_grad_norm"], step)
        for index, layer in enumerate(layers):
            for name in LAYER_STATISTICS:
                value = float(record[name][index])
                if math.isfinite(value):  # NaN: a statistic this kind of layer does not have
                    add(f"layers/{name}/{layer.name}", value, step)
            self._histogram(layer.name, record["hist"][index], float(record["range"][index]),
                            step)
        for position, index in enumerate(weighted):
            for name in WEIGHT_STATISTICS:
                value = float(record[name][position])
                if math.isfinite(value):
                    add(f"layers/{name}/{layers[index].name}", value, step)

    def _histogram(self, name: str, counts: np.ndarray, half_range: float, step: int) -> None:
        """The diagnostics' fixed-bin histogram over [-range, range], as TensorBoard's raw
        histogram (sums from the bin centres)."""
        counts = np.asarray(counts, dtype=np.float64)
        total = float(counts.sum())
        if total <= 0 or not math.isfinite(half_range) or half_range <= 0:
            return
        edges = np.linspace(-half_range, half_range, len(counts) + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        self.writer.add_histogram_raw(
            f"histograms/{name}", min=float(edges[0]), max=float(edges[-1]), num=total,
            sum=float((counts * centres).sum()), sum_squares=float((counts * centres ** 2).sum()),
            bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(), global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)
