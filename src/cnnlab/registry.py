"""One small registry: name -> factory, description and metadata.

Every name a config accepts (models, datasets, activations, norms, inits, optimizers, schedules)
lives in a `Registry`, so `cnnlab list`, the config schema and the tests all read the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from cnnlab.errors import unknown_name


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str
    # A pydantic model of the entry's own config keys (extra keys forbidden); None if it has none.
    options: type[BaseModel] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str, list_name: str):
        self.kind = kind  # singular, for messages: "activation"
        self.list_name = list_name  # the `cnnlab list` argument: "activations"
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        description: str,
        options: type[BaseModel] | None = None,
        **meta: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, factory, description, options, **meta)
            return factory

        return decorator

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        description: str,
        options: type[BaseModel] | None = None,
        **meta: Any,
    ) -> Entry:
        if name in self._entries:
            raise RuntimeError(f"{self.kind} '{name}' is registered twice")
        entry = Entry(name, factory, description, options, dict(meta))
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries, self.list_name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)
