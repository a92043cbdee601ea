"""Transition indicators: exact values against closed forms computed here, Monte Carlo
estimates against the exact values of enumerable toys, calibrated standard errors, the
Fisher-information limit, long outputs, peaks and invalid input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from branching import transitions as tr
from branching.toys import MarkovToy, PaddedToy

LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- helpers
def closed_forms(P, Q):
    """D_lin, D_TV and D_JS (bits) of two pmfs, straight from their definitions."""
    both = (P + Q) > 0
    p, q = P[both], Q[both]
    lin = 0.5 * np.sum((p - q) ** 2 / (p + q))
    tv = 0.5 * np.sum(np.abs(p - q))
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return np.sum(a[nz] * np.log(a[nz] / b[nz]))

    js = (0.5 * kl(p, m) + 0.5 * kl(q, m)) / LN2
    return {"linear": lin, "tv": tv, "js": js}


def mc_vs_exact(toy, grid, L, S, seed, measures=tr.MEASURES):
    logp = toy.logp_banded(grid, S, 2 * L - 1, rng=seed)
    table = toy.log_prob_table(grid)
    curves = tr.indicators(logp, grid, L=L, measures=measures)
    return {m: (curves[m], tr.exact_indicator(table, grid, L=L, measure=m)) for m in measures}


# ----------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("sparse", [False, True])
def test_exact_indicator_matches_closed_forms_on_dirichlet_pairs(sparse):
    rng = np.random.default_rng(2024)
    for _ in range(40):
        n = int(rng.integers(2, 30))
        P, Q = rng.dirichlet(np.full(n, 0.5), size=2)
        if sparse:  # zero probabilities: -inf log-probabilities, partly disjoint supports
            P[rng.random(n) < 0.3] = 0.0
            Q[rng.random(n) < 0.3] = 0.0
            P[0], Q[1] = max(P[0], 0.1), max(Q[1], 0.1)
            P, Q = P / P.sum(), Q / Q.sum()
        with np.errstate(divide="ignore"):
            table = np.log(np.stack([P, Q]))
        want = closed_forms(P, Q)
        got = {m: tr.exact_indicator(table, [0.0, 1.0], measure=m).value[0] for m in tr.MEASURES}
        for m in tr.MEASURES:
            assert got[m] == pytest.approx(want[m], rel=1e-10, abs=1e-15)
        assert got["tv"] ** 2 <= got["linear"] * (1 + 1e-12)
        assert got["linear"] <= got["tv"] * (1 + 1e-12) and got["tv"] <= 1 + 1e-12


def test_exact_indicator_uses_window_mixtures():
    rng = np.random.default_rng(5)
    laws = rng.dirichlet(np.ones(7), size=6)
    table = np.log(laws)
    grid = np.arange(6.0)
    for L in (1, 2, 3):
        curves = {m: tr.exact_indicator(table, grid, L=L, measure=m) for m in tr.MEASURES}
        for j in range(6 - 2 * L + 1):
            want = closed_forms(laws[j:j + L].mean(0), laws[j + L:j + 2 * L].mean(0))
            for m in tr.MEASURES:
                assert curves[m].value[j] == pytest.approx(want[m], rel=1e-10)


def test_disjoint_supports_give_the_maximum():
    table = np.full((2, 4), -np.inf)
    table[0, :2] = math.log(0.5)
    table[1, 2:] = np.log([0.2, 0.8])
    for m in tr.MEASURES:
        assert tr.exact_indicator(table, [0.0, 1.0], measure=m).value[0] == pytest.approx(1.0, rel=1e-12)
    # The Monte Carlo estimator with -inf cross entries: every term is +1.
    logp = np.array([[[np.nan, -0.7, -np.inf]] * 3, [[-np.inf, -0.2, np.nan]] * 3])
    for m in tr.MEASURES:
        curve = tr.indicator(logp, [0.0, 1.0], measure=m)
        assert curve.value[0] == 1.0 and curve.se[0] == 0.0


def test_identical_laws_give_zero():
    table = np.log(np.tile(np.random.default_rng(1).dirichlet(np.ones(5)), (4, 1)))
    for m in tr.MEASURES:
        assert np.all(np.abs(tr.exact_indicator(table, np.arange(4.0), L=2, measure=m).value) < 1e-15)


# ----------------------------------------------------------------------------- Monte Carlo vs exact
@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    V=st.integers(2, 5),
    N=st.integers(1, 4),
    L=st.integers(1, 2),
    control=st.sampled_from(["tilt", "temperature", "switch"]),
)
def test_monte_carlo_agrees_with_exact_on_random_toys(seed, V, N, L, control):
    """Every split, every measure within 4.5 SE (a false alarm per check ~ 7e-6)."""
    toy = MarkovToy.random(V=V, N=N, rng=seed, control=control, sharpness=2.0)
    grid = np.linspace(0.3, 1.5, 2 * L + 3)
    for m, (est, exact) in mc_vs_exact(toy, grid, L, S=300, seed=seed + 1).items():
        ok = np.abs(est.value - exact.value) <= 4.5 * est.se + 1e-12
        assert np.all(ok), (m, est.value, exact.value, est.se)
        assert est.n_samples == 300


def test_standard_errors_are_calibrated():
    """Coverage of est ± z SE over many random toys: within binomial error of nominal."""
    n_rep = 400
    hits = {m: np.zeros((n_rep, 2), dtype=bool) for m in tr.MEASURES}
    master = np.random.SeedSequence(77)
    for rep, child in enumerate(master.spawn(n_rep)):
        toy_seed, sample_seed = child.spawn(2)
        L = 1 + rep % 2
        toy = MarkovToy.random(V=4, N=3, rng=toy_seed, control="tilt")
        grid = np.linspace(-0.5, 0.5, 2 * L)  # one split: one independent check per repeat
        for m, (est, exact) in mc_vs_exact(toy, grid, L, S=200, seed=sample_seed).items():
            z = abs(est.value[0] - exact.value[0]) / est.se[0]
            hits[m][rep] = (z < 1.0, z < 1.959964)
    for m in tr.MEASURES:
        for column, nominal in ((0, 0.682689), (1, 0.95)):
            frac = hits[m][:, column].mean()
            sd = math.sqrt(nominal * (1 - nominal) / n_rep)
            assert abs(frac - nominal) < 3.5 * sd, (m, nominal, frac)


def test_linear_measure_has_the_smallest_standard_error():
    toy = MarkovToy.random(V=6, N=4, rng=11, control="temperature", scale=2.0)
    grid = np.linspace(0.5, 2.0, 8)
    curves = tr.indicators(toy.logp_banded(grid, 1000, 1, rng=3), grid)
    assert np.all(curves["tv"].se > 2 * curves["linear"].se)
    assert np.all(curves["js"].se > curves["linear"].se)


# ----------------------------------------------------------------------------- Fisher limit
@pytest.mark.parametrize("L", [1, 2])
def test_small_window_limit_is_the_fisher_information(L):
    toy = MarkovToy.random(V=4, N=3, rng=21, control="tilt")
    theta = 0.3
    seqs = toy.enumerate_all()
    prob = np.exp(toy.log_prob(seqs, theta))
    fd_score = (toy.log_prob(seqs, theta + 1e-6) - toy.log_prob(seqs, theta - 1e-6)) / 2e-6
    fisher = float(np.sum(prob * fd_score**2))
    mean_abs_score = float(np.sum(prob * np.abs(fd_score)))
    assert tr.small_shift_coefficient("linear") == 0.25
    assert tr.small_shift_coefficient("js") == pytest.approx(1 / (8 * LN2))
    errors = {m: [] for m in tr.MEASURES}
    for h in (1e-1, 1e-2, 1e-3):
        grid = theta + h * (np.arange(2 * L) - (2 * L - 1) / 2)
        table = toy.log_prob_table(grid)
        for m in tr.MEASURES:
            curve = tr.exact_indicator(table, grid, L=L, measure=m)
            assert curve.spacing[0] == pytest.approx(h) and curve.position[0] == pytest.approx(theta)
            if m == "tv":
                ratio = curve.value[0] / (0.5 * L * h * mean_abs_score)
            else:
                ratio = curve.normalized[0] / (tr.small_shift_coefficient(m) * fisher)
            errors[m].append(abs(ratio - 1))
    for m in tr.MEASURES:
        e = errors[m]
        assert e[-1] < 1e-5, (m, e)
        assert e[0] / e[1] == pytest.approx(100, rel=0.1) and e[1] / e[2] == pytest.approx(100, rel=0.1)


def test_log_grid_limit_is_the_fisher_information_in_log_temperature():
    toy = MarkovToy.random(V=4, N=3, rng=21, control="temperature")
    T = 0.7
    grid = np.exp(np.log(T) + 1e-3 * np.array([-0.5, 0.5]))
    curve = tr.exact_indicator(toy.log_prob_table(grid), grid, log_grid=True)
    assert curve.position[0] == pytest.approx(T, rel=1e-12)
    assert curve.normalized[0] == pytest.approx(0.25 * T**2 * toy.fisher_information(T), rel=1e-5)


def test_fisher_information_from_scores():
    toy = MarkovToy.random(V=4, N=3, rng=3, control="switch", sharpness=2.0)
    grid = np.linspace(-1.0, 1.0, 5)
    gens = np.random.default_rng(4).spawn(5)
    score = np.stack([toy.score(toy.sample(t, 3000, rng=g), t) for t, g in zip(grid, gens)])
    curve = tr.fisher_information(score, grid)
    exact = np.array([toy.fisher_information(t) for t in grid])
    assert np.all(np.abs(curve.value - exact) < 4 * curve.se)
    assert curve.to_pandas().shape == (5, 4) and "FisherCurve" in repr(curve)
    with pytest.raises(ValueError, match="tv"):
        tr.small_shift_coefficient("tv")


# ----------------------------------------------------------------------------- prediction-based
def test_exact_prediction_indicator_matches_direct_sum():
    toy = MarkovToy.random(V=3, N=3, rng=8, control="switch", sharpness=3.0)
    grid = np.linspace(-1, 1, 7)
    P = np.exp(toy.log_prob_table(grid))  # (K, X)
    estimate = (grid[:, None] * P).sum(0) / P.sum(0)
    mean = P @ estimate
    want = (mean[2:] - mean[:-2]) / (grid[2:] - grid[:-2]) - 1
    curve = tr.exact_prediction_indicator(np.log(P), grid)
    np.testing.assert_allclose(curve.value, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(curve.position, grid[1:-1])


def test_prediction_indicator_agrees_with_exact():
    toy = MarkovToy.random(V=4, N=3, rng=8, control="switch", sharpness=3.0)
    grid = np.linspace(-1, 1, 7)
    est = tr.prediction_indicator(toy.logp_full(grid, 2000, rng=9), grid)
    exact = tr.exact_prediction_indicator(toy.log_prob_table(grid), grid)
    assert np.all(np.abs(est.value - exact.value) < 4 * est.se)
    assert est.to_pandas().shape[0] == 5 and "PredictionCurve" in repr(est)


# ----------------------------------------------------------------------------- long outputs
def test_long_outputs_neither_underflow_nor_drop_samples():
    core = MarkovToy.random(V=4, N=3, rng=31, control="switch", sharpness=3.0)
    padding = MarkovToy.random(V=50, N=2600, rng=32, control="temperature", scale=0.3)
    toy = PaddedToy(core, padding, 1.0)
    grid = np.linspace(-0.6, 0.6, 6)
    S = 300
    logp, tokens = toy.logp_banded(grid, S, 1, rng=33, return_tokens=True)
    assert np.nanmax(logp) < -9000  # whole-sequence probabilities far below float range
    assert np.all(np.exp(logp[:, :, 1]) == 0.0)
    # The same core tokens scored by the core toy alone: the short analogue.
    short = np.full_like(logp, np.nan)
    for k in range(6):
        for d in (-1, 0, 1):
            if 0 <= k + d < 6:
                short[k, :, 1 + d] = core.log_prob(tokens[k, :, :3], grid[k + d])
    exact_table = core.log_prob_table(grid)
    for m in tr.MEASURES:
        long_curve = tr.indicator(logp, grid, measure=m)
        short_curve = tr.indicator(short, grid, measure=m)
        assert long_curve.n_samples == S and np.all(np.isfinite(long_curve.value))
        np.testing.assert_allclose(long_curve.value, short_curve.value, rtol=0, atol=1e-9)
        np.testing.assert_allclose(long_curve.se, short_curve.se, rtol=0, atol=1e-9)
        exact = tr.exact_indicator(exact_table, grid, measure=m)
        assert np.all(np.abs(long_curve.value - exact.value) < 4.5 * long_curve.se)


# ----------------------------------------------------------------------------- layout and placement
def test_band_and_full_layout():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(6, 5, 6)) - 3
    banded = tr.band(full, 5)
    for k in range(6):
        for d in range(-5, 6):
            if 0 <= k + d < 6:
                np.testing.assert_array_equal(banded[k, :, 5 + d], full[k, :, k + d])
            else:
                assert np.all(np.isnan(banded[k, :, 5 + d]))
    assert tr.band(full, 8).shape == (6, 5, 17)
    grid = np.arange(6.0)
    for L in (1, 2, 3):
        a = tr.indicator(full, grid, L=L, layout="full")
        b = tr.indicator(banded, grid, L=L)
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.se, b.se)


def test_estimator_matches_a_direct_per_sample_computation():
    """The vectorised estimator against a plain loop over splits, points and samples."""
    rng = np.random.default_rng(12)
    K, S, L = 7, 9, 2
    W = 2 * L - 1
    logp = np.minimum(rng.normal(-5, 2, size=(K, S, 2 * W + 1)), 0.0)  # log-probabilities
    grid = np.sort(rng.random(K))
    curves = tr.indicators(logp, grid, L=L)
    g = {"linear": lambda p: 2 * p - 1, "tv": lambda p: np.sign(2 * p - 1), "js": lambda p: 1 + np.log2(p)}
    for j in range(K - 2 * L + 1):
        for m, curve in curves.items():
            means, variances = [], []
            for k in range(j, j + 2 * L):
                terms = []
                for s in range(S):
                    probs = np.exp([logp[k, s, W + kk - k] for kk in range(j, j + 2 * L)])
                    p_left = probs[:L].sum() / probs.sum()
                    terms.append(g[m](p_left if k < j + L else 1 - p_left))
                means.append(np.mean(terms))
                variances.append(np.var(terms, ddof=1))
            assert curve.value[j] == pytest.approx(np.mean(means), rel=1e-10)
            assert curve.se[j] == pytest.approx(math.sqrt(np.sum(variances) / S) / (2 * L), rel=1e-10)
            left, right = grid[j:j + L].mean(), grid[j + L:j + 2 * L].mean()
            assert curve.normalized[j] == pytest.approx(curve.value[j] / (right - left) ** 2, rel=1e-12)
            assert curve.position[j] == pytest.approx(0.5 * (grid[j + L - 1] + grid[j + L]))


def test_reversed_grid_gives_the_reversed_curve():
    toy = MarkovToy.random(V=3, N=3, rng=4, control="tilt")
    grid = np.linspace(-1, 1, 7)
    logp = toy.logp_banded(grid, 50, 3, rng=2)
    forward = tr.indicator(logp, grid, L=2)
    backward = tr.indicator(logp[::-1, :, ::-1], grid[::-1], L=2)
    np.testing.assert_allclose(backward.value, forward.value[::-1], rtol=1e-12)
    np.testing.assert_allclose(backward.normalized, forward.normalized[::-1], rtol=1e-12)


def test_positions_with_log_grid():
    grid = np.geomspace(0.01, 10, 9)
    table = MarkovToy.random(V=3, N=2, rng=1, control="temperature").log_prob_table(grid)
    for L in (1, 2):
        curve = tr.exact_indicator(table, grid, L=L, log_grid=True)
        ratio = grid[1] / grid[0]
        np.testing.assert_allclose(curve.position, np.sqrt(grid[L - 1:-L] * grid[L:len(grid) - L + 1]))
        np.testing.assert_allclose(curve.spacing, math.log(ratio))
        np.testing.assert_allclose(curve.normalized, curve.value / (L * math.log(ratio)) ** 2)


def test_results_are_tidy_and_readable():
    toy = MarkovToy.random(V=3, N=3, rng=4, control="tilt")
    grid = np.linspace(-1, 1, 6)
    curve = tr.indicator(toy.logp_banded(grid, 40, 1, rng=2), grid)
    frame = curve.to_pandas()
    assert len(frame) == 5 and {"position", "value", "se", "normalized", "normalized_se"} <= set(frame)
    np.testing.assert_array_equal(frame["value"], curve.value)
    assert repr(curve).startswith("IndicatorCurve(measure='linear', L=1, n_samples=40")
    exact = tr.exact_indicator(toy.log_prob_table(grid), grid)
    assert "exact" in repr(exact) and exact.exact and not curve.exact
    with pytest.raises(ValueError):
        curve.value[0] = 1.0
    peak = curve.peak(rng=1, n_boot=20, n_perm=20)
    assert peak.to_pandas().shape[0] == 1


# ----------------------------------------------------------------------------- peaks
def switch_toy():
    return MarkovToy.random(V=4, N=3, rng=3, control="switch", center=0.0, sharpness=3.0)


def test_peak_location_agrees_with_the_exact_peak():
    toy = switch_toy()
    grid = np.linspace(-1, 1, 12)
    for L in (1, 2):
        exact_peak = tr.find_peak(tr.exact_indicator(toy.log_prob_table(grid), grid, L=L))
        assert exact_peak.location_se == 0 and exact_peak.z is None and exact_peak.p_value is None
        peak = tr.find_peak(toy.logp_banded(grid, 2000, 2 * L - 1, rng=5), grid, L=L, rng=6)
        assert peak.index == exact_peak.index and not peak.at_edge
        assert abs(peak.location - exact_peak.location) < 4 * peak.location_se
        assert peak.location_ci[0] < peak.location < peak.location_ci[1]
        assert peak.z > 10 and peak.p_value == pytest.approx(1 / 201)


def test_bootstrap_location_error_is_calibrated():
    """Spread of peak locations over independent runs vs the mean bootstrap SE."""
    toy = switch_toy()
    grid = np.linspace(-1, 1, 10)
    master = np.random.default_rng(40)
    locations, ses = [], []
    for _ in range(40):
        peak = tr.find_peak(toy.logp_banded(grid, 500, 1, rng=master), grid, n_boot=100, n_perm=1, rng=master)
        locations.append(peak.location)
        ses.append(peak.location_se)
    ratio = np.std(locations, ddof=1) / np.mean(ses)
    assert 0.6 < ratio < 1.5, ratio  # the sd of 40 draws is known to ~ +-12 % (1 sigma)


def test_parabolic_vertex_recovers_a_quadratic_peak():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    y = -((x - 0.3) ** 2)
    j, loc = tr._peak_x(y, x)
    assert j[0] == 1 and loc[0] == pytest.approx(0.3)
    j, loc = tr._peak_x(-y, x)  # maximum at the end: no interpolation
    assert j[0] == 4 and loc[0] == 1.0


def _null_logp(toy, grid, S, seed):
    """Every grid point samples the same law Q, but samples are scored by the moving toy."""
    K = grid.size
    gens = np.random.default_rng(seed).spawn(K)
    logp = np.full((K, S, 3), np.nan)
    for k in range(K):
        x = toy.sample(0.0, S, rng=gens[k])
        lo, hi = max(0, k - 1), min(K, k + 2)
        logp[k, :, lo - k + 1:hi - k + 1] = toy.log_prob(x, grid[lo:hi])
    return logp


@pytest.mark.parametrize("K", [2, 5])
def test_p_value_under_exchangeable_null(K):
    """Exact for one split (K=2), conservative for the maximum over several."""
    toy = switch_toy()
    grid = np.linspace(-0.5, 0.5, K)
    n_rep, alpha = 200, 0.1
    p = np.array([
        tr.find_peak(_null_logp(toy, grid, 30, seed), grid, n_boot=2, n_perm=99, rng=seed).p_value
        for seed in range(n_rep)
    ])
    sd = math.sqrt(alpha * (1 - alpha) / n_rep)
    frac = np.mean(p <= alpha)
    assert frac < alpha + 3 * sd, frac
    if K == 2:
        assert frac > alpha - 3 * sd, frac
        assert stats.kstest(p, "uniform").pvalue > 1e-3


def test_unchanged_law_gives_a_flat_curve_and_p_one():
    toy = MarkovToy.random(V=3, N=2, rng=1, control="tilt")
    x = toy.sample(0.0, 20, rng=2)
    logp = np.repeat(np.repeat(toy.log_prob(x, 0.0)[None, :, None], 3, axis=2), 5, axis=0)
    peak = tr.find_peak(logp, np.arange(5.0), n_boot=10, n_perm=10, rng=3)
    assert peak.height == 0 and peak.z == 0 and peak.p_value == 1.0


def test_peak_is_reproducible_for_a_seed():
    toy = switch_toy()
    grid = np.linspace(-1, 1, 8)
    curve = tr.indicator(toy.logp_banded(grid, 100, 1, rng=1), grid)
    assert curve.peak(rng=7, n_boot=30, n_perm=30) == curve.peak(rng=7, n_boot=30, n_perm=30)
    b = curve.peak(rng=np.random.default_rng(7), n_boot=30, n_perm=30)
    assert b == curve.peak(rng=np.random.default_rng(7), n_boot=30, n_perm=30)


# ----------------------------------------------------------------------------- invalid input
def _valid():
    toy = MarkovToy.random(V=3, N=2, rng=1, control="tilt")
    grid = np.linspace(0, 1, 6)
    return toy.logp_banded(grid, 5, 3, rng=1), grid


def _with(logp, index, value):
    out = logp.copy()
    out[index] = value
    return out


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda lp, g: tr.indicator(lp, g[:-1], L=2), "K = len\\(grid\\) = 5"),
        (lambda lp, g: tr.indicator(lp[:, :, :6], g), "odd"),
        (lambda lp, g: tr.indicator(lp[0], g), "3-dimensional"),
        (lambda lp, g: tr.indicator(lp[:, :1], g), "S >= 2"),
        (lambda lp, g: tr.indicator(lp, g[[0, 2, 1, 3, 4, 5]]), "strictly monotone"),
        (lambda lp, g: tr.indicator(lp, np.r_[g[:3], g[2:5]]), "strictly monotone"),
        (lambda lp, g: tr.indicator(lp, g, L=4), "L must be in \\[1, 3\\]"),
        (lambda lp, g: tr.indicator(lp, g, L=0), "L"),
        (lambda lp, g: tr.indicator(lp[:, :, 1:6], g, L=2), "W = 2 is too small"),
        (lambda lp, g: tr.indicator(lp, g, measure="kl"), "measure"),
        (lambda lp, g: tr.indicator(lp, g, layout="dense"), "layout"),
        (lambda lp, g: tr.indicator(_with(lp, (2, 1, 4), np.nan), g, L=2), "logp\\[2, 1, 4\\]"),
        (lambda lp, g: tr.indicator(_with(lp, (2, 1, 5), np.inf), g, L=2), "logp\\[2, 1, 5\\]"),
        (lambda lp, g: tr.indicator(_with(lp, (2, 1, 3), -np.inf), g, L=2), "logp\\[2, 1, 3\\]"),
        (lambda lp, g: tr.indicator(lp, g - 0.5, log_grid=True), "grid must be > 0"),
        (lambda lp, g: tr.indicator(lp, np.r_[g[:5], np.nan]), "grid"),
        (lambda lp, g: tr.indicators(lp, g, measures="linear"), "measures"),
        (lambda lp, g: tr.exact_indicator(np.log(np.full((6, 3), 0.3)), g), "normalised"),
        (lambda lp, g: tr.exact_indicator(np.zeros((5, 1)), g), "K = 5"),
        (lambda lp, g: tr.exact_indicator(np.full((6, 2), np.nan), g), "log_probs"),
        (lambda lp, g: tr.band(lp, 2), "logp_full"),
        (lambda lp, g: tr.find_peak(lp), "grid must be given"),
        (lambda lp, g: tr.find_peak(lp, g, n_boot=1), "n_boot"),
        (lambda lp, g: tr.find_peak(lp, g, level=1.0), "level"),
        (lambda lp, g: tr.find_peak(lp, g, statistic="height"), "statistic"),
        (lambda lp, g: tr.fisher_information(np.ones((6, 1)), g), "S >= 2"),
        (lambda lp, g: tr.fisher_information(np.full((6, 3), np.inf), g), "score"),
        (lambda lp, g: tr.prediction_indicator(lp, g), "shape \\(K, S, K\\)"),
        (lambda lp, g: tr.prediction_indicator(np.zeros((2, 3, 2)), g[:2]), "at least 3"),
        (lambda lp, g: tr.exact_prediction_indicator(np.zeros((6, 1)), g[::-1] * 0), "strictly monotone"),
    ],
)
def test_invalid_input_raises_clear_errors(call, match):
    logp, grid = _valid()
    with pytest.raises(ValueError, match=match):
        call(logp, grid)


def test_unused_entries_may_be_nan():
    logp, grid = _valid()
    logp = logp.copy()
    logp[:, :, 0] = np.nan  # d = -3 is never used by L = 1 windows (they need |d| <= 1)
    logp[:, :, 6] = np.nan
    assert np.all(np.isfinite(tr.indicator(logp, grid).value))


def test_positive_log_probabilities_are_refused_beyond_round_off():
    grid = np.linspace(0.0, 1.0, 4)
    logp = np.full((4, 3, 3), -1.0)
    logp[0, :, 0] = np.nan  # off the grid
    logp[3, :, 2] = np.nan
    logp[1, 2, 2] = tr.LOGP_ROUNDOFF / 2  # round-off: accepted
    assert np.isfinite(tr.indicator(logp, grid).value).all()
    logp[2, 1, 0] = 50.0
    with pytest.raises(ValueError, match=r"above 0 .*logp\[2, 1, 0\] = .*50"):
        tr.indicator(logp, grid)
