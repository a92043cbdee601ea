"""Measurements on the zoo: a positive control, prediction honesty, the quick family."""

import warnings

import numpy as np
import pytest

from llm_bridge.theory_lm import theory_model
from llm_bridge.zoo import RunningSumTask, get_family, train_family
from llm_bridge.zoo.measure import (MeasureSettings, check_disjoint, measure_models,
                                    power_law_crossing, training_scan)

TASK = RunningSumTask(M=32, T=5, K=8)


def _theory_oracle(lm, inputs):
    return np.array([lm.model.oracle(list(row), TASK.T) for row in inputs])


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """Synthetic models whose list decoder IS the theory's process, measured as the zoo is."""
    r0s = (0.5, 0.9, 1.3)
    lms = [theory_model(32, r / 32, eps_oracle=0.3 / 31, delta=0.02, theta=0.04,
                        prompt_length=TASK.T, context_length=2 * TASK.T, seed=i)
           for i, r in enumerate(r0s)]
    settings = MeasureSettings(theta=0.04, n_measure=100, n_test=100, n_boot=100, seed=1)
    res = measure_models(lms, [1, 2, 3], TASK, settings=settings, oracle=_theory_oracle,
                         cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return r0s, res


def test_positive_control_recovers_the_parameters(control):
    r0s, res = control
    for i, r0 in enumerate(r0s):
        assert res.r0_ci[0, i] <= r0 <= res.r0_ci[1, i]
        assert res.immigration_ci[0, i] <= 0.3 <= res.immigration_ci[1, i]
        assert res.delta_ci[0, i] <= 0.02 <= res.delta_ci[1, i]


def test_positive_control_prediction_agrees(control):
    _, res = control
    # the process assumptions hold by construction and the screening check sees that
    assert res.assumptions_hold.all()
    assert res.agrees.all()
    # and the agreement is not vacuous: the accuracy falls with R0 by more than the errors
    assert res.ld_accuracy[0] - res.ld_accuracy[2] > 3 * np.hypot(res.ld_accuracy_se[0],
                                                                  res.ld_accuracy_se[2])


def test_parameters_and_accuracy_come_from_disjoint_inputs(control):
    _, res = control
    check_disjoint(res.measure_inputs, res.test_inputs)
    assert set(TASK.split_of(res.measure_inputs)) == {"measure"}
    assert set(TASK.split_of(res.test_inputs)) == {"test"}
    with pytest.raises(ValueError, match="must be disjoint, but 1 input"):
        check_disjoint(res.measure_inputs, np.vstack([res.test_inputs, res.measure_inputs[:1]]))


def test_power_law_crossing_of_an_exact_power_law():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    r0 = 3.0 * (x / 1e3) ** -0.25  # crosses 1 at 1e3 * 3**4 = 81000
    fit = power_law_crossing(x, r0)
    assert fit["x_c"] == pytest.approx(81000.0, rel=1e-9)
    assert fit["slope"] == pytest.approx(-0.25) and fit["direction"] == "down"
    with pytest.raises(ValueError, match="at least 2 points"):
        power_law_crossing([1.0, 2.0], [np.nan, 1.0])


def test_measure_bad_input(tmp_path):
    lm = theory_model(16, 0.01, theta=0.1, prompt_length=5, context_length=10)
    with pytest.raises(ValueError, match="vocab_size M=32"):
        measure_models([lm], [1], TASK, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="one entry per model"):
        measure_models([lm], [1, 2], TASK, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="theta must lie in"):
        MeasureSettings(theta=0.0)


# ---------------------------------------------------------------------------- quick family
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    cache = tmp_path_factory.mktemp("zoo")
    family = get_family("quick")
    models = train_family(family, cache_dir=cache, progress=False)
    res = measure_models([m.language_model() for m in models], [m.n_parameters for m in models],
                         family.task, settings=MeasureSettings(n_measure=60, n_test=60),
                         cache_dir=cache, progress=False)
    return models, res, cache


@pytest.mark.slow
def test_quick_family_prediction_where_the_assumptions_hold(quick):
    _, res, _ = quick
    for i in np.flatnonzero(res.assumptions_hold):
        assert res.agrees[i], (res.labels[i], res.predicted[i], res.ld_accuracy[i])
    failing = [f"{res.labels[i]} parameters: predicted {res.predicted[i]:.3f} "
               f"[{res.predicted_band[0, i]:.3f}, {res.predicted_band[1, i]:.3f}], measured "
               f"{res.ld_accuracy[i]:.3f} +- {res.ld_accuracy_se[i]:.3f}, mean-path p "
               f"{res.mean_path_p[i]:.2g}, dispersion {res.dispersion_index[i]:.2f} vs law "
               f"{res.law_index[i]:.2f}"
               for i in np.flatnonzero(~res.assumptions_hold)]
    if failing:
        warnings.warn("process assumptions fail for: " + "; ".join(failing), UserWarning)


@pytest.mark.slow
def test_quick_family_shows_the_readme_numbers(quick):
    """The README's row: list-decoding accuracy rises from ~0 to ~0.95 with size, R0 stays > 1."""
    _, res, _ = quick
    assert res.ld_accuracy[0] < 0.05 and res.ld_accuracy[-1] > 0.85
    assert np.all(res.r0_ci[0] > 1.0)  # every model super-critical: R0 never crosses 1
    assert res.r0_crossings == []
    assert res.greedy_accuracy[-1] >= res.ld_accuracy[-1] - 0.1


@pytest.mark.slow
def test_training_scan_of_the_largest_quick_model(quick):
    models, _, cache = quick
    scan = training_scan(models[-1], settings=MeasureSettings(n_measure=30, n_test=30),
                         n_samples=32, cache_dir=cache, progress=False)
    m = scan.measurement
    assert m.axis == "step" and m.x.tolist() == list(models[-1].steps)
    assert m.delta[0] == 1.0 and np.isnan(m.r0[0])  # untrained: the oracle is never eligible
    assert m.ld_accuracy[-1] > 0.8
    assert scan.indicator.position.size == len(models[-1].steps) - 1
    assert 0 <= scan.peak.location <= models[-1].steps[-1]
