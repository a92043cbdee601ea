"""branching.exact against independent routes.

Routes: closed forms vs recursions vs pmf moments; truncated power-series composition;
plain (s-form) pgf iteration where it is well conditioned; mpmath at high precision;
scipy's Lambert W; count-level and cohort Monte Carlo with fixed seeds (tolerances in
standard errors); the reference's formulas, which are checked, not trusted.
(Token-level brute-force enumeration is in test_exact_bruteforce.py.)
"""

from __future__ import annotations

import json
import logging
import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from branching import (
    Binomial,
    FinitePmf,
    ListDecoderModel,
    NegativeBinomial,
    Poisson,
    PoissonBinomial,
)
from branching import cli, exact
from branching.exact.generating import _log_pgf

HYP = settings(max_examples=25, deadline=None)


@pytest.fixture(autouse=True)
def _forty_digits():
    """mpmath at 40 digits inside each test only (its precision is global state)."""
    with mp.workdps(40):
        yield


def _binomial_series_pgf(M, eps, T, n, *, eps_oracle=None):
    """Coefficients 0..n-1 of G_T by truncated power-series composition (exact truncation).

    G_T(s) = prod_k h(F_{k+1,T}(s)); all series have non-negative coefficients, so the low
    coefficients of products and compositions only involve low coefficients.
    """
    eo = eps if eps_oracle is None else eps_oracle

    def mul(a, b):
        return np.convolve(a, b)[:n]

    def power(base, k):
        out = np.zeros(n)
        out[0] = 1.0
        for _ in range(k):
            out = mul(out, base)
        return out

    u = np.zeros(n)
    u[1] = 1.0  # u = s
    result = np.zeros(n)
    result[0] = 1.0
    for _ in range(T):
        lin_h = eo * u
        lin_h[0] += 1 - eo
        result = mul(result, power(lin_h, M - 1))
        lin_f = eps * u
        lin_f[0] += 1 - eps
        u = power(lin_f, M)
    return result


def _simulate_counts(M, eps, T, runs, seed):
    """Count-level Monte Carlo of Z_T: Z' = Bin(M Z, eps) + Bin(M-1, eps)."""
    rng = np.random.default_rng(seed)
    z = np.zeros(runs, dtype=np.int64)
    for _ in range(T):
        z = rng.binomial(M * z, eps) + rng.binomial(M - 1, eps, size=runs)
    return z


# =========================================================================== means
@pytest.mark.parametrize("M", [8, 1000])
@pytest.mark.parametrize("r0", [0.5, 1.0, 1.3])
def test_mean_closed_form_matches_recursion(M, r0):
    model = ListDecoderModel.from_r0(M=M, r0=r0, T=60)
    closed = exact.mean_closed_form(M, model.eps, np.arange(61))
    np.testing.assert_allclose(exact.mean_path(model), closed, rtol=1e-12, atol=0)


def test_mean_closed_form_exactly_critical():
    # M * eps == 1 exactly in binary floating point
    t = np.arange(0, 200)
    np.testing.assert_array_equal(exact.mean_closed_form(4, 0.25, t), 0.75 * t)
    assert exact.mean_path(ListDecoderModel(M=4, eps=0.25, T=5))[-1] == pytest.approx(3.75, abs=1e-14)


@pytest.mark.parametrize("x", [1e-13, -1e-13, 1e-12, -3e-12, 1e-9])
def test_mean_closed_form_near_criticality_against_mpmath(x):
    M, T = 50257, 1000
    eps = (1 + x) / M
    m = mp.mpf(M) * mp.mpf(eps)  # the exact product of the floats
    lam = (M - 1) * mp.mpf(eps)
    want = lam * mp.fsum(m**k for k in range(T))
    got = exact.mean_closed_form(M, eps, T)
    assert got == pytest.approx(float(want), rel=1e-12)


def test_mean_closed_form_regimes():
    M, lam = 100, 0.7
    sub = exact.mean_closed_form(M, 0.9 / M, 5000, lam=lam)
    assert sub == pytest.approx(lam / (1 - 0.9), rel=1e-12)  # bounded
    sup = exact.mean_closed_form(M, 1.2 / M, 300, lam=lam)
    assert sup / (lam * 1.2**300 / 0.2) == pytest.approx(1.0, rel=1e-12)  # exponential
    assert exact.mean_closed_form(M, 0.0, 0) == 0.0
    assert exact.mean_closed_form(M, 0.0, 7, lam=lam) == lam  # m = 0: only immigrants


@pytest.mark.parametrize("x", [-2.0, 0.5, 3.0])
def test_finite_horizon_scaling_limit(x):
    """E Z_T / (lambda T) -> (e^x - 1)/x with m = 1 + x/T (reference sec. 4.9)."""
    T = 200_000
    M = 10**6
    eps = (1 + x / T) / M
    ratio = exact.mean_closed_form(M, eps, T) / ((M - 1) * eps * T)
    assert ratio == pytest.approx(math.expm1(x) / x, rel=1e-4)


def test_mean_overflow_raises():
    with pytest.raises(ValueError, match="float64"):
        exact.mean_closed_form(10, 0.3, 2000)
    with pytest.raises(ValueError, match="float64"):
        exact.mean_path(ListDecoderModel(M=10, eps=0.3, T=2000))


def test_mean_path_per_step_rates_matches_product_formula():
    """E Z_t = sum_{s<t} lambda_s prod_{r=s+1}^{t-1} m_r (reference sec. 5)."""
    rng = np.random.default_rng(3)
    M, T = 40, 12
    steps = rng.uniform(0.005, 0.05, size=T)
    model = ListDecoderModel(M=M, eps=0.0, T=T, eps_steps=steps)
    m, lam = M * steps, (M - 1) * steps
    want = [sum(lam[s] * np.prod(m[s + 1:t]) for s in range(t)) for t in range(T + 1)]
    np.testing.assert_allclose(exact.mean_path(model), want, rtol=1e-13)


