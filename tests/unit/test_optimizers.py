"""Optimizers: every name builds and trains, parameter groups decay and scale the right tensors,
batch-size scaling and gradient accumulation, and LAMB and Lion against their papers' rules."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.components.lamb import Lamb
from cnnlab.components.lion import Lion
from cnnlab.components.optimizers import (OPTIMIZERS, build_optimizer, effective_lr,
                                          parameter_groups)
from cnnlab.config import load_config
from tests.conftest import same_tensors


def optim_spec(**keys):
    return load_config({"optim": keys}).optim


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.classifier = nn.Linear(4, 2)

    def forward(self, x):
        return self.classifier(self.norm(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_from_its_name_and_lowers_the_loss(name):
    model = TinyNet()
    lr = {"sgd": 0.1, "adadelta": 1.0, "lion": 0.003, "adagrad": 0.1}.get(name, 0.01)
    optimizer = build_optimizer(optim_spec(name=name, lr=lr), model, batch_size=16)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 6, 6, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert OPTIMIZERS.get(name).description


def test_torch_optimizers_receive_every_configured_hyperparameter():
    sgd = build_optimizer(optim_spec(name="sgd", lr=0.2, momentum=0.8, dampening=0.1,
                                     nesterov=False), TinyNet(), 32)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["dampening"]) == (0.2, 0.8, 0.1)
    nesterov = build_optimizer(optim_spec(name="sgd", momentum=0.9, nesterov=True), TinyNet(), 32)
    assert nesterov.param_groups[0]["nesterov"] is True
    adamw = build_optimizer(optim_spec(name="adamw", betas=[0.8, 0.95], eps=1e-6, amsgrad=True),
                            TinyNet(), 32)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["betas"] == (0.8, 0.95)
    assert adamw.param_groups[0]["amsgrad"] and adamw.param_groups[0]["eps"] == 1e-6


def test_weight_decay_skips_biases_and_norm_parameters_unless_asked():
    model = TinyNet()
    groups = parameter_groups(model, optim_spec(name="sgd", weight_decay=5e-4))
    decay = {name: group["weight_decay"] for group in groups for name in group["names"]}
    assert decay == {"conv.weight": 5e-4, "conv.bias": 0.0, "norm.weight": 0.0,
                     "norm.bias": 0.0, "classifier.weight": 5e-4, "classifier.bias": 0.0}
    groups = parameter_groups(model, optim_spec(name="sgd", weight_decay=5e-4,
                                                decay_bias_and_norm=True))
    assert all(group["weight_decay"] == 5e-4 for group in groups)


def test_lr_multipliers_follow_the_first_matching_glob():
    model = TinyNet()
    spec = optim_spec(name="sgd", lr=0.1, lr_mult=[{"match": "classifier.*", "mult": 10},
                                                  {"match": "*.bias", "mult": 0.5}])
    optimizer = build_optimizer(spec, model, 32)
    lrs = {name: group["lr"] for group in optimizer.param_groups for name in group["names"]}
    assert lrs["classifier.weight"] == pytest.approx(1.0)
    assert lrs["classifier.bias"] == pytest.approx(1.0)  # the first rule wins
    assert lrs["conv.bias"] == pytest.approx(0.05) and lrs["conv.weight"] == pytest.approx(0.1)


def test_lr_scales_with_the_batch_size_linearly_or_by_its_square_root():
    assert effective_lr(optim_spec(lr=0.1, scale_lr="linear", base_batch_size=256), 1024) == \
        pytest.approx(0.4)
    assert effective_lr(optim_spec(lr=0.1, scale_lr="sqrt", base_batch_size=256), 1024) == \
        pytest.approx(0.2)
    assert effective_lr(optim_spec(lr=0.1), 1024) == 0.1


def test_gradient_accumulation_over_two_half_batches_equals_one_whole_batch(tmp_path, tiny):
    # No batch norm or dropout, which would see the half batches differently.
    tiny["model"].update(norm="none")
    tiny["schedule"] = "constant"
    whole = cnnlab.train(cnnlab.load_config(tiny), out=tmp_path / "whole", progress=False)
    tiny["data"]["batch_size"] = 16
    tiny["train"]["accumulate"] = 2
    halves = cnnlab.train(cnnlab.load_config(tiny), out=tmp_path / "halves", progress=False)
    assert halves["steps"] == whole["steps"]
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "halves" / "model.safetensors"))
    assert same_tensors(a, b, rtol=1e-4, atol=1e-6)


# --- LAMB and Lion against their papers' algorithms, written out in NumPy, element by element --


def lamb_reference(x, grads, lr, beta1, beta2, eps, decay):
    """You et al. 2020, Algorithm 2, with phi the identity."""
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        r = m_hat / (np.sqrt(v_hat) + eps)
        update = r + decay * x
        x_norm, u_norm = math.sqrt(float((x * x).sum())), math.sqrt(float((update ** 2).sum()))
        ratio = x_norm / u_norm if x_norm > 0 and u_norm > 0 else 1.0
        x = x - lr * ratio * update
    return x


def lion_reference(x, grads, lr, beta1, beta2, decay):
    """Chen et al. 2023, Algorithm 2 (Lion)."""
    m = np.zeros_like(x)
    for g in grads:
        c = beta1 * m + (1 - beta1) * g
        x = x - lr * (np.sign(c) + decay * x)
        m = beta2 * m + (1 - beta2) * g
    return x


def run_optimizer(optimizer_class, x0, grads, **options):
    param = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class([param], **options)
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    return param.detach().numpy()


def paper_problem(seed=0, steps=12):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) * (0.1 + t) for t in range(steps)]
    return x0, grads


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_lamb_follows_algorithm_2_of_its_paper(decay):
    x0, grads = paper_problem()
    ours = run_optimizer(Lamb, x0, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-6,
                         weight_decay=decay)
    expected = lamb_reference(x0, grads, 0.01, 0.9, 0.999, 1e-6, decay)
    assert np.allclose(ours, expected, rtol=1e-12, atol=1e-14)
    # Each step moves the tensor by lr times its own norm, whatever the gradients' scale.
    param = torch.tensor(x0, requires_grad=True, dtype=torch.float64)
    lamb = Lamb([param], lr=0.01)
    param.grad = torch.tensor(grads[5] * 1e4)
    before = param.detach().clone()
    lamb.step()
    moved = torch.linalg.vector_norm(param.detach() - before)
    assert moved.item() == pytest.approx(0.01 * torch.linalg.vector_norm(before).item())


def test_lamb_moves_a_zero_tensor_with_a_trust_ratio_of_one():
    param = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    param.grad = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    Lamb([param], lr=0.1).step()
    assert param.detach().abs().sum() > 0


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_lion_follows_algorithm_2_of_its_paper(decay):
    x0, grads = paper_problem(seed=1)
    ours = run_optimizer(Lion, x0, grads, lr=0.003, betas=(0.9, 0.99), weight_decay=decay)
    expected = lion_reference(x0, grads, 0.003, 0.9, 0.99, decay)
    assert np.allclose(ours, expected, rtol=1e-12, atol=1e-14)


def test_lamb_and_lion_state_survives_a_state_dict_round_trip():
    x0, grads = paper_problem(seed=2)
    for cls, options in ((Lamb, {"lr": 0.01}), (Lion, {"lr": 0.001})):
        straight = run_optimizer(cls, x0, grads, **options)
        param = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        first = cls([param], **options)
        for g in grads[:6]:
            param.grad = torch.tensor(g)
            first.step()
        second = cls([param], **options)
        second.load_state_dict(first.state_dict())
        for g in grads[6:]:
            param.grad = torch.tensor(g)
            second.step()
        assert np.array_equal(param.detach().numpy(), straight), cls.__name__


def test_a_step_the_grad_scaler_skips_is_reported_so_the_schedule_does_not_count_it():
    from cnnlab.train import optimizer_step

    param = nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for gradient, expected in ((float("inf"), False), (1.0, True)):
        scaler.scale((param * gradient).sum()).backward()
        scaler.unscale_(optimizer)
        before = param.detach().clone()
        assert optimizer_step(optimizer, scaler) is expected
        assert torch.equal(param.detach(), before) is not expected
        optimizer.zero_grad()
    assert optimizer_step(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1), None)


def test_one_conversion_turns_optim_lr_into_the_optimizer_lr_for_optimizer_and_schedule():
    from cnnlab.configured_schedule import schedule_for_config
    from cnnlab.lr_units import config_lr, images_per_step, optimizer_lr

    # 64 images x 2 accumulated = 128 per step against base 32: x4 linear, x2 sqrt.
    for scale, factor in (("linear", 4.0), ("sqrt", 2.0), ("none", 1.0)):
        cfg = load_config({"data": {"batch_size": 64}, "train": {"accumulate": 2},
                           "optim": {"lr": 0.01, "scale_lr": scale, "base_batch_size": 32},
                           "schedule": {"name": "constant"}})
        assert images_per_step(cfg) == 128
        assert optimizer_lr(cfg) == pytest.approx(0.01 * factor)
        assert config_lr(cfg, optimizer_lr(cfg)) == pytest.approx(0.01)
        assert schedule_for_config(cfg, batches_per_epoch=10).lr(0) == pytest.approx(0.01 * factor)
        optimizer = build_optimizer(cfg.optim, TinyNet(), images_per_step(cfg))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * factor)
