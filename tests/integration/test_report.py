"""`build_report` on a real (tiny) study: every section present with its figures, a page that
needs nothing but itself, Markdown with its PNGs beside it, and the page in a real browser."""

import base64
import re
from pathlib import Path

import pytest

from cnnlab.experiments.design import run_dir
from cnnlab.report.page import SECTION_IDS, build_report
from tests.conftest import ROOT, cli

QUICKSTART = ROOT / "examples" / "quickstart.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]
IMG = '<img src="data:image/png;base64,'
COMBINATIONS = ["model.activation=relu,optim.lr=0.05", "model.activation=relu,optim.lr=0.02",
                "model.activation=gelu,optim.lr=0.05", "model.activation=gelu,optim.lr=0.02"]
# Sections that are a table or text only; every other one must carry a figure.
WITHOUT_FIGURES = {"what-was-run", "results"}
SINGLE_RUN_SECTIONS = ["what-was-run", "learning-curves", "lr-schedule", "init-signal",
                       "diagnostics", "errors-of-best-run"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """2 activations x 2 learning rates x 2 seeds, 2 epochs each, with diagnostics; and an
    LR-finder JSON. Built once: it is most of this module's time."""
    folder = tmp_path_factory.mktemp("report-study")
    env = {"CNNLAB_CACHE": str(folder / "cache")}
    cli("ablate", str(QUICKSTART), "-o", "train.epochs=2", "-o", "diagnostics.every=5",
        "--vary", "model.activation=relu,gelu", "--vary", "optim.lr=0.05,0.02", "--seeds", "2",
        "--storage", str(folder / "s.journal"), "--study", "tiny", "--runs",
        str(folder / "runs"), "--quiet", cwd=folder, check=True, env=env)
    found = cli("lr-find", str(QUICKSTART), "--steps", "20", "--json", cwd=folder, check=True,
                env=env)
    (folder / "lr.json").write_text(found.stdout)
    return folder


def run_folder(study: Path, combination: str, seed: int = 0) -> Path:
    folder = run_dir(study / "runs", "tiny", combination, seed)
    assert (folder / "summary.json").exists(), folder
    return folder


@pytest.fixture(scope="module")
def html_report(study) -> Path:
    return build_report(["tiny"], study / "out" / "report.html",
                        storage=str(study / "s.journal"), lr_find=study / "lr.json")


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', page)


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match, f"section {section_id} is missing"
    return match.group(1)


def table_rows(page: str, table_id: str) -> list[str]:
    match = re.search(rf'<table[^>]*id="{table_id}"[^>]*>.*?<tbody>(.*?)</tbody>', page, re.S)
    assert match, f"table {table_id} is missing"
    return re.findall(r"<tr>.*?</tr>", match.group(1), re.S)


def test_html_report_of_a_study_has_every_section_with_its_figures(html_report):
    page = html_report.read_text()
    assert section_ids(page) == list(SECTION_IDS)  # all nine, in order
    for section_id in SECTION_IDS:
        body = section(page, section_id)
        if section_id not in WITHOUT_FIGURES:
            assert IMG in body, f"section {section_id} has no embedded figure"
    # The range test and the schedule preview are two figures of one section.
    assert section(page, "lr-schedule").count(IMG) == 2
    # Four diagnostics figures, and the confusion matrix plus the highest-loss images.
    assert section(page, "diagnostics").count(IMG) == 4
    assert section(page, "errors-of-best-run").count(IMG) == 2
    # The embedded figures are PNGs.
    for encoded in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")
    what = section(page, "what-was-run")
    assert len(table_rows(what, "environment-table")) == 1  # versions, from environment.json
    assert "<details>" in what and "base config" in what


def test_html_report_is_self_contained(html_report):
    page = html_report.read_text()
    assert 'src="http' not in page and 'href="http' not in page
    assert not re.search(r"https?://", page), "the page names an outside URL"
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:|#)', page), "a link to another file"
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<style>" in page and "<script>" in page  # CSS and the sort script are inline


def test_results_table_has_one_row_per_combination(html_report):
    page = html_report.read_text()
    rows = table_rows(page, "results-table")
    assert len(rows) == len(COMBINATIONS)
    labels = [re.search(r"<td>(.*?)</td>", row).group(1) for row in rows]
    assert sorted(labels) == sorted(COMBINATIONS)
    assert labels[0] == COMBINATIONS[0]  # the baseline first
    assert 'class="sortable" id="results-table"' in page
    assert len(table_rows(page, "runs-table")) == 8  # 4 combinations x 2 seeds
    assert len(table_rows(page, "effects-table")) == 3  # 2 main effects, 1 interaction


def test_markdown_report_of_two_run_folders_with_pngs_beside_it(study):
    runs = [run_folder(study, COMBINATIONS[0]), run_folder(study, COMBINATIONS[2])]
    out = build_report([str(r) for r in runs], study / "md" / "two.md")
    text = out.read_text()
    anchors = re.findall(r'<a id="([^"]+)"></a>', text)
    assert anchors == ["what-was-run", "results", "learning-curves", "final-metric",
                       "lr-schedule", "init-signal", "diagnostics", "errors-of-best-run"]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all(link.startswith("two_files/") for link in links)
    for link in links:
        assert (out.parent / link).read_bytes().startswith(b"\x89PNG")
    written = {p.relative_to(out.parent).as_posix()
               for p in (out.parent / "two_files").rglob("*.png")}
    assert written == set(links)  # every PNG beside it is referenced, and nothing else
    assert "| model.activation.name=relu |" in text  # the results table, one row each
    assert "| model.activation.name=gelu |" in text


def test_report_of_one_run_folder_has_no_statistics(study):
    run = run_folder(study, COMBINATIONS[3], seed=1)
    page = build_report([str(run)], study / "one" / "one.html").read_text()
    assert section_ids(page) == SINGLE_RUN_SECTIONS
    for section_id in SINGLE_RUN_SECTIONS[1:]:
        assert IMG in section(page, section_id), section_id
    assert str(run) in section(page, "errors-of-best-run")
    curves = section(page, "learning-curves")  # the accuracy curve and the run's two losses
    assert curves.count(IMG) == 2 and "training and validation loss per epoch" in curves


def test_report_cli_shows_the_chosen_runs_diagnostics_and_says_what_was_run(study):
    other = run_folder(study, COMBINATIONS[1], seed=1)
    out = study / "cli" / "chosen.html"
    result = cli("report", "tiny", "--storage", str(study / "s.journal"), "--out", str(out),
                 "--diagnostics-run", str(other), cwd=study, check=True)
    assert result.stdout.strip() == f"report: {out}"
    page = out.read_text()
    assert str(other) in section(page, "diagnostics")
    what = section(page, "what-was-run")
    assert "8 finished runs: 4 combinations x 2 seeds (0, 1)." in what
    factors = re.findall(r"<tr>.*?</tr>", what.split("Config keys that differ")[1], re.S)
    assert any("model.activation" in row and "relu, gelu" in row for row in factors)
    assert any("optim.lr" in row and "0.05, 0.02" in row for row in factors)
    missing = cli("report", "tiny", "--storage", str(study / "s.journal"), "--out",
                  str(study / "cli" / "x.html"), "--diagnostics-run", str(study), cwd=study)
    assert missing.returncode == 2 and "--diagnostics-run" in missing.stderr


def test_every_report_figure_labels_its_axes(study, monkeypatch):
    import importlib

    from cnnlab.report import style

    unlabelled = []

    def checking(fig, path, *args, **kwargs):
        for axis in fig.axes:
            # Colour bars carry their label on the bar; image tiles turn their axes off.
            if axis.get_label() == "<colorbar>" or not axis.axison:
                continue
            if not (axis.get_xlabel() and axis.get_ylabel()):
                unlabelled.append(f"{Path(path).name}: {axis.get_title()!r}")
        return style.save(fig, path, *args, **kwargs)

    for name in ("diagnostics_plots", "figures", "lr_plots", "propagation_plot"):
        monkeypatch.setattr(importlib.import_module(f"cnnlab.report.{name}"), "save", checking)
    build_report(["tiny"], study / "labels" / "r.html", storage=str(study / "s.journal"),
                 lr_find=study / "lr.json")
    assert unlabelled == []


def test_report_page_in_headless_chromium(html_report, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package drives the browser (pip install "
                                      "playwright; the system Chromium is used, no download)")
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    errors, failed, outside = [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("request", lambda request: outside.append(request.url)
                    if not request.url.startswith(("file:", "data:")) else None)
            page.goto(html_report.as_uri(), wait_until="load")
            assert page.evaluate("Array.from(document.images).length") >= 12
            assert page.evaluate(
                "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")

            def column(index: int) -> list:
                return page.eval_on_selector_all(
                    f"#results-table tbody tr td:nth-child({index})",
                    "cells => cells.map(c => c.getAttribute('data-sort') ?? c.textContent)")

            labels = column(1)
            header = page.locator("#results-table thead th", has_text="mean").first
            header.click()
            means = [float(v) for v in column(3)]
            assert means == sorted(means)
            assert header.get_attribute("aria-sort") == "ascending"
            header.click()
            means = [float(v) for v in column(3)]
            assert means == sorted(means, reverse=True)
            assert sorted(column(1)) == sorted(labels)  # rows moved, none lost
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == [] and failed == [] and outside == []
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
