"""The schedule preview and the LR range-test curve."""

from __future__ import annotations

import math
from pathlib import Path

from cnnlab.report.style import color, figure, integer_ticks, save


def plot_schedule(trace: dict, path: str | Path) -> Path:
    rows = 2 if trace["momentum"] else 1
    fig, axes = figure(rows=rows, width=7.0, height=3.2)
    steps = range(len(trace["lr"]))
    lr_axis = axes[0][0]
    lr_axis.plot(steps, trace["lr"], color=color(0), label="learning rate")
    lr_axis.set(title=f"schedule {trace['name']}: {trace['total_steps']} optimizer steps, "
                      f"{trace['steps_per_epoch']} per epoch",
                xlabel="optimizer step", ylabel="learning rate")
    marks = []
    if trace["warmup_steps"]:
        marks.append((trace["warmup_steps"], "warmup end"))
    marks += [(step, "restart") for step in trace["restarts"]]
    if trace.get("swa_start") is not None:
        marks.append((trace["swa_start"], "weight averaging starts"))
    mark_colors = {"warmup end": 1, "restart": 3, "weight averaging starts": 4}
    for step, label in marks:
        for index, row in enumerate(axes):
            # Labelled on the top axis; the legend below keeps one entry per label.
            row[0].axvline(step, color=color(mark_colors[label]), linestyle="--", linewidth=1,
                           label=label if index == 0 else None)
    if trace["momentum"]:
        axes[1][0].plot(steps, trace["momentum"], color=color(2))
        axes[1][0].set(xlabel="optimizer step", ylabel="momentum (or Adam beta1)")
    handles, labels = lr_axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    lr_axis.legend(unique.values(), unique.keys(), fontsize=8)
    for row in axes:
        row[0].grid(True, alpha=0.3)
        integer_ticks(row[0].xaxis)
    save(fig, path)
    return Path(path)


def plot_lr_find(result: dict, path: str | Path) -> Path:
    fig, axes = figure(width=7.0, height=4.0)
    axis = axes[0][0]
    axis.plot(result["lrs"], result["losses"], color=color(5), alpha=0.5, linewidth=1,
              label=f"{result['curve']} per step")
    axis.plot(result["lrs"], result["smoothed"], color=color(0), label="smoothed (EMA 0.98)")
    markers = {"valley": "o", "steep": "s", "minimum": "^"}
    for index, (name, lr) in enumerate(result["suggestions"].items()):
        if lr is None:
            continue
        position = min(range(len(result["lrs"])), key=lambda i: abs(result["lrs"][i] - lr))
        axis.plot([lr], [result["smoothed"][position]], markers[name], color=color(index + 1),
                  markersize=9, label=f"{name}: {lr:.2g}")
    finite = [v for v in result["smoothed"] + result["losses"] if math.isfinite(v)]
    if finite:
        low = min(finite)
        axis.set_ylim(low * 0.9, min(max(finite), 4 * min(result["smoothed"])) * 1.1)
    axis.set(xscale="log", xlabel="learning rate (log scale)", ylabel="loss (cross-entropy)",
             title=f"LR range test: {result['mode']} sweep, stopped: {result['stopped']}")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    save(fig, path)
    return Path(path)
