"""Symbolic derivations: each lambdified step against a route computed here independently."""

import functools
import json
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from branching import Binomial, ListDecoderModel, NegativeBinomial, Poisson, exact, symbolic
from branching.cli import main
from branching.symbolic import (
    SYMBOLS,
    Derivation,
    accuracy_bound,
    finite_horizon_scaling,
    instant_generation_accuracy,
    mean_closed_form,
    stationary_moments,
    survival_leading_term,
    threshold,
    threshold_report,
)

M_, eps_, s_ = SYMBOLS["M"], SYMBOLS["eps"], SYMBOLS["s"]


# --------------------------------------------------------------------------- independent routes
def mean_by_recursion(m, lam, t):
    """E Z_t from E_{k+1} = m E_k + lam, E_0 = 0, iterated in plain Python."""
    value = 0.0
    for _ in range(int(t)):
        value = m * value + lam
    return value


def moments_by_recursion(m, lam, sigma2, tau2, t):
    """(E Z_t, Var Z_t) by the moment recursions, iterated in plain Python."""
    mean = var = 0.0
    for _ in range(int(t)):
        mean, var = m * mean + lam, m * m * var + sigma2 * mean + tau2
    return mean, var


@functools.lru_cache(maxsize=None)
def pmf_by_transition_matrix(M, eps, t, n_max=150):
    """Law of Z_t by brute force: the transition matrix of Z on {0..n_max}, iterated."""
    immigrants = stats.binom.pmf(np.arange(M), M - 1, eps)
    P = np.zeros((n_max + 1, n_max + 1))
    for z in range(n_max + 1):
        row = np.convolve(stats.binom.pmf(np.arange(M * z + 1), M * z, eps), immigrants)
        kept = row[: n_max + 1]
        P[z, : kept.size] = kept
    law = np.zeros(n_max + 1)
    law[0] = 1.0
    for _ in range(t):
        law = law @ P
    law.setflags(write=False)
    return law


def lineage_survival(M, eps):
    """1 - q, q the smallest root of q = (1 - eps + eps q)^M, by brentq on w = 1 - q."""

    def reduced(w):  # (f(1-w) - (1-w))/w, accurate for small w
        return math.expm1(M * math.log1p(-eps * w)) / w + 1.0

    return optimize.brentq(reduced, 1e-300, 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps)


def poisson_survival(r0):
    """rho solving 1 - rho = exp(-r0 rho), rho > 0 (r0 > 1), by brentq."""
    return optimize.brentq(
        lambda rho: math.expm1(-r0 * rho) / rho + 1.0, 1e-300, 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps
    )


def loglog_slope(xs, errors):
    return np.polyfit(np.log(xs), np.log(np.abs(errors)), 1)[0]


# --------------------------------------------------------------------------- Derivation objects
def test_derivation_interface():
    d = threshold()
    assert isinstance(d, Derivation)
    assert d is threshold()  # cached
    assert d.labels == ("pgf", "R0", "critical")
    assert d.expr == 1 / M_ and d["R0"] == M_ * eps_
    assert d.latex() == r"\varepsilon_c = \frac{1}{M}"
    assert r"\begin{aligned}" in d.latex(all_steps=True)
    assert "threshold" in repr(d) and "1/M" in repr(d)
    table = d.to_pandas()
    assert list(table["step"]) == list(d.labels) and table["is_result"].sum() == 1
    with pytest.raises(ValueError, match="label must be one of"):
        d.step("nonsense")
    with pytest.raises(ValueError, match="equation, not a value"):
        mean_closed_form().lambdify("recurrence")


