"""`cnnlab report`: one page with what was run, what won, and the evidence behind it.

The report reads a study or run folders and trains nothing. The only computation on a model is
cheap: the signal at initialisation (one batch forward and backward) and one pass of the best
run's saved weights over the test split. Sections appear only when their data exists; each has a
fixed id (SECTION_IDS) so links and tests can find it.
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnnlab import __version__
from cnnlab.errors import UserError
from cnnlab.experiments.compare import analyse, apply_baseline
from cnnlab.metric_names import higher_is_better, per_epoch_metric
from cnnlab.report import blocks
from cnnlab.report.blocks import Details, Figure, Paragraph, Section, Table
from cnnlab.report.render_html import render_html
from cnnlab.report.render_markdown import render_markdown
from cnnlab.report.sources import ReportInput, finite, load_input, locate_run, read_curve, \
    read_json
from cnnlab.rundir import RunDir

SECTION_IDS = ("what-was-run", "results", "learning-curves", "final-metric", "effects",
               "lr-schedule", "init-signal", "diagnostics", "errors-of-best-run")
FORMATS = (".html", ".md")
LR_FIND_KEYS = ("lrs", "losses", "smoothed", "suggestions", "stopped", "mode", "curve")
WORST_IMAGES = 16


@dataclass
class BestRun:
    key: tuple
    label: str
    seed: int
    value: float
    folder: Path | None


@dataclass
class Context:
    source: ReportInput
    analysis: dict
    best: BestRun | None
    figures: Path  # where this report's PNGs are written

    @property
    def results(self):
        return self.source.results

    @property
    def metric(self) -> str:
        return self.analysis["metric"]

    @property
    def higher(self) -> bool:
        return higher_is_better(self.metric)

    def runs(self) -> list[tuple[tuple, int, float | None]]:
        """(combination, seed, value) of every finished run, in the table's order."""
        order = {row["label"]: i for i, row in enumerate(self.analysis["rows"])}
        keys = sorted(self.results.cells, key=lambda k: order.get(self.results.label(k), 0))
        return [(key, seed, value) for key in keys
                for seed, value in sorted(self.results.cells[key].items())]

    def folder(self, key: tuple, seed: int) -> Path | None:
        return locate_run(self.results, key, seed, self.source.storage)


def build_report(sources: list[str], out: str | Path, storage: str | None = None,
                 metric: str | None = None, lr_find: str | Path | None = None,
                 diagnostics_run: str | None = None, baselines: list[str] = ()) -> Path:
    """Write the report of a study (one name, with `storage`) or of run folders to `out`.

    `out` ending in .html gives one self-contained page; .md gives Markdown with its PNGs in
    `<stem>_files/` beside it. `lr_find` is the JSON of `cnnlab lr-find --json`;
    `diagnostics_run` is the run folder whose diagnostics are shown (default: the best run).
    Returns the path written.
    """
    out = Path(out)
    suffix = output_format(out)
    # Every input is checked before the (slower) reading and plotting starts.
    lr_result = read_lr_find(lr_find) if lr_find is not None else None
    chosen_diagnostics = check_diagnostics_run(diagnostics_run) if diagnostics_run else None
    source = load_input(list(sources), storage, metric)
    apply_baseline(source.results, list(baselines))
    analysis = analyse(source.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"cnnlab report: {source.title}"
    intro = (f"Source: {source.results.source}"
             f"{f' (storage {source.storage})' if source.storage else ''}; metric "
             f"{analysis['metric']} ({analysis['direction']}). Built "
             f"{datetime.datetime.now():%Y-%m-%d %H:%M} with cnnlab {__version__}; the report "
             "reads results and trains nothing.")
    if suffix == ".html":
        with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as folder:
            context = Context(source, analysis, None, Path(folder))
            context.best = best_run(context)
            sections = collect_sections(context, lr_result, chosen_diagnostics)
            page = render_html(title, intro, sections)  # embeds the PNGs before they go
    else:
        figures = out.parent / f"{out.stem}_files"
        figures.mkdir(exist_ok=True)
        context = Context(source, analysis, None, figures)
        context.best = best_run(context)
        sections = collect_sections(context, lr_result, chosen_diagnostics)
        page = render_markdown(title, intro, sections, out.parent)
    out.write_text(page, encoding="utf-8")
    return out


def output_format(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"report output {out} must end in .html (one self-contained page) or .md "
                        f"(Markdown with PNGs beside it); received '{out.suffix or 'no suffix'}'")
    return suffix


def read_lr_find(path: str | Path) -> dict:
    path = Path(path)
    hint = "write it with `cnnlab lr-find CONFIG --json > FILE`"
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"--lr-find {path}: cannot read it ({error.strerror}); {hint}") from None
    except ValueError:
        raise UserError(f"--lr-find {path} is not JSON; {hint}") from None
    missing = [k for k in LR_FIND_KEYS if k not in data] if isinstance(data, dict) \
        else list(LR_FIND_KEYS)
    if missing:
        raise UserError(f"--lr-find {path} lacks {', '.join(missing)}: it is not the output of "
                        f"lr-find; {hint}")
    return data


