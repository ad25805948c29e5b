"""Oracle tests for the learning-rate schedules.

1. Every schedule that `torch.optim.lr_scheduler` also has must give torch's LR (and momentum)
   sequence over a whole run, stepping torch the standard way (read the lr, `optimizer.step()`,
   `scheduler.step()`).
2. Every registered schedule, with and without a warmup, must reproduce its uninterrupted trace
   exactly when the run is resumed at any step (a new `Schedule` plus `load_state_dict`).
3. A warmup ramps to the schedule's first value, then the schedule runs on its own clock.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import TypeAdapter
from torch.optim import lr_scheduler as tls

from cnnlab.components.schedules import SCHEDULES, Context, Schedule, ScheduleSpec

SPEC = TypeAdapter(ScheduleSpec)
REL = 1e-9  # relative tolerance against torch
# Where torch's value is exactly 0 or below 1e-12 * base lr (polynomial/linear reaching 0,
# one_cycle's final lr, ...), a relative tolerance is meaningless: compare with an absolute
# tolerance of 1e-12 * base lr instead.
TINY = 1e-12


def ours(spec: dict, total: int, base: float, per_epoch: float = 1.0,
         momentum: float | None = 0.9) -> Schedule:
    return Schedule(SPEC.validate_python(spec), Context(base, total, per_epoch, momentum))


def sgd(base: float) -> torch.optim.SGD:
    p = torch.zeros(1, requires_grad=True)
    return torch.optim.SGD([p], lr=base, momentum=0.9)


def torch_trace(make, steps: int, base: float, key: str | None = None):
    """LRs (and `key` of the param group, e.g. momentum) for optimizer steps 0..steps-1."""
    optimizer = sgd(base)
    scheduler = make(optimizer)
    lrs, extra = [], []
    for _ in range(steps):
        group = optimizer.param_groups[0]
        lrs.append(float(group["lr"]))
        if key is not None:
            extra.append(float(group[key]))
        optimizer.step()
        scheduler.step()
    return lrs, extra


def assert_close_trace(got: list[float], expected: list[float], scale: float, what: str = "lr"):
    assert len(got) == len(expected)
    for t, (g, e) in enumerate(zip(got, expected)):
        if abs(e) < TINY * scale:  # see TINY: absolute tolerance near 0
            ok = abs(g - e) <= TINY * scale
        else:
            ok = abs(g - e) <= REL * abs(e)
        assert ok, f"{what} at step {t}: ours {g!r}, torch {e!r} (rel {abs(g - e) / abs(e or 1)})"


# ---------------------------------------------------------------------------------------------
# 1. Against torch, lengths in steps.

N = 100
BASE = 0.37

# (id, our spec, torch scheduler factory, compare momentum too)
TORCH_CASES = [
    ("constant", {"name": "constant"}, lambda o: tls.ConstantLR(o, factor=1.0, total_iters=N),
     False),
    ("step", {"name": "step", "step_size": 7, "gamma": 0.5},
     lambda o: tls.StepLR(o, step_size=7, gamma=0.5), False),
    ("step-1", {"name": "step", "step_size": 1, "gamma": 0.9},
     lambda o: tls.StepLR(o, step_size=1, gamma=0.9), False),
    ("multistep", {"name": "multistep", "milestones": [10, 25, 40, 99], "gamma": 0.3},
     lambda o: tls.MultiStepLR(o, milestones=[10, 25, 40, 99], gamma=0.3), False),
    # A repeated milestone applies gamma twice in torch (a Counter).
    ("multistep-repeated", {"name": "multistep", "milestones": [0, 25, 25, 60], "gamma": 0.5},
     lambda o: tls.MultiStepLR(o, milestones=[0, 25, 25, 60], gamma=0.5), False),
    ("exponential", {"name": "exponential", "gamma": 0.93},
     lambda o: tls.ExponentialLR(o, gamma=0.93), False),
    ("polynomial-1", {"name": "polynomial", "power": 1.0},
     lambda o: tls.PolynomialLR(o, total_iters=N, power=1.0), False),
    ("polynomial-2", {"name": "polynomial", "power": 2.0},
     lambda o: tls.PolynomialLR(o, total_iters=N, power=2.0), False),
    ("polynomial-0.5-short", {"name": "polynomial", "power": 0.5, "total": 60},
     lambda o: tls.PolynomialLR(o, total_iters=60, power=0.5), False),
    ("linear-down", {"name": "linear", "start_factor": 1.0, "end_factor": 0.0},
     lambda o: tls.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=N), False),
    ("linear-up-short", {"name": "linear", "start_factor": 0.25, "end_factor": 1.0, "total": 30},
     lambda o: tls.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=30), False),
    ("linear-partial", {"name": "linear", "start_factor": 0.8, "end_factor": 0.05, "total": 77},
     lambda o: tls.LinearLR(o, start_factor=0.8, end_factor=0.05, total_iters=77), False),
    ("cosine", {"name": "cosine"}, lambda o: tls.CosineAnnealingLR(o, T_max=N), False),
    ("cosine-min", {"name": "cosine", "min_lr": 0.004},
     lambda o: tls.CosineAnnealingLR(o, T_max=N, eta_min=0.004), False),
    ("cosine_restarts", {"name": "cosine_restarts", "period": 10},
     lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=10), False),
    ("cosine_restarts-mult2", {"name": "cosine_restarts", "period": 7, "period_mult": 2,
                               "min_lr": 0.002},
     lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2, eta_min=0.002), False),
    ("cosine_restarts-mult3", {"name": "cosine_restarts", "period": 3, "period_mult": 3},
     lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3), False),
]

for anneal in ("cos", "linear"):
    for three_phase in (False, True):
        for pct, div, final_div in ((0.3, 25.0, 1e4), (0.25, 10.0, 100.0), (0.37, 4.0, 1e3)):
            TORCH_CASES.append((
                f"one_cycle-{anneal}-{'3' if three_phase else '2'}phase-{pct}",
                {"name": "one_cycle", "pct_start": pct, "anneal": anneal, "div_factor": div,
                 "final_div_factor": final_div, "three_phase": three_phase,
                 "base_momentum": 0.8, "max_momentum": 0.93},
                lambda o, a=anneal, t=three_phase, p=pct, d=div, f=final_div: tls.OneCycleLR(
                    o, max_lr=BASE, total_steps=N, pct_start=p, anneal_strategy=a,
                    div_factor=d, final_div_factor=f, three_phase=t, cycle_momentum=True,
                    base_momentum=0.8, max_momentum=0.93),
                True))

for mode, gamma, up, down in (("triangular", 1.0, 5, None), ("triangular", 1.0, 3, 8),
                              ("triangular2", 1.0, 4, 6), ("triangular2", 1.0, 7, None),
                              ("exp_range", 0.97, 3, 5), ("exp_range", 0.99, 6, None)):
    TORCH_CASES.append((
        f"cyclic-{mode}-{up}-{down}",
        {"name": "cyclic", "min_lr": 0.01, "step_size_up": up, "step_size_down": down,
         "mode": mode, "gamma": gamma, "base_momentum": 0.82, "max_momentum": 0.91},
        lambda o, m=mode, g=gamma, u=up, d=down: tls.CyclicLR(
            o, base_lr=0.01, max_lr=BASE, step_size_up=u, step_size_down=d, mode=m, gamma=g,
            cycle_momentum=True, base_momentum=0.82, max_momentum=0.91),
        True))


@pytest.mark.parametrize("spec,make,with_momentum", [c[1:] for c in TORCH_CASES],
                         ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_over_a_whole_run_in_steps(spec, make, with_momentum):
    schedule = ours({**spec, "unit": "step"}, N, BASE)
    expected, expected_momentum = torch_trace(make, N, BASE, "momentum" if with_momentum else None)
    assert_close_trace([schedule.lr(t) for t in range(N)], expected, BASE)
    if with_momentum:
        assert_close_trace([schedule.momentum(t) for t in range(N)], expected_momentum, 1.0,
                           "momentum")


@pytest.mark.parametrize("spec,make", [
    ({"name": "step", "step_size": 3, "gamma": 0.5},
     lambda o: tls.StepLR(o, step_size=3, gamma=0.5)),
    ({"name": "multistep", "milestones": [4, 9, 9, 15], "gamma": 0.4},
     lambda o: tls.MultiStepLR(o, milestones=[4, 9, 9, 15], gamma=0.4)),
    ({"name": "exponential", "gamma": 0.8}, lambda o: tls.ExponentialLR(o, gamma=0.8)),
], ids=["step", "multistep", "exponential"])
@pytest.mark.parametrize("per_epoch", [1, 5, 13])
def test_epoch_units_match_torch_stepped_once_per_epoch(spec, make, per_epoch):
    epochs = 20
    schedule = ours(spec, epochs * per_epoch, BASE, per_epoch)  # unit: epoch is the default
    per_epoch_lr, _ = torch_trace(make, epochs, BASE)
    # Our LR at every step within an epoch equals torch's LR for that epoch.
    expected = [lr for lr in per_epoch_lr for _ in range(per_epoch)]
    assert_close_trace([schedule.lr(t) for t in range(epochs * per_epoch)], expected, BASE)


# Fractional epochs: 1.1 epochs * 100 steps is 110.00000000000001 in floating point, which must
# not move a milestone, a decay step or a restart one step late.
@pytest.mark.parametrize("spec,make", [
    ({"name": "multistep", "milestones": [0.07, 1.1, 1.87], "gamma": 0.5},
     lambda o: tls.MultiStepLR(o, milestones=[7, 110, 187], gamma=0.5)),
    ({"name": "step", "step_size": 0.07, "gamma": 0.9}, lambda o: tls.StepLR(o, 7, 0.9)),
    ({"name": "step", "step_size": 1.1, "gamma": 0.5}, lambda o: tls.StepLR(o, 110, 0.5)),
    ({"name": "cosine_restarts", "period": 0.07, "period_mult": 2},
     lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2)),
    ({"name": "cosine_restarts", "period": 1.1},
     lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=110)),
], ids=["multistep", "step-0.07", "step-1.1", "cosine_restarts-0.07", "cosine_restarts-1.1"])
def test_fractional_epoch_lengths_land_on_the_exact_step(spec, make):
    per_epoch, total = 100, 400
    schedule = ours(spec, total, BASE, per_epoch)
    expected, _ = torch_trace(make, total, BASE)
    assert_close_trace([schedule.lr(t) for t in range(total)], expected, BASE)


# Scripted metrics, 30 epochs: improvements large and tiny (below a 1e-4 relative threshold,
# above or below a 0.01 absolute one), flat stretches and relapses.
LOSSES = [2.0, 1.5, 1.2, 1.1999, 1.19995, 1.25, 1.3, 1.0, 0.99, 0.995,
          0.9899, 0.98, 0.98, 0.98, 0.97, 1.1, 1.2, 0.5, 0.5, 0.49999,
          0.5, 0.6, 0.7, 0.8, 0.3, 0.3, 0.3, 0.3, 0.3, 0.29]
ACCURACIES = [0.1, 0.3, 0.3, 0.30002, 0.31, 0.305, 0.4, 0.4, 0.4, 0.41,
              0.45, 0.449, 0.6, 0.6, 0.60001, 0.59, 0.58, 0.7, 0.705, 0.71,
              0.71, 0.71, 0.71, 0.71, 0.9, 0.8, 0.8, 0.95, 0.95, 0.95]

PLATEAU_CASES = [
    ("min-rel", LOSSES, {"mode": "min", "factor": 0.5, "patience": 1, "threshold": 1e-4}),
    ("min-rel-p0-cooldown", LOSSES, {"mode": "min", "factor": 0.7, "patience": 0, "cooldown": 2}),
    ("min-abs", LOSSES, {"mode": "min", "factor": 0.5, "patience": 2, "threshold": 0.01,
                         "threshold_mode": "abs", "cooldown": 1}),
    ("min-abs-floor", LOSSES, {"mode": "min", "factor": 0.3, "patience": 0, "threshold": 0.01,
                               "threshold_mode": "abs", "min_lr": 0.02}),
    ("max-rel", ACCURACIES, {"mode": "max", "factor": 0.5, "patience": 1, "threshold": 1e-3}),
    ("max-rel-cooldown-floor", ACCURACIES, {"mode": "max", "factor": 0.2, "patience": 0,
                                            "cooldown": 3, "min_lr": 0.01}),
    ("max-abs", ACCURACIES, {"mode": "max", "factor": 0.5, "patience": 1, "threshold": 0.02,
                             "threshold_mode": "abs"}),
    ("max-abs-default-patience", ACCURACIES, {"mode": "max", "threshold_mode": "abs"}),
]


@pytest.mark.parametrize("base", [BASE, 3e-8])  # 3e-8: torch skips changes below eps=1e-8
@pytest.mark.parametrize("metrics,options", [c[1:] for c in PLATEAU_CASES],
                         ids=[c[0] for c in PLATEAU_CASES])
def test_plateau_matches_torch(metrics, options, base):
    per_epoch = 4
    name = "val_acc" if options["mode"] == "max" else "val_loss"
    schedule = ours({"name": "plateau", "metric": name, **options}, len(metrics) * per_epoch,
                    base, per_epoch)
    optimizer = sgd(base)
    keys = {"mode", "factor", "patience", "cooldown", "threshold", "threshold_mode", "min_lr"}
    reference = tls.ReduceLROnPlateau(optimizer, **{k: v for k, v in options.items()
                                                    if k in keys})
    got, expected = [], []
    for epoch, value in enumerate(metrics):
        # Constant within the epoch, equal to torch's lr for it.
        steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        assert len({schedule.lr(t) for t in steps}) == 1
        got.append(schedule.lr(epoch * per_epoch))
        expected.append(optimizer.param_groups[0]["lr"])
        schedule.observe({name: value, "other": 123.0})
        reference.step(value)
    got.append(schedule.lr(len(metrics) * per_epoch))  # after the last observe
    expected.append(optimizer.param_groups[0]["lr"])
    assert_close_trace(got, expected, base)
    if base == BASE and "patience" in options:  # (default patience 10: nothing happens)
        assert len(set(expected)) > 1  # the script does make torch reduce


# ---------------------------------------------------------------------------------------------
# 2. Resuming reproduces the uninterrupted trace exactly, for every registered schedule.

PER_EPOCH = 7
EPOCHS = 24
TOTAL = PER_EPOCH * EPOCHS
# Options that make a schedule change within this short run; a schedule not listed here runs
# with its defaults, so a newly registered one is still covered.
INTERESTING = {
    "step": {"step_size": 5},
    "multistep": {"milestones": [3, 8, 8, 15.5]},
    "exponential": {"gamma": 0.9},
    "polynomial": {"power": 2.0, "total": 18},
    "linear": {"start_factor": 0.9, "end_factor": 0.1, "total": 20},
    "cosine": {"min_lr": 0.001},
    "cosine_restarts": {"period": 3, "period_mult": 2, "decay": 0.7},
    "cyclic": {"step_size_up": 1.5, "step_size_down": 2, "mode": "triangular2"},
    "plateau": {"patience": 1, "cooldown": 1, "factor": 0.5, "min_lr": 0.004},
    "inverse_sqrt": {"timescale": 2},
}
WARMUPS = {"none": {}, "linear-steps": {"warmup": {"steps": 9, "start_factor": 0.1}},
           "cosine-epochs": {"warmup": {"epochs": 2.5, "start_factor": 0.0, "kind": "cosine"}}}
# A validation loss that improves, stalls and relapses, one value per epoch.
VAL_LOSSES = [1.0 / (1 + e) if e < 6 else 0.2 + 0.01 * ((e * 7) % 5) for e in range(EPOCHS)]


def build(name: str, unit: str, warmup: str) -> Schedule:
    spec = {"name": name, "unit": unit, **INTERESTING.get(name, {}), **WARMUPS[warmup]}
    if unit == "step":  # the same lengths as in epochs, counted in steps
        spec = {**spec, **_in_steps(name, INTERESTING.get(name, {}))}
    return ours(spec, TOTAL, 0.1, PER_EPOCH)


def _in_steps(name: str, options: dict) -> dict:
    lengths = {"step_size", "period", "step_size_up", "step_size_down", "total", "timescale"}
    out = {k: v * PER_EPOCH for k, v in options.items() if k in lengths}
    if "milestones" in options:
        out["milestones"] = [m * PER_EPOCH for m in options["milestones"]]
    return out


def run(schedule: Schedule, start: int = 0, keep_states: bool = False):
    """What training does from step `start`: lr (and momentum) each step, observe at epoch end.

    Returns the traces and, with `keep_states`, the schedule's state after each step (what a
    checkpoint written then would hold).
    """
    lrs, momenta, states = [], [], []
    for t in range(start, TOTAL):
        lr = schedule.lr(t)
        assert schedule.lr(t) == lr  # asking twice changes nothing
        lrs.append(lr)
        momenta.append(schedule.momentum(t))
        if (t + 1) % PER_EPOCH == 0:
            schedule.observe({"val_loss": VAL_LOSSES[t // PER_EPOCH], "epoch": t // PER_EPOCH})
        if keep_states:
            states.append(copy.deepcopy(schedule.state_dict()))
    return lrs, momenta, states


@pytest.mark.parametrize("warmup", list(WARMUPS))
@pytest.mark.parametrize("unit", ["epoch", "step"])
@pytest.mark.parametrize("name", SCHEDULES.names())
def test_resume_at_any_step_reproduces_the_uninterrupted_trace(name, unit, warmup):
    full_lr, full_momentum, states = run(build(name, unit, warmup), keep_states=True)
    reference = build(name, unit, warmup)
    assert len(set(full_lr)) > 1 or name == "constant" and warmup == "none"
    milestones = {e * PER_EPOCH for e in range(1, EPOCHS)} | {reference.warmup}
    milestones |= set(reference.restarts)
    # Resume after every step: at epoch ends, warmup end and restarts, and strictly between.
    points = set(range(1, TOTAL))
    assert milestones & points and points - milestones
    for k in sorted(points):
        resumed = build(name, unit, warmup)  # a new object, as after a restart
        resumed.load_state_dict(copy.deepcopy(states[k - 1]))
        lrs, momenta, _ = run(resumed, k)
        assert lrs == full_lr[k:], f"resumed at step {k}"
        assert momenta == full_momentum[k:], f"momentum resumed at step {k}"
        if 0 < k < resumed.warmup and reference.spec.warmup.start_factor < 1:
            assert lrs[0] != full_lr[0]  # the warmup goes on, it does not start over


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_lr_does_not_depend_on_call_order_or_count(name):
    forward = [build(name, "epoch", "linear-steps").lr(t) for t in range(TOTAL)]
    one = build(name, "epoch", "linear-steps")
    backward = [one.lr(t) for t in reversed(range(TOTAL))][::-1]
    again = [one.lr(t) for t in range(TOTAL)]
    assert forward == backward == again


# ---------------------------------------------------------------------------------------------
# 3. Warmup composition.

def _ramp(kind: str, start: float, fraction: float) -> float:
    if kind == "cosine":
        return start + (1 - start) * (1 - math.cos(math.pi * fraction)) / 2
    return start + (1 - start) * fraction


COMPOSED = ["constant", "step", "exponential", "cosine", "one_cycle", "cyclic", "polynomial",
            "cosine_restarts", "inverse_sqrt", "linear", "multistep"]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("warmup,length", [({"steps": 9}, 9), ({"epochs": 1.5}, 15),
                                           ({"epochs": 3}, 30)])
@pytest.mark.parametrize("start", [0.0, 0.25])
@pytest.mark.parametrize("name", COMPOSED)
def test_warmup_ramps_to_the_first_value_then_the_schedule_runs_on_its_own_clock(
        name, kind, warmup, length, start):
    total, per_epoch, base = 120, 10, 0.2
    options = {"name": name, "unit": "step", **_in_steps(name, INTERESTING.get(name, {}))}
    if name == "inverse_sqrt":
        options["timescale"] = 5  # independent of the warmup length, so the two compare
    warm = ours({**options, "warmup": {**warmup, "kind": kind, "start_factor": start}},
                total, base, per_epoch)
    plain = ours(options, total - length, base, per_epoch)  # the schedule alone, shorter run
    assert warm.warmup == length
    first = plain.lr(0)
    for t in range(length):
        assert warm.lr(t) == pytest.approx(first * _ramp(kind, start, t / length), rel=1e-12,
                                           abs=1e-15)
        assert warm.momentum(t) == plain.momentum(0)  # momentum waits at its first value
    assert warm.lr(0) == pytest.approx(start * first, abs=1e-15)
    ramp = [warm.lr(t) for t in range(length + 1)]
    assert ramp == sorted(ramp) and ramp[-1] == first
    for t in range(length, total):
        assert warm.lr(t) == plain.lr(t - length)
        assert warm.momentum(t) == plain.momentum(t - length)
    assert warm.restarts == [length + r for r in plain.restarts]


# Linear warmup followed by a torch schedule, as torch composes them with SequentialLR.
@pytest.mark.parametrize("spec,make", [
    ({"name": "constant"}, lambda o, n: tls.ConstantLR(o, factor=1.0, total_iters=n)),
    ({"name": "cosine", "min_lr": 0.01}, lambda o, n: tls.CosineAnnealingLR(o, n, 0.01)),
    ({"name": "step", "step_size": 10, "gamma": 0.5}, lambda o, n: tls.StepLR(o, 10, 0.5)),
    ({"name": "exponential", "gamma": 0.97}, lambda o, n: tls.ExponentialLR(o, 0.97)),
    ({"name": "polynomial", "power": 2.0}, lambda o, n: tls.PolynomialLR(o, n, 2.0)),
], ids=["constant", "cosine", "step", "exponential", "polynomial"])
@pytest.mark.parametrize("start", [0.1, 0.5])
def test_linear_warmup_matches_torch_sequential(spec, make, start):
    warmup = 12

    def sequential(o):
        ramp = tls.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=warmup)
        return tls.SequentialLR(o, [ramp, make(o, N - warmup)], milestones=[warmup])

    schedule = ours({**spec, "unit": "step", "warmup": {"steps": warmup, "start_factor": start}},
                    N, BASE)
    expected, _ = torch_trace(sequential, N, BASE)
    assert_close_trace([schedule.lr(t) for t in range(N)], expected, BASE)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_warmup_composes_with_plateau(kind):
    """The plateau factor (torch's ReduceLROnPlateau as the oracle) scales the warmup ramp."""
    per_epoch, epochs, base, start = 4, 10, 0.1, 0.2
    schedule = ours({"name": "plateau", "patience": 0, "factor": 0.5,
                     "warmup": {"epochs": 3, "start_factor": start, "kind": kind}},
                    per_epoch * epochs, base, per_epoch)
    assert schedule.warmup == 12
    optimizer = sgd(base)
    reference = tls.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    losses = [1.0, 1.0, 1.0, 0.5, 0.5, 0.4, 0.4, 0.4, 0.3, 0.3]
    for epoch in range(epochs):
        plateau_lr = optimizer.param_groups[0]["lr"]
        for t in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            # The warmup keeps its own clock: a reduction does not restart it.
            ramp = _ramp(kind, start, t / 12) if t < 12 else 1.0
            assert schedule.lr(t) == pytest.approx(plateau_lr * ramp, rel=1e-12)
        schedule.observe({"val_loss": losses[epoch]})
        reference.step(losses[epoch])
    assert optimizer.param_groups[0]["lr"] < base / 8  # reduced during and after the warmup
