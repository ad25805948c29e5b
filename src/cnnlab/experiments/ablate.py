"""`cnnlab ablate`: every combination of the varied values, times N paired seeds, on a study.

Seed k is the same for every combination, and the data order, augmentation and initialization
streams depend only on the seed, so the runs of seed k differ only by the factors: comparisons
are paired. Re-running the same command resumes the study: finished runs are not repeated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cnnlab.config import absolute_paths, apply_override, load_config, read_config_file
from cnnlab.errors import UserError
from cnnlab.experiments.design import Factor, combinations, label, overrides, parse_factors, \
    run_dir, validate_combinations
from cnnlab.experiments.runner import direction
from cnnlab.experiments.store import open_storage, store_lock
from cnnlab.experiments.worker import DEFAULT_HEARTBEAT, work
from cnnlab.runtime import available_cores

DESIGN_KEYS = ("kind", "config", "factors", "seeds", "metric")


def base_config(config_path: str, extra: list[str]) -> dict:
    """The user's config with -o applied, unresolved: a factor that switches a component (optim
    name=adam) then gets that component's own defaults, not the ones of the config's choice."""
    raw = read_config_file(config_path)
    for item in extra:
        apply_override(raw, item)
    load_config(raw)  # every problem reported now, before a study exists
    return absolute_paths(raw, Path.cwd())  # -o paths mean the folder the command ran in


def create_or_resume(storage, name: str, spec: dict, sampler=None, pruner=None) -> optuna.Study:
    try:
        study = optuna.create_study(study_name=name, storage=storage,
                                    direction=direction(spec["metric"]), sampler=sampler,
                                    pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                  pruner=pruner)
        differs = [k for k in DESIGN_KEYS if study.user_attrs.get(k) != spec.get(k)]
        if differs:
            raise UserError(f"study '{name}' already exists with a different {', '.join(differs)}; "
                            "re-run it with the same arguments to resume it, or give another "
                            "--study name") from None
        return study
    for key, value in spec.items():
        study.set_user_attr(key, value)
    return study


def enqueue_missing(study: optuna.Study, factors: list[Factor], seeds: list[int],
                    runs_root: Path) -> int:
    """Queue every (combination, seed) that has no trial yet, or whose trial crashed; finished,
    diverged, waiting and running ones are left alone."""
    settled = set()
    for trial in study.get_trials(deepcopy=False):
        key = (trial.user_attrs.get("label"), trial.user_attrs.get("seed"))
        crashed = trial.state == TrialState.FAIL and trial.user_attrs.get("status") != "diverged"
        if not crashed:
            settled.add(key)
    added = 0
    for combo in combinations(factors):
        for seed in seeds:
            key = (label(combo), seed)
            if key in settled:
                continue
            study.enqueue_trial(
                {**combo, "seed": seed},
                user_attrs={"label": key[0], "seed": seed,
                            "overrides": overrides(combo) + [f"seed={seed}"],
                            "run_dir": str(run_dir(runs_root, study.study_name, key[0], seed))})
            added += 1
    return added


def launch_workers(storage_url: str, study_name: str, workers: int, interval: float,
                   progress: bool) -> None:
    """W workers on this machine share its cores: each trains with cores/W threads."""
    if workers == 0:
        print(f"runs queued; start workers with: cnnlab worker --storage {storage_url} --study "
              f"{study_name}", file=sys.stderr)
        return
    threads = max(1, available_cores() // workers)
    if workers == 1:
        work(storage_url, study_name, threads, interval, progress, salt=0)
        return
    command = [sys.executable, "-m", "cnnlab", "worker", "--storage", storage_url, "--study",
               study_name, "--threads", str(threads), "--heartbeat", str(interval)]
    if not progress:
        command.append("--quiet")
    processes = [subprocess.Popen(command + ["--salt", str(index)]) for index in range(workers)]
    failed = [p.wait() for p in processes]
    if any(code not in (0, None) for code in failed):
        print(f"warning: {sum(1 for c in failed if c)} worker(s) exited with an error; re-run "
              "the same command to finish the study", file=sys.stderr)


def ablate(config_path: str, extra: list[str], vary: list[str], seeds: int,
           workers: int = 1, storage_url: str | None = None, study_name: str | None = None,
           baselines: list[str] = (), metric: str = "val_acc",
           interval: float = DEFAULT_HEARTBEAT, progress: bool = False,
           runs_root: str = "runs") -> optuna.Study:
    if seeds < 1 or workers < 0:
        raise UserError("--seeds must be at least 1 and --workers at least 0 (0 only queues the "
                        "runs, for `cnnlab worker` processes to take)")
    base = base_config(config_path, extra)
    factors = parse_factors(vary, list(baselines))
    validate_combinations(base, factors)
    first_seed = int(base.get("seed", 0))
    seed_list = [first_seed + k for k in range(seeds)]
    name = study_name or f"{load_config(base).name}-ablation"
    storage_url = storage_url or os.environ.get("CNNLAB_STORAGE") or "runs/optuna.journal"
    storage = open_storage(storage_url)
    spec = {"kind": "ablation", "config": base, "seeds": seed_list, "metric": metric,
            "factors": [{"key": f.key, "values": list(f.values), "baseline": f.baseline}
                        for f in factors], "runs_root": runs_root}
    # Launches of the same study at the same moment take turns: the second one finds the
    # first one's study and trials, so each run is queued once.
    with store_lock(storage_url, f"study:{name}"):
        study = create_or_resume(storage, name, spec)
        added = enqueue_missing(study, factors, seed_list, Path(runs_root))
    total = len(combinations(factors)) * len(seed_list)
    print(f"study {name} in {storage_url}: {total} runs ({len(combinations(factors))} "
          f"combinations x {len(seed_list)} seeds), {added} queued now", file=sys.stderr)
    launch_workers(storage_url, name, workers, interval, progress)
    return study
