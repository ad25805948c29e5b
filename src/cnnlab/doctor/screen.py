"""Phase 1, at init: the config's propagation verdict, and, when it is not healthy, the
catalogue's inits, activations and norms screened on one batch each for those that make it so.

A candidate changes as few keys as possible: single changes first, pairs only when no single
change is healthy, so the doctor never recommends churn it did not need.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from cnnlab.doctor.plan import Clock
from cnnlab.doctor.runs import at_init, candidate_config, shared_data
from cnnlab.errors import UserError, first_line
from cnnlab.models.user_code import SuppliedModel

# The choices screened per key. Fixed-scale inits (normal, uniform, constant, zeros) are what the
# doctor fixes, not what it proposes; inits that only fit one architecture (fixup, dirac,
# whitening) fail to build elsewhere and are skipped there.
SCREENED = {
    "model.init": ["kaiming_normal", "kaiming_uniform", "orthogonal", "lecun_normal", "lsuv",
                   "xavier_normal", "torch_default"],
    "model.activation": ["relu", "leaky_relu", "gelu", "silu", "selu", "tanh"],
    "model.norm": ["batch", "group"],
}
KEEP = 2  # candidates carried on to the LR phase
# Screening is cheap per config but not on a deep net: it stops at this share of the budget.
SCREEN_SHARE = 0.25
PAIR_POOL = 3  # best values per key combined when no single change is healthy


@dataclass
class Candidate:
    changes: dict[str, str]  # config key -> value, the only keys the candidate changes
    report: dict  # the propagation report at init
    why: str = ""  # the measured cause, said in the summary

    @property
    def label(self) -> str:
        return ",".join(f"{k.split('.')[-1]}={v}" for k, v in self.changes.items()) or "original"


@dataclass
class Screening:
    original: dict  # the user's config's report
    candidates: list[Candidate] = field(default_factory=list)
    screened: int = 0  # how many configs were measured


def spread(report: dict) -> float:
    """How far the forward and backward ratios are from 1, in log units (0: perfect)."""
    total = 0.0
    for key in ("forward_input_ratio", "backward_ratio"):
        value = report.get(key)
        total += abs(math.log(value)) if value and math.isfinite(value) and value > 0 else 50.0
    return total


def rank(report: dict) -> tuple[int, float]:
    return (0 if report["verdict"] == "healthy" else 1, spread(report))


def current_value(cfg_dict: dict, key: str) -> str | None:
    section, name = key.split(".")
    value = (cfg_dict.get(section) or {}).get(name)
    if isinstance(value, dict):
        value = value.get("name")
    return None if value is None else str(value)


def key_order(advice: str) -> list[str]:
    """The screened keys, those the verdict's advice names first (its measured cause)."""
    return sorted(SCREENED, key=lambda key: (advice.find(key) < 0, advice.find(key)))


def screen(base: dict, say: Callable[[str], None], clock: Clock,
           supplied: SuppliedModel | None = None) -> Screening:
    """The original's verdict; when it is not healthy, the few best healthy candidates.
    `supplied`: the network given as model=, its init/activation/norm changed by the config."""
    original_cfg = candidate_config(base, {})
    data = shared_data(original_cfg)
    original = at_init(original_cfg, data, supplied)
    result = Screening(original, screened=1)
    say(f"at init: {original['verdict']}" + ("" if original["verdict"] == "healthy"
                                              else f" ({original['advice']})"))
    if original["verdict"] == "healthy":
        return result
    resolved = original_cfg.model_dump()
    measured: list[Candidate] = []

    limit = clock.budget * SCREEN_SHARE
    noted: set[str] = set()

    def measure(changes: dict[str, str]) -> None:
        if clock.used() > limit:
            return
        try:
            report = at_init(candidate_config(base, changes), data, supplied)
        except (UserError, ValueError, RuntimeError) as error:
            # Not buildable on this network: an init meant for another architecture, or an
            # activation a foreign network calls as a function. Said once per key, not per value.
            key = ",".join(changes)
            if key not in noted:
                noted.add(key)
                say(f"at init: skipped {key} changes on this network ({first_line(error)})")
            return
        result.screened += 1
        measured.append(Candidate(changes, report))

    for key in key_order(original["advice"]):
        now = current_value(resolved, key)
        for value in SCREENED[key]:
            if value != now:
                measure({key: value})
    healthy = [c for c in measured if c.report["verdict"] == "healthy"]
    if not healthy:
        best = {key: sorted((c for c in measured if key in c.changes),
                            key=lambda c: rank(c.report))[:PAIR_POOL] for key in SCREENED}
        for first in best["model.init"]:
            for second in best["model.activation"] + best["model.norm"]:
                measure({**first.changes, **second.changes})
        healthy = [c for c in measured if c.report["verdict"] == "healthy"]
    pool = healthy or measured
    pool.sort(key=lambda c: (rank(c.report), len(c.changes)))
    for candidate in pool[:KEEP]:
        candidate.why = (f"at init the original is {original['verdict']} ({original['advice']}); "
                         f"with {candidate.label} it is {candidate.report['verdict']}")
        result.candidates.append(candidate)
    if clock.used() > limit:
        say(f"screening stopped at {SCREEN_SHARE:.0%} of the budget")
    say(f"screened {result.screened} configs at init (one batch each); kept "
        + ", ".join(f"{c.label} ({c.report['verdict']})" for c in result.candidates))
    return result
