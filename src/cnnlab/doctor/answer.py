"""Phase 4, the answer: which proposal wins by a 95% CI that excludes zero, recommended.yaml
with only its keys changed, and the summary printed on the terminal.

A proposal must beat the original on the paired seeds by a Student t interval of the mean
difference (cnnlab.experiments.statistics.compare_paired) whose lower end is above zero;
otherwise the answer is "keep your config", with each proposal's interval as the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnlab.config import apply_override, config_file_for
from cnnlab.experiments.statistics import compare_paired

KEEP = "keep your config"
# The level of the answer's intervals: one look's, or all the looks' together (doctor.rounds).
CONFIDENCE = 0.95


@dataclass
class Proposal:
    label: str
    changes: dict[str, str]  # config key -> value (YAML text)
    why: str  # the measured cause


def decide(proposals: list[Proposal], table: dict[str, dict[int, float | None]],
           seeds: list[int] | None = None, confidence: float = CONFIDENCE,
           pruned: dict[str, set[int]] | None = None) -> dict:
    """Compare every proposal with the original over the seeds both finished (of `seeds`, all
    when None), each by a `confidence` t interval of the mean difference. A proposal that
    successive halving stopped on one of these seeds cannot win: its stopped seed was one where
    it was behind, and leaving that pair out would flatter it."""
    if seeds is not None:
        table = {label: {s: v for s, v in runs.items() if s in seeds}
                 for label, runs in table.items()}
    pruned = pruned or {}
    baseline = table.get("original", {})
    comparisons = []
    for proposal in proposals[1:]:
        result = compare_paired(baseline, table.get(proposal.label, {}), confidence=confidence)
        stopped = sorted(s for s in pruned.get(proposal.label, ()) if seeds is None or s in seeds)
        comparisons.append({"label": proposal.label, "changes": proposal.changes,
                            "why": proposal.why, "n": result["n"], "gain": _plain(result["diff"]),
                            "ci": [_plain(v) for v in result["diff_ci"]],
                            "p_value": _plain(result["p_value"]),
                            "finished": sorted(table.get(proposal.label, {})),
                            "pruned": stopped})
    winners = [c for c in comparisons if c["n"] >= 2 and c["ci"][0] is not None
               and c["ci"][0] > 0 and not c["pruned"]]
    originals = [v for v in baseline.values() if v is not None]
    answer = {"comparisons": comparisons, "metric": "val_acc", "confidence": confidence,
              "original_mean": sum(originals) / len(originals) if originals else None,
              "original_seeds": sorted(baseline)}
    if not winners:
        answer.update({"decision": KEEP, "changes": {}})
        return answer
    # Among the proposals that win, the largest gain; on a tie the one changing fewer keys.
    best = max(winners, key=lambda c: (c["gain"], -len(c["changes"])))
    answer.update({"decision": "change", "winner": best["label"], "changes": best["changes"],
                   "why": best["why"]})
    return answer


def _plain(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def write_recommended(config: str | Path, overrides: list[str], answer: dict, out: Path) -> None:
    """The user's config file with their -o overrides and only the winning keys changed.
    Relative paths keep naming the same files from the --out folder."""
    raw = config_file_for(config, overrides, out)
    for key, value in answer.get("changes", {}).items():
        apply_override(raw, f"{key}={value}")
    out.write_text(yaml.safe_dump(raw, sort_keys=False, default_flow_style=False, width=100))


def percent(confidence: float) -> str:
    """'95%', '97.5%', '98.33%': an interval's level as the summary, report and plan say it."""
    return f"{100 * confidence:.4g}%"


def level_text(confidence: float) -> str:
    """'95% CI', or '98.33% CI' for one look of several (doctor.rounds)."""
    return f"{percent(confidence)} CI"


