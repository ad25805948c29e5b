"""Weight initialization: statistics against theory, bit-for-bit oracles against torch.nn.init,
seeding, per-layer rules, LSUV, Fixup, zero-init residual and the gain-mismatch warning.

The statistical tests fill large, non-square layers (fan_in != fan_out) so that a missing gain,
a swapped fan or a uniform drawn with the wrong bound moves the sample std far outside 5%.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from pydantic import TypeAdapter
from scipy import integrate, special
from torch import nn

from cnnlab.components.activations import ActivationSpec, _profile, activation_profile
from cnnlab.components.init import (
    INITS,
    InitConfig,
    InitMismatchWarning,
    InitSpec,
    LayerContext,
    fans,
    initialize,
)
from cnnlab.errors import UserError
from cnnlab.models import ModelSpec, build_model
from cnnlab.models.resnet import BasicBlock
from cnnlab.options import entry_options

ACT = TypeAdapter(ActivationSpec)
INIT = TypeAdapter(InitSpec)
MODEL = TypeAdapter(ModelSpec)

# Large and non-square: conv fan_in 2304, fan_out 1152; linear fan_in 1024, fan_out 512.
BIG = {"conv": (128, 256, 3, 3), "linear": (512, 1024)}
# Small shapes for the bit-for-bit oracles (fan_in 144 vs fan_out 288; 128 vs 64).
SMALL = {"conv": (32, 16, 3, 3), "linear": (64, 128)}

SQRT2 = math.sqrt(2.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Helpers


def act(spec):
    return ACT.validate_python(spec)


def init_options(name: str, **keys):
    return entry_options(INITS.get(name), INIT.validate_python({"name": name, **keys}))


def true_fans(shape) -> tuple[int, int]:
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def context(shape, activation="relu", seed=0, ctx_gain=None) -> LayerContext:
    """The context `initialize` would give a hidden layer of this shape (gain: the activation's,
    unless ctx_gain overrides it)."""
    profile = activation_profile(act(activation))
    fan_in, fan_out = true_fans(shape)
    return LayerContext("layer", fan_in, fan_out, profile.gain if ctx_gain is None else ctx_gain,
                        profile.name, torch.Generator().manual_seed(seed))


def fill(name, shape, activation="relu", seed=0, ctx_gain=None, **keys) -> torch.Tensor:
    """Run one initializer's factory on a fresh NaN tensor (so untouched entries show up), under
    no_grad as `initialize` does. `keys` are the initializer's options."""
    tensor = torch.full(shape, float("nan"))
    ctx = context(shape, activation, seed, ctx_gain)
    options = init_options(name, **keys)
    with torch.no_grad():
        INITS.get(name).factory(tensor, options, ctx)
    assert torch.isfinite(tensor).all(), f"{name} left entries unset or non-finite"
    return tensor


def assert_std(tensor, expected, what="", rel=0.05):
    std = tensor.double().std().item()
    assert std == pytest.approx(expected, rel=rel), f"{what}: std {std:.6g}, theory {expected:.6g}"


def assert_mean(tensor, expected_mean, std, what=""):
    mean = tensor.double().mean().item()
    assert abs(mean - expected_mean) < 0.02 * std, f"{what}: mean {mean:.6g} vs {expected_mean}"


def assert_normal(tensor, std, mean=0.0, what=""):
    assert_mean(tensor, mean, std, what)
    assert_std(tensor, std, what)
    # Shape: a normal has 68.27% of its mass within one std (a uniform only 57.7%).
    inside = ((tensor.double() - mean).abs() < std).double().mean().item()
    assert inside == pytest.approx(0.6827, abs=0.01), f"{what}: not normal ({inside:.4f})"


def assert_uniform(tensor, low, high, what=""):
    std = (high - low) / math.sqrt(12.0)
    assert_mean(tensor, (low + high) / 2, std, what)
    assert_std(tensor, std, what)
    width = high - low
    assert tensor.min().item() >= low - 1e-6 * width, what
    assert tensor.max().item() <= high + 1e-6 * width, what
    assert tensor.min().item() < low + 1e-3 * width, f"{what}: does not reach {low}"
    assert tensor.max().item() > high - 1e-3 * width, f"{what}: does not reach {high}"


def assert_orthogonal(tensor, gain, what=""):
    flat = tensor.reshape(tensor.shape[0], -1).double()
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    error = (gram / gain**2 - torch.eye(min(rows, cols), dtype=torch.float64)).abs().max().item()
    assert error < 1e-4, f"{what}: W W^T != gain^2 I (max error {error:.2e})"


def trunc_normal_std(std: float, truncate: float) -> float:
    """Std of N(0, std^2) conditioned on |x| <= truncate * std."""
    a = truncate
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    mass = math.erf(a / SQRT2)  # P(|z| <= a)
    return std * math.sqrt(1.0 - 2.0 * a * pdf / mass)


def gelu_gain() -> float:
    """1/sqrt(E[gelu(z)^2]), z ~ N(0, 1), by adaptive quadrature (independent of cnnlab)."""
    def integrand(z):
        return (z * special.ndtr(z)) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    second_moment, _ = integrate.quad(integrand, -math.inf, math.inf)
    return 1.0 / math.sqrt(second_moment)


# The activations the scaled initializers are checked with, and the gain each must produce.
GAINED = [
    ("relu", SQRT2),
    ({"name": "leaky_relu", "negative_slope": 0.2}, math.sqrt(2.0 / 1.04)),
    ("tanh", 5.0 / 3.0),
    ("selu", 1.0),
    ("gelu", None),  # numeric: see gelu_gain
]


