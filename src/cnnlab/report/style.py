"""One look for every figure: a colour-blind-safe palette (Okabe & Ito 2008) and labelled axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed

import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000"]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def figure(columns: int = 1, rows: int = 1, width: float = 6.0, height: float = 4.0):
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                             squeeze=False, constrained_layout=True)
    return fig, axes


def save(fig, path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