def check_diagnostics_run(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    samples = RunDir.at(path).diagnostics_path
    if not samples.exists():
        raise UserError(f"--diagnostics-run {path} has no {samples.name}: give a run folder "
                        "trained with diagnostics on (diagnostics.every > 0)")
    return path


def best_run(context: Context) -> BestRun | None:
    """The best combination by its mean (respecting the metric's direction), then its seed with
    the best value; None when every run diverged."""
    sign = 1.0 if context.higher else -1.0
    keys = {context.results.label(k): k for k in context.results.cells}
    rows = [r for r in context.analysis["rows"] if finite(r["mean"]) and r["label"] in keys]
    if not rows:
        return None
    row = max(rows, key=lambda r: sign * r["mean"])  # max keeps the first of equal means
    key = keys[row["label"]]
    seeds = {s: v for s, v in context.results.cells[key].items() if finite(v)}
    seed = max(seeds, key=lambda s: sign * seeds[s])
    return BestRun(key, row["label"], seed, float(seeds[seed]), context.folder(key, seed))


def _given_in_python(run_folder: Path) -> bool:
    """Whether a run trained a network passed as model=, which only its caller can rebuild."""
    import yaml

    config = yaml.safe_load(RunDir.at(run_folder).read_config_text() or "") or {}
    model = config.get("model")
    return isinstance(model, dict) and model.get("arch") == "python"


def collect_sections(context: Context, lr_result: dict | None,
                     diagnostics_dir: Path | None) -> list[Section]:
    best = context.best
    best_folder = best.folder if best and best.folder and \
        RunDir.at(best.folder).config.exists() else None
    assembly = init_report = None
    if best_folder is not None and _given_in_python(best_folder):
        print(f"report: the best run {best_folder} trained a network given in Python (model=), "
              "which the report cannot rebuild; its init signal and errors are left out",
              file=sys.stderr)
    elif best_folder is not None:
        from cnnlab.propagation import inspect_assembly
        from cnnlab.report.inference import assemble_run

        # One assembly serves both model sections: its model is as initialised (what
        # `propagation.inspect(cfg)` measures, without loading the data twice) until the
        # trained weights are loaded into it for the test pass.
        assembly = assemble_run(best_folder)
        init_report = inspect_assembly(assembly)
    if diagnostics_dir is None and best_folder is not None:
        diagnostics_dir = best_folder
    several = sum(len(seeds) for seeds in context.results.cells.values()) > 1
    sections = [
        what_was_run(context),
        results_section(context) if several else None,
        learning_curves_section(context),
        final_metric_section(context) if several else None,
        effects_section(context),
        lr_schedule_section(context, lr_result, best_folder, assembly),
        init_signal_section(context, init_report) if init_report else None,
        diagnostics_section(context, diagnostics_dir) if diagnostics_dir else None,
        errors_section(context, best_folder, assembly) if assembly else None,
    ]
    return [s for s in sections if s is not None]


# ------------------------------------------------------------------------------------------
# 1. What was run


def what_was_run(context: Context) -> Section:
    results, source = context.results, context.source
    runs = context.runs()
    seeds = sorted({seed for _, seed, _ in runs})
    section = Section("what-was-run", "What was run")
    combos = len(results.cells)
    summary = (f"{len(runs)} finished run{'s' if len(runs) != 1 else ''}: {combos} "
               f"combination{'s' if combos != 1 else ''} x {len(seeds)} "
               f"seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}).")
    if source.trial_states:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(source.trial_states.items()))
        summary += f" Trials in the study: {states}."
    section.blocks.append(Paragraph(summary))
    if results.factors:
        section.blocks.append(Table(
            ["factor", "values (baseline first)", "baseline"],
            [[blocks.text(f), blocks.text(", ".join(map(str, results.levels[f]))),
              blocks.text(results.levels[f][0])] for f in results.factors],
            sortable=False, caption="Config keys that differ between the runs"))
    else:
        section.blocks.append(Paragraph("No config key differs between the runs besides the "
                                        "seed."))
    section.blocks.append(runs_table(context, runs))
    environments = environment_table(context, runs)
    if environments is not None:
        section.blocks.append(environments)
    if source.base_config:
        section.blocks.append(Details(source.base_config_label, source.base_config))
    return section


