"""The report's pure helpers: confidence bands, labels, escaping, formats and the best run."""

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from cnnlab.errors import UserError
from cnnlab.experiments.compare import Results, analyse
from cnnlab.report import blocks
from cnnlab.report.blocks import Cell, Details, Figure, Paragraph, Section, Table
from cnnlab.metric_names import per_epoch_metric
from cnnlab.report.figures import mean_ci_band, metric_bounds, metric_label, plot_confusion, \
    plot_dot_and_ci, plot_image_grid, plot_learning_curves
from cnnlab.report.page import Context, best_run, output_format, read_lr_find
from cnnlab.report.render_html import render_html, sort_value, table_html
from cnnlab.report.render_markdown import escape as md_escape
from cnnlab.report.render_markdown import details_markdown, render_markdown, table_markdown
from cnnlab.report.sources import ReportInput

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------
# Confidence band of the learning curves


def test_band_matches_scipy_t_interval_per_epoch():
    series = [[0.50, 0.70, 0.80], [0.60, 0.72, 0.83], [0.55, 0.69, 0.86], [0.52, 0.75, 0.81]]
    band = mean_ci_band(series)
    assert band["epoch"].tolist() == [1, 2, 3]
    for epoch in range(3):
        values = np.array([s[epoch] for s in series])
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                     scale=stats.sem(values))
        assert band["mean"][epoch] == pytest.approx(values.mean())
        assert band["low"][epoch] == pytest.approx(low)
        assert band["high"][epoch] == pytest.approx(high)
        assert band["n"][epoch] == 4


def test_band_skips_missing_epochs_and_diverged_values():
    # Seed 2 stopped after one epoch, seed 3 diverged at epoch 2.
    band = mean_ci_band([[0.5, 0.6, 0.7], [0.7, 0.8, 0.9], [0.6], [0.4, None, float("nan")]])
    assert band["n"].tolist() == [4, 2, 2]
    assert band["mean"].tolist() == pytest.approx([0.55, 0.7, 0.8])


def test_band_with_one_seed_has_a_mean_but_no_interval():
    band = mean_ci_band([[0.3, 0.4]])
    assert band["mean"].tolist() == [0.3, 0.4]
    assert np.isnan(band["low"]).all() and np.isnan(band["high"]).all()


def test_band_of_nothing_is_empty():
    band = mean_ci_band([])
    assert len(band["epoch"]) == 0


# ------------------------------------------------------------------------------------------
# Labels and metric names


@pytest.mark.parametrize("metric, label", [
    ("val_acc", "validation accuracy (fraction)"),
    ("test_top5", "test top-5 accuracy (fraction)"),
    ("best_val_acc", "best validation accuracy (fraction)"),
    ("final_train_loss", "final training loss (cross-entropy)"),
    ("images_per_s", "images_per_s"),
])
def test_metric_label_names_the_split_and_the_unit(metric, label):
    assert metric_label(metric) == label


def test_metric_bounds():
    assert metric_bounds("val_acc") == (0.0, 1.0)
    assert metric_bounds("val_loss") == (0.0, math.inf)
    assert metric_bounds("lr") == (-math.inf, math.inf)


@pytest.mark.parametrize("metric, curve", [
    ("val_acc", "val_acc"), ("best_val_acc", "val_acc"), ("final_val_loss", "val_loss"),
    ("test_acc", "val_acc"), ("train_loss", "train_loss")])
def test_per_epoch_metric(metric, curve):
    assert per_epoch_metric(metric) == curve


# ------------------------------------------------------------------------------------------
# Cells, HTML and Markdown


def test_number_cells():
    assert blocks.number(None) == Cell("-", None)
    assert blocks.number(float("nan")) == Cell("-", None)
    assert blocks.number(float("inf")) == Cell("+inf", math.inf)
    assert blocks.number(3.0, "d") == Cell("3", 3.0)
    assert blocks.number(0.12345, "+.2f") == Cell("+0.12", 0.12345)
    assert blocks.interval([0.1, 0.2], ".2f") == Cell("[0.10, 0.20]", 0.1)
    assert blocks.interval([float("nan"), float("nan")]) == Cell("-", None)


