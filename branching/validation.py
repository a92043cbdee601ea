"""Argument validation shared by ``branching`` and ``llm_bridge`` (public: ``branching.validation``).

Every check raises :class:`ValueError` whose message names the parameter, the value
received and the valid range, so that bad input never turns into a NaN, a hang or a
silent clip further down.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def integer(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an ``int`` in ``[low, high]``; bools and floats are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {_show(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in {_interval(low, high)}, got {value}")
    return value


def real(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` in the stated interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {_show(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (
        (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and (value > high or (high_open and value == high)))
    ):
        raise ValueError(
            f"{name} must lie in {_interval(low, high, low_open, high_open)}, got {value!r}"
        )
    return value


def probability(name: str, value, *, open_low: bool = False, open_high: bool = False) -> float:
    """A probability in [0, 1] (either end may be excluded)."""
    return real(name, value, low=0.0, high=1.0, low_open=open_low, high_open=open_high)


def array(
    name: str,
    value,
    *,
    ndim: int | None = None,
    shape: tuple | None = None,
    low: float | None = None,
    high: float | None = None,
    allow_neg_inf: bool = False,
) -> np.ndarray:
    """A float64 array with all entries finite (or ``-inf`` when allowed) and in range.

    ``shape`` may contain ``None`` for a free axis length.
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers, got {_show(value)}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(arr.shape, shape)
        ):
            want = "(" + ", ".join("any" if w is None else str(w) for w in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN at index {_first(np.isnan(arr))}")
    bad_inf = np.isposinf(arr) | (np.isneginf(arr) if not allow_neg_inf else False)
    if np.any(bad_inf):
        raise ValueError(f"{name} contains an infinite value at index {_first(bad_inf)}")
    if low is not None and np.any(arr < low):
        i = _first(arr < low)
        raise ValueError(f"{name} must be >= {low}; entry {i} is {arr[i]!r}")
    if high is not None and np.any(arr > high):
        i = _first(arr > high)
        raise ValueError(f"{name} must be <= {high}; entry {i} is {arr[i]!r}")
    return arr


def choice(name: str, value, options) -> str:
    """One of a fixed set of strings."""
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {_show(value)}")
    return value


def _first(mask: np.ndarray):
    idx = np.argwhere(mask)[0]
    return tuple(int(i) for i in idx) if len(idx) != 1 else int(idx[0])


def _interval(low, high, low_open=False, high_open=False) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}" if isinstance(low, float) else str(low)
    hi = "inf" if high is None else f"{high:g}" if isinstance(high, float) else str(high)
    return f"{left}{lo}, {hi}{right}"
