"""`cnnlab inspect`'s verdict (issue 15, item 1): a statistic that does not move with the image
size, forward and backward named for what they are, and advice that changes the config."""

from __future__ import annotations

import importlib.util

import pytest

import cnnlab
from cnnlab.propagation import LayerStats, Setup, inspect, verdict
from tests.conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart.yaml"
SYNTHETIC = ["data.dataset=synthetic", "data.synthetic.train_size=64",
             "data.synthetic.test_size=16"]
# The deep plain net: 20 conv layers, no normalization, kaiming_normal, relu, on digits.
PLAIN20_DIGITS = ["model.arch=plain", "model.depth=20", "model.norm=none"]
# A small plain stack on tiny synthetic images: a few hundred milliseconds per inspect.
PLAIN10 = ["model.arch=plain", "model.depth=10", "model.width=16", "model.norm=none",
           *SYNTHETIC, "data.synthetic.image_size=16"]


def report(overrides: list[str]) -> dict:
    return inspect(cnnlab.load_config(QUICKSTART, overrides), batch_size=64)


def weight_layers(result: dict) -> list[str]:
    return [layer["name"] for layer in result["layers"] if layer["kind"] in ("conv", "linear")]


@pytest.mark.parametrize("size", [32, 64])
def test_the_quickstart_net_is_healthy_at_every_image_size(size):
    small = report([*SYNTHETIC, "data.synthetic.image_size=8"])
    large = report([*SYNTHETIC, f"data.synthetic.image_size={size}"])
    assert large["verdict"] == "healthy", large["advice"]
    # The judged backward ratio stays put while the per-element gradient std ratio (what the
    # old verdict judged) falls with the number of positions.
    assert large["backward_ratio"] == pytest.approx(small["backward_ratio"], rel=0.5)
    assert large["backward_std_ratio"] < small["backward_std_ratio"] / 2


def test_the_deep_plain_relu_kaiming_net_on_digits_is_not_called_vanishing():
    # It trains: the same stack at width 32 (which loses more signal) reaches 0.70 val_acc in 4
    # epochs in examples/inspect_calibration.py (README, "Signal at init").
    result = report(PLAIN20_DIGITS)
    assert result["verdict"] == "healthy", result["advice"]
    assert result["init"] == "kaiming_normal" and result["norm"] == "none"


@pytest.mark.parametrize("overrides, direction", [
    (["model.activation=sigmoid"], "backward"),
    (["model.init={name: normal, std: 0.01}"], "forward"),
])
def test_the_message_names_forward_or_backward_and_never_its_reference_layer(overrides, direction):
    result = report(PLAIN10 + overrides)
    assert result["verdict"] == "vanishing"
    assert result["direction"] == direction
    assert result["advice"].startswith(f"{direction}: ")
    other = {"forward": "backward", "backward": "forward"}[direction]
    assert other not in result["advice"]
    # Forward a signal is compared with the input images', backward with the last hidden
    # layer's gradient: the layer named as where it went wrong is never that reference itself.
    hidden = weight_layers(result)[:-1]
    assert result["layer"] in hidden
    if direction == "forward":
        assert "the std of the input images" in result["advice"]
        assert "first weight layer" not in result["advice"]
    else:
        assert result["layer"] != hidden[-1]
        assert f"last hidden weight layer {hidden[-1]}" in result["advice"]
    assert f"at {result['layer']}" in result["advice"] or f"of {result['layer']}" in \
        result["advice"]


@pytest.mark.parametrize("overrides, unwanted, wanted", [
    # kaiming_normal and relu are what the config has: the advice says so and looks elsewhere.
    (PLAIN10 + ["model.depth=30", "model.width=8"], ["model.init=kaiming", "activation=relu"],
     ["kaiming_normal already suits relu", "model.norm=batch"]),
    (PLAIN10 + ["model.activation=sigmoid"], ["model.init=kaiming", "activation=sigmoid"],
     ["model.activation=relu"]),
    (PLAIN10 + ["model.init=xavier_normal", "model.depth=20"], ["model.init=xavier"],
     ["model.init=kaiming_normal"]),
])
def test_advice_never_recommends_what_the_config_already_uses(overrides, unwanted, wanted):
    result = report(overrides)
    assert result["verdict"] in {"vanishing", "exploding"}, result["advice"]
    for text in unwanted:
        assert text not in result["advice"]
    for text in wanted:
        assert text in result["advice"]


def _stats(forward: list[float], backward: list[float]) -> list[LayerStats]:
    layers = [LayerStats(f"body.{i}", "conv", "Conv2d", std=f, grad_norm=b, weight_std=1.0)
              for i, (f, b) in enumerate(zip(forward, backward))]
    return layers + [LayerStats("classifier", "linear", "Linear", std=1.0, grad_norm=1.0,
                                weight_std=1.0)]


