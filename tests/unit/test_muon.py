"""Muon (optim.name: muon) against its published algorithm written out in NumPy; the spectrum of
its update; plain SGD for every tensor that is not a conv filter; checkpoint round trip and
resume; a short training run on digits."""

import copy
import io

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cnnlab
from cnnlab.components.muon import Muon, orthogonalize
from cnnlab.components.optimizers import (OPTIMIZERS, build_optimizer, set_hyperparameters)
from cnnlab.config import load_config
from tests.conftest import TINY, same_tensors

# --- the algorithm as published (Jordan et al. 2024, "Muon: An optimizer for hidden layers in
# neural networks"), written out from the description, not from cnnlab's code ---


def newton_schulz_reference(g, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (np.linalg.norm(g) + 1e-7)  # Frobenius norm: every singular value at most 1
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if transposed else x


def muon_reference(w, grads, lr, mu, nesterov, steps, decay):
    """B <- mu B + G; Nesterov: G + mu B; orthogonalise the (out, in*kh*kw) matrix; scale by
    sqrt(max(1, rows/cols)); decoupled weight decay; W <- W - lr * update."""
    B = np.zeros_like(w)
    for G in grads:
        B = mu * B + G
        U = G + mu * B if nesterov else B
        M = U.reshape(len(U), -1)
        O = newton_schulz_reference(M, steps) * max(1.0, M.shape[0] / M.shape[1]) ** 0.5
        w = w * (1 - lr * decay) - lr * O.reshape(w.shape)
    return w


def random_steps(shape, count, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [rng.standard_normal(shape) for _ in range(count)]


def step_through(params, grads_per_param, optimizer):
    for step_grads in zip(*grads_per_param):
        for param, grad in zip(params, step_grads):
            param.grad = torch.as_tensor(grad, dtype=param.dtype).clone()
        optimizer.step()


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (32, 2, 2, 2)])  # wide (8x27), tall (32x8)
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_a_conv_filter_follows_the_published_algorithm(shape, nesterov, decay):
    w0, grads = random_steps(shape, 4, seed=len(shape) + shape[0])
    expected = muon_reference(w0, grads, lr=0.05, mu=0.9, nesterov=nesterov, steps=5,
                              decay=decay)
    param = torch.tensor(w0, requires_grad=True)  # float64: compare to rounding only
    optimizer = Muon([param], lr=0.05, momentum=0.9, nesterov=nesterov, ns_steps=5,
                     weight_decay=decay)
    step_through([param], [grads], optimizer)
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_the_orthogonalised_update_has_singular_values_near_one():
    gen = torch.Generator().manual_seed(0)
    for rows, cols in [(16, 72), (64, 9), (32, 288)]:
        # A gradient with singular values 100x apart: what orthogonalising equalises. (Five
        # steps lift a value by at most 3.4445^5 ~ 490 relative to the Frobenius norm, so one
        # far smaller than that stays small, as the authors accept.)
        rank = min(rows, cols)
        u, _ = torch.linalg.qr(torch.randn(rows, rank, generator=gen, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(cols, rank, generator=gen, dtype=torch.float64))
        spread = torch.logspace(-2, 0, rank, dtype=torch.float64)
        grad = u @ torch.diag(spread) @ v.T
        before = torch.linalg.svdvals(grad)
        assert before.max() / before.min() > 99
        after = torch.linalg.svdvals(orthogonalize(grad, steps=5))
        # The quintic lands every singular value in about 0.7..1.2 rather than exactly on 1.
        assert after.min() > 0.6 and after.max() < 1.25, (rows, cols, after)


def test_the_optimizer_step_of_a_conv_filter_is_orthogonal_per_output_channel_matrix():
    param = torch.zeros(16, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    optimizer = Muon([param], lr=1.0, momentum=0.0)
    param.grad = torch.randn(16, 4, 3, 3, generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64)
    optimizer.step()
    singular = torch.linalg.svdvals(-param.detach().reshape(16, -1))
    assert singular.min() > 0.6 and singular.max() < 1.25


@pytest.mark.parametrize("nesterov", [True, False])
def test_tensors_that_are_not_conv_filters_follow_torch_sgd_exactly(nesterov):
    rng = np.random.default_rng(3)
    shapes = [(5, 7), (7,), (3, 4, 5)]  # a linear weight, a bias, a 3-D tensor
    starts = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for _ in range(5)] for s in shapes]
    ours = [torch.tensor(x, requires_grad=True) for x in starts]
    theirs = [torch.tensor(x, requires_grad=True) for x in starts]
    muon = Muon(ours, lr=0.05, momentum=0.5, weight_decay=0.01, sgd_lr_mult=2.0,
                sgd_momentum=0.9, sgd_nesterov=nesterov)
    sgd = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    step_through(ours, grads, muon)
    step_through(theirs, grads, sgd)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_sgd_without_momentum_is_plain_gradient_descent():
    param = torch.ones(3, requires_grad=True)
    optimizer = Muon([param], lr=0.1, sgd_lr_mult=3.0, sgd_momentum=0.0)
    param.grad = torch.tensor([1.0, 2.0, 3.0])
    optimizer.step()
    torch.testing.assert_close(param.detach(), torch.tensor([0.7, 0.4, 0.1]))


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 6, 3)
        self.norm = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        x = self.conv2(torch.relu(self.norm(self.conv(x))))
        return self.classifier(x.mean(dim=(2, 3)))


