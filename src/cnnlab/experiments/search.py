"""`cnnlab search`: hyperparameter search with Optuna's samplers and pruners on the same store.

Samplers and pruners are not kept in the store, so every worker rebuilds them from the study's
attributes (`study.open_study`). With one worker a seeded search is reproducible; several workers
draw from salted seeds so they do not propose the same points.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import optuna

from cnnlab.config import dump_yaml, load_config
from cnnlab.errors import UserError
from cnnlab.experiments.design import base_config, choice_text, load_space, load_space_dict
from cnnlab.experiments.launch import launch_workers
from cnnlab.models.user_code import study_model_source
from cnnlab.experiments.store import open_storage, resolve_storage, store_lock
from cnnlab.experiments.study import PRUNERS, SAMPLERS, create_or_resume, open_study
from cnnlab.experiments.trial_queue import DEFAULT_HEARTBEAT


def search(config_path: str, *, space_path: str, trials: int, extra: Sequence[str] = (),
           sampler: str = "tpe", pruner: str = "median", workers: int = 1,
           storage_url: str | None = None, study_name: str | None = None,
           metric: str = "val_acc", interval: float = DEFAULT_HEARTBEAT,
           progress: bool = False, runs_root: str = "runs") -> optuna.Study:
    """Search the space file's keys for the best `metric` with `trials` runs on a study (created,
    or resumed when it exists), served by `workers` local workers (0: only create the study)."""
    if trials < 1 or workers < 0:
        raise UserError("--trials must be at least 1 and --workers at least 0 (0 only creates "
                        "the study, for `cnnlab worker` processes to serve)")
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)} and --pruner one of "
                        f"{', '.join(PRUNERS)}")
    base = base_config(config_path, list(extra))
    space = load_space(space_path)
    cfg = load_config(base)
    _check_space_keys(base, space)
    name = study_name or f"{cfg.name}-search"
    storage_url, _ = resolve_storage(storage_url)
    storage = open_storage(storage_url)
    spec = {"kind": "search", "config": base, "space": space, "trials": trials,
            "sampler": sampler, "pruner": pruner, "metric": metric, "seed": cfg.seed,
            "epochs": cfg.train.epochs, "runs_root": runs_root, "factors": None, "seeds": None,
            **study_model_source(base)}
    with store_lock(storage_url, f"study:{name}"):  # launches at once: one creates, others join
        create_or_resume(storage, name, spec)
    print(f"study {name} in {storage_url}: search of {trials} runs ({sampler} sampler, {pruner} "
          "pruner)", file=sys.stderr)
    launch_workers(storage_url, name, workers, interval, progress)
    return open_study(storage, name, salt=0)


def _check_space_keys(base: dict, space: dict) -> None:
    """Each key must be one the config accepts: try the space's first value of each."""
    probes = []
    for key, entry in load_space_dict(space).items():
        value = choice_text(entry.choices[0]) if hasattr(entry, "choices") else entry.low
        probes.append(f"{key}={value}")
    load_config(base, probes)


def best_config(study: optuna.Study, out: str | Path) -> dict:
    """Write the base config with the best run's overrides to `out`; returns the best trial."""
    try:
        best = study.best_trial
    except ValueError:
        raise UserError(f"study {study.study_name} has no finished run yet, so there is no best "
                        "config to write") from None
    cfg = load_config(study.user_attrs["config"], list(best.user_attrs["overrides"]))
    Path(out).write_text(dump_yaml(cfg))
    return {"number": best.number, "value": best.value, "overrides": best.user_attrs["overrides"],
            "run_dir": best.user_attrs.get("run_dir")}
