"""The report's own figures: learning curves, final metric, effects, confusion matrix, worst images.

Each plotting function takes plain numbers (lists, numpy arrays) and a path, so it can be tested
and reused without a study or a run folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.special import stdtrit

from cnnlab.metric_names import metric_bounds, metric_label
from cnnlab.report.style import PALETTE, color, figure, integer_ticks, save

_LINESTYLES = ["-", "--", ":", "-."]

def line_style(index: int) -> dict:
    """Colour from the Okabe-Ito palette; past its eight colours the dash pattern changes, so
    two combinations never share a look."""
    return {"color": color(index), "linestyle": _LINESTYLES[(index // len(PALETTE)) % 4]}


def mean_ci_band(series: list[list[float | None]], confidence: float = 0.95) -> dict:
    """Per epoch, the mean over seeds and a Student-t confidence interval of that mean.

    `series` holds one per-epoch list per seed; lists may differ in length (a run that stopped
    early) and hold None or non-finite values (a diverged epoch), which are left out of that
    epoch. With one value at an epoch there is no interval (nan). The t interval is used rather
    than a bootstrap because with 2-5 seeds a bootstrap's interval is far too narrow.
    Returns numpy arrays `epoch` (1-based), `mean`, `low`, `high` and `n`.
    """
    length = max((len(s) for s in series), default=0)
    mean = np.full(length, np.nan)
    low = np.full(length, np.nan)
    high = np.full(length, np.nan)
    count = np.zeros(length, dtype=int)
    for epoch in range(length):
        values = np.asarray([float(s[epoch]) for s in series if len(s) > epoch
                             and s[epoch] is not None and math.isfinite(float(s[epoch]))])
        count[epoch] = values.size
        if values.size == 0:
            continue
        mean[epoch] = values.mean()
        if values.size >= 2:
            half = (stdtrit(values.size - 1, (1 + confidence) / 2)
                    * values.std(ddof=1) / math.sqrt(values.size))
            low[epoch], high[epoch] = mean[epoch] - half, mean[epoch] + half
    return {"epoch": np.arange(1, length + 1), "mean": mean, "low": low, "high": high,
            "n": count}


def _legend_below(fig, axis) -> None:
    # Below the plot, so long combination labels never cover a curve; as many columns as fit
    # the figure's width (about 110 characters at this font size).
    handles, labels = axis.get_legend_handles_labels()
    longest = max((len(label) for label in labels), default=1)
    columns = max(1, min(len(labels), 110 // (longest + 6)))
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=columns)


def plot_learning_curves(curves: list[tuple[str, list[list[float | None]]]], metric: str,
                         path: str | Path) -> Path:
    """One line per combination: the mean over seeds per epoch, with its 95% band."""
    fig, axes = figure(width=8.0, height=4.2 + 0.22 * len(curves))
    axis = axes[0][0]
    low_bound, high_bound = metric_bounds(metric)
    for index, (label, series) in enumerate(curves):
        band = mean_ci_band(series)
        # With two or three seeds a t-interval can pass 1.0 for an accuracy; the band is cut
        # at what the metric can reach, so the axis keeps the curves readable.
        band["low"] = np.clip(band["low"], low_bound, high_bound)
        band["high"] = np.clip(band["high"], low_bound, high_bound)
        style = line_style(index)
        seeds = max(band["n"], default=0)
        axis.plot(band["epoch"], band["mean"], marker="o" if len(band["epoch"]) <= 12 else None,
                  markersize=4, label=f"{label} (n={seeds})", **style)
        if np.isfinite(band["low"]).any():
            axis.fill_between(band["epoch"], band["low"], band["high"], color=style["color"],
                              alpha=0.15, linewidth=0)
    axis.set(xlabel="epoch", ylabel=metric_label(metric),
             title=f"{metric} per epoch: mean over seeds, 95% t-interval band")
    integer_ticks(axis.xaxis)
    axis.grid(True, alpha=0.3)
    _legend_below(fig, axis)
    save(fig, path)
    return Path(path)


def plot_train_val_loss(train: list[float | None], val: list[float | None],
                        path: str | Path) -> Path:
    """One run's training and validation loss per epoch: the gap between them is overfitting,
    both flat and high is underfitting."""
    fig, axes = figure(width=8.0, height=4.2)
    axis = axes[0][0]
    for index, (label, values) in enumerate((("training loss", train),
                                             ("validation loss", val))):
        points = [(epoch, v) for epoch, v in enumerate(values, start=1)
                  if v is not None and math.isfinite(float(v))]
        if points:
            axis.plot(*zip(*points), marker="o" if len(points) <= 12 else None, markersize=4,
                      label=label, **line_style(index))
    axis.set(xlabel="epoch", ylabel="loss (cross-entropy)",
             title="training and validation loss per epoch")
    integer_ticks(axis.xaxis)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    save(fig, path)
    return Path(path)


def _spread(count: int, width: float = 0.3) -> np.ndarray:
    """Fixed vertical offsets for a row's seed dots, so overlapping values stay visible
    (deterministic, unlike random jitter, so a report rebuilt from the same data is the same)."""
    if count <= 1:
        return np.zeros(count)
    return np.linspace(-width / 2, width / 2, count)


def plot_dot_and_ci(items: list[dict], xlabel: str, title: str, path: str | Path,
                    zero_line: bool = False) -> Path:
    """One row per item: its estimate with a CI as an error bar, and optional raw dots.

    Each item is {"label", "value", "ci": [low, high] or None, "dots": [values] (optional)}.
    The first item is on top, as in the tables.
    """
    fig, axes = figure(width=8.0, height=1.4 + 0.45 * max(len(items), 1))
    axis = axes[0][0]
    for row, item in enumerate(items):
        dots = [d for d in item.get("dots", []) if d is not None and math.isfinite(d)]
        if dots:
            axis.plot(dots, row + _spread(len(dots)), "o", color=color(5), alpha=0.7,
                      markersize=5, label="one seed" if row == 0 else None)
        value, ci = item["value"], item.get("ci")
        if value is None or not math.isfinite(value):
            continue
        error = None
        if ci and ci[0] is not None and math.isfinite(ci[0]) and math.isfinite(ci[1]):
            error = [[max(value - ci[0], 0.0)], [max(ci[1] - value, 0.0)]]
        axis.errorbar([value], [row], xerr=error, fmt="D", color=color(0), capsize=4,
                      markersize=6, label="mean and 95% CI" if row == 0 else None)
    if zero_line:
        axis.axvline(0.0, color=color(7), linewidth=1, linestyle="--", label="no effect")
    axis.set_yticks(range(len(items)), [item["label"] for item in items], fontsize=8)
    axis.set_ylim(len(items) - 0.5, -0.5)  # first item on top
    axis.set(xlabel=xlabel, ylabel="combination" if not zero_line else "effect", title=title)
    axis.grid(True, axis="x", alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles))
        axis.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    save(fig, path)
    return Path(path)


def plot_confusion(matrix: np.ndarray, classes: list[str], title: str, path: str | Path) -> Path:
    """Counts of (true, predicted) test images; a sequential map so darker never means 'less
    wrong' in one corner and 'more' in another."""
    count = len(classes)
    side = min(3.2 + 0.3 * count, 12.0)
    fig, axes = figure(width=side + 1.2, height=side)
    axis = axes[0][0]
    image = axis.imshow(matrix, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=axis, label="test images", shrink=0.8)
    if count <= 40:
        axis.set_xticks(range(count), classes, rotation=90 if count > 10 else 0, fontsize=8)
        axis.set_yticks(range(count), classes, fontsize=8)
    if count <= 15:
        threshold = matrix.max() / 2 if matrix.size else 0
        for true in range(count):
            for predicted in range(count):
                value = int(matrix[true, predicted])
                axis.text(predicted, true, str(value), ha="center", va="center", fontsize=7,
                          color="black" if value > threshold else "white")
    axis.set(xlabel="predicted class", ylabel="true class", title=title)
    save(fig, path)
    return Path(path)


def plot_image_grid(images: np.ndarray, titles: list[str], path: str | Path,
                    columns: int = 4) -> Path:
    """uint8 images (N x C x H x W) in a grid, each with its title (true / predicted / loss)."""
    count = len(images)
    rows = max(1, math.ceil(count / columns))
    fig, axes = figure(columns=columns, rows=rows, width=2.3, height=2.5)
    for slot in range(rows * columns):
        axis = axes[slot // columns][slot % columns]
        axis.axis("off")  # thumbnails: pixel axes carry no information
        if slot >= count:
            continue
        picture = images[slot]
        if picture.shape[0] == 3:
            axis.imshow(np.transpose(picture, (1, 2, 0)), interpolation="nearest")
        else:
            axis.imshow(picture[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axis.set_title(titles[slot], fontsize=8)
    save(fig, path)
    return Path(path)
