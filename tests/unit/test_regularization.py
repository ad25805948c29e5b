import pytest
import torch
import torch.nn.functional as F

from cnnlab.config import load_config
from cnnlab.regularization.early_stopping import EarlyStopping
from cnnlab.regularization.ema import WeightEma
from cnnlab.regularization.mixing import MixedBatch, mix, mixed_correct, mixed_loss


def train_cfg(**keys):
    return load_config({"train": keys}).train


def batch(n=8):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.arange(n) % 4


def test_alpha_zero_means_no_mixing_whatever_the_other_settings():
    x, y = batch()
    assert mix(x, y, train_cfg(mix_prob=0.3, mix_switch_prob=0.9), torch.Generator()) is None
    assert mix(x, y, train_cfg(mixup=0.4, mix_prob=0.0), torch.Generator()) is None


def test_mixup_blends_images_and_cutmix_pastes_a_box_whose_area_sets_lam():
    x, y = batch()
    mixed = mix(x, y, train_cfg(mixup=0.4), torch.Generator().manual_seed(1))
    assert 0.0 <= mixed.lam <= 1.0 and mixed.images.shape == x.shape
    cut = mix(x, y, train_cfg(cutmix=1.0), torch.Generator().manual_seed(2))
    changed = (cut.images != x).any(dim=1)  # pixels taken from the partner image
    replaced = changed.float().mean(dim=(1, 2))
    same_partner = cut.partners == y
    assert torch.allclose(replaced[~same_partner], torch.tensor(1 - cut.lam), atol=1e-6)


def test_mixup_is_a_convex_combination_with_the_shuffled_batch():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    y = torch.arange(4)
    mixed = mix(x, y, train_cfg(mixup=1.0), torch.Generator().manual_seed(3))
    partner_values = mixed.partners.float().view(4, 1, 1, 1)  # here value == label
    assert torch.allclose(mixed.images, mixed.lam * x + (1 - mixed.lam) * partner_values)


def test_mixed_loss_and_accuracy_weight_both_targets():
    logits = torch.randn(6, 4)
    y, partners = torch.arange(6) % 4, (torch.arange(6) + 1) % 4
    whole = MixedBatch(torch.zeros(1), y, partners, 1.0)
    assert torch.allclose(mixed_loss(logits, whole, 0.1), F.cross_entropy(logits, y,
                                                                         label_smoothing=0.1))
    half = MixedBatch(torch.zeros(1), y, partners, 0.5)
    expected = 0.5 * F.cross_entropy(logits, y) + 0.5 * F.cross_entropy(logits, partners)
    assert torch.allclose(mixed_loss(logits, half, 0.0), expected)
    confident = torch.nn.functional.one_hot(y, 4).float() * 10
    assert float(mixed_correct(confident, MixedBatch(None, y, partners, 0.7))) == pytest.approx(
        0.7 * 6)


def test_ema_with_decay_zero_is_the_model_and_warmup_ramps_the_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = WeightEma(model, decay=0.0)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(4, 3))  # moves the BN running stats
    ema.update(model, step=1)
    for a, b in zip(ema.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    ramp = WeightEma(model, decay=0.9, warmup_steps=10)
    assert ramp.current_decay() == 0.0
    ramp.updates = 5
    assert ramp.current_decay() == pytest.approx(0.45)
    every = WeightEma(model, decay=0.5, every=3)
    every.update(model, step=2)
    assert every.updates == 0


@pytest.mark.parametrize("mode,sequence,patience,stop_epoch,best_epoch", [
    ("min", [1.0, 0.8, 0.9, 0.7, 0.75, 0.76, 0.74], 2, 6, 4),
    ("max", [0.5, 0.6, 0.6, 0.6], 1, 3, 2),
    ("min", [1.0, 1.0, 1.0], 0, 2, 1),
])
def test_early_stopping_stops_at_the_right_epoch(mode, sequence, patience, stop_epoch, best_epoch):
    stopper = EarlyStopping("val_loss", mode, patience, 0.0)
    stopped = None
    for epoch, value in enumerate(sequence, start=1):
        _, stop = stopper.observe(epoch, {"val_loss": value})
        if stop:
            stopped = epoch
            break
    assert stopped == stop_epoch and stopper.best_epoch == best_epoch


def test_early_stopping_min_delta_and_state_round_trip():
    stopper = EarlyStopping("val_acc", "max", 1, 0.05)
    stopper.observe(1, {"val_acc": 0.50})
    improved, stop = stopper.observe(2, {"val_acc": 0.54})  # not by more than min_delta
    assert not improved and stop
    again = EarlyStopping("val_acc", "max", 1, 0.05)
    again.load_state_dict(stopper.state_dict())
    assert again.state_dict() == stopper.state_dict()


def small_bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))


def test_weight_average_matches_torch_averaged_model():
    from torch.optim.swa_utils import AveragedModel

    from cnnlab.regularization.swa import WeightAverage

    model = small_bn_net()
    ours, oracle = WeightAverage(model, start_epoch=1), AveragedModel(model)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(torch.randn(param.shape, generator=gen))
        ours.update(model)
        oracle.update_parameters(model)
    for (name, mine), theirs in zip(ours.model.named_parameters(), oracle.module.parameters()):
        assert torch.allclose(mine, theirs, rtol=1e-6, atol=1e-7), name
    assert ours.averaged == int(oracle.n_averaged) == 5
    assert not ours.model.training


def test_weight_average_of_one_epoch_is_that_epoch_and_state_round_trips():
    from cnnlab.regularization.swa import WeightAverage

    model = small_bn_net()
    average = WeightAverage(model, start_epoch=3)
    assert not average.collects(2) and average.collects(3) and average.collects(7)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)
    assert torch.equal(average.model[0].weight, model[0].weight)
    copy = WeightAverage(small_bn_net(), start_epoch=3)
    copy.load_state_dict(average.state_dict())
    assert copy.averaged == 1 and torch.equal(copy.model[0].weight, model[0].weight)


def test_recomputed_batch_norm_statistics_are_those_of_all_the_batches():
    from cnnlab.regularization.swa import WeightAverage

    model = small_bn_net()
    average = WeightAverage(model, start_epoch=1)
    average.update(model)
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(6, 3, 8, 8, generator=gen) * 3 + 1, torch.zeros(6, dtype=torch.long))
               for _ in range(4)]
    average.recompute_batch_norm(batches)
    with torch.no_grad():
        features = average.model[0](torch.cat([x for x, _ in batches]))
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(average.model[1].running_mean, expected, atol=1e-5)
    assert not average.model.training


@pytest.mark.parametrize("keys, message", [
    ({"epochs": 5, "swa": {"start_epoch": 6}}, r"after the last epoch \(5\)"),
    ({"swa": {}, "ema": {"decay": 0.99}}, "keep one of them"),
    ({"swa": {}, "early_stopping": {"patience": 2}}, "restore_best=false"),
])
def test_weight_averaging_settings_that_cannot_work_are_refused(keys, message):
    from cnnlab.errors import UserError

    with pytest.raises(UserError, match=message):
        train_cfg(**keys)
    assert train_cfg(swa={}, early_stopping={"patience": 2, "restore_best": False}).swa
