r"""Offspring and immigration laws of the list-decoder branching process.

Each law is a small frozen dataclass describing a distribution on the non-negative
integers through its probability generating function (pgf) :math:`f(s)=\mathbb E[s^\xi]`.

Numerics
--------
Near criticality and for large vocabularies the interesting behaviour sits at
:math:`s` within :math:`10^{-5}` (or much less) of 1, where :math:`f(s)` and
:math:`1-f(s)` cannot both be represented accurately.  Every law therefore provides
:meth:`OffspringLaw.log_pgf_1m`, the logarithm of :math:`f(1-w)` as a function of the
*distance* :math:`w = 1-s`, computed with ``log1p``-type operations that keep full
relative accuracy for tiny :math:`|w|`; and :meth:`OffspringLaw.one_minus_pgf`, the
complement :math:`1-f(1-w)`, which is what generating-function iteration propagates;
and :meth:`OffspringLaw.dlog_pgf_1m`, the logarithmic derivative :math:`f'(1-w)/f(1-w)`,
which the chain rule through an iterated pgf needs.  All accept real or complex arrays.

The laws
--------
=====================  ===========================================  ===============================
law                    pgf :math:`f(1-w)`                           mean
=====================  ===========================================  ===============================
Binomial(n, p)         :math:`(1-pw)^n`                             :math:`np`
Poisson(mean)          :math:`e^{-\mu w}`                           :math:`\mu`
NegativeBinomial(m,k)  :math:`(1+mw/k)^{-k}`                        :math:`m`
PoissonBinomial(p)     :math:`\prod_v (1-p_v w)`                    :math:`\sum_v p_v`
LeaveOneOut(p)         :math:`\frac1n\sum_u\prod_{v\ne u}(1-p_vw)`  :math:`\frac{n-1}{n}\sum_v p_v`
FinitePmf(pmf)         :math:`\sum_j \pi_j (1-w)^j`                 :math:`\sum_j j\pi_j`
=====================  ===========================================  ===============================

``Binomial(M, eps)`` is the list decoder's offspring law (each of the M tokens is falsely
eligible with probability eps); ``Poisson`` is its limit M -> infinity at fixed M*eps;
``NegativeBinomial`` adds overdispersion with shape ``k`` (variance m + m^2/k);
``PoissonBinomial`` has one probability per token; ``LeaveOneOut`` is the immigration
law for per-token rates when the oracle token is uniformly random at each step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from . import validation as check

__all__ = [
    "OffspringLaw",
    "Binomial",
    "Poisson",
    "NegativeBinomial",
    "PoissonBinomial",
    "LeaveOneOut",
    "FinitePmf",
    "clog1p",
    "cexpm1",
]


# --------------------------------------------------------------------------- numerics
def clog1p(z):
    """``log(1+z)`` accurate for small ``|z|``, for real or complex input.

    For complex ``z = x + iy``: ``Re = 0.5*log1p(2x + x^2 + y^2)`` when ``|z| < 1/2`` (no
    cancellation for tiny ``|z|``) and ``log|1+z|`` otherwise (none near ``z = -1``);
    ``Im = atan2(y, 1+x)``.

    Parameters
    ----------
    z : array_like, real or complex
        The argument; real input goes to :func:`numpy.log1p`.

    Returns
    -------
    ndarray
        ``log(1+z)`` elementwise, of the input's kind (real or complex); ``-inf`` (real
        part) at ``z = -1``.

    Examples
    --------
    For ``z = 1e-20 + 1e-10j`` the real part of ``log(1+z)`` is
    ``Re(z - z**2/2) = 1.5e-20``, which forming ``1+z`` first loses:

    >>> import numpy as np
    >>> z = 1e-20 + 1e-10j
    >>> round(float(clog1p(z).real / 1.5e-20), 12), float(clog1p(z).imag)
    (1.0, 1e-10)
    >>> round(float(np.log(1 + z).real / 1.5e-20), 3)
    0.333
    """
    z = np.asarray(z)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right answer at z = -1
        if not np.iscomplexobj(z):
            return np.log1p(z)
        x, y = z.real, z.imag
        # Small |z|: the log1p form; elsewhere log|1+z| directly (no cancellation near z = -1).
        small = np.abs(z) < 0.5
        real = np.where(small, 0.5 * np.log1p(2.0 * x + x * x + y * y), np.log(np.hypot(1.0 + x, y)))
        return real + 1j * np.arctan2(y, 1.0 + x)


def cexpm1(z):
    """``exp(z) - 1`` accurate for small ``|z|``, for real or complex input.

    For complex ``z = a + ib``: ``Re = expm1(a) cos b - 2 sin^2(b/2)``,
    ``Im = exp(a) sin b``.

    Parameters
    ----------
    z : array_like, real or complex
        The argument; real input goes to :func:`numpy.expm1`.

    Returns
    -------
    ndarray
        ``exp(z) - 1`` elementwise, of the input's kind (real or complex).

    Examples
    --------
    For a tiny imaginary ``z = 1e-20j`` the real part ``cos(1e-20) - 1 = -5e-41`` survives,
    and :func:`clog1p` inverts the function to full accuracy:

    >>> complex(cexpm1(1e-20j))
    (-5e-41+1e-20j)
    >>> complex(clog1p(cexpm1(1e-12 + 1e-9j)))
    (1e-12+1e-09j)
    """
    z = np.asarray(z)
    if not np.iscomplexobj(z):
        return np.expm1(z)
    a, b = z.real, z.imag
    half = np.sin(0.5 * b)
    return (np.expm1(a) * np.cos(b) - 2.0 * half * half) + 1j * (np.exp(a) * np.sin(b))


def _times(c: float, z):
    """``c * z`` without the NaN that complex multiplication makes of ``c * (-inf + iy)``."""
    z = np.asarray(z)
    if c == 0:
        return np.zeros_like(z)
    if np.iscomplexobj(z):
        return c * z.real + 1j * (c * z.imag)
    return c * z


def _grouped(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, counts = np.unique(p, return_counts=True)
    return values, counts.astype(float)


# --------------------------------------------------------------------------- base class
class OffspringLaw(ABC):
    """A distribution on {0, 1, 2, ...} given by its generating function."""

    @property
    @abstractmethod
    def mean(self) -> float:
        """E[xi]."""

    @property
    @abstractmethod
    def variance(self) -> float:
        """Var[xi]."""

    @property
    def factorial_moment2(self) -> float:
        """E[xi (xi - 1)] = f''(1) = Var + mean^2 - mean."""
        return self.variance + self.mean**2 - self.mean

    @property
    def support_max(self) -> float:
        """Largest value with positive probability (``inf`` for unbounded laws)."""
        return np.inf

    @abstractmethod
    def log_pgf_1m(self, w):
        """``log f(1 - w)`` for real or complex ``w`` (accurate for tiny ``|w|``)."""

    def one_minus_pgf(self, w):
        """``1 - f(1 - w)``, accurate when it is tiny."""
        return -cexpm1(self.log_pgf_1m(w))

    def dlog_pgf_1m(self, w):
        r"""Logarithmic derivative of the pgf at ``s = 1 - w``: :math:`f'(1-w)/f(1-w)`.

        Equivalently :math:`-\frac{d}{dw}\log f(1-w)`; at ``w = 0`` it is the mean.  For real
        ``0 <= w < 1`` it is non-negative and finite whenever ``f(1 - w) > 0``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not provide dlog_pgf_1m (f'(1-w)/f(1-w))"
        )

    def pgf(self, s):
        """``f(s) = E[s^xi]`` for real or complex ``s`` with ``|s| <= 1``."""
        s = np.asarray(s)
        return np.exp(self.log_pgf_1m(1.0 - s))

    def pmf(self, n_max: int | None = None) -> np.ndarray:
        """Probabilities of 0..n_max (default: the whole support, or the 1 - 1e-15 quantile)."""
        if n_max is None:
            n_max = int(self.support_max) if np.isfinite(self.support_max) else self._quantile_cap()
        n_max = check.integer("n_max", n_max, low=0)
        return self._pmf(n_max)

    def _quantile_cap(self) -> int:
        sd = np.sqrt(self.variance)
        return int(np.ceil(self.mean + 12 * sd + 30))

    def _pmf(self, n_max: int) -> np.ndarray:
        """pmf on 0..n_max by inverting the pgf on the unit circle (exact up to aliasing)."""
        n = n_max + 1
        size = 1 << int(np.ceil(np.log2(max(2 * n, 64))))
        if np.isfinite(self.support_max):
            size = max(size, 1 << int(np.ceil(np.log2(self.support_max + 1))))
        theta = 2 * np.pi * np.arange(size) / size
        values = np.exp(self.log_pgf_1m(1.0 - np.exp(1j * theta)))
        coeffs = np.fft.fft(values).real / size
        return np.clip(coeffs[:n], 0.0, None)


