"""Finite-size analysis: crossings, scaling collapse and critical exponents.

The threshold and the exponents are recovered from curves of the base model (exact and
simulated) and from synthetic curves whose threshold (1.3) and exponents are not the
mean-field ones, so that nothing can be hard-wired.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branching import Binomial, ListDecoderModel
from branching import exact
from branching.scaling import (
    CollapseResult,
    CrossingResult,
    ExponentFit,
    crossing_points,
    fit_exponent,
    scaling_collapse,
)
from branching.sweep import Grid, run_sweep

M = 1000


def contains(ci, value):
    return ci[0] <= value <= ci[1]


def scaled_mean_curves(r0, horizons):
    """E[Z_T] / (lambda T) of the base model from exact.mean_path, one curve per T."""
    curves = {}
    for T in horizons:
        curves[T] = np.array([
            exact.mean_path(ListDecoderModel.from_r0(M, r, T))[-1] / ((M - 1) * r / M * T)
            for r in r0])
    return curves


def shifted_model(x, T, shift):
    """A model whose threshold sits at control x = shift: the oracle prefix has rate x/M,
    erroneous prefixes x/(shift M), so the offspring mean is x/shift."""
    if shift == 1.0:
        return ListDecoderModel.from_r0(M, x, T)
    return ListDecoderModel(M=M, eps=x / (shift * M), eps_oracle=x / M, T=T)


def scaled_accuracy_curves(x, horizons, shift=1.0):
    """T E[1/(1+Z_T)]: bounded below the threshold -> T * const grows, above it -> decays
    exponentially, at it -> 2/sigma^2 only as T -> infinity (no finite-T identity)."""
    return {T: np.array([T * exact.accuracy(shifted_model(v, T, shift)) for v in x])
            for T in horizons}


def aitken(c):
    """Limit of a sequence with geometric increments: c3 - (c2 - c3)^2 / ((c1 - c2) - (c2 - c3))."""
    d1, d2 = c[0] - c[1], c[1] - c[2]
    return c[2] - d2 * d2 / (d1 - d2)


# --------------------------------------------------------------------------- exact curves
def test_scaled_mean_crossing_at_the_threshold_is_an_identity():
    """E[Z_T] = lambda T at m = 1 for every T, so E[Z_T]/(lambda T) = 1 there: curves of
    this statistic cross at the threshold by construction (wherever it is placed), which is
    why it cannot locate a threshold.  Checked on the shifted model at x = 1.3."""
    for T in (7, 50, 400):
        model = shifted_model(1.3, T, 1.3)
        assert exact.mean_path(model)[-1] / (model.immigration_mean * T) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("shift", [1.0, 1.3])
def test_exact_accuracy_crossings_locate_the_threshold(shift):
    """Crossings of T E[1/(1+Z_T)] for T = 25, 50, 100, 200 approach the threshold from
    above, the distance shrinking about 3.5-4 times per doubling of T (base model: 1.0039,
    1.0011, 1.0003; shifted: 1.3022, 1.3005, 1.3001); an Aitken extrapolation of the three
    lands within 1e-4 of it.  Nothing in the statistic knows where the threshold is."""
    x = shift * np.linspace(0.9, 1.1, 21)
    cross = crossing_points(x, scaled_accuracy_curves(x, (25, 50, 100, 200), shift))
    c = cross.crossings
    gaps = c - shift
    assert np.all(gaps > 0) and np.all(np.diff(gaps) < 0)
    assert np.all(gaps[:-1] / gaps[1:] > 3.0)
    assert gaps[-1] < 5e-4 * shift
    assert aitken(c) == pytest.approx(shift, abs=1e-4)
    other = 1.3 if shift == 1.0 else 1.0
    assert abs(c[-1] - other) > 0.2


def test_collapse_with_corrections_recovers_a_known_closed_form():
    """The collapse machinery on a closed form with known corrections: E Z_T/(lam T) =
    F(T log m) B(log m), B(u) = u/(e^u - 1), so b = c = -1/2 to leading order.  (nu = 1 here
    follows from m^T = (1 + x/T)^T; it checks the fit, it is not a finding.)"""
    r0 = np.linspace(0.95, 1.05, 40)
    curves = scaled_mean_curves(r0, (25, 50, 100, 200))
    fit = scaling_collapse(r0, curves, corrections=True)
    assert contains(fit.r0_c_ci, 1.0) and contains(fit.nu_ci, 1.0)
    assert abs(fit.nu - 1) < 0.01 and abs(fit.r0_c - 1) < 1e-3
    b, c = fit.corrections  # leading terms of B(log m) = 1 - (m-1)/2 and log m
    assert b == pytest.approx(-0.5, abs=0.1) and c == pytest.approx(-0.5, abs=0.1)


def test_exact_exponents_beta_and_gamma():
    above = 1 + np.geomspace(0.01, 0.2, 10)
    survival = [exact.survival_probability(Binomial(M, r / M)) for r in above]
    beta = fit_exponent(above, survival, side="above", r0_c=1.0)
    assert contains(beta.exponent_ci, 1.0) and abs(beta.exponent - 1) < 0.01
    assert beta.amplitude == pytest.approx(2 / (1 - 1 / M), rel=0.05)  # 2(m-1)/sigma^2
    free = fit_exponent(above, survival, side="above")
    assert contains(free.exponent_ci, 1.0) and contains(free.r0_c_ci, 1.0)
    below = 1 - np.geomspace(0.3, 0.01, 10)
    stationary = [exact.stationary_mean(ListDecoderModel.from_r0(M, r, 10)) for r in below]
    gamma = fit_exponent(below, stationary, side="below", r0_c=1.0)
    assert contains(gamma.exponent_ci, -1.0) and abs(gamma.exponent + 1) < 0.01
    progeny = [exact.progeny_mean(Binomial(M, r / M)) for r in below]  # E S = 1/(1 - R0)
    gamma_s = fit_exponent(below, progeny, side="below", r0_c=1.0, correction=False)
    assert contains(gamma_s.exponent_ci, -1.0)
    assert gamma_s.amplitude == pytest.approx(1.0, rel=1e-9)


# --------------------------------------------------------------------------- simulated curves
@pytest.fixture(scope="module")
def simulated_sweep():
    r0 = np.linspace(0.98, 1.02, 11)
    return run_sweep(Grid({"M": M, "r0": r0, "T": [50, 100, 200, 400]}), "simulate",
                     n_runs=400, rng=20240611, workers=1, progress=False)


@pytest.fixture(scope="module")
def simulated_scaled_accuracy(simulated_sweep):
    xs, curves = simulated_sweep.curves("accuracy")
    return xs, {T: np.array([v * T, se * T]) for T, (v, se) in curves.items()}


def test_simulated_accuracy_crossings_recover_the_threshold(simulated_scaled_accuracy):
    """Monte Carlo T E[1/(1+Z_T)] (no finite-T identity at R0 = 1): the weighted mean of the
    crossings of successive horizons contains 1 (the extrapolation is not used: the drift of
    the exact crossings, below 4e-3, is inside the noise)."""
    xs, scaled = simulated_scaled_accuracy
    cross = crossing_points(xs, scaled, rng=1, extrapolate=False)
    assert cross.n_boot == 1000
    assert contains(cross.threshold_ci, 1.0)
    assert cross.threshold_ci[1] - cross.threshold_ci[0] < 0.01
    assert all(contains(ci, 1.0) for ci in cross.crossing_ci)


def test_simulated_collapse_recovers_threshold_and_nu(simulated_scaled_accuracy):
    """Collapse of Monte Carlo T E[1/(1+Z_T)] with R0_c and nu free."""
    r0, curves = simulated_scaled_accuracy
    fit = scaling_collapse(r0, curves, n_boot=30, rng=2)
    assert contains(fit.r0_c_ci, 1.0) and contains(fit.nu_ci, 1.0)
    assert fit.nu_ci[1] - fit.nu_ci[0] < 0.3
    assert 0.2 < fit.quality < 5  # consistent with the standard errors


def test_simulated_exponents_beta_and_gamma():
    rng = np.random.default_rng(7)
    # beta: survival to generation 300 of single lineages Z_{n+1} = Bin(M Z_n, eps), Z_0 = 1
    # (P(alive at n) - rho decays like (1 - (m - 1))^n, below 1e-6 here)
    above = 1 + np.linspace(0.05, 0.3, 8)
    n = 4000
    alive = []
    for r in above:
        z = np.ones(n, dtype=np.int64)
        for _ in range(300):
            z = rng.binomial(M * np.minimum(z, 10**6), r / M)
        alive.append(np.mean(z > 0))
    alive = np.array(alive)
    se = np.sqrt(alive * (1 - alive) / n)
    beta = fit_exponent(above, alive, se, side="above", r0_c=1.0)
    assert contains(beta.exponent_ci, 1.0)
    # gamma: E[Z_T] near stationarity below the threshold, from the package's simulator
    below = 1 - np.geomspace(0.4, 0.05, 8)
    result = run_sweep(Grid({"M": M, "r0": below, "T": 300}), "simulate", n_runs=1000,
                       rng=8, workers=1, progress=False)
    value, se = result.values("mean_Z_T")
    gamma = fit_exponent(below, value, se, side="below", r0_c=1.0)
    assert contains(gamma.exponent_ci, -1.0)


# --------------------------------------------------------------------------- synthetic, r0_c = 1.3
def synthetic(r0, horizons, *, r0_c=1.3, nu=0.7, rel_se=0.01, seed=3):
    """y_T = 1 / (1 + exp(-x)) + 0.5 with x = T^(1/nu) (r0 - r0_c), and normal noise."""
    rng = np.random.default_rng(seed)
    curves = {}
    for T in horizons:
        y = 1 / (1 + np.exp(-T ** (1 / nu) * (r0 - r0_c))) + 0.5
        se = rel_se * y
        curves[T] = np.array([y + se * rng.standard_normal(y.size), se])
    return curves


def test_synthetic_threshold_away_from_one_is_recovered():
    r0 = np.linspace(1.2, 1.4, 41)
    curves = synthetic(r0, (5, 10, 20))
    cross = crossing_points(r0, curves, rng=4)
    assert contains(cross.threshold_ci, 1.3) and not contains(cross.threshold_ci, 1.0)
    fit = scaling_collapse(r0, curves, n_boot=20, rng=5)
    assert contains(fit.r0_c_ci, 1.3) and contains(fit.nu_ci, 0.7)
    assert not contains(fit.nu_ci, 1.0)
    exact_curves = {T: c[0] for T, c in synthetic(r0, (5, 10, 20), rel_se=0.0).items()}
    exact_fit = scaling_collapse(r0, exact_curves)
    assert exact_fit.n_boot == 0
    assert contains(exact_fit.r0_c_ci, 1.3) and contains(exact_fit.nu_ci, 0.7)
    # a power law with threshold 1.3 and exponent 0.5, threshold fitted
    x = 1.3 + np.geomspace(0.01, 0.5, 12)
    rng = np.random.default_rng(6)
    y = 2.0 * (x - 1.3) ** 0.5
    se = 0.01 * y
    power = fit_exponent(x, y + se * rng.standard_normal(y.size), se, side="above",
                         correction=False)
    assert contains(power.exponent_ci, 0.5) and contains(power.r0_c_ci, 1.3)
    assert not contains(power.r0_c_ci, 1.0)


@settings(max_examples=25, deadline=None)
@given(c=st.floats(0.62, 1.38), slope=st.floats(0.2, 5.0), p=st.floats(-2.0, 2.0).filter(
    lambda v: abs(v) > 0.05), amplitude=st.floats(0.1, 10.0))
def test_exact_lines_and_power_laws_are_recovered(c, slope, p, amplitude):
    r0 = np.linspace(0.5, 1.5, 21)
    lines = {T: (T * slope) * (r0 - c) + 2.0 for T in (1, 2, 4)}  # all cross at c
    cross = crossing_points(r0, lines)
    assert cross.threshold == pytest.approx(c, abs=1e-9)
    assert contains(cross.threshold_ci, c)
    delta = np.geomspace(0.01, 1.0, 8)
    fit = fit_exponent(c + delta, amplitude * delta**p, side="above", r0_c=c, correction=False)
    assert fit.exponent == pytest.approx(p, abs=1e-9)
    assert contains(fit.exponent_ci, p)


# --------------------------------------------------------------------------- results and options
def test_results_carry_settings_and_tabulate():
    r0 = np.linspace(1.2, 1.4, 21)
    curves = synthetic(r0, (5, 10, 20))
    cross = crossing_points(r0, curves, rng=1, confidence=0.9, n_boot=200)
    assert isinstance(cross, CrossingResult) and cross.confidence == 0.9 and cross.n_boot == 200
    assert cross.horizons == ((5, 10), (10, 20))
    assert list(cross.to_pandas().columns) == [
        "T_small", "T_large", "crossing", "ci_low", "ci_high", "interpolation_error"]
    assert repr(cross).startswith("CrossingResult(threshold=1.") and contains(cross.threshold_ci, 1.3)
    assert crossing_points(r0, curves, rng=1, n_boot=200).threshold_ci != cross.threshold_ci
    again = crossing_points(r0, curves, rng=1, confidence=0.9, n_boot=200)
    assert again.threshold_ci == cross.threshold_ci  # same rng, same bootstrap
    mean_only = crossing_points(r0, curves, rng=1, extrapolate=False)
    assert not mean_only.extrapolated and "mean of 2 crossings" in repr(mean_only)

    fixed = scaling_collapse(r0, curves, r0_c=1.3, n_boot=10, rng=1)
    assert isinstance(fixed, CollapseResult) and fixed.fixed == ("r0_c",)
    assert fixed.r0_c == 1.3 and fixed.r0_c_ci == (1.3, 1.3)
    assert contains(fixed.nu_ci, 0.7)
    frame = fixed.to_pandas()
    assert list(frame.columns) == ["T", "r0", "x", "y", "se"] and len(frame) == 3 * 21
    assert np.allclose(fixed.x[1], 10 ** (1 / fixed.nu) * (r0 - 1.3))
    assert "CollapseResult(r0_c=1.3" in repr(fixed)
    both = scaling_collapse(r0, curves, r0_c=1.3, nu=0.7, n_boot=10, rng=1)
    assert both.fixed == ("r0_c", "nu") and both.nu_ci == (0.7, 0.7)
    windowed = scaling_collapse(r0, curves, x_range=(-3, 3), r0_c=1.3, n_boot=10, rng=1)
    assert windowed.x_range == (-3.0, 3.0) and contains(windowed.nu_ci, 0.7)

    x = 1 + np.geomspace(0.01, 0.5, 8)
    power = fit_exponent(x, 3 * (x - 1) ** 1.5, side="above", r0_c=1.0)
    assert isinstance(power, ExponentFit) and power.r0_c_ci is None and power.dof == 5
    assert power.to_pandas()["parameter"].tolist() == ["exponent", "amplitude", "correction", "r0_c"]
    assert "ExponentFit(exponent=1.5" in repr(power)


# --------------------------------------------------------------------------- invalid input
R = np.linspace(0.5, 1.5, 11)
GOOD = {10: R - 1.0, 20: 2 * (R - 1.0)}


@pytest.mark.parametrize("r0, curves, match", [
    (R, {10: R - 1.0}, r"at least 2 horizons, got 1"),
    (R, [R, R], r"curves_by_T must be a mapping"),
    (R[::-1], GOOD, r"r0_grid must be strictly increasing; entries 0 and 1"),
    (R[:3], {10: R[:3], 20: R[:3]}, r"r0_grid needs at least 4 points, got 3"),
    (np.where(R == 1.0, np.nan, R), GOOD, r"r0_grid contains NaN at index 5"),
    (R, {10: R - 1.0, 20: (R - 1.0)[:5]}, r"curves_by_T\[20\] has 5 points but r0_grid has 11"),
    (R, {10: R - 1.0, 20: np.where(R > 1.2, np.nan, R - 1)}, r"curves_by_T\[20\] contains NaN"),
    (R, {10: R - 1.0, 20: np.array([R - 1.0, -np.ones_like(R)])}, r"negative standard error"),
    (R, {10: R - 1.0, 20: np.ones((3, 11))}, r"shape \(n,\) or \(values, se\)"),
    (R, {10: R - 1.0, -5: R - 1.0}, r"horizon T .* must lie in \(0, inf\)"),
    (R, {10**17: R - 1.0, 10**17 + 1: R - 1.0}, r"repeated horizons"),
])
def test_invalid_curves_are_refused(r0, curves, match):
    with pytest.raises(ValueError, match=match):
        crossing_points(r0, curves)
    with pytest.raises(ValueError, match=match):
        scaling_collapse(r0, curves)


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match=r"do not cross inside r0_grid"):
        crossing_points(R, {10: R + 1.0, 20: R + 2.0})
    with pytest.raises(ValueError, match=r"confidence must lie in \(0, 1\)"):
        crossing_points(R, GOOD, confidence=1.0)
    with pytest.raises(ValueError, match=r"n_boot must be an integer in \[10, inf\)"):
        crossing_points(R, GOOD, n_boot=5)
    with pytest.raises(ValueError, match=r"r0_c must lie in \[0.5, 1.5\]"):
        scaling_collapse(R, GOOD, r0_c=2.0)
    with pytest.raises(ValueError, match=r"nu must lie in"):
        scaling_collapse(R, GOOD, nu=-1.0)
    with pytest.raises(ValueError, match=r"x_range must be \(low, high\) with low < high"):
        scaling_collapse(R, GOOD, x_range=(1, -1))
    with pytest.raises(ValueError, match=r"rtol must lie in \(0, inf\)"):
        scaling_collapse(R, GOOD, rtol=0)


@pytest.mark.parametrize("r0, values, se, kwargs, match", [
    (R, np.exp(R), None, {"side": "left"}, r"side must be one of \['above', 'below'\]"),
    (R, np.exp(R), None, {"side": "above", "r0_c": 1.5}, r"side='above' needs every r0 > r0_c=1.5"),
    (R, np.exp(R), None, {"side": "below", "r0_c": 1.5}, r"side='below' needs every r0 < r0_c=1.5"),
    (R, -np.ones(11), None, {"side": "above"}, r"values must be positive.*entry 0 is -1.0"),
    (R, np.ones(4), None, {"side": "above"}, r"values must have shape \(11\)"),
    (R, np.exp(R), np.r_[0.0, np.ones(10)], {"side": "above"}, r"se must be all positive .* or all 0"),
    (R, np.exp(R), -np.ones(11), {"side": "above"}, r"se must be >= 0"),
    (R[:4], np.ones(4), None, {"side": "above"}, r"at least 5 points for 4 parameters, got 4"),
    (R[::-1], np.exp(R), None, {"side": "above"}, r"r0 must be strictly increasing"),
    (R, np.exp(R), None, {"side": "above", "confidence": 0}, r"confidence must lie in \(0, 1\)"),
])
def test_fit_exponent_rejects_bad_input(r0, values, se, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_exponent(r0, values, se, **kwargs)
