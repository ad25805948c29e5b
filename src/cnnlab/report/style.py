"""One look for every figure: a colour-blind-safe palette (Okabe & Ito 2008) and labelled axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, \
    ScalarFormatter  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000"]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def figure(columns: int = 1, rows: int = 1, width: float = 6.0, height: float = 4.0):
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                             squeeze=False, constrained_layout=True)
    return fig, axes


def integer_ticks(axis) -> None:
    """Ticks only at whole numbers, for counted axes (epochs, steps, layers)."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _plain(value: float, _position=None) -> str:
    return f"{value:g}"


def plain_tick_labels(fig) -> None:
    """Tick labels as plain numbers: no offset (`+1.37`), no `x10^-3` above the axis, and on a
    log axis no `1.375x10^0`; a log axis spanning under a decade labels its minor ticks too,
    else it would show one label or none."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                low, high = sorted(abs(v) for v in axis.get_view_interval())
                axis.set_major_formatter(FuncFormatter(_plain))
                narrow = low > 0 and high / low < 10
                axis.set_minor_formatter(FuncFormatter(_plain) if narrow else NullFormatter())
            elif isinstance(axis.get_major_formatter(), ScalarFormatter):
                axis.get_major_formatter().set_useOffset(False)
                axis.get_major_formatter().set_scientific(False)


def save(fig, path) -> None:
    plain_tick_labels(fig)
    fig.savefig(path, dpi=110)
    plt.close(fig)
