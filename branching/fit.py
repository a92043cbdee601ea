r"""Fit the theory's distance curve to an empirical one through a link from a control to R0.

An empirical indicator curve (:class:`~branching.transitions.IndicatorCurve`) measures how
fast a real model's output law changes between neighbouring points of a control grid
:math:`x_1<\dots<x_K` (temperature, a prompt slot, scale).  The theory predicts the same
quantity for the list decoder: with a *link* :math:`x\mapsto R_0(x)`, its output law at
:math:`x_k` is the law at :math:`R_0(x_k)` (vocabulary :math:`M`, horizon :math:`N` =
number of generated tokens), and the indicator of split :math:`j` is the exact
g-dissimilarity between the window mixtures of those laws
(:func:`branching.theory_curve.theory_indicator`, evaluated on the same grid, windows and
measure as the empirical curve).

Model of the data
-----------------
.. math::  y_j = A\,D_j\bigl(R_0(x_1..x_K)\bigr) + \text{noise},\qquad
           \text{noise}_j\sim\mathcal N(0, \mathrm{se}_j^2),

with one free amplitude :math:`A>0` (a real model's output law is not the decoder's, so the
size of its changes is not predicted; only their shape along the control is) and the link:

=====================  ====================================================  ==============
``link``               :math:`R_0(x)`                                        free parameters
=====================  ====================================================  ==============
``"loglinear"``        :math:`\exp\{b(\log x-\log x_c)\}`                    :math:`x_c, b, A`
``"linear"``           :math:`\max\{0,\ 1+b(x-x_c)\}`                        :math:`x_c, b, A`
``"measured"``         the measured :math:`\hat R_0(x)` (no free location)   :math:`A`
``"measured_scaled"``  :math:`s\,\hat R_0(x)`                                :math:`s, A`
=====================  ====================================================  ==============

The threshold :math:`x_c` solves :math:`R_0(x_c)=1`.  The theory's laws are cached on a
grid of :math:`\log R_0` and interpolated (cubic spline of each log-probability of the
divergence-depth law, :class:`TheoryTable`), so a fit evaluates fast; the table reports its
own interpolation error, measured against exact laws at points between its nodes.

Fit, uncertainty, falsification
-------------------------------
* Weighted least squares (``scipy.optimize.least_squares``) with weights :math:`1/\mathrm{se}_j`,
  started from the best point of a coarse grid over the link parameters with :math:`A`
  profiled out in closed form, :math:`\hat A=\sum_j w_j y_j D_j/\sum_j w_j D_j^2`.
* Confidence intervals: percentile bootstrap.  When the curve keeps its per-sample
  log-ratios (a curve computed from samples), the ``S`` samples of every grid point are
  resampled with replacement, the curve is recomputed and refitted (``bootstrap="samples"``);
  otherwise the fitted curve plus Gaussian noise of the stated SEs is refitted
  (``bootstrap="curve points"``, a parametric bootstrap).  With a measured link every
  replicate also redraws :math:`\log\hat R_0` from its Gaussian errors.
* Goodness of fit: :math:`\chi^2=\sum_j (y_j-\hat y_j)^2/\mathrm{se}_j^2` on
  :math:`J-p` degrees of freedom and its p-value.  Overlapping splits share samples, so the
  points are positively correlated and the p-value is approximate; the bootstrap intervals
  do account for the correlation.
* Falsification: the same data fitted by a threshold-free Gaussian bump
  :math:`h\exp\{-(u-u_0)^2/2w^2\}`, :math:`u=\log x` on a logarithmic curve and :math:`x`
  otherwise, with three free parameters like the parametric links.  With Gaussian errors of
  known scale :math:`-2\log\Lambda=\chi^2_{\rm theory}-\chi^2_{\rm bump}` and
  :math:`\Delta\mathrm{AIC}=\mathrm{AIC}_{\rm theory}-\mathrm{AIC}_{\rm bump}` (equal to it for
  equal parameter counts).  :math:`\Delta\mathrm{AIC}>2` means the bump fits better: the
  result says the theory fits worse.

Held-out prediction (:func:`heldout_prediction`) fits the measured link's free parameters
on some prompts and predicts, from a held-out prompt's own measured :math:`\hat R_0(x)`
alone, where its curve peaks and how high.  :func:`threshold_routes` puts the three routes
to the threshold side by side: the fitted :math:`x_c`, the crossing of the measured
:math:`\hat R_0(x)` with 1, and the empirical curve's peak.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import interpolate, optimize, stats

from . import validation as check
from . import transitions as tr
from .theory_curve import depth_law_table

__all__ = [
    "LINKS",
    "TheoryTable",
    "theory_table",
    "MeasuredR0",
    "ThresholdFit",
    "fit_threshold",
    "PromptData",
    "HeldOutResult",
    "heldout_prediction",
    "threshold_routes",
]

log = logging.getLogger(__name__)

LINKS = ("loglinear", "linear", "measured", "measured_scaled")
_N_LINK_PARAMS = {"loglinear": 2, "linear": 2, "measured": 0, "measured_scaled": 1}
_PARAM_NAMES = {
    "loglinear": ("x_c", "b", "A"),
    "linear": ("x_c", "b", "A"),
    "measured": ("A",),
    "measured_scaled": ("s", "A"),
}
_BUMP_NAMES = ("location", "width", "height")
_LOG_FLOOR = -700.0  # log-probabilities below this are set to it before interpolation
_AIC_MARGIN = 2.0


# =========================================================================== theory table
class TheoryTable:
    r"""The list decoder's divergence-depth laws on a grid of :math:`\log R_0`, interpolated.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    N : int
        Horizon: the number of generated tokens, ``N >= 1``.
    r0_min, r0_max : float
        Range of the table, ``0 < r0_min < 1 < r0_max < M``; ``r0_max`` defaults to
        ``min(1e4, M / 2)``.
    points_per_decade : int
        Nodes per decade of :math:`R_0` (``>= 8``); the decade on either side of
        :math:`R_0=1` gets four times as many.
    **model_options
        Further :class:`~branching.model.ListDecoderModel` arguments (e.g. ``delta``).

    Attributes
    ----------
    r0_nodes : ndarray
        The table's nodes.
    interpolation_error : float
        Largest total-variation distance between the interpolated and the exact law at the
        midpoints (in :math:`\log R_0`) of every fourth pair of nodes.

    Notes
    -----
    Each entry :math:`\log q_j(R_0)` of the depth law is a smooth function of
    :math:`\log R_0`; a cubic spline through the nodes is evaluated and the result
    renormalised.  Below ``r0_min`` the law at ``r0_min`` is used: it differs from the
    oracle atom of :math:`R_0=0` by at most about ``r0_min * N`` in total variation.
    Above ``r0_max`` the law at ``r0_max`` is used; :meth:`laws` counts such points in
    :attr:`n_above` so that a fit can report them.
    """

    def __init__(self, M: int, N: int, *, r0_min: float = 1e-4, r0_max: float | None = None,
                 points_per_decade: int = 24, **model_options):
        self.M = check.integer("M", M, low=2)
        self.N = check.integer("N", N, low=1)
        if r0_max is None:
            r0_max = min(1e4, self.M / 2.0)
        self.r0_min = check.real("r0_min", r0_min, low=0.0, high=1.0, low_open=True, high_open=True)
        self.r0_max = check.real("r0_max", r0_max, low=1.0, high=float(self.M), low_open=True,
                                 high_open=True)
        per_decade = check.integer("points_per_decade", points_per_decade, low=8)
        self.model_options = dict(model_options)
        lo, hi = math.log10(self.r0_min), math.log10(self.r0_max)
        coarse = np.linspace(lo, hi, max(4, int(math.ceil((hi - lo) * per_decade)) + 1))
        fine = np.linspace(max(lo, -1.0), min(hi, 1.0), 8 * per_decade + 1)
        log10_nodes = np.sort(np.concatenate([coarse, fine]))
        log10_nodes = log10_nodes[np.concatenate([[True], np.diff(log10_nodes) > 1e-9])]
        self.r0_nodes = 10.0**log10_nodes
        with np.errstate(divide="ignore"):
            log_q = np.maximum(np.log(depth_law_table(self.M, self.N, self.r0_nodes, **model_options)),
                               _LOG_FLOOR)
        self._spline = interpolate.CubicSpline(np.log(self.r0_nodes), log_q, axis=0)
        self.n_above = 0
        mids = np.sqrt(self.r0_nodes[:-1:4] * self.r0_nodes[1::4])
        exact = depth_law_table(self.M, self.N, mids, **model_options)
        self.interpolation_error = float(0.5 * np.abs(self.laws(mids) - exact).sum(axis=1).max())
        log.debug("theory table M=%d N=%d, %d nodes, interpolation error %.2g", self.M, self.N,
                  self.r0_nodes.size, self.interpolation_error)

    def laws(self, r0) -> np.ndarray:
        """Interpolated depth laws at ``r0`` (shape ``(K,)``), one normalised row each."""
        r0 = np.asarray(r0, dtype=float)
        self.n_above = int(np.count_nonzero(r0 > self.r0_max))
        z = np.log(np.clip(r0, self.r0_min, self.r0_max))
        q = np.exp(self._spline(z))
        return q / q.sum(axis=1, keepdims=True)

    def indicator(self, r0, *, L: int, measure: str) -> np.ndarray:
        r"""Exact indicator values between windows of the laws at ``r0`` (one per grid point).

        The quantity of :func:`branching.transitions.exact_indicator` ``(...).value`` for
        these laws (it does not depend on the grid's positions), computed for all splits at
        once in probability space -- the laws here are short vectors with no underflow, and a
        fit evaluates this thousands of times:
        :math:`\tfrac12\sum(P_L-P_R)^2/(P_L+P_R)` (linear), :math:`\tfrac12\sum|P_L-P_R|`
        (TV), and the Jensen-Shannon divergence in bits (JS).
        """
        q = self.laws(r0)
        J = q.shape[0] - 2 * L + 1
        if J < 1:
            raise ValueError(f"r0 must have at least 2L = {2 * L} points, got {q.shape[0]}")
        csum = np.concatenate([np.zeros((1, q.shape[1])), np.cumsum(q, axis=0)])
        left = (csum[L:L + J] - csum[:J]) / L
        right = (csum[2 * L:2 * L + J] - csum[L:L + J]) / L
        total = left + right
        if measure == "linear":
            return 0.5 * np.sum(np.divide((left - right)**2, total, out=np.zeros_like(total),
                                          where=total > 0), axis=1)
        if measure == "tv":
            return 0.5 * np.sum(np.abs(left - right), axis=1)
        mid = 0.5 * total
        return 0.5 * (_kl_bits(left, mid) + _kl_bits(right, mid))

    def __repr__(self):
        return (f"TheoryTable(M={self.M}, N={self.N}, r0=[{self.r0_min:g}, {self.r0_max:g}], "
                f"{self.r0_nodes.size} nodes, interpolation error {self.interpolation_error:.2g})")


def _kl_bits(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Row-wise Kullback-Leibler divergence in bits (``0 log 0 = 0``)."""
    ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return np.sum(p * np.log2(ratio), axis=1)


@functools.lru_cache(maxsize=8)
def _cached_table(M, N, options):
    return TheoryTable(M, N, **dict(options))


def theory_table(M: int, N: int, **model_options) -> TheoryTable:
    """A :class:`TheoryTable` with default nodes, cached per ``(M, N, model_options)``.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    N : int
        Horizon: the number of generated tokens, ``N >= 1``.
    **model_options
        Further :class:`~branching.model.ListDecoderModel` arguments (e.g. ``delta``),
        passed to :class:`TheoryTable`; their values must be hashable (they are part of the
        cache key).

    Returns
    -------
    TheoryTable
        The table with default range and node density.  The same object is returned for
        repeated calls with equal arguments (a cache of the eight most recent tables).

    Raises
    ------
    ValueError
        ``M`` or ``N`` is not an integer in its range, or a model option is invalid.

    Examples
    --------
    >>> table = theory_table(50, 4)
    >>> table.interpolation_error < 1e-5
    True
    >>> theory_table(50, 4) is table
    True
    >>> table.laws([0.5, 2.0]).shape
    (2, 5)
    """
    return _cached_table(check.integer("M", M, low=2), check.integer("N", N, low=1),
                         tuple(sorted(model_options.items())))


# =========================================================================== measured R0
@dataclass(frozen=True, eq=False, repr=False)
class MeasuredR0:
    r"""A directly measured :math:`\hat R_0(x)` along a control, with standard errors.

    Parameters
    ----------
    x : array (n,)
        Strictly increasing control values (``> 0`` when ``log_x``).
    r0 : array (n,)
        Measured :math:`R_0` (``>= 0``); ``NaN`` marks a point where it is undefined.
    r0_se : array (n,)
        Standard errors (``>= 0``; anything where ``r0`` is ``NaN``).
    log_x : bool
        Work in :math:`u=\log x` (temperatures, scales) rather than :math:`u=x`.
    degree : int or None
        Smooth :math:`\log\hat R_0` by a weighted least-squares polynomial of this degree
        in :math:`u` (default 1: :math:`\log R_0` linear in :math:`u`); ``None`` interpolates
        the points linearly instead.

    Notes
    -----
    Only points with a defined, positive :math:`\hat R_0` enter (a point with
    :math:`\hat R_0=0` has no logarithm; it is left out and counted in :attr:`n_zero`).
    Errors of different points are treated as independent and Gaussian in
    :math:`\log\hat R_0` with :math:`\mathrm{se}(\log\hat R_0)=\mathrm{se}/\hat R_0`
    (a zero SE is raised to the smallest positive one).  The theory's curve depends on the
    *change* of :math:`R_0` between neighbouring grid points, which pointwise noise would
    dominate; the smooth (``degree``) keeps that noise out of the shape, and redraws of the
    points propagate it into the intervals.  There is no extrapolation beyond the points used.
    """

    x: np.ndarray
    r0: np.ndarray
    r0_se: np.ndarray
    log_x: bool = True
    degree: int | None = 1

    def __post_init__(self):
        x = check.array("x", self.x, ndim=1)
        r0 = np.asarray(self.r0, dtype=float)
        se = np.asarray(self.r0_se, dtype=float)
        if r0.shape != x.shape or se.shape != x.shape:
            raise ValueError(f"x, r0 and r0_se must have the same shape, got {x.shape}, {r0.shape}, "
                             f"{se.shape}")
        if np.any(np.diff(x) <= 0):
            raise ValueError(f"x must be strictly increasing, got {x!r}")
        if self.log_x and np.any(x <= 0):
            raise ValueError(f"x must be > 0 with log_x=True, got {x.min()!r}")
        defined = np.isfinite(r0)
        check.array("r0", r0[defined], low=0.0)
        check.array("r0_se", se[defined], low=0.0)
        if self.degree is not None:
            check.integer("degree", self.degree, low=1, high=3)
        used = defined & (r0 > 0)
        need = 2 if self.degree is None else self.degree + 2
        if np.count_nonzero(used) < need:
            raise ValueError(f"r0 must be defined and > 0 at >= {need} points (degree={self.degree}), "
                             f"got {np.count_nonzero(used)}")
        for name, value in (("x", x), ("r0", r0), ("r0_se", se)):
            value = value.copy()
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "log_x", bool(self.log_x))

    @property
    def used(self) -> np.ndarray:
        r"""Mask of the points that enter: :math:`\hat R_0` defined and positive."""
        return np.isfinite(self.r0) & (np.nan_to_num(self.r0) > 0)

    @property
    def n_zero(self) -> int:
        r"""Number of points with :math:`\hat R_0=0` (left out of the log-scale link)."""
        return int(np.count_nonzero(np.isfinite(self.r0) & (np.nan_to_num(self.r0, nan=1.0) == 0)))

    @property
    def x_range(self) -> tuple:
        """First and last control value used."""
        x = self.x[self.used]
        return float(x[0]), float(x[-1])

    def _u(self, x):
        return np.log(x) if self.log_x else np.asarray(x, dtype=float)

    @property
    def log_r0(self) -> np.ndarray:
        r""":math:`\log\hat R_0` at the points used."""
        return np.log(self.r0[self.used])

    @property
    def log_se(self) -> np.ndarray:
        r"""Standard errors of :math:`\log\hat R_0` at the points used."""
        sd = self.r0_se[self.used] / self.r0[self.used]
        positive = sd[sd > 0]
        return np.maximum(sd, positive.min()) if positive.size else np.ones_like(sd)

    def log_r0_at(self, x, log_r0=None) -> np.ndarray:
        r"""The link :math:`\log R_0` at ``x`` (inside :attr:`x_range`).

        ``log_r0`` replaces the measured values at the points used (for redraws); with shape
        ``(n_used, n)`` the result has shape ``(len(x), n)``.
        """
        values = self.log_r0 if log_r0 is None else np.asarray(log_r0, dtype=float)
        u = self._u(self.x[self.used])
        if self.degree is None:
            if values.ndim == 2:
                return np.stack([np.interp(self._u(x), u, v) for v in values.T], axis=1)
            return np.interp(self._u(x), u, values)
        coef = np.polynomial.polynomial.polyfit(u, values, self.degree, w=1.0 / self.log_se)
        return np.polynomial.polynomial.polyval(self._u(x), coef).T  # (len(x),) or (len(x), n)

    def draws(self, n: int, gen: np.random.Generator) -> np.ndarray:
        r"""``n`` Gaussian draws of :math:`\log\hat R_0` at the points used (independent)."""
        return self.log_r0 + self.log_se * gen.standard_normal((n, self.log_se.size))

    def crossing(self, log_r0=None) -> float:
        """Control value where the link first crosses :math:`R_0=1` (NaN if not in range)."""
        lo, hi = self._u(np.array(self.x_range))
        u = np.linspace(lo, hi, 4001) if self.degree is not None else self._u(self.x[self.used])
        x = np.exp(u) if self.log_x else u
        return _first_root(u, self.log_r0_at(x, log_r0), self.log_x)

    def crossing_ci(self, *, level: float = 0.95, n_boot: int = 2000, rng=None) -> tuple:
        r"""Crossing and its percentile interval from Gaussian draws of :math:`\log\hat R_0`.

        A draw without a crossing in range counts as beyond the end it lies on.  An end of
        the interval that lies beyond the range is reported as the open bound on that side
        (``inf``, or ``0`` / ``-inf`` below the range on a logarithmic / linear control), and
        when the whole interval lies beyond one end it becomes the one-sided interval from that
        end of :attr:`x_range` outwards: no extrapolation beyond the points is made.
        """
        level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
        n_boot = check.integer("n_boot", n_boot, low=2)
        gen = np.random.default_rng(rng)
        draws = self.draws(n_boot, gen)
        lo, hi = self._u(np.array(self.x_range))
        u = np.linspace(lo, hi, 1001) if self.degree is not None else self._u(self.x[self.used])
        x = np.exp(u) if self.log_x else u
        curves = self.log_r0_at(x, draws.T)  # (n_u, n_boot)
        roots = np.empty(n_boot)
        for b in range(n_boot):
            root = _first_root(u, curves[:, b], self.log_x)
            if math.isnan(root):
                increasing = curves[-1, b] >= curves[0, b]
                beyond_high = bool(np.all(curves[:, b] < 0)) == increasing
                root = math.inf if beyond_high else (0.0 if self.log_x else -math.inf)
            roots[b] = root
        alpha = 0.5 * (1.0 - level)
        lo, hi = np.quantile(roots, [alpha, 1.0 - alpha], method="inverted_cdf")
        below = 0.0 if self.log_x else -math.inf
        if hi == below:  # every quantile below the range: (below, lowest x]
            hi = self.x_range[0]
        if lo == math.inf:  # every quantile above the range: [highest x, inf)
            lo = self.x_range[1]
        return self.crossing(), (float(lo), float(hi))

    def side(self) -> str:
        r"""Where the smoothed :math:`\hat R_0` lies relative to 1 over :attr:`x_range`.

        ``"crosses"``, ``"above"`` (:math:`R_0>1` throughout) or ``"below"``.
        """
        if not math.isnan(self.crossing()):
            return "crosses"
        lo, hi = self._u(np.array(self.x_range))
        u = np.linspace(lo, hi, 101)
        return "above" if np.all(self.log_r0_at(np.exp(u) if self.log_x else u) > 0) else "below"

    def __repr__(self):
        lo, hi = self.x_range
        how = "interpolated" if self.degree is None else f"polynomial degree {self.degree}"
        return (f"MeasuredR0({np.count_nonzero(self.used)} of {self.x.size} points used, "
                f"x=[{lo:.4g}, {hi:.4g}], {how}, crossing at {self.crossing():.4g})")


