r"""Phase-transition detection from exact log-probabilities of sampled outputs.

Given, for every point :math:`\theta_k` of a grid of a control parameter, ``S`` outputs
:math:`x^{(k,s)}\sim P(\cdot\mid\theta_k)` and their exact log-probabilities at the
neighbouring grid points, this module measures how fast the output law changes along the
grid (the "g-dissimilarity" indicators of [1]_, from the divergence of predictive model
output [2]_), with standard errors, locates the peak of that
change with a bootstrap uncertainty and a significance, and provides the related Fisher
information and prediction-based indicators.  Any source of log-probabilities works: a
toy chain (:mod:`branching.toys`), the theory's exact output law, or a real model.

Input layout
------------
The canonical array is *banded*: ``logp`` of shape (K, S, 2W+1) with
``logp[k, s, W + d] = log P(x^{(k,s)} | grid[k+d])`` for ``d = -W..W``.  Entries with
``k+d`` outside the grid are ignored (they may be NaN).  Every entry a window uses must be
finite or ``-inf`` (probability zero, legal for ``d != 0``); the ``d = 0`` entry of every
sample must be finite.  A window of ``L`` points needs ``W >= 2L-1``.  :func:`band`
converts the full layout ``logp_full[k, s, k']`` (K, S, K) to this one.

Windows and the indicator
-------------------------
For a split ``j = 0..K-2L`` the left window is :math:`\sigma_L=\{\theta_j..\theta_{j+L-1}\}`
and the right window :math:`\sigma_R=\{\theta_{j+L}..\theta_{j+2L-1}\}`; their mixtures are
:math:`P_L=\frac1L\sum_{k\in\sigma_L}P(\cdot\mid\theta_k)` and likewise :math:`P_R`.  The
Bayes-optimal probability that an output came from the left window is
:math:`p_L(x)=P_L(x)/(P_L(x)+P_R(x))=\sigma(\ell_L-\ell_R)` with
:math:`\ell_{L}(x)=\log\sum_{k\in\sigma_L}P(x\mid\theta_k)` (a ``logsumexp`` of the stored
log-probabilities -- no sequence probability is ever exponentiated), and the
g-dissimilarity is

.. math::  D_g=\tfrac12\,\mathbb E_{P_L}[g(p_L)]+\tfrac12\,\mathbb E_{P_R}[g(1-p_L)].

============  ===========================  ==================================================  =================================================
measure       :math:`g(p)`                 per-sample term, :math:`r=\ell_{own}-\ell_{other}`  exact form
============  ===========================  ==================================================  =================================================
``"linear"``  :math:`2p-1`                 :math:`\tanh(r/2)`                                  :math:`\tfrac12\sum_x\frac{(P_L-P_R)^2}{P_L+P_R}`
``"tv"``      :math:`\mathrm{sign}(2p-1)`  :math:`\mathrm{sign}(r)`                            :math:`\tfrac12\sum_x|P_L-P_R|`
``"js"``      :math:`1+\log_2 p`           :math:`1+\log_2\sigma(r)` (``logsigmoid``)          Jensen-Shannon divergence in bits
============  ===========================  ==================================================  =================================================

:math:`r` is finite or :math:`+\infty` (when the other window gives the sample probability
zero), so no term is ever NaN and no sample is dropped.

Estimator and standard error.  The per-sample terms are averaged within each of the
:math:`2L` grid points of the split and the :math:`2L` means averaged,
:math:`\hat I=\frac1{2L}\sum_k\bar t_k`; equal sample counts per point make this an unbiased
estimate of :math:`D_g`.  Points are sampled independently, so
:math:`\widehat{SE}=\frac1{2L}\sqrt{\sum_k\hat\sigma_k^2/S}` with :math:`\hat\sigma_k^2` the
``ddof=1`` variance of the terms at point ``k``.

Position and normalisation.  The value of split ``j`` is placed at the boundary between the
windows, the midpoint of :math:`\theta_{j+L-1}` and :math:`\theta_{j+L}` -- the same rule for
every ``L``.  Its local grid spacing is :math:`h_j=(c_R-c_L)/L`, with :math:`c_{L,R}` the mean
parameter of each window: for a uniform grid :math:`h_j` is the spacing and
:math:`c_R-c_L=Lh`; for a non-uniform grid :math:`c_R-c_L` is the separation that enters the
small-window expansion below.  ``normalized = value / (L h_j)^2``.  With ``log_grid=True``
positions, spacings and windows' centres are computed from :math:`\log\theta` (the position
is then the geometric mean of the two boundary points), as suits log-spaced temperatures.

Small-window limit (Fisher information).  In a smooth region
:math:`P_R-P_L=(c_R-c_L)\,\partial_\theta P+O(h^3)` and
:math:`\tfrac12(P_L+P_R)=P+O(h^2)`, so for a generator :math:`f_g` twice differentiable at 1

.. math::  D_g\approx\frac{f_g''(1)}{2}\,\mathcal F(\theta^*)\,(Lh)^2, \qquad
           \mathcal F(\theta)=\mathbb E_{P(\cdot\mid\theta)}\bigl[(\partial_\theta\log P)^2\bigr],

with :math:`f_g''(1)/2 = 1/4` for the linear measure and :math:`1/(8\ln 2)` for JS in bits
(:func:`small_shift_coefficient`): the normalised curve tends to that multiple of the
Fisher information.  TV is not smooth at 1 and is first order,
:math:`D_{TV}\approx\tfrac{Lh}{2}\,\mathbb E|\partial_\theta\log P|`.  With ``log_grid`` the
Fisher information is the one with respect to :math:`\log\theta`.

Peaks.  :func:`find_peak` locates the maximum of a curve (parabolic interpolation through
the three highest points), its uncertainty by a bootstrap over samples within each grid
point, and its significance against the zero-change null by relabelling samples within
windows (see its Notes).

References
----------
.. [1] J. Arnold, F. Holtorf, F. Schäfer, N. Lörch, "Phase Transitions in the Output
   Distribution of Large Language Models", arXiv:2405.17088 (2024).
.. [2] F. Schäfer, N. Lörch, "Vector field divergence of predictive model output as
   indication of phase transitions", Phys. Rev. E 99, 062107 (2019).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from . import validation as check
from .seeding import seed_sequence

__all__ = [
    "MEASURES",
    "IndicatorCurve",
    "Peak",
    "FisherCurve",
    "PredictionCurve",
    "band",
    "indicator",
    "indicators",
    "exact_indicator",
    "find_peak",
    "fisher_information",
    "small_shift_coefficient",
    "prediction_indicator",
    "exact_prediction_indicator",
]

log = logging.getLogger(__name__)

MEASURES = ("linear", "tv", "js")
_LN2 = math.log(2.0)
_NORMALIZATION_TOL = 1e-8


# =========================================================================== numerics
def _logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(x)))`` along ``axis``; ``-inf`` where every entry is ``-inf``."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis)


def _own_term(r: np.ndarray, measure: str) -> np.ndarray:
    """``g(sigma(r))``: the term of a sample whose own-minus-other log-ratio is ``r``."""
    if measure == "linear":
        return np.tanh(0.5 * r)
    if measure == "tv":
        return np.sign(r)
    return 1.0 - np.logaddexp(0.0, -r) / _LN2


def _log_separation_kernel(r: np.ndarray, measure: str) -> np.ndarray:
    r"""``log h_g(r)`` with :math:`D_g=\tfrac12\sum_x(P_L+P_R)\,h_g(r(x))`, :math:`h_g\ge0`.

    With :math:`a=\sigma(r)`: :math:`h_g=a\,g(a)+(1-a)\,g(1-a)`, i.e. :math:`\tanh^2(r/2)`
    (linear), :math:`|\tanh(r/2)|` (TV) and :math:`1-H_2(a)` (JS, bits).  The JS kernel
    uses :math:`\tfrac12\bigl(r\tanh\tfrac r2+\log(1-\tanh^2\tfrac r2)\bigr)` nats for
    :math:`|r|<1` (no cancellation) and :math:`\log2-a'|r|-\log(1+e^{-|r|})` with
    :math:`a'=\sigma(-|r|)` otherwise.
    """
    a = np.abs(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "linear":
            return 2.0 * np.log(np.tanh(0.5 * a))
        if measure == "tv":
            return np.log(np.tanh(0.5 * a))
        t = np.tanh(0.5 * a)
        small = 0.5 * (a * t + np.log1p(-t * t))
        e = np.exp(-a)
        tail = np.where(e == 0.0, 0.0, a * e / (1.0 + e))
        large = _LN2 - tail - np.log1p(e)
        nats = np.where(a < 1.0, small, large)
        return np.log(np.maximum(nats, 0.0) / _LN2)


# =========================================================================== validation
def _grid(grid, K: int | None = None, *, log_grid: bool = False) -> np.ndarray:
    grid = check.array("grid", grid, ndim=1)
    if K is not None and grid.size != K:
        raise ValueError(f"grid must have one value per grid point (K = {K}), got {grid.size} values")
    if grid.size < 2:
        raise ValueError(f"grid must have at least 2 points, got {grid.size}")
    step = np.diff(grid)
    if not (np.all(step > 0) or np.all(step < 0)):
        bad = int(np.argmax(step <= 0) if step[0] > 0 else np.argmax(step >= 0))
        raise ValueError(
            "grid must be strictly monotone (increasing or decreasing); "
            f"grid[{bad}] = {grid[bad]!r}, grid[{bad + 1}] = {grid[bad + 1]!r}"
        )
    if log_grid and np.any(grid <= 0):
        raise ValueError(f"grid must be > 0 when log_grid=True, got {grid[grid <= 0][0]!r}")
    return grid


def _measure(measure) -> str:
    return check.choice("measure", measure, MEASURES)


def _window(L, K: int) -> int:
    L = check.integer("L", L, low=1)
    if 2 * L > K:
        raise ValueError(
            f"L must be in [1, {K // 2}] for a grid of K = {K} points (two windows of L points), got {L}"
        )
    return L


def _logp_array(logp, layout: str, L: int) -> tuple[np.ndarray, int]:
    """The banded array and its half-width W (converting a full layout to W = 2L-1)."""
    check.choice("layout", layout, ("banded", "full"))
    try:
        arr = np.asarray(logp, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"logp must be an array of real numbers, got {type(logp).__name__}") from None
    if arr.ndim != 3:
        raise ValueError(f"logp must be 3-dimensional (K, S, 2W+1) or (K, S, K), got shape {arr.shape}")
    if layout == "full":
        return band(arr, 2 * L - 1), 2 * L - 1
    if arr.shape[2] % 2 != 1:
        raise ValueError(
            f"logp's last axis must have odd length 2W+1 (banded layout; pass layout='full' for "
            f"(K, S, K)), got shape {arr.shape}"
        )
    return arr, arr.shape[2] // 2


#: Largest log-probability accepted above 0, for the round-off of sums of log-softmax values.
LOGP_ROUNDOFF = 1e-6


def _check_inputs(logp, grid, L, layout, log_grid):
    grid_arr = _grid(grid, log_grid=log_grid)
    K = grid_arr.size
    L = _window(L, K)
    arr, W = _logp_array(logp, layout, L)
    if arr.shape[0] != K:
        raise ValueError(f"logp must have K = len(grid) = {K} rows, got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"logp must hold S >= 2 samples per grid point, got shape {arr.shape}")
    if W < 2 * L - 1:
        raise ValueError(
            f"logp's band half-width W = {W} is too small for L = {L}: need W >= 2L-1 = {2 * L - 1}"
        )
    with np.errstate(invalid="ignore"):
        positive = arr > LOGP_ROUNDOFF
    if positive.any():
        k, s, j = np.argwhere(positive)[0]
        raise ValueError(
            f"logp holds log-probabilities above 0 (beyond the round-off tolerance "
            f"{LOGP_ROUNDOFF:g}): logp[{k}, {s}, {j}] = {arr[k, s, j]!r}; every entry must be "
            "<= 0 (a probability is at most 1)"
        )
    centre = arr[:, :, W]
    if not np.all(np.isfinite(centre)):
        k, s = np.argwhere(~np.isfinite(centre))[0]
        raise ValueError(
            f"logp[{k}, {s}, {W}] (sample {s} drawn at grid[{k}], scored at its own grid point) "
            f"must be finite, got {centre[k, s]!r}"
        )
    return arr, grid_arr, L, W


# =========================================================================== layout
def band(logp_full, W: int) -> np.ndarray:
    """Convert ``logp_full[k, s, k']`` (K, S, K) to the banded layout (K, S, 2W+1).

    Parameters
    ----------
    logp_full : array of shape (K, S, K)
        Log-probability of sample ``s`` drawn at grid point ``k``, scored at ``k'``.
    W : int
        Half-width of the band, ``W >= 0``.

    Returns
    -------
    ndarray of shape (K, S, 2W+1)
        ``out[k, s, W + d] = logp_full[k, s, k + d]``; NaN where ``k + d`` is off the grid.

    Examples
    --------
    >>> import numpy as np
    >>> full = np.arange(8.0).reshape(2, 1, 4)[:, :, :2]   # K=2, S=1
    >>> band(full, 1)[:, 0]
    array([[nan,  0.,  1.],
           [ 4.,  5., nan]])
    """
    W = check.integer("W", W, low=0)
    arr = np.asarray(logp_full, dtype=float)
    if arr.ndim != 3 or arr.shape[2] != arr.shape[0]:
        raise ValueError(f"logp_full must have shape (K, S, K), got {np.shape(logp_full)}")
    K, S, _ = arr.shape
    out = np.full((K, S, 2 * W + 1), np.nan)
    for d in range(-min(W, K - 1), min(W, K - 1) + 1):
        lo, hi = max(0, -d), min(K, K - d)
        rows = np.arange(lo, hi)
        out[rows, :, W + d] = arr[rows, :, rows + d]
    return out


def _log_ratios(logp: np.ndarray, L: int, W: int) -> np.ndarray:
    r"""Own-minus-other window log-likelihood ratio of every sample of every split.

    Returns ``r`` of shape (J, 2L, S), ``J = K-2L+1``: ``r[j, i, s]`` belongs to sample ``s``
    of grid point ``j+i`` (``i < L``: left window).  For that sample the window's grid point
    ``j+m`` sits at band column ``W - i + m`` independently of ``j``, so every offset ``i`` is
    one block of the band-major copy of ``logp``.
    """
    K, S, _ = logp.shape
    J = K - 2 * L + 1
    by_offset = np.ascontiguousarray(np.moveaxis(logp, 2, 0))  # (2W+1, K, S)
    out = np.empty((J, 2 * L, S))
    for i in range(2 * L):
        block = by_offset[W - i:W - i + 2 * L, i:i + J]  # (2L, J, S); row m <-> grid j+m
        bad = np.isnan(block) | (block == np.inf)
        if bad.any():
            m, j, s = np.argwhere(bad)[0]
            k, col = j + i, W - i + m
            raise ValueError(
                f"logp[{k}, {s}, {col}] (sample {s} drawn at grid[{k}], scored at grid[{k + col - W}]) "
                f"is {block[m, j, s]!r}; entries used by windows of L = {L} must be finite or -inf"
            )
        left = _logsumexp(block[:L], axis=0)
        right = _logsumexp(block[L:], axis=0)
        out[:, i, :] = (left - right) if i < L else (right - left)
    return out


def _placement(grid: np.ndarray, L: int, log_grid: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positions (boundary midpoints) and window separations ``c_R - c_L`` of every split."""
    x = np.log(grid) if log_grid else grid
    J = grid.size - 2 * L + 1
    csum = np.concatenate([[0.0], np.cumsum(x)])
    j = np.arange(J)
    c_left = (csum[j + L] - csum[j]) / L
    c_right = (csum[j + 2 * L] - csum[j + L]) / L
    mid = 0.5 * (x[j + L - 1] + x[j + L])
    position = np.exp(mid) if log_grid else mid
    return position, np.abs(c_right - c_left)


# =========================================================================== results
def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False, repr=False)
class IndicatorCurve:
    r"""A g-dissimilarity indicator along a parameter grid.

    Attributes
    ----------
    grid : ndarray (K,)
        The parameter grid.
    L : int
        Window size (grid points per side).
    measure : str
        ``"linear"``, ``"tv"`` or ``"js"`` (bits).
    n_samples : int or None
        Samples per grid point ``S``; ``None`` for an exact curve.
    position : ndarray (K-2L+1,)
        Boundary between the windows, midpoint of ``grid[j+L-1]`` and ``grid[j+L]``
        (geometric mean with ``log_grid``).
    value, se : ndarray (K-2L+1,)
        Indicator and its standard error (zero for an exact curve).
    spacing : ndarray (K-2L+1,)
        Local grid spacing :math:`h_j=(c_R-c_L)/L` (in :math:`\log\theta` with ``log_grid``).
    normalized, normalized_se : ndarray (K-2L+1,)
        ``value / (L h_j)^2`` and its standard error.
    log_grid : bool
        Whether spacing and position are measured in :math:`\log\theta`.
    """

    grid: np.ndarray
    L: int
    measure: str
    n_samples: int | None
    position: np.ndarray
    value: np.ndarray
    se: np.ndarray
    spacing: np.ndarray
    normalized: np.ndarray
    normalized_se: np.ndarray
    log_grid: bool = False
    log_ratio: np.ndarray | None = field(default=None, repr=False)
    """Per-sample own-minus-other log-ratios, shape (K-2L+1, 2L, S); kept for :meth:`peak`."""

    @property
    def exact(self) -> bool:
        """True for a curve computed from the full law rather than from samples."""
        return self.n_samples is None

    def peak(self, **kwargs) -> "Peak":
        """:func:`find_peak` of this curve."""
        return find_peak(self, **kwargs)

    def to_pandas(self):
        """Tidy table: one row per split, with the windows' end points and the parameters."""
        import pandas as pd

        J = self.value.size
        return pd.DataFrame({
            "split": np.arange(J),
            "position": self.position,
            "window_start": self.grid[:J],
            "window_end": self.grid[2 * self.L - 1:],
            "value": self.value,
            "se": self.se,
            "spacing": self.spacing,
            "normalized": self.normalized,
            "normalized_se": self.normalized_se,
            "measure": self.measure,
            "L": self.L,
            "n_samples": self.n_samples if self.n_samples is not None else pd.NA,
            "log_grid": self.log_grid,
        })

    def __repr__(self):
        j = int(np.argmax(self.normalized))
        samples = "exact" if self.exact else f"n_samples={self.n_samples}"
        at = f"max {self.value[j]:.4g}"
        if not self.exact:
            at += f" ± {self.se[j]:.2g}"
        return (
            f"IndicatorCurve(measure={self.measure!r}, L={self.L}, {samples}, "
            f"K={self.grid.size}, splits={self.value.size}, {at} at {self.position[j]:.4g})"
        )


