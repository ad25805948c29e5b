"""Std against depth at init, forward and backward, one line per config."""

from __future__ import annotations

from pathlib import Path

from cnnlab.report.style import color, figure, integer_ticks, save


def plot_propagation(reports: list[dict], path: str | Path) -> Path:
    fig, axes = figure(columns=2, width=5.5, height=4.0 + 0.25 * len(reports))
    forward, backward = axes[0]
    for index, report in enumerate(reports):
        layers = [layer for layer in report["layers"] if layer["kind"] in ("conv", "linear")]
        depth = list(range(1, len(layers) + 1))
        label = _label(report)
        forward.plot(depth, [max(layer["std"], 1e-30) for layer in layers], marker="o",
                     markersize=3, color=color(index), label=label)
        # The backward panel shows what the verdict judges: the per-sample gradient norm, which
        # does not shrink with the number of positions a layer has (reports written before it
        # existed fall back to the per-element std).
        grads = [(d, layer.get("grad_norm", layer["grad_std"])) for d, layer in zip(depth, layers)
                 if layer.get("grad_norm", layer["grad_std"])]
        if grads:
            backward.plot(*zip(*grads), marker="o", markersize=3, color=color(index), label=label)
    forward.set(title="forward: output std of each weight layer", xlabel="depth (weight layer)",
                ylabel="std of output", yscale="log")
    backward.set(title="backward: per-sample gradient norm at the output",
                 xlabel="depth (weight layer)", ylabel="gradient norm per sample", yscale="log")
    for axis in (forward, backward):
        axis.grid(True, which="both", alpha=0.3)
        integer_ticks(axis.xaxis)
    # One legend for both panels, below them, so it never hides a curve.
    fig.legend(*forward.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
               ncols=1 if len(reports) > 3 else len(reports))
    save(fig, path)
    return Path(path)


def _label(report: dict) -> str:
    return (f"{report['name']} [{report['arch']}, {report['init']}, {report['activation']}, "
            f"norm {report['norm']}]: {report['verdict']}")
