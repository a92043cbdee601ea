r"""Laws of :math:`Z_T` from generating functions: the pmf, the stationary law,
:math:`P(Z_T=0)`, the accuracy of a uniform final choice and the divergence-depth law."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .. import validation as check
from ..model import ListDecoderModel
from ._common import _MAX_PMF_WORK, _QUAD_RTOL, _require_model, _require_stationary
from .generating import _chernoff, _invert, _log_pgf, _log_pgf_stationary, _step
from .moments import _log_mean_kept, stationary_mean

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZLaw:
    r"""The law of :math:`Z_T` (or of the stationary :math:`Z_\infty`) on ``0..cap``.

    Attributes
    ----------
    values : ndarray of shape (cap+1,)
        ``values[n] = P(Z = n)``, absolute error below about ``1e-14`` (see :func:`pmf`);
        entries that round-off made negative are set to 0 (``roundoff`` says by how much).
    cap : int
        Largest value tabulated.
    truncated_mass : float
        ``P(Z > cap)``: ``1 - sum`` of the raw inverted values (before any entry is set to
        0), and 0 if that sum exceeds 1 by round-off.
    roundoff : float
        Size of the round-off seen in the inversion: the largest magnitude of a negative
        raw value, or the excess of their sum over 1, whichever is larger.  Probabilities
        and ``truncated_mass`` are accurate only to about this absolute level.
    model : ListDecoderModel
        The model that produced it.
    stationary : bool
        True for the stationary law (``model.T`` is then irrelevant).
    """

    values: np.ndarray = field(repr=False)
    cap: int
    truncated_mass: float
    model: ListDecoderModel
    stationary: bool = False
    roundoff: float = 0.0

    def __post_init__(self):
        values = np.asarray(self.values, dtype=float)
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    def mean(self) -> float:
        """:math:`\\sum_{n\\le cap} n P(Z=n)`: the mean if ``truncated_mass`` is negligible,
        a lower bound otherwise."""
        return float(np.arange(self.values.size) @ self.values)

    def variance(self) -> float:
        """Variance of the tabulated part, renormalised to sum 1."""
        n = np.arange(self.values.size)
        total = self.values.sum()
        if not total > 0:
            raise ValueError(f"no probability mass below cap={self.cap}; the variance is undefined")
        mean = n @ self.values / total
        return float(((n - mean) ** 2) @ self.values / total)

    def to_pandas(self):
        """Tidy table: one row per value ``n`` with its probability."""
        import pandas as pd

        frame = pd.DataFrame({"n": np.arange(self.values.size), "probability": self.values})
        frame.attrs.update(truncated_mass=self.truncated_mass, roundoff=self.roundoff,
                           model=repr(self.model), stationary=self.stationary)
        return frame

    def __repr__(self):
        what = "Z_inf" if self.stationary else f"Z_T, T={self.model.T}"
        return (
            f"ZLaw({what}, cap={self.cap}, truncated_mass={self.truncated_mass:.3g}, "
            f"roundoff={self.roundoff:.2g}, "
            f"mean<=cap={self.mean():.6g}, model={self.model!r})"
        )


def _check_tail(tail) -> float:
    return check.real("tail", tail, low=1e-15, high=0.5)


def _make_law(model, raw, cap, stationary, expected_mean) -> ZLaw:
    """The law from raw inverted values: round-off measured, then negative entries zeroed."""
    total = math.fsum(raw)
    negative = float(-np.min(raw)) if raw.size and np.min(raw) < 0 else 0.0
    roundoff = max(negative, total - 1.0, 0.0)
    truncated = min(1.0, max(0.0, 1.0 - total))
    if roundoff > 1e-10:
        logger.warning("the inversion of the pgf of %s has round-off %.3g (negative "
                       "probabilities or a total above 1)", "Z_inf" if stationary else "Z_T",
                       roundoff)
    values = np.maximum(raw, 0.0)
    if truncated > 0.01:
        logger.warning(
            "%.4g of the mass of %s lies beyond cap=%d (E Z = %.4g): the table holds only "
            "the lower tail", truncated, "Z_inf" if stationary else "Z_T", cap, expected_mean,
        )
    return ZLaw(values=values, cap=cap, truncated_mass=truncated, model=model,
                stationary=stationary, roundoff=roundoff)


def pmf(model: ListDecoderModel, *, cap: int | None = None, tail: float = 1e-12) -> ZLaw:
    r"""The law of :math:`Z_T` by generating-function evaluation and inverse FFT.

    Parameters
    ----------
    model : ListDecoderModel
        Any model without a list cap; misses are included exactly.
    cap : int, optional
        Tabulate ``P(Z_T = 0..cap)``.  Default: the smallest cap with
        :math:`P(Z_T > cap) \le` ``tail`` by a Chernoff bound.
    tail : float
        Target truncated mass when ``cap`` is not given, in [1e-15, 0.5].

    Returns
    -------
    ZLaw

    Notes
    -----
    :math:`\mathbb E s^{Z_T}` (module docstring) is evaluated on a circle of radius
    :math:`r\le1` with the distance :math:`w = 1 - s` carried through the backward pass,
    and inverted by FFT (the Cauchy-contour scheme of Abate and Whitt, 1992).  The cap is
    chosen from :math:`P(Z\ge n)\le\min_{\rho>1}\mathbb E[\rho^{Z}]\rho^{-n}`, evaluated
    with the same backward pass at real :math:`s=\rho`.  If most of the mass lies beyond
    ``cap`` (super-critical, large ``T``) the grid is damped so the tiny probabilities
    below the cap stay accurate in absolute terms, ``truncated_mass`` is close to 1 and a
    warning is logged.  Without ``cap``, a law too wide to tabulate raises ``ValueError``.

    References
    ----------
    J. Abate and W. Whitt, "Numerical inversion of probability generating functions",
    Operations Research Letters 12 (1992) 245-251.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> law = pmf(ListDecoderModel(M=10, eps=0.05, T=1))  # Z_1 ~ Bin(9, 0.05)
    >>> round(float(law.values[0]), 12), round(law.mean(), 12)
    (0.630249409725, 0.45)
    """
    model = _require_model(model, "pmf")
    tail = _check_tail(tail)
    if cap is not None:
        cap = check.integer("cap", cap, low=0)
    if model.T == 0:
        return ZLaw(values=np.ones(1) if cap is None else np.eye(1, cap + 1)[0],
                    cap=0 if cap is None else cap, truncated_mass=0.0, model=model)
    bound = _chernoff(lambda w: _log_pgf(model, w))
    needed, quiet = bound(tail), bound(1e-17)
    if cap is None:
        if needed is None or needed * 2 * model.T > _MAX_PMF_WORK:
            raise ValueError(
                f"Z_T is too spread out to tabulate 1 - tail of its mass (E Z_T = "
                f"{math.exp(min(_log_mean_kept(model), 700.0)):.4g}); pass cap= to get "
                "P(Z_T <= cap) and the truncated mass"
            )
        cap = needed - 1
    damped = needed is None or needed > cap + 1
    min_size = 0 if damped or quiet is None else min(quiet, 4 * (cap + 1))
    values = _invert(lambda w: _log_pgf(model, w), cap + 1, damped=damped, horizon=model.T,
                     min_size=min_size)
    return _make_law(model, values, cap, False, math.exp(min(_log_mean_kept(model), 700.0)))


def stationary_pmf(model: ListDecoderModel, *, tail: float = 1e-12) -> ZLaw:
    r"""The stationary law of :math:`Z_t` (sub-critical, no misses).

    Parameters
    ----------
    model : ListDecoderModel
        Homogeneous, ``delta = 0``, ``r0 < 1``; ``T`` is ignored.
    tail : float
        Target mass beyond the tabulated range, in [1e-15, 0.5].

    Returns
    -------
    ZLaw
        With ``stationary=True``.

    Notes
    -----
    :math:`\Pi(s) = \prod_{k\ge0} h(f_k(s))`, the limit of :math:`G_T`, evaluated by
    iterating :math:`w\mapsto 1-f(1-w)` until :math:`|w_k|\le10^{-9}(1-m)` and closing the
    product with :math:`\exp(-\lambda w_k/(1-m))`; then inverted as in :func:`pmf`.  The
    number of factors grows like :math:`\log(1/(1-m))/(1-m)`, so the cost rises steeply as
    :math:`r_0\to1`.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> law = stationary_pmf(ListDecoderModel(M=10, eps=0.05, T=0))
    >>> round(law.mean(), 9)
    0.9
    """
    model = _require_stationary(model, "stationary_pmf")
    tail = _check_tail(tail)
    bound = _chernoff(lambda w: _log_pgf_stationary(model, w, max_steps=20_000,
                                                    bound_only=True))
    needed, quiet = bound(tail), bound(1e-17)
    if needed is None:
        raise ValueError("could not bound the tail of the stationary law; r0 is too close to 1")
    steps = max(1, int(math.log(1e12) / -math.log(max(model.r0, 1e-300))) + 1)
    values = _invert(lambda w: _log_pgf_stationary(model, w), needed, damped=False,
                     horizon=steps, min_size=min(quiet or 0, 4 * needed))
    return _make_law(model, values, needed - 1, True, stationary_mean(model))


def prob_no_error(model: ListDecoderModel) -> float:
    r""":math:`P(Z_T = 0)`: no erroneous candidate in the final list.

    Parameters
    ----------
    model : ListDecoderModel

    Returns
    -------
    float

    Notes
    -----
    :math:`G_T(0) = \prod_k h_k(F_{k+1,T}(0))`, one backward pass at :math:`w = 1`, no
    pmf.  With misses it is the mixture over the step of the miss (module docstring), so
    it includes the *empty* list (oracle lost and every erroneous branch extinct); the
    probability that the list is exactly the oracle sequence is
    :func:`prob_oracle_alone`.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(prob_no_error(ListDecoderModel(M=10, eps=0.05, T=1)), 12)  # 0.95 ** 9
    0.630249409725
    """
    model = _require_model(model, "prob_no_error")
    value = float(np.exp(_log_pgf(model, np.array(1.0))))
    if not math.isfinite(value):
        raise ValueError(f"P(Z_T = 0) evaluated to {value} for {model!r}")
    return min(value, 1.0)


def prob_oracle_alone(model: ListDecoderModel) -> float:
    r"""Probability that the final list is exactly the oracle sequence.

    :math:`(1-\delta)^T\,G_T(0)`, with :math:`G_T` the pgf without misses; equal to
    :func:`prob_no_error` when :math:`\delta = 0`.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(prob_oracle_alone(ListDecoderModel(M=10, eps=0.05, T=1, delta=0.1)), 12)
    0.567224468752
    """
    model = _require_model(model, "prob_oracle_alone")
    log_g = float(_log_pgf(model, np.array(1.0), delta=0.0))
    return math.exp(log_g + model.T * math.log1p(-model.delta))


# --------------------------------------------------------------------------- quadrature
@dataclass(frozen=True)
class AccuracyEstimate:
    r"""The accuracy :math:`P(\text{output} = \text{oracle})` with its quadrature error.

    Attributes
    ----------
    value : float
        The accuracy; ``0.0`` when it is below the float64 range (about ``1e-308``), which
        happens deep in the super-critical phase: then ``log_value`` holds it.
    abs_error : float
        Absolute error estimate of ``value`` (underflows with it).
    n_nodes : int
        Number of generating-function evaluations of the finer rule.
    model : ListDecoderModel
    log_value : float
        Natural logarithm of the accuracy, finite even where ``value`` underflows
        (``-inf`` only when the accuracy is exactly 0).
    rel_error : float
        Relative error estimate: the difference between two quadrature resolutions (8 and
        16 Gauss-Legendre nodes per panel), conservative for the finer rule, plus a
        rigorous bound on the part of the integral that is not evaluated.
    """

    value: float
    abs_error: float
    n_nodes: int
    model: ListDecoderModel
    log_value: float
    rel_error: float

    def __float__(self) -> float:
        return self.value

    @property
    def log10_value(self) -> float:
        """Decimal logarithm of the accuracy."""
        return self.log_value / math.log(10.0)

    def to_pandas(self):
        """One-row table with the value, its logarithm, its error estimates and the model."""
        import pandas as pd

        return pd.DataFrame([{"M": self.model.M, "T": self.model.T, "r0": self.model.r0,
                              "delta": self.model.delta, "accuracy": self.value,
                              "log_accuracy": self.log_value, "abs_error": self.abs_error,
                              "rel_error": self.rel_error, "n_nodes": self.n_nodes}])

    def __repr__(self):
        shown = (f"value={self.value:.10g}" if self.value > 0 or self.log_value == -math.inf
                 else f"value=10**{self.log10_value:.10g} (below float range)")
        return (f"AccuracyEstimate({shown}, rel_error={self.rel_error:.2g}, "
                f"n_nodes={self.n_nodes}, model={self.model!r})")


def _panels(y_lo: float, width: float, order: int, y_hi: float = 0.0):
    """Composite Gauss-Legendre nodes and weights on [y_lo, y_hi]."""
    count = max(1, int(math.ceil((y_hi - y_lo) / width)))
    edges = np.linspace(y_lo, y_hi, count + 1)
    x, wts = np.polynomial.legendre.leggauss(order)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    nodes = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * wts[None, :]).ravel()
    return nodes, weights


def _y_floor(model: ListDecoderModel) -> float:
    """Lower end of the y = log(1 - s) range: ``w_lo = 1e-20 / (1 + E[Z_T | kept])``."""
    log_mean = _log_mean_kept(model)
    return math.log(1e-20) - float(np.logaddexp(0.0, log_mean))


#: Below this ``log w`` the backward pass advances ``log w`` by ``log m`` (relative error
#: ``O(w f''(1)/m)`` per step, below 1e-25 for M up to 1e5) instead of forming ``1 - f(1-w)``.
_LOG_W_LINEAR = math.log(1e-30)


def _log_pgf_log_w(model: ListDecoderModel, y: np.ndarray) -> np.ndarray:
    r"""``log E[s^{Z_T} | oracle kept]`` at ``s = 1 - e^y`` for real ``y <= 0``.

    The same backward pass as :func:`_log_pgf` but carrying :math:`y = \log w`, so that
    distances far below the float64 range (:math:`w = 10^{-3000}` deep in the
    super-critical phase) are represented.  While every :math:`w < 10^{-30}`,
    :math:`1 - f(1-w) = m w\,(1 + O(w))` and :math:`\log h(1-w) = -\lambda w + O(w^2)`, so
    :math:`y` advances by :math:`\log m` and the factor contributes :math:`-\lambda e^y`.
    """
    y = np.asarray(y, dtype=float)
    order = np.argsort(y, kind="stable")
    ys = y[order]  # the map y -> log(1 - f(1 - e^y)) is increasing: ys stays sorted
    acc = np.zeros(ys.shape)
    laws = model.laws()
    with np.errstate(all="ignore"):
        for k in range(model.T - 1, -1, -1):
            f, h = laws[k]
            n = int(np.searchsorted(ys, _LOG_W_LINEAR))  # ys[:n] is in the linear regime
            if n:
                if ys[n - 1] > _LOG_W_NEGLIGIBLE:
                    acc[:n] -= h.mean * np.exp(ys[:n])
                ys[:n] += math.log(f.mean) if f.mean > 0 else -np.inf
            if n < ys.size:
                log_h, w_next = _step(f, h, np.exp(ys[n:]), k > 0)
                acc[n:] += np.real(log_h)
                if k > 0:
                    ys[n:] = np.log(np.real(w_next))
    out = np.empty_like(acc)
    out[order] = acc
    return out


#: Below this ``log w`` the term ``-lambda w`` of a factor is below 1e-290: dropped.
_LOG_W_NEGLIGIBLE = math.log(1e-300)


def _log_integral(log_values: np.ndarray, weights: np.ndarray) -> float:
    """``log sum(weights * exp(log_values))`` for positive weights."""
    if log_values.size == 0:
        return -math.inf
    with np.errstate(divide="ignore"):
        terms = log_values + np.log(weights)
    top = float(np.max(terms))
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(np.exp(terms - top)))


def _log_accuracy_kept(model: ListDecoderModel, order: int, width: float
                       ) -> tuple[float, float, int, float]:
    r"""``(log I_coarse, log I_fine, n_fine_nodes, log remainder bound)`` for
    :math:`I = \int_{-\infty}^0 G_T(1-e^y)e^y\,dy` with the oracle kept.

    Panels of width ``width`` are added from :math:`y_{lo}` upwards in blocks.  Since
    :math:`G_T(1-e^y)` decreases in :math:`y`, the integral over :math:`[y_b, 0]` is at most
    :math:`G_T(1-e^{y_b})(1-e^{y_b})`; the sweep stops once that bound is below
    :math:`10^{-17}` of the integral so far, and the bound is returned (in logs).
    """
    y_lo = _y_floor(model)
    log_coarse = log_fine = y_lo  # the part below y_lo: w_lo (1 + O(1e-20))
    nodes = 0
    log_rest = -math.inf
    a = y_lo
    while a < 0.0:
        b = min(0.0, a + _BLOCK)
        coarse_y, coarse_wt = _panels(a, width, order // 2, b)
        fine_y, fine_wt = _panels(a, width, order, b)
        left, log_width = _tail_grid(b)
        log_g = _log_pgf_log_w(model, np.concatenate([coarse_y, fine_y, left]))
        if np.any(np.isnan(log_g)):
            raise ValueError(f"the accuracy integrand is NaN for {model!r}")
        n_c, n_f = coarse_y.size, coarse_y.size + fine_y.size
        log_coarse = float(np.logaddexp(log_coarse,
                                        _log_integral(log_g[:n_c] + coarse_y, coarse_wt)))
        log_fine = float(np.logaddexp(log_fine,
                                      _log_integral(log_g[n_c:n_f] + fine_y, fine_wt)))
        nodes += fine_y.size
        a = b
        log_rest = _log_integral(log_g[n_f:] + log_width, np.ones(left.size))
        if log_rest < log_fine + math.log(1e-17):
            break
    return log_coarse, log_fine, nodes, log_rest


#: Width in y of one block of quadrature panels in :func:`_log_accuracy_kept`.
_BLOCK = 128.0


def _tail_grid(b: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Left ends :math:`y_j` and :math:`\log(e^{y_{j+1}}-e^{y_j})` of a grid
    :math:`b=y_0<\dots<y_n=0` that bounds the rest of the accuracy integral.

    :math:`G_T(1-e^y)` decreases in :math:`y`, so :math:`\int_b^0 G_T(1-e^y)e^y\,dy \le
    \sum_j G_T(1-e^{y_j})(e^{y_{j+1}}-e^{y_j})`.  The grid has unit steps for 128 units
    above ``b``, then steps growing geometrically (factor :math:`2^{1/16}`), so a few
    hundred points cover any range.  Empty when ``b = 0``.
    """
    if b >= 0.0:
        return np.zeros(0), np.zeros(0)
    offsets = np.concatenate([np.arange(128.0), 128.0 * 2.0 ** (np.arange(1, 400) / 16.0)])
    y = b + offsets
    y = np.append(y[y < 0.0], 0.0)
    left, right = y[:-1], y[1:]
    with np.errstate(divide="ignore"):
        return left, right + np.log(-np.expm1(left - right))


