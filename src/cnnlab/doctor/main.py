"""`cnnlab doctor`: from evidence to a decision, within a time budget.

Four phases, each on measurements of the user's own network and data:
1. at init: the propagation verdict, and healthy candidates screened on one batch each;
2. the learning rate: a range test per config, three LRs around it confirmed by runs as long
   as the config's (or as fit 35% of the budget);
3. paired short trials of the original and the candidates over paired seeds, successive halving
   stopping the losers, on an Optuna study (an interrupted doctor resumes);
4. the answer: recommended.yaml, the summary with each gain's 95% CI, the evidence page.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from cnnlab.config import load_config
from cnnlab.doctor.answer import Proposal, decide, summary_text, write_recommended
from cnnlab.doctor.evidence import write_page
from cnnlab.doctor.folder import claim
from cnnlab.doctor.lr import LrChoice, confirm_label, diverged_everywhere, lr_text, pick, \
    sweep_config, valley_of
from cnnlab.doctor.plan import LR_SHARE, Clock, budget_text, confirm_epochs, duration, \
    fit_trials, parse_budget
from cnnlab.doctor.rounds import Looks, affordable_looks, run_rounds
from cnnlab.doctor.screen import screen
from cnnlab.doctor.trials import Run, completed_folders, curves, enqueue, epoch_seconds, \
    open_phase, outcomes, pruned_seeds, results, serve
from cnnlab.errors import UserError
from cnnlab.experiments.design import base_config
from cnnlab.model_arg import require_factory
from cnnlab.models.user_code import supplied_model
from cnnlab.rundir import write_json

# An LR within this factor of the config's own is no change worth recommending.
SAME_LR = 1.5
# Every run the doctor trains: it chooses on val_acc and never looks at the test split, whose
# evaluation (10,000 images on CIFAR-10) would cost each run as much as an epoch.
RUN_SETTINGS = ("train.test=false",)


def doctor(config: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
           budget: str | float = "15m", seeds: int = 3, max_seeds: int | None = None,
           out: str | Path = "doctor",
           workers: int = 1, storage: str | None = None, study: str | None = None,
           say: Callable[[str], None] | None = None, model: object = None) -> dict:
    """Diagnose the config at `config` (with `overrides`), try the fixes the measurements point
    to, and write the answer under `out`; returns what doctor.json holds. `model`: your own
    network as a factory (in_channels, num_classes) -> nn.Module, called for every network the
    doctor builds (the config's model.init/activation/norm change it as for `arch: python`); its
    trials run in this process only (workers=1). `max_seeds` (default 8 x `seeds`): how many
    paired seeds the trials may grow to while a proposal is ahead with an interval across zero
    (see doctor.rounds); equal to `seeds` for one look at the usual 95%."""
    say = say or (lambda text: print(f"doctor: {text}", file=sys.stderr, flush=True))
    if seeds < 2:
        raise UserError(f"--seeds {seeds} cannot give a confidence interval; use --seeds 2 or "
                        "more (3 is the default)")
    max_seeds = 8 * seeds if max_seeds is None else max_seeds
    if max_seeds < seeds:
        raise UserError(f"--max-seeds {max_seeds} is below --seeds {seeds}; give --max-seeds "
                        f"{seeds} or more (the trials start on --seeds and may grow to it)")
    if workers < 1:
        raise UserError(f"--workers {workers} must be at least 1")
    supplied = supplied_model(model)
    if supplied is not None and workers != 1:
        raise UserError(f"doctor with model= runs every trial in this process, and "
                        f"workers={workers} would need other processes, which cannot receive a "
                        "Python object; use workers=1, or put the network in a file and use "
                        "model: {arch: file, path: ..., factory: ...}")
    require_factory(supplied, "doctor")
    clock = Clock(parse_budget(budget))
    base = base_config(str(config), list(overrides), supplied)
    folder = claim(out)
    storage_url = storage or folder.storage_url
    name = study or f"{load_config(base).name}-doctor"
    first_seed = int(base.get("seed", 0))
    seed_list = [first_seed + k for k in range(max_seeds)]

    say(f"phase 1/4 at init, budget {duration(clock.budget)}")
    screening = screen(base, say, clock, supplied)

    say(f"phase 2/4 learning rate, {duration(clock.left())} left")
    started = time.monotonic()
    choices = [sweep_config(base, "original", {}, say, supplied)] + [
        sweep_config(base, c.label, c.changes, say, supplied) for c in screening.candidates]
    sweep_seconds = (time.monotonic() - started) / len(choices)
    epochs = load_config(base).train.epochs
    labels = [confirm_label(c.label, lr) for c in choices for lr in c.tried]
    # What a sweep spent outside its steps (the model and the data) is what a run spends too.
    overhead = max(0.0, choices[0].sweep.get("seconds", sweep_seconds)
                   - choices[0].sweep.get("step_seconds", 0.0)
                   * len(choices[0].sweep.get("lrs", [])))
    length, run_seconds = confirm_epochs(len(labels), epochs, choices[0].sweep, overhead,
                                         clock.left() * LR_SHARE)
    lr_study = open_phase(storage_url, f"{name}-lr", base, labels, [first_seed], pruned=False,
                          epochs=length)
    # A resumed study keeps the length it started with.
    length = lr_study.user_attrs["trial_epochs"]
    say(f"lr: {len(labels)} confirmation runs of {length} epoch{'s' if length != 1 else ''}")
    confirm = [Run(confirm_label(c.label, lr), _overrides(c.changes, lr)
                   + (f"train.epochs={length}",) + RUN_SETTINGS, first_seed)
               for c in choices for lr in c.tried]
    enqueue(lr_study, confirm, folder.runs)
    lr_deadline = Clock(clock.left() * LR_SHARE + run_seconds)
    lr_complete = serve(lr_study, _earlier(clock, lr_deadline), run_seconds, say, "lr", workers,
                        storage_url, supplied)
    confirmed = outcomes(lr_study)
    for choice in choices:
        pick(choice, confirmed)
    if all(diverged_everywhere(c) for c in choices):
        return _finish(folder, {**_not_the_lr(screening.original, choices),
                                "confirm_epochs": length}, screening, choices,
                       None, say)

    proposals = _proposals(screening, choices)
    if len(proposals) == 1 and lr_complete:
        # Every LR was confirmed and nothing but your config is left to try: paired trials
        # would measure it against nothing.
        say("phase 3/4 paired trials: nothing to compare with your config, none run")
        answer = decide(proposals, {})
        answer.update({"complete": True, "plan": "no trials: nothing to compare",
                       "confirm_epochs": length, "config": str(config),
                       "overrides": list(overrides)})
        write_recommended(config, list(overrides), answer, folder.recommended)
        return _finish(folder, answer, screening, choices, None, say)
    say(f"phase 3/4 paired trials, {duration(clock.left())} left")
    measured = epoch_seconds(lr_study) or (sweep_seconds, sweep_seconds)
    # A confirmation run whose config is a proposal's first-seed trial counts as that trial.
    reuse = _reusable(base, proposals, choices, completed_folders(lr_study), length, first_seed)
    plan = fit_trials(len(proposals), seeds, epochs, measured[0], measured[1], clock.left(),
                      reusable={length: len(reuse)})
    if plan is None:
        shortest = fit_trials(max(len(proposals), len(choices)), seeds, 1, measured[0],
                              measured[1], float("inf"))
        one_epoch = budget_text(1.2 * (clock.used() + shortest.seconds))
        full = budget_text(clock.used() + shortest.runs * (measured[1] + epochs * measured[0]))
        raise UserError(
            f"--budget {budget} is too small for even one trial per candidate "
            f"({shortest.line()[6:]}, with {duration(clock.left())} left after the init and LR "
            f"phases); --budget {one_epoch} would run one epoch of each and --budget {full} "
            "the config's full schedule")
    looks = affordable_looks(seeds, max_seeds, clock.left() - plan.seconds, plan.run_seconds)
    trial_study = open_phase(storage_url, name, base, [p.label for p in proposals], seed_list,
                             pruned=plan.epochs >= 3, epochs=plan.epochs,
                             val_images=choices[0].sweep.get("val_images"),
                             looks=list(looks.counts))
    # A resumed study keeps the trial length and the looks it started with, so its pairs stay
    # comparable and its intervals keep their level.
    trial_epochs = trial_study.user_attrs["trial_epochs"]
    looks = Looks(tuple(trial_study.user_attrs.get("looks", looks.counts)))
    say(f"{plan.line()}; {looks.line()}")
    if trial_epochs != length:
        reuse = {}

    def train(active: list[Proposal], seeds_now: list[int]) -> bool:
        enqueue(trial_study, _trial_runs(active, seeds_now, looks.counts[0], trial_epochs,
                                         reuse), folder.runs)
        return serve(trial_study, clock, plan.run_seconds, say, "trials", workers, storage_url,
                     supplied)

    answer = run_rounds(proposals, seed_list, looks, train,
                        lambda: (results(trial_study), pruned_seeds(trial_study)), clock,
                        plan.run_seconds, say, most=max_seeds)

    say("phase 4/4 the answer")
    answer.update({"plan": plan.line(), "study": name,
                   "confirm_epochs": length,
                   "storage": storage_url, "trial_epochs": trial_epochs,
                   "config": str(config), "overrides": list(overrides)})
    write_recommended(config, list(overrides), answer, folder.recommended)
    return _finish(folder, answer, screening, choices, curves(trial_study), say)


def _trial_runs(proposals: list[Proposal], seeds: list[int], first_seeds: int,
                trial_epochs: int, reuse: dict[str, Path]) -> list[Run]:
    """The trials of `proposals` on `seeds`. Successive halving may stop a candidate's run only
    on the first look's seeds after the first: the first seed of every config runs to the end,
    so halving judges the later seeds against all of them (not whichever ran first); the
    original always does; and a candidate given more seeds for being ahead runs them to the
    end, since halving has dropped the losers by then, and a run cut mid-way would leave its
    pair out of the comparison (on CIFAR-10 one was, at epoch 2 of 4)."""
    first = seeds[0]
    return [Run(p.label, _overrides(p.changes, None) + (f"train.epochs={trial_epochs}",)
                + RUN_SETTINGS, seed,
                baseline=p.label == "original" or seed == first or seed >= first + first_seeds,
                folder=reuse.get(p.label) if seed == first else None)
            for seed in seeds for p in proposals]


def _earlier(first: Clock, second: Clock) -> Clock:
    return first if first.left() <= second.left() else second


def _overrides(changes: dict[str, str], lr: float | None) -> tuple[str, ...]:
    items = [f"{k}={v}" for k, v in changes.items()]
    return tuple(items + ([f"optim.lr={lr_text(lr)}"] if lr is not None else []))


def _reusable(base: dict, proposals: list[Proposal], choices: list[LrChoice],
              folders: dict[str, Path], epochs: int, seed: int) -> dict[str, Path]:
    """label -> the folder of an LR-phase run (finished on `seed`, `epochs` long) whose config is
    exactly the proposal's first-seed trial of that length: training it again would repeat the
    same run to the bit, so the trial reads it instead."""
    trained = [(folders[confirm_label(c.label, lr)],
                _resolved(base, _overrides(c.changes, lr), epochs, seed))
               for c in choices for lr in c.tried if confirm_label(c.label, lr) in folders]
    found = {}
    for proposal in proposals:
        wanted = _resolved(base, _overrides(proposal.changes, None), epochs, seed)
        match = next((folder for folder, cfg in trained if cfg == wanted), None)
        if match is not None:
            found[proposal.label] = match
    return found


def _resolved(base: dict, overrides: tuple[str, ...], epochs: int, seed: int) -> dict:
    return load_config(base, [*overrides, *RUN_SETTINGS, f"train.epochs={epochs}",
                              f"seed={seed}"]).model_dump(mode="json")


def _proposals(screening, choices: list[LrChoice]) -> list[Proposal]:
    """The original (unchanged, the baseline), the original at its confirmed LR when that is
    another LR, and each screened candidate at its confirmed LR."""
    original = choices[0]
    proposals = [Proposal("original", {}, "your config as it is")]
    if original.best is not None and not _same_lr(original.best, original.current):
        proposals.append(Proposal(
            f"lr={lr_text(original.best)}", {"optim.lr": lr_text(original.best)},
            _lr_why(original)))
    for candidate, choice in zip(screening.candidates, choices[1:]):
        if choice.best is None:
            continue
        changes = dict(candidate.changes)
        why = candidate.why
        if not _same_lr(choice.best, choice.current):
            changes["optim.lr"] = lr_text(choice.best)
            why += "; " + _lr_why(choice)
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in changes.items())
        proposals.append(Proposal(label, changes, why))
    return proposals


def _same_lr(a: float, b: float) -> bool:
    return 1 / SAME_LR <= a / b <= SAME_LR


def _lr_why(choice: LrChoice) -> str:
    tried = ", ".join(f"{lr_text(lr)}: " + ("diverged" if v is None else f"val_acc {v:.3f}")
                      for lr, v in choice.scores.items())
    valley = valley_of(choice.sweep)
    return (f"the range test's valley was {valley:.2g} and of the LRs confirmed around it ({tried}"
            f") {lr_text(choice.best)} was best, against the config's {lr_text(choice.current)}"
            if valley else f"of the LRs confirmed ({tried}) {lr_text(choice.best)} was best")


def _not_the_lr(original: dict, choices: list[LrChoice]) -> dict:
    tried = sorted({lr_text(lr) for c in choices for lr in c.tried})
    return {"decision": "not the lr",
            "message": (f"every candidate diverged at every LR tried ({', '.join(tried)}), so the "
                        f"problem is not the learning rate; at init the config is "
                        f"{original['verdict']}: {original['advice']}"),
            "changes": {}, "comparisons": []}


def _finish(folder, answer: dict, screening, choices, trial_curves, say) -> dict:
    answer["at_init"] = {"verdict": screening.original["verdict"],
                         "advice": screening.original["advice"],
                         "screened": screening.screened,
                         "candidates": [{"label": c.label, "verdict": c.report["verdict"]}
                                        for c in screening.candidates]}
    answer["lr"] = [{"label": c.label, "valley": valley_of(c.sweep),
                     "tried": c.tried, "scores": {lr_text(k): v for k, v in c.scores.items()},
                     "best": c.best} for c in choices]
    answer["outputs"] = {"recommended": str(folder.recommended) if folder.recommended.exists()
                         else None, "report": str(folder.report)}
    write_json(folder.result, answer)
    write_page(folder, answer, screening, choices, trial_curves)
    print(summary_text(answer), flush=True)
    return answer