# =========================================================================== variance
@pytest.mark.parametrize("r0", [0.7, 1.0, 1.15])
@pytest.mark.parametrize("law", ["binomial", "poisson", "negative_binomial"])
def test_moments_match_pmf_moments(r0, law):
    kwargs = {"dispersion": 2.0} if law == "negative_binomial" else {}
    model = ListDecoderModel.from_r0(M=20, r0=r0, T=25, law=law, **kwargs)
    table = exact.pmf(model, tail=1e-15)
    n = np.arange(table.values.size)
    mean = n @ table.values
    var = (n * n) @ table.values - mean**2
    assert exact.mean_path(model)[-1] == pytest.approx(mean, rel=1e-10)
    assert exact.variance_path(model)[-1] == pytest.approx(var, rel=1e-8)


def test_stationary_variance_formula_of_the_reference():
    """(M-1)eps(1-eps)/((1-M eps)^2 (1+M eps)) -- derived -- agrees with the general formula."""
    for M, eps in [(10, 0.05), (50257, 0.9 / 50257), (3, 0.2)]:
        model = ListDecoderModel(M=M, eps=eps, T=0)
        ref = (M - 1) * eps * (1 - eps) / ((1 - M * eps) ** 2 * (1 + M * eps))
        assert exact.stationary_variance(model) == pytest.approx(ref, rel=1e-12)
        assert exact.stationary_mean(model) == pytest.approx((M - 1) * eps / (1 - M * eps), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [dict(M=30, eps=0.8 / 30), dict(M=30, eps=0.6 / 30, eps_oracle=0.05),
     dict(M=30, eps=0.02, law="poisson"), dict(M=30, eps=0.02, law="negative_binomial", dispersion=0.5),
     dict(M=4, eps=np.array([0.05, 0.1, 0.2, 0.3]))],
)
def test_stationary_moments_long_horizon_and_pmf(kwargs):
    model = ListDecoderModel(T=400, **kwargs)
    mean, var = exact.stationary_mean(model), exact.stationary_variance(model)
    assert exact.mean_path(model)[-1] == pytest.approx(mean, rel=1e-12)
    assert exact.variance_path(model)[-1] == pytest.approx(var, rel=1e-12)
    law = exact.stationary_pmf(model, tail=1e-15)
    assert law.stationary and law.truncated_mass < 1e-14
    assert law.mean() == pytest.approx(mean, rel=1e-10)
    assert law.variance() == pytest.approx(var, rel=1e-8)


def test_stationary_pmf_is_the_long_horizon_pmf():
    model = ListDecoderModel.from_r0(M=30, r0=0.6, T=120)
    finite = exact.pmf(model, tail=1e-15).values
    limit = exact.stationary_pmf(model, tail=1e-15).values
    n = max(finite.size, limit.size)
    np.testing.assert_allclose(np.pad(finite, (0, n - finite.size)),
                               np.pad(limit, (0, n - limit.size)), rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(M=10, eps=0.1), "r0 < 1"), (dict(M=10, eps=0.2), "r0 < 1"),
     (dict(M=10, eps=0.05, delta=0.1), "delta"),
     (dict(M=10, eps=0.05, eps_steps=np.full(3, 0.05)), "eps_steps")],
)
def test_stationary_refusals(kwargs, match):
    model = ListDecoderModel(T=3, **kwargs)
    for fn in (exact.stationary_mean, exact.stationary_variance, exact.stationary_pmf):
        with pytest.raises(ValueError, match=match):
            fn(model)


def test_variance_against_monte_carlo_with_misses():
    M, eps, T, delta, runs = 20, 0.045, 15, 0.1, 40_000
    model = ListDecoderModel(M=M, eps=eps, T=T, delta=delta)
    rng = np.random.default_rng(11)
    z = np.zeros(runs, dtype=np.int64)
    alive = np.ones(runs, dtype=bool)
    for _ in range(T):
        z = rng.binomial(M * z, eps) + alive * rng.binomial(M - 1, eps, size=runs)
        alive &= rng.random(runs) >= delta
    mean, var = exact.mean_path(model)[-1], exact.variance_path(model)[-1]
    assert abs(z.mean() - mean) < 4 * z.std() / math.sqrt(runs)
    # standard error of the sample variance: sqrt((mu4 - var^2)/n)
    mu4 = np.mean((z - z.mean()) ** 4)
    assert abs(z.var() - var) < 4 * math.sqrt((mu4 - z.var() ** 2) / runs)


# =========================================================================== pmf
def test_pmf_one_step_is_the_immigration_law():
    for model, want in [
        (ListDecoderModel(M=50, eps=0.03, T=1), stats.binom.pmf(np.arange(50), 49, 0.03)),
        (ListDecoderModel(M=50, eps=0.03, T=1, law="poisson"), stats.poisson.pmf(np.arange(50), 49 * 0.03)),
    ]:
        got = exact.pmf(model, cap=49).values
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("M, eps, T", [(3, 0.6, 10), (2, 0.8, 14), (3, 0.3, 8)])
def test_pmf_against_power_series_composition(M, eps, T):
    """Damped inversion below a cap with most mass beyond it (R0 = 1.8, 1.6) and without."""
    cap = 12
    want = _binomial_series_pgf(M, eps, T, cap + 1)
    law = exact.pmf(ListDecoderModel(M=M, eps=eps, T=T), cap=cap)
    np.testing.assert_allclose(law.values, want, rtol=1e-9, atol=1e-16)
    assert law.truncated_mass == pytest.approx(1 - math.fsum(want), abs=1e-14)


def test_pmf_with_oracle_rate_against_power_series():
    want = _binomial_series_pgf(4, 0.3, 6, 20, eps_oracle=0.1)
    got = exact.pmf(ListDecoderModel(M=4, eps=0.3, T=6, eps_oracle=0.1), cap=19).values
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-16)