def _curve(grid, L, measure, S, value, se, log_grid, log_ratio=None) -> IndicatorCurve:
    position, separation = _placement(grid, L, log_grid)
    scale = 1.0 / separation**2
    if log_ratio is not None:
        log_ratio.setflags(write=False)
    return IndicatorCurve(
        grid=_frozen(grid), L=L, measure=measure, n_samples=S, position=_frozen(position),
        value=_frozen(value), se=_frozen(se), spacing=_frozen(separation / L),
        normalized=_frozen(value * scale), normalized_se=_frozen(se * scale),
        log_grid=bool(log_grid), log_ratio=log_ratio,
    )


def _curve_from_ratios(r, grid, L, measure, log_grid) -> IndicatorCurve:
    terms = _own_term(r, measure)  # (J, 2L, S)
    S = r.shape[2]
    value = terms.mean(axis=2).mean(axis=1)
    se = np.sqrt(terms.var(axis=2, ddof=1).sum(axis=1) / S) / (2 * L)
    return _curve(grid, L, measure, S, value, se, log_grid, r)


# =========================================================================== indicators
def indicator(logp, grid, *, L: int = 1, measure: str = "linear", layout: str = "banded",
              log_grid: bool = False) -> IndicatorCurve:
    r"""Monte Carlo g-dissimilarity between adjacent windows of ``L`` grid points.

    Parameters
    ----------
    logp : array of shape (K, S, 2W+1), or (K, S, K) with ``layout="full"``
        Log-probabilities of the samples at the neighbouring grid points (module
        docstring); ``W >= 2L-1``, ``S >= 2``.
    grid : array of shape (K,)
        Strictly monotone parameter values.
    L : int
        Grid points per window, ``1 <= L <= K/2``.
    measure : {"linear", "tv", "js"}
        The dissimilarity; ``"js"`` is in bits.
    layout : {"banded", "full"}
        Layout of ``logp``.
    log_grid : bool
        Measure positions and spacings in :math:`\log\theta` (positive grids only).

    Returns
    -------
    IndicatorCurve
        ``K - 2L + 1`` values with standard errors, positions and the normalised curve.

    Raises
    ------
    ValueError
        Mismatched shapes, a grid that is not strictly monotone, ``L`` too large for the
        grid or the band, NaN or ``+inf`` in a used entry, a non-finite ``d = 0`` entry.

    Notes
    -----
    :math:`\hat I_j=\frac1{2L}\sum_{k\in\sigma_L\cup\sigma_R}\frac1S\sum_s g\bigl(p_{own}
    (x^{(k,s)})\bigr)` and :math:`\widehat{SE}_j=\frac1{2L}\sqrt{\sum_k\hat\sigma_k^2/S}`
    (module docstring).  The estimator is unbiased when the samples are drawn from exactly
    the law that is scored.

    Examples
    --------
    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=4, N=3, rng=1, control="tilt")
    >>> grid = np.linspace(-1.0, 1.0, 8)
    >>> curve = indicator(toy.logp_banded(grid, S=500, W=1, rng=2), grid)
    >>> curve.value.shape
    (7,)
    """
    measure = _measure(measure)
    arr, grid, L, W = _check_inputs(logp, grid, L, layout, log_grid)
    return _curve_from_ratios(_log_ratios(arr, L, W), grid, L, measure, log_grid)