def _first_root(u: np.ndarray, values: np.ndarray, log_x: bool) -> float:
    """First zero of the piecewise-linear ``values(u)``, back in control units; NaN if none."""
    sign = np.sign(values)
    zero = np.nonzero(sign == 0)[0]
    change = np.nonzero(sign[:-1] * sign[1:] < 0)[0]
    candidates = []
    if zero.size:
        candidates.append(u[zero[0]])
    if change.size:
        i = change[0]
        candidates.append(u[i] + (u[i + 1] - u[i]) * values[i] / (values[i] - values[i + 1]))
    if not candidates:
        return math.nan
    root = min(candidates)
    return float(np.exp(root) if log_x else root)


# =========================================================================== data + models
@dataclass(frozen=True, eq=False)
class _Data:
    """The part of an empirical curve that a fit uses (splits ``first..first+J-1``)."""

    grid: np.ndarray
    L: int
    measure: str
    log_grid: bool
    position: np.ndarray
    y: np.ndarray
    se: np.ndarray
    log_ratio: np.ndarray | None
    first: int

    @property
    def u(self) -> np.ndarray:
        return np.log(self.position) if self.log_grid else self.position

    def resampled(self, gen: np.random.Generator) -> np.ndarray:
        """The curve recomputed from samples resampled within every grid point."""
        J, two_L, S = self.log_ratio.shape
        terms = tr._own_term(self.log_ratio, self.measure)
        idx = gen.integers(0, S, size=(self.grid.size, S))
        split = np.arange(J)[:, None, None]
        offset = np.arange(two_L)[None, :, None]
        picked = terms[split, offset, idx[split[..., 0] + offset[..., 0]]]
        return picked.mean(axis=2).mean(axis=1)