def test_pmf_reports_round_off_instead_of_hiding_it():
    """Z_3 <= 26 for M = 3, so P(Z_3 = 27..300) = 0 exactly; the inversion leaves round-off
    there (of either sign).  It is reported, entries are non-negative, and the truncated mass
    comes from the raw sum (so it is 0 up to that round-off, not an artefact of clipping)."""
    M, eps, T, cap = 3, 0.3, 3, 300
    law = exact.pmf(ListDecoderModel(M=M, eps=eps, T=T), cap=cap)
    want = _binomial_series_pgf(M, eps, T, 27)
    assert 0 < law.roundoff < 1e-14
    assert np.all(law.values >= 0)
    np.testing.assert_allclose(law.values[:27], want, rtol=0, atol=1e-15)
    assert np.all(law.values[27:] <= 10 * law.roundoff)
    assert 0 <= law.truncated_mass <= cap * law.roundoff
    assert law.to_pandas().attrs["roundoff"] == law.roundoff and "roundoff=" in repr(law)


def test_pmf_tail_parameter_bounds_the_truncated_mass():
    model = ListDecoderModel.from_r0(M=100, r0=1.0, T=40)
    full = exact.pmf(model, tail=1e-15)
    for tail in (1e-3, 1e-6, 1e-10):
        law = exact.pmf(model, tail=tail)
        assert law.truncated_mass <= tail
        assert law.truncated_mass == pytest.approx(math.fsum(full.values[law.cap + 1:]), abs=1e-14)
        np.testing.assert_allclose(law.values, full.values[: law.cap + 1], atol=1e-15)


def test_pmf_supercritical_mass_beyond_cap_is_reported(caplog):
    model = ListDecoderModel.from_r0(M=50257, r0=1.1, T=300)
    with caplog.at_level(logging.WARNING, logger="branching.exact"):
        law = exact.pmf(model, cap=100)
    assert law.truncated_mass > 1 - 1e-6
    assert any("beyond cap" in rec.message for rec in caplog.records)
    assert np.all((law.values >= 0) & (law.values <= 1))
    assert law.values[0] == pytest.approx(exact.prob_no_error(model), rel=1e-6, abs=1e-30)
    with pytest.raises(ValueError, match="cap="):
        exact.pmf(model)


def test_pmf_horizon_zero_and_cap_padding():
    model = ListDecoderModel(M=5, eps=0.1, T=0)
    assert exact.pmf(model).values.tolist() == [1.0]
    assert exact.pmf(model, cap=3).values.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_zlaw_repr_and_table():
    law = exact.pmf(ListDecoderModel(M=10, eps=0.05, T=4))
    assert "ZLaw(" in repr(law) and "truncated_mass" in repr(law)
    frame = law.to_pandas()
    assert list(frame.columns) == ["n", "probability"] and len(frame) == law.cap + 1
    assert frame.attrs["truncated_mass"] == law.truncated_mass
    with pytest.raises(ValueError):
        law.values[0] = 0.5


# =========================================================================== P(Z_T=0), accuracy
@pytest.mark.parametrize("r0", [0.6, 1.0, 1.4])
def test_prob_no_error_against_plain_iteration(r0):
    """G_T(0) by composing f(s) = (1 - eps + eps s)^M in plain floating point."""
    M, T = 20, 30
    eps = r0 / M
    s, log_g = 0.0, 0.0
    for _ in range(T):
        log_g += (M - 1) * math.log(1 - eps + eps * s)
        s = (1 - eps + eps * s) ** M
    got = exact.prob_no_error(ListDecoderModel(M=M, eps=eps, T=T))
    assert got == pytest.approx(math.exp(log_g), rel=1e-12)


@pytest.mark.parametrize("r0", [0.6, 1.0, 1.3])
@pytest.mark.parametrize("extra", [{}, {"law": "negative_binomial", "dispersion": 0.8},
                                   {"eps_oracle": 0.002, "delta": 0.02}], ids=["bin", "nb", "oracle"])
def test_accuracy_against_pmf(r0, extra):
    model = ListDecoderModel.from_r0(M=40, r0=r0, T=20, **extra)
    law = exact.pmf(model.replace(delta=0.0), tail=1e-15)
    kept = (1 - model.delta) ** model.T
    want = kept * math.fsum(law.values / (1.0 + np.arange(law.values.size)))
    est = exact.accuracy_estimate(model)
    assert est.value == pytest.approx(want, rel=1e-11)
    assert est.abs_error < 1e-12
    assert float(est) == exact.accuracy(model)


def test_accuracy_supercritical_against_monte_carlo():
    M, r0, T, runs = 200, 1.25, 30, 20_000
    z = _simulate_counts(M, r0 / M, T, runs, seed=5)
    sample = 1.0 / (1.0 + z)
    got = exact.accuracy(ListDecoderModel.from_r0(M=M, r0=r0, T=T))
    assert abs(sample.mean() - got) < 4 * sample.std() / math.sqrt(runs)


def test_accuracy_gpt2_scale_against_romberg():
    """R0 = 1.1, T = 1000: E Z_T ~ 3e42.  The Gauss-Legendre rule in y = log(1-s) against
    Romberg's rule in a different substitution, s = exp(-e^v) (ds = -e^{-u} u dv, u = e^v)."""
    model = ListDecoderModel.from_r0(M=50257, r0=1.1, T=1000)
    est = exact.accuracy_estimate(model)
    mean = exact.mean_path(model)[-1]
    centre = -math.log(mean)
    v = np.linspace(centre - 60, 5.0, 2**12 + 1)
    u = np.exp(v)
    log_g = np.real(_log_pgf(model, -np.expm1(-u), delta=0.0))
    want = integrate.romb(np.exp(log_g - u + v), dx=v[1] - v[0])
    assert est.value == pytest.approx(want, rel=1e-9)
    assert 1 / (1 + mean) <= est.value <= 1.0  # Jensen
    assert est.abs_error <= 1e-9 * est.value