def indicators(logp, grid, *, L: int = 1, measures=MEASURES, layout: str = "banded",
               log_grid: bool = False) -> dict[str, IndicatorCurve]:
    r""":func:`indicator` for several measures from one pass over ``logp``.

    Returns a dict ``{measure: IndicatorCurve}`` in the order of ``measures``.

    Parameters
    ----------
    logp : array of shape (K, S, 2W+1), or (K, S, K) with ``layout="full"``
        Log-probabilities of the samples at the neighbouring grid points (module
        docstring); ``W >= 2L-1``, ``S >= 2``.
    grid : array of shape (K,)
        Strictly monotone parameter values.
    L : int
        Grid points per window, ``1 <= L <= K/2``.
    measures : sequence of {"linear", "tv", "js"}
        The dissimilarities to compute (default: all three); non-empty.
    layout : {"banded", "full"}
        Layout of ``logp``.
    log_grid : bool
        Measure positions and spacings in :math:`\log\theta` (positive grids only).

    Returns
    -------
    dict of str to IndicatorCurve
        One curve per measure, keyed by the measure's name, each equal to
        :func:`indicator` of that measure; the window log-ratios are computed once.

    Raises
    ------
    ValueError
        An empty ``measures`` (or a single string), an unknown measure, or any input that
        :func:`indicator` refuses.

    Examples
    --------
    >>> import numpy as np
    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=4, N=3, rng=1, control="tilt")
    >>> grid = np.linspace(-1.0, 1.0, 8)
    >>> logp = toy.logp_banded(grid, S=200, W=1, rng=2)
    >>> curves = indicators(logp, grid, measures=("linear", "js"))
    >>> list(curves), curves["js"].value.shape
    (['linear', 'js'], (7,))
    >>> np.array_equal(curves["js"].value, indicator(logp, grid, measure="js").value)
    True
    """
    if isinstance(measures, str) or len(measures) == 0:
        raise ValueError(f"measures must be a non-empty sequence of {list(MEASURES)}, got {measures!r}")
    measures = [_measure(m) for m in measures]
    arr, grid, L, W = _check_inputs(logp, grid, L, layout, log_grid)
    r = _log_ratios(arr, L, W)
    return {m: _curve_from_ratios(r, grid, L, m, log_grid) for m in measures}


