"""Exact laws of branching.exact against brute-force enumeration of the token-level decoder.

The enumerator below knows nothing of branching processes or generating functions: it runs
the explicit list decoder on token strings (oracle sequence all zeros, or averaged over
every oracle sequence for per-token rates), enumerates every joint outcome of the
eligibility Bernoullis of every candidate it visits, and tabulates the final lists.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from branching import ListDecoderModel
from branching import exact

TOL = 1e-12


def _subsets(rates, forced=None):
    """All eligible subsets of the tokens with their probabilities.

    ``rates[v]`` is the probability that token v is eligible; ``forced`` maps a token to
    its own eligibility probability (the oracle token: 1 - delta).
    """
    probs = [forced.get(v, r) if forced else r for v, r in enumerate(rates)]
    out = []
    for bits in itertools.product((0, 1), repeat=len(probs)):
        p = 1.0
        for b, q in zip(bits, probs):
            p *= q if b else 1.0 - q
        if p > 0:
            out.append((tuple(v for v, b in enumerate(bits) if b), p))
    return out


def enumerate_decoder(M, T, eps_of_step, eps_oracle_of_step, delta, oracle):
    """Exact outcome table of the list decoder for one oracle sequence.

    Returns a list of (probability, final_list, sizes) with ``sizes[t] = L_t``.
    """
    results = []

    def step(t, current, sizes, prob):
        if t == T:
            results.append((prob, current, sizes))
            return
        prefix_oracle = tuple(oracle[:t])
        choices = []
        for cand in current:
            if cand == prefix_oracle:
                rates = [eps_oracle_of_step(t, v) for v in range(M)]
                choices.append(_subsets(rates, forced={oracle[t]: 1.0 - delta}))
            else:
                choices.append(_subsets([eps_of_step(t, v) for v in range(M)]))

        def expand(i, new_list, p):
            if i == len(current):
                step(t + 1, new_list, sizes + (len(new_list),), p)
                return
            for subset, q in choices[i]:
                expand(i + 1, new_list + [current[i] + (v,) for v in subset], p * q)

        expand(0, [], prob)

    step(0, [()], (1,), 1.0)
    return results


def brute_force(M, T, *, eps, eps_steps=None, eps_oracle=None, delta=0.0, K_passage=2):
    """Law of Z_T, P(Z_T=0), accuracy, divergence-depth law, cost and tau_K law."""
    per_token = np.ndim(eps) != 0

    def eps_of_step(t, v):
        if per_token:
            return float(eps[v])
        return float(eps_steps[t]) if eps_steps is not None else float(eps)

    def eps_oracle_of_step(t, v):
        return eps_of_step(t, v) if eps_oracle is None else float(eps_oracle)

    oracles = (list(itertools.product(range(M), repeat=T)) if per_token
               else [(0,) * T])
    law = defaultdict(float)
    acc = 0.0
    depth = np.zeros(T + 1)
    cost = 0.0
    passage = np.zeros(T + 1)
    empty = 0.0
    for oracle in oracles:
        weight = 1.0 / len(oracles)
        for prob, final, sizes in enumerate_decoder(M, T, eps_of_step, eps_oracle_of_step,
                                                    delta, oracle):
            p = prob * weight
            wrong = [c for c in final if c != tuple(oracle)]
            law[len(wrong)] += p
            cost += p * sum(sizes[:T])
            hit = [t for t, size in enumerate(sizes) if size >= K_passage]
            if hit:
                passage[hit[0]] += p
            if not final:
                empty += p
                continue
            for cand in final:
                mismatch = [j for j in range(T) if cand[j] != oracle[j]]
                depth[mismatch[0] if mismatch else T] += p / len(final)
            if tuple(oracle) in final:
                acc += p / len(final)
    size = max(law) + 1
    values = np.zeros(size)
    for n, p in law.items():
        values[n] = p
    return dict(pmf=values, p0=law[0], accuracy=acc, depth=depth, cost=cost,
                passage=passage, empty=empty)


CASES = [
    dict(M=2, T=1, eps=0.3),
    dict(M=2, T=2, eps=0.35),
    dict(M=2, T=3, eps=0.45),
    dict(M=2, T=3, eps=0.6),  # super-critical (R0 = 1.2)
    dict(M=2, T=3, eps=0.5),  # critical
    dict(M=3, T=2, eps=0.2),
    dict(M=3, T=2, eps=0.4, eps_oracle=0.15),
    dict(M=2, T=3, eps=0.4, delta=0.2),
    dict(M=3, T=2, eps=0.3, eps_oracle=0.5, delta=0.35),
    dict(M=2, T=3, eps=0.4, eps_steps=[0.2, 0.7, 0.4], delta=0.1),
    dict(M=3, T=1, eps=0.25, delta=0.5),
    dict(M=4, T=2, eps=0.2, delta=0.15),
    dict(M=2, T=3, eps=1.0, eps_oracle=0.3, delta=0.25),  # deterministic offspring
    dict(M=2, T=2, eps=np.array([0.2, 0.7])),  # per-token rates, random oracle
    dict(M=3, T=2, eps=np.array([0.1, 0.3, 0.5]), delta=0.2),
]


def _model(case):
    kwargs = {k: v for k, v in case.items() if k != "eps_steps"}
    if "eps_steps" in case:
        kwargs["eps_steps"] = np.array(case["eps_steps"])
    return ListDecoderModel(**kwargs)


@pytest.fixture(scope="module")
def tables():
    return [(case, _model(case), brute_force(**case)) for case in CASES]


def _ids():
    return [", ".join(f"{k}={v}" for k, v in case.items()) for case in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=_ids())
def test_law_of_Z_T(tables, index):
    case, model, bf = tables[index]
    law = exact.pmf(model, tail=1e-15)
    n = max(law.values.size, bf["pmf"].size)
    got = np.pad(law.values, (0, n - law.values.size))
    want = np.pad(bf["pmf"], (0, n - bf["pmf"].size))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    assert law.truncated_mass <= 1e-13


@pytest.mark.parametrize("index", range(len(CASES)), ids=_ids())
def test_scalar_quantities(tables, index):
    case, model, bf = tables[index]
    n = np.arange(bf["pmf"].size)
    mean = n @ bf["pmf"]
    var = (n * n) @ bf["pmf"] - mean**2
    assert abs(exact.prob_no_error(model) - bf["p0"]) < TOL
    assert abs(exact.accuracy(model) - bf["accuracy"]) < TOL
    assert abs(exact.mean_path(model)[-1] - mean) < TOL
    assert abs(exact.variance_path(model)[-1] - var) < 1e-11
    assert abs(exact.compute_cost(model) - bf["cost"]) < 1e-11
    kept = exact.oracle_survival(model)
    alone = exact.prob_oracle_alone(model)
    assert abs(alone - (bf["p0"] - bf["empty"])) < TOL
    assert kept == pytest.approx((1 - case.get("delta", 0.0)) ** case["T"], abs=1e-15)


@pytest.mark.parametrize("index", range(len(CASES)), ids=_ids())
def test_divergence_depth_law(tables, index):
    case, model, bf = tables[index]
    law = exact.divergence_depth_law(model)
    np.testing.assert_allclose(law, bf["depth"], rtol=0, atol=TOL)
    assert law.sum() == pytest.approx(1.0 - bf["empty"], abs=TOL)


@pytest.mark.parametrize("index", range(len(CASES)), ids=_ids())
def test_first_passage(tables, index):
    case, model, bf = tables[index]
    fp = exact.time_to_size(model, 2)
    np.testing.assert_allclose(fp.pmf, bf["passage"], rtol=0, atol=TOL)


def test_first_passage_larger_target():
    case = dict(M=2, T=3, eps=0.45, delta=0.2)
    bf = brute_force(**case, K_passage=3)
    fp = exact.time_to_size(_model(case), 3)
    np.testing.assert_allclose(fp.pmf, bf["passage"], rtol=0, atol=TOL)


def test_enumerator_sanity():
    """The enumerator's own totals: probabilities sum to 1 and Z_1 is binomial."""
    bf = brute_force(M=3, T=1, eps=0.3)
    assert math.fsum(bf["pmf"]) == pytest.approx(1.0, abs=1e-15)
    want = [math.comb(2, k) * 0.3**k * 0.7 ** (2 - k) for k in range(3)]
    np.testing.assert_allclose(bf["pmf"], want, atol=1e-15)