def runs_table(context: Context, runs) -> Table:
    rows = []
    for key, seed, value in runs:
        folder = context.folder(key, seed)
        summary = read_json(RunDir.at(folder).summary_path) if folder else None
        summary = summary or {}
        rows.append([blocks.text(context.results.label(key)), blocks.number(seed, "d"),
                     blocks.number(value), blocks.text(summary.get("status")),
                     blocks.number(summary.get("epochs_completed"), "d"),
                     blocks.number(summary.get("seconds"), ".1f"),
                     blocks.text(folder if folder else "(folder not found)")])
    return Table(["combination", "seed", context.metric, "status", "epochs", "seconds",
                  "run folder"], rows, table_id="runs-table",
                 caption="Every run; a diverged run has no value")


ENVIRONMENT_KEYS = ("cnnlab", "torch", "python", "device", "device_name", "threads")


def environment_table(context: Context, runs) -> Table | None:
    """Each distinct environment (versions, device) once, with how many runs used it."""
    counts: dict[tuple, int] = {}
    for key, seed, _ in runs:
        folder = context.folder(key, seed)
        env = read_json(RunDir.at(folder).environment_path) if folder else None
        if env:
            entry = tuple(env.get(k) for k in ENVIRONMENT_KEYS)
            counts[entry] = counts.get(entry, 0) + 1
    if not counts:
        return None
    rows = [[blocks.text(v) for v in entry] + [blocks.number(n, "d")]
            for entry, n in counts.items()]
    return Table(["cnnlab", "torch", "python", "device", "device name", "threads", "runs"], rows,
                 table_id="environment-table", sortable=False,
                 caption="Versions and machines (from each run's environment.json)")


# ------------------------------------------------------------------------------------------
# 2. Results and 4. final metric


def results_section(context: Context) -> Section:
    analysis = context.analysis
    rows = []
    for row in analysis["rows"]:
        # What decides comes first (estimate, difference, corrected p, verdict), so it is on
        # screen without scrolling; the supporting numbers follow.
        rows.append([
            blocks.text(row["label"]), blocks.number(row["n"], "d"), blocks.number(row["mean"]),
            blocks.interval(row["ci"]), blocks.number(row["diff"], "+.4f"),
            blocks.interval(row["diff_ci"], "+.4f"), blocks.number(row["p_holm"], ".3g"),
            blocks.text(row["verdict"]), blocks.number(row["p_value"], ".3g"),
            blocks.number(row["p_wilcoxon"], ".3g"), blocks.number(row["effect_size"], ".2f"),
            blocks.number(row["std"]), blocks.number(row["min"]), blocks.number(row["max"]),
            blocks.number(row["diverged"], "d")])
    table = Table(["combination", "n", "mean", "95% CI", "diff vs baseline", "diff 95% CI",
                   "p (t-test, Holm)", "verdict", "p (t-test)", "p (Wilcoxon)", "d_z", "std",
                   "min", "max", "diverged"], rows, table_id="results-table",
                  caption=f"{analysis['metric']} ({analysis['direction']})")
    section = Section("results", "Results")
    section.blocks.append(Paragraph(
        f"Baseline: {analysis['baseline']}. Means and 95% CIs over seeds (Student t, which "
        "keeps its 95% coverage at 2-10 seeds; no interval from a single seed); differences "
        "are paired by seed (candidate - baseline); p-values from the paired t-test (the exact "
        "sign-flip test when every paired difference is equal), Holm-corrected over all "
        "comparisons with the baseline, and the Wilcoxon signed-rank test; d_z is the mean "
        "paired difference over its standard deviation. 'better'/'worse' need a Holm-corrected "
        "p below 0.05; 'not enough seeds to tell' means the test cannot reach 0.05 at that n."))
    section.blocks.append(table)
    if context.best is not None:
        best = context.best
        section.blocks.append(Paragraph(
            f"Best combination: {best.label}; its best run is seed {best.seed} "
            f"({context.metric} {best.value:.4f}){f' in {best.folder}' if best.folder else ''}."))
    return section