def test_accuracy_deep_supercritical_in_log_space():
    """R0 = 2, T = 10^4, M = 50257: the accuracy is about 1e-3010, below the float range.

    Independent route: Z_t / m^t converges (W), so for T > T0 with Z_T0 ~ 1e9,
    E[1/(1+Z_T)] = m^{-(T-T0)} E[1/(1+Z_T0)] (1 + O(1e-5)); E[1/(1+Z_T0)] at T0 = 30 by
    count-level Monte Carlo (tolerance 4 standard errors, in logs)."""
    M, r0, T, T0, runs = 50257, 2.0, 10_000, 30, 20_000
    est = exact.accuracy_estimate(ListDecoderModel.from_r0(M=M, r0=r0, T=T))
    assert est.value == 0.0 and math.isfinite(est.log_value)
    assert est.rel_error < 1e-9
    sample = 1.0 / (1.0 + _simulate_counts(M, r0 / M, T0, runs, seed=11))
    want = math.log(sample.mean()) - (T - T0) * math.log(r0)
    assert abs(est.log_value - want) < 4 * sample.std() / math.sqrt(runs) / sample.mean()
    assert exact.log_accuracy(ListDecoderModel.from_r0(M=M, r0=r0, T=T)) == est.log_value
    assert est.log10_value == pytest.approx(-3010.4, abs=0.05)
    assert "below float range" in repr(est)


def test_accuracy_log_value_agrees_with_value_where_representable():
    """R0 = 2, T = 1000: about 7e-302, still a float; and the same m^{-T} scaling."""
    near = exact.accuracy_estimate(ListDecoderModel.from_r0(M=50257, r0=2.0, T=1000))
    far = exact.accuracy_estimate(ListDecoderModel.from_r0(M=50257, r0=2.0, T=1100))
    assert 0 < near.value < 1e-300
    assert near.value == pytest.approx(math.exp(near.log_value), rel=1e-12)
    assert far.log_value - near.log_value == pytest.approx(-100 * math.log(2.0), rel=1e-10)


def test_pgf_engine_gpt2_scale_against_mpmath():
    """log G_T(1 - w) for w ~ 1/E Z_T ~ 1e-42: the w-form engine against the s-form
    composition carried out in 80-digit arithmetic (where 1 - 1e-42 is representable)."""
    M, T = 50257, 1000
    model = ListDecoderModel.from_r0(M=M, r0=1.1, T=T)
    eps = mp.mpf(model.eps)
    points = [1e-45, 3e-43, 1e-41, 1e-30, 0.5]
    got = np.real(_log_pgf(model, np.array(points)))
    with mp.workdps(80):
        for w, value in zip(points, got):
            s, log_g = 1 - mp.mpf(w), mp.mpf(0)
            for _ in range(T):
                base = 1 - eps + eps * s
                log_g += (M - 1) * mp.log(base)
                s = base**M
            assert value == pytest.approx(float(log_g), rel=1e-11, abs=1e-300)


def test_accuracy_at_criticality_approaches_two_over_sigma2_T():
    """E[1/(1+Z_T)] ~ 2/(sigma^2 T) at R0 = 1 (reference sec. 3.5, via the Gamma limit)."""
    M = 50257
    errors = []
    for T in (250, 1000, 4000):
        model = ListDecoderModel(M=M, eps=1 / M, T=T)
        sigma2 = model.offspring().variance
        errors.append(abs(exact.accuracy(model) * sigma2 * T / 2 - 1))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3


def test_accuracy_subcritical_long_horizon_against_monte_carlo():
    """R0 = 0.9, M = 50257, T = 2000: Z_T is stationary up to 0.9**T, so count-level Monte
    Carlo over 300 steps (0.9**300 ~ 2e-14) estimates it (4 standard errors); the Jensen
    bound (1 - M eps)/(1 - eps) of the reference holds with room to spare."""
    M, eps, runs = 50257, 0.9 / 50257, 20_000
    acc = exact.accuracy(ListDecoderModel(M=M, eps=eps, T=2000))
    sample = 1.0 / (1.0 + _simulate_counts(M, eps, 300, runs, seed=13))
    assert abs(sample.mean() - acc) < 4 * sample.std() / math.sqrt(runs)
    assert acc > (1 - M * eps) / (1 - eps) + 0.05


def test_misses_factor_out_of_accuracy():
    model = ListDecoderModel.from_r0(M=30, r0=0.9, T=25, delta=0.03)
    kept = exact.accuracy(model.replace(delta=0.0))
    assert exact.accuracy(model) == pytest.approx(0.97**25 * kept, rel=1e-13)
    assert exact.oracle_survival(model) == pytest.approx(0.97**25, rel=1e-14)


# =========================================================================== divergence depth
@pytest.mark.parametrize("r0", [0.8, 1.0, 1.2])
def test_divergence_depth_law_sums_to_one(r0):
    model = ListDecoderModel.from_r0(M=500, r0=r0, T=40)
    law = exact.divergence_depth_law(model)
    assert law.shape == (41,)
    assert math.fsum(law) == pytest.approx(1.0, abs=1e-12)
    assert law[-1] == pytest.approx(exact.accuracy(model), rel=1e-11)


def test_divergence_depth_law_with_misses_sums_to_one_minus_empty():
    model = ListDecoderModel.from_r0(M=50, r0=0.9, T=30, delta=0.05)
    law = exact.divergence_depth_law(model)
    empty = exact.prob_no_error(model) - exact.prob_oracle_alone(model)
    assert math.fsum(law) == pytest.approx(1.0 - empty, abs=1e-12)


def test_divergence_depth_law_against_cohort_monte_carlo():
    M, r0, T, runs = 100, 0.95, 12, 40_000
    eps = r0 / M
    rng = np.random.default_rng(7)
    cohorts = np.zeros((runs, T), dtype=np.int64)
    for t in range(T):
        cohorts[:, :t] = rng.binomial(M * cohorts[:, :t], eps)
        cohorts[:, t] = rng.binomial(M - 1, eps, size=runs)
    total = cohorts.sum(axis=1)
    samples = np.column_stack([cohorts / (1.0 + total)[:, None], 1.0 / (1.0 + total)])
    law = exact.divergence_depth_law(ListDecoderModel(M=M, eps=eps, T=T))
    se = samples.std(axis=0) / math.sqrt(runs)
    assert np.all(np.abs(samples.mean(axis=0) - law) < 4 * se + 1e-12)


