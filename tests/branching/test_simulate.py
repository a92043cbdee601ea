"""Count-level Monte Carlo (branching.simulate.simulate) against independent exact routes.

Exact references are built here from the model's parameters alone: a Markov chain on
(oracle alive, Z) whose transition laws are direct convolutions of scipy pmfs of one
candidate's offspring (no use of the count-level identity the simulator relies on), the
closed-form mean recursion, and a pgf product evaluated in plain floats.  The samplers are
checked against scipy with chi-square / Kolmogorov-Smirnov tests, and the generator against
NumPy's own SFC64.  Every Monte Carlo comparison has a fixed seed and a tolerance of four
standard errors, or a goodness-of-fit p-value above 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from branching import ListDecoderModel, exact
from branching import _kernels as kern
from branching.cli import main as cli_main
from branching.simulate import (
    MAX_CEILING,
    _encode,
    _table,
    SimulationResult,
    simulate,
    simulate_instant_generation,
    simulate_top_k,
)
from kernel_hooks import (BINOMIAL, GAMMA, INTEGER_BELOW, NORMAL, POISSON, REPLICATE_SEEDS,
                          UNIFORM, fill_raw, fill_samples, replicate_state)
from stat_checks import P_MIN, assert_close, chi_square_pvalue, two_sample_pvalue


# =========================================================================== helpers
def assert_probability(value, se, exact_value, n, what=""):
    """A Monte Carlo frequency against its exact probability: within 4 SE, or -- when
    every replicate agreed (SE 0) -- a unanimous outcome that is not implausible
    (binomial probability above 1e-3)."""
    if se > 0:
        assert_close(value, se, exact_value, what)
    else:
        chance = (1.0 - exact_value) ** n if value == 0 else exact_value**n
        assert chance > P_MIN, f"{what}: all {n} replicates gave {value}, exact {exact_value}"


def bernoulli_sum_pmf(rates):
    out = np.ones(1)
    for p in rates:
        out = np.convolve(out, [1.0 - p, p])
    return out


def unit_pmfs(M, eps, law="binomial", dispersion=None, eps_oracle=None, n_max=400):
    """(offspring pmf, immigration pmf) of one step, from scipy / Bernoulli convolutions."""
    x = np.arange(n_max + 1)
    if np.ndim(eps) == 1:
        off = bernoulli_sum_pmf(eps)
        if eps_oracle is None:  # oracle token uniformly random: average over the excluded one
            imm = np.mean([bernoulli_sum_pmf(np.delete(eps, u)) for u in range(M)], axis=0)
        else:
            imm = stats.binom.pmf(np.arange(M), M - 1, eps_oracle)
        return off, imm
    e_imm = eps if eps_oracle is None else eps_oracle
    if law == "binomial":
        return (stats.binom.pmf(np.arange(M + 1), M, eps),
                stats.binom.pmf(np.arange(M), M - 1, e_imm))
    if law == "poisson":
        return stats.poisson.pmf(x, M * eps), stats.poisson.pmf(x, (M - 1) * e_imm)
    k = dispersion
    return (stats.nbinom.pmf(x, k, k / (k + M * eps)),
            stats.nbinom.pmf(x, k, k / (k + (M - 1) * e_imm)))


def exact_chain(step_pmfs, T, delta=0.0, K=None, n_max=300):
    """Exact law of (oracle alive, Z_t) by direct convolution, for small cases.

    ``step_pmfs[t] = (offspring pmf of one candidate, immigration pmf)``.  Returns a dict
    with the final joint law ``P[a, z]``, the per-step means, the probability of losing
    the oracle by a miss / by pruning, and the expected compute.
    """
    size = (K if K is not None else n_max) + 1
    P = np.zeros((2, size))
    P[1, 0] = 1.0
    means, compute = [0.0], 0.0
    lost_miss = lost_prune = 0.0
    for t in range(T):
        off, imm = step_pmfs[t]
        z_axis = np.arange(size)
        compute += float((P * (z_axis + np.array([[0], [1]]))).sum())
        new = np.zeros_like(P)
        power = np.ones(1)
        for z in range(size):
            if z > 0:
                power = np.convolve(power, off)[: 4 * size]
            for a in (0, 1):
                w = P[a, z]
                if w == 0.0:
                    continue
                law = np.convolve(power, imm)[: 4 * size] if a else power
                outcomes = [(1, 1.0 - delta), (0, delta)] if a else [(0, 1.0)]
                for a2, pa in outcomes:
                    if pa == 0.0:
                        continue
                    if a and not a2:
                        lost_miss += w * pa
                    for x, px in enumerate(law):
                        if px == 0.0:
                            continue
                        mass = w * pa * px
                        total = x + a2
                        if K is not None and total > K:
                            if a2:
                                keep = K / total
                                new[1, K - 1] += mass * keep
                                new[0, K] += mass * (1.0 - keep)
                                lost_prune += mass * (1.0 - keep)
                            else:
                                new[0, K] += mass
                        elif x < size:
                            new[a2, x] += mass
        P = new
        means.append(float((P * np.arange(size)).sum()))
    z = np.arange(size)
    listed = z + np.array([[0], [1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(listed > 0, np.array([[0], [1]]) / np.where(listed > 0, listed, 1), 0)
    return {
        "P": P, "pmf": P.sum(axis=0), "means": np.array(means), "lost_miss": lost_miss,
        "lost_prune": lost_prune, "compute": compute, "accuracy": float((P * acc).sum()),
        "survival": float(P[1].sum()), "no_output": float(P[0, 0]),
    }


def check_against_chain(result, chain):
    T = result.model.T
    n = result.n_runs
    pmf = chain["pmf"]
    ez = float(pmf @ np.arange(pmf.size))
    assert chi_square_pvalue(np.bincount(result.paths[:, T]), pmf, n) > P_MIN
    for t in range(1, T + 1):
        assert_close(result.mean[t], result.mean_se[t], chain["means"][t], f"mean at t={t}")
    var = float(pmf @ np.arange(pmf.size) ** 2) - ez**2
    assert_close(result.variance[T], result.variance_se[T], var, "variance")
    assert_probability(result.p_no_error, result.p_no_error_se, pmf[0], n, "P(Z_T=0)")
    assert_close(result.accuracy, result.accuracy_se, chain["accuracy"], "accuracy")
    assert_close(result.compute, result.compute_se, chain["compute"], "compute")
    if result.model.delta > 0 or result.model.K is not None:
        assert_close(result.oracle_survival, result.oracle_survival_se, chain["survival"],
                     "survival")
    else:
        assert result.oracle_survival == 1.0


# =========================================================================== generator
def test_sfc64_stream_is_numpys():
    bit_gen = np.random.SFC64(2024)
    state = bit_gen.state["state"]["state"].copy()
    out = np.empty(5000, dtype=np.uint64)
    fill_raw(state, out)
    assert np.array_equal(out, bit_gen.random_raw(5000))


def test_uniform_doubles_are_numpys():
    key = np.random.SeedSequence(7).generate_state(3, np.uint64)
    state = np.empty(4, dtype=np.uint64)
    replicate_state(key, 0, state)
    bit_gen = np.random.SFC64(0)
    bit_gen.state = {"bit_generator": "SFC64", "state": {"state": state},
                     "has_uint32": 0, "uinteger": 0}
    ours = np.empty(2000)
    fill_samples(key, UNIFORM, 0.0, 0, 0.0, ours)
    assert np.array_equal(ours, np.random.Generator(bit_gen).random(2000))


def test_replicate_generators_are_distinct_and_uniform():
    key = np.random.SeedSequence(11).generate_state(3, np.uint64)
    first = np.empty(20000)
    fill_samples(key, REPLICATE_SEEDS, 0.0, 0, 0.0, first)
    assert np.unique(first).size == first.size
    assert stats.kstest(first, "uniform").pvalue > P_MIN


# =========================================================================== samplers
def _samples(law, a=0.0, n=0, b=0.0, size=100_000, seed=3):
    key = np.random.SeedSequence(seed).generate_state(3, np.uint64)
    out = np.empty(size)
    fill_samples(key, law, a, n, b, out)
    return out


def _discrete_pvalue(samples, pmf_fn, lo, hi):
    values = np.arange(lo, hi + 1)
    probs = pmf_fn(values)
    counts = np.array([(samples == v).sum() for v in values])
    below = (samples < lo).sum()
    # put the mass below lo (numerically zero by construction of lo) into the first cell
    counts[0] += below
    return chi_square_pvalue(counts, probs, samples.size)


@pytest.mark.parametrize("n, p", [
    (10, 0.3), (100, 0.05), (60, 0.5), (1000, 0.7), (50257, 1e-5),
    (2_010_280, 1e-5), (10**6, 0.3), (2**60, 1e-15), (2**62, 1e-14), (20, 0.999),
])
def test_binomial_sampler(n, p):
    x = _samples(BINOMIAL, n=n, b=p)
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    lo, hi = int(max(0, mean - 7 * sd - 5)), int(min(n, mean + 7 * sd + 5))
    assert _discrete_pvalue(x, lambda v: stats.binom.pmf(v, n, p), lo, hi) > P_MIN


@pytest.mark.parametrize("lam", [0.5, 3.0, 9.99, 10.0, 47.5, 5000.0])
def test_poisson_sampler(lam):
    x = _samples(POISSON, a=lam)
    lo, hi = int(max(0, lam - 7 * math.sqrt(lam) - 5)), int(lam + 7 * math.sqrt(lam) + 5)
    assert _discrete_pvalue(x, lambda v: stats.poisson.pmf(v, lam), lo, hi) > P_MIN


def test_poisson_sampler_huge_mean():
    lam = 3.0e14
    x = _samples(POISSON, a=lam, size=50_000)
    # Normal to within O(lam**-1/2) = 6e-8: a KS test cannot tell at this sample size.
    assert stats.kstest((x - lam) / math.sqrt(lam), "norm").pvalue > P_MIN


@pytest.mark.parametrize("shape", [0.3, 1.0, 4.5, 1e6])
def test_gamma_sampler(shape):
    assert stats.kstest(_samples(GAMMA, a=shape), stats.gamma(shape).cdf).pvalue > P_MIN


def test_normal_sampler():
    assert stats.kstest(_samples(NORMAL), "norm").pvalue > P_MIN


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_integer_below(n):
    x = _samples(INTEGER_BELOW, n=n, size=30_000).astype(np.int64)
    assert x.min() >= 0 and x.max() < n
    if n > 1:
        assert chi_square_pvalue(np.bincount(x, minlength=n), np.full(n, 1.0 / n), x.size) > P_MIN


def test_cdf_table_rows_are_binomial_cdfs():
    M, p = 50257, 0.9 / 50257
    cdf, start, guess = kern.binomial_cdf_table(M, M - 1, p, 256.0, 2048, 2**18)
    assert start.size == guess.size + 1 > 200
    for u in (0, 1, 5, 77, guess.size - 1):
        row = cdf[start[u]:start[u + 1]]
        n = u * M + M - 1
        np.testing.assert_allclose(row, stats.binom.cdf(np.arange(row.size), n, p),
                                   rtol=1e-10, atol=1e-14)
        assert 1.0 - row[-1] < 1e-13


def _outputs(n, T):
    return kern.Outputs(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n),
                        np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
                        np.empty((n, T + 1), np.int64))


@pytest.mark.parametrize("ceiling", [10**9, 500])
def test_plain_kernel_draws_what_the_general_kernel_draws(ceiling):
    # The hot-path kernel is the general one specialised: same replicate streams, same draws.
    model = ListDecoderModel.from_r0(M=1000, r0=1.2, T=60)
    laws = _encode(model, fuse=True)
    table = _table(laws)
    assert laws.fused and table.guess.size > 0
    rules = kern.Rules(model.T, 0.0, 0, ceiling)
    key = np.random.SeedSequence(19).generate_state(3, np.uint64)
    plain, general = _outputs(400, model.T), _outputs(400, model.T)
    kern.plain_chunk(key, 7, laws, table, rules, plain)
    kern.count_chunk(key, 7, laws, table, rules, general)
    for name, a, b in zip(kern.Outputs._fields, plain, general):
        assert np.array_equal(a, b), name
    assert plain.paths[:, -1].max() > table.guess.size  # beyond the table rows
    assert (plain.capped_at >= 0).any() == (ceiling == 500)


# =========================================================================== process vs exact
CHAIN_CASES = {
    "binomial": dict(M=3, eps=0.25, T=5),
    "binomial_eps_oracle": dict(M=3, eps=0.25, T=5, eps_oracle=0.1),
    "binomial_miss": dict(M=3, eps=0.3, T=5, delta=0.15),
    "poisson": dict(M=3, eps=0.28, T=5, law="poisson"),
    "negative_binomial": dict(M=3, eps=0.25, T=5, law="negative_binomial", dispersion=0.7),
    "per_token": dict(M=4, eps=np.array([0.05, 0.1, 0.3, 0.3]), T=5),
    "per_token_eps_oracle": dict(M=4, eps=np.array([0.05, 0.1, 0.3, 0.3]), T=5, eps_oracle=0.2),
    "per_step": dict(M=3, eps=0.2, T=5, eps_steps=np.array([0.1, 0.4, 0.2, 0.35, 0.05])),
}


def _chain_for(kw):
    M, T = kw["M"], kw["T"]
    steps = kw.get("eps_steps")
    pmfs = [
        unit_pmfs(M, kw["eps"] if steps is None else steps[t], kw.get("law", "binomial"),
                  kw.get("dispersion"), kw.get("eps_oracle"))
        for t in range(T)
    ]
    return exact_chain(pmfs, T, delta=kw.get("delta", 0.0))


@pytest.mark.parametrize("case", sorted(CHAIN_CASES))
def test_count_process_matches_exact_chain(case):
    kw = CHAIN_CASES[case]
    model = ListDecoderModel(**kw)
    result = simulate(model, 20_000, rng=17, keep_paths=True)
    check_against_chain(result, _chain_for(kw))
    if kw.get("delta", 0) > 0:
        chain = _chain_for(kw)
        assert_close(result.p_no_output, result.p_no_output_se, chain["no_output"], "empty list")
        lost = result.lost_by_miss.sum()
        se = math.sqrt(lost * (1 - lost) / result.n_runs)
        assert_close(lost, se, chain["lost_miss"], "lost by miss")


def test_plain_model_matches_branching_exact():
    model = ListDecoderModel(M=4, eps=0.2, T=6)
    result = simulate(model, 20_000, rng=5, keep_paths=True)
    np.testing.assert_allclose(exact.mean_path(model), _chain_for(dict(M=4, eps=0.2, T=6))["means"],
                               rtol=1e-10)
    for t in range(1, 7):
        assert_close(result.mean[t], result.mean_se[t], exact.mean_path(model)[t], f"mean t={t}")
        assert_close(result.variance[t], result.variance_se[t], exact.variance_path(model)[t],
                     f"variance t={t}")
    assert_close(result.p_no_error, result.p_no_error_se, exact.prob_no_error(model), "P0")
    assert_close(result.accuracy, result.accuracy_se, exact.accuracy(model), "accuracy")
    law = exact.pmf(model)
    assert chi_square_pvalue(np.bincount(result.paths[:, 6]), law.values, result.n_runs) > P_MIN


def _pgf_product(M, eps, T, s):
    """G_T(s) = prod_k h(f_k(s)) for the homogeneous binomial model, in plain floats."""
    total, u = 1.0, s
    for _ in range(T):
        total *= (1.0 - eps + eps * u) ** (M - 1)
        u = (1.0 - eps + eps * u) ** M
    return total


@pytest.mark.parametrize("r0", [0.5, 1.0, 1.5])
def test_large_vocabulary_against_closed_forms(r0):
    M, T = 50257, 30
    eps = r0 / M
    model = ListDecoderModel(M=M, eps=eps, T=T)
    result = simulate(model, 20_000, rng=23)
    lam, m = (M - 1) * eps, M * eps
    closed = [lam * t if m == 1 else lam * (1 - m**t) / (1 - m) for t in range(T + 1)]
    for t in (1, 5, 10, 20, 30):
        assert_close(result.mean[t], result.mean_se[t], closed[t], f"mean t={t}")
    assert_probability(result.p_no_error, result.p_no_error_se, _pgf_product(M, eps, T, 0.0),
                       result.n_runs, "P0")
    accuracy = integrate.quad(lambda s: _pgf_product(M, eps, T, s), 0.0, 1.0,
                              epsabs=1e-13, limit=200)[0]
    assert_close(result.accuracy, result.accuracy_se, accuracy, "accuracy")
    assert_close(result.accuracy, result.accuracy_se, exact.accuracy(model), "exact.accuracy")
    compute = sum(1 + c for c in closed[:T])
    assert_close(result.compute, result.compute_se, compute, "compute")
    assert result.capped_fraction == 0


def test_misses_at_large_vocabulary():
    M, T, delta = 50257, 30, 0.04
    model = ListDecoderModel.from_r0(M=M, r0=0.9, T=T, delta=delta)
    result = simulate(model, 20_000, rng=29)
    assert_close(result.oracle_survival, result.oracle_survival_se, (1 - delta) ** T, "survival")
    mean = [0.0]
    for t in range(T):
        mean.append(0.9 * mean[-1] + (M - 1) / M * 0.9 * (1 - delta) ** t)
    for t in (1, 10, 30):
        assert_close(result.mean[t], result.mean_se[t], mean[t], f"mean t={t}")
    per_step = delta * (1 - delta) ** np.arange(T)
    n = result.n_runs
    for t in (1, 15, 30):
        p = per_step[t - 1]
        assert_close(result.lost_by_miss[t], math.sqrt(p * (1 - p) / n), p, f"miss at t={t}")
    assert result.lost_by_pruning.sum() == 0


# =========================================================================== list cap
@pytest.mark.parametrize("delta", [0.0, 0.1])
def test_list_cap_matches_markov_chain(delta):
    M, eps, T, K = 3, 0.35, 6, 4
    model = ListDecoderModel(M=M, eps=eps, T=T, K=K, delta=delta)
    result = simulate(model, 30_000, rng=31, keep_paths=True)
    chain = exact_chain([unit_pmfs(M, eps)] * T, T, delta=delta, K=K)
    check_against_chain(result, chain)
    n = result.n_runs
    for name, value in (("lost_prune", result.lost_by_pruning.sum()),
                        ("lost_miss", result.lost_by_miss.sum())):
        if chain[name] > 0:
            assert_close(value, math.sqrt(value * (1 - value) / n), chain[name], name)
    lost_at = result.oracle_lost_at[:, None]
    alive = (lost_at < 0) | (np.arange(T + 1) < lost_at)
    assert np.all(result.paths + alive <= K)


def test_list_cap_above_threshold():
    model = ListDecoderModel.from_r0(M=50257, r0=2.0, T=40, K=100)
    result = simulate(model, 4000, rng=37, keep_paths=True)
    alive = (result.oracle_lost_at < 0)[:, None] | (np.arange(41) < result.oracle_lost_at[:, None])
    assert np.all(result.paths + alive <= 100)
    assert result.lost_by_pruning.sum() > 0.5
    assert result.oracle_survival + result.lost_by_pruning.sum() == pytest.approx(1.0)
    assert result.capped_fraction == 0


def test_list_cap_refuses_inexact_pruning():
    model = ListDecoderModel.from_r0(M=50257, r0=0.5, T=5, K=2**40)
    with pytest.raises(ValueError, match="K must be"):
        simulate(model, 10, rng=0)


# =========================================================================== ceiling
def test_ceiling_caps_supercritical_runs():
    model = ListDecoderModel.from_r0(M=50257, r0=1.5, T=100)
    result = simulate(model, 2000, rng=41, ceiling=10**6, keep_paths=True)
    assert result.capped_fraction > 0.99
    assert result.paths.max() <= 10**6 and result.paths.min() >= 0
    assert np.all(np.diff(result.capped_by_step) >= 0)
    assert result.capped_by_step[-1] == result.capped_fraction
    capped_from = int(np.argmax(result.capped_by_step > 0))
    assert np.all(result.paths[:, capped_from:].max(axis=1) <= 10**6)
    assert "bounds" in repr(result)
    assert result.summary()["capped_fraction"][0] == result.capped_fraction


@pytest.mark.parametrize("kw", [
    dict(M=50257, eps=3.0 / 50257, T=60, law="negative_binomial", dispersion=0.05),
    dict(M=50257, eps=60.0 / 50257, T=20, law="poisson"),
    dict(M=50257, eps=0.9, T=10),
    dict(M=10**6, eps=0.5, T=8, eps_oracle=0.01),
])
def test_ceiling_never_overflows(kw):
    model = ListDecoderModel(**kw)
    result = simulate(model, 300, rng=43, ceiling=MAX_CEILING, keep_paths=True)
    assert result.paths.min() >= 0 and result.paths.max() <= MAX_CEILING
    assert result.capped_fraction > 0.5
    assert np.all(np.isfinite(result.mean)) and np.all(np.isfinite(result.variance))


def test_default_ceiling_at_large_vocabulary():
    model = ListDecoderModel.from_r0(M=50257, r0=1.5, T=100)
    result = simulate(model, 500, rng=47, keep_paths=True)
    assert result.ceiling == 10**15
    assert 0 < result.capped_fraction and result.paths.max() == 10**15


# =========================================================================== cohorts
def test_cohorts_against_exact():
    M, eps, T = 4, 0.2, 6
    model = ListDecoderModel(M=M, eps=eps, T=T)
    result = simulate(model, 30_000, rng=53, cohorts=True, keep_paths=True)
    m, lam = M * eps, (M - 1) * eps
    for j in range(T):
        for t in range(T + 1):
            expected = lam * m ** (t - j - 1) if t > j else 0.0
            if t > j:
                assert_close(result.cohort_mean[j, t], result.cohort_mean_se[j, t], expected,
                             f"cohort {j} at {t}")
            else:
                assert result.cohort_mean[j, t] == 0.0
    np.testing.assert_allclose(result.cohort_mean.sum(axis=0), result.mean, rtol=1e-12, atol=1e-12)
    depth = exact.divergence_depth_law(model)
    for d in range(T + 1):
        assert_close(result.depth_law[d], result.depth_law_se[d], depth[d], f"depth {d}")
    assert result.depth_law[T] == pytest.approx(result.accuracy, rel=1e-12)
    assert result.depth_law.sum() + result.p_no_output == pytest.approx(1.0, rel=1e-12)
    plain = simulate(model, 30_000, rng=54, keep_paths=True)
    assert two_sample_pvalue(result.paths[:, T], plain.paths[:, T]) > P_MIN


def test_cohorts_with_misses_and_cap():
    model = ListDecoderModel(M=3, eps=0.35, T=6, K=4, delta=0.1)
    result = simulate(model, 30_000, rng=59, cohorts=True, keep_paths=True)
    chain = exact_chain([unit_pmfs(3, 0.35)] * 6, 6, delta=0.1, K=4)
    check_against_chain(result, chain)
    np.testing.assert_allclose(result.cohort_mean.sum(axis=0), result.mean, rtol=1e-12, atol=1e-12)
    assert result.depth_law.sum() + result.p_no_output == pytest.approx(1.0, rel=1e-12)


# =========================================================================== reproducibility
def _same(a: SimulationResult, b: SimulationResult):
    for name in ("mean", "mean_se", "variance", "variance_se", "capped_by_step", "lost_by_miss",
                 "cohort_mean", "depth_law", "paths"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y), name
    for q in a.quantiles:
        assert np.array_equal(a.quantiles[q], b.quantiles[q])
    assert a.summary() == b.summary()


def test_threads_do_not_change_the_result():
    model = ListDecoderModel.from_r0(M=1000, r0=1.1, T=40, delta=0.01)
    one = simulate(model, 5000, rng=61, threads=1, chunk_size=256, cohorts=True, keep_paths=True)
    two = simulate(model, 5000, rng=61, threads=2, chunk_size=256, cohorts=True, keep_paths=True)
    _same(one, two)


def test_seed_reproducibility():
    model = ListDecoderModel.from_r0(M=500, r0=0.9, T=20)
    a = simulate(model, 3000, rng=67, keep_paths=True)
    _same(a, simulate(model, 3000, rng=67, keep_paths=True))
    _same(a, simulate(model, 3000, rng=a.seed_sequence(), keep_paths=True))
    assert not np.array_equal(a.paths, simulate(model, 3000, rng=68, keep_paths=True).paths)
    gen = np.random.default_rng(5)
    first, second = simulate(model, 100, rng=gen), simulate(model, 100, rng=gen)
    assert first.seed != second.seed
    _same(first, simulate(model, 100, rng=first.seed_sequence()))
    fresh = simulate(model, 100)
    _same(fresh, simulate(model, 100, rng=fresh.seed_sequence()))


def test_chunk_size_changes_only_rounding():
    model = ListDecoderModel.from_r0(M=500, r0=1.05, T=30)
    a = simulate(model, 3000, rng=71, chunk_size=1024, keep_paths=True)
    b = simulate(model, 3000, rng=71, chunk_size=77, keep_paths=True)
    assert np.array_equal(a.paths, b.paths)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    np.testing.assert_allclose(a.variance, b.variance, rtol=1e-9, atol=1e-12)
    for q in a.quantiles:
        assert np.array_equal(a.quantiles[q], b.quantiles[q])


# =========================================================================== results
def test_quantiles():
    model = ListDecoderModel.from_r0(M=200, r0=1.2, T=40)
    result = simulate(model, 4000, rng=73, keep_paths=True)
    for q, values in result.quantiles.items():
        true = np.quantile(result.paths, q, axis=0, method="inverted_cdf")
        small = true < kern.EXACT_BINS
        assert np.array_equal(values[small], true[small])
        big = ~small
        assert np.any(big)
        assert np.all(values[big] <= true[big]) and np.all(true[big] < values[big] * (1 + 1 / 32))


def test_result_interfaces():
    model = ListDecoderModel(M=5, eps=0.1, T=4)
    result = simulate(model, 500, rng=79, cohorts=True)
    assert set(result.summary()) == {"mean_Z_T", "p_no_error", "accuracy", "oracle_survival",
                                     "compute", "p_no_output", "capped_fraction"}
    frame = result.to_pandas()
    assert list(frame.columns) == ["statistic", "step", "depth", "value", "se"]
    mean_rows = frame[frame.statistic == "mean"]
    np.testing.assert_array_equal(mean_rows.value.to_numpy(), result.mean)
    assert set(frame.statistic) >= {"mean", "variance", "quantile_0.5", "accuracy",
                                    "cohort_mean", "depth_law"}
    assert not frame.duplicated(["statistic", "step", "depth"]).any()
    text = repr(result)
    assert text.startswith("SimulationResult(") and "accuracy=" in text and "M=5" in text
    with pytest.raises(AttributeError):
        result.accuracy = 1.0
    with pytest.raises(ValueError):
        result.mean[0] = 1.0
    assert result.paths is None and result.ceiling == 10**15 and result.chunk_size == 1024


def test_zero_horizon():
    result = simulate(ListDecoderModel(M=5, eps=0.1, T=0), 10, rng=0, cohorts=True)
    assert result.mean.tolist() == [0.0] and result.accuracy == 1.0 and result.compute == 0.0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    M=st.integers(2, 6),
    eps=st.floats(0.0, 0.6),
    T=st.integers(1, 6),
    delta=st.sampled_from([0.0, 0.2]),
    K=st.sampled_from([None, 1, 3]),
    law=st.sampled_from(["binomial", "poisson"]),
    cohorts=st.booleans(),
    seed=st.integers(0, 2**32),
)
# Capped runs with cohort tracking: the cohorts must still add up to the (capped) count.
@example(M=6, eps=0.5, T=6, delta=0.0, K=None, law="binomial", cohorts=True, seed=0)
def test_invariants(M, eps, T, delta, K, law, cohorts, seed):
    model = ListDecoderModel(M=M, eps=eps, T=T, delta=delta, K=K, law=law)
    r = simulate(model, 50, rng=seed, ceiling=1000, cohorts=cohorts, keep_paths=True, chunk_size=16)
    assert r.paths.min() >= 0 and r.paths.max() <= (1000 if K is None else K)
    assert np.all(r.paths[:, 0] == 0)
    alive_end = r.oracle_lost_at < 0
    assert r.oracle_survival == pytest.approx(alive_end.mean())
    if K is not None:
        assert np.all(r.paths[:, -1] + alive_end <= K)
    if delta == 0 and K is None:
        assert alive_end.all()
    assert 0 <= r.accuracy <= r.oracle_survival <= 1
    if cohorts:
        np.testing.assert_allclose(r.cohort_mean.sum(axis=0), r.mean, rtol=1e-12, atol=1e-12)
        assert r.depth_law.sum() + r.p_no_output == pytest.approx(1.0)


# =========================================================================== contrasts
def test_instant_generation_against_exact():
    M, eps, T = 40, 0.03, 12
    result = simulate_instant_generation(M, eps, T, 40_000, rng=83)
    step = (1 - (1 - eps) ** M) / (M * eps)
    assert_close(result.accuracy, result.accuracy_se, step**T, "accuracy")
    # States: correct prefix, wrong prefix still running, stopped.
    q = (1 - eps) ** M
    P = np.array([1.0, 0.0, 0.0])
    calls = 0.0
    for _ in range(T):
        calls += P[0] + P[1]
        P = np.array([P[0] * step, P[0] * (1 - step) + P[1] * (1 - q), P[2] + P[1] * q])
    assert_close(result.p_failed, result.p_failed_se, P[2], "failed")
    assert_close(result.compute, result.compute_se, calls, "compute")
    assert result.list_size == 1 and result.oracle_survival == result.accuracy
    assert exact.instant_generation_accuracy(M, eps, T) == pytest.approx(step**T, rel=1e-12)


def test_top_k_against_exact():
    M, eps, T, k = 60, 0.05, 8, 2
    result = simulate_top_k(M, eps, T, k, 40_000, rng=89)
    b = np.arange(M)
    kept = float(stats.binom.pmf(b, M - 1, eps) @ np.minimum(1.0, k / (1.0 + b)))
    assert_close(result.oracle_survival, result.oracle_survival_se, kept**T, "kept")
    assert exact.top_k_oracle_kept(M, eps, k, T) == pytest.approx(kept**T, rel=1e-10)
    assert result.accuracy == pytest.approx(result.oracle_survival / k**T, rel=1e-12)
    assert result.list_size == k**T and result.compute == (k**T - 1) // (k - 1)
    assert result.p_failed == 0.0
    huge = simulate_top_k(50257, 1e-5, 200, 50, 100, rng=0)
    assert huge.accuracy == 0.0 and math.isfinite(huge.log_accuracy)
    assert huge.list_size == 50**200


# =========================================================================== invalid input
MODEL = ListDecoderModel(M=10, eps=0.05, T=3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_runs=1), "n_runs"),
    (dict(n_runs=0), "n_runs"),
    (dict(n_runs=2.5), "n_runs"),
    (dict(n_runs=True), "n_runs"),
    (dict(ceiling=0), "ceiling"),
    (dict(ceiling=2**51), "ceiling"),
    (dict(ceiling=1.5), "ceiling"),
    (dict(ceiling=-3), "ceiling"),
    (dict(rng="abc"), "rng"),
    (dict(rng=1.5), "rng"),
    (dict(rng=-1), "rng"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=2**21), "chunk_size"),
    (dict(threads=0), "threads"),
    (dict(cohorts="yes"), "cohorts"),
    (dict(keep_paths=1), "keep_paths"),
    (dict(quantile_levels=[0.5, 1.5]), "quantile_levels"),
    (dict(quantile_levels=[0.0]), "quantile_levels"),
    (dict(model="model"), "model"),
    (dict(n_runs=10**8, keep_paths=True), "n_runs"),
])
def test_invalid_input(kwargs, match):
    args = {"model": MODEL, "n_runs": 100, **kwargs}
    model, n_runs = args.pop("model"), args.pop("n_runs")
    with pytest.raises(ValueError, match=match):
        simulate(model, n_runs, **args)


def test_invalid_model_values():
    with pytest.raises(ValueError, match="eps"):
        simulate(ListDecoderModel(M=10, eps=1.5, T=3), 10)
    with pytest.raises(ValueError, match="delta"):
        simulate(ListDecoderModel(M=10, eps=0.1, T=3, delta=1.0), 10)


@pytest.mark.parametrize("call, match", [
    (lambda: simulate_instant_generation(1, 0.1, 3, 10), "M"),
    (lambda: simulate_instant_generation(5, -0.1, 3, 10), "eps"),
    (lambda: simulate_instant_generation(5, 0.1, 3, 1), "n_runs"),
    (lambda: simulate_top_k(5, 0.1, 3, 6, 10), "k"),
    (lambda: simulate_top_k(5, 0.1, 3, 0, 10), "k"),
    (lambda: simulate_top_k(5, 0.1, -1, 2, 10), "T"),
    (lambda: simulate_top_k(5, 0.1, 3, 2, 10, rng="x"), "rng"),
])
def test_contrasts_invalid_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# =========================================================================== command line
def test_cli_simulate(tmp_path, capsys):
    out, plot = tmp_path / "table.csv", tmp_path / "mean.png"
    code = cli_main(["simulate", "--M", "100", "--r0", "0.8", "--T", "10", "--runs", "500",
                     "--seed", "3", "--out", str(out), "--threads", "1", "--plot", str(plot)])
    assert code == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "seed entropy 3" in text and "table written" in text
    assert plot.stat().st_size > 10_000
    lines = out.read_text().splitlines()
    assert lines[0] == "statistic,step,depth,value,se" and len(lines) > 11
    expected = simulate(ListDecoderModel.from_r0(M=100, r0=0.8, T=10), 500, rng=3)
    assert f"{expected.accuracy:.6g}" in text


def test_cli_simulate_bad_input(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["simulate", "--M", "100", "--eps", "0.5", "--T", "10", "--runs", "1"])
    assert info.value.code == 2
    assert "n_runs" in capsys.readouterr().err