def exact_indicator(log_probs, grid, *, L: int = 1, measure: str = "linear",
                    log_grid: bool = False) -> IndicatorCurve:
    r"""Exact g-dissimilarity between window mixtures of fully enumerated laws.

    Parameters
    ----------
    log_probs : array of shape (K, X)
        ``log_probs[k, x] = log P(x | grid[k])`` over a whole (finite) support; entries
        finite or ``-inf``; every row must be normalised (``logsumexp`` within 1e-8 of 0).
    grid, L, measure, log_grid
        As in :func:`indicator`.

    Returns
    -------
    IndicatorCurve
        With ``se = 0`` and ``n_samples = None``.

    Notes
    -----
    :math:`D_g=\tfrac12\sum_x(P_L+P_R)\,h_g(r)`, :math:`r=\log P_L-\log P_R`, with the
    non-negative kernels :math:`h_g` of the module table (:math:`\tanh^2(r/2)`,
    :math:`|\tanh(r/2)|`, :math:`1-H_2(\sigma(r))`), evaluated as one ``logsumexp`` of
    :math:`\log(P_L+P_R)+\log h_g`: nothing is exponentiated before the final sum.

    Examples
    --------
    >>> table = np.log([[0.5, 0.5], [0.9, 0.1]])
    >>> round(float(exact_indicator(table, [0.0, 1.0], measure="tv").value[0]), 12)
    0.4
    """
    measure = _measure(measure)
    try:
        table = np.asarray(log_probs, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"log_probs must be an array of real numbers, got {type(log_probs).__name__}"
        ) from None
    if table.ndim != 2:
        raise ValueError(f"log_probs must have shape (K, X), got {table.shape}")
    table = check.array("log_probs", table, allow_neg_inf=True)
    grid = _grid(grid, table.shape[0], log_grid=log_grid)
    L = _window(L, grid.size)
    totals = _logsumexp(table, axis=1)
    if np.any(np.abs(totals) > _NORMALIZATION_TOL):
        k = int(np.argmax(np.abs(totals)))
        raise ValueError(
            f"log_probs rows must be normalised (logsumexp = 0 within {_NORMALIZATION_TOL:g}); "
            f"row {k} has logsumexp {totals[k]!r}"
        )
    J = grid.size - 2 * L + 1
    value = np.empty(J)
    for j in range(J):
        left = _logsumexp(table[j:j + L], axis=0) - math.log(L)
        right = _logsumexp(table[j + L:j + 2 * L], axis=0) - math.log(L)
        support = np.isfinite(left) | np.isfinite(right)
        lo, ro = left[support], right[support]
        terms = np.logaddexp(lo, ro) + _log_separation_kernel(lo - ro, measure)
        value[j] = 0.5 * math.exp(_logsumexp(terms)) if terms.size else 0.0
    return _curve(grid, L, measure, None, value, np.zeros(J), log_grid)