def final_metric_section(context: Context) -> Section:
    from cnnlab.report.figures import metric_label, plot_dot_and_ci

    keys = {context.results.label(k): k for k in context.results.cells}
    items = []
    for row in context.analysis["rows"]:
        label = row["label"] + (f" ({row['diverged']} diverged)" if row["diverged"] else "")
        items.append({"label": label, "value": row["mean"], "ci": row["ci"],
                      "dots": list(context.results.cells[keys[row["label"]]].values())})
    path = plot_dot_and_ci(items, metric_label(context.metric),
                           f"{context.metric} per combination: every seed, mean and 95% CI",
                           context.figures / "final_metric.png")
    return Section("final-metric", "Final metric per combination", [
        Figure(path, f"{context.metric} per combination with 95% CIs and one dot per seed",
               "Diamonds: mean over seeds with its Student t 95% CI (as in the table); dots: "
               "single seeds.")])


# ------------------------------------------------------------------------------------------
# 3. Learning curves


def learning_curves_section(context: Context) -> Section | None:
    from cnnlab.report.figures import plot_learning_curves

    metric = per_epoch_metric(context.metric)
    curves = []
    for row in context.analysis["rows"]:
        key = next(k for k in context.results.cells if context.results.label(k) == row["label"])
        series = []
        for seed in sorted(context.results.cells[key]):
            folder = context.folder(key, seed)
            # The run's own metrics.jsonl when it can be found; else what the study recorded.
            curve = read_curve(folder, metric) if folder else []
            if not curve and metric == context.metric:
                curve = list((context.results.curves.get(key) or {}).get(seed) or [])
            if curve:
                series.append(curve)
        if series:
            curves.append((row["label"], series))
    if not curves:
        return None
    path = plot_learning_curves(curves, metric, context.figures / "learning_curves.png")
    blocks = [
        Figure(path, f"{metric} per epoch, one line per combination",
               f"{metric} after each epoch: the line is the mean over seeds, the band a 95% "
               "Student-t interval of that mean (none with a single seed), cut at the values the "
               "metric can take.")]
    loss = single_run_loss_figure(context)
    if loss is not None:
        blocks.append(loss)
    return Section("learning-curves", "Learning curves", blocks)


def single_run_loss_figure(context: Context) -> Figure | None:
    """A report of one run also shows its training and validation loss, the first thing to read
    for over- or underfitting; with several runs the per-combination curves above take its place."""
    from cnnlab.report.figures import plot_train_val_loss

    runs = [(key, seed) for key in context.results.cells for seed in context.results.cells[key]]
    if len(runs) != 1:
        return None
    folder = context.folder(*runs[0])
    if folder is None:
        return None
    train, val = read_curve(folder, "train_loss"), read_curve(folder, "val_loss")
    if not train and not val:
        return None
    path = plot_train_val_loss(train, val, context.figures / "loss_curves.png")
    return Figure(path, "training and validation loss per epoch",
                  "The run's training loss (averaged over each epoch's batches, with "
                  "augmentation) and validation loss after each epoch.")


# ------------------------------------------------------------------------------------------
# 5. Effects


