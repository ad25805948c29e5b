"""The comparison helpers the other tests lean on: a comparison of nothing must fail, not pass."""

import pytest
import torch

from tests.conftest import same_tensors


def test_comparing_empty_dicts_fails_instead_of_passing():
    with pytest.raises(AssertionError, match="nothing to compare"):
        same_tensors({}, {})
    with pytest.raises(AssertionError, match="nothing to compare"):
        same_tensors({"w": torch.ones(2)}, {})


def test_equal_tensors_are_the_same_and_one_differing_bit_is_not():
    a = {"w": torch.ones(3), "b": torch.zeros(2)}
    assert same_tensors(a, {k: v.clone() for k, v in a.items()})
    nudged = {"w": torch.ones(3), "b": torch.tensor([0.0, torch.finfo(torch.float32).tiny])}
    assert not same_tensors(a, nudged)
    assert same_tensors(a, nudged, atol=1e-30)
    assert not same_tensors(a, {"w": torch.ones(3)})  # a missing name
    assert not same_tensors({"w": torch.ones(1)}, {"w": torch.ones(2)})  # broadcastable shapes
