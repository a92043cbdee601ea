r"""Moments of the erroneous-candidate count: mean and variance paths, closed form,
stationary moments, the oracle's survival and the compute cost."""

from __future__ import annotations

import math

import numpy as np

from .. import validation as check
from ..model import ListDecoderModel
from ._common import _require_model, _require_stationary


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