# --------------------------------------------------------------------------- concrete laws
@dataclass(frozen=True)
class Binomial(OffspringLaw):
    """Binomial(n, p): each of ``n`` tokens eligible independently with probability ``p``."""

    n: int
    p: float

    def __post_init__(self):
        object.__setattr__(self, "n", check.integer("n", self.n, low=0))
        object.__setattr__(self, "p", check.probability("p", self.p))

    @property
    def mean(self) -> float:
        return self.n * self.p

    @property
    def variance(self) -> float:
        return self.n * self.p * (1.0 - self.p)

    @property
    def support_max(self) -> float:
        return float(self.n) if self.p > 0 else 0.0

    def log_pgf_1m(self, w):
        return _times(self.n, clog1p(-self.p * np.asarray(w)))

    def dlog_pgf_1m(self, w):
        # f(1-w) = (1 - p w)^n  =>  f'/f = n p / (1 - p w)
        return self.n * self.p / (1.0 - self.p * np.asarray(w))

    def _pmf(self, n_max):
        return stats.binom.pmf(np.arange(n_max + 1), self.n, self.p)


@dataclass(frozen=True)
class Poisson(OffspringLaw):
    """Poisson law with the given mean: the limit of Binomial(M, R0/M) as M grows."""

    mu: float

    def __post_init__(self):
        object.__setattr__(self, "mu", check.real("mu", self.mu, low=0.0))

    @property
    def mean(self) -> float:
        return self.mu

    @property
    def variance(self) -> float:
        return self.mu

    def log_pgf_1m(self, w):
        return -self.mu * np.asarray(w)

    def dlog_pgf_1m(self, w):
        w = np.asarray(w)
        return np.full(w.shape, self.mu, dtype=np.result_type(w, float))

    def _pmf(self, n_max):
        return stats.poisson.pmf(np.arange(n_max + 1), self.mu)


