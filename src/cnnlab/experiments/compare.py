"""`cnnlab compare`: which configuration wins, with its uncertainty.

Results come from a study (its trials) or from run folders (their config.yaml and summary.json;
the keys that differ between the configs, seed aside, become the factors). Runs are paired by
seed. Analysis only reads: nothing here trains or writes to the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnnlab.errors import UserError
from cnnlab.experiments import statistics as stats
from cnnlab.metric_names import DEFAULT_METRIC, direction_words, higher_is_better, \
    loss_diverged, metric_bounds, summary_key, summary_metrics, summary_value
from cnnlab.rundir import read_json_file, read_json_lines

# Keys that differ between runs without being a choice someone made.
NOT_FACTORS = {"name", "seed", "data.normalize", "train.threads", "train.device"}


@dataclass
class Results:
    """Per-combination, per-seed values of one metric, and the factor structure behind them."""

    metric: str
    factors: list[str]
    levels: dict[str, list[str]]  # factor -> its values, baseline first
    cells: dict[tuple, dict[int, float | None]] = field(default_factory=dict)
    curves: dict[tuple, dict[int, list[float]]] = field(default_factory=dict)
    run_dirs: dict[tuple, dict[int, str]] = field(default_factory=dict)
    source: str = ""

    def label(self, key: tuple) -> str:
        return ",".join(f"{f}={v}" for f, v in zip(self.factors, key)) or "base"

    @property
    def baseline(self) -> tuple:
        return tuple(self.levels[f][0] for f in self.factors)


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def check_metric(metric: str, records: list[dict], source: str) -> None:
    """An unknown metric is an error naming the metrics every finished run has (rather than an
    empty table calling every run diverged)."""
    if not records:
        return
    lacking = [r for r in records if metric not in summary_metrics(r) and metric not in r]
    if not lacking:
        return
    common = set.intersection(*(summary_metrics(r) for r in records))
    having = f"the runs have: {', '.join(sorted(common))}" if common else \
        "the runs have no metric in common"
    which = "none of the" if len(lacking) == len(records) else \
        f"{len(lacking)} of the {len(records)}"
    raise UserError(f"--metric {metric}: {which} finished runs in {source} recorded it; "
                    f"{having}; pass one of those with --metric")


def from_study(storage_url: str | None, name: str, metric: str | None = None) -> Results:
    from cnnlab.experiments.store import describe_storage, load_study, open_existing_storage

    study = load_study(open_existing_storage(storage_url, name), name,
                       describe_storage(storage_url))
    attrs = study.user_attrs
    metric = metric or attrs.get("metric", DEFAULT_METRIC)
    if attrs.get("kind") == "search":
        raise UserError(f"study {name} is a search; compare takes ablations (use `cnnlab report` "
                        "or optuna-dashboard to look at a search)")
    factors = [f["key"] for f in attrs["factors"]]
    levels = {f["key"]: [f["baseline"]] + [v for v in f["values"] if v != f["baseline"]]
              for f in attrs["factors"]}
    results = Results(metric, factors, levels, source=f"study {name}")
    finished = [t for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("status") in ("completed", "diverged")]
    completed = [{**t.user_attrs, **({summary_key(attrs["metric"]): t.value}
                                     if attrs.get("metric") else {})}
                 for t in finished if t.user_attrs.get("status") == "completed"]
    check_metric(metric, completed, results.source)
    for trial in finished:
        status = trial.user_attrs.get("status")
        key = tuple(trial.params.get(f, _from_overrides(trial, f)) for f in factors)
        seed = int(trial.user_attrs["seed"])
        if status == "completed" and loss_diverged(trial.user_attrs):
            status = "diverged"
        value = trial.user_attrs.get(summary_key(metric)) if status == "completed" else None
        if status == "completed" and metric == attrs.get("metric"):
            value = trial.value
        value = float(value) if _finite(value) else None
        results.cells.setdefault(key, {})[seed] = value
        results.curves.setdefault(key, {})[seed] = [
            trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
        results.run_dirs.setdefault(key, {})[seed] = trial.user_attrs.get("run_dir")
    return results


def _from_overrides(trial, factor: str) -> str | None:
    for item in trial.user_attrs.get("overrides", []):
        key, _, value = item.partition("=")
        if key == factor:
            return value
    return None


def _flatten(data: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(
                "\n...").removesuffix("...").strip()
    return flat


def find_runs(paths: list[str]) -> list[Path]:
    runs = []
    for item in paths:
        path = Path(item)
        if (path / "summary.json").exists():
            runs.append(path)
        elif path.is_dir():
            runs.extend(sorted(p.parent for p in path.rglob("summary.json")))
    return runs


def from_runs(paths: list[str], metric: str = DEFAULT_METRIC) -> Results:
    runs = find_runs(paths)
    if not runs:
        raise UserError(f"no run folders (with summary.json) under {', '.join(paths)}")
    configs, summaries = [], []
    for run in runs:
        configs.append(_flatten(yaml.safe_load((run / "config.yaml").read_text())))
        summaries.append(read_json_file(run / "summary.json") or {})  # torn: status unknown
    keys = sorted({k for c in configs for k in c})
    factors = [k for k in keys if k not in NOT_FACTORS and not k.startswith("data.normalize")
               and len({c.get(k) for c in configs}) > 1]
    # An option that exists for one choice only (gelu's `approximate`) is implied by the choice
    # itself when the choice (`model.activation.name`) is a factor too.
    choices = {k.rsplit(".", 1)[0] for k in factors if k.endswith((".name", ".arch"))}
    factors = [k for k in factors if not (k.rsplit(".", 1)[0] in choices
                                          and not k.endswith((".name", ".arch"))
                                          and any(k not in c for c in configs))]
    levels: dict[str, list[str]] = {f: [] for f in factors}
    for config in configs:
        for f in factors:
            if config.get(f) not in levels[f]:
                levels[f].append(config.get(f))
    results = Results(metric, factors, levels, source=", ".join(paths))
    check_metric(metric, [s for s in summaries if s.get("status") == "completed"], results.source)
    for run, config, summary in zip(runs, configs, summaries):
        if summary.get("status") not in ("completed", "diverged"):
            continue
        key = tuple(config.get(f) for f in factors)
        seed = int(summary.get("seed", 0))
        value = summary_value(summary, metric) if summary["status"] == "completed" \
            and not loss_diverged(summary) else None
        results.cells.setdefault(key, {})[seed] = value
        history = read_json_lines(run / "metrics.jsonl")
        results.curves.setdefault(key, {})[seed] = [h.get(metric) for h in history
                                                    if h.get(metric) is not None]
        results.run_dirs.setdefault(key, {})[seed] = str(run)
    return results


def _within_range(ci: list[float], metric: str) -> list[float]:
    """A t interval of a mean cut to the values the metric can take (an accuracy is at most 1,
    a loss at least 0); the truth lies inside those, so cutting keeps the coverage."""
    low, high = metric_bounds(metric)
    return [v if math.isnan(v) else min(max(v, low), high) for v in ci]


def apply_baseline(results: Results, baselines: list[str]) -> None:
    for item in baselines:
        factor, _, value = item.partition("=")
        if factor not in results.levels or value not in results.levels[factor]:
            raise UserError(f"--baseline {item}: {factor} is not a factor here or {value} not "
                            f"one of its values (factors: {results.levels})")
        results.levels[factor].remove(value)
        results.levels[factor].insert(0, value)


def analyse(results: Results, alpha: float = 0.05) -> dict:
    """Rows per combination (baseline first) with paired comparisons, and factorial effects."""
    if not results.cells:
        raise UserError(f"no finished runs in {results.source} yet")
    higher = higher_is_better(results.metric)
    order = sorted(results.cells, key=lambda k: [results.levels[f].index(v) if v in
                                                 results.levels[f] else 99
                                                 for f, v in zip(results.factors, k)])
    base = results.baseline if results.baseline in results.cells else order[0]
    comparisons = []
    for key in order:
        if key != base:
            comparisons.append(stats.compare_paired(results.cells[base], results.cells[key],
                                                    higher, alpha))
    judged = iter(stats.finalize_verdicts(comparisons, higher, alpha))
    rows = []
    for key in order:
        row = {"label": results.label(key), **stats.describe(list(results.cells[key].values()))}
        row["ci"] = _within_range(row["ci"], results.metric)
        if key == base:
            row.update(diff=None, diff_ci=None, p_value=None, p_wilcoxon=None, p_holm=None,
                       effect_size=None, verdict="baseline")
        else:
            c = next(judged)
            row.update({k: c.get(k) for k in ("diff", "diff_ci", "p_value", "p_method",
                                              "p_floor", "p_wilcoxon", "p_holm", "effect_size",
                                              "verdict")})
            row["notes"] = {**row.get("notes", {}), **c.get("notes", {})}
            row["pairs"] = c.get("n")
            if row["n"] == 0 and row["diverged"]:
                # Nothing to test, but divergence is the clearest result there is.
                row["verdict"] = f"diverged in all {row['diverged']} runs"
        rows.append(row)
    effects = {"main": [], "interactions": []}
    if results.factors and (len(results.factors) > 1 or len(results.cells) > 2):
        effects = stats.factorial_effects(results.cells, results.factors)
    return {"metric": results.metric, "direction": direction_words(results.metric),
            "source": results.source, "factors": results.factors,
            "baseline": results.label(base), "rows": rows, "effects": effects}


def strict_json_ready(data):
    """A copy of `data` that strict JSON parsers accept: every nan or +-inf becomes None, and a
    dict that held one gets a `notes` entry for that key saying why (unless it already has one).
    """
    if isinstance(data, dict):
        out, notes = {}, dict(data.get("notes") or {})
        for key, value in data.items():
            if key == "notes":
                continue
            if _non_finite(value) or (isinstance(value, list) and any(map(_non_finite, value))):
                notes.setdefault(key, f"not a finite number ({_non_finite_text(value)})")
            out[key] = strict_json_ready(value)
        if notes or "notes" in data:
            out["notes"] = notes
        return out
    if isinstance(data, (list, tuple)):
        return [strict_json_ready(v) for v in data]
    if _non_finite(data):
        return None
    return data


def _non_finite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _non_finite_text(value) -> str:
    values = value if isinstance(value, list) else [value]
    return ", ".join(sorted({str(v) for v in values if _non_finite(v)}))


def analysis_json(analysis: dict) -> str:
    """`cnnlab compare --json`: strict JSON (no NaN/Infinity), nulls explained in `notes`."""
    return json.dumps(strict_json_ready(analysis), indent=2, allow_nan=False, default=str)


def format_table(analysis: dict) -> str:
    def num(value, fmt=".4f"):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(value, fmt)

    def interval(ci, fmt=".4f"):
        return "-" if not ci or ci[0] is None else f"[{num(ci[0], fmt)}, {num(ci[1], fmt)}]"

    width = max(len(r["label"]) for r in analysis["rows"])
    lines = [f"{analysis['metric']} ({analysis['direction']}) from {analysis['source']}; "
             f"baseline {analysis['baseline']}; 95% CIs Student t over seeds, p-values paired "
             f"t-test (Holm-corrected; exact sign-flip when all differences are equal) and "
             f"Wilcoxon",
             f"{'combination':<{width}}  {'n':>2} {'mean':>7} {'std':>7} {'95% CI':>18} "
             f"{'min':>7} {'max':>7} {'div':>3} {'diff':>8} {'diff 95% CI':>20} {'p(t)':>7} "
             f"{'p Holm':>7} {'p(W)':>7} {'d_z':>6}  verdict"]
    for r in analysis["rows"]:
        lines.append(
            f"{r['label']:<{width}}  {r['n']:>2} {num(r['mean']):>7} {num(r['std']):>7} "
            f"{interval(r['ci']):>18} {num(r['min']):>7} {num(r['max']):>7} {r['diverged']:>3} "
            f"{num(r['diff'], '+.4f'):>8} {interval(r['diff_ci'], '+.4f'):>20} "
            f"{num(r['p_value'], '.3f'):>7} {num(r['p_holm'], '.3f'):>7} "
            f"{num(r['p_wilcoxon'], '.3f'):>7} {num(r['effect_size'], '.2f'):>6}  {r['verdict']}")
    for effect in analysis["effects"].get("main", []):
        lines.append(f"main effect of {effect['factor']}={effect['level']} (vs "
                     f"{effect['baseline']}): {num(effect['effect'], '+.4f')} "
                     f"{interval(effect['ci'], '+.4f')} over {effect['n']} seeds")
    for effect in analysis["effects"].get("interactions", []):
        a, b = effect["factors"]
        la, lb = effect["levels"]
        lines.append(f"interaction {a}={la} x {b}={lb}: {num(effect['effect'], '+.4f')} "
                     f"{interval(effect['ci'], '+.4f')} over {effect['n']} seeds")
    return "\n".join(lines)
