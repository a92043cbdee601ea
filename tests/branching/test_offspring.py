"""Offspring laws: pmf, moments, pgf and its distance forms against independent routes.

Independent routes: scipy.stats distributions, brute-force enumeration of Bernoulli
outcomes, moments summed from the pmf, and mpmath at 50 digits for the pgf near s = 1.
"""

from __future__ import annotations

import itertools
import math

import mpmath as mp
import numpy as np
import pytest
from scipy import stats

from branching import (
    Binomial,
    FinitePmf,
    LeaveOneOut,
    NegativeBinomial,
    Poisson,
    PoissonBinomial,
)
from branching.offspring import cexpm1, clog1p



@pytest.fixture(autouse=True)
def _fifty_digits():
    """mpmath at 50 digits inside each test only (its precision is global state)."""
    with mp.workdps(50):
        yield

P_TOKENS = np.array([0.05, 0.3, 0.3, 0.7, 0.0, 1.0])  # repeated, zero and one rates


def _pb_pmf_bruteforce(p):
    """Poisson-binomial pmf by enumerating every Bernoulli outcome."""
    out = np.zeros(len(p) + 1)
    for bits in itertools.product((0, 1), repeat=len(p)):
        prob = math.prod(q if b else 1 - q for b, q in zip(bits, p))
        out[sum(bits)] += prob
    return out


def _loo_pmf_bruteforce(p):
    """Leave-one-out law: the excluded token uniform, the others Bernoulli."""
    out = np.zeros(len(p))
    for u in range(len(p)):
        rest = [q for v, q in enumerate(p) if v != u]
        out += _pb_pmf_bruteforce(rest) / len(p)
    return out


# (law, exact pmf on 0..n-1 from an independent route)
LAWS = [
    (Binomial(12, 0.3), stats.binom.pmf(np.arange(40), 12, 0.3)),
    (Binomial(50257, 0.9 / 50257), stats.binom.pmf(np.arange(40), 50257, 0.9 / 50257)),
    (Poisson(2.5), stats.poisson.pmf(np.arange(40), 2.5)),
    (NegativeBinomial(1.5, 0.7), stats.nbinom.pmf(np.arange(400), 0.7, 0.7 / 2.2)),
    (PoissonBinomial(P_TOKENS), np.pad(_pb_pmf_bruteforce(P_TOKENS), (0, 3))),
    (LeaveOneOut(P_TOKENS), np.pad(_loo_pmf_bruteforce(P_TOKENS), (0, 3))),
    (FinitePmf(np.array([0.2, 0.0, 0.5, 0.3])), np.array([0.2, 0.0, 0.5, 0.3, 0.0])),
]
IDS = [repr(law) for law, _ in LAWS]