def test_numeric_form_binds_checks_and_broadcasts():
    f = mean_closed_form().lambdify()
    assert f.arguments == ("m", "lam", "t")
    assert f(0.5, 2.0, 3) == f(t=3, lam=2.0, m=0.5) == pytest.approx(mean_by_recursion(0.5, 2.0, 3), rel=1e-14)
    grid = f(np.array([0.5, 1.0, 1.5]), 1.0, np.arange(4)[:, None])
    assert grid.shape == (4, 3)
    with pytest.raises(TypeError, match="missing"):
        f(0.5, 2.0)
    with pytest.raises(TypeError, match="unexpected"):
        f(0.5, 2.0, 3, z=1)
    with pytest.raises(ValueError, match="lam contains NaN"):
        f(0.5, np.nan, 3)
    with pytest.raises(ValueError, match="overflows at m=3.0"):
        f(3.0, 1.0, 1e4)
    with pytest.raises(ValueError, match=r"holds only for m < 1; got m=1.2"):
        stationary_moments().lambdify("stationary_mean")(np.array([0.5, 1.2]), 1.0)


# --------------------------------------------------------------------------- threshold
def test_threshold_of_the_binomial_law():
    d = threshold()
    r0 = d.lambdify("R0")
    for M, eps in [(2, 0.3), (50257, 1e-5), (7, 1.0)]:
        h = 1e-6  # central difference of the pgf at s = 1, an independent route to f'(1)
        pgf = lambda s: (1 - eps + eps * s) ** M  # noqa: E731
        assert r0(M, eps) == pytest.approx((pgf(1 + h) - pgf(1 - h)) / (2 * h), rel=1e-6)
        assert r0(M, eps) == pytest.approx(Binomial(M, eps).mean, rel=1e-15)
    eps_c = d.lambdify()
    for M in (2, 10, 50257):
        assert Binomial(M, eps_c(M)).mean == pytest.approx(1.0, rel=1e-15)


def test_threshold_of_other_pgfs():
    mu, k, p, s = sp.symbols("mu k p s", positive=True)
    poisson = threshold(sp.exp(mu * (s - 1)), variable=s)
    assert poisson.expr == 1
    negbin = threshold((1 + mu * (1 - s) / k) ** (-k), variable=s, parameter=mu)
    assert negbin.expr == 1
    geometric = threshold(p / (1 - (1 - p) * s), variable=s)
    r0 = geometric.lambdify("R0")
    for value in (0.2, 0.5, 0.9):  # mean of the geometric law on {0, 1, ...}
        assert r0(value) == pytest.approx(stats.nbinom(1, value).mean(), rel=1e-12)
    assert r0(float(geometric.expr)) == pytest.approx(1.0, rel=1e-15)


def test_threshold_rejects_bad_pgfs():
    mu, k, s = sp.symbols("mu k s", positive=True)
    with pytest.raises(ValueError, match="f\\(1\\) = 1"):
        threshold(2 * sp.exp(mu * (s - 1)), variable=s)
    with pytest.raises(ValueError, match="expression in the variable"):
        threshold(sp.exp(mu))
    with pytest.raises(ValueError, match="parameter must be one of"):
        threshold((1 + mu * (1 - s) / k) ** (-k), variable=s)
    with pytest.raises(ValueError, match="variable must be a sympy Symbol"):
        threshold(sp.exp(mu * (s - 1)), variable="s")


# --------------------------------------------------------------------------- mean
@settings(max_examples=60, deadline=None)
@given(
    m=st.one_of(st.floats(0.0, 3.0), st.just(1.0), st.floats(1 - 1e-9, 1 + 1e-9)),
    lam=st.floats(0.0, 5.0),
    t=st.integers(0, 40),
)
def test_mean_matches_the_recursion(m, lam, t):
    expected = mean_by_recursion(m, lam, t)
    assert mean_closed_form().lambdify()(m, lam, t) == pytest.approx(expected, rel=1e-10, abs=1e-300)