def _curve_data(curve, se_floor, name: str = "curve", window=None) -> _Data:
    """Validate an empirical curve and cut it to the splits inside ``window`` (control range)."""
    if not isinstance(curve, tr.IndicatorCurve):
        raise ValueError(f"{name} must be a branching.transitions.IndicatorCurve, got "
                         f"{type(curve).__name__}")
    if curve.exact:
        raise ValueError(f"{name} is an exact curve (no standard errors); the fit needs a measured "
                         "curve with se > 0")
    se = np.asarray(curve.se, dtype=float)
    if se_floor is not None:
        if se_floor == "min_positive":
            positive = se[se > 0]
            if positive.size == 0:
                raise ValueError(f"{name}.se is 0 everywhere; the fit needs standard errors")
            floor = float(positive.min())
        else:
            floor = check.real("se_floor", se_floor, low=0.0, low_open=True)
        se = np.maximum(se, floor)
    if np.any(se <= 0):
        j = int(np.argmax(se <= 0))
        raise ValueError(
            f"{name}.se is 0 at split {j} (position {curve.position[j]:.4g}): the samples there "
            "are identical; pass se_floor (a positive number or 'min_positive') to weight it"
        )
    grid = np.asarray(curve.grid)
    L = curve.L
    J_all = curve.value.size
    lo_j, hi_j = 0, J_all
    if window is not None:
        lo, hi = window
        inside = (grid >= lo * (1 - 1e-12)) & (grid <= hi * (1 + 1e-12))
        ok = np.array([inside[j:j + 2 * L].all() for j in range(J_all)])
        if not ok.any():
            raise ValueError(f"{name}: no split lies inside the measured R0 range "
                             f"[{lo:.4g}, {hi:.4g}] (grid [{grid[0]:.4g}, {grid[-1]:.4g}])")
        idx = np.nonzero(ok)[0]
        lo_j, hi_j = int(idx[0]), int(idx[-1]) + 1
    log_ratio = None if curve.log_ratio is None else curve.log_ratio[lo_j:hi_j]
    return _Data(grid=grid[lo_j:hi_j + 2 * L - 1], L=L, measure=curve.measure,
                 log_grid=curve.log_grid, position=np.asarray(curve.position)[lo_j:hi_j],
                 y=np.asarray(curve.value)[lo_j:hi_j], se=se[lo_j:hi_j], log_ratio=log_ratio,
                 first=lo_j)


