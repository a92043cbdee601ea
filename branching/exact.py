r"""Exact laws of the list-decoder branching process.

The number :math:`Z_t` of erroneous candidates is a Galton-Watson process with immigration
(:mod:`branching.model`): step :math:`t` (``t = 0..T-1``) takes :math:`Z_t` to

.. math::  Z_{t+1} = \sum_{i=1}^{Z_t} \xi_{t,i} + A_t I_t, \qquad Z_0 = 0,

with offspring :math:`\xi_{t,i}\sim f_t`, immigrants :math:`I_t\sim h_t` (the falsely eligible
wrong tokens on the oracle prefix) and :math:`A_t` the indicator that the oracle prefix is
still in the list at the start of step :math:`t`.  Everything here is computed without
sampling: moments by linear recursions, laws by generating functions.

Generating functions
--------------------
Immigrants arriving at step :math:`k` reproduce through steps :math:`k+1..T-1`, so with
:math:`F_{k,T} = f_k\circ\cdots\circ f_{T-1}` (the identity when :math:`k = T`)

.. math::  G_T(s) = \mathbb E\, s^{Z_T} = \prod_{k=0}^{T-1} h_k\bigl(F_{k+1,T}(s)\bigr)
           \qquad(\delta = 0).

It is evaluated pointwise by one backward pass carrying the *distance* :math:`w = 1-s`
through :meth:`~branching.offspring.OffspringLaw.one_minus_pgf`, so nothing loses precision
when :math:`s` is within :math:`10^{-40}` of 1 (where the super-critical laws live).

Misses
------
With miss probability :math:`\delta` the oracle token is not eligible at a step with
probability :math:`\delta`, independently of everything else.  At the step of the miss the
oracle prefix still brings its falsely eligible wrong tokens (they are drawn independently
of the oracle token); afterwards there is no oracle prefix and no immigration.  The list then
holds only erroneous candidates, and it may become empty.  Summing over the step
:math:`\ell` of the miss (probability :math:`\delta(1-\delta)^\ell`),

.. math::  \mathbb E\, s^{Z_T} = \sum_{\ell=0}^{T-1}\delta(1-\delta)^\ell
           \prod_{k\le\ell} H_k(s) + (1-\delta)^T \prod_{k<T} H_k(s)
           = R_0(s),\qquad R_k = H_k\,(\delta + (1-\delta) R_{k+1}),\ R_T = 1,

with :math:`H_k(s) = h_k(F_{k+1,T}(s))`: the nested form is evaluated in the same backward
pass.  Accuracy counts only the oracle sequence as correct (an empty list outputs nothing),
so it is :math:`(1-\delta)^T\,\mathbb E[1/(1+Z_T)\mid\text{oracle kept}]`.

A cap ``K`` on the list size couples the candidates and is not exactly tractable: every
function here refuses a model with ``K`` set and points to :mod:`branching.simulate`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import optimize, signal, sparse, stats
from scipy.sparse import csgraph

from . import _validate as check
from .model import ListDecoderModel
from .offspring import Binomial, NegativeBinomial, OffspringLaw, Poisson, cexpm1, clog1p

__all__ = [
    # moments
    "mean_path",
    "mean_closed_form",
    "variance_path",
    "stationary_mean",
    "stationary_variance",
    "compute_cost",
    "oracle_survival",
    # laws from generating functions
    "ZLaw",
    "pmf",
    "stationary_pmf",
    "prob_no_error",
    "prob_oracle_alone",
    "accuracy",
    "accuracy_estimate",
    "log_accuracy",
    "AccuracyEstimate",
    "divergence_depth_law",
    # one erroneous lineage
    "extinction_probability",
    "survival_probability",
    "progeny_pmf",
    "progeny_mean",
    "progeny_variance",
    # explosion time
    "FirstPassage",
    "time_to_size",
    "time_to_size_asymptotic",
    # several error types
    "multitype_r0",
    "multitype_stationary_mean",
    "multitype_mean_path",
    # decoders without a list
    "instant_generation_accuracy",
    "top_k_list_size",
    "top_k_oracle_kept",
    "top_k_accuracy",
]

logger = logging.getLogger(__name__)

#: Largest FFT grid times horizon that :func:`pmf` accepts (about a minute of work).
_MAX_PMF_WORK = 2**31
#: Relative error target of the accuracy quadrature before it refines its panels.
_QUAD_RTOL = 1e-10


# =========================================================================== validation
def _require_model(model, what: str) -> ListDecoderModel:
    if not isinstance(model, ListDecoderModel):
        raise ValueError(f"model must be a ListDecoderModel, got {check._show(model)}")
    if model.K is not None:
        raise ValueError(
            f"{what} is not exactly tractable with a list cap (model.K={model.K}): the cap "
            "couples the candidates; use the Monte Carlo in branching.simulate instead"
        )
    return model


def _require_law(law) -> OffspringLaw:
    if not isinstance(law, OffspringLaw):
        raise ValueError(f"law must be an OffspringLaw, got {check._show(law)}")
    return law


def _require_stationary(model, what: str) -> ListDecoderModel:
    model = _require_model(model, what)
    if model.per_step:
        raise ValueError(
            f"{what} needs step-independent laws; the model has per-position rates (eps_steps)"
        )
    if model.delta > 0:
        raise ValueError(
            f"{what} is defined for delta = 0 only, got delta={model.delta}: with misses the "
            "oracle is lost almost surely and Z_t tends to 0; use mean_path/pmf at finite T"
        )
    r0 = model.r0
    if not r0 < 1:
        raise ValueError(
            f"the stationary law exists only for r0 < 1 (sub-critical), got r0={r0!r}"
        )
    return model


# =========================================================================== moments
def oracle_survival(model: ListDecoderModel) -> float:
    r"""Probability that the oracle sequence is still in the list after ``T`` steps.

    Parameters
    ----------
    model : ListDecoderModel

    Returns
    -------
    float
        :math:`(1-\delta)^T`, computed as ``exp(T log1p(-delta))``.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(oracle_survival(ListDecoderModel(M=10, eps=0.05, T=20, delta=0.01)), 10)
    0.8179069376
    """
    model = _require_model(model, "oracle_survival")
    return math.exp(model.T * math.log1p(-model.delta))


def _step_moments(model: ListDecoderModel):
    """Per-step (m_t, sigma^2_t, lambda_t, tau^2_t) as arrays of length T."""
    laws = model.laws()
    m = np.array([f.mean for f, _ in laws], dtype=float)
    var = np.array([f.variance for f, _ in laws], dtype=float)
    lam = np.array([h.mean for _, h in laws], dtype=float)
    tau2 = np.array([h.variance for _, h in laws], dtype=float)
    return m, var, lam, tau2


def _finite_or_raise(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        t = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"{what} exceeds the float64 range at t={t}; reduce T or r0 "
            "(the process grows like r0**t)"
        )
    return values


def mean_path(model: ListDecoderModel) -> np.ndarray:
    r"""Expected number of erroneous candidates :math:`\mathbb E Z_t`, ``t = 0..T``.

    Parameters
    ----------
    model : ListDecoderModel
        Any model without a list cap (per-step and per-token rates, misses allowed).

    Returns
    -------
    ndarray of shape (T+1,)

    Notes
    -----
    Linearity of expectation gives

    .. math::  \mathbb E Z_{t+1} = m_t\,\mathbb E Z_t + \lambda_t (1-\delta)^t,
               \qquad \mathbb E Z_0 = 0,

    with :math:`m_t` the offspring mean and :math:`\lambda_t` the immigration mean of step
    :math:`t`; :math:`(1-\delta)^t` is the probability that the oracle prefix is still
    there to bring immigrants.  For the homogeneous binomial model this is
    :func:`mean_closed_form`.  Raises ``ValueError`` if a value exceeds the float64 range.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> mean_path(ListDecoderModel(M=10, eps=0.05, T=3))
    array([0.    , 0.45  , 0.675 , 0.7875])
    """
    model = _require_model(model, "mean_path")
    m, _, lam, _ = _step_moments(model)
    alive = np.exp(np.arange(model.T) * math.log1p(-model.delta))
    out = np.zeros(model.T + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(model.T):
            out[t + 1] = m[t] * out[t] + lam[t] * alive[t]
    return _finite_or_raise(out, "E[Z_t]")


def _log_mean_kept(model: ListDecoderModel) -> float:
    """log E[Z_T] of the process without misses, in log space (no overflow)."""
    m, _, lam, _ = _step_moments(model)
    with np.errstate(divide="ignore"):
        log_m, log_lam = np.log(m), np.log(lam)
    out = -math.inf
    for t in range(model.T):
        out = float(np.logaddexp(log_m[t] + out, log_lam[t]))
    return out


def mean_closed_form(M: int, eps: float, t, *, lam: float | None = None):
    r"""Closed form of :math:`\mathbb E Z_t` for the homogeneous binomial model.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability in [0, 1]; :math:`m = R_0 = M\varepsilon`.
    t : int or array of int
        Step(s), ``t >= 0``.
    lam : float, optional
        Immigration mean :math:`\lambda \ge 0`; default :math:`(M-1)\varepsilon`.

    Returns
    -------
    float or ndarray
        :math:`\mathbb E Z_t` (same shape as ``t``).

    Notes
    -----
    .. math::  \mathbb E Z_t = \lambda\sum_{k=0}^{t-1} m^k = \lambda\,\frac{m^t-1}{m-1}
               = \lambda\,\frac{\operatorname{expm1}(t\,\operatorname{log1p}(x))}{x},
               \qquad x = m - 1,

    and :math:`\lambda t` at :math:`m = 1` exactly.  The ``expm1/log1p`` form keeps full
    relative accuracy for :math:`|x|` down to the underflow threshold, so there is no
    cancellation for :math:`R_0` within :math:`10^{-12}` of 1.  The three regimes:
    bounded, :math:`\mathbb E Z_t\uparrow\lambda/(1-m)` for :math:`m<1`; linear,
    :math:`\lambda t` at :math:`m=1`; exponential,
    :math:`\sim\lambda m^t/(m-1)` for :math:`m>1`.

    Examples
    --------
    >>> mean_closed_form(10, 0.1, 5)  # critical: (M-1) eps t
    4.5
    >>> round(float(mean_closed_form(10, 0.05, 1000)), 12)  # -> 0.45 / 0.5
    0.9
    """
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    lam = (M - 1) * eps if lam is None else check.real("lam", lam, low=0.0)
    t_arr = np.asarray(t)
    if t_arr.dtype.kind not in "iu" or np.any(t_arr < 0):
        raise ValueError(f"t must be a non-negative integer (or array of them), got {check._show(t)}")
    t_float = t_arr.astype(float)
    x = M * eps - 1.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if x == 0.0:
            growth = t_float
        elif x == -1.0:  # m = 0: only the k = 0 term survives
            growth = np.where(t_float > 0, 1.0, 0.0)
        else:
            growth = np.expm1(t_float * math.log1p(x)) / x
        out = lam * growth
    _finite_or_raise(np.atleast_1d(out), "E[Z_t]")
    return float(out) if np.ndim(out) == 0 else out


def variance_path(model: ListDecoderModel) -> np.ndarray:
    r""":math:`\operatorname{Var} Z_t`, ``t = 0..T``.

    Parameters
    ----------
    model : ListDecoderModel

    Returns
    -------
    ndarray of shape (T+1,)

    Notes
    -----
    Conditioning on :math:`(Z_t, A_t)`, with :math:`a_t = (1-\delta)^t = \mathbb E A_t`
    and :math:`\kappa_t = \operatorname{Cov}(Z_t, A_t)`:

    .. math::
        \operatorname{Var} Z_{t+1} &= m_t^2\operatorname{Var} Z_t + \sigma_t^2\,\mathbb E Z_t
            + a_t\tau_t^2 + \lambda_t^2 a_t(1-a_t) + 2 m_t\lambda_t\kappa_t,\\
        \kappa_{t+1} &= (1-\delta)\bigl(m_t\kappa_t + \lambda_t a_t(1-a_t)\bigr),
        \qquad \kappa_0 = 0,

    where :math:`\sigma_t^2, \tau_t^2` are the offspring and immigration variances.  For
    :math:`\delta = 0` this is :math:`\operatorname{Var} Z_{t+1} = m^2\operatorname{Var} Z_t
    + \sigma^2\mathbb E Z_t + \tau^2`.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> variance_path(ListDecoderModel(M=10, eps=0.05, T=2))
    array([0.      , 0.4275  , 0.748125])
    """
    model = _require_model(model, "variance_path")
    m, var, lam, tau2 = _step_moments(model)
    mean = mean_path(model)
    keep = 1.0 - model.delta
    out = np.zeros(model.T + 1)
    kappa, alive = 0.0, 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(model.T):
            out[t + 1] = (
                m[t] ** 2 * out[t]
                + var[t] * mean[t]
                + alive * tau2[t]
                + lam[t] ** 2 * alive * (1.0 - alive)
                + 2.0 * m[t] * lam[t] * kappa
            )
            kappa = keep * (m[t] * kappa + lam[t] * alive * (1.0 - alive))
            alive *= keep
    return _finite_or_raise(out, "Var[Z_t]")


def stationary_mean(model: ListDecoderModel) -> float:
    r"""Mean of the stationary law of :math:`Z_t` (sub-critical, no misses).

    Parameters
    ----------
    model : ListDecoderModel
        Homogeneous, ``delta = 0``, ``r0 < 1``; ``T`` is ignored.

    Returns
    -------
    float
        :math:`\mathbb E Z_\infty = \lambda/(1-m)`; for the binomial model
        :math:`(M-1)\varepsilon/(1-M\varepsilon)`, so the mean list size is
        :math:`\mathbb E L_\infty = (1-\varepsilon)/(1-M\varepsilon)`.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(stationary_mean(ListDecoderModel(M=10, eps=0.05, T=0)), 12)
    0.9
    """
    model = _require_stationary(model, "stationary_mean")
    f, h = model.offspring(0), model.immigration(0)
    return h.mean / (1.0 - f.mean)


def stationary_variance(model: ListDecoderModel) -> float:
    r"""Variance of the stationary law of :math:`Z_t` (sub-critical, no misses).

    Parameters
    ----------
    model : ListDecoderModel
        Homogeneous, ``delta = 0``, ``r0 < 1``; ``T`` is ignored.

    Returns
    -------
    float

    Notes
    -----
    The fixed point of :math:`V = m^2 V + \sigma^2\mu + \tau^2` with
    :math:`\mu = \lambda/(1-m)`:

    .. math::  \operatorname{Var} Z_\infty = \frac{\sigma^2\lambda/(1-m) + \tau^2}{1-m^2}.

    For the binomial model (:math:`\sigma^2 = M\varepsilon(1-\varepsilon)`,
    :math:`\lambda = (M-1)\varepsilon`, :math:`\tau^2 = (M-1)\varepsilon(1-\varepsilon)`)
    this simplifies to the reference's
    :math:`(M-1)\varepsilon(1-\varepsilon)/\bigl((1-M\varepsilon)^2(1+M\varepsilon)\bigr)`,
    which the tests confirm against the long-horizon limit of :func:`variance_path` and
    the moments of :func:`stationary_pmf`.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(stationary_variance(ListDecoderModel(M=10, eps=0.05, T=0)), 12)
    1.14
    """
    model = _require_stationary(model, "stationary_variance")
    f, h = model.offspring(0), model.immigration(0)
    m = f.mean
    return (f.variance * h.mean / (1.0 - m) + h.variance) / (1.0 - m * m)


def compute_cost(model: ListDecoderModel) -> float:
    r"""Expected number of model calls :math:`\mathbb E\sum_{t<T} L_t`.

    Parameters
    ----------
    model : ListDecoderModel

    Returns
    -------
    float

    Notes
    -----
    Step :math:`t` evaluates the eligible set of every prefix in the list, so it costs
    :math:`L_t = A_t + Z_t` calls: the oracle prefix counts as one call while it is in the
    list (:math:`A_t = 1`, always when :math:`\delta = 0`, so :math:`L_t = 1 + Z_t`).  Hence

    .. math::  \mathbb E\sum_{t<T} L_t = \sum_{t<T}\bigl((1-\delta)^t + \mathbb E Z_t\bigr),

    about :math:`T(1-\varepsilon)/(1-M\varepsilon)` below threshold and
    :math:`\Theta((M\varepsilon)^T)` above it.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(compute_cost(ListDecoderModel(M=10, eps=0.05, T=3)), 12)  # 3 + 0 + .45 + .675
    4.125
    """
    model = _require_model(model, "compute_cost")
    mean = mean_path(model)
    alive = np.exp(np.arange(model.T) * math.log1p(-model.delta))
    return float(math.fsum(alive) + math.fsum(mean[:-1]))


# =========================================================================== pgf engine
def _log_mix(log_delta: float, log_keep: float, z):
    """``log(delta + (1 - delta) exp(z))`` for real or complex ``z`` (no overflow)."""
    b = log_keep + z
    top = np.maximum(log_delta, np.real(b))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = top + np.log(np.exp(log_delta - top) + np.exp(b - top))
    return np.where(np.real(b) == np.inf, b, out)


def _scaled(c: float, z):
    """``c * z`` for real ``c``, without the NaN of ``c * (-inf + iy)`` in complex arithmetic."""
    if np.iscomplexobj(z):
        return c * z.real + 1j * (c * z.imag)
    return c * z


def _step(f: OffspringLaw, h: OffspringLaw, w, advance: bool):
    """``(log h(1-w), 1 - f(1-w))``; the second is None when ``advance`` is False.

    The list decoder's own pair -- Binomial(M, p) offspring and Binomial(M-1, p)
    immigration -- shares one ``log1p(-p w)``.
    """
    if type(f) is Binomial and type(h) is Binomial and f.p == h.p and f.p > 0:
        log_factor = clog1p(-f.p * w)
        return (_scaled(h.n, log_factor),
                -cexpm1(_scaled(f.n, log_factor)) if advance else None)
    return h.log_pgf_1m(w), (f.one_minus_pgf(w) if advance else None)


def _log_pgf(model: ListDecoderModel, w, *, delta: float | None = None):
    r"""``log E[s^{Z_T}]`` at ``s = 1 - w`` (real or complex array), by one backward pass.

    ``delta`` defaults to the model's; ``delta = 0`` gives the law given the oracle kept.
    Real ``w < 0`` (``s > 1``) is allowed: the result may then be ``+inf``.
    """
    delta = model.delta if delta is None else delta
    w = np.array(w, copy=True)
    laws = model.laws()
    acc = np.zeros(w.shape, dtype=np.result_type(w, float))
    if delta > 0:
        log_delta, log_keep = math.log(delta), math.log1p(-delta)
    with np.errstate(all="ignore"):
        for k in range(model.T - 1, -1, -1):
            f, h = laws[k]
            log_h, w = _step(f, h, w, k > 0)
            if delta > 0:
                # R_k = H_k (delta + (1 - delta) R_{k+1}); acc holds log R_{k+1} (R_T = 1).
                acc = log_h + _log_mix(log_delta, log_keep, acc)
            else:
                acc = acc + log_h
    return acc


def _log_pgf_stationary(model: ListDecoderModel, w, *, max_steps: int = 10_000_000,
                        bound_only: bool = False):
    r"""``log Pi(s)`` of the stationary law, ``Pi(s) = prod_{k>=0} h(f_k(s))``.

    The product is truncated once ``|w_k| <= 1e-9 (1 - m)``; the remaining factors are
    ``exp(-lambda w_k / (1 - m))`` to first order (relative error ``O(|w_k|/(1-m))``).
    Points whose ``w`` grows (real ``s`` beyond the repelling fixed point) give ``+inf``;
    so do points not converged after ``max_steps`` when ``bound_only`` (used for tail
    bounds, where ``+inf`` just drops the point), which otherwise raise ``ValueError``.
    """
    f, h = model.offspring(0), model.immigration(0)
    m, lam = f.mean, h.mean
    w = np.array(w, copy=True)
    acc = np.zeros(w.shape, dtype=np.result_type(w, float))
    done = np.zeros(w.shape, dtype=bool)
    small = 1e-9 * (1.0 - m)
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            active = ~done
            if not np.any(active):
                break
            wa = w[active]
            acc[active] = acc[active] + h.log_pgf_1m(wa)
            w_next = f.one_minus_pgf(wa)
            converged = np.abs(w_next) <= small
            diverged = ~np.isfinite(w_next) | (np.abs(w_next) > 1e3)
            idx = np.flatnonzero(active)
            w[idx] = w_next
            finish = idx[converged]
            acc[finish] = acc[finish] - lam * w[finish] / (1.0 - m)
            blow = idx[diverged & ~converged]
            acc[blow] = np.inf
            done[finish] = True
            done[blow] = True
        else:
            if not bound_only:
                raise ValueError(
                    f"the stationary product did not converge in {max_steps} steps (r0={m!r} "
                    "is too close to 1); use pmf at a finite horizon instead"
                )
            acc[~done] = np.inf
    return acc


def _chernoff(log_pgf_real):
    r"""``bound(t)``: smallest ``n`` with ``P(Z >= n) <= t`` by the Chernoff bound, or None.

    :math:`P(Z\ge n)\le\min_{\rho>1}\mathbb E[\rho^Z]/\rho^n`; the minimum is taken over a
    geometric grid of :math:`\rho - 1` in :math:`[10^{-30}, 10]` (one backward pass).
    """
    x = np.logspace(-30, 1, 400)
    with np.errstate(all="ignore"):
        lg = np.real(log_pgf_real(-x))
    lg = np.where(np.isnan(lg), np.inf, lg)
    ok = np.isfinite(lg)
    x, lg = x[ok], lg[ok]
    log_rho = np.log1p(x)

    def bound(t: float) -> int | None:
        if x.size == 0:
            return None
        best = float(np.min((lg - math.log(t)) / log_rho))
        return max(1, int(math.ceil(best))) if math.isfinite(best) else None

    return bound


def _invert(log_pgf_complex, n_out: int, *, damped: bool, horizon: int,
            min_size: int = 0) -> np.ndarray:
    r"""``P(Z = 0..n_out-1)`` from the pgf on a circle of radius ``r <= 1`` + inverse FFT.

    With ``N`` points, :math:`b_n = \frac1N\sum_k G(r\omega^k)\omega^{-kn}
    = \sum_{j\ge0} p_{n+jN} r^{n+jN}`, so :math:`p_n \approx b_n r^{-n}` with aliasing
    error :math:`\sum_{j\ge1}p_{n+jN}r^{jN} \le r^N P(Z\ge N)` and round-off
    :math:`\approx 10^{-16} G(r) r^{-n}`.  Undamped grids (mass beyond ``n_out`` below the
    tail; ``N >= 2 n_out`` and ``N >= min_size``, a size with :math:`P(Z\ge N)\le10^{-17}`;
    ``r^N = 0.1``) keep round-off and aliasing near machine precision; damped
    grids (mass beyond the cap) use ``N >= 8 n_out`` and ``r^N = 1e-14``, which bounds the
    aliasing by ``1e-14`` and the round-off amplification by ``10^{14/8} < 60``.  The raw
    values are returned: round-off can make tiny probabilities slightly negative, and
    :func:`_make_law` reports it.
    """
    over, alpha = (8, 1e-14) if damped else (2, 0.1)
    size = sfft.next_fast_len(max(64, over * n_out, min_size), real=True)
    size += size % 2
    work = size * max(horizon, 1)
    if work > _MAX_PMF_WORK:
        raise ValueError(
            f"the pmf needs a grid of {size} points over {horizon} steps ({work:.3g} pgf "
            f"evaluations, limit {_MAX_PMF_WORK:.3g}); pass a smaller cap or a larger tail"
        )
    log_r = math.log(alpha) / size
    theta = 2.0 * np.pi * np.arange(size // 2 + 1) / size
    z = log_r + 1j * theta
    w = -cexpm1(z)  # 1 - r e^{i theta}, accurate near theta = 0
    logger.debug("pmf inversion: %d points, radius %.17g", size, math.exp(log_r))
    with np.errstate(under="ignore"):
        values = np.exp(log_pgf_complex(w))
    if not np.all(np.isfinite(values)):
        raise ValueError("the generating function is not finite on the inversion circle")
    b = np.fft.irfft(np.conj(values), n=size)[:n_out]
    with np.errstate(over="ignore"):
        return b * np.exp(-log_r * np.arange(n_out))


# =========================================================================== laws of Z_T
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


# =========================================================================== one lineage
def extinction_probability(law: OffspringLaw) -> float:
    r"""Extinction probability :math:`q` of a Galton-Watson tree started from one individual.

    Parameters
    ----------
    law : OffspringLaw

    Returns
    -------
    float
        The smallest root of :math:`q = f(q)` in [0, 1]: exactly 1 when the mean is
        :math:`\le 1` (except the degenerate law :math:`\xi\equiv1`, for which :math:`q=0`),
        and exactly 0 when :math:`f(0) = P(\xi = 0) = 0` (e.g. every candidate has exactly
        :math:`k\ge1` children).

    Notes
    -----
    Computed as :math:`1-\rho` with :math:`\rho` from :func:`survival_probability`.

    Examples
    --------
    >>> from branching import Binomial
    >>> extinction_probability(Binomial(10, 0.05))
    1.0
    >>> round(extinction_probability(Binomial(2, 0.75)), 12)  # q = (1/4 + 3q/4)^2 -> 1/9
    0.111111111111
    """
    return 1.0 - survival_probability(law)


def survival_probability(law: OffspringLaw) -> float:
    r"""Survival probability :math:`\rho = 1-q` of one erroneous lineage, accurate near 1.

    Parameters
    ----------
    law : OffspringLaw

    Returns
    -------
    float

    Notes
    -----
    If :math:`f(0) = 0` no individual is childless and :math:`\rho = 1` exactly (this
    includes the zero-variance laws :math:`\xi\equiv k\ge1`).  Otherwise
    :math:`\rho` is the positive root of :math:`\rho = 1 - f(1-\rho)`, solved in the
    distance form with :meth:`~branching.offspring.OffspringLaw.one_minus_pgf`:
    :math:`g(\rho) = (1-f(1-\rho))/\rho - 1` decreases from :math:`m-1` at :math:`0^+` (it
    is the secant slope of a concave function) to :math:`-f(0)` at 1, and Brent's method
    finds its root to machine precision.  Because :math:`1-f(1-\rho)` is computed with
    full relative accuracy, the only error near criticality is the rounding of :math:`m-1`
    itself (relative error about :math:`10^{-16}/(m-1)`): :math:`\rho = 10^{-9}` keeps 7
    digits, where forming :math:`1-q` from :math:`q` would keep none.  Closer than that the
    leading term :math:`2(m-1)/f''(1)` (relative error :math:`O(m-1)`) is more accurate and
    is returned instead.

    Examples
    --------
    >>> from branching import Poisson
    >>> rho = survival_probability(Poisson(2.0))
    >>> round(rho, 11), round(1 - rho - math.exp(-2.0 * rho), 15)  # 1 - rho = e^{-R0 rho}
    (0.79681213002, 0.0)
    """
    law = _require_law(law)
    m = law.mean
    if m < 1.0:
        return 0.0
    with np.errstate(divide="ignore"):
        f0 = float(np.exp(np.real(law.log_pgf_1m(1.0))))
    if f0 == 0.0:  # every individual has a child: no lineage ever dies
        return 1.0
    if m == 1.0:
        return 0.0

    def g(rho: float) -> float:
        with np.errstate(all="ignore"):
            return float(np.real(law.one_minus_pgf(rho))) / rho - 1.0

    leading = 2.0 * (m - 1.0) / law.factorial_moment2
    if m - 1.0 < 1e-8:
        return min(leading, 1.0)
    lo = min(leading, 0.5)
    while g(lo) <= 0.0:
        lo *= 0.5
        if lo < 1e-300:
            return min(leading, 1.0)
    if g(1.0) >= 0.0:
        return 1.0
    return float(optimize.brentq(g, lo, 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps,
                                 maxiter=500))


def progeny_mean(law: OffspringLaw) -> float:
    r"""Mean total progeny :math:`\mathbb E S = 1/(1-m)` of one lineage (root counted).

    ``inf`` when :math:`m \ge 1` (the progeny is infinite with positive probability, or has
    an infinite mean at :math:`m = 1`).

    Examples
    --------
    >>> from branching import Binomial
    >>> round(progeny_mean(Binomial(10, 0.05)), 12)
    2.0
    """
    law = _require_law(law)
    m = law.mean
    return math.inf if m >= 1.0 else 1.0 / (1.0 - m)


def progeny_variance(law: OffspringLaw) -> float:
    r"""Variance of the total progeny :math:`\operatorname{Var} S = \sigma^2/(1-m)^3`.

    Notes
    -----
    :math:`S = 1 + \sum_{i\le\xi} S_i` gives :math:`\operatorname{Var}S =
    \sigma^2(\mathbb E S)^2 + m\operatorname{Var}S`, hence :math:`\sigma^2/(1-m)^3`
    (``inf`` for :math:`m\ge1`).

    Examples
    --------
    >>> from branching import Binomial
    >>> round(progeny_variance(Binomial(10, 0.05)), 12)  # 0.475 / 0.5**3
    3.8
    """
    law = _require_law(law)
    m = law.mean
    return math.inf if m >= 1.0 else law.variance / (1.0 - m) ** 3


def progeny_pmf(law: OffspringLaw, n_max: int) -> np.ndarray:
    r"""Law of the total progeny :math:`S` of one lineage, ``P(S = n)`` for ``n = 0..n_max``.

    Parameters
    ----------
    law : OffspringLaw
    n_max : int
        Largest size tabulated, ``n_max >= 1``.

    Returns
    -------
    ndarray of shape (n_max+1,)
        ``out[0] = 0``; the entries sum to at most the extinction probability (the rest is
        :math:`P(S>n_{max})`, including :math:`P(S=\infty) = 1-q` above criticality).

    Notes
    -----
    The hitting-time (Otter-Dwass) theorem:

    .. math::  P(S=n) = \frac1n P(\xi_1+\dots+\xi_n = n-1).

    The :math:`n`-fold sums are again binomial, Poisson or negative binomial for those
    laws (``logpmf`` from :mod:`scipy.stats`, full relative accuracy); for the other laws
    :math:`[s^{n-1}]f(s)^n` is read off an FFT of :math:`f^n` on the unit circle.  At
    :math:`m = 1`, :math:`P(S=n)\sim n^{-3/2}/\sqrt{2\pi\sigma^2}`.

    Examples
    --------
    >>> from branching import Binomial
    >>> p = progeny_pmf(Binomial(2, 0.25), 3)  # P(S=1) = f(0), P(S=2) = P(xi=1) f(0)
    >>> [round(float(x), 12) for x in p]
    [0.0, 0.5625, 0.2109375, 0.098876953125]
    """
    law = _require_law(law)
    n_max = check.integer("n_max", n_max, low=1)
    n = np.arange(1, n_max + 1)
    out = np.zeros(n_max + 1)
    with np.errstate(divide="ignore"):
        if isinstance(law, Binomial):
            logp = stats.binom.logpmf(n - 1, n * law.n, law.p)
        elif isinstance(law, Poisson):
            logp = stats.poisson.logpmf(n - 1, n * law.mu)
        elif isinstance(law, NegativeBinomial):
            logp = stats.nbinom.logpmf(n - 1, n * law.k, law.k / (law.k + law.mu))
        else:
            out[1:] = _progeny_fft(law, n_max)
            return out
        out[1:] = np.exp(logp - np.log(n))
    return out


def _progeny_fft(law: OffspringLaw, n_max: int) -> np.ndarray:
    """``[s^{n-1}] f(s)^n / n`` for n = 1..n_max from f on the unit circle."""
    m, sd = law.mean, math.sqrt(law.variance)
    # Without aliasing when the support of f^n fits the grid; otherwise a grid far beyond
    # the bulk of f^n (mean n m, sd sqrt(n) sigma).
    reach = n_max * law.support_max + 1
    if not reach <= 2**22:
        reach = n_max * max(m, 1.0) + 12.0 * sd * math.sqrt(n_max) + 64
    size = 1 << max(6, int(math.ceil(math.log2(max(reach, 2 * n_max)))))
    theta = 2.0 * np.pi * np.arange(size) / size
    log_f = law.log_pgf_1m(-cexpm1(1j * theta))
    out = np.empty(n_max)
    block = max(1, 2**20 // size)
    for start in range(1, n_max + 1, block):
        ns = np.arange(start, min(n_max, start + block - 1) + 1)
        # n log f without the NaN of n * (-inf + iy) where f vanishes on the circle
        exponent = (ns[:, None] * log_f.real[None, :]
                    + 1j * (ns[:, None] * log_f.imag[None, :] - np.outer(ns - 1, theta)))
        with np.errstate(under="ignore"):
            powers = np.exp(exponent)
        out[ns - 1] = np.real(powers.sum(axis=1)) / size / ns
    return np.clip(out, 0.0, 1.0)


# =========================================================================== explosion time
@dataclass(frozen=True)
class FirstPassage:
    r"""Law of :math:`\tau_K = \inf\{t: L_t \ge K\}`, the first step the list reaches ``K``.

    Attributes
    ----------
    K : int
    survival : ndarray of shape (T+1,)
        :math:`P(\tau_K > t)`, ``t = 0..T``.
    pmf : ndarray of shape (T+1,)
        :math:`P(\tau_K = t)`, ``t = 0..T``.
    mean : float or None
        :math:`\mathbb E\tau_K` over an unbounded horizon (``inf`` if the list may never
        reach ``K``); None for per-position rates, which are defined only up to ``T``.
    prob_finite : float or None
        :math:`P(\tau_K < \infty)` (None for per-position rates).
    model : ListDecoderModel
    """

    K: int
    survival: np.ndarray = field(repr=False)
    pmf: np.ndarray = field(repr=False)
    mean: float | None
    prob_finite: float | None
    model: ListDecoderModel

    def to_pandas(self):
        """Tidy table: one row per step ``t`` with P(tau = t) and P(tau > t)."""
        import pandas as pd

        frame = pd.DataFrame({"t": np.arange(self.pmf.size), "pmf": self.pmf,
                              "survival": self.survival})
        frame.attrs.update(K=self.K, mean=self.mean, prob_finite=self.prob_finite,
                           model=repr(self.model))
        return frame

    def __repr__(self):
        return (f"FirstPassage(K={self.K}, mean={self.mean}, prob_finite={self.prob_finite}, "
                f"P(tau<=T)={math.fsum(self.pmf):.6g}, model={self.model!r})")


def _truncated_convolve(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """First ``size`` coefficients of the product of two series (exact truncation)."""
    if min(a.size, b.size) > 200:
        out = signal.fftconvolve(a, b)[:size]
        out = np.clip(out, 0.0, None)
    else:
        out = np.convolve(a, b)[:size]
    if out.size < size:
        out = np.pad(out, (0, size - out.size))
    return out


def _killed_kernel(f: OffspringLaw, h: OffspringLaw, K: int, delta: float):
    r"""Sub-stochastic kernel of (oracle kept, Z) killed when ``L >= K``, and its escape.

    States ``0..K-2`` are "oracle kept, Z = z" (``L = z + 1``); with misses, states
    ``K-1..2K-2`` are "oracle lost, Z = z" (``L = z``, ``z = 0..K-1``).  Row ``z`` of the
    kept block is the law of :math:`\sum_{i\le z}\xi_i + I` restricted to small values,
    obtained by truncated convolution (exact: all coefficients are non-negative).  Returns
    ``(Q, escape)`` with ``escape[i]`` the probability of being killed from state ``i``;
    transitions and escapes that the supports of the laws rule out are exactly zero.
    """
    size = K  # values 0..K-1 are all that any block needs
    fp = np.asarray(f.pmf(size - 1), dtype=float)
    hp = np.asarray(h.pmf(size - 1), dtype=float)
    f_max, h_max = f.support_max, h.support_max
    kept_states = K - 1
    lost_states = K if delta > 0 else 0
    n = kept_states + lost_states
    Q = np.zeros((n, n))
    escape = np.zeros(n)
    power = np.zeros(size)
    power[0] = 1.0  # law of a sum of zero offspring
    for z in range(max(kept_states, lost_states)):
        top_lost = z * f_max if z > 0 else 0.0  # largest possible sum of z offspring
        if z < kept_states:
            row = _truncated_convolve(power, hp, size)
            top = top_lost + h_max
            if top < size:
                row[int(top) + 1:] = 0.0
            Q[z, :kept_states] = (1.0 - delta) * row[:kept_states]
            if lost_states:
                Q[z, kept_states:] = delta * row[:lost_states]
            # killed iff Z' >= K-1 (kept) or, after a miss, Z' >= K
            reach = (1.0 - delta) * (top >= K - 1) + delta * (top >= K)
            if reach > 0:
                escape[z] = max(0.0, 1.0 - math.fsum(Q[z]))
        if z < lost_states:
            row = power.copy()
            if top_lost < size:
                row[int(top_lost) + 1:] = 0.0
            Q[kept_states + z, kept_states:] = row[:lost_states]
            if top_lost >= K:
                escape[kept_states + z] = max(0.0, 1.0 - math.fsum(row[:lost_states]))
        power = _truncated_convolve(power, fp, size)
    return Q, escape


def time_to_size(model: ListDecoderModel, K: int) -> FirstPassage:
    r"""Exact law of the first step at which the list holds at least ``K`` candidates.

    Parameters
    ----------
    model : ListDecoderModel
    K : int
        Target list size, ``K >= 1`` (``L_0 = 1``, so ``K = 1`` gives ``tau = 0``).

    Returns
    -------
    FirstPassage

    Notes
    -----
    :math:`L_t = A_t + Z_t` (oracle included while kept).  The pair :math:`(A_t, Z_t)` is
    a Markov chain; killed on reaching :math:`L\ge K` it lives on the states
    :math:`(1, 0..K-2)` and, with misses, :math:`(0, 0..K-1)`, with sub-stochastic kernel
    :math:`Q_t` (:func:`_killed_kernel`).  Then :math:`P(\tau_K > t) = e_0^\top
    Q_0\cdots Q_{t-1}\mathbf 1`.  For step-independent laws, :math:`\mathbb E\tau_K =
    e_0^\top(I-Q)^{-1}\mathbf 1` when every state reachable from the start can reach
    :math:`K` (``inf`` otherwise), and :math:`P(\tau_K<\infty) = u_0` with
    :math:`(I-Q)u = q^{\mathrm{esc}}` (the per-state killing probabilities) on the states
    that can escape.  The cost is :math:`O(K^2\log K)` per distinct step law, :math:`O(TK^2)`
    for the law and :math:`O(K^3)` for the mean (``K`` in the low thousands is fine).  See
    :func:`time_to_size_asymptotic` for the super-critical approximation.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> fp = time_to_size(ListDecoderModel(M=10, eps=0.05, T=2), K=2)
    >>> round(float(fp.pmf[1]), 12)  # P(Z_1 >= 1) = 1 - 0.95**9
    0.369750590275
    """
    model = _require_model(model, "time_to_size")
    K = check.integer("K", K, low=1)
    T = model.T
    if K == 1:
        pmf_t = np.zeros(T + 1)
        pmf_t[0] = 1.0
        return FirstPassage(K=K, survival=np.zeros(T + 1), pmf=pmf_t, mean=0.0,
                            prob_finite=1.0, model=model)
    delta = model.delta
    fixed = (_killed_kernel(model.offspring(0), model.immigration(0), K, delta)
             if model.homogeneous else None)
    dist = np.zeros(K - 1 + (K if delta > 0 else 0))
    dist[0] = 1.0
    survival = np.ones(T + 1)
    pmf_t = np.zeros(T + 1)
    for t in range(T):
        Q, escape = fixed if fixed is not None else _killed_kernel(
            model.offspring(t), model.immigration(t), K, delta)
        pmf_t[t + 1] = float(dist @ escape)
        dist = dist @ Q
        survival[t + 1] = min(survival[t], float(math.fsum(dist)))
    mean = prob_finite = None
    if fixed is not None:
        mean, prob_finite = _killed_chain_summary(*fixed)
    return FirstPassage(K=K, survival=survival, pmf=np.clip(pmf_t, 0.0, 1.0), mean=mean,
                        prob_finite=prob_finite, model=model)


def _killed_chain_summary(Q: np.ndarray, escape: np.ndarray) -> tuple[float, float]:
    """(E tau, P(tau < inf)) for the killed chain started in state 0.

    Graph search on the support of ``Q`` (plus a sink for the killing) decides which states
    can still reach ``K``; the mean is infinite when the start can reach a state that
    cannot.  On the states that can, ``I - Q`` is non-singular.
    """
    n = Q.shape[0]
    rows, cols = np.nonzero(Q > 0)
    sinks = np.flatnonzero(escape > 0)
    graph = sparse.csr_matrix(
        (np.ones(rows.size + sinks.size), (np.concatenate([rows, sinks]),
                                           np.concatenate([cols, np.full(sinks.size, n)]))),
        shape=(n + 1, n + 1),
    )
    reach = np.zeros(n + 1, dtype=bool)
    reach[csgraph.breadth_first_order(graph, 0, directed=True, return_predecessors=False)] = True
    can_escape = np.zeros(n + 1, dtype=bool)
    can_escape[csgraph.breadth_first_order(graph.T.tocsr(), n, directed=True,
                                           return_predecessors=False)] = True
    reach, can_escape = reach[:n], can_escape[:n]
    if not can_escape[0]:
        return math.inf, 0.0
    idx = np.flatnonzero(can_escape)
    sub = np.eye(idx.size) - Q[np.ix_(idx, idx)]
    solution = np.linalg.solve(sub, np.column_stack([escape[idx], np.ones(idx.size)]))
    prob_finite = float(min(1.0, max(0.0, solution[0, 0])))
    if np.any(reach & ~can_escape):
        return math.inf, prob_finite
    mean = float(solution[0, 1])
    if not (math.isfinite(mean) and mean >= 0):
        raise ValueError(f"E[tau_K] could not be computed (solve returned {mean!r})")
    return mean, prob_finite


def time_to_size_asymptotic(model: ListDecoderModel, K: int) -> float:
    r"""Super-critical approximation :math:`\log(K(m-1)/\lambda)/\log m` of :math:`\mathbb E\tau_K`.

    Parameters
    ----------
    model : ListDecoderModel
        Homogeneous, ``delta = 0``, ``r0 > 1``.
    K : int
        Target list size, ``K >= 2``.

    Returns
    -------
    float

    Notes
    -----
    :math:`Z_t\approx W m^t` with :math:`\mathbb E W = \lambda/(m-1)`, so
    :math:`\tau_K\approx(\log K - \log W)/\log m`; replacing :math:`\log W` by
    :math:`\log\mathbb E W` gives this formula (reference sec. 4.8).  By Jensen's inequality
    it underestimates :math:`\mathbb E[-\log W]`, and it ignores the discreteness of
    :math:`t`; it is a large-``K`` guide, not an exact value (:func:`time_to_size` is).

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(time_to_size_asymptotic(ListDecoderModel(M=10, eps=0.2, T=0), 1000), 6)
    9.117787
    """
    model = _require_model(model, "time_to_size_asymptotic")
    K = check.integer("K", K, low=2)
    if model.per_step or model.delta > 0:
        raise ValueError("time_to_size_asymptotic needs step-independent laws and delta = 0")
    m, lam = model.offspring(0).mean, model.immigration(0).mean
    if not m > 1:
        raise ValueError(f"time_to_size_asymptotic needs r0 > 1 (super-critical), got r0={m!r}")
    if lam <= 0:
        raise ValueError(f"time_to_size_asymptotic needs an immigration mean > 0, got {lam!r}")
    return math.log(K * (m - 1.0) / lam) / math.log(m)


# =========================================================================== several types
def _mean_matrix(A) -> np.ndarray:
    A = check.array("A", A, ndim=2, low=0.0)
    if A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a non-empty square matrix, got shape {A.shape}")
    return A


def _immigration_vector(lam, d: int) -> np.ndarray:
    return check.array("lam", lam, shape=(d,), low=0.0)


def multitype_r0(A) -> float:
    r"""Reproduction number of a multi-type process: the Perron root :math:`\rho(A)`.

    Parameters
    ----------
    A : array of shape (d, d)
        Mean matrix, ``A[i, j]`` the mean number of type-``j`` children of a type-``i``
        candidate (non-negative).

    Returns
    -------
    float
        The spectral radius, which for a non-negative matrix is its largest real
        eigenvalue (Perron-Frobenius).

    Examples
    --------
    >>> round(multitype_r0([[0.5, 0.25], [0.25, 0.5]]), 12)
    0.75
    """
    A = _mean_matrix(A)
    return float(np.max(np.abs(np.linalg.eigvals(A))))


def multitype_stationary_mean(A, lam) -> np.ndarray:
    r"""Stationary mean :math:`\mathbb E Z_\infty = (I - A^\top)^{-1}\lambda` (Perron root < 1).

    Parameters
    ----------
    A : array of shape (d, d)
        Mean matrix (see :func:`multitype_r0`).
    lam : array of shape (d,)
        Mean immigration of each type per step.

    Returns
    -------
    ndarray of shape (d,)

    Notes
    -----
    :math:`\mathbb E Z_{t+1} = A^\top\mathbb E Z_t + \lambda` has the fixed point
    :math:`(I-A^\top)^{-1}\lambda = \sum_k (A^\top)^k\lambda`, finite iff
    :math:`\rho(A) < 1`.

    Examples
    --------
    >>> multitype_stationary_mean([[0.5, 0.0], [0.0, 0.5]], [1.0, 2.0])
    array([2., 4.])
    """
    A = _mean_matrix(A)
    lam = _immigration_vector(lam, A.shape[0])
    r0 = multitype_r0(A)
    if not r0 < 1:
        raise ValueError(
            f"the stationary mean exists only for a Perron root < 1, got Perron root {r0!r}"
        )
    return np.linalg.solve(np.eye(A.shape[0]) - A.T, lam)


def multitype_mean_path(A, lam, T: int) -> np.ndarray:
    r"""Mean counts of each type, :math:`\mathbb E Z_t` for ``t = 0..T``.

    Parameters
    ----------
    A : array of shape (d, d)
    lam : array of shape (d,)
    T : int

    Returns
    -------
    ndarray of shape (T+1, d)
        :math:`\mathbb E Z_{t+1} = A^\top\mathbb E Z_t + \lambda`, :math:`\mathbb E Z_0 = 0`.

    Examples
    --------
    >>> multitype_mean_path([[0.5, 0.5], [0.0, 1.0]], [1.0, 0.0], 2)
    array([[0. , 0. ],
           [1. , 0. ],
           [1.5, 0.5]])
    """
    A = _mean_matrix(A)
    lam = _immigration_vector(lam, A.shape[0])
    T = check.integer("T", T, low=0)
    out = np.zeros((T + 1, A.shape[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            out[t + 1] = A.T @ out[t] + lam
    _finite_or_raise(out.sum(axis=1), "E[Z_t]")
    return out


# =========================================================================== contrasts
def instant_generation_accuracy(M: int, eps: float, T: int) -> float:
    r"""Accuracy of instant generation: one prefix, one token drawn per step.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability of each wrong token, in [0, 1].
    T : int
        Number of steps, ``T >= 0``.

    Returns
    -------
    float

    Notes
    -----
    At each step the eligible set is the oracle token plus :math:`B\sim\mathrm{Bin}(M-1,
    \varepsilon)` wrong ones and the token is drawn uniformly from it; an error is never
    undone, so

    .. math::  P = \Bigl(\mathbb E\frac{1}{1+B}\Bigr)^T
               = \Bigl[\frac{1-(1-\varepsilon)^M}{M\varepsilon}\Bigr]^T,

    evaluated as ``-expm1(M log1p(-eps)) / (M eps)`` (limit 1 as eps -> 0).  It decays
    exponentially in ``T`` for every ``eps > 0``: without the list there is no threshold.

    Examples
    --------
    >>> round(instant_generation_accuracy(10, 0.05, 1), 12)
    0.802526121523
    >>> instant_generation_accuracy(10, 0.0, 100)
    1.0
    """
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    T = check.integer("T", T, low=0)
    if eps == 0.0:
        return 1.0
    with np.errstate(divide="ignore"):
        per_step = -math.expm1(M * float(np.log1p(-eps))) / (M * eps)
    return math.exp(T * math.log(per_step))


def top_k_list_size(k: int, T: int) -> int:
    r"""List size :math:`k^T` of a decoder that keeps exactly ``k`` children per candidate.

    Returns an exact Python ``int`` (no overflow).  The size does not depend on
    :math:`\varepsilon`: top-:math:`k` eligibility has no phase transition.

    Examples
    --------
    >>> top_k_list_size(2, 10)
    1024
    """
    k = check.integer("k", k, low=1)
    T = check.integer("T", T, low=0)
    return k**T


def _top_k_keep(M: int, eps: float, k: int) -> float:
    """P(the oracle token is among the k kept) = E[min(1, k / (1 + B))], B ~ Bin(M-1, eps)."""
    if k >= M:
        return 1.0
    b = np.arange(M)
    probs = stats.binom.pmf(b, M - 1, eps)
    return float(min(1.0, math.fsum(probs * np.minimum(1.0, k / (1.0 + b)))))


def _top_k_args(M, eps, k, T):
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    k = check.integer("k", k, low=1, high=M)
    T = check.integer("T", T, low=0)
    return M, eps, k, T


def top_k_oracle_kept(M: int, eps: float, k: int, T: int) -> float:
    r"""Probability that a fixed top-``k`` decoder keeps the oracle for ``T`` steps.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability of each wrong token, in [0, 1].
    k : int
        Children kept per candidate, ``1 <= k <= M``.
    T : int
        Number of steps.

    Returns
    -------
    float
        :math:`p_k^T` with :math:`p_k = \mathbb E[\min(1, k/(1+B))]`,
        :math:`B\sim\mathrm{Bin}(M-1,\varepsilon)`.

    Notes
    -----
    Assumption: the decoder ranks the tokens by a score under which every eligible token
    beats every ineligible one, ties among eligible tokens broken uniformly at random, and
    keeps the top ``k``.  On the oracle prefix the oracle token is one of :math:`1+B`
    eligible tokens, so it survives the step iff its random rank is at most ``k``.
    :math:`p_k<1` for every :math:`\varepsilon>0` when :math:`k<M`: the oracle is lost
    exponentially fast in ``T`` at any error rate.

    Examples
    --------
    >>> round(top_k_oracle_kept(10, 0.05, 1, 1), 12)  # top-1 = instant generation
    0.802526121523
    """
    M, eps, k, T = _top_k_args(M, eps, k, T)
    p = _top_k_keep(M, eps, k)
    return 0.0 if p == 0.0 else math.exp(T * math.log(p))


def top_k_accuracy(M: int, eps: float, k: int, T: int) -> float:
    r"""Accuracy of a fixed top-``k`` decoder with a uniform final choice.

    The list always holds :math:`k^T` candidates and contains the oracle with probability
    :func:`top_k_oracle_kept` (same assumption), so a uniform draw is correct with
    probability :math:`(p_k/k)^T`.  For ``k = 1`` it equals
    :func:`instant_generation_accuracy`.

    Examples
    --------
    >>> round(top_k_accuracy(10, 0.05, 2, 1), 12)
    0.487401416661
    """
    M, eps, k, T = _top_k_args(M, eps, k, T)
    p = _top_k_keep(M, eps, k) / k
    return 0.0 if p == 0.0 else math.exp(T * math.log(p))
