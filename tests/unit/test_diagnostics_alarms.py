"""Each alarm rule of the training diagnostics on a hand-built step, and the global gradient
norm they judge (the one gradient clipping sees)."""

import math

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.components.activations import ActivationSpec, build_activation
from cnnlab.diagnostics import Diagnostics


def net(activation: str = "relu") -> nn.Sequential:
    torch.manual_seed(0)
    act = build_activation(TypeAdapter(ActivationSpec).validate_python(activation), 4)
    return nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 2))


def sample(diagnostics: Diagnostics, model: nn.Module, step: int, grads=None, inputs=None,
           move: float = 0.0, judge_updates: bool = False) -> list[dict]:
    """One sampled step: forward under the hooks, the given gradients (else backward), an
    update that moves every weight by `move` times its own size."""
    x = inputs if inputs is not None else torch.randn(8, 3, generator=torch.Generator()
                                                      .manual_seed(step))
    with diagnostics.capture():
        out = model(x)
    if grads is None:
        out.square().mean().backward()
    else:
        for param, grad in zip(model.parameters(), grads):
            param.grad = grad.clone()
    diagnostics.before_update(model)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1.0 + move)
    model.zero_grad(set_to_none=True)
    return diagnostics.after_update(step, lr=0.1, judge_updates=judge_updates)


def zero_grads(model, **replace):
    grads = [torch.zeros_like(p) for p in model.parameters()]
    for index, value in replace.items():
        grads[int(index[1:])] = value
    return grads


def kinds(alarms):
    return {a["kind"] for a in alarms}


def test_the_global_gradient_norm_counts_biases_and_every_parameter():
    model = net()
    diagnostics = Diagnostics(model, every=1)
    # Parameters: 0 fc1.weight, 1 fc1.bias, 2 fc2.weight, 3 fc2.bias.
    sample(diagnostics, model, 0, zero_grads(model, p1=torch.tensor([3.0, 4.0, 0.0, 0.0])))
    assert diagnostics.records[-1]["global_grad_norm"] == pytest.approx(5.0)


def test_huge_finite_gradients_are_exploding_not_non_finite():
    model = net()
    diagnostics = Diagnostics(model, every=1)
    huge = torch.full((2, 4), 1e25)  # its float32 square overflows; the gradient is finite
    alarms = sample(diagnostics, model, 0, zero_grads(model, p2=huge))
    assert kinds(alarms) == {"exploding"}
    assert diagnostics.records[-1]["global_grad_norm"] == pytest.approx(math.sqrt(8) * 1e25,
                                                                        rel=1e-5)


def test_a_non_finite_gradient_names_its_layer():
    model = net()
    diagnostics = Diagnostics(model, every=1)
    bad = torch.zeros(2, 4)
    bad[0, 0] = float("inf")
    alarms = sample(diagnostics, model, 0, zero_grads(model, p2=bad))
    assert [(a["kind"], a["layer"]) for a in alarms] == [("non_finite", "2")]


def test_a_non_finite_output_names_the_first_layer_that_produced_it():
    model = net()
    diagnostics = Diagnostics(model, every=1)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    alarms = sample(diagnostics, model, 0, zero_grads(model))
    assert ("non_finite", "0") in [(a["kind"], a["layer"]) for a in alarms]


def test_exploding_fires_on_tenfold_growth_and_on_the_threshold():
    model = net()
    diagnostics = Diagnostics(model, every=1, explode_threshold=100.0)
    assert sample(diagnostics, model, 0, zero_grads(model, p3=torch.tensor([1.0, 0.0]))) == []
    grown = sample(diagnostics, model, 1, zero_grads(model, p3=torch.tensor([20.0, 0.0])))
    assert kinds(grown) == {"exploding"} and "x20" in grown[0]["detail"]
    steady = Diagnostics(model, every=1, explode_threshold=100.0)
    sample(steady, model, 0, zero_grads(model, p3=torch.tensor([150.0, 0.0])))
    assert kinds(steady.alarms) == {"exploding"}


def test_update_ratio_fires_outside_its_band_only_when_updates_are_judged():
    model = net()
    diagnostics = Diagnostics(model, every=1)
    assert "update_ratio" in kinds(sample(diagnostics, model, 0, move=0.5, judge_updates=True))
    quiet = Diagnostics(model, every=1)
    assert "update_ratio" not in kinds(sample(quiet, model, 0, move=0.5, judge_updates=False))
    tiny = Diagnostics(model, every=1)
    ratio_alarms = [a for a in sample(tiny, model, 0, move=1e-7, judge_updates=True)
                    if a["kind"] == "update_ratio"]
    assert {a["layer"] for a in ratio_alarms} == {"0", "2"}


def test_saturated_fires_when_most_inputs_lie_in_the_flat_region():
    model = net("sigmoid")
    diagnostics = Diagnostics(model, every=1)
    with torch.no_grad():
        model[0].weight.mul_(1000.0)
    alarms = sample(diagnostics, model, 0)
    assert ("saturated", "1") in [(a["kind"], a["layer"]) for a in alarms]
    calm = net("sigmoid")
    assert "saturated" not in kinds(sample(Diagnostics(calm, every=1), calm, 0))
