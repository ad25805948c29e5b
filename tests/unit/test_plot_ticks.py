"""Counted axes have whole-number ticks and every tick label is a plain number (issue 15,
item 16)."""

import pytest

from cnnlab.report import figures, lr_plots, propagation_plot, style


@pytest.fixture
def saved(monkeypatch):
    """The figures the plotting functions save, inspected after they were drawn."""
    figs = []

    def keep(fig, path):
        style.save(fig, path)
        figs.append(fig)

    for module in (figures, lr_plots, propagation_plot):
        monkeypatch.setattr(module, "save", keep)
    return figs


def labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_majorticklabels() + axis.get_minorticklabels()]


def assert_plain(fig, integer_axes=("epoch", "optimizer step", "depth (weight layer)")):
    for ax in fig.axes:
        for axis, name in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            texts = [t for t in labels(axis) if t]
            assert texts, name
            assert not any("10^" in t or "times" in t or "\u00d7" in t for t in texts), texts
            assert axis.get_offset_text().get_text() == "", name
            if name in integer_axes:
                low, high = sorted(axis.get_view_interval())
                shown = [v for v in axis.get_majorticklocs() if low <= v <= high]
                assert shown and all(float(v).is_integer() for v in shown), (name, shown)


def test_depth_ticks_are_layers_and_a_narrow_log_axis_reads_plainly(saved, tmp_path):
    layers = [{"kind": "conv", "std": s, "grad_std": g}
              for s, g in ((1.1, 1.5), (1.3, 1.4), (1.45, 1.3), (1.6, 1.2))]
    report = {"layers": layers, "name": "x", "arch": "plain", "init": "kaiming_normal",
              "activation": "relu", "norm": "none", "verdict": "healthy"}
    propagation_plot.plot_propagation([report], tmp_path / "p.png")
    assert_plain(saved[0])


def test_schedule_steps_are_whole_numbers_and_lr_has_no_offset(saved, tmp_path):
    trace = {"lr": [1.0001, 1.0002, 1.0003, 1.0004], "momentum": [], "name": "linear",
             "total_steps": 4, "steps_per_epoch": 2, "warmup_steps": 0, "restarts": []}
    lr_plots.plot_schedule(trace, tmp_path / "s.png")
    assert_plain(saved[0])


def test_learning_curves_and_the_loss_figure_count_epochs_in_whole_numbers(saved, tmp_path):
    figures.plot_learning_curves([("a", [[0.5, 0.6, 0.7]])], "val_acc", tmp_path / "c.png")
    figures.plot_train_val_loss([1.0, 0.8, 0.7], [1.1, 0.9, None], tmp_path / "l.png")
    for fig in saved:
        assert_plain(fig)
    lines = {line.get_label(): line.get_ydata().tolist() for line in saved[1].axes[0].lines}
    assert lines == {"training loss": [1.0, 0.8, 0.7], "validation loss": [1.1, 0.9]}