def expected_gain(gain):
    return gelu_gain() if gain is None else gain


def test_theory_helpers_match_known_values():
    assert trunc_normal_std(1.0, 2.0) == pytest.approx(0.8796, abs=1e-4)
    assert trunc_normal_std(1.0, 50.0) == pytest.approx(1.0)
    # The exact-GELU gain: E[gelu(z)^2] = 1/3 + 1/(2*pi*sqrt(3)) in closed form.
    closed_form = 1.0 / 3.0 + 1.0 / (2 * math.pi * math.sqrt(3))
    assert gelu_gain() == pytest.approx(1.0 / math.sqrt(closed_form))


@pytest.mark.parametrize("activation,gain", GAINED, ids=lambda v: str(v))
def test_activation_gains_are_the_literature_values(activation, gain):
    assert activation_profile(act(activation)).gain == pytest.approx(expected_gain(gain),
                                                                     rel=1e-6)


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 5), (8, 6, 3, 3), (2, 4, 3, 3, 3)])
def test_fans_match_torch(shape):
    tensor = torch.empty(shape)
    expected = true_fans(shape) if len(shape) >= 2 else (shape[0], shape[0])
    assert fans(tensor) == expected
    if len(shape) >= 2:
        assert fans(tensor) == nn.init._calculate_fan_in_and_fan_out(tensor)


# ---------------------------------------------------------------------------------------------
# 1. Statistics against theory, for every registered initializer.


def _zeros(shape):
    assert torch.equal(fill("zeros", shape), torch.zeros(shape))


def _constant(shape):
    assert torch.equal(fill("constant", shape, value=0.37), torch.full(shape, 0.37))
    assert torch.equal(fill("constant", shape), torch.zeros(shape))  # default value 0


def _normal(shape):
    assert_normal(fill("normal", shape, mean=0.5, std=0.2), 0.2, 0.5, "normal(0.5, 0.2)")
    assert_normal(fill("normal", shape), 0.01, 0.0, "normal default std 0.01")


def _uniform(shape):
    assert_uniform(fill("uniform", shape, a=-0.1, b=0.3), -0.1, 0.3, "uniform(-0.1, 0.3)")
    assert_uniform(fill("uniform", shape), -0.05, 0.05, "uniform default")


def _trunc_normal(shape):
    for mean, std, truncate in [(0.1, 0.05, 2.0), (0.0, 1.0, 1.5), (0.0, 0.02, 2.0)]:
        tensor = fill("trunc_normal", shape, mean=mean, std=std, truncate=truncate)
        what = f"trunc_normal({mean}, {std}, +-{truncate})"
        expected = trunc_normal_std(std, truncate)
        assert_mean(tensor, mean, expected, what)
        assert_std(tensor, expected, what)
        cut = truncate * std
        assert tensor.min().item() >= mean - cut - 1e-6 and tensor.max().item() <= mean + cut + 1e-6
        assert tensor.max().item() > mean + 0.99 * cut  # the cut is at truncate*std, not lower


def _xavier(kind):
    def check(shape):
        fan_in, fan_out = true_fans(shape)
        for keys, gain in [({}, 1.0), ({"gain": 1.5}, 1.5), ({"gain": "auto"}, SQRT2),
                           ({"nonlinearity": "tanh"}, 5.0 / 3.0)]:
            # The context says relu (gain sqrt 2): the default must still use gain 1.
            tensor = fill(f"xavier_{kind}", shape, "relu", **keys)
            std = gain * math.sqrt(2.0 / (fan_in + fan_out))
            what = f"xavier_{kind} {keys}"
            if kind == "normal":
                assert_normal(tensor, std, what=what)
            else:
                bound = math.sqrt(3.0) * std
                assert_uniform(tensor, -bound, bound, what)
    return check


def _kaiming(kind):
    def check(shape):
        fan_in, fan_out = true_fans(shape)
        for activation, gain in GAINED:
            gain = expected_gain(gain)
            for mode, fan in [("fan_in", fan_in), ("fan_out", fan_out)]:
                tensor = fill(f"kaiming_{kind}", shape, activation, mode=mode)
                std = gain / math.sqrt(fan)
                what = f"kaiming_{kind} {activation} {mode}"
                if kind == "normal":
                    assert_normal(tensor, std, what=what)
                else:
                    bound = math.sqrt(3.0) * std
                    assert_uniform(tensor, -bound, bound, what)
        # The default mode is fan_in; an explicit gain replaces the activation's.
        assert_std(fill(f"kaiming_{kind}", shape, "relu"), SQRT2 / math.sqrt(fan_in), "default")
        assert_std(fill(f"kaiming_{kind}", shape, "relu", gain=0.5),
                   0.5 / math.sqrt(fan_in), "gain 0.5")
        assert_std(fill(f"kaiming_{kind}", shape, "relu", ctx_gain=1.0),
                   1.0 / math.sqrt(fan_in), "classifier (gain 1)")
        assert_std(fill(f"kaiming_{kind}", shape, "relu", nonlinearity="tanh"),
                   (5.0 / 3.0) / math.sqrt(fan_in), "nonlinearity tanh")
    return check


def _lecun(kind):
    def check(shape):
        fan_in, _ = true_fans(shape)
        for activation in ["relu", "selu", "tanh"]:  # the activation's gain is not used
            tensor = fill(f"lecun_{kind}", shape, activation)
            std = 1.0 / math.sqrt(fan_in)
            if kind == "normal":
                assert_normal(tensor, std, what=f"lecun_normal {activation}")
            else:
                bound = math.sqrt(3.0 / fan_in)
                assert_uniform(tensor, -bound, bound, f"lecun_uniform {activation}")
    return check


