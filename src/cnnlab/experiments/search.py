"""`cnnlab search`: hyperparameter search with Optuna's samplers and pruners on the same store.

Samplers and pruners are not kept in the store, so every worker builds them from the study's
attributes. With one worker a seeded search is reproducible; several workers draw from salted
seeds so they do not propose the same points.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import optuna

from cnnlab.config import dump_yaml, load_config
from cnnlab.errors import UserError
from cnnlab.experiments.ablate import base_config, create_or_resume, launch_workers
from cnnlab.experiments.design import load_space, load_space_dict
from cnnlab.experiments.store import claim, load_study, open_storage, store_lock
from cnnlab.experiments.worker import DEFAULT_HEARTBEAT
from cnnlab.seeding import derive_seed

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


def make_sampler(name: str, seed: int, space: dict, salt: int = 0):
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=derive_seed(seed, "tpe", salt) % 2**31)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=derive_seed(seed, "random", salt) % 2**31)
    grid = {}
    for key, entry in load_space_dict(space).items():
        if hasattr(entry, "choices"):
            from cnnlab.experiments.design import choice_text

            grid[key] = [choice_text(c) for c in entry.choices]
        elif entry.type == "int":
            grid[key] = list(range(entry.low, entry.high + 1, entry.step))
        else:
            raise UserError(f"--sampler grid needs choices or int ranges, but {key} is a float "
                            "range; give it {choices: [...]} or use --sampler tpe")
    return optuna.samplers.GridSampler(grid, seed=seed)


def make_pruner(name: str, epochs: int):
    if name == "median":
        # Judge a run only after its first epoch, and only once two runs have finished.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    return optuna.pruners.NopPruner()


def search_study(storage, name: str, salt: int | None = None) -> optuna.Study:
    """The study with its sampler and pruner rebuilt from its attributes."""
    attrs = load_study(storage, name).user_attrs
    salt = os.getpid() if salt is None else salt
    sampler = make_sampler(attrs["sampler"], attrs["seed"], attrs["space"], salt)
    pruner = make_pruner(attrs["pruner"], attrs["epochs"])
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def ask_within_budget(study: optuna.Study):
    """A run put back by a dead worker first; else a new one while fewer than `trials` exist.
    Workers asking at the same moment can start up to workers-1 runs beyond the budget."""
    trial = claim(study)
    if trial is not None:
        return trial
    if len(study.get_trials(deepcopy=False)) >= study.user_attrs["trials"]:
        return None
    return study.ask()


def search(config_path: str, extra: list[str], space_path: str, trials: int,
           sampler: str = "tpe", pruner: str = "median", workers: int = 1,
           storage_url: str | None = None, study_name: str | None = None,
           metric: str = "val_acc", interval: float = DEFAULT_HEARTBEAT,
           progress: bool = False, runs_root: str = "runs") -> optuna.Study:
    if trials < 1 or workers < 0:
        raise UserError("--trials must be at least 1 and --workers at least 0 (0 only creates "
                        "the study, for `cnnlab worker` processes to serve)")
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)} and --pruner one of "
                        f"{', '.join(PRUNERS)}")
    base = base_config(config_path, extra)
    space = load_space(space_path)
    cfg = load_config(base)
    _check_space_keys(base, space)
    name = study_name or f"{cfg.name}-search"
    storage_url = storage_url or os.environ.get("CNNLAB_STORAGE") or "runs/optuna.journal"
    storage = open_storage(storage_url)
    spec = {"kind": "search", "config": base, "space": space, "trials": trials,
            "sampler": sampler, "pruner": pruner, "metric": metric, "seed": cfg.seed,
            "epochs": cfg.train.epochs, "runs_root": runs_root, "factors": None, "seeds": None}
    with store_lock(storage_url, f"study:{name}"):  # launches at once: one creates, others join
        create_or_resume(storage, name, spec, make_sampler(sampler, cfg.seed, space),
                         make_pruner(pruner, cfg.train.epochs))
    print(f"study {name} in {storage_url}: search of {trials} runs ({sampler} sampler, {pruner} "
          "pruner)", file=sys.stderr)
    launch_workers(storage_url, name, workers, interval, progress)
    return search_study(storage, name, salt=0)


def _check_space_keys(base: dict, space: dict) -> None:
    """Each key must be one the config accepts: try the space's first value of each."""
    from cnnlab.experiments.design import choice_text

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