def test_divergence_depth_supercritical_errors_are_old():
    """Above threshold the output mostly left the oracle early (reference sec. 4.10)."""
    law = exact.divergence_depth_law(ListDecoderModel.from_r0(M=50257, r0=1.1, T=200))
    assert np.argmax(law[:-1]) < 20 and math.fsum(law) == pytest.approx(1.0, abs=1e-10)


# =========================================================================== one lineage
LINEAGE_LAWS = [Binomial(5, 0.4), Binomial(50257, 1.3 / 50257), Poisson(1.7),
                NegativeBinomial(2.0, 0.5), PoissonBinomial(np.array([0.3, 0.9, 0.6])),
                FinitePmf(np.array([0.3, 0.1, 0.2, 0.4]))]


@pytest.mark.parametrize("law", LINEAGE_LAWS, ids=repr)
def test_extinction_against_fixed_point_iteration(law):
    q = 0.0
    for _ in range(5000):
        q = float(np.real(law.pgf(q)))
    assert exact.extinction_probability(law) == pytest.approx(q, abs=1e-13)
    assert exact.survival_probability(law) == pytest.approx(1 - q, abs=1e-13)


def test_extinction_is_exactly_one_at_or_below_criticality():
    for law in [Binomial(10, 0.05), Binomial(4, 0.25), Poisson(1.0), Poisson(0.0)]:
        assert exact.extinction_probability(law) == 1.0
        assert exact.survival_probability(law) == 0.0
    assert exact.extinction_probability(FinitePmf(np.array([0.0, 1.0]))) == 0.0  # xi = 1


@pytest.mark.parametrize("law", [Binomial(2, 1.0), Binomial(7, 1.0), FinitePmf(np.array([0.0, 0.0, 1.0])),
                                 FinitePmf(np.array([0.0, 0.25, 0.75]))], ids=repr)
def test_lineage_without_childless_individuals_survives(law):
    """f(0) = 0: every candidate has at least one child, so no lineage dies (zero variance
    included).  Independent route: q_{n+1} = f(q_n) from q_0 = 0 never leaves 0."""
    q = 0.0
    for _ in range(100):
        q = float(np.real(law.pgf(q)))
    assert q == 0.0
    assert exact.survival_probability(law) == 1.0
    assert exact.extinction_probability(law) == 0.0