def _orthogonal(shape):
    fan_in, _ = true_fans(shape)
    assert shape[0] <= fan_in  # rows <= cols: every row has norm gain
    for activation, gain in GAINED:
        gain = expected_gain(gain)
        tensor = fill("orthogonal", shape, activation)
        assert_orthogonal(tensor, gain, f"orthogonal {activation}")
        assert_std(tensor, gain / math.sqrt(fan_in), f"orthogonal {activation}")
    assert_orthogonal(fill("orthogonal", shape, "relu", gain=0.7), 0.7, "gain 0.7")
    # A gain of 1 in the context (the classifier) gives plain orthogonal rows.
    assert_orthogonal(fill("orthogonal", shape, "relu", ctx_gain=1.0), 1.0, "classifier")


def _dirac(shape):
    tensor = fill("dirac", shape)
    expected = torch.zeros(shape)
    for i in range(min(shape[0], shape[1])):
        if len(shape) == 2:
            expected[i, i] = 1.0
        else:
            expected[(i, i, *[k // 2 for k in shape[2:]])] = 1.0
    assert torch.equal(tensor, expected)


def _torch_default(shape):
    fan_in, _ = true_fans(shape)
    bound = 1.0 / math.sqrt(fan_in)
    for activation in ["relu", "tanh"]:  # ignores the activation
        tensor = fill("torch_default", shape, activation)
        assert_uniform(tensor, -bound, bound, f"torch_default {activation}")
        assert_std(tensor, 1.0 / math.sqrt(3.0 * fan_in), "torch_default")


def _lsuv(shape):
    # The per-layer step: orthogonal with gain 1 whatever the activation (data rescales later).
    fan_in, _ = true_fans(shape)
    for activation in ["relu", "tanh"]:
        tensor = fill("lsuv", shape, activation)
        assert_orthogonal(tensor, 1.0, f"lsuv {activation}")
        assert_std(tensor, 1.0 / math.sqrt(fan_in), f"lsuv {activation}")


def _fixup(shape):
    # The per-layer step: He normal (fan_in, the activation's gain); branches are rescaled later.
    fan_in, _ = true_fans(shape)
    for activation, gain in GAINED:
        gain = expected_gain(gain)
        assert_normal(fill("fixup", shape, activation), gain / math.sqrt(fan_in),
                      what=f"fixup {activation}")


def _whitening(shape):
    # The per-layer step: He normal, like fixup's; the filters are set from data afterwards.
    _fixup(shape)


THEORY = {
    "zeros": _zeros,
    "constant": _constant,
    "normal": _normal,
    "uniform": _uniform,
    "trunc_normal": _trunc_normal,
    "xavier_uniform": _xavier("uniform"),
    "xavier_normal": _xavier("normal"),
    "kaiming_uniform": _kaiming("uniform"),
    "kaiming_normal": _kaiming("normal"),
    "lecun_uniform": _lecun("uniform"),
    "lecun_normal": _lecun("normal"),
    "orthogonal": _orthogonal,
    "dirac": _dirac,
    "torch_default": _torch_default,
    "lsuv": _lsuv,
    "fixup": _fixup,
    "whitening": _whitening,
}


@pytest.mark.parametrize("kind", list(BIG))
@pytest.mark.parametrize("name", INITS.names())
def test_every_initializer_matches_its_theory(name, kind):
    if name not in THEORY:
        pytest.fail(f"initializer {name!r} has no statistical test: add its theory to THEORY")
    THEORY[name](BIG[kind])


@pytest.mark.parametrize("shape", [(1024, 256), (512, 16, 3, 3)], ids=["linear", "conv"])
def test_orthogonal_tall_matrices_have_orthonormal_columns(shape):
    assert_orthogonal(fill("orthogonal", shape, "tanh"), 5.0 / 3.0, "tall orthogonal")
    assert_orthogonal(fill("lsuv", shape, "relu"), 1.0, "tall lsuv")


@pytest.mark.parametrize("conv,kernel", [(nn.Conv1d, 3), (nn.Conv2d, 3), (nn.Conv2d, 5),
                                         (nn.Conv3d, 3)])
def test_dirac_convolution_is_the_identity(conv, kernel):
    layer = conv(6, 6, kernel, padding=kernel // 2, bias=False)
    with torch.no_grad():
        INITS.get("dirac").factory(layer.weight, None, context(tuple(layer.weight.shape)))
    spatial = [7] * (layer.weight.dim() - 2)
    x = torch.randn(2, 6, *spatial, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(layer(x), x, atol=1e-6, rtol=0)
    linear = nn.Linear(9, 9, bias=False)
    with torch.no_grad():
        INITS.get("dirac").factory(linear.weight, None, context((9, 9)))
    v = torch.randn(4, 9)
    assert torch.equal(linear.weight, torch.eye(9))
    assert torch.allclose(linear(v), v)


# ---------------------------------------------------------------------------------------------
# 2. Bit-for-bit oracles against torch.nn.init with the same seeded generator.

init = nn.init
ORACLES = [
    ("normal", {"mean": 0.5, "std": 0.2}, "relu",
     lambda t, g: init.normal_(t, 0.5, 0.2, generator=g)),
    ("uniform", {"a": -0.1, "b": 0.3}, "relu",
     lambda t, g: init.uniform_(t, -0.1, 0.3, generator=g)),
    ("trunc_normal", {"mean": 0.1, "std": 0.05, "truncate": 2.0}, "relu",
     lambda t, g: init.trunc_normal_(t, 0.1, 0.05, 0.1 - 2.0 * 0.05, 0.1 + 2.0 * 0.05,
                                     generator=g)),
    ("trunc_normal", {"mean": 0.0, "std": 1.0, "truncate": 1.5}, "relu",
     lambda t, g: init.trunc_normal_(t, 0.0, 1.0, -1.5, 1.5, generator=g)),
    ("xavier_uniform", {}, "relu", lambda t, g: init.xavier_uniform_(t, gain=1.0, generator=g)),
    ("xavier_normal", {}, "relu", lambda t, g: init.xavier_normal_(t, gain=1.0, generator=g)),
    ("xavier_normal", {"gain": 2.5}, "relu",
     lambda t, g: init.xavier_normal_(t, gain=2.5, generator=g)),
    ("orthogonal", {}, "relu",
     lambda t, g: init.orthogonal_(t, gain=init.calculate_gain("relu"), generator=g)),
    ("orthogonal", {}, "tanh",
     lambda t, g: init.orthogonal_(t, gain=init.calculate_gain("tanh"), generator=g)),
    ("dirac", {}, "relu", lambda t, g: init.eye_(t) if t.dim() == 2 else init.dirac_(t)),
    ("zeros", {}, "relu", lambda t, g: init.zeros_(t)),
    ("constant", {"value": 0.37}, "relu", lambda t, g: init.constant_(t, 0.37)),
    ("torch_default", {}, "tanh",
     lambda t, g: init.kaiming_uniform_(t, a=math.sqrt(5), generator=g)),
    # LeCun is He with the linear gain; LSUV's and Fixup's per-layer steps are torch's own.
    ("lecun_normal", {}, "relu",
     lambda t, g: init.kaiming_normal_(t, nonlinearity="linear", generator=g)),
    ("lecun_uniform", {}, "relu",
     lambda t, g: init.kaiming_uniform_(t, nonlinearity="linear", generator=g)),
    ("lsuv", {}, "relu", lambda t, g: init.orthogonal_(t, gain=1.0, generator=g)),
    ("fixup", {}, "relu", lambda t, g: init.kaiming_normal_(t, nonlinearity="relu", generator=g)),
]

# (our activation, torch nonlinearity, torch `a`). Our selu gain is 1 (LeCun's variance, as
# Klambauer et al. prescribe); torch's calculate_gain("selu") is 3/4, so selu maps to "linear".
KAIMING_ACTIVATIONS = [
    ("relu", "relu", 0.0),
    ({"name": "leaky_relu", "negative_slope": 0.2}, "leaky_relu", 0.2),
    ("leaky_relu", "leaky_relu", 0.01),
    ("tanh", "tanh", 0.0),
    ("selu", "linear", 0.0),
    ("sigmoid", "sigmoid", 0.0),
]
for _kind in ["uniform", "normal"]:
    for _mode in ["fan_in", "fan_out"]:
        for _ours, _theirs, _a in KAIMING_ACTIVATIONS:
            ORACLES.append((
                f"kaiming_{_kind}", {"mode": _mode}, _ours,
                lambda t, g, k=_kind, m=_mode, n=_theirs, a=_a: getattr(init, f"kaiming_{k}_")(
                    t, a=a, mode=m, nonlinearity=n, generator=g),
            ))
# `nonlinearity` takes another activation's gain whatever the model's activation.
ORACLES.append(("kaiming_normal", {"nonlinearity": "tanh"}, "relu",
                lambda t, g: init.kaiming_normal_(t, nonlinearity="tanh", generator=g)))


def _oracle_id(case):
    name, keys, activation, _ = case
    return f"{name}-{keys}-{activation}".replace(" ", "")


@pytest.mark.parametrize("kind", list(SMALL))
@pytest.mark.parametrize("case", ORACLES, ids=[_oracle_id(c) for c in ORACLES])
def test_fill_equals_torch_nn_init_bit_for_bit(case, kind):
    name, keys, activation, reference = case
    shape = SMALL[kind]
    ours = fill(name, shape, activation, seed=1234, **keys)
    theirs = torch.full(shape, float("nan"))
    with torch.no_grad():
        reference(theirs, torch.Generator().manual_seed(1234))
    assert torch.equal(ours, theirs), f"{name} {keys} differs from torch.nn.init"


def test_selu_gain_is_lecuns_not_torchs():
    # A documented choice, not an accident: torch uses 3/4 for selu, cnnlab uses 1.
    assert init.calculate_gain("selu") == pytest.approx(0.75)
    assert activation_profile(act("selu")).gain == 1.0


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3)
        self.hidden = nn.Linear(16, 48)
        self.classifier = nn.Linear(48, 10)

    def forward(self, x):
        return self.classifier(torch.relu(self.hidden(torch.relu(self.conv(x)).mean((2, 3)))))


def test_torch_default_equals_torchs_own_reset_parameters():
    seed = 321
    model = _Tiny()
    initialize(model, InitConfig.model_validate("torch_default"), act("tanh"),
               torch.Generator().manual_seed(seed))
    # torch's constructors draw from the global generator in the same order: weight, then bias.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference = _Tiny()
    for (name, ours), (_, theirs) in zip(model.state_dict().items(),
                                         reference.state_dict().items()):
        assert torch.equal(ours, theirs), name
    # And spelled out: kaiming_uniform_(a=sqrt 5) for weights, U(+-1/sqrt(fan_in)) for biases.
    g = torch.Generator().manual_seed(seed)
    for layer in [model.conv, model.hidden, model.classifier]:
        weight = torch.empty_like(layer.weight)
        init.kaiming_uniform_(weight, a=math.sqrt(5), generator=g)
        bound = 1.0 / math.sqrt(init._calculate_fan_in_and_fan_out(weight)[0])
        bias = torch.empty_like(layer.bias).uniform_(-bound, bound, generator=g)
        assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)


def test_initialize_draws_in_module_order_with_gain_one_for_the_classifier():
    model = _Tiny()
    initialize(model, InitConfig.model_validate("kaiming_normal"), act("relu"),
               torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    for layer, nonlinearity in [(model.conv, "relu"), (model.hidden, "relu"),
                                (model.classifier, "linear")]:
        weight = torch.empty_like(layer.weight)
        init.kaiming_normal_(weight, nonlinearity=nonlinearity, generator=g)
        assert torch.equal(layer.weight, weight)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_a_nonlinearity_option_works_on_a_layer_where_no_warning_check_ran_first():
    # Regression: the classifier skips the mismatch check, so its `nonlinearity` gain was first
    # computed under no_grad, where the activation profile (which differentiates) failed.
    _profile.cache_clear()
    config = {"rules": [{"match": "classifier",
                         "init": {"name": "kaiming_normal", "nonlinearity": "softplus"}}],
              "bias": {"name": "kaiming_uniform", "nonlinearity": "mish"}}
    model, assignments = build_model(spec(**SMALL_CNN, norm="none", init=config), 3, 10,
                                     (12, 12), 0)
    assert by_layer(assignments)["classifier"] == ("kaiming_normal", "rule 1: classifier")
    assert model.classifier.weight.std() > 0 and model.classifier.bias.abs().max() > 0


# ---------------------------------------------------------------------------------------------
# 3. Seeded per model build.


def spec(**keys):
    return MODEL.validate_python(keys)


SMALL_CNN = {"arch": "simple_cnn", "widths": [8, 16], "fc": [32]}


@pytest.mark.parametrize("init_name", ["kaiming_normal", "torch_default", "orthogonal"])
def test_the_same_seed_gives_the_same_weights_whatever_the_global_rng(init_name):
    def build(seed, global_seed):
        torch.manual_seed(global_seed)
        torch.randn(1000)
        model, _ = build_model(spec(**SMALL_CNN, norm="none", init=init_name), 3, 10, (12, 12),
                               seed=seed)
        return model.state_dict()

    with torch.random.fork_rng(devices=[]):
        first, second, other = build(5, 0), build(5, 1), build(6, 0)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    weights = [n for n in first if n.endswith("weight")]
    assert all(not torch.equal(first[n], other[n]) for n in weights)


# ---------------------------------------------------------------------------------------------
# 4. Rules, globs and biases.


def by_layer(assignments):
    return {a.layer: (a.init, a.rule) for a in assignments}


def test_first_matching_rule_wins_per_layer():
    config = {"default": "kaiming_normal", "rules": [
        {"match": "classifier", "init": "zeros"},
        {"match": "Conv2d", "init": {"name": "normal", "std": 0.02}},
        {"match": "norm", "init": {"name": "constant", "value": 0.5}},
    ]}
    model, assignments = build_model(spec(arch="simple_cnn", widths=[32, 64], fc=[128],
                                          init=config), 3, 10, (16, 16), seed=0)
    layers = by_layer(assignments)
    assert len(layers) == len(assignments)  # each layer once
    assert layers == {
        "body.0.0.conv": ("normal", "rule 2: Conv2d"),
        "body.0.0.norm": ("constant", "rule 3: norm"),
        "body.1.0.conv": ("normal", "rule 2: Conv2d"),
        "body.1.0.norm": ("constant", "rule 3: norm"),
        "head.fc.0": ("kaiming_normal", "default"),
        "classifier": ("zeros", "rule 1: classifier"),
    }
    assert torch.equal(model.classifier.weight, torch.zeros_like(model.classifier.weight))
    assert torch.equal(model.classifier.bias, torch.zeros_like(model.classifier.bias))
    for block in model.body:
        conv, norm = block[0].conv, block[0].norm
        assert torch.equal(norm.weight, torch.full_like(norm.weight, 0.5))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
        assert_std(conv.weight, 0.02, "conv rule", rel=0.1)
    assert_normal(model.body[1][0].conv.weight, 0.02, what="conv rule")  # 18432 weights
    fc = model.head.fc[0]
    assert_std(fc.weight, SQRT2 / math.sqrt(fc.in_features), "default kaiming")


def test_an_earlier_rule_shadows_a_later_one():
    first = [{"match": "body.0.0.conv", "init": "zeros"},
             {"match": "conv", "init": {"name": "constant", "value": 0.3}}]
    model, assignments = build_model(spec(**SMALL_CNN, init={"rules": first}), 3, 10, (12, 12), 0)
    layers = by_layer(assignments)
    assert layers["body.0.0.conv"] == ("zeros", "rule 1: body.0.0.conv")
    assert layers["body.1.0.conv"] == ("constant", "rule 2: conv")
    assert not model.body[0][0].conv.weight.any()
    assert (model.body[1][0].conv.weight == 0.3).all()

    model, assignments = build_model(spec(**SMALL_CNN, init={"rules": first[::-1]}), 3, 10,
                                     (12, 12), 0)
    layers = by_layer(assignments)
    assert layers["body.0.0.conv"] == layers["body.1.0.conv"] == ("constant", "rule 1: conv")
    assert (model.body[0][0].conv.weight == 0.3).all()


def test_name_globs_in_resnet20():
    config = {"rules": [
        {"match": "layer3.*.conv2", "init": "zeros"},
        {"match": "*.first.conv", "init": {"name": "constant", "value": 0.01}},
        {"match": "linear", "init": {"name": "constant", "value": -0.2}},
    ]}
    model, assignments = build_model(spec(arch="resnet20", init=config), 3, 10, (16, 16), 0)
    names = dict(model.named_modules())
    layers = by_layer(assignments)
    conv2 = [n for n in names if n.endswith(".conv2")]
    first = [n for n in names if n.endswith(".first.conv")]
    assert len(conv2) == len(first) == 9
    for name in conv2:
        if name.startswith("layer3."):
            assert layers[name] == ("zeros", "rule 1: layer3.*.conv2")
            assert not names[name].weight.any()
        else:
            assert layers[name] == ("kaiming_normal", "default")
            assert names[name].weight.std() > 0
    for name in first:
        assert layers[name] == ("constant", "rule 2: *.first.conv")
        assert (names[name].weight == 0.01).all()
    assert layers["stem.conv"] == ("kaiming_normal", "default")  # not a block's first.conv
    assert layers["layer2.0.shortcut.0"] == ("kaiming_normal", "default")
    assert layers["classifier"] == ("constant", "rule 3: linear")
    assert (model.classifier.weight == -0.2).all()


def test_a_glob_on_the_parameter_name_matches_its_layer():
    model, assignments = build_model(spec(**SMALL_CNN, init={"rules": [
        {"match": "classifier.*", "init": "zeros"}]}), 3, 10, (12, 12), 0)
    assert by_layer(assignments)["classifier"] == ("zeros", "rule 1: classifier.*")
    assert not model.classifier.weight.any()


PLAIN = {"arch": "plain", "depth": 3, "width": 16, "norm": "none"}


def biased_layers(model):
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None}


def test_bias_specs():
    # Default: zero biases.
    model, _ = build_model(spec(**PLAIN), 3, 10, (16, 16), 0)
    layers = biased_layers(model)
    assert len(layers) == 4
    assert all(not m.bias.any() for m in layers.values())

    # A global bias spec, and a rule's bias overriding it (the rule's weight init falls back).
    config = {"default": "kaiming_normal", "bias": {"name": "constant", "value": 0.1},
              "rules": [{"match": "classifier", "bias": {"name": "constant", "value": -1.0}}]}
    model, assignments = build_model(spec(**PLAIN, init=config), 3, 10, (16, 16), 0)
    for name, module in biased_layers(model).items():
        value = -1.0 if name == "classifier" else 0.1
        assert torch.equal(module.bias, torch.full_like(module.bias, value)), name
    assert by_layer(assignments)["classifier"] == ("kaiming_normal", "rule 1: classifier")
    assert_std(model.classifier.weight, 1.0 / math.sqrt(16), "classifier gain 1", rel=0.3)

    # A bias spec with a random initializer draws per layer with that layer's fans.
    model, _ = build_model(spec(arch="plain", depth=3, width=512, norm="none",
                                init={"bias": "kaiming_uniform"}), 3, 10, (8, 8), 0)
    conv = model.body[2].conv
    bound = SQRT2 * math.sqrt(3.0 / (512 * 9))
    assert conv.bias.abs().max() <= bound and conv.bias.abs().max() > 0.9 * bound
    assert_std(conv.bias, bound / math.sqrt(3.0), "kaiming_uniform bias", rel=0.15)


def test_torch_default_without_bias_spec_uses_pytorchs_bias_rule():
    model, _ = build_model(spec(**PLAIN, init="torch_default"), 3, 10, (16, 16), 0)
    for name, module in biased_layers(model).items():
        bound = 1.0 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(module.weight)[0])
        assert module.bias.abs().max() <= bound, name
        assert module.bias.abs().min() > 0, name
        assert module.weight.abs().max() <= bound, name
    # An explicit bias spec wins over PyTorch's rule.
    model, _ = build_model(spec(**PLAIN, init={"default": "torch_default", "bias": "zeros"}), 3,
                           10, (16, 16), 0)
    assert all(not m.bias.any() for m in biased_layers(model).values())


def test_norm_shift_is_zero_unless_a_norm_rule_sets_it():
    def norms(model):
        return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    # The global bias spec is for conv/linear biases, not for the norms' shift.
    model, _ = build_model(spec(**SMALL_CNN, init={"bias": {"name": "constant", "value": 0.1}}),
                           3, 10, (12, 12), 0)
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in norms(model))
    assert all(not n.bias.any() for n in norms(model))
    assert (model.classifier.bias == 0.1).all()
    # A rule matching the norms may set their scale and shift.
    model, _ = build_model(spec(**SMALL_CNN, init={"rules": [
        {"match": "norm", "init": {"name": "constant", "value": 0.5},
         "bias": {"name": "constant", "value": 0.1}}]}), 3, 10, (12, 12), 0)
    assert all((n.weight == 0.5).all() and (n.bias == 0.1).all() for n in norms(model))
    model, _ = build_model(spec(**SMALL_CNN, init={"rules": [
        {"match": "norm", "bias": {"name": "constant", "value": -0.3}}]}), 3, 10, (12, 12), 0)
    assert all((n.weight == 1.0).all() and (n.bias == -0.3).all() for n in norms(model))


# ---------------------------------------------------------------------------------------------
# 5. LSUV.

LSUV_NET = {"arch": "plain", "depth": 8, "width": 16}


def lsuv_batch():
    return torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(42))