def muon_spec(**keys):
    return load_config({"optim": {"name": "muon", **keys}}).optim


def test_the_config_builds_muon_with_its_options_and_schedule_lrs_reach_both_parts():
    spec = muon_spec(lr=0.03, momentum=0.9, nesterov=False, ns_steps=3, sgd_lr_mult=4.0,
                     sgd_momentum=0.8, sgd_nesterov=False, weight_decay=0.01,
                     lr_mult=[{"match": "classifier.*", "mult": 0.5}])
    optimizer = build_optimizer(spec, SmallNet(), batch_size=32)
    assert isinstance(optimizer, Muon)
    info = OPTIMIZERS.get("muon").info
    assert (info.momentum, info.decay) == ("momentum", "decoupled")
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["ns_steps"]) == (0.9, False, 3)
    assert (group["sgd_lr_mult"], group["sgd_momentum"], group["sgd_nesterov"]) == (4.0, 0.8,
                                                                                     False)
    # The schedule sets every group's lr (times its glob multiplier) and the cyclic momentum.
    set_hyperparameters(optimizer, 0.01, 0.85, "momentum")
    lrs = {name: g["lr"] for g in optimizer.param_groups for name in g["names"]}
    assert lrs["conv.weight"] == pytest.approx(0.01)
    assert lrs["classifier.weight"] == pytest.approx(0.005)
    assert all(g["momentum"] == 0.85 and g["sgd_momentum"] == 0.8
               for g in optimizer.param_groups)


def test_options_are_validated_with_the_key_named():
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="ns_steps"):
        muon_spec(ns_steps=0)
    with pytest.raises(ConfigError, match="sgd_lr_mult"):
        muon_spec(sgd_lr_mult=-1)
    with pytest.raises(ConfigError, match="momentum"):
        muon_spec(momentum=1.0)


def train_steps(model, optimizer, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 1, 7, 7, generator=gen)
        y = torch.randint(0, 3, (8,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_a_state_dict_round_trip_continues_identically():
    spec = muon_spec(lr=0.02, sgd_lr_mult=5.0, weight_decay=0.01)
    model = SmallNet()
    optimizer = build_optimizer(spec, model, batch_size=8)
    train_steps(model, optimizer, 3, seed=0)
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, saved)
    saved.seek(0)
    # As a checkpoint is read: tensors and plain values only.
    loaded = torch.load(saved, weights_only=True)
    restored = SmallNet()
    restored.load_state_dict(loaded["model"])
    restored_optimizer = build_optimizer(spec, restored, batch_size=8)
    restored_optimizer.load_state_dict(loaded["optim"])
    assert all("momentum_buffer" in state for state in restored_optimizer.state.values())
    train_steps(model, optimizer, 3, seed=1)
    train_steps(restored, restored_optimizer, 3, seed=1)
    assert same_tensors(model.state_dict(), restored.state_dict())


def digits_config(**train):
    config = copy.deepcopy(TINY)
    config["data"] = {"dataset": "digits", "batch_size": 32, "val_split": 0.2}
    config["model"] = {"arch": "simple_cnn", "widths": [8, 16], "fc": [32]}
    config["optim"] = {"name": "muon", "lr": 0.02, "sgd_lr_mult": 5.0}
    config["train"].update(train)
    return load_config(config)


def test_muon_trains_on_digits(tmp_path):
    summary = cnnlab.train(digits_config(epochs=2), tmp_path / "run", progress=False)
    assert summary["status"] == "completed"
    # Ten classes: chance is a loss of ln 10 = 2.30 and 10% accuracy.
    assert summary["final_train_loss"] < 1.0
    assert summary["final_val_acc"] > 0.6


class Interrupt(Exception):
    pass


def _stop_in_epoch_2(record):
    if record["epoch"] == 2:
        raise Interrupt  # as if killed: a checkpoint within epoch 2 is the last one


def test_an_interrupted_muon_run_resumes_to_the_same_weights(tmp_path):
    cfg = digits_config(epochs=2, checkpoint_every=40)
    cnnlab.train(cfg, tmp_path / "whole", progress=False)
    with pytest.raises(Interrupt):
        cnnlab.train(cfg, tmp_path / "cut", progress=False, on_epoch=_stop_in_epoch_2)
    assert cnnlab.resume(tmp_path / "cut", progress=False)["status"] == "completed"
    assert same_tensors(load_file(str(tmp_path / "whole" / "model.safetensors")),
                        load_file(str(tmp_path / "cut" / "model.safetensors")))