def accuracy_estimate(model: ListDecoderModel) -> AccuracyEstimate:
    r"""Accuracy of a uniform final choice, with a quadrature error estimate.

    Parameters
    ----------
    model : ListDecoderModel

    Returns
    -------
    AccuracyEstimate
        Its ``log_value`` is the natural logarithm, correct where ``value`` underflows.

    Notes
    -----
    The output is drawn uniformly from the final list; only the oracle sequence is
    correct.  Given that the oracle is kept (probability :math:`(1-\delta)^T`) the list has
    :math:`1 + Z_T` members and :math:`Z_T` has the pgf :math:`G_T` without misses, so

    .. math::  P(\text{correct}) = (1-\delta)^T\,\mathbb E\Bigl[\frac{1}{1+Z_T}\Bigr]
               = (1-\delta)^T\int_0^1 G_T(s)\,ds
               = (1-\delta)^T\int_{-\infty}^0 G_T(1-e^y)\,e^y\,dy .

    The substitution :math:`s = 1 - e^y` resolves the layer near :math:`s = 1` where a
    super-critical :math:`G_T` drops from 1 to 0 (at :math:`1-s\approx 1/Z_T`, e.g.
    :math:`10^{-3000}` at :math:`R_0 = 2`, :math:`T = 10^4`).  The backward pass carries
    :math:`y = \log(1-s)` itself (:func:`_log_pgf_log_w`) and the sums are formed in log
    space, so nothing underflows.  :math:`G_T(1-e^y) = \mathbb E\exp(Z_T\log(1-e^y))` is a
    mixture of double exponentials in :math:`y`, each varying on a scale of order 1, so
    composite Gauss-Legendre panels of width 1 resolve it; the range starts at
    :math:`w_{lo} = 10^{-20}/(1+\mathbb E Z_T)`, below which the integrand is
    :math:`e^y(1 + O(\mathbb E Z_T e^y))` and its integral :math:`w_{lo}` is added.  Blocks
    of 128 panels are added upwards until the rest of the integral is provably below
    :math:`10^{-17}` of it (:func:`_tail_grid`; :math:`G_T` decreases in :math:`y`),
    which in the super-critical phase stops the sweep within about 100 units above
    :math:`y\approx-\log\mathbb E Z_T` instead of running to :math:`y = 0`.  Panels are halved (up
    to four times) until the two resolutions agree to ``1e-10`` relatively.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> est = accuracy_estimate(ListDecoderModel(M=10, eps=0.05, T=1))
    >>> round(est.value, 12)  # E[1/(1+B)], B ~ Bin(9, 0.05): (1 - 0.95**10) / 0.5
    0.802526121523
    >>> deep = accuracy_estimate(ListDecoderModel.from_r0(M=50257, r0=2.0, T=10_000))
    >>> deep.value, round(deep.log10_value, 1)  # far below the float64 range
    (0.0, -3010.4)
    """
    model = _require_model(model, "accuracy")
    log_kept = model.T * math.log1p(-model.delta)
    if model.T == 0:
        return AccuracyEstimate(value=math.exp(log_kept), abs_error=0.0, n_nodes=0,
                                model=model, log_value=log_kept, rel_error=0.0)
    width = 1.0
    for attempt in range(5):
        log_coarse, log_fine, nodes, log_rest = _log_accuracy_kept(model, 16, width)
        rel = abs(math.expm1(log_coarse - log_fine))
        if rel <= _QUAD_RTOL or attempt == 4:
            break
        width /= 2.0
    rel += math.exp(min(log_rest - log_fine, 0.0))
    if rel > 1e-6:
        logger.warning("accuracy quadrature error estimate %.3g (relative) for %r", rel, model)
    log_value = log_kept + min(log_fine, 0.0)
    value = math.exp(log_value)
    return AccuracyEstimate(value=value, abs_error=value * rel, n_nodes=nodes, model=model,
                            log_value=log_value, rel_error=rel)


