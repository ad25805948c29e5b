"""Reading what a report is about: a study in an Optuna store, or run folders on disk.

Both end up as `cnnlab.experiments.compare.Results` (the numbers) plus what the report shows
beside them: the base config, the seeds, where each run's folder is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnnlab.errors import UserError
from cnnlab.experiments.compare import Results, find_runs, from_runs, from_study
# per_epoch_metric is kept importable from here, where it lived before cnnlab.metric_names.
from cnnlab.metric_names import DEFAULT_METRIC, per_epoch_metric  # noqa: F401
from cnnlab.rundir import read_json_file, read_json_lines


@dataclass
class ReportInput:
    results: Results
    kind: str  # "study" or "runs"
    title: str
    base_config: str | None  # YAML text
    base_config_label: str
    storage: str | None = None
    trial_states: dict[str, int] = field(default_factory=dict)


def load_input(sources: list[str], storage: str | None, metric: str | None) -> ReportInput:
    """Run folders when every source exists on disk, else one study name (as `cnnlab compare`)."""
    sources = [str(s) for s in sources]
    if not sources:
        raise UserError("report needs run folders or one study name; received none")
    if all(Path(s).exists() for s in sources):
        return _from_runs(sources, metric or DEFAULT_METRIC)
    if len(sources) == 1:
        return _from_study(sources[0], storage, metric)
    missing = [s for s in sources if not Path(s).exists()]
    raise UserError(f"{', '.join(missing)} not found: give run folders, or one study name (with "
                    "--storage)")


def _from_study(name: str, storage: str | None, metric: str | None) -> ReportInput:
    from cnnlab.experiments.store import count_states, describe_storage, load_study, \
        open_existing_storage, resolve_storage

    # Opening a journal path creates the file; a report only reads, so a missing one is an error.
    study = load_study(open_existing_storage(storage, name), name, describe_storage(storage))
    storage = resolve_storage(storage)[0]
    if study.user_attrs.get("kind") == "search":
        from cnnlab.experiments.design import folder_name

        runs = Path(study.user_attrs.get("runs_root", "runs")) / folder_name(name)
        raise UserError(f"study {name} is a search, which has no factors to compare; report "
                        f"its trials as run folders instead: {runs}")
    results = from_study(storage, name, metric)
    base = study.user_attrs.get("config")
    text = yaml.safe_dump(base, sort_keys=False) if base is not None else None
    return ReportInput(results, "study", f"study {name}", text,
                       "base config of the study (before each combination's overrides)",
                       storage, count_states(study))


def _from_runs(sources: list[str], metric: str) -> ReportInput:
    results = from_runs(sources, metric)
    runs = find_runs(sources)
    first = _first_baseline_run(results) or (runs[0] if runs else None)
    text = (first / "config.yaml").read_text() if first and (first / "config.yaml").exists() \
        else None
    title = f"run {runs[0].name}" if len(runs) == 1 else f"{len(runs)} runs"
    return ReportInput(results, "runs", title, text,
                       f"resolved config of {first}" if first else "", None)


def _first_baseline_run(results: Results) -> Path | None:
    folders = results.run_dirs.get(results.baseline) or {}
    for seed in sorted(folders):
        if folders[seed]:
            return Path(folders[seed])
    return None


def locate_run(results: Results, key: tuple, seed: int, storage: str | None) -> Path | None:
    """The folder of one run. A study records folders as its workers saw them, which may be
    relative to where `cnnlab ablate` was started; beside the journal file is the next guess."""
    recorded = (results.run_dirs.get(key) or {}).get(seed)
    if not recorded:
        return None
    path = Path(recorded)
    if path.exists():
        return path
    if storage and not path.is_absolute() and "://" not in storage:
        beside = Path(storage).parent / path
        if beside.exists():
            return beside
    return None


def read_json(path: Path) -> dict | None:
    try:
        return read_json_file(path)  # a torn file: None, with a warning naming it
    except OSError:
        return None


def finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def read_curve(run_dir: Path, metric: str) -> list[float | None]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = read_json_lines(path)
    return [record.get(metric) for record in records if metric in record]
