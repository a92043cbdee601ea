"""The fit of the theory's distance curve: the interpolated theory against the exact one,
recovery of known links with calibrated intervals, the falsification test both ways, held-out
prediction, the three routes to the threshold, storage and bad input.

Synthetic data come from the theory itself: either its exact curve plus Gaussian noise of a
stated SE (parametric route), or outputs drawn from the decoder's exact output law at every
grid point and scored at the neighbours (the samples route, like a real scan)."""

import math
from dataclasses import replace

import numpy as np
import pytest

from branching import fit as F
from branching import transitions as tr
from branching.theory_curve import theory_indicator

M, N = 50, 6
GRID = np.geomspace(0.2, 5.0, 14)
X_C, B, A = 1.2, 1.0, 0.5


@pytest.fixture(scope="module")
def table():
    return F.theory_table(M, N)


def link_r0(grid, x_c=X_C, b=B):
    return np.exp(b * (np.log(grid) - math.log(x_c)))


def noisy_curve(table, values, rel_se, seed):
    """An exact curve on GRID with ``values`` replaced by Gaussian draws around them."""
    exact = tr.exact_indicator(np.log(table.laws(link_r0(GRID))), GRID, log_grid=True)
    se = rel_se * values.max() * np.ones_like(values)
    y = np.random.default_rng(seed).normal(values, se)
    return replace(exact, value=y, se=se, n_samples=100)


def sampled_curve(table, r0, S, seed, grid=GRID):
    """Indicator from S outputs per grid point drawn from the decoder's exact output law.

    An output of divergence depth j has log-probability log q_j - log n_j at every grid point
    (its law is uniform within the depth class), so the depth is all a sample needs.
    """
    laws = table.laws(r0)
    K, X = laws.shape
    log_n = np.array([math.log(M - 1) + (N - j - 1) * math.log(M) for j in range(N)] + [0.0])
    gen = np.random.default_rng(seed)
    W = 1
    logp = np.full((K, S, 2 * W + 1), np.nan)
    for k in range(K):
        depth = gen.choice(X, size=S, p=laws[k])
        for d in range(-W, W + 1):
            if 0 <= k + d < K:
                logp[k, :, W + d] = np.log(laws[k + d, depth]) - log_n[depth]
    return tr.indicator(logp, grid, L=1, log_grid=True)


# ---------------------------------------------------------------- the theory table
@pytest.mark.parametrize("measure", ["linear", "tv", "js"])
def test_table_indicator_matches_exact_theory_curve(table, measure):
    r0 = np.geomspace(0.37, 2.9, 23)  # off the table's nodes
    exact = theory_indicator(M, N, r0, measures=(measure,)).curves[measure].value
    got = table.indicator(r0, L=1, measure=measure)
    assert np.max(np.abs(got - exact)) <= 1e-6 * exact.max()
    assert table.interpolation_error < 1e-6


