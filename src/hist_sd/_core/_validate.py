"""Argument checks shared by the networks and the public verbs (clear errors naming the argument)."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_int", "check_prob", "patch_record", "patch_sizes", "patch_text", "same_patches"]


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


def patch_sizes(value: Any) -> tuple[float, ...] | None:
    """Patch side(s) in µm as a tuple (one entry per scale of multi-scale features); ``None`` when unknown.

    Accepts what ``hs.pp.features`` records in ``params["patch_um"]``: a number, or a sequence / array of numbers.
    """
    if value is None:
        return None
    try:
        sizes = tuple(float(v) for v in (value.tolist() if hasattr(value, "tolist") else value))  # type: ignore[union-attr]
    except TypeError:  # a scalar (or a 0-d array, whose tolist() is a scalar)
        try:
            sizes = (float(value),)
        except (TypeError, ValueError):
            return None
    except ValueError:
        return None
    if not sizes or not all(math.isfinite(v) and v > 0 for v in sizes):
        return None
    return sizes


def patch_record(value: Any) -> float | list[float] | None:
    """``patch_um`` as a model stores it: one size as a float, the sizes of multi-scale features as a list."""
    sizes = patch_sizes(value)
    return None if sizes is None else sizes[0] if len(sizes) == 1 else list(sizes)


def same_patches(a: tuple[float, ...], b: tuple[float, ...], *, rtol: float = 0.01) -> bool:
    """Whether two patch-size records describe the same scales (sizes within ``rtol`` of each other, in order)."""
    return len(a) == len(b) and all(abs(x - y) <= rtol * y for x, y in zip(a, b, strict=True))


def patch_text(sizes: tuple[float, ...]) -> str:
    """``patch_um`` as an argument would spell it: ``100`` or ``(100, 200, 400)``."""
    return f"{sizes[0]:g}" if len(sizes) == 1 else "(" + ", ".join(f"{v:g}" for v in sizes) + ")"
