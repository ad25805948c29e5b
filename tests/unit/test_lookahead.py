"""train.lookahead: the sync rule against a hand computation, its ramp, the last-step copy, its
state and the config checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.regularization.lookahead import Lookahead, lookahead_decay


class Scalar(nn.Module):
    """One weight, a float buffer (averaged like batch-norm statistics) and an integer buffer
    (left to training)."""

    def __init__(self, w: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=torch.float64))
        self.register_buffer("running", torch.tensor([0.0], dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0))


def sgd_step(model: Scalar, lr: float = 0.1) -> None:
    # loss = w^2 / 2, so the gradient is w; the buffers move as training would move them.
    with torch.no_grad():
        model.w -= lr * model.w
        model.running += 1.0
        model.count += 1


def by_hand(w: float, steps: int, every: int, decays: list[float], total: int) -> tuple:
    """The rule in plain floats: every `every` steps slow = d*slow + (1-d)*fast, fast = slow;
    at the last step fast = slow. `decays[i]` is the decay at the i-th sync."""
    fast, slow, running, slow_running, syncs = w, w, 0.0, 0.0, 0
    for step in range(1, steps + 1):
        fast -= 0.1 * fast
        running += 1.0
        if step % every == 0:
            d = decays[syncs]
            syncs += 1
            slow = d * slow + (1 - d) * fast
            slow_running = d * slow_running + (1 - d) * running
        if step % every == 0 or step == total:
            fast, running = slow, slow_running
    return fast, running


@pytest.mark.parametrize("every,decay", [(2, 0.6), (3, 0.5), (1, 0.9)])
def test_the_sync_matches_a_hand_computation(every, decay):
    model = Scalar(1.0)
    lookahead = Lookahead(model, every, decay, "none", total_steps=100)
    for step in range(1, 8):
        sgd_step(model)
        lookahead.after_step(model, step)
    fast, running = by_hand(1.0, 7, every, [decay] * 7, 100)
    assert model.w.item() == pytest.approx(fast, rel=1e-12)
    assert model.running.item() == pytest.approx(running, rel=1e-12)
    assert model.count.item() == 7  # integer buffers are not averaged


def test_two_steps_spelled_out():
    # every 2, decay 0.6: w 1 -> 0.9 -> 0.81; slow = 0.6*1 + 0.4*0.81 = 0.924, copied back.
    model = Scalar(1.0)
    lookahead = Lookahead(model, 2, 0.6, "none", total_steps=100)
    sgd_step(model)
    lookahead.after_step(model, 1)
    assert model.w.item() == pytest.approx(0.9)  # no sync on step 1
    sgd_step(model)
    lookahead.after_step(model, 2)
    assert model.w.item() == pytest.approx(0.924)
    assert lookahead.slow["w"].item() == pytest.approx(0.924)


def test_zhangs_alpha_is_one_minus_decay():
    # Zhang et al. 2019: slow += alpha * (fast - slow), alpha 0.3 -> decay 0.7.
    model = Scalar(2.0)
    lookahead = Lookahead(model, 1, 0.7, "none", total_steps=100)
    sgd_step(model)  # fast 1.8
    lookahead.after_step(model, 1)
    assert model.w.item() == pytest.approx(2.0 + 0.3 * (1.8 - 2.0))


def test_cubic_ramp_follows_training_progress():
    assert lookahead_decay(0.774, "none", 3, 10) == 0.774
    assert lookahead_decay(0.774, "cubic", 5, 10) == pytest.approx(0.774 * 0.125)
    assert lookahead_decay(0.774, "cubic", 10, 10) == pytest.approx(0.774)
    assert lookahead_decay(0.774, "cubic", 0, 10) == 0.0
    total, every = 9, 3
    model = Scalar(1.0)
    lookahead = Lookahead(model, every, 0.8, "cubic", total_steps=total)
    for step in range(1, total + 1):
        sgd_step(model)
        lookahead.after_step(model, step)
    decays = [0.8 * (s / total) ** 3 for s in (3, 6, 9)]
    fast, _ = by_hand(1.0, total, every, decays, total)
    assert model.w.item() == pytest.approx(fast, rel=1e-12)


def test_the_last_step_ends_on_the_slow_weights():
    # 5 steps, every 2: the last sync is at step 4; step 5's progress is replaced by the slow
    # weights, as airbench's final update does.
    model = Scalar(1.0)
    lookahead = Lookahead(model, 2, 0.5, "none", total_steps=5)
    for step in range(1, 6):
        sgd_step(model)
        lookahead.after_step(model, step)
    assert model.w.item() == lookahead.slow["w"].item()
    fast, _ = by_hand(1.0, 5, 2, [0.5] * 3, 5)
    assert model.w.item() == pytest.approx(fast, rel=1e-12)


def test_every_one_with_decay_zero_changes_nothing():
    model, plain = Scalar(1.0), Scalar(1.0)
    lookahead = Lookahead(model, 1, 0.0, "none", total_steps=10)
    for step in range(1, 11):
        sgd_step(model)
        sgd_step(plain)
        lookahead.after_step(model, step)
        assert torch.equal(model.w, plain.w) and torch.equal(model.running, plain.running)


def test_the_state_round_trips():
    model = Scalar(1.0)
    lookahead = Lookahead(model, 2, 0.6, "none", total_steps=100)
    for step in range(1, 4):
        sgd_step(model)
        lookahead.after_step(model, step)
    state = lookahead.state_dict()
    other = Lookahead(Scalar(5.0), 2, 0.6, "none", total_steps=100)
    other.load_state_dict({"slow": {k: v.clone() for k, v in state["slow"].items()}})
    assert all(torch.equal(other.slow[k], lookahead.slow[k]) for k in lookahead.slow)
    assert set(state["slow"]) == {"w", "running"}


def config(**train):
    return cnnlab.load_config({"train": train})


def test_config_defaults_and_checks():
    assert config().train.lookahead is None  # off by default
    on = config(lookahead={}).train.lookahead
    assert (on.every, on.decay, on.ramp) == (5, 0.5, "none")
    for bad in ({"decay": 1.0}, {"decay": -0.1}, {"every": 0}, {"ramp": "linear"}):
        with pytest.raises(ConfigError, match="train.lookahead"):
            config(lookahead=bad)


@pytest.mark.parametrize("other", [{"ema": {"decay": 0.9}}, {"swa": {}}])
def test_lookahead_with_a_weight_average_is_refused_in_one_sentence(other):
    with pytest.raises(ConfigError) as error:
        config(lookahead={"every": 5}, **other)
    message = str(error.value)
    assert "train.lookahead and train." in message and "keep one of them" in message
