"""Flipping in training: `data.augment.flip` true (a coin per row of each batch) and alternate."""

import torch

from cnnlab.config import AugmentConfig
from cnnlab.data.augment import Augmenter, Normalizer


def _identity_normalizer() -> Normalizer:
    # x/255 scaled back by std 1/255: the augmented pixels come out as they went in.
    return Normalizer([0.0], [1 / 255], torch.device("cpu"), channels_last=False)


def test_flip_true_gives_exactly_what_it_gave_before_alternate_existed():
    # Pinned before `flip: alternate` was added: crop, flip and cutout draw from the generator
    # in this order, so a run with flip true trains on the same batches as before.
    spec = AugmentConfig(crop_padding=1, crop_mode="reflect", flip=True, cutout=1)
    images = torch.arange(6 * 1 * 2 * 3, dtype=torch.uint8).reshape(6, 1, 2, 3)
    out = Augmenter(spec, _identity_normalizer())(images, torch.Generator().manual_seed(5))
    assert out.round().long().tolist() == [
        [[[5, 4, 3], [2, 1, 0]]], [[[10, 11, 10], [7, 0, 7]]], [[[13, 12, 13], [16, 0, 16]]],
        [[[21, 22, 23], [0, 19, 20]]], [[[27, 28, 0], [24, 25, 26]]],
        [[[31, 30, 31], [0, 33, 34]]]]


def _alternate_epoch(seed: int, epoch: int, images, start_step: int = 0):
    """Per dataset image, whether `flip: alternate` mirrored it in `epoch` (from `start_step`)."""
    from cnnlab.data.arrays import ImageSet
    from cnnlab.data.loaders import TrainBatches

    count = images.shape[0]
    labels = torch.arange(count)  # the label of a row is its dataset index
    spec = AugmentConfig(flip="alternate")
    batches = TrainBatches(ImageSet(labels, images), 8, seed, torch.device("cpu"),
                           Augmenter(spec, _identity_normalizer()))
    flipped = {}
    for x, y in batches.epoch(epoch, start_step):
        for row, index in zip(x.round().to(torch.uint8), y.tolist()):
            if torch.equal(row, images[index].flip(2)):
                flipped[index] = True
            else:
                assert torch.equal(row, images[index])
                flipped[index] = False
    return flipped


def _asymmetric_images(count: int) -> torch.Tensor:
    # Every image differs from its mirror image, so a flip is always visible.
    return (torch.arange(count, dtype=torch.uint8)[:, None, None, None]
            + torch.tensor([0, 100], dtype=torch.uint8)).expand(count, 1, 2, 2).clone()


def test_alternate_shows_every_image_both_ways_over_two_epochs_and_repeats():
    images = _asymmetric_images(64)
    first, second, third = (_alternate_epoch(7, e, images) for e in (0, 1, 2))
    assert sorted(first) == sorted(second) == list(range(64))  # 8 full batches of 8
    assert all(first[i] != second[i] for i in first)  # exactly one of the two epochs mirrors it
    assert first == third
    assert 16 < sum(first.values()) < 48  # the first epoch's coins are random, not all alike
    # The coin belongs to the image, not to its place in the shuffled batches.
    assert _alternate_epoch(8, 0, images) != first


def test_alternate_flips_are_the_same_after_a_resume():
    images = _asymmetric_images(64)
    whole = _alternate_epoch(3, 1, images)
    resumed = _alternate_epoch(3, 1, images, start_step=5)  # a run resumed at step 5 of epoch 1
    assert resumed and all(whole[i] == flipped for i, flipped in resumed.items())


def test_image_coins_are_a_fair_function_of_seed_and_index():
    from cnnlab.data.augment import image_coins

    indices = torch.arange(20000)
    coins = image_coins(0, indices)
    assert torch.equal(coins, image_coins(0, indices))
    assert torch.equal(coins[[5, 17, 9]], image_coins(0, torch.tensor([5, 17, 9])))
    assert abs(coins.float().mean().item() - 0.5) < 0.02
    # Neither neighbouring indices (images stored by class) nor seeds move together.
    assert abs((coins[1:] == coins[:-1]).float().mean().item() - 0.5) < 0.02
    assert abs((coins == image_coins(1, indices)).float().mean().item() - 0.5) < 0.02


def test_flip_accepts_true_false_and_alternate_and_names_them_on_a_typo():
    import pytest

    from cnnlab.config import load_config
    from cnnlab.errors import ConfigError

    for value, parsed in (("true", True), ("false", False), ("alternate", "alternate")):
        cfg = load_config({"data": {"dataset": "synthetic"}}, [f"data.augment.flip={value}"])
        assert cfg.data.augment.flip == parsed
    with pytest.raises(ConfigError, match="did you mean 'alternate'"):
        load_config({"data": {"dataset": "synthetic"}}, ["data.augment.flip=altenate"])


def test_alternate_splits_across_processes_as_one_process_does_it():
    from cnnlab.data.arrays import ImageSet
    from cnnlab.data.loaders import TrainBatches

    images = _asymmetric_images(32)
    spec = AugmentConfig(crop_padding=1, crop_mode="reflect", flip="alternate", cutout=1)

    def epoch(shard):
        batches = TrainBatches(ImageSet(torch.arange(32), images), 8, 5, torch.device("cpu"),
                               Augmenter(spec, _identity_normalizer()), shard=shard)
        return [x for x, _ in batches.epoch(1)]

    for whole, first, second in zip(epoch((0, 1)), epoch((0, 2)), epoch((1, 2))):
        assert torch.equal(torch.cat([first, second]), whole)