def _ci_text(comparison: dict, confidence: float = CONFIDENCE) -> str:
    low, high = comparison["ci"]
    seeds = ", ".join(map(str, comparison.get("pruned", [])))
    stopped = (f" (stopped by successive halving on seed {seeds}, so it cannot win)"
               if seeds else "")
    if comparison["n"] < 2 or low is None:
        return (f"gain {comparison['gain']:+.3f} on {comparison['n']} paired seed(s), no CI"
                if comparison["gain"] is not None else "no paired seed finished") + stopped
    return (f"gain {comparison['gain']:+.3f} val_acc, {level_text(confidence)} "
            f"[{low:+.3f}, {high:+.3f}] over {comparison['n']} paired seeds{stopped}")


def looks_text(answer: dict) -> str | None:
    """How many seeds the answer looked at, and why its intervals are wider than 95% each."""
    planned = answer.get("planned_looks", [])
    if len(planned) < 2:
        return None
    looked = " then ".join(map(str, answer["looks"]))
    return (f"seeds: looked at {looked} paired seeds (up to {len(planned)} looks: "
            f"{', '.join(map(str, planned))}); each look's interval is at "
            f"{percent(answer['confidence'])}, so that all the looks together err no more "
            "often than one 95% CI")


def summary_text(answer: dict) -> str:
    """What the terminal shows: the decision, each change and why, each gain with its CI."""
    lines = []
    at_init = answer.get("at_init", {})
    if at_init:
        lines.append(f"at init: {at_init['verdict']}" + (
            "" if at_init["verdict"] == "healthy" else f" ({at_init['advice']})"))
    if answer["decision"] == "not the lr":
        lines.append(answer["message"])
        return "\n".join(lines)
    confidence = answer.get("confidence", CONFIDENCE)
    original = answer.get("original_mean")
    if original is not None:
        lines.append(f"original: val_acc {original:.3f} (mean of {len(answer['original_seeds'])}"
                     f" seeds, {answer.get('trial_epochs')} epoch trials)")
    if answer["decision"] == KEEP and not answer["comparisons"]:
        lines.append(f"{KEEP}: nothing to change was measured (healthy at init, and the best LR "
                     "confirmed is within 1.5x of yours)")
    elif answer["decision"] == KEEP:
        lines.append(f"{KEEP}: no candidate beat it by a 95% CI that excludes zero")
        for comparison in answer["comparisons"]:
            lines.append(f"  {comparison['label']}: {_ci_text(comparison, confidence)}")
    else:
        best = next(c for c in answer["comparisons"] if c["label"] == answer["winner"])
        lines.append(f"recommended: {best['label']} ({_ci_text(best, confidence)})")
        for key, value in best["changes"].items():
            lines.append(f"  change {key}: {value}")
        lines.append(f"  why: {best['why']}")
        for comparison in answer["comparisons"]:
            if comparison["label"] != best["label"]:
                lines.append(f"  also tried {comparison['label']}: "
                             f"{_ci_text(comparison, confidence)}")
    if looks_text(answer):
        lines.append(looks_text(answer))
    if answer.get("more_seeds"):
        lines.append(answer["more_seeds"])
    runs = answer.get("confirm_epochs")
    after = f"{runs}-epoch confirmation run" if runs else "confirmation run"
    for choice in answer.get("lr", []):
        valley = "none" if choice["valley"] is None else f"{choice['valley']:.2g}"
        tried = ", ".join(f"{lr}: " + ("diverged" if v is None else f"{v:.3f}")
                          for lr, v in choice["scores"].items())
        lines.append(f"  lr of {choice['label']}: range-test valley {valley}; val_acc after the "
                     f"{after} at {tried or 'no LR (budget)'}")
    if not answer.get("complete", True):
        lines.append("the budget ran out before every trial finished: the answer uses the "
                     "finished ones; re-run the same command with a larger --budget to go on")
    outputs = answer.get("outputs", {})
    if outputs.get("recommended"):
        lines.append(f"wrote {outputs['recommended']} and {outputs['report']}")
    return "\n".join(lines)
