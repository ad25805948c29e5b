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
