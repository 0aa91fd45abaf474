"""Checks shared by the configs and the constructors: bounded numbers, known names, shapes.

Every failure is a one-line ``ValueError`` naming the field (or argument) and the value, so
that the command line can print it as it is.

- Bounded number types for pydantic fields (:data:`Dim`, :data:`Size`, :data:`Steps`, ...):
  ``ge=1`` where 0 makes no sense, and an upper bound where a larger value is surely a typo.
- :func:`check_names`: every name of a list is known and none repeats.
- :func:`int_shape`: an int or a sequence of positive integers as a tuple (``token_shape``,
  ``stride``, ...), rejecting floats such as ``2.5`` instead of truncating them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field

from relpos.core.registry import unknown_name

__all__ = [
    "Dim",
    "Fraction",
    "Jobs",
    "OrderedRange",
    "Rate",
    "Seed",
    "Size",
    "Steps",
    "check_names",
    "int_shape",
    "ordered",
    "positive_int",
]

T = TypeVar("T")

#: widths, heads, channels, token sizes: at least 1, at most 65,536
Dim = Annotated[int, Field(ge=1, le=65_536)]
#: counts of examples, classes, samples of an extent: at least 1, at most 10^9
Size = Annotated[int, Field(ge=1, le=1_000_000_000)]
#: optimiser steps, epochs, logging and checkpoint intervals: at least 1, at most 10^9
Steps = Annotated[int, Field(ge=1, le=1_000_000_000)]
#: worker processes: at least 1, at most 1,024
Jobs = Annotated[int, Field(ge=1, le=1024)]
#: a seed: torch and numpy accept it (0 .. 2^62)
Seed = Annotated[int, Field(ge=0, le=2**62)]
#: a share in [0, 1]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
#: a dropout rate in [0, 1) (1 would drop everything)
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


def ordered(value: tuple[float, float]) -> tuple[float, float]:
    """A ``(min, max)`` pair with ``min <= max`` (a ValueError names both otherwise)."""
    if value[0] > value[1]:
        raise ValueError(f"(min, max) range has min > max: {list(value)}")
    return value


#: a ``(min, max)`` pair of positive numbers with ``min <= max``
OrderedRange = Annotated[
    tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]], AfterValidator(ordered)
]


def check_names(values: Sequence[T], known: Sequence[T], what: str) -> list[T]:
    """``values`` as a list if every one is in ``known`` and none repeats.

    Raises:
        ValueError: ``unknown <what> 'x'; known: a, b, ...``, or ``<what>s repeat: 'x'``.
    """
    for v in values:
        if v not in known:
            raise unknown_name(what, v, map(str, known))
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(f"{what}s repeat: {', '.join(map(repr, dict.fromkeys(repeated)))}")
    return list(values)


def _whole(v: Any) -> int | None:
    """``v`` as an int when it is a whole number >= 1 (not a bool or a string), else None."""
    if isinstance(v, (bool, str, bytes)):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f) or f != int(f) or f < 1:
        return None
    return int(f)


def positive_int(value: Any, field: str) -> int:
    """``value`` as an int if it is a whole number >= 1 (``4``, ``4.0``, ``np.int64(4)``).

    Raises:
        ValueError: naming ``field`` and ``value`` (``0``, ``2.5``, ``True``, ``"4"``).
    """
    out = _whole(value)
    if out is None:
        raise ValueError(f"{field} must be a positive integer; got {value!r}")
    return out


def int_shape(value: Any, field: str, ndim: int | None = None) -> tuple[int, ...]:
    """``value`` (an int for every one of ``ndim`` axes, or one positive whole number per axis)
    as a tuple of ints.

    Raises:
        ValueError: naming ``field`` and ``value``: not whole numbers >= 1 (``2.5``, ``0``,
            ``"4"``), no entries, or not ``ndim`` entries.
    """
    entries: list[Any] | None = None
    if not isinstance(value, (str, bytes)):
        try:
            entries = list(value)
        except TypeError:  # a single number (for every axis)
            entries = [value] * (ndim or 1)
    ints = None if entries is None else [_whole(v) for v in entries]
    if ints is None or not ints or any(i is None for i in ints):
        raise ValueError(f"{field} must be a positive integer or one per axis; got {value!r}")
    if ndim is not None and len(ints) != ndim:
        raise ValueError(f"{field} {value!r} must have one entry per axis (D={ndim})")
    return tuple(int(i) for i in ints if i is not None)
