"""The list decoder on real and synthetic models: exactness, unbiasedness, coverage, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_bridge.eligibility import Nucleus, Threshold, TopK, parse_rule, rule_from_dict
from llm_bridge.listdecode import list_decode
from llm_bridge.listdecode_result import ListDecodeResult
from llm_bridge.models import tiny_model
from llm_bridge.offspring_stats import negative_binomial_dispersion
from llm_bridge.r0_scan import r0_scan
from llm_bridge.theory_lm import theory_model


@pytest.fixture(scope="module")
def lm64():
    return tiny_model(6, seed=3, dtype="float64")


@pytest.fixture(scope="module")
def lm8():
    return tiny_model(8, seed=0)


def _prefixes(result, prompt_index=0):
    """``{continuation: (children, eligible_mass)}`` of the expanded nodes of one prompt."""
    nodes = result.records.nodes
    out, prefix = {}, {}
    for i in range(len(nodes["depth"])):
        if nodes["prompt"][i] != prompt_index:
            continue
        parent = nodes["parent"][i]
        prefix[i] = () if parent < 0 else prefix[parent] + (int(nodes["token"][i]),)
        if nodes["children"][i] >= 0:
            out[prefix[i]] = (int(nodes["children"][i]), float(nodes["eligible_mass"][i]))
    return out


def _brute_force(lm, prompt, rule, n_steps, temperature):
    """Every prefix expanded with its own full, uncached forward pass."""
    out, frontier = {}, [()]
    with torch.no_grad():
        for _ in range(n_steps):
            children = []
            for cont in frontier:
                ids = torch.tensor([list(prompt) + list(cont)])
                z = lm.model(ids, use_cache=False).logits[0, -1].to(torch.float64)
                logq = torch.log_softmax(z / temperature, dim=-1)
                mask = rule.eligible(logq[None])[0]
                out[cont] = (int(mask.sum()), float(logq.exp()[mask].sum()))
                children += [cont + (int(v),) for v in torch.nonzero(mask)[:, 0]]
            frontier = children
    return out


# ----------------------------------------------------------------------- exactness
@pytest.mark.parametrize("rule, temperature", [(Threshold(0.12), 1.0), (Nucleus(0.6), 0.7),
                                               (TopK(2), 1.3)])
def test_batched_cached_expansion_equals_uncached_per_candidate(lm64, rule, temperature):
    prompt = [1, 4, 2]
    res = list_decode(lm64, [prompt], rule=rule, n_steps=4, temperature=temperature,
                      cap=None, batch_size=3, n_boot=20, rng=0)
    got = _prefixes(res)
    want = _brute_force(lm64, prompt, rule, 4, temperature)
    assert got.keys() == want.keys()
    assert len(got) > 10  # the tree branches, so gathering the cache rows is exercised
    for key in want:
        assert got[key][0] == want[key][0]
        assert got[key][1] == pytest.approx(want[key][1], abs=1e-10)


def test_top_k_lists_grow_like_k_to_the_t_with_no_miss(lm8):
    res = list_decode(lm8, [[1, 2], [5]], rule=TopK(2), n_steps=4, cap=None, n_boot=20, rng=0)
    np.testing.assert_array_equal(res.list_size, [[1, 2, 4, 8, 16]] * 2)
    np.testing.assert_array_equal(res.n_erroneous, [[0, 1, 3, 7, 15]] * 2)
    assert res.estimates.delta == 0.0 and res.estimates.r0 == 2.0


def test_greedy_oracle_is_the_argmax_path(lm64):
    res = list_decode(lm64, [[2, 3]], rule=Nucleus(0.9), n_steps=3, cap=None, n_boot=20, rng=0)
    ids = [2, 3]
    with torch.no_grad():
        for _ in range(3):
            ids.append(int(torch.argmax(lm64.model(torch.tensor([ids])).logits[0, -1])))
    np.testing.assert_array_equal(res.oracle_ids[0], ids[2:])
    assert res.oracle_in_list.all()  # the argmax is always in a nucleus


# ----------------------------------------------------------------------- cap
def test_cap_keeps_counts_and_offspring_totals_unbiased(lm8):
    prompts = [[1, 2], [3]]
    rule, n_steps = Threshold(0.1), 5
    full = list_decode(lm8, prompts, rule=rule, n_steps=n_steps, cap=None, n_boot=20, rng=0)
    assert full.list_size.max() > 8  # the cap below binds

    def offspring_total(res):
        nodes = res.records.nodes
        err = (~nodes["oracle"]) & (nodes["children"] >= 0)
        return np.bincount(nodes["depth"][err], nodes["weight"][err] * nodes["children"][err],
                           minlength=n_steps)

    runs = [list_decode(lm8, prompts, rule=rule, n_steps=n_steps, cap=4, n_boot=20, rng=s)
            for s in range(80)]
    assert all(r.list_size.max() <= 4 for r in runs) and any(r.records.capped.any() for r in runs)
    Z = np.array([r.n_erroneous for r in runs])
    mean, se = Z.mean(axis=0), Z.std(axis=0, ddof=1) / math.sqrt(len(runs))
    assert np.all(np.abs(mean - full.n_erroneous) <= 4 * se + 1e-9)
    totals = np.array([offspring_total(r) for r in runs])
    mean, se = totals.mean(axis=0), totals.std(axis=0, ddof=1) / math.sqrt(len(runs))
    assert np.all(np.abs(mean - offspring_total(full)) <= 4 * se + 1e-9)


# ----------------------------------------------------------------------- synthetic theory
def _theory_run(M, eps, *, delta=0.0, eps_oracle=None, seed, n_prompts=16, n_steps=7,
                bootstrap="nodes"):
    lm = theory_model(M, eps, delta=delta, eps_oracle=eps_oracle, seed=seed)
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, M, 4).tolist() for _ in range(n_prompts)]
    oracles = [lm.model.oracle(p, n_steps) for p in prompts]
    return list_decode(lm, prompts, rule=Threshold(0.02), oracle=oracles, cap=None,
                       bootstrap=bootstrap, n_boot=200, rng=seed)


def test_synthetic_model_estimates_cover_the_truth():
    M, eps, eps_oracle, delta = 100, 0.009, 0.006, 0.05
    truth = {"r0": M * eps, "immigration": (M - 1) * eps_oracle, "delta": delta,
             "index_of_dispersion": 1.0 - eps}
    n_runs = 30
    covered = {name: 0 for name in truth}
    k_open = 0
    for seed in range(n_runs):
        est = _theory_run(M, eps, delta=delta, eps_oracle=eps_oracle, seed=seed).estimates
        for name, value in truth.items():
            low, high = getattr(est, f"{name}_ci")
            covered[name] += low <= value <= high
        k_open += est.dispersion.k_ci[1] == math.inf  # binomial offspring: k = inf
    # 95% intervals: coverage >= 0.95 - 3 standard errors of a proportion over n_runs
    floor = 0.95 - 3 * math.sqrt(0.95 * 0.05 / n_runs)
    for name in truth:
        assert covered[name] / n_runs >= floor, (name, covered[name])
    assert k_open / n_runs >= floor


def test_synthetic_prediction_matches_the_decoder():
    res = _theory_run(100, 0.008, delta=0.05, seed=7, n_prompts=60, n_steps=6)
    prediction = res.predict()
    gof = prediction.goodness_of_fit()
    assert gof["mean"][1] == 6 and gof["p0"][1] == 6
    assert gof["mean"][2] > 1e-3 and gof["p0"][2] > 1e-3
    assert prediction.model.M == 100 and prediction.model.r0 == pytest.approx(res.r0)


def test_r0_scan_recovers_the_true_crossing_of_the_synthetic_model():
    grid = np.linspace(0.5, 1.5, 6)
    models = [theory_model(100, x / 100, seed=11) for x in grid]
    rng = np.random.default_rng(11)
    prompts = [rng.integers(0, 100, 4).tolist() for _ in range(12)]
    oracles = [models[0].model.oracle(p, 7) for p in prompts]  # the same for every eps
    scan = r0_scan(models, prompts, control="checkpoint", grid=grid, rule=Threshold(0.02),
                   oracle=oracles, cap=None, bootstrap="nodes", n_boot=200, rng=3,
                   progress=False)
    assert scan.defined.all() and scan.r0_ci.shape == (2, 6)
    z = (scan.r0 - grid) / scan.r0_se
    assert np.all(np.abs(z) < 4)
    (crossing,) = [c for c in scan.crossings() if c.direction == "up"]
    assert crossing.ci[0] <= 1.0 <= crossing.ci[1]
    assert crossing.found_fraction > 0.9
    table = scan.to_pandas()
    assert list(table["x"]) == list(grid) and "r0_ci_low" in table


# ----------------------------------------------------------------------- dispersion
def test_negative_binomial_profile_interval_covers_k():
    k, mu, n_runs = 2.0, 1.2, 100
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(n_runs):
        x = rng.negative_binomial(k, k / (k + mu), size=300)
        fit = negative_binomial_dispersion(x)
        covered += fit.k_ci[0] <= k <= fit.k_ci[1]
    assert covered / n_runs >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / n_runs)


def test_negative_binomial_fit_of_poisson_counts_is_open_to_infinity():
    x = np.random.default_rng(1).poisson(1.5, size=500)
    fit = negative_binomial_dispersion(x)
    assert fit.k_ci[1] == math.inf and fit.defined
    assert not negative_binomial_dispersion(np.zeros(5)).defined


# ----------------------------------------------------------------------- results
def test_a_list_that_dies_is_a_result(lm8):
    res = list_decode(lm8, [[1, 2]], rule=Threshold(0.999), n_steps=4, n_boot=20, rng=0)
    assert res.list_size[0, 0] == 1 and np.all(res.list_size[0, 1:] == 0)
    assert not res.estimates.r0_defined and math.isnan(res.r0)
    assert res.estimates.delta == 1.0
    with pytest.raises(ValueError, match="R0 is undefined"):
        res.predict()


def test_save_load_round_trip(tmp_path, lm8):
    res = list_decode(lm8, [[1, 2], [3, 4, 5]], rule=Nucleus(0.8), n_steps=3, cap=5,
                      n_boot=50, rng=9)
    path = res.save(tmp_path / "run.npz")
    back = ListDecodeResult.load(path)
    assert back.rule == res.rule and back.prompt_ids == res.prompt_ids
    for name, values in res.records.nodes.items():
        np.testing.assert_array_equal(back.records.nodes[name], values)
    np.testing.assert_array_equal(back.n_erroneous, res.n_erroneous)
    assert back.estimates.r0_ci == res.estimates.r0_ci
    assert back.to_pandas().equals(res.to_pandas())
    assert "r0=" in repr(back)


def test_same_seed_same_result(lm8):
    a = list_decode(lm8, [[1, 2]], rule=Threshold(0.1), n_steps=5, cap=3, n_boot=30, rng=4)
    b = list_decode(lm8, [[1, 2]], rule=Threshold(0.1), n_steps=5, cap=3, n_boot=30, rng=4)
    np.testing.assert_array_equal(a.n_erroneous, b.n_erroneous)
    assert a.estimates.r0_ci == b.estimates.r0_ci


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, match", [
    (lambda: Threshold(0.0), "theta"),
    (lambda: Threshold(1.5), "theta"),
    (lambda: Nucleus(0.0), "top_p"),
    (lambda: Nucleus(1.01), "top_p"),
    (lambda: TopK(0), "k"),
    (lambda: parse_rule("beam=3"), "rule"),
    (lambda: rule_from_dict({"name": "nucleus", "theta": 0.5}), "nucleus.*'top_p'"),
    (lambda: rule_from_dict({"name": "beam", "k": 3}), "rule name"),
])
def test_bad_rules(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kwargs, match", [
    ({"prompts": []}, "prompts"),
    ({"oracle": "the answer"}, "oracle.*not tokenizable"),
    ({"oracle": [1] * 70}, "oracle.*context"),
    ({"oracle": [1, 99]}, r"oracle\[0\]"),
    ({"oracle": "greedy", "n_steps": None}, "n_steps"),
    ({"n_steps": 0}, "n_steps"),
    ({"temperature": 0.0}, "temperature"),
    ({"cap": 1}, "cap"),
    ({"rule": "threshold"}, "rule"),
    ({"rule": TopK(9)}, "k"),
    ({"bootstrap": "blocks"}, "bootstrap"),
    ({"rng": -1}, "rng"),
])
def test_bad_input_names_the_parameter(lm8, kwargs, match):
    call = {"prompts": [[1, 2]], "rule": Threshold(0.1), "oracle": "greedy", "n_steps": 3}
    call.update(kwargs)
    if "oracle" in kwargs and kwargs["oracle"] != "greedy" and "n_steps" not in kwargs:
        call["n_steps"] = None
    with pytest.raises(ValueError, match=match):
        list_decode(lm8, call.pop("prompts"), **call)


def test_r0_scan_bad_input(lm8):
    with pytest.raises(ValueError, match="control"):
        r0_scan(lm8, [[1]], control="size", grid=[1.0], rule=Threshold(0.1), n_steps=2)
    with pytest.raises(ValueError, match="grid"):
        r0_scan(lm8, [[1]], grid=[1.0, 0.5], rule=Threshold(0.1), n_steps=2)
    with pytest.raises(ValueError, match="theta"):
        r0_scan(lm8, [[1]], control="rule", grid=[0.5, 2.0], rule=Threshold(0.1), n_steps=2)
    with pytest.raises(ValueError, match="template"):
        r0_scan(lm8, ["no slot"], control="prompt", grid=[1, 2], rule=Threshold(0.1),
                n_steps=2)


def test_r0_scan_resumes_from_cache(tmp_path, lm8):
    kwargs = dict(control="rule", grid=[0.1, 0.2, 0.3], rule=Threshold(0.1), n_steps=3,
                  n_boot=30, rng=2, cache_dir=tmp_path, progress=False)
    first = r0_scan(lm8, [[1, 2]], **kwargs)
    assert len(list(tmp_path.glob("list_decode-*.npz"))) == 3
    second = r0_scan(lm8, [[1, 2]], **kwargs)
    np.testing.assert_array_equal(first.r0, second.r0)
    np.testing.assert_array_equal(first.r0_ci, second.r0_ci)


def test_points_decoded_together_equal_separate_decodes(monkeypatch):
    """A temperature scan decodes its points in lockstep (shared prompt forward, merged
    batches); every point must equal its own list_decode with the point's seed.  Groups of
    3 make the 7-point grid run as 3 groups, the last one partial."""
    from branching.seeding import seed_sequence
    from llm_bridge import r0_scan as r0_module

    monkeypatch.setattr(r0_module, "_JOINT_POINTS", 3)
    lm = tiny_model(16, seed=2)  # float32: batched products may round differently
    grid = np.geomspace(0.3, 3.0, 7)
    prompts = [[1, 2, 3], [4], [15, 6]]
    kwargs = dict(rule=Threshold(0.03), n_steps=5, cap=12, batch_size=16, n_boot=20)
    scan = r0_scan(lm, prompts, grid=grid, rng=11, progress=False, **kwargs)
    root = seed_sequence(11)
    seeds = np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key).spawn(len(grid))
    for temperature, seed, point in zip(grid, seeds, scan.points):
        alone = list_decode(lm, prompts, temperature=temperature, rng=seed, **kwargs)
        assert point.temperature == temperature
        np.testing.assert_array_equal(point.list_size, alone.list_size)
        for name, column in alone.records.nodes.items():
            np.testing.assert_allclose(point.records.nodes[name], column, rtol=1e-5,
                                       err_msg=name)
        assert point.estimates.r0 == pytest.approx(alone.estimates.r0, rel=1e-9, nan_ok=True)
    assert (scan.points[0].list_size[:, 1:] < scan.points[-1].list_size[:, 1:]).any()


# ----------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def default_lm():
    from llm_bridge.models import load_model

    return load_model(device="cpu")


@pytest.mark.slow
def test_short_list_decode_on_the_default_model(default_lm):
    res = list_decode(default_lm, ["The capital of France is"], rule=Threshold(0.05),
                      n_steps=3, cap=32, n_boot=50, rng=0)
    assert res.vocab_size == default_lm.vocab_size
    assert res.oracle_in_list[0].all()  # greedy tokens have p >= 0.05 here
    assert res.list_size[0, 0] == 1 and res.list_size.max() <= 32
    assert res.estimates.n_oracle_nodes == 3
    nodes = res.records.nodes
    expanded = nodes["children"] >= 0
    assert np.all(nodes["children"][expanded] <= 20)  # at most 1/theta tokens have p >= theta


# ----------------------------------------------------------------------- rules
_logits = st.lists(st.floats(-8, 8, allow_nan=False), min_size=2, max_size=12)


@settings(max_examples=60, deadline=None)
@given(_logits, st.floats(0.01, 1.0))
def test_nucleus_is_the_smallest_top_set_reaching_top_p(z, top_p):
    logp = torch.log_softmax(torch.tensor([z], dtype=torch.float64), dim=-1)
    mask = Nucleus(top_p).eligible(logp)[0]
    p = logp.exp()[0]
    inside, outside = p[mask], p[~mask]
    assert mask[torch.argmax(p)]
    assert float(inside.sum()) >= min(top_p, 1.0) - 1e-12 or not bool((~mask).any())
    if outside.numel():
        assert float(inside.min()) >= float(outside.max())
    assert float(inside.sum() - inside.min()) < top_p + 1e-12  # minimal


@settings(max_examples=60, deadline=None)
@given(_logits, st.floats(0.001, 1.0), st.integers(1, 12))
def test_threshold_and_top_k_masks(z, theta, k):
    logp = torch.log_softmax(torch.tensor([z], dtype=torch.float64), dim=-1)
    p = logp.exp()[0]
    np.testing.assert_array_equal(Threshold(theta).eligible(logp)[0].numpy(),
                                  (p >= theta).numpy())
    if k <= len(z):
        mask = TopK(k).eligible(logp)[0]
        assert int(mask.sum()) == k
        if k < len(z):
            assert float(p[mask].min()) >= float(p[~mask].max())


def test_top_k_breaks_ties_by_the_lower_token_id():
    logp = torch.log(torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25]]))
    assert TopK(2).eligible(logp).tolist() == [[False, True, True, False],
                                               [True, True, False, False]]
    inside = torch.log(torch.tensor([[0.3, 0.3, 0.2, 0.2]]))  # ties within the top 2 only
    assert TopK(2).eligible(inside).tolist() == [[True, True, False, False]]
    assert TopK(4).eligible(logp).all()
