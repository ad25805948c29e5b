"""Base classes for typed config sections and tagged unions built from registries."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, \
    create_model, model_validator
from pydantic_core import PydanticCustomError

from cnnlab.registry import Registry

# Training computes in float32 (or narrower): a setting beyond its range overflows in torch.
FLOAT32_MAX = 3.4028234663852886e38
# The error type of a value that is no usable number where one is expected (true, 1e300).
NOT_A_NUMBER = "not_a_plain_number"


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field's annotation takes values of `kind` (bool, int or float) as themselves."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _accepts(typing.get_args(annotation)[0], kind)
    if origin in (Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(annotation))
    if origin is Literal:
        return any(type(arg) is kind for arg in typing.get_args(annotation))
    return annotation is kind or annotation is Any


def _as_float(value: Any) -> float | None:
    # YAML 1.1 reads `1e300` (no dot) as a string, which pydantic then turns into a float.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


class Options(BaseModel):
    """A config section: unknown keys are errors and defaults are validated too. Numbers are
    finite and within float32's range, and true/false is not a number (pydantic alone would
    read `epochs: true` as 1)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False,
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        # A model-level check, since a field validator may not touch a union's tag field; its
        # error type and context let the config reader name the key (config.describe_error).
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if field is None:
                continue
            numeric = _accepts(field.annotation, int) or _accepts(field.annotation, float)
            if isinstance(value, bool) and numeric and not _accepts(field.annotation, bool):
                raise PydanticCustomError(
                    NOT_A_NUMBER, "{key}: received {value}; true/false is not a number here",
                    {"key": key, "value": str(value).lower()})
            number = _as_float(value) if _accepts(field.annotation, float) else None
            if number is not None and math.isfinite(number) and abs(number) > FLOAT32_MAX:
                raise PydanticCustomError(
                    NOT_A_NUMBER, "{key}: received {value}; that is beyond the float32 range "
                    "(about 3.4e38) that training computes in; give a realistic value",
                    {"key": key, "value": f"{number:g}"})
        return data


class NoOptions(Options):
    """An entry that takes no keys besides its name."""


def _name_to_mapping(tag: str, default: str | None):
    def convert(value: Any) -> Any:
        # `relu` is shorthand for `{name: relu}`; a mapping without its tag takes the default.
        if isinstance(value, str):
            return {tag: value}
        if isinstance(value, dict) and tag not in value and default is not None:
            return {tag: default, **value}
        return value

    return convert


def member_tag(member: type[BaseModel], tag: str) -> str | None:
    """The tag a union member answers to: its `union_tag` (a member taking a family of names,
    such as `torchvision.*`), or the value of its literal tag field."""
    family = getattr(member, "union_tag", None)
    if isinstance(family, str):
        return family
    field = member.model_fields.get(tag)
    if field is not None and typing.get_origin(field.annotation) is Literal:
        return typing.get_args(field.annotation)[0]
    return None


def tagged_union(registry: Registry, tag: str = "name", base: type[Options] | None = None,
                 default: str | None = None, more: Sequence[type[Options]] = (),
                 family: Callable[[str], str] | None = None) -> Any:
    """A pydantic type accepting `NAME` or `{tag: NAME, ...options}` for every registry entry.

    Each member is the entry's options model (or `base`) plus a literal tag field, so pydantic
    reports unknown names, unknown keys and bad values with their full paths, all at once.
    `more` adds members defined elsewhere; `family(name)` maps a name to the tag of the member
    that takes it (`torchvision.resnet18` -> `torchvision`), for members that take many names.
    """
    members = []
    for entry in registry:
        options = entry.options or base or NoOptions
        member = create_model(
            f"{registry.kind.title().replace(' ', '')}_{entry.name}",
            __base__=options,
            **{tag: (Literal[entry.name], entry.name)},  # type: ignore[call-overload]
        )
        members.append(member)
    members += list(more)
    if family is not None:
        return _routed_union(members, tag, default, family)
    if len(members) == 1:
        union = members[0]
    else:
        union = Union[tuple(members)]  # noqa: UP007 - a runtime union of generated classes
    return Annotated[union, Field(discriminator=tag),
                     BeforeValidator(_name_to_mapping(tag, default))]


def _routed_union(members: list[type[BaseModel]], tag: str, default: str | None,
                  family: Callable[[str], str]) -> Any:
    def route(value: Any) -> str | None:
        name = value.get(tag) if isinstance(value, dict) else getattr(value, tag, None)
        return family(name) if isinstance(name, str) else None

    # pydantic names the discriminator in its errors by the function's name: `arch()`.
    route.__name__ = route.__qualname__ = tag
    tagged = [Annotated[m, Tag(member_tag(m, tag))] for m in members]
    union = Union[tuple(tagged)]  # noqa: UP007 - a runtime union of generated classes
    return Annotated[union, Discriminator(route), BeforeValidator(_name_to_mapping(tag, default))]


def options_of(spec: BaseModel, tag: str = "name") -> dict[str, Any]:
    """The keys of a tagged spec without its tag."""
    data = spec.model_dump()
    data.pop(tag, None)
    return data


def entry_options(entry, spec: BaseModel) -> Options | None:
    """A registry entry's own options from a tagged spec (None if it takes none).

    A spec validated by `tagged_union` already is an instance of the entry's options model: it
    is passed on as it is, not validated again each time a layer is built from it.
    """
    if entry.options is None:
        return None
    if isinstance(spec, entry.options):
        return spec
    return entry.options(**options_of(spec))