@pytest.mark.parametrize("law, want", LAWS, ids=IDS)
def test_pmf(law, want):
    got = law.pmf(want.size - 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("law, want", LAWS, ids=IDS)
def test_mean_variance_against_pmf(law, want):
    n = np.arange(want.size)
    mean = n @ want
    var = (n * n) @ want - mean**2
    assert law.mean == pytest.approx(mean, rel=1e-10, abs=1e-14)
    assert law.variance == pytest.approx(var, rel=1e-9, abs=1e-14)
    assert law.factorial_moment2 == pytest.approx(n * (n - 1) @ want, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("law, want", LAWS, ids=IDS)
def test_pgf_against_pmf(law, want):
    s = np.array([0.0, 0.3, -0.6, 0.99, 0.5 + 0.5j, np.exp(2.1j), -1.0])
    series = np.array([np.sum(want * z ** np.arange(want.size)) for z in s])
    np.testing.assert_allclose(law.pgf(s), series, rtol=0, atol=1e-12)


def _mp_pgf_1m(law, w):
    """f(1 - w) in 50-digit arithmetic from the law's definition."""
    w = mp.mpmathify(w)
    if isinstance(law, Binomial):
        return (1 - mp.mpf(law.p) * w) ** law.n
    if isinstance(law, Poisson):
        return mp.exp(-mp.mpf(law.mu) * w)
    if isinstance(law, NegativeBinomial):
        return (1 + mp.mpf(law.mu) * w / law.k) ** (-mp.mpf(law.k))
    if isinstance(law, PoissonBinomial):
        return mp.fprod(1 - mp.mpf(p) * w for p in law.p)
    if isinstance(law, LeaveOneOut):
        terms = [mp.fprod(1 - mp.mpf(p) * w for v, p in enumerate(law.p) if v != u)
                 for u in range(law.p.size)]
        return mp.fsum(terms) / law.p.size
    return mp.fsum(mp.mpf(p) * (1 - w) ** j for j, p in enumerate(law.pmf_values))


TINY_W = [1e-18, 3e-12, -2e-9, 1e-5 + 2e-6j, 4e-15j, 0.3 - 0.2j, 0.9]


def _distance_cases():
    for law, _ in LAWS:
        for w in TINY_W:
            yield pytest.param(law, w, id=f"{law!r}-w={w}")


@pytest.mark.parametrize("law, w", list(_distance_cases()))
def test_distance_forms_against_mpmath(law, w):
    exact = _mp_pgf_1m(law, w)
    got_log = complex(law.log_pgf_1m(np.array(w)))
    want_log = complex(mp.log(exact))
    assert abs(got_log - want_log) <= 1e-14 * abs(want_log), (got_log, want_log)
    got_1m = complex(law.one_minus_pgf(np.array(w)))
    want_1m = complex(1 - exact)
    assert abs(got_1m - want_1m) <= 1e-13 * abs(want_1m), (got_1m, want_1m)


@pytest.mark.parametrize("law", [law for law, _ in LAWS], ids=IDS)
def test_dlog_pgf_against_mpmath_derivative(law):
    """f'(1-w)/f(1-w) = -d/dw log f(1-w), differentiated in 50-digit arithmetic."""
    for w in [0.0, 1e-12, 0.25, 0.8, 0.1 + 0.3j, -0.05]:
        want = complex(-mp.diff(lambda x: mp.log(_mp_pgf_1m(law, x)), mp.mpmathify(w)))
        got = complex(law.dlog_pgf_1m(np.array(w)))
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (w, got, want)


@pytest.mark.parametrize("law", [law for law, _ in LAWS], ids=IDS)
def test_dlog_at_zero_is_the_mean(law):
    assert float(np.real(law.dlog_pgf_1m(0.0))) == pytest.approx(law.mean, rel=1e-12)


def test_dlog_is_vectorised_and_keeps_shape():
    w = np.linspace(0, 0.9, 12).reshape(3, 4)
    for law, _ in LAWS:
        assert np.shape(law.dlog_pgf_1m(w)) == (3, 4)


@pytest.mark.parametrize("z", [1e-20, -3e-17, 1e-10 + 1e-25j, -1e-18 + 3e-9j, 2e-30j,
                               1e-300 + 1e-300j, 0.5 - 0.25j, 1e-8 - 1e-8j, 3.0 + 4.0j])
@pytest.mark.parametrize("fn, ref", [(clog1p, mp.log1p), (cexpm1, mp.expm1)],
                         ids=["clog1p", "cexpm1"])
def test_clog1p_and_cexpm1_against_mpmath(fn, ref, z):
    want = complex(ref(mp.mpmathify(z)))
    got = complex(fn(np.array(z)))
    assert abs(got - want) <= 1e-15 * abs(want), (got, want)


def test_clog1p_complex_near_minus_one():
    z = -0.999 + 0.0j
    want = complex(mp.log1p(mp.mpmathify(z)))
    got = complex(clog1p(np.array(z)))
    assert abs(got - want) <= 1e-15 * abs(want), (got, want)


def test_clog1p_is_real_for_real_input():
    assert clog1p(np.array([1e-20, -0.5])).dtype == float
    assert cexpm1(np.array([1e-20, -0.5])).dtype == float


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Binomial(-1, 0.3), "n"),
        (lambda: Binomial(3, 1.5), "p"),
        (lambda: Binomial(3, float("nan")), "p"),
        (lambda: Poisson(-0.1), "mu"),
        (lambda: NegativeBinomial(1.0, 0.0), "k"),
        (lambda: PoissonBinomial(np.array([0.2, 1.2])), "p"),
        (lambda: LeaveOneOut(np.array([0.2])), "p"),
        (lambda: FinitePmf(np.array([0.5, 0.6])), "pmf"),
    ],
)
def test_invalid_parameters_name_themselves(make, name):
    with pytest.raises(ValueError, match=name):
        make()