def test_mean_regimes_and_limits():
    d = mean_closed_form()
    mean, summed = d.lambdify(), d.lambdify("geometric_sum")
    for m in (0.3, 1.0, 1.7):
        for t in (0, 1, 9):
            assert summed(m, 1.3, t) == pytest.approx(mean(m, 1.3, t), rel=1e-13)
    assert d.lambdify("critical")(2.0, 25) == pytest.approx(mean_by_recursion(1.0, 2.0, 25), rel=1e-15)
    # Stationary limit vs the recursion run until it no longer moves.
    assert d.lambdify("stationary")(0.6, 2.0) == pytest.approx(mean_by_recursion(0.6, 2.0, 200), rel=1e-14)
    # Supercritical: E Z_t / m^t converges geometrically (error lam m^-t / (m-1)).
    assert d.lambdify("growth_prefactor")(1.5, 2.0) == pytest.approx(mean_by_recursion(1.5, 2.0, 80) / 1.5**80, rel=1e-12)
    with pytest.raises(ValueError, match="m > 1"):
        d.lambdify("growth_prefactor")(0.9, 1.0)


def test_binomial_mean_matches_recursion_and_simulation():
    f = mean_closed_form().lambdify("binomial_mean")
    for M, eps in [(10, 0.05), (10, 0.1), (10, 0.15), (50257, 1.1 / 50257)]:
        law, imm = Binomial(M, eps), Binomial(M - 1, eps)
        assert f(M, eps, 30) == pytest.approx(mean_by_recursion(law.mean, imm.mean, 30), rel=1e-12)
    rng = np.random.default_rng(20240611)
    M, eps, t, n = 10, 0.08, 15, 20000
    z = np.zeros(n, dtype=np.int64)
    for _ in range(t):
        z = rng.binomial(M * z, eps) + rng.binomial(M - 1, eps, size=n)
    se = z.std(ddof=1) / math.sqrt(n)
    assert abs(z.mean() - f(M, eps, t)) < 4 * se


# --------------------------------------------------------------------------- stationary moments
def test_moment_recursions_match_the_exact_law():
    d = stationary_moments()
    mu, V = sp.symbols("mu V", real=True)
    m, lam, sigma2, tau2 = (SYMBOLS[name] for name in ("m", "lam", "sigma2", "tau2"))
    mean_next = sp.lambdify((m, lam, mu), d["mean_recursion"].rhs)
    var_next = sp.lambdify((m, lam, sigma2, tau2, mu, V), d["variance_recursion"].rhs)
    M, eps = 4, 0.2
    law, imm = Binomial(M, eps), Binomial(M - 1, eps)
    support = np.arange(151)
    for t in (3, 7):
        before, after = pmf_by_transition_matrix(M, eps, t), pmf_by_transition_matrix(M, eps, t + 1)
        mean0 = support @ before
        var0 = support**2 @ before - mean0**2
        mean1 = support @ after
        var1 = support**2 @ after - mean1**2
        assert mean_next(law.mean, imm.mean, mean0) == pytest.approx(mean1, rel=1e-12)
        assert var_next(law.mean, imm.mean, law.variance, imm.variance, mean0, var0) == pytest.approx(var1, rel=1e-11)


@settings(max_examples=40, deadline=None)
@given(
    m=st.floats(0.0, 0.9), lam=st.floats(0.0, 4.0), sigma2=st.floats(0.0, 3.0), tau2=st.floats(0.0, 3.0)
)
def test_stationary_moments_are_fixed_points(m, lam, sigma2, tau2):
    d = stationary_moments()
    mean, var = moments_by_recursion(m, lam, sigma2, tau2, 600)
    assert d.lambdify("stationary_mean")(m, lam) == pytest.approx(mean, rel=1e-12, abs=1e-300)
    assert d.lambdify("stationary_variance")(m, lam, sigma2, tau2) == pytest.approx(var, rel=1e-11, abs=1e-300)