class _TheoryModel:
    """``y = A * D(R0(x; link params))`` on one curve's grid; parameters in fit coordinates.

    Fit coordinates: ``loglinear`` (log x_c, b, A), ``linear`` (x_c, b, A),
    ``measured`` (A,), ``measured_scaled`` (log s, A).
    """

    def __init__(self, table: TheoryTable, data: _Data, link: str, measured: MeasuredR0 | None,
                 log_r0_measured=None):
        self.table, self.data, self.link, self.measured = table, data, link, measured
        self.n_params = _N_LINK_PARAMS[link] + 1
        if measured is not None:
            self.log_r0_measured = (measured.log_r0_at(data.grid) if log_r0_measured is None
                                    else log_r0_measured)

    def r0(self, p) -> np.ndarray:
        g = self.data.grid
        if self.link == "loglinear":
            return np.exp(np.clip(p[1] * (np.log(g) - p[0]), -700, 700))
        if self.link == "linear":
            return np.maximum(1.0 + p[1] * (g - p[0]), 0.0)
        if self.link == "measured":
            return np.exp(self.log_r0_measured)
        return np.exp(self.log_r0_measured + p[0])

    def shape(self, p) -> np.ndarray:
        return self.table.indicator(self.r0(p), L=self.data.L, measure=self.data.measure)

    def predict(self, p) -> np.ndarray:
        return p[-1] * self.shape(p)


def _profiled_amplitude(shape, y, w2) -> float:
    denom = float(np.sum(w2 * shape * shape))
    return max(float(np.sum(w2 * y * shape)) / denom, 0.0) if denom > 0 else 0.0


def _bump(p, u) -> np.ndarray:
    return p[2] * np.exp(-0.5 * ((u - p[0]) / np.exp(p[1]))**2)


def _solve(residual, starts, bounds):
    """Least squares from each start; the best solution and its chi-square."""
    best = None
    for p0 in starts:
        sol = optimize.least_squares(residual, np.clip(p0, bounds[0], bounds[1]), bounds=bounds,
                                     x_scale="jac", method="trf", xtol=1e-7, ftol=1e-7)
        chi2 = float(np.sum(sol.fun**2))
        if best is None or chi2 < best[1]:
            best = (sol.x, chi2)
    return best


def _link_start(models, ys, ses, link, increasing=True):
    """Best grid points for the link parameters, the amplitude profiled: (starts, bounds)."""
    data0 = models[0].data
    w2s = [1.0 / s**2 for s in ses]
    if link in ("measured", "measured_scaled"):
        log_s_grid = [0.0] if link == "measured" else np.linspace(-3.0, 3.0, 61)
        best = None
        for log_s in log_s_grid:
            p = np.array([log_s, 0.0]) if link == "measured_scaled" else np.array([0.0])
            shapes = [m.shape(p) for m in models]
            A = _profiled_amplitude(np.concatenate(shapes), np.concatenate(ys), np.concatenate(w2s))
            chi2 = sum(float(np.sum(w2 * (y - A * sh)**2)) for w2, y, sh in zip(w2s, ys, shapes))
            if best is None or chi2 < best[0]:
                best = (chi2, log_s, A)
        _, log_s, A = best
        if link == "measured":
            return [np.array([A])], ([0.0], [np.inf])
        return [np.array([log_s, A])], ([-10.0, 0.0], [10.0, np.inf])
    g = data0.grid
    if link == "loglinear":
        ug = np.log(g)
        span = ug[-1] - ug[0]
        centres = np.linspace(ug[0] - 0.25 * span, ug[-1] + 0.25 * span, 25)
        slopes = np.geomspace(0.1, 100.0, 13) / max(span, 1e-12) * 4.0
    else:
        span = g[-1] - g[0]
        centres = np.linspace(g[0] - 0.25 * span, g[-1] + 0.25 * span, 25)
        slopes = np.geomspace(0.1, 100.0, 13) / span
    sign = 1.0 if increasing else -1.0
    candidates = []
    for c in centres:
        for b in sign * slopes:
            p = np.array([c, b, 0.0])
            shapes = [m.shape(p) for m in models]
            A = _profiled_amplitude(np.concatenate(shapes), np.concatenate(ys), np.concatenate(w2s))
            chi2 = sum(float(np.sum(w2 * (y - A * sh)**2)) for w2, y, sh in zip(w2s, ys, shapes))
            candidates.append((chi2, c, b, A))
    candidates.sort(key=lambda row: row[0])
    starts = [np.array(row[1:]) for row in candidates[:3]]
    lo_c, hi_c = centres[0] - 0.25 * span, centres[-1] + 0.25 * span
    if increasing:
        b_bounds = (slopes[0] / 10.0, slopes[-1] * 10.0)
    else:
        b_bounds = (-slopes[-1] * 10.0, -slopes[0] / 10.0)
    return starts, ([lo_c, b_bounds[0], 0.0], [hi_c, b_bounds[1], np.inf])


def _fit_models(models, ys, ses, link, start=None, increasing=True):
    r"""Joint weighted least squares of one or several curves sharing the parameters.

    The amplitude enters linearly and is profiled out (variable projection): the optimiser
    sees only the link parameters, and :math:`\hat A` is the closed-form weighted
    least-squares amplitude at each of them.  Returns the parameters (amplitude last), the
    chi-square and ``(starts, bounds)`` for refits from the solution.
    """
    starts, bounds = _link_start(models, ys, ses, link, increasing) if start is None else start
    n_link = _N_LINK_PARAMS[link]
    y_all, se_all = np.concatenate(ys), np.concatenate(ses)
    w2 = 1.0 / se_all**2

    def projected(q):
        p = np.append(q, 0.0)
        shapes = np.concatenate([m.shape(p) for m in models])
        amplitude = _profiled_amplitude(shapes, y_all, w2)
        return amplitude, (y_all - amplitude * shapes) / se_all

    if n_link == 0:
        amplitude, residual = projected(np.zeros(0))
        p = np.array([amplitude])
        return p, float(np.sum(residual**2)), ([p], bounds)
    link_bounds = (bounds[0][:n_link], bounds[1][:n_link])
    q, chi2 = _solve(lambda q: projected(q)[1], [s[:n_link] for s in starts], link_bounds)
    p = np.append(q, projected(q)[0])
    return p, chi2, ([p], bounds)


def _fit_bump(u, y, se, start=None):
    if start is None:
        j = int(np.argmax(y))
        span = max(u[-1] - u[0], 1e-12)
        best = None
        for u0 in np.linspace(u[0] - 0.1 * span, u[-1] + 0.1 * span, 25):
            for log_w in np.log(span * np.geomspace(0.02, 2.0, 12)):
                shape = _bump([u0, log_w, 1.0], u)
                h = _profiled_amplitude(shape, y, 1.0 / se**2)
                chi2 = float(np.sum(((y - h * shape) / se)**2))
                if best is None or chi2 < best[0]:
                    best = (chi2, u0, log_w, h)
        _, u0, log_w, h = best
        start = ([np.array([u0, log_w, max(h, y[j])])],
                 ([u[0] - 0.5 * span, math.log(span * 1e-3), 0.0],
                  [u[-1] + 0.5 * span, math.log(span * 10.0), np.inf]))
    starts, bounds = start
    p, chi2 = _solve(lambda p: (y - _bump(p, u)) / se, starts, bounds)
    return p, chi2, ([p], bounds)


def _natural(link, p) -> np.ndarray:
    """Fit coordinates -> reported parameters (x_c, b, A) / (A,) / (s, A)."""
    p = np.asarray(p, dtype=float)
    if link == "loglinear":
        return np.array([math.exp(p[0]), p[1], p[2]])
    if link == "measured_scaled":
        return np.array([math.exp(p[0]), p[1]])
    return p.copy()


def _threshold(link, p, measured, log_r0=None) -> float:
    if link == "loglinear":
        return math.exp(p[0])
    if link == "linear":
        return float(p[0])
    shift = 0.0 if link == "measured" else p[0]
    return measured.crossing((measured.log_r0 if log_r0 is None else log_r0) + shift)