def effects_section(context: Context) -> Section | None:
    from cnnlab.report.figures import metric_label, plot_dot_and_ci

    effects = context.analysis["effects"]
    entries = []
    for effect in effects.get("main", []):
        entries.append(("main", f"{effect['factor']}={effect['level']}",
                        f"{effect['factor']}={effect['baseline']}", effect))
    for effect in effects.get("interactions", []):
        (a, b), (la, lb) = effect["factors"], effect["levels"]
        entries.append(("interaction", f"{a}={la} x {b}={lb}", "the sum of both main effects",
                        effect))
    if not entries:
        return None
    rows = [[blocks.text(kind), blocks.text(term), blocks.text(versus),
             blocks.number(e["effect"], "+.4f"), blocks.interval(e["ci"], "+.4f"),
             blocks.number(e["n"], "d")] for kind, term, versus, e in entries]
    table = Table(["kind", "term", "compared with", "effect", "95% CI", "seeds"], rows,
                  table_id="effects-table",
                  caption=f"Effects on {context.metric}, paired over seeds")
    items = [{"label": term, "value": e["effect"], "ci": e["ci"]}
             for _, term, _, e in entries]
    path = plot_dot_and_ci(items, f"difference in {metric_label(context.metric)}",
                           "main effects and interactions: estimate and 95% CI",
                           context.figures / "effects.png", zero_line=True)
    return Section("effects", "Main effects and interactions", [
        Paragraph("A main effect is the change from a factor's baseline level to another level, "
                  "averaged over the other factors' levels; an interaction is how much one "
                  "factor's effect changes when the other factor is switched (0: the effects "
                  "add up). Both are computed per seed, then averaged, with a Student t 95% CI "
                  "over the per-seed values."),
        table, Figure(path, "main effects and interactions with 95% CIs")])


# ------------------------------------------------------------------------------------------
# 6. LR range test and schedule


def lr_schedule_section(context: Context, lr_result: dict | None, best_folder: Path | None,
                        assembly) -> Section | None:
    from cnnlab.report.lr_plots import plot_lr_find, plot_schedule

    section = Section("lr-schedule", "Learning rate: range test and schedule")
    if lr_result is not None:
        found = ", ".join(f"{name} {lr:.3g}" for name, lr in lr_result["suggestions"].items()
                          if lr is not None) or "none"
        section.blocks.append(Paragraph(
            f"LR range test ({lr_result['mode']} sweep over {len(lr_result['lrs'])} optimizer "
            f"steps, {lr_result['curve']}; stopped: {lr_result['stopped']}). Suggestions: "
            f"{found}."))
        path = plot_lr_find(lr_result, context.figures / "lr_find.png")
        section.blocks.append(Figure(path, "loss against learning rate in the range test"))
    trace = schedule_trace(best_folder, assembly)
    if trace is not None:
        path = plot_schedule(trace, context.figures / "schedule.png")
        section.blocks.append(Paragraph(
            f"Schedule of the best run's config: {trace['name']}, {trace['total_steps']} "
            f"optimizer steps ({trace['steps_per_epoch']} per epoch), peak LR "
            f"{max(trace['lr']):.3g}, last LR {trace['lr'][-1]:.3g}. Computed from the config, "
            "not measured."))
        section.blocks.append(Figure(path, "learning rate at every optimizer step"))
    return section if section.blocks else None


def schedule_trace(best_folder: Path | None, assembly) -> dict | None:
    """The LR of every optimizer step of the best run, computed from its config alone."""
    if best_folder is None:
        return None
    from cnnlab.components.schedules import trace
    from cnnlab.config import load_config
    from cnnlab.configured_schedule import schedule_for_config
    from cnnlab.data.loaders import batches_per_epoch

    run = RunDir.at(best_folder)
    cfg = load_config(run.config)
    summary = read_json(run.summary_path) or {}
    steps, epochs = summary.get("steps"), summary.get("epochs_completed")
    if steps and epochs:
        per_epoch = steps // epochs * cfg.train.accumulate
    elif assembly is not None:  # an unfinished run: count the batches as `cnnlab schedule` does
        per_epoch = batches_per_epoch(len(assembly.data.train), cfg.data.batch_size)
    else:
        return None
    result = trace(schedule_for_config(cfg, per_epoch))
    return result if result["lr"] else None


# ------------------------------------------------------------------------------------------
# 7. Signal at initialisation


