import math

import pytest
from pydantic import TypeAdapter

from cnnlab.components.schedules import Context, Schedule, ScheduleSpec

SPEC = TypeAdapter(ScheduleSpec)


def schedule(spec, total=100, per_epoch=10, lr=1.0):
    return Schedule(SPEC.validate_python(spec), Context(lr, total, per_epoch))


def test_constant_step_and_cosine_values():
    assert {schedule("constant").lr(t) for t in range(100)} == {1.0}
    step = schedule({"name": "step", "step_size": 3, "gamma": 0.5})
    assert [step.lr(t) for t in (0, 29, 30, 59, 60)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = schedule({"name": "cosine", "min_lr": 0.1})
    assert cosine.lr(0) == 1.0
    assert cosine.lr(50) == pytest.approx(0.55)
    assert cosine.lr(100) == pytest.approx(0.1)


def test_warmup_ramps_then_hands_over_to_the_schedule_on_its_own_clock():
    s = schedule({"name": "cosine", "warmup": {"epochs": 1, "start_factor": 0.0}})
    assert s.warmup == 10
    assert [s.lr(t) for t in (0, 5)] == [0.0, 0.5]
    assert s.lr(10) == 1.0  # the cosine starts at its top after warmup
    assert s.lr(55) == pytest.approx(0.5)  # half-way through the 90 remaining steps
    assert s.lr(100) == pytest.approx(0.0, abs=1e-12)
    cos_warm = schedule({"name": "constant", "warmup": {"steps": 4, "kind": "cosine",
                                                        "start_factor": 0.0}})
    assert cos_warm.lr(2) == pytest.approx((1 - math.cos(math.pi / 2)) / 2)


def test_weight_averaging_phase_holds_or_anneals_to_its_lr_from_its_start_epoch():
    from cnnlab.config import load_config
    from cnnlab.configured_schedule import schedule_for_config

    def lrs(swa=None):
        train = {"epochs": 4, **({"swa": swa} if swa else {})}
        cfg = load_config({"optim": {"name": "sgd", "lr": 0.1}, "schedule": "cosine",
                           "train": train, "data": {"batch_size": 10}})
        return [schedule_for_config(cfg, 10).lr(t) for t in range(40)]

    plain = lrs()
    held = lrs({"start_epoch": 3, "lr": 0.01})
    assert held[:20] == plain[:20] and held[20:] == [0.01] * 20
    assert lrs({"start_epoch": 3}) == plain  # no lr: the schedule goes on unchanged
    annealed = lrs({"start_epoch": 2, "lr": 0.01, "anneal_epochs": 1})
    assert annealed[:10] == plain[:10]
    assert plain[10] > annealed[10] > 0.01  # a cosine from the schedule's value
    assert all(a >= b for a, b in zip(annealed[10:20], annealed[11:20]))
    assert annealed[19:] == [0.01] * 21
    # The default start is after 75% of the epochs.
    default = lrs({"lr": 0.01})
    assert default[:30] == plain[:30] and default[30:] == [0.01] * 10
