"""Dirac (identity) init with noise and airbench's treatment of extra output channels.

`noise` adds N(0, noise^2/fan_in) to every weight, so a conv's output is its input plus a term
whose variance is noise^2 times the input's mean square; these tests check that statement on
square, widening (out > in) and narrowing (out < in) convolutions with fixed seeds.
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.components.activations import ActivationSpec
from cnnlab.components.init import INITS, InitConfig, InitSpec, LayerContext, fans, initialize
from cnnlab.options import entry_options

INIT = TypeAdapter(InitSpec)


def conv_with_dirac(in_channels, out_channels, seed=0, **keys):
    layer = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    fan_in, fan_out = fans(layer.weight)
    ctx = LayerContext("layer", fan_in, fan_out, math.sqrt(2.0), "relu",
                       torch.Generator().manual_seed(seed))
    options = entry_options(INITS.get("dirac"), INIT.validate_python({"name": "dirac", **keys}))
    with torch.no_grad():
        layer.weight.fill_(float("nan"))
        INITS.get("dirac").factory(layer.weight, options, ctx)
    return layer, ctx.generator


def interior_output(layer, in_channels):
    # Border pixels see zero padding, so only the interior has the full fan_in of inputs.
    x = torch.randn(16, in_channels, 18, 18, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = layer(x)
    return x[..., 1:-1, 1:-1], y[..., 1:-1, 1:-1]


@pytest.mark.parametrize("channels", [(8, 8), (4, 12), (12, 4)], ids=["square", "out>in", "out<in"])
def test_noise_zero_is_todays_dirac_exactly_and_draws_nothing(channels):
    layer, generator = conv_with_dirac(*channels, noise=0.0)
    expected = torch.empty_like(layer.weight)
    nn.init.dirac_(expected)
    assert torch.equal(layer.weight, expected)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())
    plain, _ = conv_with_dirac(*channels)  # the bare name: the same
    assert torch.equal(plain.weight, expected)


@pytest.mark.parametrize("channels", [(32, 32), (16, 48), (48, 16)],
                         ids=["square", "out>in", "out<in"])
@pytest.mark.parametrize("noise", [0.1, 0.5])
def test_output_is_the_input_plus_noise_of_the_stated_scale(channels, noise):
    in_channels, out_channels = channels
    layer, _ = conv_with_dirac(in_channels, out_channels, noise=noise)
    x, y = interior_output(layer, in_channels)
    kept = min(in_channels, out_channels)
    # Output channel i < min(in, out) is input channel i plus noise; the rest are noise alone.
    identity = torch.zeros_like(y)
    identity[:, :kept] = x[:, :kept]
    residual = y - identity
    ratio = residual.double().pow(2).mean().item() / x.double().pow(2).mean().item()
    assert ratio == pytest.approx(noise ** 2, rel=0.15)
    assert abs(residual.double().mean().item()) < 0.05 * noise
    # The identity really is there: the output correlates with its input channel near 1/sqrt(1+n^2).
    corr = torch.corrcoef(torch.stack([y[:, :kept].flatten(), x[:, :kept].flatten()]))[0, 1]
    assert corr.item() == pytest.approx(1.0 / math.sqrt(1.0 + noise ** 2), abs=0.03)


def test_extra_channels_torch_default_is_airbenchs_rule():
    # airbench: PyTorch's default init everywhere, then identity on the first in_channels outputs.
    layer, _ = conv_with_dirac(4, 12, extra_channels="torch_default")
    weight = layer.weight.detach()
    expected = torch.empty(4, 4, 3, 3)
    nn.init.dirac_(expected)
    assert torch.equal(weight[:4], expected)
    bound = 1.0 / math.sqrt(4 * 9)
    extra = weight[4:]
    assert extra.abs().max().item() <= bound
    assert extra.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.2)
    # Narrowing or square convs have no extra channels: the option changes nothing there.
    square, _ = conv_with_dirac(8, 8, extra_channels="torch_default")
    narrow, _ = conv_with_dirac(12, 4, extra_channels="torch_default")
    assert torch.equal(square.weight, conv_with_dirac(8, 8)[0].weight)
    assert torch.equal(narrow.weight, conv_with_dirac(12, 4)[0].weight)


def test_negative_noise_is_rejected():
    with pytest.raises(Exception, match="noise"):
        INIT.validate_python({"name": "dirac", "noise": -0.1})


def test_a_rule_gives_matching_convs_dirac_with_noise_and_leaves_the_rest():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1))
    cfg = InitConfig.model_validate({
        "default": "kaiming_normal",
        "rules": [{"match": "2", "init": {"name": "dirac", "noise": 0.2}},
                  {"match": "4", "init": {"name": "dirac", "extra_channels": "torch_default"}}]})
    initialize(model, cfg, TypeAdapter(ActivationSpec).validate_python("relu"),
               torch.Generator().manual_seed(0))
    identity = torch.empty(16, 16, 3, 3)
    nn.init.dirac_(identity)
    noise = (model[2].weight.detach() - identity)
    assert noise.std().item() == pytest.approx(0.2 / math.sqrt(16 * 9), rel=0.1)
    assert torch.equal(model[4].weight.detach()[:16], identity)
    assert model[4].weight.detach()[16:].abs().max().item() <= 1.0 / math.sqrt(16 * 9)
    assert model[4].weight.detach()[16:].abs().min().item() > 0.0
