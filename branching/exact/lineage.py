r"""One erroneous lineage without immigration: extinction and survival probabilities,
and the law and moments of its total progeny."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from .. import validation as check
from ..offspring import Binomial, NegativeBinomial, OffspringLaw, Poisson, cexpm1
from ._common import _require_law


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
