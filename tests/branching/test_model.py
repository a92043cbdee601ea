"""ListDecoderModel: parameters, derived laws and validation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from branching import (
    Binomial,
    LeaveOneOut,
    ListDecoderModel,
    NegativeBinomial,
    Poisson,
    PoissonBinomial,
)


def test_base_model_laws_are_the_papers():
    model = ListDecoderModel(M=10, eps=0.05, T=7)
    assert model.offspring() == Binomial(10, 0.05)
    assert model.immigration() == Binomial(9, 0.05)
    assert model.r0 == pytest.approx(0.5, abs=1e-15)
    assert model.immigration_mean == pytest.approx(0.45, abs=1e-15)
    assert model.regime == "subcritical"
    assert len(model.laws()) == 7


def test_from_r0_and_regimes():
    for r0, regime in [(0.9, "subcritical"), (1.0, "critical"), (1.1, "supercritical")]:
        model = ListDecoderModel.from_r0(M=50257, r0=r0, T=1000)
        assert model.eps == pytest.approx(r0 / 50257, rel=1e-15)
        assert model.regime == regime


def test_separate_oracle_rate_sets_only_immigration():
    model = ListDecoderModel(M=20, eps=0.04, T=3, eps_oracle=0.01)
    assert model.offspring() == Binomial(20, 0.04)
    assert model.immigration() == Binomial(19, 0.01)
    assert model.r0 == pytest.approx(0.8)


def test_poisson_and_negative_binomial_laws_keep_the_means():
    pois = ListDecoderModel(M=100, eps=0.009, T=5, law="poisson")
    assert isinstance(pois.offspring(), Poisson)
    assert pois.offspring().mean == pytest.approx(0.9, rel=1e-15)
    assert pois.immigration().mean == pytest.approx(99 * 0.009)
    nb = ListDecoderModel(M=100, eps=0.009, T=5, law="negative_binomial", dispersion=2.0)
    assert isinstance(nb.offspring(), NegativeBinomial)
    assert nb.offspring().variance == pytest.approx(0.9 + 0.81 / 2)


def test_per_token_rates_give_poisson_binomial_offspring():
    eps = np.linspace(0.0, 0.2, 8)
    model = ListDecoderModel(M=8, eps=eps, T=4)
    assert isinstance(model.offspring(), PoissonBinomial)
    assert isinstance(model.immigration(), LeaveOneOut)
    assert model.r0 == pytest.approx(eps.sum())
    # The oracle token is uniform: the immigration mean leaves out one token on average.
    assert model.immigration().mean == pytest.approx(eps.sum() * 7 / 8)


def test_per_step_rates_and_geometric_mean_r0():
    steps = np.array([0.05, 0.2, 0.1])
    model = ListDecoderModel(M=10, eps=0.1, T=3, eps_steps=steps)
    assert [law.p for law, _ in model.laws()] == list(steps)
    assert model.r0 == pytest.approx(math.prod(10 * steps) ** (1 / 3))
    with pytest.raises(ValueError, match="t must be an integer in"):
        model.offspring(3)


@given(
    M=st.integers(2, 10**6),
    r0=st.floats(0.0, 3.0),
    T=st.integers(0, 10**4),
)
@settings(max_examples=50, deadline=None)
def test_r0_round_trip(M, r0, T):
    r0 = min(r0, M)
    model = ListDecoderModel.from_r0(M=M, r0=r0, T=T)
    assert model.r0 == pytest.approx(r0, rel=1e-12, abs=1e-300)
    assert 0.0 <= model.eps <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(M=1, eps=0.1, T=3), r"M must be an integer in \[2, inf\), got 1"),
        (dict(M=2.5, eps=0.1, T=3), "M must be an integer"),
        (dict(M=10, eps=1.5, T=3), r"eps must lie in \[0, 1\], got 1.5"),
        (dict(M=10, eps=-0.1, T=3), r"eps must lie in \[0, 1\]"),
        (dict(M=10, eps=float("nan"), T=3), "eps must be finite, got nan"),
        (dict(M=10, eps=0.1, T=-1), r"T must be an integer in \[0, inf\), got -1"),
        (dict(M=10, eps=0.1, T=3, K=0), r"K must be an integer in \[1, inf\), got 0"),
        (dict(M=10, eps=0.1, T=3, delta=1.0), r"delta must lie in \[0, 1\)"),
        (dict(M=10, eps=0.1, T=3, eps_oracle=2.0), r"eps_oracle must lie in \[0, 1\]"),
        (dict(M=3, eps=[0.1, 0.2], T=3), r"eps must have shape \(3\), got \(2,\)"),
        (dict(M=3, eps=[0.1, np.nan, 0.2], T=3), "eps contains NaN at index 1"),
        (dict(M=3, eps=0.1, T=2, eps_steps=[0.1]), r"eps_steps must have shape \(2\)"),
        (dict(M=3, eps=[0.1, 0.1, 0.1], T=1, eps_steps=[0.1]), "cannot be combined"),
        (dict(M=3, eps=0.1, T=1, law="gamma"), "law must be one of"),
        (dict(M=3, eps=0.1, T=1, law="negative_binomial"), "dispersion must be given"),
        (dict(M=3, eps=0.1, T=1, law="negative_binomial", dispersion=0.0), r"dispersion must lie in \(0"),
        (dict(M=3, eps=0.1, T=1, dispersion=1.0), "dispersion applies only"),
        (dict(M=3, eps=[0.1, 0.1, 0.1], T=1, law="poisson"), "per-token eps needs law='binomial'"),
    ],
)
def test_invalid_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ListDecoderModel(**kwargs)


def test_from_r0_rejects_r0_above_m():
    with pytest.raises(ValueError, match=r"r0 must lie in \[0, 10\], got 11.0"):
        ListDecoderModel.from_r0(M=10, r0=11.0, T=3)


def test_models_are_frozen_and_replace_revalidates():
    model = ListDecoderModel(M=10, eps=0.05, T=7)
    with pytest.raises(AttributeError):
        model.M = 3
    assert model.replace(T=9).T == 9
    with pytest.raises(ValueError, match="eps must lie"):
        model.replace(eps=2.0)


def test_repr_states_the_parameters():
    text = repr(ListDecoderModel(M=10, eps=0.05, T=7, delta=0.1, K=5))
    assert text == "ListDecoderModel(M=10, eps=0.05, T=7, delta=0.1, K=5, r0=0.5)"
