"""Diagnostics over training: activation std, gradient norms, histograms, update ratios."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np

from cnnlab.diagnostics import BINS
from cnnlab.report.style import figure, integer_ticks, save
from cnnlab.rundir import RunDir

import matplotlib.pyplot as plt  # noqa: E402  (after style set the backend)


def _load(run_dir: Path) -> dict:
    with np.load(RunDir.at(run_dir).diagnostics_path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _depth_colors(count: int):
    # Depth as a sequential, colour-blind-safe map: early layers dark, late layers light.
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(count - 1, 1)) for i in range(count)]


def _lines(axis, steps, values, names, ylabel, title, log=True):
    colors = _depth_colors(values.shape[1])
    for index in range(values.shape[1]):
        axis.plot(steps, values[:, index], color=colors[index], linewidth=1,
                  label=names[index] if index in (0, values.shape[1] - 1) else None)
    axis.set(xlabel="optimizer step", ylabel=ylabel, title=title)
    integer_ticks(axis.xaxis)
    if log:
        axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend(title="depth: first ... last", fontsize=7)


def plot_diagnostics(run_dir: Path, out_dir: Path, max_heatmaps: int = 12) -> list[Path]:
    data = _load(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = data["step"]
    names = data["layer_names"].tolist()
    kinds = data["layer_kinds"].tolist()
    weighted = data["weighted_names"].tolist()
    written = []

    fig, axes = figure(width=7.5, height=4.0)
    chosen = [i for i, k in enumerate(kinds) if k in ("conv", "linear")]
    _lines(axes[0][0], steps, data["std"][:, chosen], [names[i] for i in chosen],
           "std of layer output", "activation std per layer (conv and linear outputs)")
    save(fig, out_dir / "activation_std.png")
    written.append(out_dir / "activation_std.png")

    fig, axes = figure(width=7.5, height=4.0)
    _lines(axes[0][0], steps, np.maximum(data["grad_norm"], 1e-30), weighted,
           "weight-gradient norm", "gradient norm per layer")
    save(fig, out_dir / "grad_norm.png")
    written.append(out_dir / "grad_norm.png")

    fig, axes = figure(width=7.5, height=4.0)
    axis = axes[0][0]
    _lines(axis, steps, np.maximum(data["update_ratio"], 1e-30), weighted, "|dw| / |w|",
           "update-to-weight ratio per layer (usual ~1e-3; alarms outside 1e-5..1e-1)")
    axis.axhspan(1e-5, 1e-1, color="#009E73", alpha=0.08)
    save(fig, out_dir / "update_ratio.png")
    written.append(out_dir / "update_ratio.png")

    written.append(plot_histograms(data, out_dir / "histograms.png", max_heatmaps))
    return written


def _common_grid(hist: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, float]:
    """Map each sample's histogram (its own power-of-two range) onto the widest range."""
    widest = float(np.nanmax(ranges)) if len(ranges) else 1.0
    grid = np.zeros_like(hist)
    for sample, (counts, bound) in enumerate(zip(hist, ranges)):
        if bound <= 0 or not math.isfinite(bound):
            continue
        shrink = int(round(math.log2(widest / bound)))  # this range is widest / 2**shrink
        if 2**shrink >= BINS:
            # A range 64x or more narrower than the widest (a run that exploded later): the
            # whole histogram falls within the middle bin of the common grid.
            merged = counts.sum(keepdims=True)
        else:
            merged = counts.reshape(-1, 2**shrink).sum(axis=1) if shrink else counts
        start = (BINS - len(merged)) // 2
        grid[sample, start:start + len(merged)] = merged
    return grid, widest


def plot_histograms(data: dict, path: Path, max_heatmaps: int = 12) -> Path:
    """The "colorful dimension": for each layer, its output histogram (signed range, log counts)
    as a column per sample, over time."""
    names, kinds = data["layer_names"].tolist(), data["layer_kinds"].tolist()
    chosen = [i for i, k in enumerate(kinds) if k == "activation"] or list(range(len(names)))
    if len(chosen) > max_heatmaps:
        picks = np.linspace(0, len(chosen) - 1, max_heatmaps).round().astype(int)
        chosen = [chosen[i] for i in picks]
    columns = min(3, len(chosen))
    rows = math.ceil(len(chosen) / columns)
    fig, axes = figure(columns=columns, rows=rows, width=4.0, height=2.6)
    steps = data["step"]
    for slot, index in enumerate(chosen):
        axis = axes[slot // columns][slot % columns]
        grid, widest = _common_grid(data["hist"][:, index], data["range"][:, index])
        extent = [steps[0] if len(steps) else 0, steps[-1] if len(steps) else 1, -widest, widest]
        image = axis.imshow(grid.T + 1, aspect="auto", origin="lower", extent=extent,
                            cmap="viridis", norm=mcolors.LogNorm())
        axis.set(title=names[index], xlabel="optimizer step", ylabel="output value")
        integer_ticks(axis.xaxis)
        fig.colorbar(image, ax=axis, label="count + 1")
    for slot in range(len(chosen), rows * columns):
        axes[slot // columns][slot % columns].axis("off")
    save(fig, path)
    return path
