"""The enumerable toy models: their laws, scores and Fisher information, checked by
independent routes (direct products of softmaxes, finite differences, enumeration,
chi-square tests of the samplers)."""

import itertools

import numpy as np
import pytest
from scipy import stats

from branching.toys import MarkovToy, PaddedToy
from branching import transitions as tr

CONTROLS = ("temperature", "tilt", "switch")


def _toy(control, seed=0, V=3, N=3, **kw):
    return MarkovToy.random(V=V, N=N, rng=seed, control=control, **kw)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _direct_prob(toy, seq, theta):
    """P(x | theta) as an explicit product of softmaxes over the logit formula."""
    A, C = toy.base, toy.tilt
    prob, prev = 1.0, toy.V
    for x in seq:
        if toy.control == "temperature":
            z = A[prev] / theta
        elif toy.control == "tilt":
            z = A[prev] + theta * C[prev]
        else:
            z = A[prev] + np.tanh(toy.sharpness * (theta - toy.center)) * C[prev]
        prob *= _softmax(z)[x]
        prev = x
    return prob


@pytest.mark.parametrize("control", CONTROLS)
def test_log_prob_matches_direct_product(control):
    toy = _toy(control, seed=4, sharpness=2.0, center=0.3)
    seqs = toy.enumerate_all()
    assert seqs.shape == (27, 3)
    assert len({tuple(s) for s in seqs}) == 27
    thetas = np.array([0.4, 1.3])
    table = toy.log_prob(seqs, thetas)
    assert table.shape == (27, 2)
    for i, seq in enumerate(seqs):
        for m, theta in enumerate(thetas):
            assert table[i, m] == pytest.approx(np.log(_direct_prob(toy, seq, theta)), abs=1e-12)
    np.testing.assert_allclose(toy.log_prob(seqs, 0.4), table[:, 0])
    np.testing.assert_allclose(np.exp(toy.log_prob_table(thetas)).sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("control", CONTROLS)
def test_score_is_derivative_and_fisher_matches_enumeration(control):
    toy = _toy(control, seed=7, sharpness=1.5, center=0.2)
    seqs = toy.enumerate_all()
    theta, h = 0.8, 1e-5
    numeric = (toy.log_prob(seqs, theta + h) - toy.log_prob(seqs, theta - h)) / (2 * h)
    np.testing.assert_allclose(toy.score(seqs, theta), numeric, atol=1e-7)
    prob = np.exp(toy.log_prob(seqs, theta))
    by_enumeration = float(np.sum(prob * numeric**2))
    assert toy.fisher_information(theta) == pytest.approx(by_enumeration, rel=1e-7)
    assert abs(np.sum(prob * toy.score(seqs, theta))) < 1e-12  # the score has mean zero


@pytest.mark.parametrize("control", CONTROLS)
def test_sampler_draws_the_enumerated_law(control):
    toy = _toy(control, seed=9, V=3, N=2)
    theta, S = 0.7, 20_000
    x = toy.sample(theta, S, rng=12)
    counts = np.bincount(x @ np.array([3, 1]), minlength=9)
    expected = S * np.exp(toy.log_prob_table([theta])[0])
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_top_k_sampler_draws_the_truncated_law():
    toy = _toy("tilt", seed=5, V=4, N=2)
    theta, S, k = 0.2, 20_000, 2
    q = np.exp(toy.log_transition(theta))
    truncated = np.zeros_like(q)
    for row in range(q.shape[0]):
        top = np.argsort(q[row])[-k:]
        truncated[row, top] = q[row, top] / q[row, top].sum()
    expected = np.array([truncated[4, a] * truncated[a, b] for a, b in itertools.product(range(4), repeat=2)])
    x = toy.sample(theta, S, rng=3, top_k=k)
    counts = np.bincount(x @ np.array([4, 1]), minlength=16)
    assert np.all(counts[expected == 0] == 0)
    keep = expected > 0
    assert stats.chisquare(counts[keep], S * expected[keep]).pvalue > 1e-3


def test_top_k_sampling_biases_the_indicator_downward():
    """Sampling from a truncated law while scoring the full one is not the estimator's fault,
    but it biases it: the reason samplers must draw exactly the scored law."""
    toy = MarkovToy.random(V=6, N=4, rng=11, control="temperature", scale=2.0)
    grid = np.geomspace(0.3, 3.0, 8)
    table = toy.log_prob_table(grid)
    exact = tr.exact_indicator(table, grid, L=2).value
    truncated = tr.indicator(toy.logp_banded(grid, 2000, 3, rng=1, top_k=3), grid, L=2)
    faithful = tr.indicator(toy.logp_banded(grid, 2000, 3, rng=1), grid, L=2)
    assert np.all(np.abs(faithful.value - exact) < 4.5 * faithful.se)
    z = (truncated.value - exact) / truncated.se
    assert np.all(z < -4), z
    assert z[-1] < z[0]  # worse at high temperature


def test_logp_banded_layout_and_full_layout_agree():
    toy = _toy("tilt", seed=2, V=3, N=2)
    grid = np.linspace(-1, 1, 5)
    banded, tokens = toy.logp_banded(grid, 6, 2, rng=8, return_tokens=True)
    full, tokens_full = toy.logp_full(grid, 6, rng=8, return_tokens=True)
    assert banded.shape == (5, 6, 5) and full.shape == (5, 6, 5) and tokens.shape == (5, 6, 2)
    np.testing.assert_array_equal(tokens, tokens_full)
    for k in range(5):
        for d in range(-2, 3):
            column = banded[k, :, 2 + d]
            if 0 <= k + d < 5:
                np.testing.assert_allclose(column, toy.log_prob(tokens[k], grid[k + d]))
                np.testing.assert_allclose(column, full[k, :, k + d])
            else:
                assert np.all(np.isnan(column))
    np.testing.assert_array_equal(tr.band(full, 2), banded)
    again = toy.logp_banded(grid, 6, 2, rng=8)
    np.testing.assert_array_equal(again, banded)


def test_padded_toy_adds_a_parameter_free_block():
    core = _toy("tilt", seed=1, V=3, N=2)
    padding = MarkovToy.random(V=20, N=400, rng=2, control="temperature", scale=0.3)
    toy = PaddedToy(core, padding, 1.0)
    assert toy.N == 402
    x = toy.sample(0.5, 10, rng=4)
    assert x.shape == (10, 402) and x[:, :2].max() < 3
    lp = toy.log_prob(x, np.array([0.0, 0.5]))
    shift = padding.log_prob(x[:, 2:], 1.0)
    np.testing.assert_allclose(lp - shift[:, None], core.log_prob(x[:, :2], np.array([0.0, 0.5])))
    assert np.all(lp < -500)
    assert "PaddedToy" in repr(toy)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MarkovToy(base=np.zeros((3, 3)), N=2), "base"),
        (lambda: MarkovToy(base=np.zeros((2, 1)), N=2), "base"),
        (lambda: MarkovToy(base=np.zeros((4, 3)), N=0), "N"),
        (lambda: MarkovToy(base=np.zeros((4, 3)), N=2, control="heat"), "control"),
        (lambda: MarkovToy(base=np.zeros((4, 3)), N=2, control="tilt"), "tilt"),
        (lambda: MarkovToy(base=np.zeros((4, 3)), N=2, control="switch", tilt=np.ones((4, 3)),
                           sharpness=0), "sharpness"),
        (lambda: MarkovToy(base=np.full((4, 3), np.nan), N=2), "base"),
        (lambda: _toy("temperature").log_prob_table([0.5, 0.0]), "theta"),
        (lambda: _toy("temperature").sample(-1.0, 3), "theta"),
        (lambda: _toy("tilt").sample(0.0, 0), "S"),
        (lambda: _toy("tilt").sample(0.0, 3, top_k=4), "top_k"),
        (lambda: _toy("tilt").log_prob(np.array([[0, 1, 3]]), 0.0), "tokens"),
        (lambda: _toy("tilt").log_prob(np.array([[0, 1]]), 0.0), "tokens"),
        (lambda: MarkovToy.random(V=2, N=40).enumerate_all(), "V\\*\\*N"),
        (lambda: _toy("tilt").logp_banded([0.0, 1.0], 3, -1), "W"),
        (lambda: PaddedToy(_toy("tilt"), "pad", 1.0), "padding"),
    ],
)
def test_invalid_input_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_repr_is_readable():
    assert repr(_toy("switch", center=0.5, sharpness=2.0)) == \
        "MarkovToy(V=3, N=3, control='switch', center=0.5, sharpness=2)"
