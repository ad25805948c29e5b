"""Which steps diagnostics sample: the first steps always, enough samples in every run, and an
interval that widens when the measured cost would exceed the budget. Timings are injected, so
no test depends on the clock."""

import pytest

from cnnlab.sampling import FIRST_STEPS, MIN_SAMPLES, Sampling


def sampled(sampling: Sampling, total_steps: int) -> list[int]:
    steps = []
    for step in range(total_steps):
        if sampling.want(step):
            sampling.taken(step)
            steps.append(step)
    return steps


@pytest.mark.parametrize("total_steps", [1, 3, 10, 19, 20])
def test_a_run_shorter_than_the_minimum_is_sampled_at_every_step(total_steps):
    assert sampled(Sampling(50, total_steps), total_steps) == list(range(total_steps))


@pytest.mark.parametrize("total_steps", [21, 60, 100, 853, 5000])
def test_every_run_gets_the_first_steps_and_at_least_the_minimum_of_samples(total_steps):
    steps = sampled(Sampling(50, total_steps), total_steps)
    assert steps[:FIRST_STEPS] == list(range(FIRST_STEPS))
    assert len(steps) >= MIN_SAMPLES
    assert steps == sorted(set(steps))


def test_a_long_run_keeps_the_interval_asked_for():
    steps = sampled(Sampling(50, 10_000, budget=None), 10_000)
    assert steps == [0, 1, 2] + list(range(50, 10_000, 50))


def feed(sampling: Sampling, plain: float, sampled_seconds: float, n: int = 10) -> None:
    for _ in range(n):
        sampling.time_step(False, plain)
    sampling.time_step(True, sampled_seconds)


def test_the_interval_widens_until_the_measured_cost_fits_the_budget():
    sampling = Sampling(10, total_steps=100_000, budget=0.05)
    assert sampling.interval == 10
    feed(sampling, plain=0.010, sampled_seconds=0.030)  # a sample costs 2 plain steps
    assert sampling.cost() == pytest.approx(2.0)
    assert sampling.interval == 40  # 2 / 40 = 5% of step time
    feed(sampling, plain=0.010, sampled_seconds=0.011, n=200)  # a cheap sample: 1.05 on average
    assert sampling.cost() == pytest.approx(1.05)
    assert sampling.interval == 21


def test_cheap_sampling_keeps_the_users_interval_and_no_budget_never_widens_it():
    cheap = Sampling(10, total_steps=100_000, budget=0.05)
    feed(cheap, plain=0.010, sampled_seconds=0.0102)  # 0.02 plain steps: 0.2% at every 10
    assert cheap.interval == 10
    exact = Sampling(10, total_steps=100_000, budget=None)
    feed(exact, plain=0.010, sampled_seconds=0.100)
    assert exact.interval == 10


def test_the_minimum_of_samples_wins_over_the_budget():
    sampling = Sampling(50, total_steps=300, budget=0.05)
    feed(sampling, plain=0.010, sampled_seconds=0.050)  # 4 plain steps: would want every 80
    assert sampling.interval == (300 - FIRST_STEPS) // (MIN_SAMPLES - FIRST_STEPS) == 17


def test_the_reported_overhead_is_the_average_over_the_timed_steps():
    sampling = Sampling(10, total_steps=100_000, budget=0.05)
    feed(sampling, plain=0.010, sampled_seconds=0.030, n=9)  # 10 steps, one sampled
    overhead = sampling.overhead()
    # 0.02 s extra over 10 steps of 0.01 s: 20% of the step time.
    assert overhead["fraction"] == pytest.approx(0.2)
    assert overhead["sampled_steps"] == 1 and overhead["plain_steps"] == 9
    assert overhead["every"] == 40 and overhead["budget"] == 0.05


def test_zero_turns_sampling_off_and_the_state_survives_a_checkpoint():
    assert sampled(Sampling(0, 100), 100) == []
    sampling = Sampling(10, total_steps=100_000)
    feed(sampling, plain=0.010, sampled_seconds=0.030)
    sampling.taken(120)
    restored = Sampling(10, total_steps=100_000)
    restored.load_state_dict(sampling.state_dict())
    assert restored.state_dict() == sampling.state_dict()
    assert not restored.want(120) and restored.want(160)


def test_a_checkpoint_from_before_adaptive_sampling_still_resumes(tmp_path):
    from torch import nn

    from cnnlab.diagnostics import Diagnostics

    diagnostics = Diagnostics(nn.Sequential(nn.Linear(2, 2)), every=50, total_steps=10_000)
    old_state = {"ranges": [0.0], "every": 50, "alarms": [], "open": {}, "streak": 0,
                 "previous": None, "times": {"sampled": [0.2, 2], "plain": [1.0, 100]},
                 "samples": 0}
    diagnostics.load_state_dict(old_state, tmp_path)
    assert diagnostics.every == 50 and diagnostics.sampling.cost() == pytest.approx(9.0)
    assert diagnostics.want(100) and not diagnostics.want(101)