def test_binomial_stationary_moments_exact_law_and_reference_formula():
    d = stationary_moments()
    M, eps = 4, 0.2
    law = pmf_by_transition_matrix(M, eps, 300)
    assert law.sum() == pytest.approx(1.0, abs=1e-12)  # truncation at 150 loses nothing visible
    support = np.arange(law.size)
    mean = support @ law
    var = support**2 @ law - mean**2
    assert d.lambdify("binomial_stationary_mean")(M, eps) == pytest.approx(mean, rel=1e-12)
    assert d.lambdify("binomial_stationary_variance")(M, eps) == pytest.approx(var, rel=1e-11)
    assert d.lambdify("binomial_stationary_list_size")(M, eps) == pytest.approx(1 + mean, rel=1e-12)
    # The reference's formulas (sections 3.2 and 4.3), checked symbolically.
    reference_var = (M_ - 1) * eps_ * (1 - eps_) / ((1 - M_ * eps_) ** 2 * (1 + M_ * eps_))
    assert sp.simplify(d["binomial_stationary_variance"] - reference_var) == 0
    assert sp.simplify(d["binomial_stationary_list_size"] - (1 - eps_) / (1 - M_ * eps_)) == 0
    # Poisson limit vs the binomial at a large vocabulary (difference O(1/M)).
    big = 10**7
    for label in ("mean", "variance"):
        poisson = d.lambdify(f"poisson_stationary_{label}")(0.7)
        assert d.lambdify(f"binomial_stationary_{label}")(big, 0.7 / big) == pytest.approx(poisson, rel=1e-6)


def test_stationary_variance_by_simulation():
    M, eps, n, t = 10, 0.07, 40000, 60  # R0 = 0.7: after 60 steps the law is stationary
    rng = np.random.default_rng(7)
    z = np.zeros(n, dtype=np.int64)
    for _ in range(t):
        z = rng.binomial(M * z, eps) + rng.binomial(M - 1, eps, size=n)
    centred2 = (z - z.mean()) ** 2
    se = centred2.std(ddof=1) / math.sqrt(n)
    exact = stationary_moments().lambdify("binomial_stationary_variance")(M, eps)
    assert abs(centred2.mean() - exact) < 4 * se


# --------------------------------------------------------------------------- survival
def test_survival_routes_agree_symbolically():
    """The general order-by-order solution, specialised to Bin(M, eps), equals a direct
    series solution of the binomial fixed-point equation."""
    x, w, a1, a2 = sp.symbols("x w a1 a2")
    equation = ((1 - (1 + x) * w / M_) ** M_ - 1 + w) / w
    truncated = sp.expand(sp.series(equation, w, 0, 3).removeO())
    in_x = sp.expand(sp.series(truncated.subs(w, a1 * x + a2 * x**2), x, 0, 3).removeO())
    direct = sp.solve([in_x.coeff(x, 1), in_x.coeff(x, 2)], [a1, a2], dict=True)[0]
    series = survival_leading_term()["binomial_series"].subs(SYMBOLS["x"], x)
    assert sp.simplify(series - (direct[a1] * x + direct[a2] * x**2)) == 0


def test_survival_terms_against_the_exact_root():
    d = survival_leading_term()
    leading, second = d.lambdify("binomial_leading"), d.lambdify("binomial_second_order")
    series = d.lambdify("binomial_series")
    M = 20
    xs = np.array([0.04, 0.02, 0.01, 0.005])
    exact = np.array([lineage_survival(M, (1 + x) / M) for x in xs])
    lead = np.array([leading(M, (1 + x) / M) for x in xs])
    ratio_error = np.abs(lead / exact - 1)
    assert np.all(np.diff(ratio_error) < 0) and np.all(ratio_error < 3 * xs)  # ratio -> 1 like x
    assert 1.8 < loglog_slope(xs, lead - exact) < 2.2
    two = np.array([second(M, (1 + x) / M) for x in xs])
    assert 2.7 < loglog_slope(xs, two - exact) < 3.3
    assert np.all(np.abs(two - exact) < np.abs(lead - exact))
    at_fixed_M = np.array([series(M, x) for x in xs])
    assert 2.7 < loglog_slope(xs, at_fixed_M - exact) < 3.3
    # The general form with the binomial factorial moments is the same number.
    general = d.lambdify("leading")
    eps = 1.01 / M
    assert general(1.01, Binomial(M, eps).factorial_moment2) == pytest.approx(leading(M, eps), rel=1e-12)
    with pytest.raises(ValueError, match="M\\*eps >= 1"):
        leading(M, 0.9 / M)


