"""`cnnlab ablate`: every combination of the varied values, times N paired seeds, on a study.

Seed k is the same for every combination, and the data order, augmentation and initialization
streams depend only on the seed, so the runs of seed k differ only by the factors: comparisons
are paired. Re-running the same command resumes the study: finished runs are not repeated.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cnnlab.config import load_config
from cnnlab.errors import UserError
from cnnlab.experiments.design import Factor, base_config, combinations, label, overrides, \
    parse_factors, run_dir, validate_combinations
from cnnlab.experiments.launch import launch_workers
from cnnlab.experiments.store import open_storage, resolve_storage, store_lock
from cnnlab.experiments.study import create_or_resume
from cnnlab.experiments.trial_queue import DEFAULT_HEARTBEAT
from cnnlab.model_arg import require_factory
from cnnlab.models.user_code import study_model_source, supplied_model


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


def ablate(config_path: str | Path | dict, *, vary: Sequence[str], seeds: int,
           extra: Sequence[str] = (), workers: int = 1, storage_url: str | None = None,
           study_name: str | None = None, baselines: Sequence[str] = (), metric: str = "val_acc",
           interval: float = DEFAULT_HEARTBEAT, progress: bool = False,
           runs_root: str = "runs", model: object = None) -> optuna.Study:
    """Queue every combination of the `vary` factors (KEY=V1,V2,...) times `seeds` paired seeds
    on a study (created, or resumed when it exists), then serve it with `workers` local workers
    (0: only queue, for `cnnlab worker` processes). `config_path` is a config file or a dict.
    `model` is your own network as a factory (in_channels, num_classes) -> nn.Module, called
    for every run; it runs in this process only (workers=1)."""
    if seeds < 1 or workers < 0:
        raise UserError("--seeds must be at least 1 and --workers at least 0 (0 only queues the "
                        "runs, for `cnnlab worker` processes to take)")
    supplied = supplied_model(model)
    require_factory(supplied, "ablate")
    if supplied is not None and workers != 1:
        raise UserError(f"ablate with model= runs every trial in this process, and workers={workers} "
                        "would need other processes, which cannot receive a Python object; use "
                        "workers=1, or put the network in a file and use model: {arch: file, "
                        "path: ..., factory: ...}")
    base = base_config(config_path, list(extra), supplied)
    factors = parse_factors(list(vary), list(baselines))
    validate_combinations(base, factors)
    first_seed = int(base.get("seed", 0))
    seed_list = [first_seed + k for k in range(seeds)]
    name = study_name or f"{load_config(base).name}-ablation"
    storage_url, _ = resolve_storage(storage_url)
    storage = open_storage(storage_url)
    spec = {"kind": "ablation", "config": base, "seeds": seed_list, "metric": metric,
            "factors": [{"key": f.key, "values": list(f.values), "baseline": f.baseline}
                        for f in factors], "runs_root": runs_root}
    spec.update(study_model_source(base))
    # Launches of the same study at the same moment take turns: the second one finds the
    # first one's study and trials, so each run is queued once.
    with store_lock(storage_url, f"study:{name}"):
        study = create_or_resume(storage, name, spec)
        added = enqueue_missing(study, factors, seed_list, Path(runs_root))
    total = len(combinations(factors)) * len(seed_list)
    print(f"study {name} in {storage_url}: {total} runs ({len(combinations(factors))} "
          f"combinations x {len(seed_list)} seeds), {added} queued now", file=sys.stderr)
    launch_workers(storage_url, name, workers, interval, progress, supplied)
    return study