# =========================================================================== peaks
@dataclass(frozen=True)
class Peak:
    """The maximum of an indicator curve, with its uncertainty and significance.

    Attributes
    ----------
    measure, L, statistic
        The curve's measure and window size; ``statistic`` is ``"normalized"`` or
        ``"value"`` (the curve that was maximised).
    index : int
        Split index of the largest value.
    location : float
        Peak position in parameter units (parabolic interpolation; the boundary position
        of ``index`` when it is at an end of the curve).
    location_se : float
        Bootstrap standard deviation of the location (0 for an exact curve).
    location_ci : tuple of float
        Bootstrap percentile interval at ``level`` (a point for an exact curve).
    height, height_se : float
        The statistic at ``index`` and its standard error.
    z : float or None
        ``height / height_se`` (``inf`` for a positive height with zero standard error);
        ``None`` for an exact curve.
    p_value : float or None
        Permutation p-value of the curve's maximum under the zero-change null;
        ``None`` for an exact curve.
    at_edge : bool
        The maximum is at the first or last split (the location is then a bound).
    n_boot, n_perm, level
        Replicates and interval level used.
    """

    measure: str
    L: int
    statistic: str
    index: int
    location: float
    location_se: float
    location_ci: tuple
    height: float
    height_se: float
    z: float | None
    p_value: float | None
    at_edge: bool
    n_boot: int
    n_perm: int
    level: float

    def to_pandas(self):
        """One-row table of the peak."""
        import pandas as pd

        row = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "location_ci"}
        row["ci_low"], row["ci_high"] = self.location_ci
        return pd.DataFrame([row])