def test_poisson_limit_of_survival():
    d = survival_leading_term()
    assert d["poisson_pgf"].equals(sp.exp(SYMBOLS["R0"] * (s_ - 1)))
    rho = d.lambdify("poisson_survival")
    for r0 in (1.05, 1.5, 2.0, 4.0):
        assert rho(r0) == pytest.approx(poisson_survival(r0), rel=1e-10)
    assert np.all(np.abs(rho(np.array([0.2, 0.7, 0.99]))) < 1e-12)  # no survival below threshold
    xs = np.array([0.04, 0.02, 0.01])
    series = d.lambdify("poisson_series")(xs)
    assert 2.7 < loglog_slope(xs, series - [poisson_survival(1 + x) for x in xs]) < 3.3
    # Large M: the binomial survival approaches the Poisson one.
    big = 10**6
    assert lineage_survival(big, 1.5 / big) == pytest.approx(poisson_survival(1.5), rel=1e-5)


# --------------------------------------------------------------------------- finite horizon
def test_finite_horizon_scaling():
    d = finite_horizon_scaling()
    finite, scaling = d.lambdify("finite_T"), d.lambdify()
    for T in (10, 200):
        for x in (-3.0, 0.5, 2.0):
            expected = mean_by_recursion(1 + x / T, 1.0, T) / T
            assert finite(x, T) == pytest.approx(expected, rel=1e-12)
    xs = np.array([-2.0, -0.3, 0.7, 3.0])
    closed = np.expm1(xs) / xs
    np.testing.assert_allclose(scaling(xs), closed, rtol=1e-15)
    assert scaling(0.0) == 1.0
    # Convergence like 1/T: T * (finite - limit) settles to a constant.
    gaps = [T * (mean_by_recursion(1 + 0.7 / T, 1.0, T) / T - closed[2]) for T in (10**3, 10**4, 10**5)]
    assert gaps[2] == pytest.approx(gaps[1], rel=0.01) and gaps[1] == pytest.approx(gaps[0], rel=0.05)


# --------------------------------------------------------------------------- accuracy
def test_accuracy_bound():
    d = accuracy_bound()
    bound = d.lambdify()
    M, eps = 4, 0.2
    law = pmf_by_transition_matrix(M, eps, 300)
    mean = np.arange(law.size) @ law
    assert bound(M, eps) == pytest.approx(1 / (1 + mean), rel=1e-12)
    assert bound(M, eps) == pytest.approx((1 - M * eps) / (1 - eps), rel=1e-14)  # the reference's form
    assert bound(M, eps) <= law @ (1 / (1 + np.arange(law.size)))  # Jensen
    assert d.lambdify("general")(0.8, 3.2 / 5) == pytest.approx(1 / (1 + 0.64 / 0.2), rel=1e-14)
    assert d.lambdify("poisson")(0.3) == pytest.approx(bound(10**8, 0.3e-8), rel=1e-7)
    with pytest.raises(ValueError, match="M\\*eps < 1"):
        bound(4, 0.3)


def test_instant_generation_accuracy():
    d = instant_generation_accuracy()
    per_step, accuracy = d.lambdify("per_step"), d.lambdify()

    def by_enumeration(M, eps):  # E[1/(1+K)], K ~ Bin(M-1, eps), summed term by term
        k = np.arange(min(M, 200))
        return float(stats.binom.pmf(k, M - 1, eps) @ (1.0 / (1.0 + k)))

    for M, eps in [(10, 0.01), (10, 0.3), (10, 1.0), (50257, 1e-9), (50257, 1e-12)]:
        assert per_step(M, eps) == pytest.approx(by_enumeration(M, eps), rel=1e-13)
        assert accuracy(M, eps, 7) == pytest.approx(by_enumeration(M, eps) ** 7, rel=1e-12)
    assert d.lambdify("eps_to_0")() == 1.0
    small = d.lambdify("small_eps")
    for eps in (1e-4, 1e-5):
        assert abs(accuracy(30, eps, 5) - small(30, eps, 5)) < 5 * 30**2 * eps**2
    assert per_step(10**6, 1e-6) == pytest.approx(d.lambdify("at_threshold_large_M")(), rel=1e-5)
    with pytest.raises(ValueError, match="eps > 0"):
        per_step(10, 0.0)


