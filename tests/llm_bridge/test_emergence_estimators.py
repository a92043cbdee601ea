"""Mutual-information estimators against known truths (synthetic correlated Gaussians).

Tolerances (stated once, all with fixed seeds):
* Gaussian (Ledoit-Wolf on PCA features, held-out): |error| <= 0.05 * truth + 0.1 bits in
  8 dimensions with 2000 held-out rows (the shrinkage biases it slightly downwards; the
  seed-to-seed sd is ~0.02 bits there).
* KSG (k=3): |error| <= 0.15 bits in 1-2 dimensions (sd ~0.05 bits at 1000 held-out rows);
  in 4+ dimensions KSG is biased low (documented), checked only for the sign of the bias.
* Neural estimators (few steps, small case): held-out estimate of 1 bit within [0.3, 1.4]
  bits; InfoNCE never above log2 K.
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

from llm_bridge.emergence import mi
from llm_bridge.emergence.mi import (
    correlated_gaussians,
    estimate_mi,
    gaussian_mi,
    ksg_mi,
    ledoit_wolf,
)
from llm_bridge.emergence.neural import infonce_mi, mine_mi


def test_correlated_gaussians_truth_matches_sample_correlation():
    x, y, truth = correlated_gaussians(200_000, 1, rho=0.6, rng=0)
    r = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    # the sample correlation has sd (1 - rho^2) / sqrt(n) = 1.4e-3; allow 4 sd
    assert abs(r - 0.6) < 4 * 0.64 / math.sqrt(200_000)
    assert truth == pytest.approx(-0.5 * math.log2(1 - 0.36))
    assert correlated_gaussians(3, 5, mi_bits=7.5, rng=0)[2] == pytest.approx(7.5)


def test_ledoit_wolf_matches_the_sum_over_samples():
    z = np.random.default_rng(1).standard_normal((60, 5)) @ np.diag([1, 2, 3, 0.5, 1])
    cov, rho = ledoit_wolf(z)
    zc = z - z.mean(0)
    n, p = zc.shape
    s = zc.T @ zc / n
    m = np.trace(s) / p
    d2 = np.linalg.norm(s - m * np.eye(p)) ** 2 / p
    b2 = sum(np.linalg.norm(np.outer(r, r) - s) ** 2 for r in zc) / n**2 / p
    expected_rho = min(b2, d2) / d2
    assert rho == pytest.approx(expected_rho, rel=1e-10)
    np.testing.assert_allclose(cov, expected_rho * m * np.eye(p) + (1 - expected_rho) * s)


@pytest.mark.parametrize("truth", [0.0, 2.0, 6.0])
def test_gaussian_estimator_recovers_known_mi(truth):
    x, y, exact = correlated_gaussians(4000, 8, mi_bits=truth, rng=1)
    est = gaussian_mi(x, y, dim=8, rng=0)
    assert abs(est.bits - exact) <= 0.05 * exact + 0.1
    assert len(est.values) == 3 and est.n_test == 2000
    # the in-sample closed form and the held-out read-out agree on Gaussian data
    assert abs(np.mean(est.train_values) - exact) <= 0.05 * exact + 0.1


def test_gaussian_estimator_is_invariant_to_invertible_feature_maps():
    x, y, _ = correlated_gaussians(2000, 3, rho=0.7, rng=2)
    a = gaussian_mi(x, y, dim=3, rng=5)
    b = gaussian_mi(3.0 * x + 1.0, -2.0 * y, dim=3, rng=5)
    assert a.values == pytest.approx(b.values, abs=1e-9)


@pytest.mark.parametrize("dim,rho", [(1, 0.9), (2, 0.75)])
def test_ksg_recovers_known_mi_in_low_dimension(dim, rho):
    x, y, truth = correlated_gaussians(2000, dim, rho=rho, rng=3)
    est = ksg_mi(x, y, dim=dim, rng=0)
    assert abs(est.bits - truth) <= 0.15


def test_ksg_is_biased_low_in_higher_dimension_and_zero_on_independent_data():
    x, y, truth = correlated_gaussians(2000, 8, mi_bits=2.0, rng=1)
    assert ksg_mi(x, y, dim=8, rng=0).bits < truth - 0.3
    x, y, _ = correlated_gaussians(2000, 2, rho=0.0, rng=1)
    assert abs(ksg_mi(x, y, dim=2, rng=0).bits) < 0.1


def test_ksg_matches_brute_force_and_reaches_its_ceiling_on_identical_variables():
    x, y, _ = correlated_gaussians(300, 2, rho=0.8, rng=4)
    k = 3
    dx = np.abs(x[:, None] - x[None]).max(-1)
    dy = np.abs(y[:, None] - y[None]).max(-1)
    dz = np.maximum(dx, dy)
    np.fill_diagonal(dz, np.inf)
    eps = np.sort(dz, axis=1)[:, k - 1]
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    nx, ny = (dx < eps[:, None]).sum(1), (dy < eps[:, None]).sum(1)
    brute = digamma(k) + digamma(300) - np.mean(digamma(nx + 1) + digamma(ny + 1))
    assert mi._ksg(x, y, k) == pytest.approx(brute, rel=1e-12)
    est = ksg_mi(x, x, dim=2, jitter=0.0, rng=0)
    assert est.bits == pytest.approx(est.ceiling_bits, abs=1e-9)


def test_constant_variable_carries_no_information():
    x = np.ones((50, 3))
    y = np.random.default_rng(0).standard_normal((50, 3))
    for name in ("gaussian", "ksg"):
        assert estimate_mi(x, y, estimator=name, dim=2, rng=0).values == (0.0, 0.0, 0.0)


def test_neural_estimators_within_loose_band():
    torch_state = torch.random.get_rng_state()
    x, y, truth = correlated_gaussians(1000, 2, mi_bits=1.0, rng=1)
    nce = infonce_mi(x, y, dim=2, batch_size=64, steps=200, rng=0)
    mine = mine_mi(x, y, dim=2, batch_size=128, steps=200, rng=0)
    for est in (nce, mine):
        assert 0.3 <= est.bits <= 1.4, est
        assert len(est.values) == 3
    assert nce.ceiling_bits == 6.0
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # global torch RNG untouched
    again = infonce_mi(x, y, dim=2, batch_size=64, steps=200, rng=0)
    assert again.values == nce.values


def test_infonce_is_capped_at_log_batch_size():
    x, y, truth = correlated_gaussians(600, 4, mi_bits=12.0, rng=1)
    est = infonce_mi(x, y, dim=4, batch_size=16, steps=100, n_seeds=1, rng=0)
    assert est.bits <= math.log2(16) + 1e-9 < truth


def test_authors_max_over_training_steps_readout_is_biased_up_on_independent_data():
    # MI = 0: the held-out DV value cannot be significantly positive, while the maximum
    # over full-batch training steps on the training data is.
    x, y, _ = correlated_gaussians(400, 8, rho=0.0, rng=1)
    biased = mine_mi(x, y, dim=8, steps=150, readout="max_train", n_seeds=1, rng=0)
    honest = mine_mi(x, y, dim=8, batch_size=100, steps=150, n_seeds=1, rng=0)
    assert biased.bits > 1.0
    assert honest.bits < 0.2


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: gaussian_mi(x[:6], y[:6]), "samples"),
        (lambda x, y: gaussian_mi(x, y, dim=200), "dim"),
        (lambda x, y: ksg_mi(x[:10], y[:10], k=5), "k=5"),
        (lambda x, y: gaussian_mi(x, y[:-1]), "same number of samples"),
        (lambda x, y: gaussian_mi(x, y, test_fraction=1.0), "test_fraction"),
        (lambda x, y: gaussian_mi(x, y, rng=-1), "rng"),
        (lambda x, y: infonce_mi(x, y, batch_size=80), "batch_size=80"),
        (lambda x, y: mine_mi(x, y, readout="max"), "readout"),
        (lambda x, y: estimate_mi(x, y, estimator="plugin"), "estimator"),
        (lambda x, y: gaussian_mi(x * np.nan, y), "x contains NaN"),
        (lambda x, y: correlated_gaussians(5, 2, rho=1.0), "rho"),
    ],
)
def test_bad_input_names_the_parameter(call, match):
    x, y, _ = correlated_gaussians(120, 3, rho=0.5, rng=0)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_result_table_and_repr():
    x, y, _ = correlated_gaussians(200, 2, rho=0.5, rng=0)
    est = gaussian_mi(x, y, dim=2, rng=7)
    frame = est.to_pandas()
    assert list(frame["heldout_bits"]) == list(est.values) and len(frame) == 3
    assert "gaussian" in repr(est) and est.seed == 7


def test_projection_falls_back_when_the_divide_and_conquer_svd_fails(monkeypatch):
    """LAPACK's gesdd fails to converge on some rank-deficient samples with many repeated
    rows (seen on SmolLM2 micro representations, 512 rows of rank 229 in 576 dimensions);
    the projection then uses gesvd and finds the same leading subspace."""
    from llm_bridge.emergence._common import Projection

    gen = np.random.default_rng(0)
    base = gen.normal(size=(40, 80)) @ np.diag(np.linspace(3.0, 0.1, 80))
    train = np.repeat(base, 3, axis=0)[:100]  # 100 rows, 34 distinct
    train = np.hstack([train, train ** 2])  # 160 features > 100 rows: the SVD branch
    assert np.linalg.matrix_rank(train) == 34
    expected = Projection(train, 5).components

    def fails(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", fails)
    fallback = Projection(train, 5).components
    # same subspace: the projection of one basis onto the other is orthogonal
    overlap = expected.T @ fallback
    assert np.allclose(overlap @ overlap.T, np.eye(5), atol=1e-8)