def _interval(values, level):
    values = np.asarray(values, dtype=float)
    finite = values[~np.isnan(values)]
    if finite.size < 2:
        return (math.nan, math.nan)
    alpha = 0.5 * (1.0 - level)
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


# =========================================================================== the fit result
@dataclass(frozen=True, eq=False, repr=False)
class ThresholdFit:
    r"""The theory fitted to an empirical indicator curve, and the threshold-free alternative.

    Attributes
    ----------
    link : str
        One of :data:`LINKS`.
    M, N : int
        Vocabulary size and horizon (generated tokens) of the theory.
    measure, L : str, int
        The indicator fitted.
    params, params_ci : dict
        Fitted parameters (``x_c``, ``b``, ``A``; ``A``; or ``s``, ``A``) and their
        percentile bootstrap intervals at ``level``.
    x_c, x_c_ci : float, (float, float)
        The threshold :math:`R_0(x_c)=1` and its interval (NaN when the link does not reach 1).
    chi2, dof, chi2_dof, p_value : float, int, float, float
        Goodness of fit of the theory.
    aic : float
        :math:`\chi^2+2p` (Gaussian likelihood up to a constant shared by both models).
    bump_params : dict
        The threshold-free Gaussian bump: ``location``, ``width`` (in :math:`\log x` on a
        logarithmic curve), ``height``.
    bump_chi2, bump_p_value, bump_aic : float
        Its goodness of fit.
    delta_aic : float
        ``aic - bump_aic``; positive means the bump fits better.
    lr_statistic : float
        ``chi2 - bump_chi2`` (:math:`-2\log\Lambda`).
    falsified : bool
        The threshold-free bump fits better by more than 2 AIC units.
    verdict : str
        One sentence stating the outcome.
    position, y, se, fitted, bump_fitted : ndarray
        The splits used, the data and both fitted curves.
    grid, r0_fitted : ndarray
        The grid points used and :math:`R_0` of the fitted link there.
    x_c_boot : ndarray (n_boot,)
        Bootstrap replicates of :math:`x_c` (intervals at other levels are their quantiles).
    bootstrap : {"samples", "curve points"}
        What the intervals resample (see the module docstring).
    n_boot, level, seed, interpolation_error
        Bootstrap replicates, interval level, the ``rng`` argument (an int or None) and the
        theory table's interpolation error.
    """

    link: str
    M: int
    N: int
    measure: str
    L: int
    params: dict
    params_ci: dict
    x_c: float
    x_c_ci: tuple
    chi2: float
    dof: int
    p_value: float
    aic: float
    bump_params: dict
    bump_chi2: float
    bump_p_value: float
    bump_aic: float
    delta_aic: float
    lr_statistic: float
    falsified: bool
    verdict: str
    position: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    se: np.ndarray = field(repr=False)
    fitted: np.ndarray = field(repr=False)
    bump_fitted: np.ndarray = field(repr=False)
    r0_fitted: np.ndarray = field(repr=False)
    grid: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    x_c_boot: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    bootstrap: str = "samples"
    n_boot: int = 0
    level: float = 0.95
    seed: int | None = None
    interpolation_error: float = 0.0
    log_grid: bool = False

    @property
    def chi2_dof(self) -> float:
        """:math:`\\chi^2` per degree of freedom."""
        return self.chi2 / self.dof

    def summary(self) -> dict:
        """The headline numbers as a JSON-ready dict."""
        return {
            "link": self.link, "M": self.M, "N": self.N, "measure": self.measure, "L": self.L,
            "x_c": self.x_c, "x_c_ci": list(self.x_c_ci), "level": self.level,
            "params": self.params, "params_ci": {k: list(v) for k, v in self.params_ci.items()},
            "chi2": self.chi2, "dof": self.dof, "chi2_dof": self.chi2_dof, "p_value": self.p_value,
            "bump_params": self.bump_params, "bump_chi2": self.bump_chi2,
            "bump_p_value": self.bump_p_value, "delta_aic": self.delta_aic,
            "lr_statistic": self.lr_statistic, "falsified": self.falsified, "verdict": self.verdict,
            "bootstrap": self.bootstrap, "n_boot": self.n_boot, "seed": self.seed,
            "interpolation_error": self.interpolation_error,
        }

    def to_pandas(self):
        """One row per split: position, data, SE, both fits, residuals in SE units."""
        import pandas as pd

        return pd.DataFrame({
            "position": self.position, "value": self.y, "se": self.se, "theory": self.fitted,
            "bump": self.bump_fitted, "theory_residual": (self.y - self.fitted) / self.se,
            "bump_residual": (self.y - self.bump_fitted) / self.se, "link": self.link,
        })

    def save(self, path) -> Path:
        """Write the fit as JSON (arrays as lists)."""
        path = Path(path)
        record = dict(self.summary(), format="llm_branching.ThresholdFit", aic=self.aic,
                      bump_aic=self.bump_aic, log_grid=self.log_grid,
                      arrays={name: getattr(self, name).tolist() for name in _FIT_ARRAYS})
        path.write_text(json.dumps(record, indent=1))
        return path

    @classmethod
    def load(cls, path) -> "ThresholdFit":
        """Read a fit written by :meth:`save`."""
        record = json.loads(Path(path).read_text())
        if record.get("format") != "llm_branching.ThresholdFit":
            raise ValueError(f"path {str(path)!r} does not hold a ThresholdFit")
        arrays = {k: np.array(v, dtype=float) for k, v in record["arrays"].items()}
        return cls(
            link=record["link"], M=record["M"], N=record["N"], measure=record["measure"],
            L=record["L"], params=record["params"],
            params_ci={k: tuple(v) for k, v in record["params_ci"].items()},
            x_c=record["x_c"], x_c_ci=tuple(record["x_c_ci"]), chi2=record["chi2"],
            dof=record["dof"], p_value=record["p_value"], aic=record["aic"],
            bump_params=record["bump_params"], bump_chi2=record["bump_chi2"],
            bump_p_value=record["bump_p_value"], bump_aic=record["bump_aic"],
            delta_aic=record["delta_aic"], lr_statistic=record["lr_statistic"],
            falsified=record["falsified"], verdict=record["verdict"], bootstrap=record["bootstrap"],
            n_boot=record["n_boot"], level=record["level"], seed=record["seed"],
            interpolation_error=record["interpolation_error"], log_grid=record["log_grid"],
            **arrays,
        )

    def __repr__(self):
        lo, hi = self.x_c_ci
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return (f"ThresholdFit(link={self.link!r}, M={self.M}, N={self.N}, {self.measure} L={self.L}: "
                f"x_c={self.x_c:.4g} [{lo:.4g}, {hi:.4g}] ({self.level:.0%}), {params}; "
                f"chi2/dof={self.chi2_dof:.3g} (dof {self.dof}, p={self.p_value:.3g}); "
                f"vs bump dAIC={self.delta_aic:+.3g}: {self.verdict})")


_FIT_ARRAYS = ("position", "y", "se", "fitted", "bump_fitted", "r0_fitted", "grid", "x_c_boot")


def _verdict(delta_aic, p_value, bump_p_value, alpha) -> tuple[bool, str]:
    if delta_aic > _AIC_MARGIN:
        return True, (f"the theory fits worse than a threshold-free bump (dAIC = {delta_aic:+.3g} "
                      f"> {_AIC_MARGIN:g})")
    fit = ("and fails the goodness-of-fit test" if p_value < alpha
           else "and passes the goodness-of-fit test")
    fit += f" (p = {p_value:.3g})"
    if delta_aic < -_AIC_MARGIN:
        return False, f"the theory fits better than a threshold-free bump (dAIC = {delta_aic:+.3g}) {fit}"
    return False, (f"the theory and a threshold-free bump fit about equally well "
                   f"(|dAIC| <= {_AIC_MARGIN:g}) {fit}")