def test_sort_values_are_what_javascript_parses():
    assert sort_value(None) == ""
    assert sort_value(float("nan")) == ""
    assert sort_value(float("inf")) == "Infinity"
    assert sort_value(-math.inf) == "-Infinity"
    assert float(sort_value(0.125)) == 0.125


def test_html_table_escapes_labels():
    label = 'model.init={name: normal} <script>alert("x")</script> & a<b'
    html = table_html(Table(["combination <&>", "mean"],
                            [[blocks.text(label), blocks.number(0.5)]], table_id="t"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; a&lt;b" in html
    assert "combination &lt;&amp;&gt;" in html
    assert 'class="sortable" id="t"' in html
    assert 'data-sort="0.5"' in html


def test_html_page_is_closed_to_the_network(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(PNG + b"rest")
    page = render_html("title <x>", "intro & more", [
        Section("results", "Results", [Paragraph("a < b"), Figure(image, 'alt "quoted"'),
                                       Details("config", "key: <value>")])])
    assert "default-src 'none'" in page  # the Content-Security-Policy
    assert '<section id="results">' in page and 'href="#results"' in page
    assert "data:image/png;base64," in page
    assert "<title>title &lt;x&gt;</title>" in page
    assert "a &lt; b" in page and "key: &lt;value&gt;" in page
    assert 'alt="alt &quot;quoted&quot;"' in page
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)


def test_markdown_escapes_what_would_become_markup():
    assert md_escape("kaiming_normal") == r"kaiming\_normal"
    assert md_escape("a|b") == r"a\|b"
    assert md_escape("<b>&[x]") == r"\<b\>\&\[x\]"
    assert md_escape("two\nlines") == "two lines"


def test_markdown_table_keeps_its_columns_with_pipes_in_labels():
    text = table_markdown(Table(["a", "b"], [[blocks.text("x|y"), blocks.number(1.0)]]))
    body = text.splitlines()[-1]
    assert len(re.findall(r"(?<!\\)\|", body)) == 3  # | cell | cell |


def test_markdown_details_fence_outlasts_backticks_in_the_code():
    text = details_markdown(Details("config", "a: ```b```"))
    assert "\n````yaml\n" in text and text.count("````") == 2


def test_markdown_figures_link_relative_to_the_file(tmp_path):
    folder = tmp_path / "my report_files"
    folder.mkdir()
    image = folder / "curve.png"
    image.write_bytes(PNG)
    text = render_markdown("t", "i", [Section("learning-curves", "Curves",
                                              [Figure(image, "a curve")])], tmp_path)
    assert '<a id="learning-curves"></a>' in text
    assert "![a curve](my%20report_files/curve.png)" in text


# ------------------------------------------------------------------------------------------
# Inputs checked before any work


@pytest.mark.parametrize("name", ["report.pdf", "report", "report.htm"])
def test_other_output_suffixes_are_refused(name, tmp_path):
    with pytest.raises(UserError, match=r"\.html.*\.md"):
        output_format(tmp_path / name)


def test_output_suffixes_accepted(tmp_path):
    assert output_format(tmp_path / "r.html") == ".html"
    assert output_format(tmp_path / "R.MD") == ".md"


def test_lr_find_file_must_be_lr_find_json(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_lr_find(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(UserError, match="not JSON"):
        read_lr_find(bad)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"lrs": [1e-3]}))
    with pytest.raises(UserError, match="lacks losses"):
        read_lr_find(partial)


# ------------------------------------------------------------------------------------------
# The best run


def _context(metric: str, cells: dict) -> Context:
    results = Results(metric, ["optim.lr"], {"optim.lr": ["0.1", "0.01", "1.0"]}, cells=cells)
    source = ReportInput(results, "runs", "t", None, "")
    return Context(source, analyse(results), None, None)


def test_best_run_takes_the_best_mean_then_its_best_seed():
    context = _context("val_acc", {("0.1",): {0: 0.90, 1: 0.92},
                                   ("0.01",): {0: 0.95, 1: 0.93},
                                   ("1.0",): {0: 0.99, 1: None}})  # one lucky, one diverged
    best = best_run(context)
    assert (best.key, best.seed, best.value) == (("1.0",), 0, 0.99)
    context = _context("val_acc", {("0.1",): {0: 0.90, 1: 0.92},
                                   ("0.01",): {0: 0.95, 1: 0.93}})
    best = best_run(context)
    assert (best.key, best.seed) == (("0.01",), 0)


def test_best_run_respects_a_metric_to_minimize():
    context = _context("val_loss", {("0.1",): {0: 0.30, 1: 0.20},
                                    ("0.01",): {0: 0.50, 1: 0.40}})
    best = best_run(context)
    assert (best.key, best.seed, best.value) == (("0.1",), 1, 0.20)


def test_no_best_run_when_everything_diverged():
    assert best_run(_context("val_acc", {("0.1",): {0: None}})) is None


# ------------------------------------------------------------------------------------------
# Figures from plain numbers


def test_figures_are_pngs(tmp_path):
    paths = [
        plot_learning_curves([("a<b", [[0.5, 0.7], [0.6, 0.9]]), ("c", [[0.4, 0.6]])],
                             "val_acc", tmp_path / "curves.png"),
        plot_dot_and_ci([{"label": "a", "value": 0.9, "ci": [0.85, 0.95], "dots": [0.88, None]},
                         {"label": "b", "value": float("nan"), "ci": None}],
                        "validation accuracy (fraction)", "t", tmp_path / "dots.png"),
        plot_confusion(np.array([[3, 1], [0, 4]]), ["cat", "dog"], "t", tmp_path / "cm.png"),
        plot_image_grid(np.zeros((3, 3, 8, 8), np.uint8), ["x", "y", "z"], tmp_path / "g.png"),
        plot_image_grid(np.zeros((2, 1, 8, 8), np.uint8), ["x", "y"], tmp_path / "h.png"),
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG)


def test_a_missing_study_storage_is_reported_and_not_created(tmp_path):
    from cnnlab.report.page import build_report

    journal = tmp_path / "nowhere" / "s.journal"
    with pytest.raises(UserError, match="does not exist"):
        build_report(["tiny"], tmp_path / "r.html", storage=str(journal))
    assert not journal.parent.exists()
    assert not (tmp_path / "r.html").exists()


def test_a_search_study_points_to_its_run_folders(tmp_path):
    import optuna

    from cnnlab.experiments.store import open_storage
    from cnnlab.report.page import build_report

    journal = tmp_path / "s.journal"
    study = optuna.create_study(study_name="wide", storage=open_storage(str(journal)))
    study.set_user_attr("kind", "search")
    study.set_user_attr("runs_root", "runs")
    with pytest.raises(UserError, match=r"search.*runs/wide"):
        build_report(["wide"], tmp_path / "r.html", storage=str(journal))


def test_histograms_of_ranges_far_narrower_than_the_widest_map_onto_the_middle_bins():
    from cnnlab.diagnostics import BINS
    from cnnlab.report.diagnostics_plots import _common_grid

    counts = np.zeros((4, BINS))
    counts[:, BINS // 2 - 1] = 5.0
    counts[:, BINS // 2] = 3.0
    # Ranges 1, 2, 2**6 and 2**10: an exploding layer whose early samples are 1,024x narrower.
    grid, widest = _common_grid(counts, np.array([1.0, 2.0, 64.0, 1024.0]))
    assert widest == 1024.0
    assert (grid.sum(axis=1) == 8.0).all()  # every count lands somewhere
    assert grid[3, BINS // 2 - 1] == 5.0 and grid[3, BINS // 2] == 3.0  # the widest: as it was
    # 1,024x narrower: one of the two bins that meet at zero.
    assert grid[0].nonzero()[0].tolist() in ([BINS // 2 - 1], [BINS // 2])
