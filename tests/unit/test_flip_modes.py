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
