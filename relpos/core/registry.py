"""Name -> object registries: modalities, samplers, heads, encoder presets, data sources.

A :class:`Registry` maps names to factories (classes, functions, configs). An entry may also be
a ``"package.module:attribute"`` string, imported on first use, so that built-ins with heavy
optional dependencies can be listed without importing them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

__all__ = ["Registry", "unknown_name"]

T = TypeVar("T")


def unknown_name(kind: str, name: object, known: Iterable[str]) -> ValueError:
    """The one error of an unknown name: ``unknown <kind> 'x'; known: a, b, ...``."""
    return ValueError(f"unknown {kind} {name!r}; known: {', '.join(known)}")


class Registry(Generic[T]):
    """Named factories of one kind (``"modality"``, ``"sampler"``, ...).

    ``get`` raises a ``ValueError`` that lists the known names, so a misspelt name in a config
    or on the command line fails with the valid choices.
    """

    def __init__(self, kind: str, normalize: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._normalize = normalize or (lambda name: name)
        self._entries: dict[str, T | str] = {}

    @overload
    def register(self, name: str, obj: T | str) -> T | str: ...

    @overload
    def register(self, name: str, obj: None = None) -> Callable[[T], T]: ...

    def register(self, name: str, obj: T | str | None = None) -> Any:
        """Add (or replace) ``name``; without ``obj``, a decorator."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string; got {name!r}")
        if obj is None:

            def wrap(fn: T) -> T:
                self._entries[self._normalize(name)] = fn
                return fn

            return wrap
        self._entries[self._normalize(name)] = obj
        return obj

    def check(self, name: str, what: str | None = None) -> str:
        """``name`` if it is registered (nothing is imported), else a ``ValueError`` that lists
        the known names; ``what`` replaces the registry's kind in the message."""
        if name not in self:
            raise unknown_name(what or self.kind, name, self.names())
        return name

    def get(self, name: str) -> T:
        """The entry called ``name`` (lazy ``"module:attribute"`` entries are imported now)."""
        self.check(name)
        key = self._normalize(name)
        entry = self._entries[key]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[key] = entry
        return entry

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