def test_instant_generation_by_simulation():
    M, eps, T, n = 10, 0.2, 5, 20000
    rng = np.random.default_rng(11)
    correct = np.ones(n, dtype=bool)
    for _ in range(T):
        eligible_wrong = rng.binomial(M - 1, eps, size=n)
        correct &= rng.integers(0, eligible_wrong + 1) == 0
    p = instant_generation_accuracy().lambdify()(M, eps, T)
    assert abs(correct.mean() - p) < 4 * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- branching.exact
def test_mean_agrees_with_exact_module():
    binomial, general = mean_closed_form().lambdify("binomial_mean"), mean_closed_form().lambdify()
    t = np.arange(0, 60, 7)
    for M, eps in [(10, 0.05), (10, 0.1), (10, 0.13), (50257, 0.999 / 50257), (50257, 1.001 / 50257)]:
        np.testing.assert_allclose(binomial(M, eps, t), exact.mean_closed_form(M, eps, t), rtol=1e-11)
        np.testing.assert_allclose(general(M * eps, 0.3, t), exact.mean_closed_form(M, eps, t, lam=0.3), rtol=1e-11)


def test_stationary_moments_agree_with_exact_module():
    d = stationary_moments()
    for M, eps in [(2, 0.3), (10, 0.05), (50257, 0.9 / 50257)]:
        model = ListDecoderModel(M, eps, T=0)
        assert d.lambdify("binomial_stationary_mean")(M, eps) == pytest.approx(exact.stationary_mean(model), rel=1e-12)
        assert d.lambdify("binomial_stationary_variance")(M, eps) == pytest.approx(
            exact.stationary_variance(model), rel=1e-12
        )


def test_survival_agrees_with_exact_module():
    d = survival_leading_term()
    second = d.lambdify("second_order")
    s = sp.Symbol("s")
    for x in (0.01, 0.003):
        m = 1 + x
        cases = [
            (Binomial(30, m / 30), (1 - m / 30 + m / 30 * s) ** 30),
            (Poisson(m), sp.exp(m * (s - 1))),
            (NegativeBinomial(m, 2.5), (1 + m * (1 - s) / 2.5) ** -2.5),
        ]
        for law, pgf in cases:
            f2, f3 = (float(sp.diff(pgf, s, order).subs(s, 1)) for order in (2, 3))
            assert f2 == pytest.approx(law.factorial_moment2, rel=1e-12)
            assert abs(second(m, f2, f3) - exact.survival_probability(law)) < 10 * x**3
    rho = d.lambdify("poisson_survival")
    for r0 in (1.2, 2.0, 5.0):
        assert rho(r0) == pytest.approx(exact.survival_probability(Poisson(r0)), rel=1e-10)


def test_instant_generation_agrees_with_exact_module():
    accuracy = instant_generation_accuracy().lambdify()
    for M, eps, T in [(10, 0.05, 1), (10, 0.3, 20), (50257, 1e-10, 1000)]:
        assert accuracy(M, eps, T) == pytest.approx(exact.instant_generation_accuracy(M, eps, T), rel=1e-12)


def test_accuracy_bound_is_below_exact_accuracy():
    bound = accuracy_bound().lambdify()
    for M, eps in [(10, 0.05), (50, 0.015)]:
        model = ListDecoderModel(M, eps, T=400)  # long enough to be stationary
        assert bound(M, eps) <= exact.accuracy(model)