def layer_variances(model, batch):
    variances, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: variances.__setitem__(name, float(o.var()))))
    model.train()
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return variances


def test_lsuv_gives_unit_output_variance_on_the_batch():
    batch = lsuv_batch()
    model, assignments = build_model(spec(**LSUV_NET, norm="none", init="lsuv"), 3, 10, (16, 16),
                                     0, sample_batch=lambda: batch)
    variances = layer_variances(model, batch)
    assert len(variances) == 9  # 8 convs and the classifier
    for name, variance in variances.items():
        assert variance == pytest.approx(1.0, rel=0.1), name
    # Orthogonal before the rescaling: each weight is c * (an orthonormal-row matrix).
    weight = model.body[1].conv.weight.reshape(16, -1).double()
    gram = weight @ weight.T
    scale = gram[0, 0].item()
    assert torch.allclose(gram, scale * torch.eye(16, dtype=torch.float64), atol=1e-4 * scale)
    # Without LSUV the same net's signal is far from unit variance somewhere.
    plain, _ = build_model(spec(**LSUV_NET, norm="none", init="orthogonal"), 3, 10, (16, 16), 0)
    assert any(abs(v - 1.0) > 0.1 for v in layer_variances(plain, batch).values())


def test_lsuv_from_a_rule_rescales_only_its_layers():
    batch = lsuv_batch()
    config = {"default": "kaiming_normal", "rules": [{"match": "conv", "init": "lsuv"}]}
    model, assignments = build_model(spec(**LSUV_NET, norm="none", init=config), 3, 10, (16, 16),
                                     0, sample_batch=lambda: batch)
    assert by_layer(assignments)["classifier"] == ("kaiming_normal", "default")
    for name, variance in layer_variances(model, batch).items():
        if name != "classifier":
            assert variance == pytest.approx(1.0, rel=0.1), name