def init_signal_section(context: Context, report: dict) -> Section:
    from cnnlab.report.propagation_plot import plot_propagation

    path = plot_propagation([report], context.figures / "init_signal.png")
    where = f" at {report['layer']}" if report.get("layer") else ""
    layers = [layer for layer in report["layers"] if layer["kind"] in ("conv", "linear")]
    rows = [[blocks.text(layer["name"]), blocks.text(layer["kind"]),
             blocks.number(layer["std"], ".3g"), blocks.number(layer["grad_std"], ".3g"),
             blocks.number(layer.get("grad_norm"), ".3g"),
             blocks.text(layer.get("init"))] for layer in layers]
    return Section("init-signal", "Signal propagation at initialisation", [
        Paragraph(f"The best run's config before its first step, one batch of {report['batch']} "
                  f"training images: verdict {report['verdict']}{where}: {report['advice']}."),
        Figure(path, "std of each weight layer's output and per-sample gradient norm at init "
               "against depth"),
        Table(["layer", "kind", "output std", "gradient std", "gradient norm per sample", "init"],
              rows,
              table_id="init-table", caption="Weight layers at init")])


# ------------------------------------------------------------------------------------------
# 8. Diagnostics


def diagnostics_section(context: Context, run_dir: Path) -> Section | None:
    from cnnlab.diagnostics import diagnose
    from cnnlab.report.diagnostics_plots import plot_diagnostics

    run = RunDir.at(run_dir)
    if not (run.diagnostics_meta_path.exists() and run.diagnostics_path.exists()):
        return None  # trained with diagnostics.every=0
    report = diagnose(run_dir)
    if report["samples"] == 0:
        return None
    section = Section("diagnostics", "Diagnostics during training")
    overhead = report.get("overhead") or {}
    cost = (f"; they cost {overhead['fraction']:.0%} extra training time"
            if finite(overhead.get("fraction")) else "")
    section.blocks.append(Paragraph(
        f"Run {run_dir}: {report['samples']} samples (the first steps, then one every "
        f"{report['every']} optimizer steps at the end){cost}. {len(report['alarms'])} alarm(s)."))
    if report["alarms"]:
        section.blocks.append(Table(
            ["kind", "layer", "step", "detail"],
            [[blocks.text(a["kind"]), blocks.text(a["layer"]), blocks.number(a["step"], "d"),
              blocks.text(a["detail"])] for a in report["alarms"]],
            table_id="alarms-table", caption="Alarms, when each condition started"))
    captions = {"activation_std": "activation std per layer over training",
                "grad_norm": "weight-gradient norm per layer over training",
                "update_ratio": "update-to-weight ratio per layer over training",
                "histograms": "output histograms per activation layer over training"}
    for path in plot_diagnostics(run_dir, context.figures / "diagnostics"):
        section.blocks.append(Figure(Path(path), captions.get(Path(path).stem, Path(path).stem)))
    return section


# ------------------------------------------------------------------------------------------
# 9. Errors of the best run


def errors_section(context: Context, best_folder: Path, assembly) -> Section | None:
    from cnnlab.checkpoint import load_weights
    from cnnlab.report.figures import plot_confusion, plot_image_grid
    from cnnlab.report.inference import split_errors, weights_of

    weights = weights_of(best_folder)
    if weights is None:
        return None
    load_weights(assembly.model, weights)
    errors = split_errors(assembly, WORST_IMAGES)
    if errors.total == 0:
        return None
    names = errors.classes
    confusion = plot_confusion(
        errors.confusion, names,
        f"test split: {errors.total} images, accuracy {errors.accuracy:.4f}",
        context.figures / "confusion.png")
    titles = [f"true {names[t]}\npredicted {names[p]}\nloss {loss:.2f}"
              for t, p, loss in zip(errors.true, errors.predicted, errors.losses)]
    grid = plot_image_grid(errors.images, titles, context.figures / "highest_loss.png")
    wrong = sum(1 for t, p in zip(errors.true, errors.predicted) if t != p)
    return Section("errors-of-best-run", "Errors of the best run", [
        Paragraph(f"Weights {weights} evaluated on the test split ({errors.total} images): "
                  f"accuracy {errors.accuracy:.4f} (fraction). Of the {len(errors.losses)} "
                  f"highest-loss images, {wrong} are misclassified."),
        Figure(confusion, "confusion matrix of the best run on the test split",
               "Rows: true class; columns: predicted class; colour: number of test images."),
        Figure(grid, f"the {len(errors.losses)} highest-loss test images",
               "Highest cross-entropy first, with the true and predicted class.")])

