"""Phase 2, the learning rate: a range test per config, then a confirmation of three LRs around
its suggestion, each trained on the first seed for as long as the budget allows (the config's
full length when it fits; see plan.confirm_epochs).

The finder's valley sits below the LR that trains best: on digits it was 10-25x below the best
of a grid, and on a held-out ResNet-20 15x (issue 18). So the three LRs are half a decade apart
around 10x the valley, and none goes past the LR where the sweep's loss blew up, where training
diverges. The confirmation, not the finder, picks among them: the highest LR whose val_acc is
within one standard error of a difference of the best one's. One seed on a small validation set
cannot rank LRs whose accuracies differ by less than that noise, and where they tie the higher
LR was as good or better on every model and data measured (README, "cnnlab doctor").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cnnlab.doctor.runs import LONG_SWEEP_STEPS, candidate_config, range_test
from cnnlab.experiments.statistics import accuracy_difference_noise
from cnnlab.models.user_code import SuppliedModel

# Multiples of the valley suggestion tried: half a decade apart, centred on 10x.
BRACKET = (10 ** 0.5, 10.0, 10 ** 1.5)
FALLBACK = (1 / 3, 1.0, 3.0)  # multiples of the config's LR when the sweep suggests nothing


@dataclass
class LrChoice:
    """One config's range test and the LRs its confirmation tries (config units)."""
    label: str
    changes: dict[str, str]
    current: float
    sweep: dict
    tried: list[float] = field(default_factory=list)
    best: float | None = None
    best_value: float | None = None
    scores: dict[float, float | None] = field(default_factory=dict)


def lr_text(lr: float) -> str:
    """An LR as the config and labels write it: 3 significant digits."""
    return f"{lr:.3g}"


def bracket(sweep: dict, current: float) -> list[float]:
    """The three LRs to confirm, from the sweep's valley (config units)."""
    valley = valley_of(sweep)
    if valley is None:
        return sorted({float(lr_text(current * f)) for f in FALLBACK})
    # The sweep's last LR is where the loss passed 4x its best (or the sweep's end): above it
    # training diverges. In config units, like the valley.
    ceiling = valley * sweep["lrs"][-1] / sweep["suggestions"]["valley"]
    return sorted({float(lr_text(min(valley * f, ceiling))) for f in BRACKET})


def valley_of(sweep: dict) -> float | None:
    """The sweep's valley in config units, or None where it has none or learned nothing."""
    valley = sweep.get("optim_lr", {}).get("valley")
    if valley is None or not math.isfinite(valley) or valley <= 0:
        return None
    return None if learned_nothing(sweep) else valley


def learned_nothing(sweep: dict) -> bool:
    """The sweep reached its last LR without blowing up and its loss never got below a uniform
    guess's: too few steps to learn, so its valley is no LR that trains. (A sweep that blew up
    first found where training diverges, and its valley below that point is kept: on the
    planted 20-layer net with LSUV the 40-step sweep blew up above chance, and confirming
    around its valley found the fix, which a longer sweep's lower valley missed.)"""
    return sweep.get("stopped") == "completed" and not sweep.get("below_chance", True)


def learned_sweep(cfg, say, label: str, supplied: SuppliedModel | None = None) -> dict:
    """The doctor's range test of `cfg`, run again longer when the short one learned nothing."""
    sweep = range_test(cfg, supplied)
    if learned_nothing(sweep):
        say(f"lr: {label}: the {len(sweep['lrs'])}-step range test never got below a uniform "
            f"guess's loss ({sweep['chance_loss']:.2f}); sweeping again with {LONG_SWEEP_STEPS} "
            "steps")
        sweep = range_test(cfg, supplied, LONG_SWEEP_STEPS)
    return sweep


def sweep_config(base: dict, label: str, changes: dict[str, str], say,
                 supplied: SuppliedModel | None = None) -> LrChoice:
    cfg = candidate_config(base, changes)
    sweep = learned_sweep(cfg, say, label, supplied)
    choice = LrChoice(label, changes, cfg.optim.lr, sweep)
    choice.tried = bracket(sweep, cfg.optim.lr)
    valley = valley_of(sweep)
    never = ("none (the loss never fell below a uniform guess's "
             f"{sweep['chance_loss']:.2f})" if learned_nothing(sweep)
             else "none (the loss never fell)")
    say(f"lr: {label}: range test valley "
        + (f"{valley:.2g}" if valley else never)
        + f", stopped: {sweep['stopped']}; confirming "
        + ", ".join(lr_text(lr) for lr in choice.tried))
    return choice


def pick(choice: LrChoice, outcomes: dict[str, tuple[str, float | None]]) -> None:
    """The confirmed LR: see best_of (None: no confirmation run finished). `scores`
    holds each LR whose run ended: its val_acc, or None when it diverged."""
    for lr in choice.tried:
        status, value = outcomes.get(confirm_label(choice.label, lr), (None, None))
        if status in ("completed", "diverged"):
            choice.scores[lr] = value
    choice.best = best_of(choice.scores, choice.sweep.get("val_images"))
    if choice.best is not None:
        choice.best_value = choice.scores[choice.best]


def best_of(scores: dict[float, float | None], val_images: int | None = None) -> float | None:
    """The highest LR whose val_acc is within `accuracy_difference_noise(best, val_images)` of
    the best among those that finished (None: none did); without `val_images`, the best (a tie
    to the lower LR)."""
    finished = {lr: v for lr, v in scores.items() if v is not None}
    if not finished:
        return None
    best = max(finished.values())
    if not val_images:
        return max(finished, key=lambda lr: (finished[lr], -lr))
    margin = accuracy_difference_noise(best, val_images)
    return max(lr for lr, v in finished.items() if v >= best - margin)


def confirm_label(label: str, lr: float) -> str:
    return f"{label}@lr={lr_text(lr)}"


def diverged_everywhere(choice: LrChoice) -> bool:
    """Every LR tried ran, and every one diverged."""
    return (len(choice.scores) == len(choice.tried)
            and all(value is None for value in choice.scores.values()))