def _check_common(M, N, link, n_boot, level, alpha):
    M = check.integer("M", M, low=2)
    N = check.integer("N", N, low=1)
    link = check.choice("link", link, LINKS)
    n_boot = check.integer("n_boot", n_boot, low=0)
    if n_boot == 1:
        raise ValueError("n_boot must be 0 (no intervals) or >= 2, got 1")
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    alpha = check.real("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    return M, N, link, n_boot, level, alpha


def fit_threshold(curve, *, M: int, N: int, link: str = "loglinear", measured=None,
                  increasing: bool = True, n_boot: int = 200, level: float = 0.95, alpha: float = 0.05, se_floor=None,
                  table: TheoryTable | None = None, rng=None) -> ThresholdFit:
    r"""Fit the theory's indicator curve to an empirical one; compare with a threshold-free bump.

    Parameters
    ----------
    curve : IndicatorCurve
        An empirical curve with standard errors (from samples: :func:`branching.transitions.indicator`,
        ``ScanResult.indicator``); its grid is the control :math:`x`.
    M : int
        Vocabulary size of the model, ``>= 2``.
    N : int
        Number of generated tokens (the theory's horizon), ``>= 1``.
    link : {"loglinear", "linear", "measured", "measured_scaled"}
        The map from the control to :math:`R_0` (module docstring).
    measured : MeasuredR0, optional
        The measured :math:`\hat R_0(x)`; required by the measured links.  Only splits whose
        grid points lie inside its defined range are fitted.
    increasing : bool
        Whether :math:`R_0` grows along the control (parametric links; True for temperature,
        False for model scale).  The theory's curve is nearly symmetric in
        :math:`\log R_0`, so the direction is not identified by the data and must be stated.
    n_boot : int
        Bootstrap replicates for the intervals (0: no intervals, NaN bounds).
    level : float
        Level of the intervals, in (0, 1).
    alpha : float
        Level of the goodness-of-fit test quoted in the verdict, in (0, 1).
    se_floor : float or "min_positive", optional
        Raise every SE to at least this value; ``"min_positive"`` uses the smallest positive SE
        of the curve.  Without it a zero SE (identical samples) raises.
    table : TheoryTable, optional
        The theory's laws; default :func:`theory_table` ``(M, N)``.
    rng : None, int, SeedSequence or Generator
        Randomness of the bootstrap.

    Returns
    -------
    ThresholdFit

    Raises
    ------
    ValueError
        An exact curve or a zero SE (without ``se_floor``), too few splits for the free
        parameters (need ``J >= 4`` and ``J > p``), a measured link without ``measured``,
        bad ``M``, ``N``, ``n_boot``, ``level``, ``alpha``.

    Notes
    -----
    See the module docstring for the model, the bootstrap and the falsification test.

    Examples
    --------
    >>> import numpy as np
    >>> from branching import transitions as tr
    >>> table = theory_table(50, 4)
    >>> grid = np.geomspace(0.2, 5.0, 14)
    >>> truth = 3.0 * table.indicator(grid / 1.1, L=1, measure="linear")
    >>> exact = tr.exact_indicator(np.log(table.laws(grid / 1.1)), grid, log_grid=True)
    >>> se = 0.02 * truth.max() * np.ones_like(truth)
    >>> noisy = np.random.default_rng(0).normal(truth, se)
    >>> from dataclasses import replace
    >>> curve = replace(exact, value=noisy, se=se, n_samples=100)
    >>> fit = fit_threshold(curve, M=50, N=4, n_boot=20, rng=1)
    >>> bool(abs(fit.x_c - 1.1) < 0.1), fit.bootstrap
    (True, 'curve points')
    """
    M, N, link, n_boot, level, alpha = _check_common(M, N, link, n_boot, level, alpha)
    if link in ("measured", "measured_scaled") and not isinstance(measured, MeasuredR0):
        raise ValueError(f"link={link!r} needs measured=MeasuredR0(...), got {type(measured).__name__}")
    window = measured.x_range if link in ("measured", "measured_scaled") else None
    data = _curve_data(curve, se_floor, window=window)
    table = theory_table(M, N) if table is None else table
    if not isinstance(table, TheoryTable) or (table.M, table.N) != (M, N):
        raise ValueError(f"table must be a TheoryTable with M={M}, N={N}, got {table!r}")
    model = _TheoryModel(table, data, link, measured if window else None)
    J, p = data.y.size, model.n_params
    if J < 4 or J <= p:
        raise ValueError(f"curve has {J} usable splits; link={link!r} has {p} free parameters and the "
                         f"threshold-free bump 3: need at least {max(4, p + 1)} splits (a longer grid)")
    if not isinstance(increasing, (bool, np.bool_)):
        raise ValueError(f"increasing must be True or False, got {increasing!r}")
    params, chi2, start = _fit_models([model], [data.y], [data.se], link, increasing=bool(increasing))
    u = data.u
    bump, bump_chi2, bump_start = _fit_bump(u, data.y, data.se)
    fitted = model.predict(params)
    table.laws(model.r0(params))
    if table.n_above:
        log.warning("fitted link puts %d grid points above the theory table's R0 = %g",
                    table.n_above, table.r0_max)

    gen = np.random.default_rng(rng)
    boot_params, boot_xc = [], []
    use_samples = data.log_ratio is not None
    for _ in range(n_boot):
        y_b = data.resampled(gen) if use_samples else fitted + data.se * gen.standard_normal(J)
        model_b = model
        if window is not None:  # measured links: redraw the measured R0 as well
            draw = measured.draws(1, gen)[0]
            model_b = _TheoryModel(table, data, link, measured, measured.log_r0_at(data.grid, draw))
        else:
            draw = None
        p_b, _, _ = _fit_models([model_b], [y_b], [data.se], link, start=start)
        boot_params.append(_natural(link, p_b))
        boot_xc.append(_threshold(link, p_b, measured, draw))
    names = _PARAM_NAMES[link]
    natural = _natural(link, params)
    boot_params = np.array(boot_params).reshape(n_boot, len(names))
    params_ci = {n: _interval(boot_params[:, i], level) for i, n in enumerate(names)}

    dof = J - p
    aic, bump_aic = chi2 + 2 * p, bump_chi2 + 2 * 3
    p_value = float(stats.chi2.sf(chi2, dof))
    bump_p = float(stats.chi2.sf(bump_chi2, J - 3)) if J > 3 else math.nan
    falsified, verdict = _verdict(aic - bump_aic, p_value, bump_p, alpha)
    log.info("fit %s: x_c=%.4g chi2/dof=%.3g dAIC=%+.3g", link, _threshold(link, params, measured),
             chi2 / dof, aic - bump_aic)
    return ThresholdFit(
        link=link, M=M, N=N, measure=data.measure, L=data.L,
        params={n: float(v) for n, v in zip(names, natural)}, params_ci=params_ci,
        x_c=_threshold(link, params, measured), x_c_ci=_interval(boot_xc, level),
        chi2=chi2, dof=dof, p_value=p_value, aic=aic,
        bump_params={"location": float(math.exp(bump[0]) if data.log_grid else bump[0]),
                     "width": float(math.exp(bump[1])), "height": float(bump[2])},
        bump_chi2=bump_chi2, bump_p_value=bump_p, bump_aic=bump_aic, delta_aic=aic - bump_aic,
        lr_statistic=chi2 - bump_chi2, falsified=falsified, verdict=verdict,
        position=data.position.copy(), y=data.y.copy(), se=data.se.copy(), fitted=fitted,
        bump_fitted=_bump(bump, u), r0_fitted=model.r0(params), grid=data.grid.copy(), x_c_boot=np.array(boot_xc, dtype=float),
        bootstrap="samples" if use_samples else "curve points", n_boot=n_boot, level=level,
        seed=rng if isinstance(rng, (int, type(None))) else None,
        interpolation_error=table.interpolation_error, log_grid=data.log_grid,
    )


# =========================================================================== held-out prediction
@dataclass(frozen=True, eq=False)
class PromptData:
    """One prompt's empirical curve and its measured :math:`\\hat R_0(x)`."""

    name: str
    curve: tr.IndicatorCurve
    measured: MeasuredR0


@dataclass(frozen=True, eq=False, repr=False)
class HeldOutResult:
    r"""Peaks of held-out prompts predicted from their own measured :math:`\hat R_0(x)`.

    Attributes
    ----------
    link : {"measured", "measured_scaled"}
    params, params_ci : dict
        Parameters fitted on the training prompts and their bootstrap intervals.
    train, test : tuple of str
        Prompt names.
    predicted, predicted_ci, observed, observed_ci : ndarray (n_test,), (n_test, 2)
        Peak locations: predicted (theory with the fitted parameters on the prompt's own
        :math:`\hat R_0`), observed (:func:`~branching.transitions.find_peak`).
    predicted_height, predicted_height_ci, observed_height, observed_height_se : ndarray
        Peak heights (the ``statistic`` of the curve).
    covered, height_covered : ndarray of bool
        Whether prediction and observation agree within the level's normal quantile times
        the combined standard deviation (locations compared in :math:`\log x` on
        logarithmic curves).  The predicted location's deviation combines the bootstrap's
        with the grid's resolution, :math:`h^2/12` for the local split spacing :math:`h`
        (a predicted curve peaks at a split or between neighbours, so replicates can agree
        exactly while the location is only known to a spacing).
    statistic, level, n_boot, seed
    """

    link: str
    params: dict
    params_ci: dict
    train: tuple
    test: tuple
    predicted: np.ndarray
    predicted_ci: np.ndarray
    observed: np.ndarray
    observed_ci: np.ndarray
    predicted_height: np.ndarray
    predicted_height_ci: np.ndarray
    observed_height: np.ndarray
    observed_height_se: np.ndarray
    covered: np.ndarray
    height_covered: np.ndarray
    statistic: str
    level: float
    n_boot: int
    seed: int | None

    @property
    def coverage(self) -> tuple:
        """``(covered locations, number of held-out prompts)``."""
        return int(np.count_nonzero(self.covered)), int(self.covered.size)

    def to_pandas(self):
        """One row per held-out prompt."""
        import pandas as pd

        return pd.DataFrame({
            "prompt": list(self.test), "predicted": self.predicted,
            "predicted_low": self.predicted_ci[:, 0], "predicted_high": self.predicted_ci[:, 1],
            "observed": self.observed, "observed_low": self.observed_ci[:, 0],
            "observed_high": self.observed_ci[:, 1], "covered": self.covered,
            "predicted_height": self.predicted_height,
            "predicted_height_low": self.predicted_height_ci[:, 0],
            "predicted_height_high": self.predicted_height_ci[:, 1],
            "observed_height": self.observed_height, "observed_height_se": self.observed_height_se,
            "height_covered": self.height_covered,
        })

    def __repr__(self):
        k, n = self.coverage
        rows = "; ".join(
            f"{name}: predicted {p:.4g} [{lo:.4g}, {hi:.4g}] vs observed {o:.4g} [{olo:.4g}, {ohi:.4g}]"
            for name, p, (lo, hi), o, (olo, ohi) in zip(self.test, self.predicted, self.predicted_ci,
                                                       self.observed, self.observed_ci))
        params = ", ".join(f"{k_}={v:.4g}" for k_, v in self.params.items())
        return (f"HeldOutResult(link={self.link!r}, trained on {len(self.train)} prompts ({params}); "
                f"{rows}; covered {k}/{n} at {self.level:.0%})")


def _prompts(name, value) -> list:
    if isinstance(value, PromptData):
        value = [value]
    value = list(value)
    if not value or not all(isinstance(v, PromptData) for v in value):
        raise ValueError(f"{name} must be a non-empty sequence of PromptData")
    return value


def heldout_prediction(train, test, *, M: int, N: int, link: str = "measured_scaled",
                       n_boot: int = 200, level: float = 0.95, se_floor=None,
                       statistic: str = "normalized", table: TheoryTable | None = None,
                       rng=None) -> HeldOutResult:
    r"""Fit the measured link on training prompts; predict held-out prompts' peaks.

    Parameters
    ----------
    train, test : sequence of PromptData
        Prompts to fit on and prompts to predict (each with its own curve and measured
        :math:`\hat R_0(x)`).
    M, N : int
        Vocabulary size and number of generated tokens.
    link : {"measured", "measured_scaled"}
        Shared parameters: the amplitude, and for ``"measured_scaled"`` the scale ``s`` of
        :math:`R_0=s\hat R_0(x)`.
    n_boot : int
        Bootstrap replicates (``>= 2``).
    level : float
        Interval level.
    se_floor : float or "min_positive", optional
        As in :func:`fit_threshold`.
    statistic : {"normalized", "value"}
        The curve whose peak is predicted.
    table : TheoryTable, optional
        The theory's laws; default :func:`theory_table` ``(M, N)``.
    rng : None, int, SeedSequence or Generator
        Randomness of the bootstrap.

    Returns
    -------
    HeldOutResult
        The fitted shared parameters with their intervals, and for every held-out prompt
        the predicted and observed peak location and height with their intervals and
        whether they agree.

    Raises
    ------
    ValueError
        A link other than ``"measured"`` or ``"measured_scaled"``, ``n_boot < 2``, an empty
        ``train`` or ``test`` or one holding anything but :class:`PromptData`, too few
        usable splits in the training curves for the free parameters, or bad ``M``, ``N``,
        ``level``, ``statistic``.

    Notes
    -----
    The training fit is one weighted least-squares problem over all training curves.
    Each bootstrap replicate resamples every training curve (samples, or parametric when the
    curve has no per-sample terms), redraws every prompt's :math:`\log\hat R_0` from its
    Gaussian errors, refits, and predicts each held-out curve from its own redrawn
    :math:`\hat R_0`: the predicted interval holds both sources of uncertainty.  The
    observed peak and its interval are :func:`~branching.transitions.find_peak` of the whole
    held-out curve.

    Examples
    --------
    Three prompts whose curves are the theory's, with noise, at thresholds 0.8, 1.4 and 1.1;
    the third is predicted from its measured :math:`\hat R_0` alone:

    >>> import numpy as np
    >>> from dataclasses import replace
    >>> from branching import transitions as tr
    >>> grid, gen = np.geomspace(0.2, 5.0, 14), np.random.default_rng(0)
    >>> def prompt(name, x_c):
    ...     exact = tr.exact_indicator(np.log(theory_table(50, 4).laws(grid / x_c)), grid, log_grid=True)
    ...     se = np.full(exact.value.size, 0.02 * exact.value.max())
    ...     curve = replace(exact, value=gen.normal(exact.value, se), se=se, n_samples=100)
    ...     return PromptData(name, curve, MeasuredR0(grid, grid / x_c, 0.02 * grid / x_c))
    >>> train = [prompt("a", 0.8), prompt("b", 1.4)]
    >>> result = heldout_prediction(train, prompt("c", 1.1), M=50, N=4, n_boot=5, rng=0)
    >>> round(result.params["s"], 1), result.coverage
    (1.0, (1, 1))
    """
    M, N, link, n_boot, level, _ = _check_common(M, N, link, n_boot, level, 0.05)
    if link not in ("measured", "measured_scaled"):
        raise ValueError(f"link must be 'measured' or 'measured_scaled' for a held-out prediction, got {link!r}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2 for predicted intervals, got {n_boot}")
    statistic = check.choice("statistic", statistic, ("normalized", "value"))
    train, test = _prompts("train", train), _prompts("test", test)
    table = theory_table(M, N) if table is None else table
    gen = np.random.default_rng(rng)
    boot_gen, peak_gen = gen.spawn(2)

    def models_for(prompts, draws=None):
        out = []
        for i, pr in enumerate(prompts):
            data = _curve_data(pr.curve, se_floor, name=f"{pr.name}.curve", window=pr.measured.x_range)
            log_r0 = None if draws is None else pr.measured.log_r0_at(data.grid, draws[i])
            out.append(_TheoryModel(table, data, link, pr.measured, log_r0))
        return out

    train_models = models_for(train)
    n_points = sum(m.data.y.size for m in train_models)
    n_params = _N_LINK_PARAMS[link] + 1
    if n_points <= n_params:
        raise ValueError(f"train has {n_points} usable splits in all; need more than {n_params}")
    ys = [m.data.y for m in train_models]
    ses = [m.data.se for m in train_models]
    params, _, start = _fit_models(train_models, ys, ses, link)

    def predict(model, p):
        d = model.data
        with np.errstate(divide="ignore"):
            log_q = np.log(table.laws(model.r0(p)))
        curve = tr.exact_indicator(log_q, d.grid, L=d.L, measure=d.measure, log_grid=d.log_grid)
        peak = tr.find_peak(curve, statistic=statistic)
        return peak.location, p[-1] * peak.height

    test_models = models_for(test)
    point = np.array([predict(m, params) for m in test_models])
    boot_loc = np.empty((n_boot, len(test)))
    boot_height = np.empty((n_boot, len(test)))
    boot_params = []
    for b in range(n_boot):
        draws = [pr.measured.draws(1, boot_gen)[0] for pr in train]
        models_b = models_for(train, draws)
        ys_b = [m.data.resampled(boot_gen) if m.data.log_ratio is not None
                else m.predict(params) + m.data.se * boot_gen.standard_normal(m.data.y.size)
                for m in train_models]
        p_b, _, _ = _fit_models(models_b, ys_b, ses, link, start=start)
        boot_params.append(_natural(link, p_b))
        test_draws = [pr.measured.draws(1, boot_gen)[0] for pr in test]
        for i, m in enumerate(models_for(test, test_draws)):
            boot_loc[b, i], boot_height[b, i] = predict(m, p_b)

    names = _PARAM_NAMES[link]
    boot_params = np.array(boot_params)
    z = float(stats.norm.ppf(0.5 + 0.5 * level))
    observed, observed_ci, obs_h, obs_h_se, covered, h_covered = [], [], [], [], [], []
    pred_ci, pred_h_ci = [], []
    for i, (pr, m) in enumerate(zip(test, test_models)):
        peak = tr.find_peak(pr.curve, statistic=statistic, n_boot=max(n_boot, 2), level=level,
                            rng=peak_gen)
        to_u = np.log if m.data.log_grid else (lambda v: v)
        # the predicted peak sits on a discrete grid of splits: add the resolution of a
        # uniform error over one local split spacing h (variance h^2/12) to the bootstrap's
        u_pos = to_u(m.data.position)
        j = int(np.argmin(np.abs(u_pos - to_u(point[i, 0]))))
        h = float(np.diff(u_pos)[min(j, u_pos.size - 2)]) if u_pos.size > 1 else 0.0
        se_pred = math.sqrt(float(np.var(to_u(boot_loc[:, i]), ddof=1)) + h * h / 12.0)
        lo_u, hi_u = to_u(peak.location_ci[0]), to_u(peak.location_ci[1])
        se_obs = float(hi_u - lo_u) / (2.0 * z)  # half-width of the interval in units of z
        diff = abs(float(to_u(point[i, 0]) - to_u(peak.location)))
        covered.append(diff <= z * math.hypot(se_pred, se_obs))
        se_h = float(np.std(boot_height[:, i], ddof=1))
        h_covered.append(abs(point[i, 1] - peak.height) <= z * math.hypot(se_h, peak.height_se))
        observed.append(peak.location)
        observed_ci.append(peak.location_ci)
        obs_h.append(peak.height)
        obs_h_se.append(peak.height_se)
        pred_ci.append(_interval(boot_loc[:, i], level))
        pred_h_ci.append(_interval(boot_height[:, i], level))
    return HeldOutResult(
        link=link, params={n: float(v) for n, v in zip(names, _natural(link, params))},
        params_ci={n: _interval(boot_params[:, j], level) for j, n in enumerate(names)},
        train=tuple(pr.name for pr in train), test=tuple(pr.name for pr in test),
        predicted=point[:, 0], predicted_ci=np.array(pred_ci), observed=np.array(observed),
        observed_ci=np.array(observed_ci), predicted_height=point[:, 1],
        predicted_height_ci=np.array(pred_h_ci), observed_height=np.array(obs_h),
        observed_height_se=np.array(obs_h_se), covered=np.array(covered),
        height_covered=np.array(h_covered), statistic=statistic, level=level, n_boot=n_boot,
        seed=rng if isinstance(rng, (int, type(None))) else None,
    )


# =========================================================================== three routes
def threshold_routes(fit: ThresholdFit, measured: MeasuredR0 | None, curve, *, n_boot: int = 500,
                     rng=None):
    r"""The three routes to the threshold, side by side, at the fit's level.

    Parameters
    ----------
    fit : ThresholdFit
        Route (i): the fitted :math:`x_c` of the distance curve.
    measured : MeasuredR0 or None
        Route (ii): the crossing of the measured :math:`\hat R_0(x)` with 1 (omitted if None).
    curve : IndicatorCurve
        Route (iii): the empirical curve's peak (:func:`~branching.transitions.find_peak`).
    n_boot : int
        Replicates for routes (ii) and (iii), ``>= 2``.
    rng : None, int, SeedSequence or Generator
        Randomness of the bootstraps of routes (ii) and (iii).

    Returns
    -------
    pandas.DataFrame
        Columns ``route``, ``estimate``, ``ci_low``, ``ci_high``, ``level``, ``what``; one
        row per route, then a row ``"fitted theory peak"`` (the split where the fitted
        theory curve is largest, without an interval).

    Raises
    ------
    ValueError
        ``fit`` is not a :class:`ThresholdFit`, or ``n_boot`` is not an integer ``>= 2``.

    Notes
    -----
    Routes (i) and (ii) estimate :math:`R_0(x_c)=1`.  Route (iii) estimates where the
    output law changes fastest, which the theory places above :math:`R_0=1`
    (at :math:`R_0-1\approx0.3/N` to :math:`0.5/N` for the linear measure), so it is not an
    estimate of the same point; the fitted theory curve's own peak is listed as well.

    Examples
    --------
    A noisy theory curve whose link crosses :math:`R_0=1` at ``x = 1.1``, and the measured
    :math:`\hat R_0(x)=x/1.1`:

    >>> import numpy as np
    >>> from dataclasses import replace
    >>> from branching import transitions as tr
    >>> grid = np.geomspace(0.2, 5.0, 14)
    >>> exact = tr.exact_indicator(np.log(theory_table(50, 4).laws(grid / 1.1)), grid, log_grid=True)
    >>> se = np.full(exact.value.size, 0.02 * exact.value.max())
    >>> curve = replace(exact, value=np.random.default_rng(0).normal(exact.value, se), se=se, n_samples=100)
    >>> fit = fit_threshold(curve, M=50, N=4, n_boot=20, rng=1)
    >>> measured = MeasuredR0(grid, grid / 1.1, 0.02 * grid / 1.1)
    >>> routes = threshold_routes(fit, measured, curve, n_boot=20, rng=2)
    >>> routes["route"].tolist()
    ['(i) fitted x_c', '(ii) measured R0 crossing', '(iii) empirical peak', 'fitted theory peak']
    >>> routes["estimate"].round(1).tolist()
    [1.1, 1.1, 1.3, 1.3]
    """
    import pandas as pd

    if not isinstance(fit, ThresholdFit):
        raise ValueError(f"fit must be a ThresholdFit, got {type(fit).__name__}")
    n_boot = check.integer("n_boot", n_boot, low=2)
    gen = np.random.default_rng(rng)
    cross_gen, peak_gen = gen.spawn(2)
    rows = [("(i) fitted x_c", fit.x_c, *fit.x_c_ci,
             f"theory ({fit.link} link) fitted to the {fit.measure} distance curve")]
    if measured is not None:
        xc, (lo, hi) = measured.crossing_ci(level=fit.level, n_boot=n_boot, rng=cross_gen)
        what = "measured R0(x) = 1 (list decoder)"
        side = measured.side()
        if side != "crosses":
            a, b = measured.x_range
            what = (f"no crossing in [{a:.4g}, {b:.4g}]: measured R0 {side} 1 throughout "
                    f"(list decoder); the interval is where draws place it")
        rows.append(("(ii) measured R0 crossing", xc, lo, hi, what))
    peak = tr.find_peak(curve, n_boot=n_boot, level=fit.level, rng=peak_gen)
    rows.append(("(iii) empirical peak", peak.location, *peak.location_ci,
                 "maximum of the empirical distance curve (find_peak)"))
    j = int(np.argmax(fit.fitted))
    r0_split = math.sqrt(fit.r0_fitted[j + fit.L - 1] * fit.r0_fitted[j + fit.L])
    rows.append(("fitted theory peak", float(fit.position[j]), math.nan, math.nan,
                 f"split where the fitted theory curve is largest (R0 = {r0_split:.3g} there)"))
    frame = pd.DataFrame(rows, columns=["route", "estimate", "ci_low", "ci_high", "what"])
    frame.insert(4, "level", fit.level)
    return frame
