import math

import pytest
import torch
from pydantic import TypeAdapter

from cnnlab.components.activations import ACTIVATIONS, ActivationSpec, activation_profile, \
    build_activation, second_moment_gain

SPEC = TypeAdapter(ActivationSpec)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds_runs_and_has_a_profile(name):
    spec = SPEC.validate_python(name)
    act = build_activation(spec, channels=3)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    act(x).sum().backward()
    assert x.grad is not None
    profile = activation_profile(spec)
    assert profile.gain > 0
    assert profile.low < profile.high


@pytest.mark.parametrize("name,gain", [("sigmoid", 1.0), ("tanh", 5 / 3), ("relu", math.sqrt(2)),
                                       ("selu", 1.0)])
def test_gains_fixed_by_the_literature(name, gain):
    assert activation_profile(SPEC.validate_python(name)).gain == pytest.approx(gain)


def test_leaky_relu_gain_follows_its_slope():
    spec = SPEC.validate_python({"name": "leaky_relu", "negative_slope": 0.2})
    assert activation_profile(spec).gain == pytest.approx(math.sqrt(2 / 1.04))


def test_numerical_gain_reproduces_relu_sqrt2():
    assert second_moment_gain(torch.nn.ReLU()) == pytest.approx(math.sqrt(2), rel=1e-6)


def test_saturation_regions_come_from_the_derivative():
    sigmoid = activation_profile(SPEC.validate_python("sigmoid"))
    # sigmoid'(x) = s(1-s) = 0.01 where s = (1 + sqrt(0.96)) / 2, i.e. |x| = log(s / (1 - s))
    s = (1 + math.sqrt(0.96)) / 2
    edge = math.log(s / (1 - s))
    assert sigmoid.high == pytest.approx(edge, abs=2e-3)
    assert sigmoid.low == pytest.approx(-edge, abs=2e-3)
    relu = activation_profile(SPEC.validate_python("relu"))
    assert relu.low == 0.0 and relu.high == math.inf and not relu.saturates_low
    leaky = activation_profile(SPEC.validate_python("leaky_relu"))
    assert leaky.low == -math.inf  # a leaky unit always passes gradient: it cannot die
    relu6 = activation_profile(SPEC.validate_python("relu6"))
    assert relu6.high == pytest.approx(6.0, abs=2e-3)


def test_dead_and_saturated_masks():
    relu = build_activation(SPEC.validate_python("relu"), 1)
    x = torch.tensor([-1.0, 0.0, 2.0])
    assert relu.off(x).tolist() == [True, True, False]
    assert relu.saturated(x).tolist() == [False, False, False]
    tanh = build_activation(SPEC.validate_python("tanh"), 1)
    assert tanh.saturated(torch.tensor([-5.0, 0.0, 5.0])).tolist() == [True, False, True]


def test_activation_options_reach_the_module():
    def inner(spec):
        return build_activation(SPEC.validate_python(spec), channels=8).fn

    assert inner({"name": "prelu"}).weight.numel() == 8  # per channel by default
    assert inner({"name": "prelu", "per_channel": False}).weight.numel() == 1
    assert inner({"name": "prelu", "init": 0.1}).weight.detach().eq(0.1).all()
    assert inner({"name": "gelu", "approximate": "tanh"}).approximate == "tanh"
    assert inner({"name": "elu", "alpha": 0.5}).alpha == 0.5
    assert inner({"name": "celu", "alpha": 2.0}).alpha == 2.0
    assert inner({"name": "softplus", "beta": 3.0}).beta == 3.0
    assert inner({"name": "leaky_relu", "negative_slope": 0.2}).negative_slope == 0.2


def test_norm_options_reach_the_module_and_groups_divide_the_width():
    from torch import nn

    from cnnlab.components.norms import NormSpec, build_norm

    def norm(spec, channels=12):
        return build_norm(TypeAdapter(NormSpec).validate_python(spec), channels)

    assert norm({"name": "group", "groups": 4}).num_groups == 4
    assert norm({"name": "group", "groups": 8}).num_groups == 6  # the largest divisor of 12
    assert norm({"name": "layer"}).num_groups == 1
    assert norm({"name": "instance"}).num_groups == 12
    batch = norm({"name": "batch", "momentum": 0.05, "eps": 1e-3})
    assert isinstance(batch, nn.BatchNorm2d) and (batch.momentum, batch.eps) == (0.05, 1e-3)
    assert isinstance(norm("none"), nn.Identity)
