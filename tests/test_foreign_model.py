"""Techniques on any model (issue 17): the activation after each layer found by tracing the
forward (modules and functional calls), the init gain following it, activation and norm
replacement that refuses functional calls, and inspect/diagnostics naming a foreign model's
layers by their module names."""

from __future__ import annotations

import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter
from torch import nn

from cnnlab.activation_trace import trace, trace_activations
from cnnlab.components.activations import ActivationSpec, activation_gain
from cnnlab.components.init import InitConfig
from cnnlab.components.kinds import kinded_modules
from cnnlab.components.norms import NormSpec
from cnnlab.diagnostics import Diagnostics
from cnnlab.errors import UserError
from cnnlab.foreign_model import prepare_foreign_model
from cnnlab.propagation import configured_setup, inspect_assembly, measure, verdict
from tests.conftest import ROOT

torchvision = pytest.importorskip("torchvision")


def _load_my_nets():
    spec = importlib.util.spec_from_file_location("my_nets", ROOT / "examples" / "my_nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


my_nets = _load_my_nets()
IMAGES = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def activation(name):
    return TypeAdapter(ActivationSpec).validate_python(name)


def norm(name):
    return TypeAdapter(NormSpec).validate_python(name)


def resnet18() -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=10)


def prepare(model, *, init=None, act=None, nrm=None, sample_batch=None):
    return prepare_foreign_model(
        model, init=InitConfig.model_validate(init) if init is not None else None,
        activation=act, norm=nrm, example_input=IMAGES, generator=torch.Generator().manual_seed(0),
        sample_batch=sample_batch)