@dataclass(frozen=True)
class NegativeBinomial(OffspringLaw):
    """Negative binomial with mean ``mu`` and dispersion (shape) ``k``: Var = mu + mu^2/k.

    It is the Poisson law with a Gamma(k, mu/k)-distributed rate, the standard model of
    overdispersed offspring; k -> infinity recovers the Poisson law.
    """

    mu: float
    k: float

    def __post_init__(self):
        object.__setattr__(self, "mu", check.real("mu", self.mu, low=0.0))
        object.__setattr__(self, "k", check.real("k", self.k, low=0.0, low_open=True))

    @property
    def mean(self) -> float:
        return self.mu

    @property
    def variance(self) -> float:
        return self.mu + self.mu**2 / self.k

    def log_pgf_1m(self, w):
        return _times(-self.k, clog1p(self.mu * np.asarray(w) / self.k))

    def dlog_pgf_1m(self, w):
        # f(1-w) = (1 + mu w / k)^(-k)  =>  f'/f = mu / (1 + mu w / k)
        return self.mu / (1.0 + self.mu * np.asarray(w) / self.k)

    def _pmf(self, n_max):
        return stats.nbinom.pmf(np.arange(n_max + 1), self.k, self.k / (self.k + self.mu))


@dataclass(frozen=True)
class PoissonBinomial(OffspringLaw):
    """Sum of independent Bernoulli(p_v): token v eligible with its own probability p_v."""

    p: np.ndarray = field(repr=False)

    def __post_init__(self):
        p = check.array("p", self.p, ndim=1, low=0.0, high=1.0)
        if p.size == 0:
            raise ValueError("p must contain at least one probability, got an empty array")
        p.setflags(write=False)
        object.__setattr__(self, "p", p)

    def __repr__(self):
        return f"PoissonBinomial(n={self.p.size}, mean={self.mean:.6g})"

    @property
    def mean(self) -> float:
        return float(self.p.sum())

    @property
    def variance(self) -> float:
        return float(np.sum(self.p * (1.0 - self.p)))

    @property
    def support_max(self) -> float:
        return float(np.count_nonzero(self.p))

    def log_pgf_1m(self, w):
        w = np.asarray(w)
        values, counts = _grouped(self.p)
        out = np.zeros(w.shape, dtype=np.result_type(w, float))
        for value, count in zip(values, counts):
            if value > 0:
                out = out + _times(count, clog1p(-value * w))
        return out

    def dlog_pgf_1m(self, w):
        # f(1-w) = prod_v (1 - p_v w)  =>  f'/f = sum_v p_v / (1 - p_v w)
        w = np.asarray(w)
        values, counts = _grouped(self.p)
        out = np.zeros(w.shape, dtype=np.result_type(w, float))
        for value, count in zip(values, counts):
            if value > 0:
                out = out + count * value / (1.0 - value * w)
        return out