def accuracy(model: ListDecoderModel) -> float:
    r"""Probability that a uniform draw from the final list is the oracle sequence.

    :math:`(1-\delta)^T\,\mathbb E[1/(1+Z_T)] = (1-\delta)^T\int_0^1 G_T(s)\,ds`; see
    :func:`accuracy_estimate`, which also returns the quadrature error.  Returns ``0.0``
    when the accuracy is below the float64 range; :func:`log_accuracy` then holds it.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(accuracy(ListDecoderModel(M=10, eps=0.05, T=1)), 12)
    0.802526121523
    """
    return accuracy_estimate(model).value


def log_accuracy(model: ListDecoderModel) -> float:
    r"""Natural logarithm of :func:`accuracy`, finite where the accuracy underflows.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> model = ListDecoderModel.from_r0(M=50257, r0=2.0, T=10_000)
    >>> round(log_accuracy(model) / math.log(10), 1)  # about 2**-10000 / 1.26
    -3010.4
    """
    return accuracy_estimate(model).log_value


def divergence_depth_law(model: ListDecoderModel) -> np.ndarray:
    r"""Law of the step at which the decoder's output leaves the oracle path.

    Parameters
    ----------
    model : ListDecoderModel

    Returns
    -------
    ndarray of shape (T+1,)
        Entry ``j < T``: probability that the output (one candidate drawn uniformly from the
        final list) has its first wrong token at position ``j + 1``, i.e. descends from an
        immigrant of step ``j``.  Entry ``T``: probability that the output is the oracle
        sequence (:func:`accuracy`).  The entries sum to 1 when ``delta = 0``; with misses
        they sum to ``1 - P(empty list)``, the list being empty when the oracle is lost and
        every erroneous branch dies.

    Notes
    -----
    :math:`Z_T = \sum_j C_j` with :math:`C_j` the step-:math:`T` descendants of the step-
    :math:`j` immigrants, independent with pgf :math:`H_j(s) = h_j(F_{j+1,T}(s))`.  With
    the oracle kept,

    .. math::  P(D=j) = \mathbb E\Bigl[\frac{C_j}{1+Z_T}\Bigr]
               = \int_0^1 s\,\frac{H_j'(s)}{H_j(s)}\,G_T(s)\,ds,

    since :math:`\mathbb E[C_j s^{Z_T}] = sH_j'(s)\prod_{i\ne j}H_i(s)`.  By the chain rule,
    with :math:`u_i = F_{i+1,T}(s)`,

    .. math::  \frac{H_j'}{H_j}(s) = \frac{h_j'}{h_j}(u_j)\prod_{i=j+1}^{T-1} f_i'(u_i),
               \qquad f'(u) = f(u)\,\frac{f'}{f}(u),

    which is why the offspring laws provide ``dlog_pgf_1m``.  If the oracle is lost at step
    :math:`\ell\ge j` the list is the :math:`Z_T` erroneous candidates and
    :math:`\mathbb E[C_j/Z_T; Z_T>0] = \int_0^1 (H_j'/H_j)(s)\prod_{i\le\ell}H_i(s)\,ds`;
    these are weighted by :math:`\delta(1-\delta)^\ell`.  The integrals use the quadrature
    of :func:`accuracy_estimate` (16 nodes per unit panel in :math:`y = \log(1-s)`).

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> law = divergence_depth_law(ListDecoderModel(M=10, eps=0.05, T=3))
    >>> round(float(law.sum()), 12)
    1.0
    """
    model = _require_model(model, "divergence_depth_law")
    T = model.T
    if T == 0:
        return np.ones(1)
    delta = model.delta
    log_keep = math.log1p(-delta)
    log_delta = math.log(delta) if delta > 0 else -math.inf
    y_all, wt_all = _panels(_y_floor(model), 1.0, 16)
    laws = model.laws()
    out = np.zeros(T + 1)
    chunk = max(1, 4_000_000 // T)
    steps = np.arange(T)
    for start in range(0, y_all.size, chunk):
        y, wt = y_all[start:start + chunk], wt_all[start:start + chunk]
        w = np.exp(y)
        log_h = np.empty((y.size, T))
        log_dh = np.empty((y.size, T))
        chain = np.zeros(y.size)  # log prod_{i>k} f_i'(u_i)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            for k in range(T - 1, -1, -1):
                f, h = laws[k]
                log_h[:, k] = np.real(h.log_pgf_1m(w))
                log_dh[:, k] = np.log(np.real(h.dlog_pgf_1m(w))) + chain
                if k > 0:
                    chain = chain + np.log(np.real(f.dlog_pgf_1m(w))) + np.real(f.log_pgf_1m(w))
                    w = f.one_minus_pgf(w)
            prefix = np.cumsum(log_h, axis=1)  # log prod_{i<=l} H_i
            log_g = prefix[:, -1]
            log_s = np.log(-np.expm1(y))
            kept = T * log_keep + log_s + log_g
            if delta > 0:
                lost = log_delta + steps * log_keep + prefix
                lost = np.logaddexp.accumulate(lost[:, ::-1], axis=1)[:, ::-1]
                weight = np.logaddexp(lost, kept[:, None])
            else:
                weight = np.broadcast_to(kept[:, None], log_dh.shape)
            integrand = np.exp(log_dh + weight + y[:, None])
            oracle = np.exp(T * log_keep + log_g + y)
        if np.any(np.isnan(integrand)) or np.any(np.isnan(oracle)):
            raise ValueError(f"the divergence-depth integrand is NaN for {model!r}")
        out[:T] += wt @ integrand
        out[T] += float(wt @ oracle)
    out[T] += math.exp(T * log_keep + _y_floor(model))
    return np.clip(out, 0.0, 1.0)
