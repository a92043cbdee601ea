r"""Finite-size analysis: locate the threshold and the critical exponents from curves.

The horizon :math:`T` of the list decoder plays the role of the system size.  Near the
threshold a statistic :math:`y_T(R_0)` measured at several horizons obeys the
finite-size-scaling form

.. math::  y_T(R_0) \simeq F\bigl(T^{1/\nu}\,(R_0 - R_{0,c})\bigr),

so curves for different :math:`T` cross at :math:`R_{0,c}` and collapse onto one master
curve :math:`F` when plotted against :math:`x = T^{1/\nu}(R_0-R_{0,c})`.  For the branching
model the mean-field values are :math:`R_{0,c}=1` and :math:`\nu=1`; e.g.
:math:`\mathbb E Z_T/(\lambda T)\to(e^x-1)/x` with :math:`x=T(R_0-1)` -- but this
statistic is exactly 1 at :math:`R_0=1` for every :math:`T` and :math:`\nu=1` follows from
:math:`m^T=(1+x/T)^T`, so it checks the machinery rather than locating anything.  A
statistic without such an identity is :math:`T\,\mathbb E[1/(1+Z_T)]` (the accuracy of a
uniform final choice times :math:`T`): bounded below the threshold times :math:`T`,
exponentially small above it, tending to :math:`2/\sigma^2` at it.  Away from the
threshold, power laws give the exponents: the survival probability of one erroneous
lineage grows as :math:`(R_0-1)^{\beta}` and the susceptibility (:math:`\mathbb E Z_\infty`
or the mean total progeny) diverges as :math:`|R_0-1|^{-\gamma}`, with :math:`\beta=\gamma=1`.

Nothing here knows these answers: every function takes a grid of :math:`R_0` values and
curves (estimates and standard errors) and returns estimates with confidence intervals.

* :func:`crossing_points` -- crossings of curves of successive horizons, by interpolation,
  with a parametric bootstrap over the standard errors and an extrapolation to
  :math:`T\to\infty`.
* :func:`scaling_collapse` -- :math:`R_{0,c}` and :math:`\nu` minimising a collapse quality
  measure, with bootstrap confidence intervals widened by systematic terms.
* :func:`fit_exponent` -- a weighted power-law fit :math:`y = A\,\delta^{p}e^{b\delta}`,
  :math:`\delta = |R_0-R_{0,c}|`, with :math:`R_{0,c}` fixed or free, and Wald intervals
  widened by a range systematic.

Curves are passed as ``curves_by_T``: a mapping from horizon to either an array of values
(exact curves, standard errors 0) or an array of shape ``(2, n)`` holding values and
standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import optimize, stats

from . import validation as check
from .seeding import seed_sequence

__all__ = [
    "CrossingResult",
    "CollapseResult",
    "ExponentFit",
    "crossing_points",
    "scaling_collapse",
    "fit_exponent",
]

_Z_CLIP = 3.0  # cap on the evidence one point contributes to locating a crossing
_OUTSIDE = 1e300  # objective value outside the admissible region (finite for Nelder-Mead)


# --------------------------------------------------------------------------- input
def _grid(name: str, r0) -> np.ndarray:
    r = check.array(name, r0, ndim=1)
    if r.size < 4:
        raise ValueError(f"{name} needs at least 4 points, got {r.size}")
    steps = np.diff(r)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise ValueError(f"{name} must be strictly increasing; entries {i} and {i + 1} are "
                         f"{float(r[i])!r} and {float(r[i + 1])!r}")
    return r


def _curves(r0_grid, curves_by_T) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(r, T, Y, V)``: grid, sorted horizons, values (nT, n) and variances (nT, n)."""
    r = _grid("r0_grid", r0_grid)
    if not isinstance(curves_by_T, Mapping):
        raise ValueError(f"curves_by_T must be a mapping horizon -> curve, got {check._show(curves_by_T)}")
    if len(curves_by_T) < 2:
        raise ValueError(f"curves_by_T needs curves for at least 2 horizons, got {len(curves_by_T)}")
    rows = []
    for key, curve in curves_by_T.items():
        T = check.real("horizon T (a key of curves_by_T)", key, low=0.0, low_open=True)
        arr = check.array(f"curves_by_T[{key!r}]", curve)
        if arr.ndim == 1:
            values, se = arr, np.zeros_like(arr)
        elif arr.ndim == 2 and arr.shape[0] == 2:
            values, se = arr
        else:
            raise ValueError(f"curves_by_T[{key!r}] must be values of shape (n,) or "
                             f"(values, se) of shape (2, n); got shape {arr.shape}")
        if values.shape != r.shape:
            raise ValueError(f"curves_by_T[{key!r}] has {values.size} points but r0_grid has {r.size}")
        if np.any(se < 0):
            raise ValueError(f"curves_by_T[{key!r}] has a negative standard error "
                             f"at index {int(np.argmax(se < 0))}")
        rows.append((T, values, se))
    rows.sort(key=lambda row: row[0])
    T = np.array([row[0] for row in rows])
    if np.any(np.diff(T) == 0):
        raise ValueError(f"curves_by_T has repeated horizons: {T.tolist()}")
    Y = np.array([row[1] for row in rows])
    V = np.array([row[2] for row in rows]) ** 2
    return r, T, Y, V


def _confidence(confidence) -> float:
    return check.real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)


def _horizon(T: float):
    return int(T) if float(T).is_integer() else float(T)