def test_cli_survival_of_the_deterministic_law(capsys):
    assert cli.main(["exact", "--M", "2", "--eps", "1.0", "--T", "3", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["survival_probability"] == 1.0 and out["extinction_probability"] == 0.0
    assert out["mean_Z_T"] == 1 + 2 + 4  # Z_{t+1} = 2 Z_t + 1


def test_cli_labels_say_what_is_computed_with_misses(capsys):
    """With delta > 0 the accuracy carries the factor (1-delta)^T and P(Z_T = 0) counts
    empty lists; the labels say so, and the oracle-alone probability is printed too."""
    model = ListDecoderModel.from_r0(M=50, r0=0.9, T=20, delta=0.1)
    assert cli.main(["exact", "--M", "50", "--r0", "0.9", "--T", "20", "--delta", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line[:50].strip(): float(line[50:]) for line in lines[1:]}
    kept = exact.accuracy(model.replace(delta=0.0))
    assert table["accuracy (1-delta)^T E[1/(1+Z_T) | oracle kept]"] == pytest.approx(0.9**20 * kept, rel=1e-9)
    assert table["P(Z_T = 0) (oracle alone or empty list)"] == pytest.approx(exact.prob_no_error(model), rel=1e-9)
    assert table["P(list = oracle alone)"] == pytest.approx(
        0.9**20 * exact.prob_no_error(model.replace(delta=0.0)), rel=1e-9)
    assert cli.main(["exact", "--M", "50", "--r0", "0.9", "--T", "20"]) == 0
    text = capsys.readouterr().out
    assert "accuracy E[1/(1+Z_T)]" in text and "oracle alone" not in text


@pytest.mark.parametrize("x", [1e-2, 1e-3, 1e-4, 1e-6])
def test_survival_near_criticality_leading_term(x):
    """rho / (2(m-1)/f''(1)) -> 1 linearly in m - 1 (reference sec. 4.4)."""
    law = Binomial(50257, (1 + x) / 50257)
    lead = 2 * (law.mean - 1) / law.factorial_moment2
    ratio = exact.survival_probability(law) / lead
    assert abs(ratio - 1) < 0.7 * x


@pytest.mark.parametrize("x", [1e-3, 1e-6, 1e-9, 1e-12])
def test_survival_near_criticality_against_mpmath(x):
    M = 50257
    eps = (1 + x) / M
    p = mp.mpf(eps)

    def g(r):
        return 1 - (1 - p * r) ** M - r

    guess = 2 * x
    want = mp.findroot(lambda r: g(r) / r, guess)
    got = exact.survival_probability(Binomial(M, eps))
    # the only error is the rounding of m - 1 = M*eps - 1: about 1e-16/x relative
    assert got == pytest.approx(float(want), rel=max(1e-14, 1e-14 / x))


@pytest.mark.parametrize("r0", [1.01, 1.5, 3.0])
def test_poisson_survival_lambert_w(r0):
    """1 - rho = exp(-R0 rho): rho = 1 + W(-R0 e^{-R0}) / R0."""
    want = 1 + special.lambertw(-r0 * math.exp(-r0)).real / r0
    assert exact.survival_probability(Poisson(r0)) == pytest.approx(want, rel=1e-12)


def test_binomial_survival_tends_to_the_poisson_limit():
    rho = exact.survival_probability(Poisson(1.5))
    gaps = [abs(exact.survival_probability(Binomial(M, 1.5 / M)) - rho) for M in (10, 100, 1000, 10000)]
    assert all(a > 5 * b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-4


# =========================================================================== progeny
@pytest.mark.parametrize("law", [Binomial(10, 0.05), Poisson(0.6), NegativeBinomial(0.5, 1.5),
                                 PoissonBinomial(np.array([0.1, 0.3, 0.2]))], ids=repr)
def test_progeny_pmf_sums_and_moments(law):
    p = exact.progeny_pmf(law, 600)
    n = np.arange(p.size)
    assert p[0] == 0.0
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)
    assert n @ p == pytest.approx(exact.progeny_mean(law), rel=1e-10)
    var = (n * n) @ p - (n @ p) ** 2
    assert var == pytest.approx(exact.progeny_variance(law), rel=1e-8)


def test_progeny_supercritical_sums_to_extinction():
    law = Binomial(4, 0.4)
    p = exact.progeny_pmf(law, 3000)
    assert math.fsum(p) == pytest.approx(exact.extinction_probability(law), abs=1e-12)
    assert exact.progeny_mean(law) == math.inf and exact.progeny_variance(law) == math.inf


def test_progeny_closed_forms_agree_with_the_generic_route():
    for law, pmf in [(Binomial(6, 0.12), stats.binom.pmf(np.arange(7), 6, 0.12)),
                     (Binomial(3, 0.5), stats.binom.pmf(np.arange(4), 3, 0.5))]:
        closed = exact.progeny_pmf(law, 200)
        generic = exact.progeny_pmf(FinitePmf(pmf), 200)
        also = exact.progeny_pmf(PoissonBinomial(np.full(law.n, law.p)), 200)
        # 1e-13: FinitePmf's log pgf goes through clog1p near -1 where f is small on the
        # circle (see test_offspring.py::test_clog1p_complex_near_minus_one)
        np.testing.assert_allclose(generic, closed, rtol=0, atol=1e-13)
        np.testing.assert_allclose(also, closed, rtol=0, atol=1e-13)


def test_progeny_against_the_functional_equation():
    """Phi(s) = s f(Phi(s)) solved by fixed-point iteration on truncated power series."""
    M, p, n = 3, 0.3, 30
    phi = np.zeros(n)
    for _ in range(n + 2):
        base = p * phi
        base[0] += 1 - p
        power = np.zeros(n)
        power[0] = 1.0
        for _ in range(M):
            power = np.convolve(power, base)[:n]
        phi = np.concatenate([[0.0], power[: n - 1]])
    np.testing.assert_allclose(exact.progeny_pmf(Binomial(M, p), n - 1), phi, rtol=1e-12, atol=1e-300)


def test_progeny_critical_tail_constant():
    """P(S=n) ~ n^{-3/2}/sqrt(2 pi sigma^2) at m = 1 (reference sec. 4.5)."""
    law = Binomial(10, 0.1)
    p = exact.progeny_pmf(law, 100_000)
    ratios = [p[n] * n**1.5 * math.sqrt(2 * math.pi * law.variance) for n in (100, 10_000, 100_000)]
    assert abs(ratios[0] - 1) > abs(ratios[1] - 1) > abs(ratios[2] - 1)
    assert abs(ratios[2] - 1) < 1e-5


# =========================================================================== explosion time
def test_time_to_size_against_monte_carlo():
    M, r0, K, T, runs = 30, 1.3, 40, 60, 20_000
    eps = r0 / M
    model = ListDecoderModel(M=M, eps=eps, T=T)
    rng = np.random.default_rng(13)
    z = np.zeros(runs, dtype=np.int64)
    tau = np.full(runs, -1)
    for t in range(1, T + 1):
        z = rng.binomial(M * z, eps) + rng.binomial(M - 1, eps, size=runs)
        tau[(tau < 0) & (1 + z >= K)] = t
    assert np.all(tau > 0)
    fp = exact.time_to_size(model, K)
    assert abs(tau.mean() - fp.mean) < 4 * tau.std() / math.sqrt(runs)
    counts = np.bincount(tau, minlength=T + 1)
    expected = fp.pmf * runs
    keep = expected > 20
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3
    assert fp.survival[-1] < 1e-12 and fp.prob_finite == pytest.approx(1.0, abs=1e-12)


def test_time_to_size_mean_is_the_sum_of_survival():
    model = ListDecoderModel.from_r0(M=20, r0=0.9, T=3000)
    fp = exact.time_to_size(model, 8)
    assert fp.mean == pytest.approx(math.fsum(fp.survival), rel=1e-9)


def test_time_to_size_never_and_sometimes():
    never = exact.time_to_size(ListDecoderModel(M=30, eps=0.0, eps_oracle=0.01, T=20), 40)
    assert never.mean == math.inf and never.prob_finite == 0.0 and math.fsum(never.pmf) == 0.0
    lossy = ListDecoderModel.from_r0(M=30, r0=0.8, T=3000, delta=0.05)
    fp = exact.time_to_size(lossy, 10)
    assert fp.mean == math.inf and 0 < fp.prob_finite < 1
    assert math.fsum(fp.pmf) == pytest.approx(fp.prob_finite, abs=1e-12)
    trivial = exact.time_to_size(lossy.replace(T=3), 1)
    assert trivial.pmf.tolist() == [1.0, 0.0, 0.0, 0.0] and trivial.mean == 0.0


def test_time_to_size_asymptotic_slope():
    """The approximation's error stays bounded as K grows (its slope 1/log m is right)."""
    model = ListDecoderModel.from_r0(M=200, r0=1.5, T=0)
    gaps = [exact.time_to_size(model, K).mean - exact.time_to_size_asymptotic(model, K)
            for K in (100, 400)]
    assert abs(gaps[0] - gaps[1]) < 0.1 and 0 < gaps[1] < 2
    with pytest.raises(ValueError, match="r0 > 1"):
        exact.time_to_size_asymptotic(ListDecoderModel(M=10, eps=0.05, T=0), 10)


def test_time_to_size_per_step_rates_has_no_infinite_horizon_summary():
    model = ListDecoderModel(M=10, eps=0.0, T=5, eps_steps=np.array([0.05, 0.1, 0.2, 0.1, 0.05]))
    fp = exact.time_to_size(model, 3)
    assert fp.mean is None and fp.prob_finite is None
    assert "FirstPassage(" in repr(fp) and len(fp.to_pandas()) == 6


# =========================================================================== several types
def test_multitype_reduces_to_one_type():
    model = ListDecoderModel(M=10, eps=0.07, T=30)
    m, lam = model.offspring().mean, model.immigration().mean
    path = exact.multitype_mean_path([[m]], [lam], 30)
    np.testing.assert_allclose(path[:, 0], exact.mean_path(model), rtol=1e-13)
    assert exact.multitype_r0([[m]]) == pytest.approx(m)
    assert exact.multitype_stationary_mean([[m]], [lam])[0] == pytest.approx(exact.stationary_mean(model))


def test_multitype_perron_root_and_stationary_mean():
    rng = np.random.default_rng(2)
    A = rng.uniform(0, 0.3, size=(4, 4))
    lam = rng.uniform(0, 1, size=4)
    v = np.ones(4)
    for _ in range(2000):  # power iteration
        v = A.T @ v
        v /= np.linalg.norm(v)
    assert exact.multitype_r0(A) == pytest.approx(np.linalg.norm(A.T @ v), rel=1e-12)
    path = exact.multitype_mean_path(A, lam, 600)
    np.testing.assert_allclose(exact.multitype_stationary_mean(A, lam), path[-1], rtol=1e-12)
    with pytest.raises(ValueError, match="Perron root"):
        exact.multitype_stationary_mean(A * 10, lam)


# =========================================================================== contrasts
def test_instant_generation_against_direct_sum_and_limit():
    M, eps = 12, 0.07
    b = np.arange(M)
    per_step = math.fsum(stats.binom.pmf(b, M - 1, eps) / (1 + b))
    assert exact.instant_generation_accuracy(M, eps, 9) == pytest.approx(per_step**9, rel=1e-13)
    # eps -> 0: per-step accuracy 1 - (M-1) eps / 2 + O(eps^2), limit 1
    tiny = exact.instant_generation_accuracy(50257, 1e-14, 1)
    assert 1 - tiny == pytest.approx(50256 * 1e-14 / 2, rel=1e-4)
    assert exact.instant_generation_accuracy(50257, 1e-300, 1000) == 1.0
    assert exact.instant_generation_accuracy(4, 1.0, 2) == pytest.approx(1 / 16)


def test_instant_generation_has_no_threshold():
    """Per-step accuracy is smooth through M eps = 1 and decays exponentially in T."""
    M = 1000
    r0 = np.linspace(0.5, 1.5, 21)
    per_step = np.array([exact.instant_generation_accuracy(M, r / M, 1) for r in r0])
    assert np.all(np.diff(per_step) < 0) and np.all(np.abs(np.diff(per_step, 2)) < 1e-3)
    assert exact.instant_generation_accuracy(M, 0.5 / M, 1000) < 1e-50


def test_top_k_against_simulated_ranking():
    """Rank tokens by (eligible, uniform tie-breaker); the oracle must be in the top k."""
    M, eps, k, runs = 6, 0.3, 2, 200_000
    rng = np.random.default_rng(17)
    eligible = rng.random((runs, M)) < eps
    eligible[:, 0] = True  # token 0 is the oracle
    score = eligible + rng.random((runs, M))  # eligible tokens outrank ineligible ones
    top = np.argsort(-score, axis=1)[:, :k]
    kept = (top == 0).any(axis=1)
    got = exact.top_k_oracle_kept(M, eps, k, 1)
    assert abs(kept.mean() - got) < 4 * kept.std() / math.sqrt(runs)
    assert exact.top_k_accuracy(M, eps, k, 3) == pytest.approx((got / k) ** 3, rel=1e-13)


def test_top_k_special_cases():
    assert exact.top_k_list_size(3, 40) == 3**40  # exact integer
    assert exact.top_k_accuracy(20, 0.04, 1, 7) == pytest.approx(exact.instant_generation_accuracy(20, 0.04, 7), rel=1e-13)
    assert exact.top_k_oracle_kept(5, 0.4, 5, 10) == 1.0
    assert exact.top_k_accuracy(5, 0.4, 5, 3) == pytest.approx(5.0**-3)


# =========================================================================== properties
models = st.builds(
    lambda M, frac, T: ListDecoderModel(M=M, eps=frac * min(1.0, 2.0 / M), T=T),
    st.integers(2, 60), st.floats(0.0, 1.0), st.integers(0, 12),
)


@HYP
@given(models)
def test_property_probabilities_are_probabilities(model):
    law = exact.pmf(model, tail=1e-13)
    assert np.all((law.values >= 0) & (law.values <= 1))
    assert 0 <= law.truncated_mass <= 1e-13
    assert math.fsum(law.values) == pytest.approx(1 - law.truncated_mass, abs=1e-13)
    for value in (exact.prob_no_error(model), exact.accuracy(model)):
        assert 0 <= value <= 1
    acc, p0 = exact.accuracy(model), exact.prob_no_error(model)
    assert acc >= 1 / (1 + exact.mean_path(model)[-1]) - 1e-13  # Jensen
    # 1/(1+Z) is 1 at Z = 0 and at most 1/2 otherwise; the pmf gives the value itself
    assert p0 - 1e-13 <= acc <= p0 + (1 - p0) / 2 + 1e-13
    direct = math.fsum(law.values / (1.0 + np.arange(law.values.size)))
    assert acc == pytest.approx(direct, abs=2e-13)


@HYP
@given(st.integers(2, 60), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(1, 12))
def test_property_monotone_in_eps(M, a, b, T):
    lo, hi = sorted((a, b))
    assume(hi - lo > 1e-6)
    cap = min(1.0, 2.0 / M)
    small = ListDecoderModel(M=M, eps=lo * cap, T=T)
    large = ListDecoderModel(M=M, eps=hi * cap, T=T)
    assert exact.mean_path(small)[-1] <= exact.mean_path(large)[-1] * (1 + 1e-12)
    assert exact.prob_no_error(small) >= exact.prob_no_error(large) * (1 - 1e-12)
    assert exact.accuracy(small) >= exact.accuracy(large) * (1 - 1e-10)


@HYP
@given(st.integers(2, 2000), st.floats(0.05, 2.0), st.integers(2, 200))
def test_property_regimes(M, r0, T):
    model = ListDecoderModel.from_r0(M=M, r0=min(r0, M), T=T)
    mean = exact.mean_path(model)
    lam = model.immigration().mean
    if model.regime == "subcritical":
        assert np.all(mean <= exact.stationary_mean(model) * (1 + 1e-12))
    elif model.regime == "critical":
        np.testing.assert_allclose(np.diff(mean), lam, rtol=1e-9)
    else:
        assert mean[-1] >= lam * T * (1 - 1e-12)  # faster than linear
        assert np.all(np.diff(mean, 2) >= -1e-12 * mean[-1])  # convex growth


# =========================================================================== validation
ALL_MODEL_FUNCTIONS = [
    exact.mean_path, exact.variance_path, exact.pmf, exact.prob_no_error,
    exact.prob_oracle_alone, exact.accuracy, exact.accuracy_estimate,
    exact.divergence_depth_law, exact.compute_cost, exact.oracle_survival,
    exact.stationary_mean, exact.stationary_variance, exact.stationary_pmf,
    lambda m: exact.time_to_size(m, 3),
]


@pytest.mark.parametrize("fn", ALL_MODEL_FUNCTIONS)
def test_capped_list_points_to_the_simulator(fn):
    model = ListDecoderModel(M=10, eps=0.05, T=5, K=20)
    with pytest.raises(ValueError, match="branching.simulate"):
        fn(model)


@pytest.mark.parametrize("fn", ALL_MODEL_FUNCTIONS)
def test_not_a_model(fn):
    with pytest.raises(ValueError, match="model must be a ListDecoderModel"):
        fn({"M": 10})


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: exact.mean_closed_form(1, 0.1, 3), "M"),
        (lambda: exact.mean_closed_form(10, 1.5, 3), "eps"),
        (lambda: exact.mean_closed_form(10, float("nan"), 3), "eps"),
        (lambda: exact.mean_closed_form(10, 0.1, -1), "t"),
        (lambda: exact.mean_closed_form(10, 0.1, 2.5), "t"),
        (lambda: exact.mean_closed_form(10, 0.1, 3, lam=-1.0), "lam"),
        (lambda: exact.instant_generation_accuracy(10, -0.1, 3), "eps"),
        (lambda: exact.instant_generation_accuracy(10, 0.1, -3), "T"),
        (lambda: exact.instant_generation_accuracy(1, 0.1, 3), "M"),
        (lambda: exact.top_k_list_size(0, 3), "k"),
        (lambda: exact.top_k_accuracy(5, 0.1, 6, 3), "k"),
        (lambda: exact.top_k_oracle_kept(5, float("nan"), 2, 3), "eps"),
        (lambda: exact.pmf(ListDecoderModel(M=5, eps=0.1, T=3), cap=-1), "cap"),
        (lambda: exact.pmf(ListDecoderModel(M=5, eps=0.1, T=3), tail=0.0), "tail"),
        (lambda: exact.stationary_pmf(ListDecoderModel(M=5, eps=0.1, T=3), tail=float("nan")), "tail"),
        (lambda: exact.time_to_size(ListDecoderModel(M=5, eps=0.1, T=3), 0), "K"),
        (lambda: exact.progeny_pmf(Binomial(3, 0.2), 0), "n_max"),
        (lambda: exact.progeny_pmf("binomial", 5), "law"),
        (lambda: exact.survival_probability(0.5), "law"),
        (lambda: exact.multitype_r0([[0.1, 0.2]]), "A"),
        (lambda: exact.multitype_r0([[0.1, -0.2], [0.0, 0.1]]), "A"),
        (lambda: exact.multitype_mean_path([[0.1]], [float("nan")], 3), "lam"),
        (lambda: exact.multitype_mean_path([[0.1]], [0.5], -1), "T"),
        (lambda: exact.multitype_stationary_mean([[0.5]], [1.0, 2.0]), "lam"),
    ],
)
def test_invalid_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_model_level_invalid_inputs_name_the_parameter():
    for kwargs, name in [(dict(M=1, eps=0.1, T=3), "M"), (dict(M=5, eps=1.1, T=3), "eps"),
                         (dict(M=5, eps=0.1, T=-1), "T"), (dict(M=5, eps=float("nan"), T=3), "eps")]:
        with pytest.raises(ValueError, match=name):
            ListDecoderModel(**kwargs)


# =========================================================================== CLI
def test_cli_json_matches_the_library(capsys):
    code = cli.main(["exact", "--M", "500", "--r0", "0.9", "--T", "200", "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    model = ListDecoderModel.from_r0(M=500, r0=0.9, T=200)
    assert out["mean_Z_T"] == exact.mean_path(model)[-1]
    assert out["var_Z_T"] == exact.variance_path(model)[-1]
    assert out["p_no_error"] == exact.prob_no_error(model)
    assert out["accuracy"] == exact.accuracy(model)
    assert out["stationary_mean"] == exact.stationary_mean(model)
    assert out["stationary_variance"] == exact.stationary_variance(model)
    assert out["survival_probability"] == 0.0 and out["extinction_probability"] == 1.0
    assert out["compute_cost"] == exact.compute_cost(model)


def test_cli_table_supercritical_and_errors(capsys):
    assert cli.main(["exact", "--M", "100", "--eps", "0.012", "--T", "50", "--delta", "0.01"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "stationary" not in text and "lineage survival" in text
    with pytest.raises(SystemExit) as err:
        cli.main(["exact", "--M", "100", "--eps", "1.5", "--T", "5"])
    assert err.value.code == 2
    assert "eps" in capsys.readouterr().err
