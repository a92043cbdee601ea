"""The explicit token-level list decoder against the exact laws and the count-level process.

The token-level decoder works on real token strings with one eligibility draw per
(candidate, token); it knows nothing of offspring laws.  Agreement of its laws with
``branching.exact`` (itself checked against brute-force enumeration) and with the
count-level simulator is what validates the count-level reduction.  Fixed seeds; four
standard errors, or goodness-of-fit p-values above 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from branching import ListDecoderModel, exact
from branching.simulate import simulate, simulate_token_decoder
from stat_checks import N_SE, P_MIN, assert_close, assert_same, law_pvalue, two_sample_pvalue


def test_token_decoder_matches_exact_laws():
    M, eps, T = 4, 0.15, 4
    model = ListDecoderModel(M=M, eps=eps, T=T)
    result = simulate_token_decoder(M, eps, T, 3000, rng=101)
    assert result.level == "token" and result.model == model
    assert law_pvalue(result.paths[:, T], exact.pmf(model).values) > P_MIN
    mean = exact.mean_path(model)
    for t in range(1, T + 1):
        assert_close(result.mean[t], result.mean_se[t], mean[t], f"mean t={t}")
    assert_close(result.variance[T], result.variance_se[T], exact.variance_path(model)[T], "var")
    assert_close(result.accuracy, result.accuracy_se, exact.accuracy(model), "accuracy")
    assert_close(result.compute, result.compute_se, exact.compute_cost(model), "compute")
    depth = exact.divergence_depth_law(model)
    for d in range(T + 1):
        assert_close(result.depth_law[d], result.depth_law_se[d], depth[d], f"depth {d}")
    m, lam = M * eps, (M - 1) * eps
    for j in range(T):
        for t in range(j + 1, T + 1):
            assert_close(result.cohort_mean[j, t], result.cohort_mean_se[j, t],
                         lam * m ** (t - j - 1), f"cohort {j} at {t}")
    assert result.oracle_survival == 1.0 and result.p_no_output == 0.0


@pytest.mark.parametrize("kw", [
    dict(eps=np.array([0.02, 0.1, 0.25, 0.3])),
    dict(eps=np.array([0.02, 0.1, 0.25, 0.3]), eps_oracle=0.05),
    dict(eps=0.2, eps_oracle=0.05, delta=0.2),
])
def test_token_decoder_variants_match_exact_pmf(kw):
    M, T = 4, 4
    model = ListDecoderModel(M=M, T=T, **kw)
    result = simulate_token_decoder(M, T=T, n_runs=3000, rng=103, **kw)
    assert law_pvalue(result.paths[:, T], exact.pmf(model).values) > P_MIN
    assert_close(result.accuracy, result.accuracy_se, exact.accuracy(model), "accuracy")
    delta = kw.get("delta", 0.0)
    if delta:
        assert_close(result.oracle_survival, result.oracle_survival_se, (1 - delta) ** T, "kept")
        n = result.n_runs
        for t in range(1, T + 1):
            p = delta * (1 - delta) ** (t - 1)
            assert_close(result.lost_by_miss[t], math.sqrt(p * (1 - p) / n), p, f"miss t={t}")
        depth = exact.divergence_depth_law(model)
        for d in range(T + 1):
            assert_close(result.depth_law[d], result.depth_law_se[d], depth[d], f"depth {d}")


@pytest.mark.parametrize("kw", [
    dict(M=4, eps=0.15, T=4),
    dict(M=3, eps=0.35, T=5, K=3, delta=0.1),
    dict(M=5, eps=0.3, T=4, K=2),
])
def test_token_decoder_equals_count_process(kw):
    model = ListDecoderModel(**kw)
    token = simulate_token_decoder(kw["M"], kw["eps"], kw["T"], 3000, rng=107,
                                   K=kw.get("K"), delta=kw.get("delta", 0.0))
    count = simulate(model, 20_000, rng=109, cohorts=True, keep_paths=True)
    T = model.T
    assert two_sample_pvalue(token.paths[:, T], count.paths[:, T]) > P_MIN
    for name in ("accuracy", "oracle_survival", "p_no_error", "compute"):
        a, b = getattr(token, name), getattr(count, name)
        se_a, se_b = getattr(token, name + "_se"), getattr(count, name + "_se")
        if se_a + se_b > 0:
            assert_same(a, se_a, b, se_b, name)
        else:
            assert a == b
    for d in range(T + 1):
        assert_same(token.depth_law[d], token.depth_law_se[d], count.depth_law[d],
                    count.depth_law_se[d], f"depth {d}")
    n_t, n_c = token.n_runs, count.n_runs
    for loss in ("lost_by_pruning", "lost_by_miss"):
        a, b = getattr(token, loss).sum(), getattr(count, loss).sum()
        se = math.sqrt(a * (1 - a) / n_t + b * (1 - b) / n_c)
        if se > 0:
            assert abs(a - b) < N_SE * se, loss
        else:
            assert a == b == 0
    if "K" in kw:
        assert token.lost_by_pruning.sum() > 0


def test_kept_lists_are_real_token_sequences():
    M, eps, T, K = 5, 0.3, 4, 6
    result = simulate_token_decoder(M, eps, T, 200, rng=113, K=K, keep_lists=True)
    assert len(result.lists) == 200
    for r, record in enumerate(result.lists):
        oracle, final, output = record["oracle"], record["final_list"], record["output"]
        assert oracle.shape == (T,) and final.shape[1] == T and final.shape[0] <= K
        assert len({tuple(row) for row in final}) == final.shape[0]
        assert final.min(initial=0) >= 0 and final.max(initial=0) < M
        is_oracle = np.all(final == oracle, axis=1)
        assert result.paths[r, T] == np.count_nonzero(~is_oracle)
        assert (result.oracle_lost_at[r] < 0) == bool(is_oracle.any())
        if final.shape[0]:
            assert any(np.array_equal(output, row) for row in final)
        else:
            assert output is None


def test_token_decoder_reproducible():
    a = simulate_token_decoder(4, 0.2, 3, 300, rng=127)
    b = simulate_token_decoder(4, 0.2, 3, 300, rng=a.seed_sequence())
    assert np.array_equal(a.paths, b.paths) and a.summary() == b.summary()
    c = simulate_token_decoder(4, 0.2, 3, 300, rng=128)
    assert not np.array_equal(a.paths, c.paths)


@pytest.mark.parametrize("kwargs, match", [
    (dict(M=20_000), "M"),
    (dict(T=500), "T"),
    (dict(n_runs=1), "n_runs"),
    (dict(eps=1.5), "eps"),
    (dict(delta=-0.1), "delta"),
    (dict(K=0), "K"),
    (dict(keep_lists="no"), "keep_lists"),
    (dict(max_list=0), "max_list"),
    (dict(rng="seed"), "rng"),
    (dict(M=50, eps=0.5, T=6, max_list=1000), "max_list"),
])
def test_token_decoder_invalid_input(kwargs, match):
    args = {"M": 4, "eps": 0.1, "T": 3, "n_runs": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate_token_decoder(args.pop("M"), args.pop("eps"), args.pop("T"), args.pop("n_runs"),
                               **args)
