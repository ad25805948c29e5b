"""Phase 2, the learning rate: a range test per config, then a short confirmation of three LRs
around its suggestion, each trained for one epoch on the first seed.

The finder's valley sits below the LR that trains best: on digits it was 10-25x below the best
of a grid, and on a held-out ResNet-20 15x (issue 18). So the three LRs bracket 10x the valley
geometrically (3x, 10x, 30x), and none goes past the LR where the sweep's loss blew up, where
training diverges. The confirmation, not the finder, picks among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cnnlab.doctor.runs import candidate_config, range_test
from cnnlab.models.user_code import SuppliedModel

BRACKET = (3.0, 10.0, 30.0)  # multiples of the valley suggestion tried
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
    valley = sweep.get("optim_lr", {}).get("valley")
    if valley is None or not math.isfinite(valley) or valley <= 0:
        return sorted({float(lr_text(current * f)) for f in FALLBACK})
    # The sweep's last LR is where the loss passed 4x its best (or the sweep's end): above it
    # training diverges. In config units, like the valley.
    ceiling = valley * sweep["lrs"][-1] / sweep["suggestions"]["valley"]
    return sorted({float(lr_text(min(valley * f, ceiling))) for f in BRACKET})


def sweep_config(base: dict, label: str, changes: dict[str, str], say,
                 supplied: SuppliedModel | None = None) -> LrChoice:
    cfg = candidate_config(base, changes)
    sweep = range_test(cfg, supplied)
    choice = LrChoice(label, changes, cfg.optim.lr, sweep)
    choice.tried = bracket(sweep, cfg.optim.lr)
    valley = sweep.get("optim_lr", {}).get("valley")
    say(f"lr: {label}: range test valley "
        + (f"{valley:.2g}" if valley else "none (the loss never fell)")
        + f", stopped: {sweep['stopped']}; confirming "
        + ", ".join(lr_text(lr) for lr in choice.tried))
    return choice


def pick(choice: LrChoice, outcomes: dict[str, tuple[str, float | None]]) -> None:
    """The confirmed LR: the best val_acc after the short run (None: none finished). `scores`
    holds each LR whose run ended: its val_acc, or None when it diverged."""
    for lr in choice.tried:
        status, value = outcomes.get(confirm_label(choice.label, lr), (None, None))
        if status in ("completed", "diverged"):
            choice.scores[lr] = value
    finished = {lr: v for lr, v in choice.scores.items() if v is not None}
    if finished:
        choice.best = max(finished, key=lambda lr: (finished[lr], -lr))
        choice.best_value = finished[choice.best]


def confirm_label(label: str, lr: float) -> str:
    return f"{label}@lr={lr_text(lr)}"


def diverged_everywhere(choice: LrChoice) -> bool:
    """Every LR tried ran, and every one diverged."""
    return (len(choice.scores) == len(choice.tried)
            and all(value is None for value in choice.scores.values()))
