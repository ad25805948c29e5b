import pytest
import torch
from pydantic import TypeAdapter

from cnnlab.errors import UserError
from cnnlab.models import MODELS, ModelSpec, build_model

SPEC = TypeAdapter(ModelSpec)
SHAPES = [((8, 8), 1), ((32, 32), 3)]


def spec(**keys):
    return SPEC.validate_python(keys)


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("size,channels", SHAPES, ids=["digits-8x8x1", "cifar-32x32x3"])
def test_every_model_builds_for_small_and_cifar_images_and_trains_a_step(arch, size, channels):
    model, assignments = build_model(spec(arch=arch), channels, 10, size, seed=0)
    x = torch.randn(4, channels, *size)
    out = model(x)
    assert out.shape == (4, 10)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert isinstance(model.classifier, torch.nn.Linear)
    assert assignments, "every model has layers the initializer touched"


def test_the_same_seed_gives_the_same_weights_whatever_drew_random_numbers_before():
    first, _ = build_model(spec(arch="resnet20"), 3, 10, (32, 32), seed=5)
    torch.randn(1000)  # consume the global generator
    second, _ = build_model(spec(arch="resnet20"), 3, 10, (32, 32), seed=5)
    other, _ = build_model(spec(arch="resnet20"), 3, 10, (32, 32), seed=6)
    for (name, a), (_, b), (_, c) in zip(first.state_dict().items(), second.state_dict().items(),
                                         other.state_dict().items()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, c) for a, c in zip(first.state_dict().values(),
                                                     other.state_dict().values()))


def test_configured_input_channels_must_match_the_data():
    with pytest.raises(UserError, match="model.in_channels is 3 but the digits images have 1 "
                       "channel; remove model.in_channels"):
        build_model(spec(arch="simple_cnn", in_channels=3), 1, 10, (8, 8), seed=0,
                    dataset="digits")


def test_plain_has_the_configured_depth_and_width():
    model, _ = build_model(spec(arch="plain", depth=7, width=12), 3, 10, (16, 16), seed=0)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    assert all(c.out_channels == 12 for c in convs)


def test_cifar_resnet_sizes_follow_the_paper():
    counts = {}
    for arch in ("resnet20", "resnet32", "resnet56"):
        model, _ = build_model(spec(arch=arch), 3, 10, (32, 32), seed=0)
        counts[arch] = sum(p.numel() for p in model.parameters())
    # He et al. 2016, Table 6: 0.27M, 0.46M, 0.85M parameters (ours: 1x1 projection shortcuts).
    assert counts["resnet20"] == pytest.approx(0.27e6, rel=0.03)
    assert counts["resnet32"] == pytest.approx(0.46e6, rel=0.03)
    assert counts["resnet56"] == pytest.approx(0.85e6, rel=0.03)


SMALL = {"simple_cnn": {"widths": [4]}, "plain": {"depth": 3, "width": 4},
         "vgg": {"width": 2}, "resnet20": {"width": 4}, "resnet32": {"width": 2},
         "resnet56": {"width": 2}, "resnet18": {"width": 4}, "resnet34": {"width": 2},
         "fastnet": {"widths": [4, 8, 8], "stem_width": 4}}


def test_small_variants_cover_every_model():
    assert set(SMALL) == set(MODELS.names())


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance", "none"])
@pytest.mark.parametrize("activation", __import__(
    "cnnlab.components.activations", fromlist=["ACTIVATIONS"]).ACTIVATIONS.names())
def test_every_activation_and_norm_works_in_every_model(activation, norm):
    for arch, keys in SMALL.items():
        model, _ = build_model(spec(arch=arch, activation=activation, norm=norm, **keys), 1, 3,
                               (8, 8), seed=0)
        out = model(torch.randn(2, 1, 8, 8))
        out.sum().backward()
        assert torch.isfinite(out).all(), arch
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), arch


@pytest.mark.parametrize("position", ["before_activation", "after_activation"])
def test_norm_position_orders_the_block(position):
    model, _ = build_model(spec(arch="simple_cnn", widths=[4], norm_position=position), 1, 3,
                           (8, 8), seed=0)
    calls = []
    for name, module in model.body.named_modules():
        if name.endswith(("norm", "act")):
            module.register_forward_hook(lambda m, i, o, n=name: calls.append(n.split(".")[-1]))
    model(torch.randn(2, 1, 8, 8))
    assert calls == (["norm", "act"] if position == "before_activation" else ["act", "norm"])


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_model_takes_dropout_before_the_classifier_and_spatial_dropout_in_its_blocks(arch):
    model, _ = build_model(spec(arch=arch, dropout=0.3, dropout2d=0.1), 3, 10, (16, 16), seed=0)
    rates = {type(m).__name__: m.p for m in model.modules()
             if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))}
    assert rates == {"Dropout": 0.3, "Dropout2d": 0.1}
    model.train()
    x = torch.randn(2, 3, 16, 16)
    assert not torch.equal(model(x), model(x))  # dropout draws anew each pass
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("arch", [a for a in MODELS.names() if MODELS.get(a).info.residual])
def test_stochastic_depth_drops_residual_branches_only_in_training(arch):
    model, _ = build_model(spec(arch=arch, drop_path=0.5), 3, 10, (16, 16), seed=0)
    x = torch.randn(4, 3, 16, 16)
    model.train()
    torch.manual_seed(0)
    first = model(x)
    torch.manual_seed(1)
    assert not torch.equal(first, model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_a_built_in_model_too_deep_for_the_images_says_so_in_one_sentence():
    """Built-in and foreign networks share one first-forward check (models.check_output)."""
    from cnnlab.config import load_config

    spec = load_config({"model": {"arch": "fastnet"}}).model
    with pytest.raises(UserError, match=r"model fastnet cannot take 1x1 images with 3 channel"
                                        r"\(s\) \(RuntimeError: .*set data.image_size"):
        build_model(spec, 3, 10, (1, 1), 0)
