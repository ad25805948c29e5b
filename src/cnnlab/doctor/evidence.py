"""The doctor's evidence page: the propagation plots, the range-test curves, the trial curves and
the comparison table, drawn with the report's own figures and rendered by its HTML writer."""

from __future__ import annotations

from cnnlab.doctor.answer import CONFIDENCE, level_text, looks_text
from cnnlab.doctor.folder import DoctorFolder
from cnnlab.report.blocks import Figure, Paragraph, Section, Table, interval, number, text
from cnnlab.report.figures import plot_learning_curves
from cnnlab.report.lr_plots import plot_lr_find
from cnnlab.report.propagation_plot import plot_propagation
from cnnlab.report.render_html import render_html


def write_page(folder: DoctorFolder, answer: dict, screening, choices, trial_curves) -> None:
    sections = [Section("answer", "The answer", [Paragraph(_decision(answer))])]
    if answer.get("comparisons"):
        rows = [[text(c["label"]), text(", ".join(f"{k}={v}" for k, v in c["changes"].items())),
                 number(c["n"], "d"), number(c["gain"]), interval(c["ci"]), text(c["why"])]
                for c in answer["comparisons"]]
        sections[0].blocks.append(Table(
            ["candidate", "changes", "paired seeds", "gain in val_acc",
             level_text(answer.get("confidence", CONFIDENCE)), "why"], rows,
            table_id="comparison", caption="each candidate against your config, paired seeds"))
        if looks_text(answer):
            sections[0].blocks.append(Paragraph(looks_text(answer)))
        if answer.get("more_seeds"):
            sections[0].blocks.append(Paragraph(answer["more_seeds"]))
    reports = [screening.original] + [c.report for c in screening.candidates]
    figure = plot_propagation(reports, folder.figures / "propagation.png")
    sections.append(Section("at-init", "At init: signal propagation", [
        Paragraph(f"Your config is {screening.original['verdict']}: "
                  f"{screening.original['advice']}. {screening.screened} configs screened on "
                  "one batch each; the kept candidates are drawn with it."),
        Figure(figure, "std of each weight layer's output and gradient, at init")]))
    lr_blocks = []
    for index, choice in enumerate(choices):
        if choice.sweep.get("lrs"):
            path = plot_lr_find(choice.sweep, folder.figures / f"range_test_{index}.png")
            lr_blocks.append(Figure(path, f"range test of {choice.label}",
                                    caption=f"{choice.label}: confirmed LRs "
                                    + ", ".join(f"{lr:.3g}" for lr in choice.tried)))
        lr_blocks.append(Table(["config", "LR tried", "val_acc after the confirmation run"], [
            [text(choice.label), number(lr, ".3g"), number(value, ".3f")]
            for lr, value in choice.scores.items()], table_id=f"lr-{index}"))
    sections.append(Section("learning-rate", "Learning rate: range tests and confirmation",
                            lr_blocks))
    if trial_curves:
        path = plot_learning_curves(sorted(trial_curves.items()), "val_acc",
                                    folder.figures / "trials.png")
        sections.append(Section("trials", "Paired trials", [
            Paragraph(answer.get("plan", "")), Figure(path, "val_acc per epoch of the trials")]))
    folder.report.write_text(render_html("cnnlab doctor", _decision(answer), sections))


def _decision(answer: dict) -> str:
    if answer["decision"] == "change":
        changes = ", ".join(f"{k}={v}" for k, v in answer["changes"].items())
        return f"Recommended: {changes}. Why: {answer['why']}."
    if answer["decision"] == "not the lr":
        return answer["message"]
    return "Keep your config: no candidate beat it by a 95% CI that excludes zero."
