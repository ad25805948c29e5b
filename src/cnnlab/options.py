"""Base classes for typed config sections and tagged unions built from registries."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from cnnlab.registry import Registry


class Options(BaseModel):
    """A config section: unknown keys are errors and defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)


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


def tagged_union(registry: Registry, tag: str = "name", base: type[Options] | None = None,
                 default: str | None = None) -> Any:
    """A pydantic type accepting `NAME` or `{tag: NAME, ...options}` for every registry entry.

    Each member is the entry's options model (or `base`) plus a literal tag field, so pydantic
    reports unknown names, unknown keys and bad values with their full paths, all at once.
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
    if len(members) == 1:
        union = members[0]
    else:
        union = Union[tuple(members)]  # noqa: UP007 - a runtime union of generated classes
    return Annotated[union, Field(discriminator=tag),
                     BeforeValidator(_name_to_mapping(tag, default))]


def options_of(spec: BaseModel, tag: str = "name") -> dict[str, Any]:
    """The keys of a tagged spec without its tag."""
    data = spec.model_dump()
    data.pop(tag, None)
    return data


def entry_options(entry, spec: BaseModel) -> Options | None:
    """A registry entry's own options model filled from a tagged spec (None if it takes none)."""
    if entry.options is None:
        return None
    return entry.options(**options_of(spec))