def _peak_x(stat: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and vertex of the parabola through the three points around it (rows of ``stat``).

    ``x`` are the split positions in the interpolation coordinate; the vertex is clipped to
    the two neighbours' positions and falls back to the argmax's position at the ends or
    when the three points are not concave.
    """
    stat = np.atleast_2d(stat)
    J = stat.shape[1]
    j = np.argmax(stat, axis=1)
    loc = x[j].copy()
    inner = (j > 0) & (j < J - 1)
    if np.any(inner):
        jj = j[inner]
        y0, y1, y2 = stat[inner, jj - 1], stat[inner, jj], stat[inner, jj + 1]
        u0, u2 = x[jj - 1] - x[jj], x[jj + 1] - x[jj]
        s0, s2 = (y0 - y1) / u0, (y2 - y1) / u2
        a = (s0 - s2) / (u0 - u2)
        b = s0 - a * u0
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(a < 0, -b / (2.0 * a), 0.0)
        vertex = np.clip(vertex, np.minimum(u0, u2), np.maximum(u0, u2))
        loc[inner] = x[jj] + vertex
    return j, loc


def find_peak(
    curve_or_logp, grid=None, *, L: int = 1, measure: str = "linear", layout: str = "banded",
    log_grid: bool = False, statistic: str = "normalized", n_boot: int = 200, n_perm: int = 200,
    level: float = 0.95, rng=None,
) -> Peak:
    r"""Locate the peak of an indicator curve, with bootstrap uncertainty and significance.

    Parameters
    ----------
    curve_or_logp : IndicatorCurve or array
        A curve from :func:`indicator` / :func:`exact_indicator`, or a ``logp`` array, in
        which case ``grid``, ``L``, ``measure``, ``layout`` and ``log_grid`` are passed to
        :func:`indicator`.
    grid : array, optional
        Required with a ``logp`` array.
    L : int
        Grid points per window (``logp`` input only).
    measure : {"linear", "tv", "js"}
        The dissimilarity (``logp`` input only).
    layout : {"banded", "full"}
        Layout of ``logp`` (``logp`` input only).
    log_grid : bool
        Measure positions in :math:`\log\theta` (``logp`` input only; a curve carries its
        own setting).
    statistic : {"normalized", "value"}
        Maximise the normalised curve (default; the same as ``value`` on a uniform grid)
        or the raw value.
    n_boot : int
        Bootstrap replicates for the location, ``>= 2``.
    n_perm : int
        Relabelling replicates for the p-value, ``>= 1``.
    level : float
        Level of the percentile interval, in (0, 1).
    rng : None, int, SeedSequence or Generator
        Randomness of the bootstrap and the relabelling.

    Returns
    -------
    Peak
        Location, height and their uncertainties; for an exact curve (or one without
        per-sample log-ratios) the interval is a point and ``z`` and ``p_value`` are
        ``None``.

    Raises
    ------
    ValueError
        Bad ``statistic``, ``n_boot``, ``n_perm`` or ``level``; a ``logp`` array without
        ``grid``, or any input that :func:`indicator` refuses.

    Notes
    -----
    *Location.*  The maximum split and the vertex of the parabola through it and its two
    neighbours (in :math:`\log\theta` with ``log_grid``).  Bootstrap: the ``S`` samples of
    every grid point are resampled with replacement (the same resample serves every split
    that uses the point), the curve recomputed and its peak located; ``location_se`` is the
    standard deviation of the replicate locations and ``location_ci`` their percentile
    interval.

    *Significance.*  ``z = height / height_se`` is the Wald statistic of the peak split
    against :math:`D_g = 0`.  The p-value tests the zero-change null "the law is the same at
    every grid point of a window": under it the :math:`2LS` samples of a window are
    exchangeable, and each keeps its log-probabilities at all :math:`2L` window points, so
    reassigning them at random to the :math:`2L` points (``S`` each) draws from the exact
    null distribution of that split's indicator.  The p-value compares the observed maximum
    of the curve with the maxima of curves whose splits are relabelled independently,
    ``(1 + #{max_perm >= max_obs}) / (1 + n_perm)``.  Independent relabelling ignores the
    positive correlation between overlapping splits, which makes the null maximum
    stochastically larger, i.e. the test conservative.  With exact log-probabilities a
    strictly unchanged law gives identical log-ratios of zero, a flat zero curve and
    ``p = 1``.

    Examples
    --------
    A toy whose logits switch from one set to another around :math:`\theta = 0.3`:

    >>> import numpy as np
    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=3, N=4, rng=0, control="switch", center=0.3, sharpness=10.0)
    >>> grid = np.linspace(-0.5, 1.0, 16)
    >>> peak = find_peak(toy.logp_banded(grid, S=300, W=1, rng=1), grid, n_boot=50, n_perm=50, rng=2)
    >>> round(peak.location, 2), peak.location_ci[0] < 0.3 < peak.location_ci[1], peak.p_value < 0.05
    (0.29, True, True)
    >>> exact = find_peak(exact_indicator(toy.log_prob_table(grid), grid))
    >>> round(exact.location, 2), exact.p_value
    (0.3, None)
    """
    statistic = check.choice("statistic", statistic, ("normalized", "value"))
    n_boot = check.integer("n_boot", n_boot, low=2)
    n_perm = check.integer("n_perm", n_perm, low=1)
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    if isinstance(curve_or_logp, IndicatorCurve):
        curve = curve_or_logp
    else:
        if grid is None:
            raise ValueError("grid must be given when find_peak receives a logp array")
        curve = indicator(curve_or_logp, grid, L=L, measure=measure, layout=layout, log_grid=log_grid)
    stat = curve.normalized if statistic == "normalized" else curve.value
    stat_se = curve.normalized_se if statistic == "normalized" else curve.se
    if statistic == "normalized":
        scale = 1.0 / (curve.L * curve.spacing) ** 2
    else:
        scale = np.ones_like(curve.value)
    x = np.log(curve.position) if curve.log_grid else curve.position
    to_param = np.exp if curve.log_grid else (lambda v: v)
    j_arr, loc_arr = _peak_x(stat, x)
    j, location = int(j_arr[0]), float(to_param(loc_arr[0]))
    J = stat.size
    common = dict(
        measure=curve.measure, L=curve.L, statistic=statistic, index=j, location=location,
        height=float(stat[j]), height_se=float(stat_se[j]), at_edge=bool(j in (0, J - 1)),
        n_boot=n_boot, n_perm=n_perm, level=level,
    )
    if curve.exact or curve.log_ratio is None:
        return Peak(location_se=0.0, location_ci=(location, location), z=None, p_value=None, **common)

    gen = np.random.default_rng(seed_sequence(rng))
    boot_rng, perm_rng = gen.spawn(2)
    terms = _own_term(curve.log_ratio, curve.measure)
    boot = _bootstrap_locations(terms, scale, x, n_boot, boot_rng)
    boot = to_param(boot)
    alpha = 0.5 * (1.0 - level)
    ci = tuple(float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    null_max = _relabelled_maxima(curve.log_ratio, curve.L, curve.measure, scale, n_perm, perm_rng)
    p_value = (1.0 + np.count_nonzero(null_max >= stat.max())) / (1.0 + n_perm)
    se_j = float(stat_se[j])
    z = float(stat[j] / se_j) if se_j > 0 else (0.0 if stat[j] == 0 else math.copysign(math.inf, stat[j]))
    log.debug("peak of %s L=%d at %.6g (index %d), p=%.3g", curve.measure, curve.L, location, j, p_value)
    return Peak(location_se=float(np.std(boot, ddof=1)), location_ci=ci, z=z,
                p_value=float(p_value), **common)


def _bootstrap_locations(terms, scale, x, n_boot, gen) -> np.ndarray:
    """Peak locations (interpolation coordinate) of curves from resampled samples."""
    J, two_L, S = terms.shape
    K = J + two_L - 1
    split = np.arange(J)[:, None, None]
    offset = np.arange(two_L)[None, :, None]
    curves = np.empty((n_boot, J))
    for b in range(n_boot):
        idx = gen.integers(0, S, size=(K, S))
        picked = terms[split, offset, idx[split[..., 0] + offset[..., 0]]]
        curves[b] = picked.mean(axis=2).mean(axis=1) * scale
    return _peak_x(curves, x)[1]


def _relabelled_maxima(log_ratio, L, measure, scale, n_perm, gen, chunk: int = 64) -> np.ndarray:
    """Maximum over splits of the statistic after relabelling samples within each window."""
    J, two_L, S = log_ratio.shape
    n = two_L * S
    sign = np.where(np.arange(two_L) < L, 1.0, -1.0)[:, None]
    maxima = np.full(n_perm, -np.inf)
    for j in range(J):
        to_left = (sign * log_ratio[j]).ravel()  # log P_L - log P_R of each pooled sample
        as_left, as_right = _own_term(to_left, measure), _own_term(-to_left, measure)
        for start in range(0, n_perm, chunk):
            m = min(chunk, n_perm - start)
            keys = gen.random((m, n))
            cut = np.partition(keys, L * S - 1, axis=1)[:, L * S - 1:L * S]
            total = np.where(keys <= cut, as_left, as_right).sum(axis=1)
            maxima[start:start + m] = np.maximum(maxima[start:start + m], total / n * scale[j])
    return maxima


# =========================================================================== Fisher information
@dataclass(frozen=True, eq=False, repr=False)
class FisherCurve:
    r"""Fisher information :math:`\mathcal F(\theta_k)=\mathbb E[(\partial_\theta\log P)^2]`
    estimated from per-sample scores.

    Attributes
    ----------
    grid : ndarray (K,)
    value, se : ndarray (K,)
        Mean of the squared scores and its standard error.
    n_samples : int
    """

    grid: np.ndarray
    value: np.ndarray
    se: np.ndarray
    n_samples: int

    def to_pandas(self):
        """Tidy table: one row per grid point."""
        import pandas as pd

        return pd.DataFrame({"grid": self.grid, "fisher": self.value, "se": self.se,
                             "n_samples": self.n_samples})

    def __repr__(self):
        j = int(np.argmax(self.value))
        return (f"FisherCurve(K={self.grid.size}, n_samples={self.n_samples}, "
                f"max {self.value[j]:.4g} ± {self.se[j]:.2g} at {self.grid[j]:.4g})")


def fisher_information(score, grid) -> FisherCurve:
    r"""Fisher information from the score of samples drawn at each grid point.

    Parameters
    ----------
    score : array of shape (K, S)
        :math:`\partial_\theta\log P(x^{(k,s)}\mid\theta)` at :math:`\theta=\theta_k`, for
        samples :math:`x^{(k,s)}\sim P(\cdot\mid\theta_k)`; finite, ``S >= 2``.
    grid : array of shape (K,)
        The parameter values (strictly monotone).

    Returns
    -------
    FisherCurve
        :math:`\hat{\mathcal F}_k=\frac1S\sum_s \mathrm{score}_{ks}^2` with standard error
        ``std(score^2, ddof=1) / sqrt(S)``.

    Raises
    ------
    ValueError
        ``score`` not two-dimensional or not finite, fewer than 2 samples per grid point,
        or a ``grid`` that does not match ``score`` or is not strictly monotone.

    Notes
    -----
    Link to the indicators: :func:`small_shift_coefficient` gives the factor ``c`` with
    ``indicator.normalized -> c * F`` as the windows shrink.

    Examples
    --------
    Scores of exact samples of a toy chain, against its exact Fisher information:

    >>> import numpy as np
    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=3, N=2, rng=0, control="tilt")
    >>> grid, gen = np.array([0.0, 0.5]), np.random.default_rng(1)
    >>> score = np.array([toy.score(toy.sample(t, 4000, rng=gen), t) for t in grid])
    >>> curve = fisher_information(score, grid)
    >>> exact = np.array([toy.fisher_information(t) for t in grid])
    >>> curve.value.shape, bool(np.all(np.abs(curve.value - exact) < 3 * curve.se))
    ((2,), True)
    """
    score = check.array("score", score, ndim=2)
    grid = _grid(grid, score.shape[0])
    S = score.shape[1]
    if S < 2:
        raise ValueError(f"score must hold S >= 2 samples per grid point, got shape {score.shape}")
    sq = score**2
    return FisherCurve(grid=_frozen(grid), value=_frozen(sq.mean(axis=1)),
                       se=_frozen(sq.std(axis=1, ddof=1) / math.sqrt(S)), n_samples=S)


def small_shift_coefficient(measure: str) -> float:
    r""":math:`f_g''(1)/2`, the factor with :math:`D_g\approx\frac{f_g''(1)}2\mathcal F\,\delta^2`.

    ``1/4`` for ``"linear"``, ``1/(8 ln 2)`` for ``"js"`` (bits).  ``"tv"`` raises: its
    generator is not differentiable at 1 and :math:`D_{TV}\approx\frac\delta2\mathbb E|\partial_\theta\log P|`
    is first order in :math:`\delta`.

    Parameters
    ----------
    measure : {"linear", "js"}
        The dissimilarity.

    Returns
    -------
    float
        The coefficient :math:`c` with ``IndicatorCurve.normalized`` :math:`\to
        c\,\mathcal F` as the windows shrink.

    Raises
    ------
    ValueError
        ``measure="tv"``, or an unknown measure.

    Examples
    --------
    >>> small_shift_coefficient("linear"), round(small_shift_coefficient("js"), 6)
    (0.25, 0.180337)

    Over a small shift the exact normalised indicator of a toy is this multiple of its
    Fisher information:

    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=3, N=2, rng=0, control="tilt")
    >>> curve = exact_indicator(toy.log_prob_table([0.499, 0.501]), [0.499, 0.501])
    >>> round(float(curve.normalized[0] / (0.25 * toy.fisher_information(0.5))), 4)
    1.0
    """
    measure = _measure(measure)
    if measure == "tv":
        raise ValueError(
            "measure='tv' has no Fisher-information limit (first order: D_TV ~ (delta/2) E|score|); "
            "use 'linear' or 'js'"
        )
    return 0.25 if measure == "linear" else 1.0 / (8.0 * _LN2)


# =========================================================================== prediction-based
@dataclass(frozen=True, eq=False, repr=False)
class PredictionCurve:
    r"""Prediction-based indicator :math:`\partial_\theta\mathbb E_\theta[\hat\theta]-1`.

    Attributes
    ----------
    grid : ndarray (K,)
    position : ndarray (K-2,)
        Interior grid points where the central difference is taken.
    mean_estimate : ndarray (K,)
        :math:`\mathbb E_{\theta_k}[\hat\theta]` (in :math:`\log\theta` with ``log_grid``).
    value, se : ndarray (K-2,)
    n_samples : int or None
        ``None`` for an exact curve.
    log_grid : bool
    """

    grid: np.ndarray
    position: np.ndarray
    mean_estimate: np.ndarray
    value: np.ndarray
    se: np.ndarray
    n_samples: int | None
    log_grid: bool = False

    def to_pandas(self):
        """Tidy table: one row per interior grid point."""
        import pandas as pd

        return pd.DataFrame({"position": self.position, "value": self.value, "se": self.se,
                             "n_samples": self.n_samples if self.n_samples is not None else pd.NA,
                             "log_grid": self.log_grid})

    def __repr__(self):
        j = int(np.argmax(self.value))
        samples = "exact" if self.n_samples is None else f"n_samples={self.n_samples}"
        return (f"PredictionCurve(K={self.grid.size}, {samples}, max {self.value[j]:.4g} "
                f"at {self.position[j]:.4g})")


def _prediction_curve(grid, x, mean, var_of_mean, S, log_grid) -> PredictionCurve:
    width = x[2:] - x[:-2]
    value = (mean[2:] - mean[:-2]) / width - 1.0
    se = np.sqrt(var_of_mean[2:] + var_of_mean[:-2]) / np.abs(width)
    return PredictionCurve(grid=_frozen(grid), position=_frozen(grid[1:-1]), mean_estimate=_frozen(mean),
                           value=_frozen(value), se=_frozen(se), n_samples=S, log_grid=bool(log_grid))


def prediction_indicator(logp_full, grid, *, log_grid: bool = False) -> PredictionCurve:
    r"""Prediction-based indicator from samples scored at every grid point.

    Parameters
    ----------
    logp_full : array of shape (K, S, K)
        ``logp_full[k, s, k'] = log P(x^{(k,s)} | grid[k'])``; finite or ``-inf``, with a
        finite diagonal ``k' = k``; ``S >= 2``.
    grid : array of shape (K,)
        Strictly monotone, ``K >= 3``.
    log_grid : bool
        Regress :math:`\log\theta` instead of :math:`\theta`.

    Returns
    -------
    PredictionCurve
        The indicator at the ``K - 2`` interior grid points with standard errors, and the
        sample mean of the estimate at every grid point.

    Raises
    ------
    ValueError
        ``logp_full`` not of shape (K, S, K) or holding NaN or ``+inf``, ``K < 3``,
        ``S < 2``, a non-finite diagonal entry, or a grid that is not strictly monotone
        (or not positive with ``log_grid``).

    Notes
    -----
    The optimal regressor under a uniform prior on the grid is the posterior mean
    :math:`\hat\theta(x)=\sum_k\theta_k w_k(x)`, :math:`w=\mathrm{softmax}_k\log P(x\mid\theta_k)`.
    The indicator at an interior point is the central difference
    :math:`\frac{\bar{\hat\theta}_{k+1}-\bar{\hat\theta}_{k-1}}{\theta_{k+1}-\theta_{k-1}}-1`
    of the sample means; its standard error combines the two means' variances.  Every
    sample needs its log-probability at every grid point, hence the full layout.

    Examples
    --------
    The sampled indicator of a toy chain agrees with the exact one within its errors:

    >>> import numpy as np
    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=3, N=2, rng=0, control="tilt")
    >>> grid = np.linspace(-1.0, 1.0, 7)
    >>> curve = prediction_indicator(toy.logp_full(grid, S=1000, rng=3), grid)
    >>> exact = exact_prediction_indicator(toy.log_prob_table(grid), grid)
    >>> curve.value.shape, bool(np.all(np.abs(curve.value - exact.value) < 3 * curve.se))
    ((5,), True)
    """
    try:
        arr = np.asarray(logp_full, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("logp_full must be an array of real numbers") from None
    if arr.ndim != 3 or arr.shape[2] != arr.shape[0]:
        raise ValueError(f"logp_full must have shape (K, S, K), got {arr.shape}")
    K, S, _ = arr.shape
    grid = _grid(grid, K, log_grid=log_grid)
    if K < 3:
        raise ValueError(f"grid must have at least 3 points for a central difference, got {K}")
    if S < 2:
        raise ValueError(f"logp_full must hold S >= 2 samples per grid point, got shape {arr.shape}")
    arr = check.array("logp_full", arr, allow_neg_inf=True)
    diag = arr[np.arange(K), :, np.arange(K)]
    if not np.all(np.isfinite(diag)):
        k, s = np.argwhere(~np.isfinite(diag))[0]
        raise ValueError(f"logp_full[{k}, {s}, {k}] (a sample scored at its own grid point) must be finite")
    x = np.log(grid) if log_grid else grid
    weights = np.exp(arr - _logsumexp(arr)[..., None])
    estimate = weights @ x  # (K, S)
    return _prediction_curve(grid, x, estimate.mean(axis=1), estimate.var(axis=1, ddof=1) / S, S, log_grid)


def exact_prediction_indicator(log_probs, grid, *, log_grid: bool = False) -> PredictionCurve:
    r"""Exact prediction-based indicator from a full table ``log_probs[k, x]``.

    :math:`\mathbb E_{\theta_k}[\hat\theta]=\sum_{k'}\theta_{k'}A_{kk'}` with
    :math:`A_{kk'}=\sum_xP(x\mid\theta_k)w_{k'}(x)`, each :math:`A_{kk'}` one ``logsumexp``
    of :math:`\log P(x\mid\theta_k)+\log w_{k'}(x)`.  Rows must be normalised as in
    :func:`exact_indicator`.

    Parameters
    ----------
    log_probs : array of shape (K, X)
        ``log_probs[k, x] = log P(x | grid[k])`` over a whole (finite) support; entries
        finite or ``-inf``; every row normalised.
    grid : array of shape (K,)
        Strictly monotone, ``K >= 3``.
    log_grid : bool
        Regress :math:`\log\theta` instead of :math:`\theta`.

    Returns
    -------
    PredictionCurve
        With ``se = 0`` and ``n_samples = None``.

    Raises
    ------
    ValueError
        ``log_probs`` not two-dimensional, holding NaN or ``+inf``, or with a row that is
        not normalised; ``K < 3``, or a grid that does not match or is not strictly
        monotone.

    Examples
    --------
    A law that does not change gives :math:`-1` (the estimate cannot follow
    :math:`\theta`); laws with disjoint supports give 0 (it follows exactly):

    >>> import numpy as np
    >>> grid = [0.0, 1.0, 2.0, 3.0]
    >>> exact_prediction_indicator(np.log(np.full((4, 2), 0.5)), grid).value
    array([-1., -1.])
    >>> exact_prediction_indicator(np.where(np.eye(4) > 0, 0.0, -np.inf), grid).value
    array([0., 0.])
    """
    try:
        table = np.asarray(log_probs, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("log_probs must be an array of real numbers") from None
    if table.ndim != 2:
        raise ValueError(f"log_probs must have shape (K, X), got {table.shape}")
    table = check.array("log_probs", table, allow_neg_inf=True)
    grid = _grid(grid, table.shape[0], log_grid=log_grid)
    if grid.size < 3:
        raise ValueError(f"grid must have at least 3 points for a central difference, got {grid.size}")
    totals = _logsumexp(table, axis=1)
    if np.any(np.abs(totals) > _NORMALIZATION_TOL):
        k = int(np.argmax(np.abs(totals)))
        raise ValueError(f"log_probs rows must be normalised; row {k} has logsumexp {totals[k]!r}")
    support = np.isfinite(table).any(axis=0)
    table = table[:, support]
    log_w = table - _logsumexp(table, axis=0)  # (K', X): log posterior weight of k'
    A = np.exp(_logsumexp(table[:, None, :] + log_w[None, :, :], axis=2))  # (K, K')
    x = np.log(grid) if log_grid else grid
    return _prediction_curve(grid, x, A @ x, np.zeros(grid.size), None, log_grid)