@dataclass(frozen=True)
class LeaveOneOut(OffspringLaw):
    """Poisson-binomial over all tokens but one, the excluded token uniformly random.

    This is the immigration law for per-token rates ``p``: at each step the oracle token
    is a uniformly random one of the ``n`` tokens, and each of the other ``n - 1`` is
    falsely eligible with its own probability.
    pgf: ``f(1-w) = prod_v (1 - p_v w) * mean_u 1/(1 - p_u w)``.
    """

    p: np.ndarray = field(repr=False)

    def __post_init__(self):
        p = check.array("p", self.p, ndim=1, low=0.0, high=1.0)
        if p.size < 2:
            raise ValueError(f"p must contain at least two probabilities, got {p.size}")
        p.setflags(write=False)
        object.__setattr__(self, "p", p)

    def __repr__(self):
        return f"LeaveOneOut(n={self.p.size}, mean={self.mean:.6g})"

    @property
    def mean(self) -> float:
        return float(self.p.sum() * (1.0 - 1.0 / self.p.size))

    @property
    def variance(self) -> float:
        # Law of total variance over the excluded token u.
        total_var = np.sum(self.p * (1 - self.p))
        cond_var = total_var - self.p * (1 - self.p)
        cond_mean = self.p.sum() - self.p
        return float(cond_var.mean() + cond_mean.var())

    @property
    def support_max(self) -> float:
        return float(min(np.count_nonzero(self.p), self.p.size - 1))

    def log_pgf_1m(self, w):
        w = np.asarray(w)
        values, counts = _grouped(self.p)
        factors = [clog1p(-value * w) for value in values]
        log_full = sum(_times(count, factor) for count, factor in zip(counts, factors))
        # f(1-w) = prod_v (1 - p_v w) * mean_u 1/(1 - p_u w), and
        # mean_u 1/(1 - p_u w) = 1 + mean_u p_u w/(1 - p_u w), so log1p keeps tiny |w| exact.
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = sum(
                count * (value * w / (1.0 - value * w)) for value, count in zip(values, counts)
            ) / self.p.size
            out = log_full + clog1p(correction)
        vanishing = np.zeros(w.shape, dtype=bool)
        for factor in factors:
            vanishing |= np.isneginf(factor.real)
        if np.any(vanishing):
            out = np.where(vanishing, self._log_pgf_excluding_vanishing(w, values, counts, factors), out)
        return out

    def _log_pgf_excluding_vanishing(self, w, values, counts, factors):
        """log mean_u prod_{v != u}(1 - p_v w) as a log-sum-exp over distinct p_u, for points
        where some factor 1 - p_v w is zero (there the product form above is 0 * inf)."""
        terms = []
        for u, count in enumerate(counts):
            rest = sum(_times(c - (g == u), f) for g, (c, f) in enumerate(zip(counts, factors)))
            terms.append(np.log(count / self.p.size) + rest)
        stacked = np.stack(terms)
        peak = np.max(stacked.real, axis=0)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        with np.errstate(divide="ignore"):
            return peak + np.log(np.sum(np.exp(stacked - peak), axis=0))

    def dlog_pgf_1m(self, w):
        # f(1-w) = P(w) A(w) / n with P = prod_v (1 - p_v w), A = sum_u 1/(1 - p_u w), so
        # f'/f = -d/dw log(P A) = sum_v p_v/(1 - p_v w) - A'(w)/A(w),
        # A'(w) = sum_u p_u/(1 - p_u w)^2.  Finite wherever every 1 - p_v w != 0.
        w = np.asarray(w)
        values, counts = _grouped(self.p)
        dtype = np.result_type(w, float)
        score = np.zeros(w.shape, dtype=dtype)
        a = np.zeros(w.shape, dtype=dtype)
        da = np.zeros(w.shape, dtype=dtype)
        for value, count in zip(values, counts):
            inv = 1.0 / (1.0 - value * w)
            score = score + count * value * inv
            a = a + count * inv
            da = da + count * value * inv * inv
        return score - da / a


