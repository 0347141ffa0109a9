"""Argument checks shared by the networks and the public verbs (clear errors naming the argument)."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int", "check_prob"]


def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Check that ``value`` is an integer ``>= minimum`` (not a bool) and return it as ``int``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an integer >= {minimum}{extra}, got {value!r}.")
    return int(value)


def check_prob(name: str, value: Any) -> float:
    """Check a probability (e.g. dropout) in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1), got {value!r}.")
    return float(value)