# --------------------------------------------------------------------------- report
def test_threshold_report_subcritical():
    report = threshold_report(M=4, eps=0.2)
    law = pmf_by_transition_matrix(4, 0.2, 300)
    support = np.arange(law.size)
    mean = support @ law
    assert report.regime == "subcritical" and report.law == "binomial"
    assert report.r0 == pytest.approx(0.8, rel=1e-15) and report.distance == pytest.approx(-0.2, rel=1e-14)
    assert report.eps_c == 0.25
    assert report.stationary_mean == pytest.approx(mean, rel=1e-12)
    assert report.stationary_variance == pytest.approx(support**2 @ law - mean**2, rel=1e-11)
    assert report.accuracy_bound == pytest.approx(1 / (1 + mean), rel=1e-12)
    assert report.survival_poisson is None
    table = report.to_pandas()
    assert set(table["quantity"]) >= {"M", "eps", "r0", "stationary_mean"}
    assert "stationary_mean=" in repr(report)
    assert threshold_report(M=4, r0=0.8).stationary_mean == pytest.approx(report.stationary_mean, rel=1e-14)


def test_threshold_report_other_cases():
    only_M = threshold_report(M=50257)
    assert only_M.eps_c == pytest.approx(1 / 50257, rel=1e-15) and only_M.regime is None
    critical = threshold_report(M=4, eps=0.25)
    assert critical.regime == "critical" and critical.stationary_mean is None
    above = threshold_report(M=20, r0=1.02)
    exact = lineage_survival(20, 1.02 / 20)
    assert above.regime == "supercritical"
    assert abs(above.survival_second_order - exact) < 0.02**3 * 20
    poisson = threshold_report(r0=1.5)
    assert poisson.law == "poisson" and poisson.M is None
    assert poisson.survival_poisson == pytest.approx(poisson_survival(1.5), rel=1e-10)
    below = threshold_report(r0=0.5)
    assert below.stationary_mean == pytest.approx(mean_by_recursion(0.5, 0.5, 200), rel=1e-14)
    assert below.accuracy_bound == pytest.approx(0.5, rel=1e-14)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"M": 1}, "M must be an integer in \\[2, inf\\), got 1"),
        ({"M": 2.5}, "M must be an integer, got 2.5"),
        ({"M": 10, "eps": -0.1}, "eps must lie in \\[0, 1\\], got -0.1"),
        ({"M": 10, "eps": 1.5}, "eps must lie in \\[0, 1\\], got 1.5"),
        ({"M": 10, "eps": 0.01, "r0": 0.5}, "eps and r0 are alternatives"),
        ({"eps": 0.01}, "eps needs the vocabulary size M"),
        ({}, "give M"),
        ({"r0": -1.0}, "r0 must lie in \\[0, inf\\), got -1.0"),
        ({"M": 10, "r0": 11.0}, "r0 must lie in \\[0, 10\\], got 11.0"),
    ],
)
def test_threshold_report_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        threshold_report(**kwargs)


# --------------------------------------------------------------------------- CLI
def test_cli_text_and_latex(capsys):
    assert main(["threshold", "--M", "50257"]) == 0
    out = capsys.readouterr().out
    assert "eps_c = 1/M" in out and f"{1 / 50257:.10g}" in out
    assert main(["threshold", "--M", "50257", "--eps", "1e-5", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "subcritical" in out and r"\varepsilon_c = \frac{1}{M}" in out and "stationary_moments" in out


def test_cli_json(capsys):
    assert main(["threshold", "--M", "20", "--r0", "1.1", "--format", "json", "--latex"]) == 0
    payload = json.loads(capsys.readouterr().out)
    report = threshold_report(M=20, r0=1.1)
    assert payload["regime"] == "supercritical"
    assert payload["survival_second_order"] == report.survival_second_order
    assert "survival_leading_term" in payload["latex"]


def test_cli_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["threshold", "--M", "1"])
    assert info.value.code == 2 and "M must be an integer in [2, inf)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["threshold", "--M", "10", "--eps", "0.1", "--r0", "1"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_module_is_torch_free():
    assert "torch" not in symbolic.__dict__
