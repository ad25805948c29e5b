"""One small registry: name -> factory, description, options and typed metadata.

Every name a config accepts (models, datasets, activations, norms, inits, optimizers, schedules)
lives in a `Registry`, so `cnnlab list`, the config schema and the tests all read the same table.

There is one way to add an entry, `register`, used as a decorator on the factory:

    @NORMS.register("batch", "batch normalization ...", BatchNormOptions, NormInfo())
    def _batch(options, channels): ...

or, for a factory made elsewhere (a class, a closure built in a loop), called on it:
`MODELS.register("resnet20", "...", CifarResNetOptions, ModelInfo(residual=True))(build)`.

What code needs to know about an entry beyond its factory is a frozen dataclass, one per kind
(`InitInfo`, `ActivationInfo`, ...), defined next to its registry and checked when the entry is
registered: a misspelled or missing fact fails at import, not when a config first reaches it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel

from cnnlab.errors import unknown_name

InfoT = TypeVar("InfoT")


@dataclass(frozen=True)
class NoInfo:
    """The metadata of a kind whose entries need none beyond name, factory and options."""


@dataclass(frozen=True)
class Entry(Generic[InfoT]):
    name: str
    factory: Callable[..., Any]
    description: str
    # A pydantic model of the entry's own config keys (extra keys forbidden); None if it has none.
    options: type[BaseModel] | None
    info: InfoT


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type, for the annotations metadata uses (literals,
    unions, plain classes, callables); a dataclass alone checks none of these."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return type(value) is bool
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not model


class Registry(Generic[InfoT]):
    def __init__(self, kind: str, list_name: str, info_type: type = NoInfo):
        if not (dataclasses.is_dataclass(info_type) and
                info_type.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise TypeError(f"the {kind} registry's metadata must be a frozen dataclass, "
                            f"not {info_type!r}")
        self.kind = kind  # singular, for messages: "activation"
        self.list_name = list_name  # the `cnnlab list` argument: "activations"
        self.info_type: type[InfoT] = info_type
        self._entries: dict[str, Entry[InfoT]] = {}

    def register(
        self,
        name: str,
        description: str,
        options: type[BaseModel] | None = None,
        info: InfoT | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator adding its factory as `name`; `info` defaults to the kind's dataclass with
        its defaults. Returns the factory unchanged."""
        info = self._checked_info(name, info)
        if not isinstance(description, str) or not description.strip():
            raise TypeError(f"{self.kind} '{name}' is registered without a description; "
                            "`cnnlab list` shows one line for every entry")
        if options is not None and not (isinstance(options, type) and
                                        issubclass(options, BaseModel)):
            raise TypeError(f"{self.kind} '{name}' is registered with options {options!r}; "
                            "give a pydantic model of its config keys, or None")

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(factory):
                raise TypeError(f"{self.kind} '{name}' is registered with {factory!r}, "
                                "which cannot be called")
            if name in self._entries:
                raise RuntimeError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, factory, description, options, info)
            return factory

        return decorator

    def _checked_info(self, name: str, info: InfoT | None) -> InfoT:
        kind_info = self.info_type.__name__
        if info is None:
            try:
                return self.info_type()
            except TypeError as error:
                raise TypeError(f"{self.kind} '{name}' is registered without its {kind_info}, "
                                f"which has required fields ({error})") from None
        if type(info) is not self.info_type:
            raise TypeError(f"{self.kind} '{name}' is registered with {type(info).__name__}; "
                            f"a {self.kind} entry takes {kind_info}")
        hints = typing.get_type_hints(self.info_type)
        for field in dataclasses.fields(info):
            value = getattr(info, field.name)
            if not _fits(value, hints[field.name]):
                raise TypeError(f"{self.kind} '{name}' is registered with {kind_info}."
                                f"{field.name}={value!r}, which is not {hints[field.name]}")
        return info

    def get(self, name: str) -> Entry[InfoT]:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries, self.list_name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[InfoT]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)