@pytest.mark.parametrize("init, activation, norm", [
    ("kaiming_normal", "relu", "none"), ("kaiming_uniform", "gelu", "batch"),
    ("lecun_normal", "selu", "none"), ("xavier_normal", "tanh", "batch"),
    ("orthogonal", "sigmoid", "group"),
])
@pytest.mark.parametrize("forward, backward", [
    ([1.0, 0.5, 1e-3], [1.0, 1.0, 1.0]), ([1.0, 50.0, 1e3], [1.0, 1.0, 1.0]),
    ([1.0, 1.0, 1.0], [1e-3, 0.5, 1.0]), ([1.0, 1.0, 1.0], [1e3, 2.0, 1.0]),
])
def test_no_advice_names_the_configured_choice_as_the_change(init, activation, norm, forward,
                                                             backward):
    result = verdict(_stats(forward, backward), None, Setup(init, activation, norm))
    assert result["verdict"] in {"vanishing", "exploding"}
    reference = "body.0" if result["direction"] == "forward" else "body.2"
    assert result["layer"] != reference
    assert f"model.init={init}" not in result["advice"]
    assert f"model.activation={activation}" not in result["advice"]
    assert f"model.norm={norm}" not in result["advice"]


def test_calibration_rows_keep_their_verdicts():
    path = ROOT / "examples" / "inspect_calibration.py"
    spec = importlib.util.spec_from_file_location("inspect_calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = {label: (config, overrides) for label, config, overrides in module.CASES}
    # The quickstart net at 32x32 and the rows either side of the ratio limit.
    expected = {"simple_cnn, batch norm, kaiming, relu, 32x32": "healthy",
                "plain-20, kaiming, relu, digits": "healthy",
                "plain-6, xavier, relu, digits": "vanishing"}
    for label, wanted in expected.items():
        config, overrides = cases[label]
        assert inspect(cnnlab.load_config(config, overrides), batch_size=64)["verdict"] == wanted


def test_advice_for_a_network_cnnlab_did_not_build_does_not_name_resnet20():
    """A torchvision resnet already has shortcuts, and its architecture is not a config key."""
    from cnnlab.propagation import Setup, _scale_advice

    built_in = _scale_advice("exploding", Setup("kaiming_normal", "relu", "batch"), 20)
    foreign = _scale_advice("exploding", Setup(None, "relu", "batch", built_in=False), 20)
    assert "model.arch=resnet20" in built_in
    assert "resnet20" not in foreign and "shortcuts where the network has none" in foreign
    assert "model.init=kaiming_normal" in foreign  # the model's own init is not known to suit


def test_backward_is_judged_behind_the_norm_that_follows_a_layer():
    """A conv followed by a batch norm: the gradient at the conv's own output scales with 1 / its
    weight scale (which the function ignores), so the verdict reads it at the norm's output."""
    def conv(name, grad):
        return LayerStats(name, "conv", "Conv2d", std=1.0, grad_norm=grad, weight_std=0.1)

    def norm(name, grad):
        return LayerStats(name, "norm", "BatchNorm2d", std=1.0, grad_norm=grad)

    layers = [conv("a", 24.0), norm("a_bn", 2.0), conv("b", 1.0), norm("b_bn", 1.0),
              LayerStats("fc", "linear", "Linear", std=1.0, grad_norm=1.0, weight_std=0.1)]
    report = verdict(layers, None, Setup(), input_std=1.0)
    assert report["verdict"] == "healthy" and report["backward_ratio"] == pytest.approx(2.0)
    # Without the norms the same conv gradients are judged as they are: 24x is exploding.
    plain = [layers[0], layers[2], layers[4]]
    assert verdict(plain, None, Setup(), input_std=1.0)["verdict"] == "exploding"


def test_torchvision_resnet18_at_its_own_init_is_healthy():
    """torchvision initializes its convs with kaiming_normal(fan_out); the first conv of 3
    channels starts 4.6x smaller than fan_in would make it. The network trains as well as with
    fan_in (README, "Your own network"), so the verdict must not call it exploding."""
    import torch
    import torchvision

    from cnnlab.propagation import input_std, measure

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    # The small-image stem (model.small_input), initialized as torchvision initializes convs.
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    torch.nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = torch.nn.Identity()
    images, labels = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    layers, symmetric = measure(model, images, labels)
    report = verdict(layers, symmetric, Setup(None, "relu", "batch", built_in=False),
                     input_std(images))
    assert report["verdict"] == "healthy", report["advice"]
    at_conv1 = next(s for s in layers if s.name == "conv1").grad_norm
    last = next(s for s in layers if s.name == "layer4.1.conv2").grad_norm
    assert at_conv1 / last > 16  # the conv's own output would have read exploding
