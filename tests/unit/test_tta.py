"""Test-time augmentation (cnnlab.tta): the views and weights of `train.tta`, shared by
evaluation, predict and the exported graph."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.augment import Normalizer
from cnnlab.evaluate import evaluate
from cnnlab.exporting import ExportedNetwork
from cnnlab.predict import TrainedRun, _probabilities
from cnnlab.runtime import Runtime
from cnnlab.tta import TTA_MODES, tta_logits


class TwoPixels(nn.Module):
    """Logits = pixels (0, 0) and (2, 1) of channel 0: any view shows up in them."""

    def forward(self, x):
        return x[:, 0, [0, 2], [0, 1]]


class MeanColour(nn.Module):
    """A linear map of each channel's mean: blind to where things are in the image."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 5)

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3)))


def test_the_weights_are_those_computed_by_hand():
    x = (torch.arange(16.0) ** 2).reshape(1, 1, 4, 4)  # pixel (i, j) = (4i + j)^2
    # View: pixel (0, 0), pixel (2, 1), read off the 4x4 image by hand (reflect: row -1 is row 1,
    # row 4 is row 2).  image: 0, 81; mirror: 9, 100; shifted down-right: 25, 16; its mirror:
    # 36, 25; shifted up-left: 25, 196; its mirror: 36, 225.
    assert tta_logits(TwoPixels(), x, "none").tolist() == [[0.0, 81.0]]
    assert tta_logits(TwoPixels(), x, "flip").tolist() == [[(0 + 9) / 2, (81 + 100) / 2]]
    expected = [(0 + 9) / 4 + (25 + 36 + 25 + 36) / 8, (81 + 100) / 4 + (16 + 25 + 196 + 225) / 8]
    assert tta_logits(TwoPixels(), x, "flip_translate").tolist() == [expected]


def test_a_model_blind_to_position_gets_its_plain_logits():
    torch.manual_seed(0)
    model = MeanColour()
    # Images of one colour each: every flip and shift of them is the image itself.
    x = torch.randn(6, 3, 1, 1).expand(6, 3, 8, 8)
    plain = model(x)
    for mode in TTA_MODES:
        assert torch.allclose(tta_logits(model, x, mode), plain, atol=1e-6)


def test_evaluate_predict_and_the_export_wrapper_give_the_same_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model.eval()
    pixels = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 3, (10,))
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    normalizer = Normalizer(mean, std, torch.device("cpu"), channels_last=False)
    runtime = Runtime(device=torch.device("cpu"), threads=1, amp="off", channels_last=False)
    for mode in TTA_MODES:
        trained = TrainedRun(model, ["a", "b", "c"], 3, (8, 8), normalizer, mode,
                             torch.device("cpu"))
        probabilities = _probabilities(trained, pixels)
        metrics = evaluate(model, [(normalizer(pixels), labels)], runtime, 3, tta=mode)
        by_predict = F.nll_loss(probabilities.log(), labels).item()
        assert metrics["loss"] == pytest.approx(by_predict, rel=1e-5)
        with torch.no_grad():
            exported = ExportedNetwork(model, mean, std, mode)(pixels.float() / 255)
        assert torch.allclose(exported.softmax(1), probabilities, atol=1e-6)
    # The modes differ on this network, so the comparison above saw each one's own views.
    assert not torch.allclose(tta_logits(model, normalizer(pixels), "flip"),
                              tta_logits(model, normalizer(pixels), "flip_translate"))