class Mixed(nn.Module):
    """Functional activations of every form, a linear bottleneck and an op the trace does not
    know (cumsum)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 1)  # straight into d: no activation
        self.d = nn.Conv2d(8, 8, 3, padding=1)
        self.e = nn.Conv2d(8, 8, 3, padding=1)
        self.f = nn.Conv2d(8, 8, 3, padding=1)
        self.g = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.GELU(approximate="tanh")
        self.classifier = nn.Linear(8, 10)

    def forward(self, x):
        x = F.leaky_relu(self.a(x), 0.2)
        x = torch.tanh(self.b(x))
        x = self.d(self.c(x)).sigmoid()
        x = self.act(F.dropout(self.e(x) + x, 0.1, self.training))
        x = torch.cumsum(self.f(x), dim=1)
        x = self.g(x).clamp(min=0)
        return self.classifier(x.mean((2, 3)))


def test_the_trace_finds_module_and_functional_activations_and_the_classifier():
    labels = trace_activations(Mixed(), IMAGES)
    assert labels == {"a": "leaky_relu(negative_slope=0.2)", "b": "tanh", "c": "linear",
                      "d": "sigmoid", "e": "gelu(approximate=tanh)", "f": "unknown",
                      "g": "relu", "classifier": "linear"}
    small = trace(my_nets.build(3, 10), IMAGES)
    assert small.labels() == {"conv1": "relu", "conv2": "relu", "fc": "linear"}
    sites = [site.describe() for site in small.functional_activations]
    assert sites[0].startswith("F.relu after conv1 in SmallNet.forward (my_nets.py:")
    assert sites[1].startswith("F.relu after conv2 in SmallNet.forward (my_nets.py:")


def test_the_trace_of_torchvision_resnet18_follows_the_shortcut_to_its_relu():
    model = resnet18()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels = trace_activations(model, IMAGES)
    assert labels["fc"] == "linear"
    # The downsample branch and the block's last conv meet at the add, then the shared relu.
    assert labels["layer2.0.downsample.0"] == labels["layer2.0.conv2"] == "relu"
    assert set(labels.values()) == {"relu", "linear"} and len(labels) == 21
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_init_gains_follow_the_traced_activation_and_the_notes_name_unknown_layers():
    model = Mixed()
    prepared = prepare(model, init="kaiming_normal")
    expected = {"a": activation_gain("leaky_relu", negative_slope=0.2),
                "b": 5.0 / 3.0, "c": 1.0, "d": 1.0, "e": activation_gain("gelu", approximate="tanh"),
                "f": math.sqrt(2.0), "g": math.sqrt(2.0), "classifier": 1.0}
    for name, gain in expected.items():
        weight = getattr(model, name).weight.detach()
        fan_in = weight[0].numel()
        assert float(weight.std()) == pytest.approx(gain / math.sqrt(fan_in), rel=0.25), name
    assert prepared.activations["f"] == "unknown"
    assert any("activation unknown after f" in note and "sqrt(2)" in note
               for note in prepared.notes)
    assert len(prepared.assignments) == 8
    kept = prepare(Mixed())
    assert kept.assignments == [] and any("kept the model's own" in n for n in kept.notes)


def test_activation_replacement_refuses_functional_calls_naming_them():
    with pytest.raises(UserError) as error:
        prepare(my_nets.build(3, 10), act=activation("gelu"))
    message = str(error.value)
    assert "F.relu after conv1" in message and "F.relu after conv2" in message
    assert "SmallNet.forward" in message and "my_nets.py:" in message
    assert "remove model.activation" in message and "\n" not in message


def test_activation_and_norm_replacement_on_resnet18_retrace_the_gains():
    model = resnet18()
    prepared = prepare(model, init="kaiming_normal", act=activation("gelu"), nrm=norm("group"))
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm2d)) for m in model.modules())
    assert isinstance(model.layer1[0].bn1, nn.GroupNorm)
    assert prepared.activations["layer1.0.conv1"] == "gelu"
    assert prepared.activations["fc"] == "linear"
    assert "replaced 9 activation modules (relu x9)" in prepared.notes[0]
    assert model(IMAGES).shape == (4, 10)

    plain = prepare(resnet18(), nrm=norm("none"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.model.modules())
    assert plain.model(IMAGES).shape == (4, 10)


class FunctionalNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.classifier = nn.Linear(4, 2)

    def forward(self, x):
        x = F.group_norm(self.conv(x), 2)
        return self.classifier(F.relu(x).mean((2, 3)))


def test_norm_replacement_refuses_functional_norms_and_lists_channels_last_ones():
    with pytest.raises(UserError, match="model.norm cannot replace the functional calls "
                       "F.group_norm after conv"):
        prepare(FunctionalNorm(), nrm=norm("batch"))
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), Permuted(8),
                          nn.Flatten(1), nn.Linear(8 * 256, 2))
    notes = prepare(model, nrm=norm("group")).notes
    assert isinstance(model[1], nn.GroupNorm)
    assert any("could not replace 3.norm (LayerNorm)" in note for note in notes), notes


class Permuted(nn.Module):
    """A LayerNorm over the last dimension, channels last, as ConvNeXt blocks have."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_whole_model_inits_work_or_refuse_on_a_foreign_model():
    with pytest.raises(UserError, match="zero_init_residual needs residual branches"):
        prepare(resnet18(), init={"default": "kaiming_normal", "zero_init_residual": True})
    model = my_nets.build(3, 10)
    prepare(model, init="lsuv", sample_batch=lambda: IMAGES)
    with torch.no_grad():
        variance = float(model.conv1(IMAGES).var())
    assert variance == pytest.approx(1.0, abs=0.1)


def test_measure_and_verdict_name_the_layers_of_a_foreign_model():
    for model, expected in [(resnet18(), "layer1.0.conv1"), (my_nets.build(3, 10), "conv2")]:
        labels = torch.arange(4) % 2
        layers, symmetric = measure(model, IMAGES, labels)
        names = [s.name for s in layers]
        assert expected in names and symmetric is None
        result = verdict(layers, symmetric)
        assert result["verdict"] in {"healthy", "vanishing", "exploding", "dead", "saturated"}
    relus = [s for s in layers if s.kind == "activation"]
    assert relus == []  # SmallNet's relus are functional: no module to hook
    layers, _ = measure(resnet18(), IMAGES, labels)
    relus = [s for s in layers if s.kind == "activation"]
    assert relus[0].name == "relu" and 0.0 <= relus[0].dead <= 1.0


