"""Argument checks shared by the public API: ints and real numbers, NumPy scalars included.

Every public entry point that takes a number goes through these, so the rules are the same
everywhere: Python ``int`` and NumPy integer scalars are ints; those and Python ``float`` and
NumPy floating scalars are real numbers; ``bool`` (Python or NumPy) is neither. A value of the
wrong type raises ``TypeError``, a value out of range ``ValueError``; both messages name the
argument and show the value. The checked value is returned as a plain Python ``int``/``float``.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np

__all__ = ["check_int", "check_real", "check_seed", "is_int"]


def is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    """Whether ``value`` is a Python or NumPy integer (``bool`` excluded)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _got(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(
    value: object, name: str, *, minimum: int | None = None, below: int | None = None
) -> int:
    """``value`` as a Python int; it must be an int with ``minimum <= value < below``.

    Raises:
        TypeError: Not a Python or NumPy integer (``bool`` and floats such as ``2.0`` included).
        ValueError: Out of range.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {_got(value)}")
    v = int(value)
    if (minimum is not None and v < minimum) or (below is not None and v >= below):
        if below is not None:
            low = "" if minimum is None else f"{minimum} <= "
            rule = f"an int with {low}{name} < {below}"
        elif minimum == 1:
            rule = "a positive int"
        else:
            rule = f"an int >= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {v}")
    return v


def check_real(
    value: object,
    name: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> float:
    """``value`` as a Python float; it must be a finite real number within the bounds.

    ``ge``/``gt`` is the lower bound (inclusive/exclusive), ``le`` the inclusive upper bound.

    Raises:
        TypeError: Not a Python or NumPy int or float (``bool`` and strings included).
        ValueError: Not finite (NaN, infinity) or out of range.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise TypeError(f"{name} must be a real number, got {_got(value)}")
    v = float(value)
    low_ok = (ge is None or v >= ge) and (gt is None or v > gt)
    high_ok = le is None or v <= le
    if math.isfinite(v) and low_ok and high_ok:
        return v
    low = ge if ge is not None else gt
    if low is not None and le is not None:
        rule = f"in {'[' if ge is not None else '('}{low:g}, {le:g}]"
    elif low is not None:
        rule = f"{'>=' if ge is not None else '>'} {low:g}"
    else:
        rule = "" if le is None else f"<= {le:g}"
    if not math.isfinite(v):
        rule = f"a finite number {rule}".rstrip()
    raise ValueError(f"{name} must be {rule}, got {value!r}")


def check_seed(seed: object, name: str = "seed") -> int | None:
    """A Gymnasium seed: ``None`` or an int >= 0 (NumPy integers included), as a Python int."""
    if seed is None:
        return None
    return check_int(seed, name, minimum=0)
