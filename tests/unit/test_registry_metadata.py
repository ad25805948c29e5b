"""Typed registry metadata: every entry carries its kind's frozen dataclass, and a malformed
registration fails when its module is imported, with a message naming the entry and the fact."""

from __future__ import annotations

import dataclasses
import importlib
import textwrap

import pytest
from pydantic import TypeAdapter

from cnnlab.catalogue import catalogue
from cnnlab.components.activations import ActivationInfo, ActivationSpec
from cnnlab.components.init import InitInfo, InitSpec
from cnnlab.components.norms import NormInfo, NormSpec
from cnnlab.components.optimizers import OptimizerInfo
from cnnlab.components.schedules import ScheduleInfo
from cnnlab.data.sources import DatasetInfo
from cnnlab.models.base import ModelInfo
from cnnlab.options import entry_options
from cnnlab.registry import Registry

INFO_OF_KIND = {"models": ModelInfo, "datasets": DatasetInfo, "activations": ActivationInfo,
                "norms": NormInfo, "inits": InitInfo, "optimizers": OptimizerInfo,
                "schedules": ScheduleInfo}


def test_every_registry_has_its_own_frozen_metadata_class():
    registries = catalogue()
    assert set(registries) == set(INFO_OF_KIND)
    for kind, registry in registries.items():
        info_type = INFO_OF_KIND[kind]
        assert registry.info_type is info_type, kind
        assert dataclasses.is_dataclass(info_type) and info_type.__dataclass_params__.frozen


@pytest.mark.parametrize("kind", list(INFO_OF_KIND))
def test_every_entry_carries_its_kinds_metadata(kind):
    registry = catalogue()[kind]
    assert len(registry) > 0
    for entry in registry:
        assert type(entry.info) is INFO_OF_KIND[kind], f"{kind} {entry.name}"


def test_the_metadata_code_reads_is_where_it_was():
    registries = catalogue()
    assert registries["models"].get("resnet20").info.residual
    assert not registries["models"].get("simple_cnn").info.residual
    assert registries["datasets"].get("npz").info.needs_root
    assert registries["optimizers"].get("adamw").info == OptimizerInfo("betas", "decoupled")
    assert registries["optimizers"].get("adagrad").info.momentum is None
    assert registries["activations"].get("tanh").info.saturates_low
    assert registries["inits"].get("kaiming_normal").info.uses_gain
    assert registries["inits"].get("torch_default").info.fills_bias
    whole_model = {e.name for e in registries["inits"] if e.info.post_step is not None}
    assert whole_model == {"lsuv", "fixup", "whitening"}


@dataclasses.dataclass(frozen=True)
class _ToyInfo:
    kind: str  # a required field: no default metadata exists
    flag: bool = False


def _toy_registry() -> Registry[_ToyInfo]:
    return Registry("toy", "toys", _ToyInfo)


@pytest.mark.parametrize("register, message", [
    (lambda r: r.register("a", "an entry", info=NormInfo()), "registered with NormInfo; a toy "
     "entry takes _ToyInfo"),
    (lambda r: r.register("a", "an entry"), "registered without its _ToyInfo"),
    (lambda r: r.register("a", "an entry", info=_ToyInfo("x", flag="yes")),
     r"_ToyInfo.flag='yes', which is not"),
    (lambda r: r.register("a", "", info=_ToyInfo("x")), "without a description"),
    (lambda r: r.register("a", "an entry", dict, _ToyInfo("x")), "give a pydantic model"),
    (lambda r: r.register("a", "an entry", info=_ToyInfo("x"))(42), "cannot be called"),
])
def test_a_malformed_registration_names_the_entry_and_what_is_wrong(register, message):
    with pytest.raises(TypeError, match=message) as error:
        register(_toy_registry())
    assert "toy 'a'" in str(error.value)


def test_a_literal_field_only_takes_its_values():
    registry = Registry("optimizer", "optimizers", OptimizerInfo)
    with pytest.raises(TypeError, match=r"OptimizerInfo.momentum='moment'"):
        registry.register("sgd2", "an optimizer", info=OptimizerInfo("moment", "coupled"))


def test_metadata_must_be_a_frozen_dataclass():
    @dataclasses.dataclass
    class Mutable:
        flag: bool = False

    with pytest.raises(TypeError, match="frozen dataclass"):
        Registry("toy", "toys", Mutable)


def test_a_module_with_a_malformed_registration_fails_at_import(tmp_path, monkeypatch):
    (tmp_path / "toy_models.py").write_text(textwrap.dedent("""
        from cnnlab.models.base import ModelInfo
        from cnnlab.registry import Registry

        TOYS = Registry("model", "models", ModelInfo)

        @TOYS.register("toynet", "a toy", info=ModelInfo(residual="yes"))
        def toynet(ctx, options):
            return None
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match=r"model 'toynet' is registered with ModelInfo.residual"):
        importlib.import_module("toy_models")


@pytest.mark.parametrize("spec_type, registry_kind, raw", [
    (ActivationSpec, "activations", {"name": "leaky_relu", "negative_slope": 0.2}),
    (NormSpec, "norms", {"name": "group", "groups": 4}),
    (InitSpec, "inits", {"name": "lsuv", "tolerance": 0.1}),
])
def test_a_validated_spec_is_passed_on_not_validated_again(spec_type, registry_kind, raw):
    spec = TypeAdapter(spec_type).validate_python(raw)
    assert entry_options(catalogue()[registry_kind].get(raw["name"]), spec) is spec
