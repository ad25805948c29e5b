"""Learning-rate schedules as pure functions of the optimizer step.

`Schedule.lr(step)` is the learning rate for optimizer step `step` (0-based), so a resumed run
asks for the step it is at and can neither double-step nor restart its warmup. Only `plateau`
keeps state (its best metric and patience counters), which is checkpointed.

Lengths (`step_size`, `milestones`, `period`, `step_size_up`, ...) are in `unit`s: epochs by
default, or optimizer steps with `unit: step`. A warmup (`warmup: {epochs|steps, start_factor,
kind}`) composes before any schedule: it ramps from `start_factor` times the schedule's first
value to that value, then the schedule runs on its own clock over the remaining steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from cnnlab.metric_names import MetricName
from cnnlab.options import Options, tagged_union
from cnnlab.registry import Registry


@dataclass(frozen=True)
class ScheduleInfo:
    """What code needs to know about a schedule besides its curve factory: nothing yet."""


SCHEDULES: Registry[ScheduleInfo] = Registry("schedule", "schedules", ScheduleInfo)


class Warmup(Options):
    epochs: float = Field(0.0, ge=0.0)
    steps: int | None = Field(None, ge=0, description="overrides epochs when set")
    start_factor: float = Field(0.1, ge=0.0, le=1.0)
    kind: Literal["linear", "cosine"] = "linear"


class ScheduleBase(Options):
    warmup: Warmup = Field(default_factory=Warmup)
    unit: Literal["epoch", "step"] = "epoch"


class StepOptions(ScheduleBase):
    step_size: float = Field(30.0, gt=0.0)
    gamma: float = Field(0.1, gt=0.0)


class MultistepOptions(ScheduleBase):
    milestones: list[float] = Field(default_factory=lambda: [30.0, 60.0, 90.0])
    gamma: float = Field(0.1, gt=0.0)

    @model_validator(mode="after")
    def _sorted(self):
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must increase, received {self.milestones}")
        return self


class ExponentialOptions(ScheduleBase):
    gamma: float = Field(0.95, gt=0.0, description="factor per unit")


class PolynomialOptions(ScheduleBase):
    power: float = Field(1.0, ge=0.0)
    total: float | None = Field(None, gt=0.0, description="length; default the whole run")


class LinearOptions(ScheduleBase):
    start_factor: float = Field(1.0, ge=0.0)
    end_factor: float = Field(0.0, ge=0.0)
    total: float | None = Field(None, gt=0.0, description="length; default the whole run")


class CosineOptions(ScheduleBase):
    min_lr: float = Field(0.0, ge=0.0)


class CosineRestartsOptions(ScheduleBase):
    period: float = Field(10.0, gt=0.0, description="length of the first cycle")
    period_mult: int = Field(1, ge=1, description="each cycle is this many times longer")
    decay: float = Field(1.0, gt=0.0, le=1.0, description="peak lr factor per cycle")
    min_lr: float = Field(0.0, ge=0.0)


class OneCycleOptions(ScheduleBase):
    pct_start: float = Field(0.3, gt=0.0, lt=1.0)
    anneal: Literal["cos", "linear"] = "cos"
    div_factor: float = Field(25.0, gt=0.0)
    final_div_factor: float = Field(1e4, gt=0.0)
    three_phase: bool = False
    cycle_momentum: bool = True
    base_momentum: float = Field(0.85, ge=0.0, lt=1.0)
    max_momentum: float = Field(0.95, ge=0.0, lt=1.0)


class CyclicOptions(ScheduleBase):
    min_lr: float | None = Field(None, ge=0.0, description="lower bound; default lr/10")
    step_size_up: float = Field(2.0, gt=0.0)
    step_size_down: float | None = Field(None, gt=0.0)
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: float = Field(1.0, gt=0.0)
    cycle_momentum: bool = True
    base_momentum: float = Field(0.8, ge=0.0, lt=1.0)
    max_momentum: float = Field(0.9, ge=0.0, lt=1.0)


class PlateauOptions(ScheduleBase):
    metric: MetricName = "val_loss"
    mode: Literal["min", "max"] = "min"
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    patience: int = Field(10, ge=0)
    cooldown: int = Field(0, ge=0)
    threshold: float = Field(1e-4, ge=0.0)
    threshold_mode: Literal["rel", "abs"] = "rel"
    min_lr: float = Field(0.0, ge=0.0)


class InverseSqrtOptions(ScheduleBase):
    timescale: float | None = Field(None, gt=0.0, description="default: the warmup length")


@dataclass
class Context:
    """What a schedule needs to know about the run."""

    base_lr: float
    total_steps: int  # optimizer steps of the whole run, warmup included
    steps_per_epoch: float  # optimizer steps per epoch
    base_momentum: float | None = None


@dataclass
class Curve:
    """A schedule without warmup: lr(t) and momentum(t) for t in [0, length)."""

    lr: object  # Callable[[int], float]
    momentum: object = None  # Callable[[int], float] | None
    restarts: list[int] = field(default_factory=list)


def _per_unit(options: ScheduleBase, ctx: Context) -> float:
    return ctx.steps_per_epoch if options.unit == "epoch" else 1.0


def _steps(length: float, options: ScheduleBase, ctx: Context) -> float:
    """`length` units in optimizer steps.

    1.1 epochs of 100 steps is 110.00000000000001 in floating point, which would move a milestone,
    a decay or a restart one step late; a product that is an integer up to rounding is snapped to
    it. Lengths that are really fractional stay fractional.
    """
    steps = length * _per_unit(options, ctx)
    nearest = round(steps)
    return float(nearest) if abs(steps - nearest) <= 1e-9 * max(1.0, steps) else steps


@SCHEDULES.register("constant", "the same learning rate throughout", ScheduleBase)
def constant(o, ctx, length):
    return Curve(lambda t: ctx.base_lr)


@SCHEDULES.register("step", "multiply by gamma every step_size units (He et al. 2016 used 0.1)",
                    StepOptions)
def step(o, ctx, length):
    size = _steps(o.step_size, o, ctx)
    return Curve(lambda t: ctx.base_lr * o.gamma ** math.floor(t / size))


@SCHEDULES.register("multistep", "multiply by gamma at each milestone", MultistepOptions)
def multistep(o, ctx, length):
    marks = [_steps(m, o, ctx) for m in o.milestones]
    return Curve(lambda t: ctx.base_lr * o.gamma ** sum(1 for m in marks if t >= m))


@SCHEDULES.register("exponential", "multiply by gamma every unit", ExponentialOptions)
def exponential(o, ctx, length):
    unit = _per_unit(o, ctx)
    return Curve(lambda t: ctx.base_lr * o.gamma ** math.floor(t / unit))


@SCHEDULES.register("polynomial", "decay to 0 as (1 - t/total)^power", PolynomialOptions)
def polynomial(o, ctx, length):
    total = _steps(o.total, o, ctx) if o.total else length
    return Curve(lambda t: ctx.base_lr * (1.0 - min(t, total) / total) ** o.power)


@SCHEDULES.register("linear", "linear from start_factor to end_factor of lr over total",
                    LinearOptions)
def linear(o, ctx, length):
    total = _steps(o.total, o, ctx) if o.total else length
    span = o.end_factor - o.start_factor
    return Curve(lambda t: ctx.base_lr * (o.start_factor + span * min(t, total) / total))


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


@SCHEDULES.register("cosine", "half a cosine from lr to min_lr over the run (Loshchilov & "
                    "Hutter 2017)", CosineOptions)
def cosine(o, ctx, length):
    return Curve(lambda t: _cosine(ctx.base_lr, o.min_lr, min(t, length) / max(length, 1)))


@SCHEDULES.register("cosine_restarts", "cosine cycles restarting at lr (SGDR, Loshchilov & "
                    "Hutter 2017); cycles grow by period_mult, peaks decay by decay",
                    CosineRestartsOptions)
def cosine_restarts(o, ctx, length):
    first = _steps(o.period, o, ctx)

    def cycle_of(t: int) -> tuple[int, float, float]:
        """(cycle index, position in the cycle, cycle length)."""
        if o.period_mult == 1:
            index = math.floor(t / first)
            return index, t - index * first, first
        index = math.floor(math.log(t / first * (o.period_mult - 1) + 1, o.period_mult))
        start = first * (o.period_mult**index - 1) / (o.period_mult - 1)
        # log() can land just below an integer at a cycle boundary.
        if t - start >= first * o.period_mult**index:
            start += first * o.period_mult**index
            index += 1
        return index, t - start, first * o.period_mult**index

    def lr(t: int) -> float:
        index, position, period = cycle_of(t)
        return _cosine(ctx.base_lr * o.decay**index, o.min_lr, position / period)

    restarts, t = [], 0.0
    period = first
    while t + period < length:
        t += period
        restarts.append(int(math.ceil(t)))
        period *= o.period_mult
    return Curve(lr, restarts=restarts)


def _anneal(kind: str, start: float, end: float, fraction: float) -> float:
    if kind == "cos":
        return _cosine(start, end, fraction)
    return start + (end - start) * fraction


@SCHEDULES.register("one_cycle", "Smith 2018: warm up to lr over pct_start, anneal to "
                    "lr/div/final_div; momentum moves inversely", OneCycleOptions)
def one_cycle(o, ctx, length):
    peak = ctx.base_lr
    initial = peak / o.div_factor
    lowest = initial / o.final_div_factor
    if o.three_phase:
        phases = [(o.pct_start * length - 1, initial, peak, o.max_momentum, o.base_momentum),
                  (2 * o.pct_start * length - 2, peak, initial, o.base_momentum, o.max_momentum),
                  (length - 1, initial, lowest, o.max_momentum, o.max_momentum)]
    else:
        phases = [(o.pct_start * length - 1, initial, peak, o.max_momentum, o.base_momentum),
                  (length - 1, peak, lowest, o.base_momentum, o.max_momentum)]

    def locate(t: int) -> tuple[float, int]:
        start_step = 0.0
        for index, (end_step, *_rest) in enumerate(phases):
            if t <= end_step or index == len(phases) - 1:
                return (t - start_step) / (end_step - start_step), index
            start_step = end_step
        raise AssertionError("unreachable")

    def lr(t: int) -> float:
        fraction, index = locate(t)
        _, start, end, _, _ = phases[index]
        return _anneal(o.anneal, start, end, fraction)

    def momentum(t: int) -> float:
        fraction, index = locate(t)
        _, _, _, start, end = phases[index]
        return _anneal(o.anneal, start, end, fraction)

    has_momentum = o.cycle_momentum and ctx.base_momentum is not None
    return Curve(lr, momentum if has_momentum else None)


@SCHEDULES.register("cyclic", "Smith 2017: lr cycles between min_lr and lr (triangular, "
                    "triangular2, exp_range); momentum moves inversely", CyclicOptions)
def cyclic(o, ctx, length):
    up = _steps(o.step_size_up, o, ctx)
    down = _steps(o.step_size_down if o.step_size_down is not None else o.step_size_up, o, ctx)
    total = up + down
    ratio = up / total
    low = o.min_lr if o.min_lr is not None else ctx.base_lr / 10.0
    high = ctx.base_lr

    def shape(t: int) -> tuple[float, float]:
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if o.mode == "triangular":
            scale = 1.0
        elif o.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1))
        else:
            scale = o.gamma**t
        return height, scale

    def lr(t: int) -> float:
        height, scale = shape(t)
        return low + (high - low) * height * scale

    def momentum(t: int) -> float:
        height, scale = shape(t)
        return o.max_momentum - (o.max_momentum - o.base_momentum) * height * scale

    has_momentum = o.cycle_momentum and ctx.base_momentum is not None
    return Curve(lr, momentum if has_momentum else None)


@SCHEDULES.register("plateau", "multiply by factor when `metric` has not improved for "
                    "`patience` epochs (stateful, checkpointed)", PlateauOptions)
def plateau(o, ctx, length):
    # The curve is a constant; `Schedule` applies the plateau factor it keeps in its state.
    return Curve(lambda t: ctx.base_lr)


@SCHEDULES.register("inverse_sqrt", "lr*sqrt(timescale/(t+timescale)): the Transformer decay, "
                    "usually after a warmup", InverseSqrtOptions)
def inverse_sqrt(o, ctx, length):
    if o.timescale is not None:
        scale = _steps(o.timescale, o, ctx)
    else:
        scale = max(warmup_steps(o.warmup, ctx), 1)
    return Curve(lambda t: ctx.base_lr * math.sqrt(scale / (t + scale)))


def warmup_steps(warmup: Warmup, ctx: Context) -> int:
    if warmup.steps is not None:
        return warmup.steps
    return int(round(warmup.epochs * ctx.steps_per_epoch))


@dataclass
class SwaPhase:
    """Stochastic weight averaging's LR: from optimizer step `start` on, a cosine over
    `anneal_steps` from the schedule's LR to `lr`, then `lr` (as torch's SWALR, except that
    it anneals from the running schedule rather than from its value at `start`)."""

    start: int
    lr: float | None
    anneal_steps: int

    @classmethod
    def from_epochs(cls, first_epoch: int, lr: float | None, anneal_epochs: float,
                    steps_per_epoch: int) -> SwaPhase:
        """The phase that starts with epoch `first_epoch` (1-based) and anneals over
        `anneal_epochs` epochs."""
        return cls(start=(first_epoch - 1) * steps_per_epoch, lr=lr,
                   anneal_steps=int(round(anneal_epochs * steps_per_epoch)))

    def apply(self, step: int, scheduled: float) -> float:
        if step < self.start or self.lr is None:
            return scheduled
        if self.anneal_steps <= 0:
            return self.lr
        fraction = min(1.0, (step - self.start + 1) / self.anneal_steps)
        return self.lr + (scheduled - self.lr) * (1.0 + math.cos(math.pi * fraction)) / 2.0


class Schedule:
    """The configured schedule with its warmup: `lr(step)` and `momentum(step)`."""

    def __init__(self, spec, ctx: Context, swa: SwaPhase | None = None):
        self.spec = spec
        self.ctx = ctx
        self.swa = swa
        self.warmup = min(warmup_steps(spec.warmup, ctx), ctx.total_steps)
        entry = SCHEDULES.get(spec.name)
        self.curve: Curve = entry.factory(spec, ctx, max(ctx.total_steps - self.warmup, 1))
        # Plateau state; the other schedules keep none.
        self.plateau_factor = 1.0
        self.best: float | None = None
        self.bad_epochs = 0
        self.cooldown_left = 0

    @property
    def restarts(self) -> list[int]:
        return [self.warmup + r for r in self.curve.restarts]

    def _warmup_factor(self, step: int) -> float:
        fraction = step / self.warmup
        start = self.spec.warmup.start_factor
        if self.spec.warmup.kind == "cosine":
            return start + (1.0 - start) * (1.0 - math.cos(math.pi * fraction)) / 2.0
        return start + (1.0 - start) * fraction

    def lr(self, step: int) -> float:
        if step < self.warmup:
            value = self.curve.lr(0) * self._warmup_factor(step)
        else:
            value = self.curve.lr(step - self.warmup)
        value *= self.plateau_factor
        return self.swa.apply(step, value) if self.swa else value

    def momentum(self, step: int) -> float | None:
        if self.curve.momentum is None:
            return None
        return self.curve.momentum(max(step - self.warmup, 0))

    def observe(self, metrics: dict) -> None:
        """End of an epoch: plateau updates its factor; other schedules ignore metrics."""
        if self.spec.name != "plateau":
            return
        o = self.spec
        value = metrics.get(o.metric)
        if value is None or not math.isfinite(value):
            return
        if self._improved(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > o.patience:
            current = self.ctx.base_lr * self.plateau_factor
            new = max(current * o.factor, o.min_lr)
            if current - new > 1e-8:  # torch's eps: do not shrink by negligible amounts
                self.plateau_factor = new / self.ctx.base_lr
            self.cooldown_left = o.cooldown
            self.bad_epochs = 0

    def _improved(self, value: float) -> bool:
        o = self.spec
        if self.best is None:
            return True
        if o.threshold_mode == "rel":
            margin = 1.0 - o.threshold if o.mode == "min" else 1.0 + o.threshold
            bound = self.best * margin
        else:
            bound = self.best - o.threshold if o.mode == "min" else self.best + o.threshold
        return value < bound if o.mode == "min" else value > bound

    def state_dict(self) -> dict:
        return {"plateau_factor": self.plateau_factor, "best": self.best,
                "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_factor = state["plateau_factor"]
        self.best = state["best"]
        self.bad_epochs = state["bad_epochs"]
        self.cooldown_left = state["cooldown_left"]


def optimizer_steps_per_epoch(batches_per_epoch: int, accumulate: int) -> int:
    """Optimizer steps per epoch when `accumulate` batches make one step (leftovers dropped)."""
    return max(1, batches_per_epoch // accumulate)


def build_schedule(options: ScheduleBase, *, base_lr: float, epochs: int, steps_per_epoch: int,
                   base_momentum: float | None = None, swa: SwaPhase | None = None) -> Schedule:
    """The schedule of a run, from what it needs: its options; `base_lr`, the LR its curve is
    written against (`optim.lr` in the optimizer's units, from cnnlab.lr_units: the start of a
    cosine, the peak of one_cycle); the run's length in optimizer steps (`train.accumulate`
    already applied); the optimizer's momentum (None: nothing to cycle) and weight averaging's
    phase, if any. `cnnlab.configured_schedule` reads these from a config."""
    return Schedule(options, Context(
        base_lr=base_lr, total_steps=steps_per_epoch * epochs, steps_per_epoch=steps_per_epoch,
        base_momentum=base_momentum), swa)


def trace(schedule: Schedule) -> dict:
    """LR and momentum at every optimizer step of the run (plateau: as if never triggered)."""
    steps = range(schedule.ctx.total_steps)
    momentum = [schedule.momentum(t) for t in steps]
    return {
        "lr": [schedule.lr(t) for t in steps],
        "momentum": momentum if any(m is not None for m in momentum) else None,
        "steps_per_epoch": schedule.ctx.steps_per_epoch,
        "total_steps": schedule.ctx.total_steps,
        "warmup_steps": schedule.warmup,
        "restarts": schedule.restarts,
        "swa_start": schedule.swa.start if schedule.swa else None,
        "name": schedule.spec.name,
    }


ScheduleSpec = tagged_union(SCHEDULES, default="cosine")
