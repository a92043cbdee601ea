"""Models given by an offspring-law object: every law class of branching.offspring works in
branching.exact (checked against a direct convolution of the laws' probability tables), and
branching.simulate either simulates it (checked against exact) or refuses it by name."""

import math

import numpy as np
import pytest

from branching import (
    Binomial,
    FinitePmf,
    LeaveOneOut,
    ListDecoderModel,
    NegativeBinomial,
    OffspringLaw,
    Poisson,
    PoissonBinomial,
    exact,
)
from branching.simulate import simulate
from stat_checks import assert_close

M, T = 6, 4

EVERY_LAW = [
    Binomial(M, 0.15),
    Binomial(3, 0.3),
    Poisson(0.9),
    NegativeBinomial(1.1, 0.8),
    PoissonBinomial(np.array([0.05, 0.1, 0.2, 0.3, 0.1, 0.15])),
    LeaveOneOut(np.array([0.1, 0.2, 0.3, 0.4])),
    FinitePmf(np.array([0.3, 0.2, 0.1, 0.4])),
]


def convolution_law(law: OffspringLaw, imm: OffspringLaw, T: int, size: int) -> np.ndarray:
    """P(Z_T = 0..size-1) by the Markov chain Z' = sum of Z offspring + immigrants, with
    n-fold sums by repeated convolution of the probability tables (no generating function)."""
    f = law.pmf(size - 1)
    h = imm.pmf(size - 1)
    dist = np.zeros(size)
    dist[0] = 1.0
    for _ in range(T):
        new = np.zeros(size)
        power = np.zeros(size)
        power[0] = 1.0  # law of a sum of 0 offspring
        for z in range(size):
            if dist[z] > 0:
                new += dist[z] * np.convolve(power, h)[:size]
            power = np.convolve(power, f)[:size]
        dist = new
    return dist


def test_a_law_object_is_the_offspring_law():
    law = FinitePmf(np.array([0.5, 0.0, 0.5]))
    model = ListDecoderModel.from_law(M=4, law=law, T=3)
    assert model.offspring(0) is law and model.immigration(2) is law
    assert model.r0 == 1.0 and model.eps == 0.25 and model.regime == "critical"
    with_oracle = ListDecoderModel(M=4, eps=None, T=3, law=law, eps_oracle=0.1)
    assert with_oracle.immigration(0) == Binomial(3, 0.1)
    assert ListDecoderModel(M=4, eps=0.25, T=3, law=law).eps == 0.25  # consistent eps accepted
    assert "law=FinitePmf(support=0..2" in repr(model)
    assert model.replace(T=5).offspring(0) is law


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=0.3), r"eps must be law.mean / M = 0.25"),
    (dict(eps=np.full(4, 0.25)), r"per-token eps cannot be combined with a law object"),
    (dict(eps=None, eps_steps=np.full(3, 0.2)), r"eps_steps .* cannot be combined with a law object"),
    (dict(eps=None, dispersion=2.0), r"dispersion applies only to law='negative_binomial'"),
])
def test_inconsistent_law_object_models_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ListDecoderModel(M=4, T=3, law=FinitePmf(np.array([0.5, 0.0, 0.5])), **kwargs)
    with pytest.raises(ValueError, match="law must be an OffspringLaw"):
        ListDecoderModel.from_law(M=4, law="binomial", T=3)


@pytest.mark.parametrize("law", EVERY_LAW, ids=repr)
def test_every_law_class_works_in_exact(law):
    model = ListDecoderModel.from_law(M=M, law=law, T=T)
    size = 400
    want = convolution_law(law, law, T, size)
    got = exact.pmf(model, cap=size - 1)
    np.testing.assert_allclose(got.values, want, rtol=0, atol=1e-13)
    n = np.arange(size)
    assert exact.mean_path(model)[-1] == pytest.approx(n @ want, rel=1e-9)
    var = (n * n) @ want - (n @ want) ** 2
    assert exact.variance_path(model)[-1] == pytest.approx(var, rel=1e-8)
    assert exact.prob_no_error(model) == pytest.approx(want[0], rel=1e-10)
    assert exact.accuracy(model) == pytest.approx(math.fsum(want / (1 + n)), rel=1e-10)
    q = 0.0
    for _ in range(3000):
        q = float(np.real(law.pgf(q)))
    assert exact.extinction_probability(law) == pytest.approx(q, abs=1e-10)


@pytest.mark.parametrize("law", [Poisson(1.2), NegativeBinomial(1.2, 1.5), Binomial(4, 0.3)], ids=repr)
def test_kernel_families_simulate_as_law_objects(law):
    model = ListDecoderModel.from_law(M=M, law=law, T=6)
    result = simulate(model, 20_000, rng=21)
    for t in (3, 6):
        assert_close(result.mean[t], result.mean_se[t], exact.mean_path(model)[t], f"mean t={t}")
        assert_close(result.variance[t], result.variance_se[t], exact.variance_path(model)[t],
                     f"variance t={t}")
    assert_close(result.accuracy, result.accuracy_se, exact.accuracy(model), "accuracy")


@pytest.mark.parametrize("law", [FinitePmf(np.array([0.2, 0.3, 0.5])),
                                 PoissonBinomial(np.full(M, 0.1)),
                                 LeaveOneOut(np.full(M, 0.1))], ids=repr)
def test_laws_without_a_kernel_are_refused_by_simulate(law):
    model = ListDecoderModel.from_law(M=M, law=law, T=5)
    with pytest.raises(ValueError, match=rf"law={type(law).__name__}.* cannot be simulated: the kernels draw"):
        simulate(model, 100, rng=1)