@dataclass(frozen=True)
class FinitePmf(OffspringLaw):
    """Any law on {0, ..., n} given by its probabilities ``pmf[j] = P(xi = j)``."""

    pmf_values: np.ndarray = field(repr=False)

    def __post_init__(self):
        pmf = check.array("pmf", self.pmf_values, ndim=1, low=0.0, high=1.0)
        if pmf.size == 0:
            raise ValueError("pmf must have at least one entry, got an empty array")
        if not np.isclose(pmf.sum(), 1.0, rtol=0, atol=1e-9):
            raise ValueError(f"pmf must sum to 1 (within 1e-9), got sum {pmf.sum()!r}")
        pmf = pmf / pmf.sum()
        pmf.setflags(write=False)
        object.__setattr__(self, "pmf_values", pmf)

    def __repr__(self):
        return f"FinitePmf(support=0..{self.pmf_values.size - 1}, mean={self.mean:.6g})"

    @property
    def mean(self) -> float:
        return float(np.arange(self.pmf_values.size) @ self.pmf_values)

    @property
    def variance(self) -> float:
        j = np.arange(self.pmf_values.size)
        return float((j * j) @ self.pmf_values - self.mean**2)

    @property
    def support_max(self) -> float:
        return float(np.flatnonzero(self.pmf_values)[-1])

    def one_minus_pgf(self, w):
        # 1 - f(1-w) = sum_j pi_j (1 - (1-w)^j), each term by expm1/log1p.
        w = np.asarray(w)
        log1m = clog1p(-w)
        out = np.zeros(w.shape, dtype=np.result_type(w, float))
        for j, pj in enumerate(self.pmf_values):
            if j > 0 and pj > 0:
                out = out - pj * cexpm1(_times(j, log1m))
        return out

    def log_pgf_1m(self, w):
        return clog1p(-self.one_minus_pgf(w))

    def dlog_pgf_1m(self, w):
        # f'(s) = sum_j j pi_j s^(j-1) by Horner's rule at s = 1 - w (no cancellation for
        # real s in [0, 1]: every term is non-negative), divided by f(s).
        w = np.asarray(w)
        s = 1.0 - w
        coeffs = np.arange(1, self.pmf_values.size) * self.pmf_values[1:]
        deriv = np.polyval(coeffs[::-1], s) if coeffs.size else np.zeros_like(s)
        return deriv / np.exp(self.log_pgf_1m(w))

    def _pmf(self, n_max):
        out = np.zeros(n_max + 1)
        keep = min(n_max + 1, self.pmf_values.size)
        out[:keep] = self.pmf_values[:keep]
        return out