def test_inspect_assembly_reads_a_kept_setup_from_the_model():
    model = resnet18()
    images = torch.randn(8, 3, 16, 16)
    assembly = SimpleNamespace(
        data=SimpleNamespace(train=_Split(images, torch.arange(8) % 10)),
        runtime=SimpleNamespace(device=torch.device("cpu")), normalizer=lambda x: x,
        model=model, assignments=[],
        cfg=SimpleNamespace(name="foreign", model=SimpleNamespace(
            arch="torchvision.resnet18", activation=None, norm=None, init=None)))
    report = inspect_assembly(assembly, batch_size=8)
    assert report["activation"] == "relu (traced)"
    assert report["norm"] == "BatchNorm2d (the model's own)"
    assert report["init"] == "the model's own"
    assert "layer1.0.conv1" in [layer["name"] for layer in report["layers"]]
    setup, _ = configured_setup(assembly.cfg.model, model, images[:2])
    assert (setup.activation, setup.norm, setup.init) == ("relu", "batch", None)


class _Split:
    in_memory = True

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)


def test_diagnostics_record_a_foreign_models_layers_by_module_name():
    model = resnet18()
    diagnostics = Diagnostics(model, every=1)
    names = [layer.name for layer in diagnostics.layers]
    assert "layer1.0.conv1" in names and "layer1.0.relu" in names and "fc" in names
    with diagnostics.capture():
        F.cross_entropy(model(IMAGES), torch.arange(4)).backward()
    assert model.relu.inplace  # run out of place only while sampled
    diagnostics.before_update(model)
    diagnostics.after_update(0, lr=0.1, judge_updates=False)
    record = diagnostics.records[-1]
    relu = names.index("relu")
    # The dead fraction is read from the relu's input, not its (in-place) output.
    assert 0.0 <= record["dead"][relu] < 1.0
    assert record["std"][names.index("layer1.0.conv1")] > 0


def test_cnnlab_activations_count_once_with_their_inner_function():
    spec = activation("relu")
    from cnnlab.components.activations import build_activation

    model = nn.Sequential(nn.Conv2d(3, 4, 3), build_activation(spec, 4))
    assert [(name, kind) for name, kind, _ in kinded_modules(model)] == [
        ("0", "conv"), ("1", "activation")]


@pytest.mark.parametrize("module, config", [
    (nn.ReLU(inplace=True), "relu"), (nn.LeakyReLU(0.2), {"name": "leaky_relu",
                                                        "negative_slope": 0.2}),
    (nn.GELU(approximate="tanh"), {"name": "gelu", "approximate": "tanh"}),
    (nn.Tanh(), "tanh"), (nn.Sigmoid(), "sigmoid"), (nn.Hardswish(), "hardswish"),
    (nn.SiLU(), "silu"), (nn.ELU(0.5), {"name": "elu", "alpha": 0.5}),
])
def test_torch_activation_modules_share_the_registry_gain_and_unit_health(module, config):
    from cnnlab.components.activations import activation_profile, build_activation
    from cnnlab.components.torch_activations import gain_of, module_activation, profile_of
    from cnnlab.unit_health import dead_fraction, saturated_fraction

    spec = activation(config)
    assert profile_of(module) == activation_profile(spec)
    assert gain_of(module_activation(module)) == pytest.approx(activation_profile(spec).gain)
    x = torch.randn(16, 4, 3, 3, generator=torch.Generator().manual_seed(1)) * 4 - 1
    ours = build_activation(spec, 4)
    assert float(dead_fraction(module, x)) == float(dead_fraction(ours, x))
    assert float(saturated_fraction(module, x)) == float(saturated_fraction(ours, x))


def test_an_activation_the_registry_cannot_take_is_traced_as_unknown():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(-0.1), nn.Flatten(),
                          nn.Linear(4 * 14 * 14, 2))
    assert trace_activations(model, IMAGES) == {"0": "unknown", "3": "linear"}