def test_table_windows_match_exact_indicator(table):
    r0 = np.geomspace(0.3, 3.0, 12)
    for L in (1, 2, 3):
        exact = tr.exact_indicator(np.log(table.laws(r0)), r0, L=L, measure="js").value
        assert np.allclose(table.indicator(r0, L=L, measure="js"), exact, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------- recovery and coverage
@pytest.fixture(scope="module")
def repeated_fits(table):
    """30 noisy theory curves (5% SE) with a known log-linear link, fitted with 40 replicates."""
    truth = A * table.indicator(link_r0(GRID), L=1, measure="linear")
    return [F.fit_threshold(noisy_curve(table, truth, 0.05, 100 + i), M=M, N=N, n_boot=40,
                            level=0.95, rng=i) for i in range(30)]


def test_fit_recovers_link_parameters(repeated_fits):
    x_c = np.array([f.x_c for f in repeated_fits])
    b = np.array([f.params["b"] for f in repeated_fits])
    amp = np.array([f.params["A"] for f in repeated_fits])
    for est, true in ((x_c, X_C), (b, B), (amp, A)):
        # mean of 30 estimates within 4 standard errors of the truth (and within 5 %)
        assert abs(est.mean() - true) <= 4 * est.std(ddof=1) / math.sqrt(est.size)
        assert abs(est.mean() - true) <= 0.05 * true


@pytest.mark.parametrize("level", [0.68, 0.95])
def test_bootstrap_intervals_are_calibrated(repeated_fits, level):
    alpha = 0.5 * (1 - level)
    hits = sum(np.quantile(f.x_c_boot, alpha) <= X_C <= np.quantile(f.x_c_boot, 1 - alpha)
               for f in repeated_fits)
    n = len(repeated_fits)
    sd = math.sqrt(level * (1 - level) / n)
    assert abs(hits / n - level) <= 3 * sd  # 3 binomial standard deviations


def test_goodness_of_fit_on_theory_curves(repeated_fits):
    chi2 = np.array([f.chi2 for f in repeated_fits])
    dof = repeated_fits[0].dof
    # E[chi2] = dof, SD sqrt(2 dof); the mean of 30 within 3 of its standard errors
    assert abs(chi2.mean() - dof) <= 3 * math.sqrt(2 * dof / chi2.size)


def test_falsification_does_not_reject_theory_curves(repeated_fits):
    rejected = sum(f.falsified for f in repeated_fits)
    assert rejected <= 7  # measured rate about 0.1; 7/30 is 2.5 binomial SDs above 0.1


def test_falsification_rejects_threshold_free_bumps(table):
    exact = tr.exact_indicator(np.log(table.laws(link_r0(GRID))), GRID, log_grid=True)
    u = np.log(exact.position)
    bump = 0.2 * np.exp(-0.5 * ((u - math.log(1.3)) / 0.35)**2)
    fits = [F.fit_threshold(noisy_curve(table, bump, 0.03, 200 + i), M=M, N=N, n_boot=0)
            for i in range(10)]
    assert sum(f.falsified for f in fits) >= 9
    assert all("fits worse" in f.verdict and "fits worse" in repr(f) for f in fits if f.falsified)


def test_linear_link_recovers_threshold(table):
    grid = np.linspace(0.3, 2.4, 14)
    r0 = np.maximum(1.0 + 0.9 * (grid - 1.1), 0.0)
    truth = 0.5 * table.indicator(r0, L=1, measure="linear")
    exact = tr.exact_indicator(np.log(table.laws(r0)), grid)
    se = 0.03 * truth.max() * np.ones_like(truth)
    curve = replace(exact, value=np.random.default_rng(5).normal(truth, se), se=se, n_samples=100)
    fit = F.fit_threshold(curve, M=M, N=N, link="linear", n_boot=60, rng=2)
    lo, hi = fit.x_c_ci
    assert lo <= 1.1 <= hi and hi - lo < 0.3


# ---------------------------------------------------------------- the samples route
def test_samples_bootstrap_covers_the_truth(table):
    curve = sampled_curve(table, link_r0(GRID), S=400, seed=11)
    fit = F.fit_threshold(curve, M=M, N=N, n_boot=60, rng=3)
    assert fit.bootstrap == "samples"
    # the amplitude of the decoder's own law is 1
    assert fit.params_ci["A"][0] <= 1.0 <= fit.params_ci["A"][1]
    assert fit.x_c_ci[0] <= X_C <= fit.x_c_ci[1]
    assert not fit.falsified


def test_measured_link_and_three_routes(table):
    r0 = link_r0(GRID)
    curve = sampled_curve(table, r0, S=400, seed=12)
    gen = np.random.default_rng(4)
    se = 0.03 * r0
    measured = F.MeasuredR0(GRID, gen.normal(r0, se), se)
    fit = F.fit_threshold(curve, M=M, N=N, link="measured", measured=measured, n_boot=40, rng=5)
    assert set(fit.params) == {"A"} and fit.dof == curve.value.size - 1
    assert fit.params_ci["A"][0] <= 1.0 <= fit.params_ci["A"][1]
    loglinear = F.fit_threshold(curve, M=M, N=N, n_boot=40, rng=6)
    routes = F.threshold_routes(loglinear, measured, curve, n_boot=200, rng=7)
    assert list(routes["route"][:3]) == ["(i) fitted x_c", "(ii) measured R0 crossing",
                                         "(iii) empirical peak"]
    for i in (0, 1):
        assert routes["ci_low"][i] <= X_C <= routes["ci_high"][i]
    # the theory puts the peak above R0 = 1: the empirical peak lies above x_c
    assert routes["estimate"][2] > X_C


def test_measured_crossing_interval():
    x = np.geomspace(0.5, 2.0, 9)
    r0 = x / 1.1
    measured = F.MeasuredR0(x, r0, 0.02 * r0)
    xc, (lo, hi) = measured.crossing_ci(level=0.95, n_boot=2000, rng=1)
    assert abs(xc - 1.1) < 1e-12 and lo < 1.1 < hi
    undefined = F.MeasuredR0(x, np.where(x < 0.7, np.nan, r0), 0.02 * r0, degree=None)
    assert undefined.x_range[0] == pytest.approx(x[x >= 0.7][0])
    assert abs(undefined.crossing() - 1.1) < 1e-12
    # the smooth removes pointwise noise: a noisy log-linear R0 crosses near the truth
    noisy = F.MeasuredR0(x, r0 * np.exp(np.random.default_rng(3).normal(0, 0.02, x.size)), 0.02 * r0)
    xc, (lo, hi) = noisy.crossing_ci(level=0.95, n_boot=2000, rng=2)
    assert lo < 1.1 < hi and hi - lo < 0.1



def test_measured_crossing_outside_the_range_is_one_sided():
    x = np.geomspace(0.5, 2.0, 9)
    above = F.MeasuredR0(x, x / 0.2, 0.02 * x / 0.2)  # R0 in [2.5, 10]: crossing at 0.2, below the grid
    xc, (lo, hi) = above.crossing_ci(level=0.95, n_boot=500, rng=1)
    assert math.isnan(xc) and above.side() == "above" and (lo, hi) == (0.0, 0.5)
    below = F.MeasuredR0(x, x / 5.0, 0.02 * x / 5.0)  # R0 <= 0.4: crossing at 5, above the grid
    xc, (lo, hi) = below.crossing_ci(level=0.95, n_boot=500, rng=1)
    assert math.isnan(xc) and below.side() == "below" and (lo, hi) == (2.0, math.inf)
    linear = F.MeasuredR0(x, x / 0.2, 0.02 * x / 0.2, log_x=False)
    assert linear.crossing_ci(level=0.95, n_boot=500, rng=1)[1] == (-math.inf, 0.5)
    assert F.MeasuredR0(x, x / 1.1, 0.02 * x).side() == "crosses"


# ---------------------------------------------------------------- held-out prediction
def test_heldout_prediction_covers_observed_peaks(table):
    prompts = []
    for i, x_c in enumerate((0.8, 1.2, 1.7, 1.0)):
        r0 = link_r0(GRID, x_c=x_c)
        se = 0.03 * r0
        measured = F.MeasuredR0(GRID, np.random.default_rng(20 + i).normal(r0, se), se)
        prompts.append(F.PromptData(f"p{i}", sampled_curve(table, r0, S=300, seed=30 + i), measured))
    result = F.heldout_prediction(prompts[:2], prompts[2:], M=M, N=N, n_boot=40, rng=8)
    assert result.params_ci["s"][0] <= 1.0 <= result.params_ci["s"][1]
    assert result.coverage == (2, 2)
    frame = result.to_pandas()
    assert list(frame["prompt"]) == ["p2", "p3"]
    # held-out peaks move with their own R0: p2 (x_c 1.7) peaks later than p3 (x_c 1.0)
    assert result.predicted[0] > result.predicted[1]
    assert "covered 2/2" in repr(result)


# ---------------------------------------------------------------- results
def test_save_load_round_trip(table, tmp_path):
    truth = A * table.indicator(link_r0(GRID), L=1, measure="linear")
    fit = F.fit_threshold(noisy_curve(table, truth, 0.05, 1), M=M, N=N, n_boot=5, rng=1)
    back = F.ThresholdFit.load(fit.save(tmp_path / "fit.json"))
    assert back.summary() == fit.summary()
    assert np.array_equal(back.fitted, fit.fitted) and repr(back) == repr(fit)
    frame = fit.to_pandas()
    assert len(frame) == GRID.size - 1 and {"theory", "bump", "theory_residual"} <= set(frame)


# ---------------------------------------------------------------- bad input
def test_bad_input_names_the_parameter(table):
    truth = A * table.indicator(link_r0(GRID), L=1, measure="linear")
    good = noisy_curve(table, truth, 0.05, 1)
    short = tr.exact_indicator(np.log(table.laws(link_r0(GRID[:4]))), GRID[:4], log_grid=True)
    short = replace(short, se=np.full(3, 0.01), n_samples=10)
    cases = [
        (dict(curve=short), "splits"),
        (dict(curve=replace(good, n_samples=None)), "exact curve"),
        (dict(curve=replace(good, se=np.zeros_like(good.se))), "se_floor"),
        (dict(curve=good.value), "IndicatorCurve"),
        (dict(link="cubic"), "link"),
        (dict(link="measured"), "measured"),
        (dict(n_boot=1), "n_boot"),
        (dict(level=1.5), "level"),
        (dict(M=1), "M"),
        (dict(N=0), "N"),
        (dict(increasing="yes"), "increasing"),
        (dict(se_floor=-1.0), "se_floor"),
    ]
    for kwargs, word in cases:
        args = dict(curve=good, M=M, N=N, n_boot=0) | kwargs
        with pytest.raises(ValueError, match=word):
            F.fit_threshold(args.pop("curve"), **args)
    floored = F.fit_threshold(replace(good, se=np.where(np.arange(good.se.size) == 0, 0.0, good.se)),
                              M=M, N=N, n_boot=0, se_floor="min_positive")
    assert floored.se[0] == good.se[1]


def test_bad_measured_input():
    x = np.array([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="same shape"):
        F.MeasuredR0(x, [1.0, 2.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="strictly increasing"):
        F.MeasuredR0(x[::-1], [1.0, 1.0, 1.0], [0.1] * 3)
    with pytest.raises(ValueError, match="defined"):
        F.MeasuredR0(x, [np.nan, np.nan, 1.0], [0.1] * 3)
    with pytest.raises(ValueError, match="r0_se"):
        F.MeasuredR0(x, [1.0, 1.0, 1.0], [0.1, -0.1, 0.1])
    with pytest.raises(ValueError, match="r0"):
        F.MeasuredR0(x, [1.0, -1.0, 1.0], [0.1] * 3)
    with pytest.raises(ValueError, match="degree"):
        F.MeasuredR0(x, [1.0, 1.0, 1.0], [0.1] * 3, degree=0)
    zero = F.MeasuredR0(x, [0.0, 1.0, 2.0], [0.0, 0.1, 0.1], degree=None)
    assert zero.n_zero == 1 and zero.x_range == (1.0, 2.0)
    with pytest.raises(ValueError, match="train"):
        F.heldout_prediction([], [], M=M, N=N, n_boot=2)
    with pytest.raises(ValueError, match="link"):
        F.heldout_prediction([], [], M=M, N=N, link="loglinear")
