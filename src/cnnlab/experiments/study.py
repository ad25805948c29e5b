"""Studies: create or resume one, open one ready to serve, and pick a worker's next run.

A study says what it is in its user attributes (`kind`: ablation or search, with the rest of
its design). Optuna keeps neither samplers nor pruners in its storage, so every process that
opens a search rebuilds them from those attributes, here. `ablate`, `search` and `worker` all
go through this module and import none of each other.
"""

from __future__ import annotations

import math
import os

import optuna

from cnnlab.errors import UserError
from cnnlab.experiments.design import choice_text, load_space_dict
from cnnlab.experiments.statistics import accuracy_difference_noise
from cnnlab.experiments.store import load_study
from cnnlab.experiments.trial_queue import claim
from cnnlab.metric_names import direction
from cnnlab.seeding import derive_seed

# The attributes that make two launches the same experiment (one resumes the other).
DESIGN_KEYS = ("kind", "config", "factors", "seeds", "metric")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


def make_sampler(name: str, seed: int, space: dict, salt: int = 0) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=derive_seed(seed, "tpe", salt) % 2**31)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=derive_seed(seed, "random", salt) % 2**31)
    grid = {}
    for key, entry in load_space_dict(space).items():
        if hasattr(entry, "choices"):
            grid[key] = [choice_text(c) for c in entry.choices]
        elif entry.type == "int":
            grid[key] = list(range(entry.low, entry.high + 1, entry.step))
        else:
            raise UserError(f"--sampler grid needs choices or int ranges, but {key} is a float "
                            "range; give it {choices: [...]} or use --sampler tpe")
    return optuna.samplers.GridSampler(grid, seed=seed)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        # Judge a run only after its first epoch, and only once two runs have finished.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    return optuna.pruners.NopPruner()


class PairedHalving(optuna.pruners.BasePruner):
    """The doctor's pruner: Optuna's successive halving, with two guards for a paired design.

    - The first rung is half-way through a trial: early rankings reverse. On CIFAR-10 a
      ResNet-20 at LR 0.1 was behind the same net at 0.01 after 1 of 4 epochs and ahead after
      2 and 4.
    - A run is stopped only when it is also behind the baseline (the user's config) on its own
      seed at that epoch, by more than the noise of a val_acc difference, sqrt(2p(1-p)/n) on
      the n validation images. Halving ranks runs across seeds, and seeds differ more than
      configs do. In the same CIFAR-10 case, LR 0.1 on seed 1 was 0.275 at epoch 2, ahead of
      the baseline's 0.272 on that seed but below the top half of all runs (0.294, 0.278), and
      halving alone stopped the better LR.
    """

    def __init__(self, trial_epochs: int, val_images: int | None = None) -> None:
        self.halving = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, math.ceil(trial_epochs / 2)), reduction_factor=2)
        self.val_images = val_images

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if not self.halving.prune(study, trial):
            return False
        step = trial.last_step
        baseline = study.user_attrs["factors"][0]["baseline"]
        paired = next((t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
                       if t.user_attrs.get("label") == baseline and t.number != trial.number
                       and t.user_attrs.get("seed") == trial.user_attrs.get("seed")
                       and step in t.intermediate_values), None)
        if paired is None:
            return False  # nothing on this seed to be behind of yet
        margin = accuracy_difference_noise(paired, self.val_images) if self.val_images else 0.0
        return trial.intermediate_values[step] < paired - margin


def sampler_and_pruner(attrs: dict, salt: int) -> tuple[optuna.samplers.BaseSampler | None,
                                                        optuna.pruners.BasePruner | None]:
    """What a study with these attributes samples and prunes with. An ablation queues every
    run up front and prunes none, so Optuna's defaults (None) serve it; the doctor queues its
    runs up front too, and stops the losing candidates by successive halving."""
    if attrs.get("kind") == "doctor" and attrs.get("pruner") == "successive_halving":
        return None, PairedHalving(attrs["trial_epochs"], attrs.get("val_images"))
    if attrs.get("kind") != "search":
        return None, None
    return (make_sampler(attrs["sampler"], attrs["seed"], attrs["space"], salt),
            make_pruner(attrs["pruner"], attrs["epochs"]))


def create_or_resume(storage: optuna.storages.BaseStorage, name: str,
                     spec: dict) -> optuna.Study:
    """The study `name` with the design `spec` (its user attributes): created, or, when it
    exists with the same design, resumed; the same name with another design is an error."""
    sampler, pruner = sampler_and_pruner(spec, salt=0)
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


def open_study(storage: optuna.storages.BaseStorage, name: str, where: str | None = None,
               salt: int | None = None) -> optuna.Study:
    """The existing study `name`, ready to serve: a search gets its sampler and pruner rebuilt,
    the sampler's seed salted (default: the process id) so that workers propose different
    points. `where` (the storage as the user named it) goes into the error of a missing study."""
    study = load_study(storage, name, where)
    if study.user_attrs.get("kind") == "doctor":
        sampler, pruner = sampler_and_pruner(study.user_attrs, 0)
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if study.user_attrs.get("kind") != "search":
        return study
    salt = os.getpid() if salt is None else salt
    sampler, pruner = sampler_and_pruner(study.user_attrs, salt)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def next_trial(study: optuna.Study) -> optuna.Trial | None:
    """The run a worker trains next, or None: an ablation's runs are all queued; a search
    samples new ones until its budget is spent."""
    if study.user_attrs.get("kind") == "search":
        return ask_within_budget(study)
    return claim(study)


def ask_within_budget(study: optuna.Study) -> optuna.Trial | None:
    """A run put back by a dead worker first; else a new one while fewer than `trials` exist.
    Workers asking at the same moment can start up to workers-1 runs beyond the budget."""
    trial = claim(study)
    if trial is not None:
        return trial
    if len(study.get_trials(deepcopy=False)) >= study.user_attrs["trials"]:
        return None
    return study.ask()
