import pytest

from cnnlab.errors import UserError, did_you_mean
from cnnlab.registry import Registry


def test_unknown_name_lists_every_valid_name_and_suggests_the_closest():
    registry = Registry("activation", "activations")
    for name in ("relu", "tanh", "gelu"):
        registry.register(name, f"{name} description")(lambda: None)
    with pytest.raises(UserError) as error:
        registry.get("rellu")
    message = str(error.value)
    assert "'rellu'" in message
    assert "did you mean 'relu'" in message
    assert "gelu, relu, tanh" in message
    assert "cnnlab list activations" in message


def test_registering_a_name_twice_is_a_bug():
    registry = Registry("thing", "things")
    registry.register("a", "first")(lambda: None)
    with pytest.raises(RuntimeError):
        registry.register("a", "second")(lambda: None)


def test_did_you_mean_stays_quiet_for_unrelated_names():
    assert did_you_mean("zzz", ["relu", "tanh"]) == ""