def test_lsuv_leaves_batch_norm_running_statistics_alone():
    batch = lsuv_batch()
    model, _ = build_model(spec(**LSUV_NET, norm="batch"), 3, 10, (16, 16), 0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g))
                module.running_var.uniform_(0.5, 2.0, generator=g)
                module.num_batches_tracked.fill_(7)
    before = {n: b.clone() for n, b in model.named_buffers()}
    model.eval()
    initialize(model, InitConfig.model_validate("lsuv"), act("relu"),
               torch.Generator().manual_seed(0), sample_batch=lambda: batch)
    assert not model.training  # the mode is restored too
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    # Through build_model: the running statistics stay at their defaults.
    model, _ = build_model(spec(**LSUV_NET, norm="batch", init="lsuv"), 3, 10, (16, 16), 0,
                           sample_batch=lambda: batch)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert not module.running_mean.any() and (module.running_var == 1).all()
            assert module.num_batches_tracked.item() == 0


def test_lsuv_without_a_batch_is_a_user_error():
    with pytest.raises(UserError, match="lsuv"):
        build_model(spec(**LSUV_NET, norm="none", init="lsuv"), 3, 10, (16, 16), 0)


# ---------------------------------------------------------------------------------------------
# 6. Fixup and zero-init residual.


def run_blocks(model, x):
    """Forward `x`, returning per block (block, input, output, branch output)."""
    records, handles = {}, []
    for block in model.modules():
        if isinstance(block, BasicBlock):
            handles.append(block.register_forward_hook(
                lambda m, i, o: records.setdefault(id(m), {}).update(block=m, input=i[0],
                                                                     output=o)))
            handles.append(block.norm2.register_forward_hook(
                lambda m, i, o, b=block: records.setdefault(id(b), {}).update(branch=o)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return list(records.values())


def assert_residual_blocks_are_identities(model):
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    records = run_blocks(model, x)
    assert len(records) == 9
    identities = 0
    for record in records:
        block = record["block"]
        assert (record["branch"] == 0).all(), "the residual branch must output exactly zero"
        assert torch.equal(record["output"], block.act(block.shortcut(record["input"])))
        if isinstance(block.shortcut, nn.Identity):
            identities += 1
            # The input comes out of a relu, so the whole block passes it through.
            assert torch.equal(record["output"], record["input"])
    assert identities == 7


def test_fixup_zeroes_the_branch_ends_and_scales_the_rest():
    resnet = {"arch": "resnet20", "norm": "none"}
    model, assignments = build_model(spec(**resnet, init="fixup"), 3, 10, (16, 16), seed=3)
    he, _ = build_model(spec(**resnet, init="kaiming_normal"), 3, 10, (16, 16), seed=3)
    assert {a.init for a in assignments} == {"fixup"}
    model.train()
    assert_residual_blocks_are_identities(model)
    assert not model.classifier.weight.any() and not model.classifier.bias.any()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert not model(x).any()

    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    he_blocks = [m for m in he.modules() if isinstance(m, BasicBlock)]
    scale = 9 ** (-1.0 / (2 * 2 - 2))  # L = 9 branches of m = 2 layers: 1/3
    assert scale == pytest.approx(1.0 / 3.0)
    for block, reference in zip(blocks, he_blocks):
        assert not block.conv2.weight.any() and not block.conv2.bias.any()
        assert torch.allclose(block.first.conv.weight, reference.first.conv.weight * scale,
                              rtol=1e-6, atol=0)
        if not isinstance(block.shortcut, nn.Identity):  # shortcuts keep plain He init
            assert torch.equal(block.shortcut[0].weight, reference.shortcut[0].weight)
    assert torch.equal(model.stem.conv.weight, he.stem.conv.weight)
    # Against the He std directly, on the large layer3 convolutions (36864 weights each).
    for block in blocks[-2:]:
        conv = block.first.conv
        he_std = SQRT2 / math.sqrt(conv.in_channels * 9)
        assert_std(conv.weight, he_std / 3.0, "fixup branch conv")


def test_zero_init_residual_zeroes_each_branch_norm():
    config = {"default": "kaiming_normal", "zero_init_residual": True}
    model, _ = build_model(spec(arch="resnet20", norm="batch", init=config), 3, 10, (16, 16), 0)
    for block in model.modules():
        if isinstance(block, BasicBlock):
            assert not block.norm2.weight.any() and not block.norm2.bias.any()
            assert (block.first.norm.weight == 1).all()
    for mode in ["train", "eval"]:
        getattr(model, mode)()
        assert_residual_blocks_are_identities(model)
    assert model.classifier.weight.any()  # only fixup zeroes the classifier


@pytest.mark.parametrize("model_keys,init_cfg", [
    ({"arch": "simple_cnn"}, {"zero_init_residual": True}),
    ({"arch": "resnet20", "norm": "none"}, {"zero_init_residual": True}),
    ({"arch": "simple_cnn", "norm": "none"}, "fixup"),
])
def test_residual_inits_on_unsuitable_models_are_user_errors(model_keys, init_cfg):
    with pytest.raises(UserError):
        build_model(spec(**model_keys, init=init_cfg), 3, 10, (16, 16), 0)


# ---------------------------------------------------------------------------------------------
# 7. Gain mismatch warning.


def build_quietly(activation, init_cfg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(spec(**SMALL_CNN, activation=activation, init=init_cfg), 3, 10, (12, 12), 0)
    return [w for w in caught if issubclass(w.category, InitMismatchWarning)]


def test_a_forced_gain_that_does_not_match_the_activation_warns():
    with pytest.warns(InitMismatchWarning, match="sigmoid"):
        build_model(spec(**SMALL_CNN, activation="sigmoid",
                         init={"name": "kaiming_normal", "nonlinearity": "relu"}),
                    3, 10, (12, 12), 0)
    # Once per rule, not once per layer.
    assert len(build_quietly("sigmoid", {"name": "kaiming_normal", "nonlinearity": "relu"})) == 1
    assert len(build_quietly("relu", {"name": "orthogonal", "gain": 1.0})) == 1
    assert len(build_quietly("tanh", {"name": "xavier_normal", "gain": 5.0})) == 1


@pytest.mark.parametrize("activation,init_cfg", [
    ("sigmoid", "kaiming_normal"),
    ("sigmoid", {"name": "kaiming_normal", "nonlinearity": "sigmoid"}),
    ("relu", {"name": "kaiming_uniform", "gain": 1.414}),
    ("relu", "xavier_normal"),
    ("selu", "lecun_normal"),
    ("relu", "torch_default"),
])
def test_matching_or_unforced_gains_do_not_warn(activation, init_cfg):
    assert build_quietly(activation, init_cfg) == []


def test_whitening_makes_the_first_layers_outputs_unit_variance_and_decorrelated():
    gen = torch.Generator().manual_seed(0)
    # Correlated channels and neighbouring pixels, as in real images.
    base = torch.randn(128, 1, 10, 10, generator=gen)
    images = torch.cat([base, 0.8 * base + 0.2 * torch.randn(128, 1, 10, 10, generator=gen),
                        torch.randn(128, 1, 10, 10, generator=gen)], dim=1)
    images = images + torch.roll(images, 1, dims=3)
    rules = {"default": "kaiming_normal", "rules": [{"match": "stem.0", "init": "whitening"}]}
    model, _ = build_model(spec(arch="fastnet", widths=[8, 8, 8], stem_width=24, init=rules), 3,
                           10, (10, 10), 0, sample_batch=lambda: images)
    out = model.stem[0](images).detach() - model.stem[0].bias.detach()[None, :, None, None]
    first = out[:, :12].transpose(0, 1).reshape(12, -1)
    covariance = torch.cov(first)
    assert torch.allclose(covariance.diagonal(), torch.ones(12), atol=0.05)
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() < 0.05
    assert torch.allclose(model.stem[0].weight[12:], -model.stem[0].weight[:12])


def test_whitening_only_applies_to_the_first_convolution():
    rules = {"default": "kaiming_normal", "rules": [{"match": "groups.0.conv1",
                                                     "init": "whitening"}]}
    with pytest.raises(UserError, match="first convolution"):
        build_model(spec(arch="fastnet", widths=[8, 8, 8], init=rules), 3, 10, (10, 10), 0,
                    sample_batch=lambda: torch.randn(8, 3, 10, 10))


@pytest.mark.parametrize("arch, blocks", [("resnet18", 8), ("resnet34", 16)])
@pytest.mark.parametrize("norm, init", [
    ("none", "fixup"), ("batch", {"default": "kaiming_normal", "zero_init_residual": True})])
def test_imagenet_style_resnets_start_with_silent_residual_branches_too(arch, blocks, norm, init):
    model, _ = build_model(spec(arch=arch, norm=norm, init=init), 3, 10, (16, 16), 0)
    model.train()
    records = run_blocks(model, torch.randn(4, 3, 16, 16, generator=torch.Generator()
                                            .manual_seed(1)))
    assert len(records) == blocks
    assert all((record["branch"] == 0).all() for record in records)
