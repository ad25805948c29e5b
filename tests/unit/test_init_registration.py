"""An initializer carries its own post-step in its registration: `initialize` runs it by what the
entry says (stage, needs data), never by testing its name, and hands it the validated options."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.components import init as init_module
from cnnlab.components.activations import ActivationSpec
from cnnlab.components.init import INITS, InitInfo, PostStep, Stage, initialize
from cnnlab.errors import UserError
from cnnlab.options import Options
from cnnlab.registry import Registry

RELU = TypeAdapter(ActivationSpec).validate_python("relu")


class ScaleOptions(Options):
    scale: float = 2.0


class ScaleSpec(ScaleOptions):
    """What the config's tagged union makes of `{name: scaled_ones, scale: ...}`."""

    name: str = "scaled_ones"


def _toy_registry(calls: list) -> Registry[InitInfo]:
    """A registry holding two toy whole-model initializers, recording their post-steps."""
    registry = Registry("initializer", "inits", InitInfo)

    def scale_on_data(model, layers, options, batch):
        calls.append(("scaled_ones", [name for name, _ in layers], options, batch))
        with torch.no_grad():
            for _, layer in layers:
                layer.weight.mul_(options.scale)

    def count_structure(model, layers, options, batch):
        calls.append(("counted", [name for name, _ in layers], options, batch))

    @registry.register("scaled_ones", "ones, then scaled once the model is built", ScaleOptions,
                       InitInfo(post_step=PostStep(scale_on_data, Stage.DATA, needs_data=True)))
    def scaled_ones(tensor, options, ctx):
        calls.append(("fill", ctx.name, options))
        tensor.fill_(1.0)

    @registry.register("counted", "zeros, then counted",
                       info=InitInfo(post_step=PostStep(count_structure, Stage.STRUCTURE)))
    def counted(tensor, options, ctx):
        tensor.zero_()

    return registry


def _two_layer_net() -> nn.Module:
    model = nn.Sequential()
    model.add_module("first", nn.Linear(4, 3))
    model.add_module("classifier", nn.Linear(3, 2))
    return model


def _config(default, rules=()) -> SimpleNamespace:
    return SimpleNamespace(default=default, rules=list(rules), bias=None, zero_init_residual=False)


def test_a_registered_post_step_runs_with_the_validated_options_and_a_batch(monkeypatch):
    calls: list = []
    monkeypatch.setattr(init_module, "INITS", _toy_registry(calls))
    spec = ScaleSpec(scale=3.0)
    batch = torch.ones(1, 4)
    model = _two_layer_net()
    initialize(model, _config(spec), RELU, torch.Generator().manual_seed(0), lambda: batch)

    assert torch.equal(model.first.weight, torch.full((3, 4), 3.0))
    assert torch.equal(model.classifier.weight, torch.full((2, 3), 3.0))
    fills = [c for c in calls if c[0] == "fill"]
    post = [c for c in calls if c[0] == "scaled_ones"]
    # The config's spec itself reaches every layer and the post-step: validated once, not per layer.
    assert [c[1] for c in fills] == ["first", "classifier"] and all(c[2] is spec for c in fills)
    assert post == [("scaled_ones", ["first", "classifier"], spec, batch)]


def test_post_steps_run_in_stage_order_whatever_the_layer_order(monkeypatch):
    calls: list = []
    monkeypatch.setattr(init_module, "INITS", _toy_registry(calls))
    rule = SimpleNamespace(match="classifier", init=SimpleNamespace(name="counted"), bias=None)
    initialize(_two_layer_net(), _config(ScaleSpec(), [rule]), RELU,
               torch.Generator().manual_seed(0), lambda: torch.ones(1, 4))
    assert [c[:2] for c in calls if c[0] != "fill"] == [("counted", ["classifier"]),
                                                        ("scaled_ones", ["first"])]


def test_a_post_step_that_needs_data_without_a_batch_is_a_user_error(monkeypatch):
    monkeypatch.setattr(init_module, "INITS", _toy_registry([]))
    with pytest.raises(UserError, match="init scaled_ones needs a batch of training data"):
        initialize(_two_layer_net(), _config(ScaleSpec()), RELU, torch.Generator())


def test_the_applying_code_tests_no_initializer_by_name():
    applying = "".join(inspect.getsource(f) for f in (
        init_module.initialize, init_module._run_post_steps, init_module._apply,
        init_module._warn_mismatch))
    for entry in INITS:
        assert f'"{entry.name}"' not in applying, entry.name
