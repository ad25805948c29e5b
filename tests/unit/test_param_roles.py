"""optim.groups: roles read from module types on any network, first-rule precedence, per-role LR
multipliers and weight decay, freezing that leaves a tensor bit-identical while frozen (SGD with
momentum and weight decay, and Adam) and a resumed run that freezes exactly as an uninterrupted
one; and optim.convention: decoupled against airbench's formulas."""

import json

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

import cnnlab
from cnnlab.components.optimizers import build_optimizer, parameter_groups
from cnnlab.components.param_roles import drop_frozen_gradients, parameter_roles
from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.lr_units import kilostep_scale
from tests.conftest import same_tensors


def optim_spec(**keys):
    return load_config({"optim": keys}).optim


class RoleNet(nn.Module):
    """Registration order differs from the names' alphabetical order on purpose."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.whiten = nn.Conv2d(1, 4, 2, bias=True)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.GroupNorm(2, 4))
        self.hidden = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        features = self.body(self.whiten(x)).mean(dim=(2, 3))
        return self.head(torch.relu(self.hidden(features)))


def named_roles(model):
    roles = parameter_roles(model)
    return {name: roles.get(id(param), ()) for name, param in model.named_parameters()}


def test_roles_come_from_module_types_and_order_not_names():
    assert named_roles(RoleNet()) == {
        "whiten.weight": ("stem",), "whiten.bias": ("stem", "bias"),
        "body.0.weight": ("conv",), "body.1.weight": ("norm_scale",),
        "body.1.bias": ("norm_shift",), "body.3.weight": ("norm_scale",),
        "body.3.bias": ("norm_shift",), "hidden.weight": ("linear",), "hidden.bias": ("bias",),
        "head.weight": ("classifier",), "head.bias": ("classifier", "bias")}


def test_roles_on_a_torchvision_network_and_an_all_convolutional_one():
    roles = named_roles(torchvision.models.resnet18(num_classes=3))
    assert roles["conv1.weight"] == ("stem",)
    assert roles["fc.weight"] == ("classifier",) and roles["fc.bias"] == ("classifier", "bias")
    assert roles["layer3.0.downsample.1.weight"] == ("norm_scale",)
    assert roles["layer4.1.conv2.weight"] == ("conv",)
    all_conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LayerNorm(8), nn.Conv2d(8, 5, 1))
    roles = named_roles(all_conv)
    assert roles["2.weight"] == ("classifier",) and roles["0.bias"] == ("stem", "bias")
    assert roles["1.weight"] == ("norm_scale",)


def test_the_first_rule_naming_one_of_a_parameters_roles_decides_it():
    model = RoleNet()

    def lr_mults(rules):
        groups = parameter_groups(model, optim_spec(lr=0.1, groups=rules))
        return {name: group["lr_mult"] for group in groups for name in group["names"]}

    bias_first = lr_mults([{"role": "bias", "lr_mult": 64}, {"role": "stem", "lr_mult": 0.5}])
    assert bias_first["whiten.bias"] == 64 and bias_first["whiten.weight"] == 0.5
    stem_first = lr_mults([{"role": "stem", "lr_mult": 0.5}, {"role": "bias", "lr_mult": 64}])
    assert stem_first["whiten.bias"] == 0.5 and stem_first["hidden.bias"] == 64
    assert stem_first["body.0.weight"] == 1.0  # no rule names conv


def test_role_settings_compose_with_globs_and_replace_the_weight_decay():
    spec = optim_spec(lr=0.1, weight_decay=5e-4,
                      lr_mult=[{"match": "head.*", "mult": 10}],
                      groups=[{"role": "classifier", "lr_mult": 0.5},
                              {"role": "norm_shift", "weight_decay": 1e-3},
                              {"role": "conv", "weight_decay": 0.0}])
    optimizer = build_optimizer(spec, RoleNet(), 32)
    by_name = {name: group for group in optimizer.param_groups for name in group["names"]}
    assert by_name["head.weight"]["lr"] == pytest.approx(0.1 * 10 * 0.5)
    assert by_name["head.weight"]["role"] == "classifier"
    assert by_name["body.1.bias"]["weight_decay"] == 1e-3  # a norm shift decays when a rule says
    assert by_name["body.1.weight"]["weight_decay"] == 0.0  # the no-decay default still holds
    assert by_name["body.0.weight"]["weight_decay"] == 0.0
    assert by_name["hidden.weight"]["weight_decay"] == 5e-4 and "role" not in by_name[
        "hidden.weight"]


def test_groups_are_validated_with_one_clear_message():
    for rules, fragment in (([{"role": "bias"}, {"role": "bias"}], "names role bias twice"),
                            ([{"role": "stme"}], "did you mean 'stem'"),
                            ([{"role": "stem", "lr_mult": -1}], "lr_mult"),
                            ([{"role": "stem", "frozen": True, "freeze": {"after_epoch": 3}}],
                             "keep one of them"),
                            ([{"role": "stem", "freeze": {"until_epoch": 3, "after_epoch": 2}}],
                             "leave no epoch to train"),
                            ([{"role": "stem", "freeze": {}}], "needs until_epoch")):
        with pytest.raises(ConfigError, match=fragment):
            optim_spec(groups=rules)


def train_epochs(spec, epochs=5, steps=3):
    """Weights after each epoch of a few SGD/Adam steps with freezing applied as train.py does."""
    model = RoleNet()
    optimizer = build_optimizer(spec, model, 16)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 8, 8, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    after = []
    for epoch in range(epochs):
        for _ in range(steps):
            nn.functional.cross_entropy(model(x), y).backward()
            drop_frozen_gradients(optimizer, epoch)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        after.append({name: p.detach().clone() for name, p in model.named_parameters()})
    return after


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.05,
     "decay_bias_and_norm": True},
    {"name": "adamw", "lr": 0.01, "weight_decay": 0.05, "decay_bias_and_norm": True}])
def test_a_frozen_tensor_stays_bit_identical_and_moves_otherwise(optimizer):
    spec = optim_spec(**optimizer, groups=[
        {"role": "stem", "freeze": {"after_epoch": 2}},  # airbench's whitening bias: 3
        {"role": "norm_shift", "freeze": {"until_epoch": 2}},
        {"role": "norm_scale", "frozen": True}])
    epochs = train_epochs(spec)
    start = {name: p.detach() for name, p in RoleNet().named_parameters()}
    history = [start] + epochs

    def moved(name, epoch):  # epoch 1-based: did it change during that epoch?
        return not torch.equal(history[epoch][name], history[epoch - 1][name])

    for epoch in range(1, 6):
        assert moved("whiten.bias", epoch) is (epoch <= 2), epoch
        assert moved("body.1.bias", epoch) is (epoch > 2), epoch
        assert not moved("body.1.weight", epoch) and not moved("body.3.weight", epoch)
        assert moved("hidden.weight", epoch)


def test_a_resumed_run_freezes_exactly_as_an_uninterrupted_one(tmp_path, tiny):
    tiny["train"]["epochs"] = 3
    tiny["optim"].update(weight_decay=5e-4, groups=[{"role": "stem", "freeze": {"after_epoch": 2}},
                                                    {"role": "norm_scale", "frozen": True}])
    tiny["model"]["norm"] = "batch"
    cfg = load_config(tiny)
    cnnlab.train(cfg, out=tmp_path / "whole", progress=False)

    class Killed(Exception):
        pass

    def kill_in_epoch_two(record):
        if record["epoch"] == 2:  # before that epoch's checkpoint: resume redoes epoch 2
            raise Killed

    with pytest.raises(Killed):
        cnnlab.train(cfg, out=tmp_path / "cut", progress=False, on_epoch=kill_in_epoch_two)
    cnnlab.resume(tmp_path / "cut", progress=False)
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert same_tensors(whole, cut)
    checkpoint = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    roles = {group.get("role"): group for group in checkpoint["optimizer"]["param_groups"]}
    assert roles["stem"]["trainable_until"] == 2 and roles["norm_scale"]["trainable_until"] == 0
    groups = {group["role"]: group for group in
              json.loads((tmp_path / "cut" / "summary.json").read_text())["parameter_groups"]}
    assert groups["stem"]["trainable_epochs"] == [1, 2]
    assert groups["norm_scale"]["trainable_epochs"] == [1, 0]
    assert groups["stem"]["names"] == roles["stem"]["names"]
    # The loop applied the freezing: the norm scales are still at their initial 1.
    assert roles["norm_scale"]["names"]
    assert all(torch.equal(whole[name], torch.ones_like(whole[name]))
               for name in roles["norm_scale"]["names"])


def test_decoupled_convention_is_airbenchs_sgd_for_a_mean_loss():
    # airbench94: lr 11.5 and weight decay 0.0153 per 1024 examples, momentum 0.85, batch 1024;
    # torch SGD over a summed loss at lr/K and weight decay (wd*B/K)/(lr/K).
    lr, wd, momentum, batch = 11.5, 0.0153, 0.85, 1024
    k = 1024 * (1 + 1 / (1 - momentum))
    assert kilostep_scale(momentum) == pytest.approx(k)
    summed_lr, summed_wd = lr / k, (wd * batch / k) / (lr / k)
    spec = optim_spec(name="sgd", lr=lr, weight_decay=wd, momentum=momentum, nesterov=True,
                      convention="decoupled", decay_bias_and_norm=True)
    model, reference = RoleNet(), RoleNet()
    ours = build_optimizer(spec, model, batch)
    theirs = torch.optim.SGD(reference.parameters(), lr=summed_lr, weight_decay=summed_wd,
                             momentum=momentum, nesterov=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 1, 8, 8, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    for _ in range(4):
        nn.functional.cross_entropy(model(x), y).backward()
        nn.functional.cross_entropy(reference(x), y, reduction="sum").backward()
        ours.step(), theirs.step()
        ours.zero_grad(), theirs.zero_grad()
    assert same_tensors(model.state_dict(), reference.state_dict(), rtol=1e-4, atol=1e-6)


def test_decoupled_lr_scales_with_the_batch_size_and_the_decay_does_not():
    spec = optim_spec(name="sgd", lr=2.0, weight_decay=0.01, momentum=0.8,
                      convention="decoupled", decay_bias_and_norm=True,
                      groups=[{"role": "bias", "lr_mult": 4}, {"role": "norm_scale",
                                                               "lr_mult": 0}])
    k = 1024 * (1 + 1 / (1 - 0.8))
    for batch in (256, 512, 1024):
        by_name = {name: group for group in build_optimizer(spec, RoleNet(), batch).param_groups
                   for name in group["names"]}
        assert by_name["body.0.weight"]["lr"] == pytest.approx(2.0 * batch / k)
        assert by_name["body.0.weight"]["weight_decay"] == pytest.approx(0.01 / 2.0)
        assert by_name["hidden.bias"]["lr"] == pytest.approx(4 * 2.0 * batch / k)
        # The shrink per step is the same for every group whatever its LR multiplier ...
        for name in ("body.0.weight", "hidden.bias"):
            group = by_name[name]
            assert group["lr"] * group["weight_decay"] == pytest.approx(0.01 * batch / k)
        assert by_name["body.1.weight"]["lr"] == 0.0  # ... and a group at LR 0 does not decay
        assert by_name["body.1.weight"]["weight_decay"] == 0.0
    with pytest.raises(ConfigError, match="set scale_lr: none"):
        optim_spec(name="sgd", convention="decoupled", scale_lr="linear")


def shrink_of_one_step(lr):
    """The factor one decoupled SGD step (zero gradient, no momentum) multiplies a weight by."""
    spec = optim_spec(name="sgd", lr=lr, weight_decay=0.02, convention="decoupled")
    weight = nn.Parameter(torch.ones(3, 3, dtype=torch.float64))
    model = nn.Linear(3, 3, bias=False).double()
    model.weight = weight
    optimizer = build_optimizer(spec, model, 512)
    weight.grad = torch.zeros_like(weight)
    optimizer.step()
    return float(weight.detach()[0, 0])


def test_decoupled_weight_decay_per_step_does_not_depend_on_the_lr():
    shrinks = [shrink_of_one_step(lr) for lr in (0.5, 5.0, 50.0)]
    assert shrinks == pytest.approx([1 - 0.02 * 512 / kilostep_scale(0.0)] * 3, rel=1e-12)
    torch_convention = optim_spec(name="sgd", lr=0.5, weight_decay=0.02)
    assert torch_convention.convention == "torch"  # the default keeps torch's meaning


def test_lr_find_suggestions_stay_in_optim_lr_units_with_the_decoupled_convention():
    from cnnlab.lr_units import LrUnits, config_lr, optimizer_lr

    cfg = load_config({"data": {"batch_size": 256}, "train": {"accumulate": 2},
                       "optim": {"lr": 11.5, "momentum": 0.85, "convention": "decoupled"}})
    assert optimizer_lr(cfg) == pytest.approx(11.5 * 512 / kilostep_scale(0.85))
    assert config_lr(cfg, optimizer_lr(cfg)) == pytest.approx(11.5)
    assert LrUnits.from_config(cfg).scale == pytest.approx(512 / kilostep_scale(0.85))