# --------------------------------------------------------------------------- crossings
def _bracket(d: np.ndarray, w: np.ndarray) -> int:
    """Index ``k`` of the bracket ``[r_k, r_{k+1}]`` holding the sign change of ``d``.

    The split that best separates points of one sign from points of the other, each point
    weighted by its z-score ``d / w`` clipped to +-3 (so one noisy point cannot move it).
    """
    z = np.clip(np.where(w > 0, d / np.where(w > 0, w, 1.0), np.sign(d) * _Z_CLIP),
                -_Z_CLIP, _Z_CLIP)
    cum = np.cumsum(z)
    return int(np.argmax(np.abs(cum[-1] - 2.0 * cum[:-1])))


def _crossing(r: np.ndarray, d: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Zero of ``d`` over ``r``: ``(cubic, linear)`` interpolations inside the bracket.

    The cubic goes through the 4 grid points around the bracket; if it has no root inside
    the bracket, the linear interpolation is used for both.
    """
    k = _bracket(d, w)
    d0, d1 = d[k], d[k + 1]
    frac = d0 / (d0 - d1) if d0 != d1 else 0.5
    linear = float(r[k] + min(max(frac, 0.0), 1.0) * (r[k + 1] - r[k]))
    start = min(max(k - 1, 0), r.size - 4)
    xs, ys = r[start:start + 4] - r[k], d[start:start + 4]
    roots = np.roots(np.polyfit(xs, ys, 3)) + r[k]
    real = roots[np.abs(roots.imag) <= 1e-9 * (1 + np.abs(roots.real))].real
    inside = real[(real >= r[k]) & (real <= r[k + 1])]
    if inside.size == 0:
        return linear, linear
    return float(inside[np.argmin(np.abs(inside - linear))]), linear


@dataclass(frozen=True, repr=False, eq=False)
class CrossingResult:
    """Crossings of curves of successive horizons and the threshold they point to.

    Attributes
    ----------
    horizons : tuple of (T_small, T_large)
        The pairs of successive horizons.
    crossings, crossing_ci : arrays of shape (n_pairs,) and (n_pairs, 2)
        Crossing location of each pair and its confidence interval.
    interpolation_error : array of shape (n_pairs,)
        Difference between the cubic and the linear interpolation of the crossing (it
        widens the intervals; it dominates for exact curves).
    threshold, threshold_ci : float and (float, float)
        The threshold estimate and its interval: the intercept of a weighted straight-line
        fit of the crossings against ``1/sqrt(T_small*T_large)`` when ``extrapolated``,
        otherwise the weighted mean of the crossings.
    extrapolated : bool
        Whether the threshold is the extrapolation to infinite horizon.
    confidence, n_boot : float, int
        Confidence level and number of bootstrap replicates used.
    """

    horizons: tuple
    crossings: np.ndarray = field(repr=False)
    crossing_ci: np.ndarray = field(repr=False)
    interpolation_error: np.ndarray = field(repr=False)
    threshold: float
    threshold_ci: tuple
    extrapolated: bool
    confidence: float
    n_boot: int

    def to_pandas(self):
        """One row per pair of horizons (pandas is imported here)."""
        import pandas as pd

        return pd.DataFrame({
            "T_small": [a for a, _ in self.horizons],
            "T_large": [b for _, b in self.horizons],
            "crossing": self.crossings,
            "ci_low": self.crossing_ci[:, 0],
            "ci_high": self.crossing_ci[:, 1],
            "interpolation_error": self.interpolation_error,
        })

    def __repr__(self):
        lo, hi = self.threshold_ci
        how = (f"extrapolated from {len(self.crossings)} crossings" if self.extrapolated
               else f"mean of {len(self.crossings)} crossings")
        return (f"CrossingResult(threshold={self.threshold:.6g} "
                f"[{lo:.6g}, {hi:.6g}] ({self.confidence:.0%}), {how})")


def crossing_points(
    r0_grid,
    curves_by_T: Mapping,
    *,
    extrapolate: bool = True,
    confidence: float = 0.95,
    n_boot: int = 1000,
    rng=None,
) -> CrossingResult:
    r"""Crossings of curves for successive horizons, and the threshold they extrapolate to.

    Parameters
    ----------
    r0_grid : array of shape (n,)
        Strictly increasing control parameter (at least 4 points).
    curves_by_T : mapping horizon -> array
        For each horizon ``T`` (at least 2), the curve over ``r0_grid``: values of shape
        ``(n,)`` (exact, se 0) or ``(values, se)`` of shape ``(2, n)``.  The statistic must
        be scale invariant at the threshold, e.g. :math:`T\,\mathbb E[1/(1+Z_T)]`, which
        tends to :math:`2/\sigma^2` at :math:`R_0=1` with no finite-:math:`T` identity.
        (:math:`\mathbb E Z_T/(\lambda T)` equals 1 at :math:`R_0=1` for every :math:`T` by
        construction: its crossing there is an identity, not a measurement.)
    extrapolate : bool
        With 3 or more horizons, extrapolate the crossings to :math:`T\to\infty` by a
        weighted straight-line fit against :math:`1/\sqrt{T_aT_b}`; otherwise (or with 2
        horizons) report the weighted mean of the crossings.
    confidence : float
        Confidence level of the intervals.
    n_boot : int
        Parametric bootstrap replicates (values redrawn as independent normals with the
        given standard errors); not used when every se is 0.
    rng : None, int, SeedSequence or Generator
        Randomness of the bootstrap.

    Returns
    -------
    CrossingResult

    Notes
    -----
    For each pair :math:`(T_a, T_b)` the difference :math:`d = y_{T_b} - y_{T_a}` is
    bracketed at the split of the grid that best separates its signs (points weighted by
    :math:`d/\mathrm{se}_d` clipped to :math:`\pm 3`, so a single noisy point cannot move
    the bracket), and the crossing is the root inside the bracket of the cubic through the
    four surrounding grid points.  Intervals are bootstrap percentile intervals, widened on
    both sides by the difference between cubic and linear interpolation (and by a numerical
    resolution of :math:`10^{-9}` of the grid's span), so exact curves get honest
    intervals.  The extrapolation's interval is also scaled by
    :math:`\sqrt{\chi^2/\mathrm{dof}}` when the straight line misfits.  A ValueError is
    raised if some pair of curves has no sign change of :math:`d` on the grid.

    Examples
    --------
    >>> import numpy as np
    >>> from branching.scaling import crossing_points
    >>> r = np.linspace(0.8, 1.2, 40)  # E[Z_T]/(lambda T) of the base model, closed form:
    >>> curves = {T: np.expm1(T * np.log(r)) / ((r - 1) * T) for T in (10, 20, 40)}
    >>> fit = crossing_points(r, curves)
    >>> fit.threshold_ci[0] < 1 < fit.threshold_ci[1], round(fit.threshold, 4)
    (True, 1.0)
    """
    r, T, Y, V = _curves(r0_grid, curves_by_T)
    confidence = _confidence(confidence)
    n_boot = check.integer("n_boot", n_boot, low=10)
    extrapolate = bool(extrapolate)
    n_pairs = T.size - 1
    W = np.sqrt(V[1:] + V[:-1])  # se of each difference, (n_pairs, n)
    D = Y[1:] - Y[:-1]
    resolution = 1e-9 * (r[-1] - r[0])

    linear = np.empty(n_pairs)
    crossings = np.empty(n_pairs)
    for j in range(n_pairs):
        sign = np.sign(D[j])
        if not np.any(sign[:-1] * sign[1:] <= 0):
            raise ValueError(f"the curves for T={_horizon(T[j])} and T={_horizon(T[j + 1])} "
                             f"do not cross inside r0_grid [{float(r[0])!r}, {float(r[-1])!r}]")
        crossings[j], linear[j] = _crossing(r, D[j], W[j])
    interp = np.abs(crossings - linear) + resolution

    noisy = bool(np.any(V > 0))
    alpha = 1.0 - confidence
    if noisy:
        gen = np.random.default_rng(seed_sequence(rng))
        boot = np.empty((n_boot, n_pairs))
        sd = np.sqrt(V)
        for b in range(n_boot):
            Yb = Y + sd * gen.standard_normal(Y.shape)
            for j in range(n_pairs):
                boot[b, j] = _crossing(r, Yb[j + 1] - Yb[j], W[j])[0]
    else:
        boot = np.repeat(crossings[None], 2, axis=0)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    crossing_ci = np.column_stack([np.minimum(lo, crossings) - interp,
                                   np.maximum(hi, crossings) + interp])
    var = boot.var(axis=0) + interp**2

    use_fit = extrapolate and n_pairs >= 2
    if use_fit:
        u = 1.0 / np.sqrt(T[:-1] * T[1:])
        X = np.column_stack([np.ones(n_pairs), u])
        weights = 1.0 / var
        hat = np.linalg.solve(X.T @ (weights[:, None] * X), (X * weights[:, None]).T)[0]
        estimate = float(hat @ crossings)
        boot_estimates = boot @ hat
        shift = abs(float(hat @ linear) - estimate) + resolution
        dof = n_pairs - 2
        coef = np.linalg.lstsq(np.sqrt(weights)[:, None] * X, np.sqrt(weights) * crossings,
                               rcond=None)[0]
        chi2 = float(np.sum(weights * (crossings - X @ coef) ** 2))
        inflate = math.sqrt(max(1.0, chi2 / dof)) if dof > 0 else 1.0
    else:
        weights = 1.0 / var
        hat = weights / weights.sum()
        estimate = float(hat @ crossings)
        boot_estimates = boot @ hat
        shift = float(hat @ interp)
        inflate = 1.0
    b_lo, b_hi = np.quantile(boot_estimates, [alpha / 2, 1 - alpha / 2])
    low = estimate - inflate * max(estimate - b_lo, 0.0) - shift
    high = estimate + inflate * max(b_hi - estimate, 0.0) + shift
    return CrossingResult(
        horizons=tuple((_horizon(a), _horizon(b)) for a, b in zip(T[:-1], T[1:])),
        crossings=crossings, crossing_ci=crossing_ci, interpolation_error=interp,
        threshold=estimate, threshold_ci=(float(low), float(high)), extrapolated=use_fit,
        confidence=confidence, n_boot=n_boot if noisy else 0,
    )


# --------------------------------------------------------------------------- collapse
def _lagrange_weights(q: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Weights of the Lagrange interpolant through ``nodes`` (shape (N, 2) or (N, 4)) at ``q``."""
    d = q[:, None] - nodes
    if nodes.shape[1] == 2:
        t = d[:, 0] / (nodes[:, 1] - nodes[:, 0])
        return np.column_stack([1.0 - t, t])
    x0, x1, x2, x3 = nodes.T
    d0, d1, d2, d3 = d.T
    a01, a02, a03, a12, a13, a23 = x0 - x1, x0 - x2, x0 - x3, x1 - x2, x1 - x3, x2 - x3
    return np.column_stack([
        d1 * d2 * d3 / (a01 * a02 * a03),
        -d0 * d2 * d3 / (a01 * a12 * a13),
        d0 * d1 * d3 / (a02 * a12 * a23),
        -d0 * d1 * d2 / (a03 * a13 * a23),
    ])


class _CollapseQuality:
    r"""Pairwise collapse quality :math:`S(R_{0,c}, \nu, b, c)` of curves on a common grid.

    Every point of curve :math:`i` is compared with the local cubic (4-point Lagrange;
    ``nodes=2``: linear) interpolation of every other curve :math:`k` at the same scaling
    variable, and :math:`S` is the mean of ``residual^2 / variance`` over all such
    comparisons, the variance combining both points' standard errors (propagated through
    the interpolation weights) and a precision floor ``rtol * (|y| + median|Y|)``, which
    keeps points with zero standard error (and exact curves) usable.
    """

    def __init__(self, r, T, Y, V, x_range, rtol, nodes=4):
        self.r, self.logT, self.Y, self.V = r, np.log(T), Y, V
        self.x_range, self.rtol, self.nodes = x_range, rtol, nodes
        scale = float(np.median(np.abs(Y)))
        self.scale = scale if scale > 0 else float(np.max(np.abs(Y))) or 1.0
        pairs = [(i, k) for i in range(T.size) for k in range(T.size) if i != k]
        self.I = np.array([p[0] for p in pairs])
        self.K = np.array([p[1] for p in pairs])

    def field(self, rc, b, c):
        d = self.r - rc
        return d + c * d * d, 1.0 + b * d

    def __call__(self, rc, nu, b=0.0, c=0.0, Y=None) -> float:
        Y = self.Y if Y is None else Y
        u, g = self.field(rc, b, c)
        if np.any(np.diff(u) <= 0) or np.any(g <= 0):
            return np.inf
        Yc, Vc = Y / g, self.V / (g * g)
        with np.errstate(over="ignore", invalid="ignore"):  # huge T**(1/nu): no overlap
            ratio = np.exp((self.logT[self.I] - self.logT[self.K]) / nu)
            q = ratio[:, None] * u[None, :]
            valid = (q >= u[0]) & (q <= u[-1])
            if self.x_range is not None:
                x = np.exp(self.logT / nu)[:, None] * u[None, :]
                inside = (x >= self.x_range[0]) & (x <= self.x_range[1])
                if np.any(inside.sum(axis=1) < 4):
                    return np.inf  # every curve needs 4 points in the window
                valid &= inside[self.I]
        p, j = np.nonzero(valid)
        if np.any(np.bincount(self.I[p], minlength=self.logT.size) < 2):
            return np.inf  # every curve must take part in the comparison
        qv = q[p, j]
        n = u.size
        left = np.clip(np.searchsorted(u, qv, side="right") - 1, 0, n - 2)
        idx = np.clip(left - (self.nodes // 2 - 1), 0, n - self.nodes)[:, None] \
            + np.arange(self.nodes)
        weights = _lagrange_weights(qv, u[idx])
        k = self.K[p][:, None]
        y_int = np.sum(weights * Yc[k, idx], axis=1)
        v_int = np.sum(weights**2 * Vc[k, idx], axis=1)
        y_own, v_own = Yc[self.I[p], j], Vc[self.I[p], j]
        resid = y_own - y_int
        floor = self.rtol * (0.5 * (np.abs(y_own) + np.abs(y_int)) + self.scale)
        return float(np.mean(resid**2 / (v_own + v_int + floor**2)))


@dataclass(frozen=True, repr=False, eq=False)
class CollapseResult:
    r"""A finite-size scaling collapse :math:`y_T/g(R_0) = F(T^{1/\nu}u(R_0))`.

    Attributes
    ----------
    r0_c, r0_c_ci : float and (float, float)
        Threshold estimate and its confidence interval (a zero-width interval at the given
        value when it was fixed).
    nu, nu_ci : float and (float, float)
        Exponent estimate and interval.
    corrections : tuple (b, c) or None
        Analytic corrections when fitted: :math:`g = 1 + b(R_0-R_{0,c})`,
        :math:`u = (R_0-R_{0,c}) + c(R_0-R_{0,c})^2`.
    quality : float
        The collapse quality :math:`S` at the optimum (about 1 for a collapse consistent
        with the standard errors).
    systematic : dict
        For ``"r0_c"`` and ``"nu"``: the ``"interpolation"`` and ``"finite_size"``
        systematic terms added to each side of the interval.
    horizons, r0_grid : tuple and array
    x, y, se : arrays of shape (n_horizons, n)
        The collapsed data: scaling variable, corrected values, corrected standard errors.
    fixed : tuple of str
        Parameters that were held fixed.
    confidence, n_boot, x_range, rtol
        Settings used.
    """

    r0_c: float
    r0_c_ci: tuple
    nu: float
    nu_ci: tuple
    corrections: tuple | None
    quality: float
    systematic: dict
    horizons: tuple
    r0_grid: np.ndarray = field(repr=False)
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    se: np.ndarray = field(repr=False)
    fixed: tuple = ()
    confidence: float = 0.95
    n_boot: int = 0
    x_range: tuple | None = None
    rtol: float = 1e-3

    def to_pandas(self):
        """The collapsed data, one row per horizon and grid point (pandas imported here)."""
        import pandas as pd

        n = self.r0_grid.size
        return pd.DataFrame({
            "T": np.repeat(np.array(self.horizons, dtype=object), n),
            "r0": np.tile(self.r0_grid, len(self.horizons)),
            "x": self.x.ravel(), "y": self.y.ravel(), "se": self.se.ravel(),
        })

    def __repr__(self):
        def show(name, est, ci):
            return f"{name}={est:.6g} [{ci[0]:.6g}, {ci[1]:.6g}]"

        extra = "" if self.corrections is None else \
            f", corrections=(b={self.corrections[0]:.3g}, c={self.corrections[1]:.3g})"
        return (f"CollapseResult({show('r0_c', self.r0_c, self.r0_c_ci)}, "
                f"{show('nu', self.nu, self.nu_ci)} ({self.confidence:.0%}), "
                f"quality={self.quality:.4g}{extra}, horizons={list(self.horizons)})")


def _nelder_mead(fun, start, steps, *, restarts=3):
    """Nelder-Mead in units of ``steps`` around ``start``, restarted until it stalls.

    The initial simplex has one edge of length ``steps[i]`` along each parameter; a restart
    builds a fresh simplex, which escapes a collapsed one.
    """
    start = np.asarray(start, dtype=float)
    steps = np.asarray(steps, dtype=float)

    def scaled(z):
        return fun(start + steps * z)

    best = np.zeros_like(start)
    value = scaled(best)
    for _ in range(restarts):
        simplex = np.vstack([best, best + np.eye(best.size)])
        res = optimize.minimize(scaled, best, method="Nelder-Mead",
                                options={"initial_simplex": simplex, "xatol": 1e-4,
                                         "fatol": 1e-10 * max(1.0, abs(value)), "maxfev": 3000})
        improved = res.fun < value - 1e-9 * max(1.0, abs(value))
        if res.fun < value:
            best, value = res.x, res.fun
        if not improved:
            break
    return start + steps * best, value


def _fit_collapse(quality, r, free, fixed, corrections, Y=None, start=None):
    """Minimise the quality over the free parameters.

    Returns ``(rc, nu, b, c, S, theta)``.  Without ``start``: a grid search over
    ``rc`` in the grid and ``nu`` in [1/4, 4], then Nelder-Mead (first without, then with
    the corrections); with ``start`` (a previous ``theta``): Nelder-Mead from there.
    """
    names = [n for n in ("rc", "lognu") if n in free] + (["b", "c"] if corrections else [])
    lo, hi = r[0], r[-1]
    span = hi - lo
    steps = {"rc": span / 20, "lognu": 0.1, "b": 0.5 / span, "c": 0.5 / span}

    def unpack(theta):
        values = {"b": 0.0, "c": 0.0, **fixed}
        values.update(zip(names, theta))
        return values

    def fun(theta):
        v = unpack(theta)
        if not (lo <= v["rc"] <= hi) or not (-3.0 <= v["lognu"] <= 3.0):
            return _OUTSIDE
        value = quality(v["rc"], math.exp(v["lognu"]), v["b"], v["c"], Y=Y)
        return value if math.isfinite(value) else _OUTSIDE

    if not names:
        theta, value = np.array([]), fun([])
    elif start is not None:
        theta, value = _nelder_mead(fun, start, [0.2 * steps[n] for n in names])
    else:
        rcs = np.linspace(lo, hi, 23)[1:-1] if "rc" in free else [fixed["rc"]]
        lognus = np.log(np.geomspace(0.25, 4.0, 9)) if "lognu" in free else [fixed["lognu"]]
        _, rc0, ln0 = min(((quality(rc, math.exp(ln), Y=Y), rc, ln) for rc in rcs for ln in lognus),
                          key=lambda item: item[0])
        guess = {"rc": rc0, "lognu": ln0, "b": 0.0, "c": 0.0}
        main = [n for n in names if n in ("rc", "lognu")]
        if main and corrections:
            theta, _ = _nelder_mead(lambda t: fun(list(t) + [0.0, 0.0]),
                                    [guess[n] for n in main], [steps[n] for n in main])
            guess.update(zip(main, theta))
        theta, value = _nelder_mead(fun, [guess[n] for n in names], [steps[n] for n in names])
    v = unpack(theta)
    return v["rc"], math.exp(v["lognu"]), v["b"], v["c"], value, np.asarray(theta)


def scaling_collapse(
    r0_grid,
    curves_by_T: Mapping,
    *,
    r0_c: float | None = None,
    nu: float | None = None,
    corrections: bool = False,
    x_range: tuple | None = None,
    confidence: float = 0.95,
    n_boot: int = 100,
    rtol: float = 1e-3,
    rng=None,
) -> CollapseResult:
    r"""Fit :math:`R_{0,c}` and :math:`\nu` by collapsing curves of several horizons.

    Parameters
    ----------
    r0_grid : array of shape (n,)
        Strictly increasing control parameter (at least 4 points).
    curves_by_T : mapping horizon -> array
        Curves as in :func:`crossing_points` (at least 2 horizons).
    r0_c, nu : float, optional
        Hold the threshold or the exponent fixed at this value instead of fitting it.
    corrections : bool
        Also fit the leading analytic corrections to scaling: a regular background
        :math:`g = 1 + b\,\delta` dividing the values and a nonlinear scaling field
        :math:`u = \delta + c\,\delta^2`, :math:`\delta = R_0-R_{0,c}`.
    x_range : (float, float), optional
        Use only points whose scaling variable lies in this window (at least 4 points of
        every curve must lie in it).
    confidence : float
        Confidence level of the intervals.
    n_boot : int
        Parametric bootstrap replicates (0 or unused when every se is 0).
    rtol : float
        Precision floor of the quality measure, > 0: each comparison's standard deviation
        includes ``rtol * (|y| + median|y|)``.
    rng : None, int, SeedSequence or Generator
        Randomness of the bootstrap.

    Returns
    -------
    CollapseResult

    Notes
    -----
    With :math:`x_{T}(R_0) = T^{1/\nu}u(R_0)`, the quality

    .. math::  S = \frac{1}{N}\sum_{i\ne k}\sum_{j}
               \frac{\bigl(y_{ij} - \hat y_k(x_{ij})\bigr)^2}
                    {\sigma_{ij}^2 + \hat\sigma_k^2(x_{ij})
                     + \bigl(\mathrm{rtol}\,(\bar y + \tilde y)\bigr)^2},

    sums over points :math:`j` of curve :math:`i` inside the range of curve :math:`k`,
    where :math:`\hat y_k` is the local cubic interpolation of curve :math:`k`,
    :math:`\bar y` the mean magnitude of the two values compared and :math:`\tilde y` the
    median magnitude of all values (a pairwise variant of the Houdayer-Hartmann measure).
    It is minimised by a grid search over :math:`R_{0,c}\in` the grid and
    :math:`\nu\in[1/4, 4]` followed by Nelder-Mead (on :math:`\log\nu`).  Intervals are
    normal intervals with the parametric-bootstrap standard deviation (each replicate
    refitted from the estimate), widened on both sides by two systematic terms:
    *interpolation*, the shift of the estimate when the cubic interpolation is replaced by
    a linear one; and *finite size* (3 or more horizons), the shift when the smallest
    horizon is dropped, times :math:`T_2/(T_2-T_1)` (the bias of a correction decaying as
    :math:`1/T_{\min}`; with noisy curves this shift also carries noise, which makes the
    interval conservative).  For exact curves these terms are the whole interval.

    Corrections to scaling that are analytic in :math:`R_0` (a regular background and a
    nonlinear scaling field) do not shrink as :math:`T` grows at a fixed :math:`R_0` window,
    and the systematic terms do not detect them.  For the base model's
    :math:`\mathbb E Z_T/(\lambda T)=F(T\log m)\,B(\log m)`, :math:`B(u)=u/(e^u-1)`, on
    :math:`R_0\in[0.95, 1.05]` with :math:`T = 25..200` the fit without corrections gives
    :math:`\nu\approx0.98` with an interval excluding 1; narrow the window (e.g.
    :math:`|R_0-1|\le0.02`) or pass ``corrections=True``, which recovers :math:`\nu=1` there.

    Examples
    --------
    >>> import numpy as np
    >>> from branching.scaling import scaling_collapse
    >>> r = np.linspace(0.5, 1.5, 41)
    >>> curves = {T: np.tanh(T**0.5 * (r - 1.1)) for T in (10, 40, 160)}
    >>> fit = scaling_collapse(r, curves)
    >>> round(fit.r0_c, 4), round(fit.nu, 2), fit.nu_ci[0] < 2 < fit.nu_ci[1]
    (1.1, 2.0, True)
    """
    r, T, Y, V = _curves(r0_grid, curves_by_T)
    confidence = _confidence(confidence)
    n_boot = check.integer("n_boot", n_boot, low=0)
    rtol = check.real("rtol", rtol, low=0.0, low_open=True)
    if x_range is not None:
        lo_x, hi_x = check.array("x_range", x_range, shape=(2,))
        if not lo_x < hi_x:
            raise ValueError(f"x_range must be (low, high) with low < high, got {tuple(x_range)}")
        x_range = (float(lo_x), float(hi_x))
    fixed, free = {}, []
    if r0_c is None:
        free.append("rc")
    else:
        fixed["rc"] = check.real("r0_c", r0_c, low=r[0], high=r[-1])
    if nu is None:
        free.append("lognu")
    else:
        fixed["lognu"] = math.log(check.real("nu", nu, low=math.exp(-3), high=math.exp(3)))
    corrections = bool(corrections)

    quality = _CollapseQuality(r, T, Y, V, x_range, rtol)
    rc_hat, nu_hat, b_hat, c_hat, s_min, theta = _fit_collapse(quality, r, free, fixed, corrections)
    if not s_min < _OUTSIDE:
        raise ValueError("no collapse found: the curves do not overlap in the scaling variable")

    estimates = np.array([rc_hat, nu_hat])
    q_linear = _CollapseQuality(r, T, Y, V, x_range, rtol, nodes=2)
    linear = _fit_collapse(q_linear, r, free, fixed, corrections, start=theta)
    interpolation = np.abs(np.array(linear[:2]) - estimates)
    finite_size = np.zeros(2)
    if T.size >= 3:
        q_drop = _CollapseQuality(r, T[1:], Y[1:], V[1:], x_range, rtol)
        drop = _fit_collapse(q_drop, r, free, fixed, corrections, start=theta)
        finite_size = np.abs(np.array(drop[:2]) - estimates) * T[1] / (T[1] - T[0])
    systematic = interpolation + finite_size

    alpha = 1.0 - confidence
    noisy = bool(np.any(V > 0)) and n_boot > 0
    if noisy:
        gen = np.random.default_rng(seed_sequence(rng))
        boot = np.empty((n_boot, 2))
        sd = np.sqrt(V)
        for b in range(n_boot):
            Yb = Y + sd * gen.standard_normal(Y.shape)
            boot[b] = _fit_collapse(quality, r, free, fixed, corrections, Y=Yb, start=theta)[:2]
        half = stats.norm.ppf(1 - alpha / 2) * boot.std(axis=0, ddof=1)
    else:
        half = np.zeros(2)
    free_mask = np.array(["rc" in free, "lognu" in free])
    half, interpolation, finite_size = (np.where(free_mask, v, 0.0)
                                        for v in (half, interpolation, finite_size))
    systematic = interpolation + finite_size
    lo = estimates - half - systematic
    hi = estimates + half + systematic

    u, g = quality.field(rc_hat, b_hat, c_hat)
    with np.errstate(over="ignore"):
        x = np.exp(np.log(T) / nu_hat)[:, None] * u[None, :]
    return CollapseResult(
        r0_c=float(rc_hat), r0_c_ci=(float(lo[0]), float(hi[0])),
        nu=float(nu_hat), nu_ci=(float(lo[1]), float(hi[1])),
        corrections=(float(b_hat), float(c_hat)) if corrections else None,
        quality=float(s_min),
        systematic={name: {"interpolation": float(interpolation[i]),
                           "finite_size": float(finite_size[i])}
                    for i, name in enumerate(("r0_c", "nu"))},
        horizons=tuple(_horizon(t) for t in T), r0_grid=r, x=x, y=Y / g, se=np.sqrt(V) / g,
        fixed=tuple(n for n, key in (("r0_c", "rc"), ("nu", "lognu")) if key in fixed),
        confidence=confidence, n_boot=n_boot if noisy else 0, x_range=x_range, rtol=rtol,
    )


# --------------------------------------------------------------------------- exponents
@dataclass(frozen=True, repr=False)
class ExponentFit:
    r"""A power-law fit :math:`y = A\,\delta^{p}\,e^{b\delta}`, :math:`\delta=|R_0-R_{0,c}|`.

    Attributes
    ----------
    exponent, exponent_ci : float and (float, float)
        The exponent :math:`p` (:math:`\beta = p` for an order parameter above the
        threshold, :math:`\gamma = -p` for a susceptibility below it) and its interval.
    amplitude : float
        :math:`A`.
    correction : float or None
        :math:`b` when the correction factor was fitted.
    r0_c, r0_c_ci : float and (float, float) or None
        The threshold used (interval ``None`` when it was fixed).
    side : {"above", "below"}
    chi2, dof, scale : float, int, float
        Weighted residual sum of squares, degrees of freedom, and the factor applied to
        the standard errors (:math:`\sqrt{\chi^2/\mathrm{dof}}`, at least 1 for data with
        standard errors; exactly that for exact data).
    systematic : dict
        The range systematic added to each side of the intervals of ``exponent`` (and
        ``r0_c`` when fitted).
    confidence, n_points : float, int
    """

    exponent: float
    exponent_ci: tuple
    amplitude: float
    correction: float | None
    r0_c: float
    r0_c_ci: tuple | None
    side: str
    chi2: float
    dof: int
    scale: float
    systematic: dict
    confidence: float
    n_points: int

    def to_pandas(self):
        """One row per fitted parameter (pandas imported here)."""
        import pandas as pd

        rows = [("exponent", self.exponent, *self.exponent_ci), ("amplitude", self.amplitude, None, None)]
        if self.correction is not None:
            rows.append(("correction", self.correction, None, None))
        rows.append(("r0_c", self.r0_c, *(self.r0_c_ci or (None, None))))
        return pd.DataFrame(rows, columns=["parameter", "estimate", "ci_low", "ci_high"])

    def __repr__(self):
        lo, hi = self.exponent_ci
        rc = f"r0_c={self.r0_c:.6g}" + ("" if self.r0_c_ci is None else
                                        f" [{self.r0_c_ci[0]:.6g}, {self.r0_c_ci[1]:.6g}]")
        return (f"ExponentFit(exponent={self.exponent:.6g} [{lo:.6g}, {hi:.6g}] "
                f"({self.confidence:.0%}), side={self.side!r}, {rc}, n_points={self.n_points})")


def fit_exponent(
    r0,
    values,
    se=None,
    *,
    side: str,
    r0_c: float | None = None,
    correction: bool = True,
    confidence: float = 0.95,
) -> ExponentFit:
    r"""Fit a critical power law :math:`y \propto |R_0 - R_{0,c}|^{p}` on one side of the threshold.

    Parameters
    ----------
    r0 : array of shape (n,)
        Strictly increasing control parameter, all on ``side`` of the threshold.
    values : array of shape (n,)
        Positive values (e.g. lineage survival probability above the threshold, mean
        total progeny or stationary mean below it).
    se : array of shape (n,), optional
        Standard errors: all positive (weighted fit), or all 0 / ``None`` for exact values.
    side : {"above", "below"}
        Which side of the threshold the points lie on.
    r0_c : float, optional
        The threshold; ``None`` fits it (constrained to lie beyond the data).
    correction : bool
        Include the correction factor :math:`e^{b\delta}` (leading analytic correction).
    confidence : float
        Confidence level of the intervals.

    Returns
    -------
    ExponentFit

    Notes
    -----
    The fit is weighted least squares in log space,
    :math:`\log y = \log A + p\log\delta + b\delta`, with :math:`\sigma_{\log y} =
    \mathrm{se}/y`.  For fixed :math:`R_{0,c}` this is linear; a free :math:`R_{0,c}` is found
    by profiling the residual sum of squares, then all parameters are refined together.
    Intervals are Wald intervals with Student-t quantiles from the Jacobian covariance,
    scaled by :math:`\sqrt{\chi^2/\mathrm{dof}}` (for data with standard errors, only when
    it exceeds 1; for exact data the residual misfit is the statistical part, floored at a
    relative numerical resolution of :math:`10^{-9}`), widened on both sides by a *range
    systematic* for the neglected higher-order corrections: the fit is repeated on the half
    of the points nearest the threshold, the shift of each estimate beyond its own
    statistical spread (:math:`\sqrt{\sigma^2_{1/2}-\sigma^2}`, nested fits) is multiplied by
    :math:`w/(w-w_{1/2})` (:math:`w, w_{1/2}`: largest :math:`\delta` of all points and of the
    nearest half), the bias of a correction growing linearly in :math:`\delta`.

    Examples
    --------
    >>> import numpy as np
    >>> from branching.scaling import fit_exponent
    >>> r = np.linspace(0.5, 0.95, 10)
    >>> fit = fit_exponent(r, 1 / (1 - r), side="below", r0_c=1.0)  # E S = 1/(1-R0)
    >>> round(-fit.exponent, 9)
    1.0
    """
    check.choice("side", side, ("above", "below"))
    r = _grid("r0", r0)
    y = check.array("values", values, shape=r.shape)
    if np.any(y <= 0):
        i = int(np.argmax(y <= 0))
        raise ValueError(f"values must be positive for a power-law fit; entry {i} is {float(y[i])!r}")
    s = np.zeros_like(y) if se is None else check.array("se", se, shape=r.shape, low=0.0)
    if np.any(s > 0) and not np.all(s > 0):
        raise ValueError("se must be all positive (estimates) or all 0 (exact values)")
    confidence = _confidence(confidence)
    exact = not np.any(s > 0)
    sigma = np.ones_like(y) if exact else s / y
    sign = 1.0 if side == "above" else -1.0
    if r0_c is not None:
        r0_c = check.real("r0_c", r0_c)
        if np.any(sign * (r - r0_c) <= 0):
            raise ValueError(f"side={side!r} needs every r0 {'>' if side == 'above' else '<'} "
                             f"r0_c={r0_c!r}; the grid spans [{float(r[0])!r}, {float(r[-1])!r}]")
    n_lin = 3 if correction else 2
    n_par = n_lin + (r0_c is None)
    if r.size - n_par < 1:
        raise ValueError(f"fit_exponent needs at least {n_par + 1} points for {n_par} parameters, "
                         f"got {r.size}")

    theta, cov_unit, chi2 = _power_fit(r, np.log(y), sigma, sign, r0_c, correction)
    dof = r.size - n_par
    scale = math.sqrt(chi2 / dof) if exact else math.sqrt(max(1.0, chi2 / dof))
    sd = scale * np.sqrt(np.diag(cov_unit))
    sd = np.maximum(sd, 1e-9 * np.maximum(1.0, np.abs(theta)))
    t = stats.t.ppf(0.5 + confidence / 2, dof)

    # range systematic: refit on the points nearest the threshold
    rc_hat = theta[-1] if r0_c is None else r0_c
    distance = sign * (r - rc_hat)
    near = np.sort(np.argsort(distance)[:max(n_par + 1, (r.size + 1) // 2)])
    systematic = np.zeros_like(theta)
    if near.size < r.size:
        theta_near, cov_near, chi2_near = _power_fit(r[near], np.log(y[near]), sigma[near], sign,
                                                     r0_c, correction, start=theta)
        dof_near = near.size - n_par
        scale_near = math.sqrt(chi2_near / dof_near) if exact \
            else math.sqrt(max(1.0, chi2_near / dof_near))
        # the noise of the shift (nested fits): var(near) - var(all)
        noise = np.sqrt(np.maximum(np.diag(cov_near) * scale_near**2 - sd**2, 0.0))
        width, width_near = distance.max(), distance[near].max()
        shift = np.maximum(np.abs(theta_near - theta) - noise, 0.0)
        systematic = shift * width / (width - width_near)

    def ci(i):
        half = t * sd[i] + systematic[i]
        return (float(theta[i] - half), float(theta[i] + half))

    return ExponentFit(
        exponent=float(theta[1]), exponent_ci=ci(1), amplitude=float(math.exp(theta[0])),
        correction=float(theta[2]) if correction else None,
        r0_c=float(theta[-1]) if r0_c is None else float(r0_c),
        r0_c_ci=ci(len(theta) - 1) if r0_c is None else None,
        side=side, chi2=chi2, dof=dof, scale=scale,
        systematic={"exponent": float(systematic[1]),
                    **({"r0_c": float(systematic[-1])} if r0_c is None else {})},
        confidence=confidence, n_points=r.size,
    )


def _power_fit(r, logy, sigma, sign, r0_c, correction, start=None):
    """Weighted fit of ``log y = log A + p log(delta) [+ b delta]``, ``delta = sign (r - rc)``.

    Returns ``(theta, cov_unit, chi2)`` with ``theta = (log A, p, [b], [rc])`` and the
    covariance for unit weights ``(J^T J)^-1``.  A free ``rc`` is profiled over distances
    beyond the data edge, then refined with every parameter by least squares (or refined
    from ``start``).
    """
    n_lin = 3 if correction else 2
    span = r[-1] - r[0]
    edge = r[0] if sign > 0 else r[-1]
    target = logy / sigma

    def design(rc):
        delta = sign * (r - rc)
        cols = [np.ones_like(r), np.log(delta)] + ([delta] if correction else [])
        return np.column_stack(cols) / sigma[:, None]

    def linear_fit(rc):
        A = design(rc)
        coef = np.linalg.lstsq(A, target, rcond=None)[0]
        return coef, float(np.sum((A @ coef - target) ** 2))

    if r0_c is not None:
        theta, chi2 = linear_fit(r0_c)
        J = design(r0_c)
    else:
        if start is None:
            gaps = span * np.geomspace(1e-6, 10.0, 71)
            rss = [linear_fit(edge - sign * gap)[1] for gap in gaps]
            i = int(np.argmin(rss))
            best = optimize.minimize_scalar(
                lambda lg: linear_fit(edge - sign * math.exp(lg))[1],
                bounds=(math.log(gaps[max(i - 1, 0)]), math.log(gaps[min(i + 1, gaps.size - 1)])),
                method="bounded", options={"xatol": 1e-10})
            rc_start = edge - sign * math.exp(best.x)
            start = np.append(linear_fit(rc_start)[0], rc_start)
        bound = edge - sign * 1e-12 * span
        lower = [-np.inf] * n_lin + ([-np.inf] if sign > 0 else [bound])
        upper = [np.inf] * n_lin + ([bound] if sign > 0 else [np.inf])
        start = np.clip(np.asarray(start, dtype=float), lower, upper)
        sol = optimize.least_squares(lambda th: design(th[-1]) @ th[:-1] - target, start,
                                     bounds=(lower, upper), x_scale="jac",
                                     xtol=1e-15, ftol=1e-15, gtol=1e-15)
        theta, J, chi2 = sol.x, sol.jac, float(np.sum(sol.fun**2))
    JtJ = J.T @ J
    if np.linalg.cond(JtJ) > 1e14:
        raise ValueError("the power-law parameters are not identifiable from these points "
                         "(too few or too close to each other); fix r0_c or widen the grid")
    return np.asarray(theta, dtype=float), np.linalg.inv(JtJ), chi2
