import hashlib
import math

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.assemble import assemble
from cnnlab.components.optimizers import build_optimizer
from cnnlab.lr_finder import SUGGESTIONS, range_test, smooth, suggest_minimum, suggest_steep, \
    suggest_valley, sweep_lrs
from cnnlab.seeding import rng_state


def bowl(lrs, bottom=1e-2, floor=0.5):
    """A clean range-test curve: flat at first, falling fastest two decades below `bottom`,
    lowest at `bottom`, then blowing up."""
    x = np.log10(np.asarray(lrs) / bottom)
    falling = floor + 2.0 / (1 + np.exp(3 * (x + 2)))
    return list(np.where(x < 0, falling, falling + 10 * x**2))


def test_smoothing_is_bias_corrected():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0])[0] == pytest.approx(1.0)


def test_sweeps_are_exponential_or_linear_between_the_bounds():
    exp = sweep_lrs(1e-6, 1.0, 7, "exp")
    assert exp[0] == pytest.approx(1e-6) and exp[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(exp)), 1.0)
    assert np.allclose(np.diff(sweep_lrs(0.0, 1.0, 5, "linear")), 0.25)


def test_suggestions_on_a_known_curve():
    lrs = sweep_lrs(1e-6, 10.0, 200, "exp")
    losses = bowl(lrs)
    valley, steep, minimum = (suggest_valley(lrs, losses), suggest_steep(lrs, losses),
                              suggest_minimum(lrs, losses))
    # Suggestions read a smoothing without lag, so they land where the curve says:
    # the bottom is at 1e-2, so minimum is a tenth of it;
    assert 6e-4 < minimum < 1.5e-3
    # the descent is steepest at 1e-4;
    assert 7e-5 < steep < 1.5e-4
    # 80% of the fall from 2.5 to 0.5 is reached at 1e-2 * 10**(log10(4)/3 - 2) = 2.9e-4.
    assert valley == pytest.approx(2.9e-4, rel=0.1)
    assert set(SUGGESTIONS) == {"valley", "steep", "minimum"}


def test_non_finite_losses_end_the_curve_and_are_left_out():
    lrs = sweep_lrs(1e-6, 10.0, 200, "exp")
    losses = bowl(lrs)
    cut = lrs.index(next(lr for lr in lrs if lr > 3e-2))
    broken = losses[:cut] + [math.nan] + [0.0] * (len(lrs) - cut - 1)
    assert suggest_minimum(lrs, broken) == suggest_minimum(lrs[:cut], losses[:cut])
    assert suggest_valley(lrs, broken) == suggest_valley(lrs[:cut], losses[:cut])


def test_no_suggestion_when_the_curve_cannot_support_one():
    lrs = sweep_lrs(1e-6, 1.0, 50, "exp")
    rising = [1.0 + i for i in range(50)]
    assert suggest_valley(lrs, rising) is None
    assert suggest_steep(lrs, rising) is None
    short = [1.0, math.inf]
    assert all(fn(lrs, short) is None for fn in SUGGESTIONS.values())


def fingerprint(model, optimizer) -> str:
    digest = hashlib.sha256()
    for tensor in list(model.state_dict().values()):
        digest.update(tensor.detach().cpu().numpy().tobytes())
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                digest.update(value.cpu().numpy().tobytes())
    for group in optimizer.param_groups:
        digest.update(repr({k: v for k, v in group.items() if k != "params"}).encode())
    rng = rng_state()
    digest.update(rng["torch"].numpy().tobytes())
    digest.update(rng["numpy"]["keys"].numpy().tobytes())
    digest.update(repr(rng["python"]).encode())
    return digest.hexdigest()


def test_the_range_test_leaves_model_optimizer_bn_statistics_and_rng_exactly_as_before(tiny):
    assembly = assemble(cnnlab.load_config(tiny))
    model = assembly.model
    optimizer = build_optimizer(assembly.cfg.optim, model, 32)
    # Train a few steps first so the optimizer has momentum buffers and BN has running stats.
    batches = assembly.train_batches()
    for x, y in list(batches.epoch(0))[:3]:
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    before = fingerprint(model, optimizer)
    result = range_test(model, optimizer, batches.epoch(1), sweep_lrs(1e-5, 10, 6, "exp"),
                        assembly.runtime.autocast)
    assert len(result["losses"]) > 0
    assert fingerprint(model, optimizer) == before


def test_a_sweep_whose_loss_never_beats_a_uniform_guess_says_so(tiny):
    """ln K is the loss of a uniform guess over K classes: a sweep that never goes below it
    learned nothing, and its valley (the doctor's bracket centre) is no LR that trains."""
    learned = cnnlab.lr_find(cnnlab.load_config(tiny), start=1e-3, end=1.0, steps=30)
    assert learned["chance_loss"] == pytest.approx(math.log(4))
    assert learned["below_chance"] is True
    # Huge random logits are confidently wrong; LRs this small cannot move them in 10 steps.
    stuck = cnnlab.lr_find(cnnlab.load_config(tiny, ["model.init={name: normal, std: 1.0}"]),
                           start=1e-12, end=1e-11, steps=10)
    assert stuck["below_chance"] is False and min(stuck["smoothed"]) > math.log(4)
