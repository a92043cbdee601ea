"""Scans on real (tiny and default) models: exactness against enumeration, cache, errors.

The independent route throughout is a brute-force scorer written here: one full forward pass
of the model per prefix (no key/value cache, no batching, no padding), float64 log-softmax,
explicit loop over positions.  Every continuation of a tiny model is enumerated with it, so
indicators, Fisher information and heat capacity have exact values to compare against.
"""

import dataclasses
import functools
import itertools

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  - first import adds warnings filters; not inside a test
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from branching import transitions
from branching.seeding import SeedRecord
from llm_bridge import cache, sampling, scans, thermo
from llm_bridge.models import LanguageModel, tiny_model
from llm_bridge.scan_result import ScanResult

V, N, EOS = 5, 3, 4


# ============================================================================ brute force
_LOGITS = {}   # (id of the model, prompt, prefix) -> float64 logits of the next token


def next_logits(lm, prompt, prefix):
    """z for the token after ``prompt + prefix``: one full, uncached forward pass."""
    key = (id(lm.model), tuple(int(t) for t in prompt), tuple(int(t) for t in prefix))
    if key not in _LOGITS:
        with torch.no_grad():
            ids = torch.tensor([list(key[1]) + list(key[2])])
            _LOGITS[key] = lm.model(ids).logits[0, -1].to(torch.float64)
    return _LOGITS[key]


def fill_all_prefixes(lm, prompt):
    """Precompute next_logits for every EOS-free prefix shorter than N: one batched, unpadded
    forward pass per prefix length (all rows have the same length)."""
    tokens = [v for v in range(V) if v != EOS]
    with torch.no_grad():
        for n in range(N):
            prefixes = list(itertools.product(tokens, repeat=n))
            ids = torch.tensor([list(prompt) + list(p) for p in prefixes])
            logits = lm.model(ids).logits[:, -1].to(torch.float64)
            for prefix, z in zip(prefixes, logits):
                _LOGITS[(id(lm.model), tuple(prompt), prefix)] = z


def naive_logp(lm, prompt, x, temperatures, eos="stop"):
    """log P(x | prompt; T) by the definition, stopping after a first EOS under 'stop'."""
    out = []
    for t in temperatures:
        total = 0.0
        for i, token in enumerate(x):
            z = next_logits(lm, prompt, x[:i])
            total += float(torch.log_softmax(z / t, dim=-1)[token])
            if eos == "stop" and token == lm.eos_token_id:
                break
        out.append(total)
    return np.array(out)


def all_continuations():
    """Every continuation of N tokens under eos='stop', padded with EOS, and its length."""
    seqs = []
    for n in range(1, N + 1):
        for head in itertools.product([v for v in range(V) if v != EOS], repeat=n - 1):
            last = [EOS] if n < N else range(V)
            for t in last:
                seqs.append((list(head) + [t] + [EOS] * (N - n), n))
    tokens = np.array([s for s, _ in seqs])
    lengths = np.array([n for _, n in seqs])
    return tokens, lengths


def exact_table(lm, prompts, temperatures):
    """log_probs[k, x] for grid point k (prompt prompts[k], temperature temperatures[k])."""
    tokens, lengths = all_continuations()
    for p in {tuple(p) for p in prompts}:
        fill_all_prefixes(lm, p)
    table = np.array([
        [naive_logp(lm, p, x[:n], [t])[0] for x, n in zip(tokens, lengths)]
        for p, t in zip(prompts, temperatures)
    ])
    return table, tokens, lengths


def sequence_index(tokens, lengths, ref_tokens, ref_lengths):
    """Index of each sampled continuation in the enumeration."""
    lookup = {tuple(t[:n]): i for i, (t, n) in enumerate(zip(ref_tokens, ref_lengths))}
    return np.array([lookup[tuple(t[:n])] for t, n in zip(tokens, lengths)])


@pytest.fixture(scope="module")
def lm():
    return tiny_model(V, seed=3, eos_token_id=EOS, eos_bias=-1.0, dtype="float64")


PROMPT = [0, 2]
TEMPS = scans.log_temperature_grid(0.25, 4.0, 8)


@pytest.fixture(scope="module")
def tscan(lm):
    return scans.temperature_scan(
        lm, PROMPT, TEMPS, n_samples=400, n_tokens=N, L_max=2, rng=11, progress=False,
        batch_size=512,
    )


@pytest.fixture(scope="module")
def exact_temperature(lm):
    return exact_table(lm, [PROMPT] * len(TEMPS), TEMPS)


# ============================================================================ grids
def test_log_temperature_grid_is_geometric():
    grid = scans.log_temperature_grid(0.01, 3.0, 7)
    expected = [0.01 * (3.0 / 0.01) ** (k / 6) for k in range(7)]
    np.testing.assert_allclose(grid, expected, rtol=1e-13)
    assert grid[0] == 0.01 and grid[-1] == 3.0


@pytest.mark.parametrize("args, name", [
    ((0.0, 1.0, 5), "lo"), ((-1.0, 1.0, 5), "lo"), ((1.0, 1.0, 5), "hi"),
    ((1.0, 0.5, 5), "hi"), ((0.1, 1.0, 1), "K"), ((0.1, np.inf, 4), "hi"),
])
def test_log_temperature_grid_rejects(args, name):
    with pytest.raises(ValueError, match=name):
        scans.log_temperature_grid(*args)


@pytest.mark.parametrize("grid, message", [
    ([0.0, 1.0, 2.0], r"temperatures must be > 0.*entry 0 is 0\.0"),
    ([-0.5, 1.0, 2.0], r"temperatures must be > 0"),
    ([1.0, 1.0, 2.0], r"strictly increasing"),
    ([2.0, 1.0, 3.0], r"strictly increasing"),
    ([0.5, np.nan, 2.0], r"temperatures contains NaN"),
])
def test_validate_grid_rejects(grid, message):
    with pytest.raises(ValueError, match=message):
        scans.validate_grid("temperatures", grid, L_max=1, positive=True)


def test_validate_grid_needs_two_windows():
    assert scans.validate_grid("g", [1.0, 2.0, 3.0, 4.0], L_max=2).shape == (4,)
    with pytest.raises(ValueError, match=r"g has 3 points; a window of L_max=2 needs at least 4"):
        scans.validate_grid("g", [1.0, 2.0, 3.0], L_max=2)


# ============================================================================ thermo formulas
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.floats(0.05, 5.0), forbid=st.booleans())
def test_score_and_fisher_term_match_finite_differences(seed, t, forbid):
    """d/dT log P from the closed form equals a central difference of log P; the
    conditional-variance term equals T^-4 sum_i Var_q(z_i) computed by numpy."""
    gen = np.random.default_rng(seed)
    z = torch.as_tensor(gen.normal(scale=2.0, size=(3, 4, 6)))
    if forbid:
        z[..., 5] = -torch.inf
    tokens = torch.as_tensor(gen.integers(0, 5, size=(3, 4)))
    mask = torch.as_tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    h = 1e-5 * t
    lp = thermo.sequence_log_probs(z, tokens, mask, [t - h, t + h]).numpy()
    fd = (lp[:, 1] - lp[:, 0]) / (2 * h)
    score, cond = thermo.temperature_score(z, tokens, mask, t)
    np.testing.assert_allclose(score.numpy(), fd, rtol=1e-6, atol=1e-6)
    zn = z.numpy()[..., :5] if forbid else z.numpy()
    q = np.exp(zn / t - np.logaddexp.reduce(zn / t, axis=-1, keepdims=True))
    var = (q * (zn - (q * zn).sum(-1, keepdims=True)) ** 2).sum(-1)
    np.testing.assert_allclose(cond.numpy(), (var * mask.numpy()).sum(-1) / t**4, rtol=1e-8)
    assert np.all(np.isfinite(cond.numpy()))


def test_exact_fisher_and_heat_capacity_identities(lm):
    """On the enumerated law: E[s^2] = E[T^-4 sum Var_q z] (per-position variance form) with
    s from a finite difference of exact log-probabilities, and Cov(E, s) equals a finite
    difference of the exact mean energy."""
    tokens, lengths = all_continuations()
    t, h = 0.7, 1e-4
    lp = np.array([naive_logp(lm, PROMPT, x[:n], [t - h, t, t + h, 1.0])
                   for x, n in zip(tokens, lengths)])
    p = np.exp(lp[:, 1])
    assert abs(p.sum() - 1) < 1e-12
    s_fd = (lp[:, 2] - lp[:, 0]) / (2 * h)
    energy = -lp[:, 3]
    logits = torch.as_tensor(sampling.output_logits(lm, PROMPT, tokens, lengths))
    mask = torch.arange(N)[None, :] < torch.as_tensor(lengths)[:, None]
    s, cond = thermo.temperature_score(logits, torch.as_tensor(tokens), mask, t)
    np.testing.assert_allclose(s.numpy(), s_fd, rtol=1e-6, atol=1e-7)
    assert abs(p @ s.numpy()) < 1e-10                                   # E[score] = 0
    np.testing.assert_allclose(p @ cond.numpy(), p @ s_fd**2, rtol=1e-6)
    mean_energy = [np.exp(lp[:, j]) @ energy / np.exp(lp[:, j]).sum() for j in (0, 2)]
    dU = (mean_energy[1] - mean_energy[0]) / (2 * h)
    np.testing.assert_allclose(p @ (energy * s.numpy()), dU, rtol=1e-6)


def test_thermo_estimators_on_known_data():
    gen = np.random.default_rng(0)
    s = gen.normal(size=(2, 20000))
    e = 2.0 * s + gen.normal(size=(2, 20000))
    temps = [0.5, 1.5]
    fisher = thermo.fisher_information(s, temps)
    assert np.all(np.abs(fisher.value - 1.0) < 4 * fisher.se)
    heat = thermo.heat_capacity(e, s, temps)
    assert np.all(np.abs(heat.value - 2.0) < 4 * heat.se)
    ref = transitions.fisher_information(s, temps)
    np.testing.assert_allclose(fisher.value, ref.value)
    np.testing.assert_allclose(fisher.se, ref.se)
    frame = heat.to_pandas()
    assert list(frame.columns[:3]) == ["quantity", "method", "temperature"] and len(frame) == 2
    assert "heat_capacity" in repr(heat)


@pytest.mark.parametrize("call, message", [
    (lambda: thermo.fisher_information(np.zeros((2, 1)), [1, 2]), "at least 2 samples"),
    (lambda: thermo.fisher_information(np.zeros((3, 5)), [1, 2]), "one row per temperature"),
    (lambda: thermo.fisher_information(np.full((2, 5), np.nan), [1, 2]), "score contains NaN"),
    (lambda: thermo.fisher_information(np.zeros((2, 5)), [0, 2]), "temperatures must be > 0"),
    (lambda: thermo.fisher_information(np.zeros((2, 5)), [1, 2],
                                       conditional_variance=-np.ones((2, 5))), ">= 0"),
    (lambda: thermo.heat_capacity(np.zeros((2, 5)), np.zeros((2, 4)), [1, 2]), "same shape"),
    (lambda: thermo.fisher_information(np.zeros((2, 5)), [1, 2],
                                       conditional_variance=np.ones((2, 4))), "shape of score"),
])
def test_thermo_estimators_reject(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ============================================================================ temperature scan
def test_temperature_scan_layout_matches_brute_force(lm, tscan):
    """Every banded entry is log P(x | T_{k+d}) by the brute-force route; NaN off the grid."""
    K, W = len(TEMPS), 3
    assert tscan.logp.shape == (K, 400, 2 * W + 1)
    assert tscan.tokens.shape == (K, 400, N) and tscan.L_max == 2
    for k in (0, 3, 7):
        for s in (0, 1, 2):
            n = tscan.lengths[k, s]
            ks = [k + d for d in range(-W, W + 1)]
            inside = [0 <= j < K for j in ks]
            expect = naive_logp(lm, PROMPT, tscan.tokens[k, s, :n], [TEMPS[j] for j, ok in
                                                                   zip(ks, inside) if ok])
            np.testing.assert_allclose(tscan.logp[k, s][inside], expect, rtol=1e-10, atol=1e-10)
            assert np.all(np.isnan(tscan.logp[k, s][~np.array(inside)]))
            np.testing.assert_allclose(-tscan.energy[k, s], naive_logp(
                lm, PROMPT, tscan.tokens[k, s, :n], [1.0])[0], rtol=1e-10)


def test_temperature_scan_agrees_with_reference_scorer(lm, tscan):
    for k in (1, 5):
        ref = sampling.score(lm, PROMPT, tscan.tokens[k], tscan.lengths[k],
                             temperatures=TEMPS[k - 1:k + 2])
        np.testing.assert_allclose(tscan.logp[k, :, 2:5], ref, rtol=1e-10, atol=1e-10)


def test_temperature_samples_follow_the_exact_law(tscan, exact_temperature):
    """Chi-square of the sampled continuations at each temperature against enumeration."""
    table, ref_tokens, ref_lengths = exact_temperature
    for k in (0, 4, 7):
        idx = sequence_index(tscan.tokens[k], tscan.lengths[k], ref_tokens, ref_lengths)
        expected = 400 * np.exp(table[k])
        order = np.argsort(expected)[::-1]
        big = order[expected[order] >= 5]
        counts = np.bincount(idx, minlength=len(expected))
        obs = np.append(counts[big], 400 - counts[big].sum())
        exp = np.append(expected[big], 400 - expected[big].sum())
        assert stats.chisquare(obs, exp).pvalue > 1e-3


@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("measure", ["linear", "tv", "js"])
def test_temperature_indicator_matches_exact(tscan, exact_temperature, L, measure):
    """Monte Carlo indicators of the scan agree with the enumerated ones within 4 SE."""
    table = exact_temperature[0]
    curve = tscan.indicator(L=L, measure=measure)
    exact = transitions.exact_indicator(table, TEMPS, L=L, measure=measure, log_grid=True)
    assert curve.log_grid and curve.value.shape == (len(TEMPS) - 2 * L + 1,)
    assert np.all(curve.se > 0)
    assert np.all(np.abs(curve.value - exact.value) < 4 * curve.se), (curve.value, exact.value)
    if measure == "linear":  # independent closed form: 1 - 2 sum PL PR / (PL + PR)
        for j in range(len(curve.value)):
            pl = np.exp(table[j:j + L]).mean(0)
            pr = np.exp(table[j + L:j + 2 * L]).mean(0)
            assert abs(exact.value[j] - (1 - 2 * np.sum(pl * pr / (pl + pr)))) < 1e-10


def test_temperature_fisher_and_heat_capacity_match_exact(lm, tscan, exact_temperature):
    table, tokens, lengths = exact_temperature
    logits = torch.as_tensor(sampling.output_logits(lm, PROMPT, tokens, lengths))
    mask = torch.arange(N)[None, :] < torch.as_tensor(lengths)[:, None]
    energy = -thermo.sequence_log_probs(logits, torch.as_tensor(tokens), mask, [1.0]).numpy()[:, 0]
    exact_f, exact_c = [], []
    for k, t in enumerate(TEMPS):   # exact values from finite differences of enumerated laws
        h = 1e-4 * t
        lp = thermo.sequence_log_probs(logits, torch.as_tensor(tokens), mask, [t - h, t + h]).numpy()
        p = np.exp(table[k])
        exact_f.append(p @ ((lp[:, 1] - lp[:, 0]) / (2 * h)) ** 2)
        exact_c.append((np.exp(lp[:, 1]) @ energy - np.exp(lp[:, 0]) @ energy) / (2 * h))
    for method in ("conditional_variance", "score_squared"):
        fisher = tscan.fisher_information(method)
        assert fisher.method == method
        assert np.all(np.abs(fisher.value - exact_f) < 4 * fisher.se)
    cond, sq = tscan.fisher_information(), tscan.fisher_information("score_squared")
    assert np.mean(cond.se / sq.se) < 1.0    # the conditional-variance form is less noisy
    heat = tscan.heat_capacity()
    assert np.all(np.abs(heat.value - exact_c) < 4 * heat.se)
    assert np.max(np.abs(exact_c)) > 10 * np.min(heat.se)   # the test has signal


def test_temperature_scan_is_reproducible_from_its_seed(lm):
    kw = dict(n_samples=6, n_tokens=N, progress=False)
    grid = [0.5, 1.0, 2.0]
    first = scans.temperature_scan(lm, PROMPT, grid, rng=4, **kw)
    again = scans.temperature_scan(lm, PROMPT, grid, rng=first.seed, **kw)
    assert first == again
    drawn = scans.temperature_scan(lm, PROMPT, grid, rng=np.random.default_rng(4), **kw)
    assert len(drawn.seed.entropy) == 4  # a Generator contributes four 64-bit words of entropy
    assert scans.temperature_scan(lm, PROMPT, grid, rng=drawn.seed.seed_sequence(), **kw) == drawn
    ss = np.random.SeedSequence(4)
    assert scans.temperature_scan(lm, PROMPT, grid, rng=ss, **kw) == first
    assert scans.temperature_scan(lm, PROMPT, grid, rng=5, **kw) != first
    child = np.random.SeedSequence([1, 2]).spawn(2)[1]
    spawned = scans.temperature_scan(lm, PROMPT, grid, rng=child, **kw)
    assert spawned.seed == SeedRecord((1, 2), (1,)) and "spawn_key" not in spawned.params
    again = np.random.SeedSequence([1, 2], spawn_key=(1,))
    assert scans.temperature_scan(lm, PROMPT, grid, rng=again, **kw) == spawned
    assert scans.temperature_scan(lm, PROMPT, grid, rng=spawned.seed, **kw) == spawned


def test_scan_result_saved_in_format_1_loads_with_its_seed(tscan, tmp_path):
    """Format 1 stored the entropy as ``seed`` and the spawn key among the parameters."""
    path = tscan.save(tmp_path / "scan.npz")
    arrays, meta = cache.read_npz(path)
    meta.update(format_version=1, seed=[1, 2], params={**meta["params"], "spawn_key": [3]})
    old = cache.write_npz_atomic(tmp_path / "old.npz", arrays, meta)
    assert ScanResult.load(old).seed == SeedRecord((1, 2), (3,))


# ============================================================================ prompt scan
def varying_prompt(value):
    """Prompts of lengths 1, 2 and 3 tokens, depending on the value."""
    return [value % 4] + [1] * (value % 3)


VALUES = [0, 1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def pscan(lm):
    return scans.prompt_scan(lm, varying_prompt, VALUES, n_samples=400, n_tokens=N,
                             temperature=1.3, L_max=2, rng=5, progress=False, batch_size=512)


@pytest.fixture(scope="module")
def exact_prompt(lm):
    return exact_table(lm, [varying_prompt(v) for v in VALUES], [1.3] * len(VALUES))[0]


def test_prompt_scan_scores_under_every_neighbouring_prompt(lm, pscan):
    assert {len(p) for p in pscan.prompt_ids} == {1, 2, 3}
    K, W = len(VALUES), 3
    for k in (0, 3, 6):
        assert pscan.prompt_ids[k].tolist() == varying_prompt(VALUES[k])
        for s in (0, 1):
            n = pscan.lengths[k, s]
            for d in range(-W, W + 1):
                j = k + d
                if 0 <= j < K:
                    expect = naive_logp(lm, varying_prompt(VALUES[j]), pscan.tokens[k, s, :n], [1.3])
                    assert abs(pscan.logp[k, s, W + d] - expect[0]) < 1e-10
                else:
                    assert np.isnan(pscan.logp[k, s, W + d])


@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("measure", ["linear", "tv"])
def test_prompt_indicator_matches_exact(pscan, exact_prompt, L, measure):
    table = exact_prompt
    curve = pscan.indicator(L=L, measure=measure)
    exact = transitions.exact_indicator(table, np.asarray(VALUES, float), L=L, measure=measure)
    assert not curve.log_grid
    assert np.all(np.abs(curve.value - exact.value) < 4 * curve.se), (curve.value, exact.value)
    assert np.max(exact.value) > 5 * np.max(curve.se)   # the prompts do change the law


def test_prompt_scan_with_string_template_and_word_values(lm):
    class CharLM(LanguageModel):   # a stand-in tokenizer: one token per character code mod V
        def encode(self, text, *, chat=False):
            return [ord(c) % V for c in text]

    fake = CharLM(**{f.name: getattr(lm, f.name) for f in dataclasses.fields(lm)})
    res = scans.prompt_scan(fake, "a{}", ["x", "yy", "z"], n_samples=4, n_tokens=2,
                            progress=False, rng=0)
    assert res.grid.tolist() == [0.0, 1.0, 2.0] and res.labels == ("x", "yy", "z")
    assert [p.tolist() for p in res.prompt_ids] == [[ord(c) % V for c in "a" + v]
                                                     for v in ["x", "yy", "z"]]


# ============================================================================ checkpoint scan
@functools.lru_cache(maxsize=None)
def tiny(seed):
    return tiny_model(V, seed=seed, eos_token_id=EOS, eos_bias=-1.0, dtype="float64")


def test_checkpoint_scan_loads_each_checkpoint_once_and_scores_all_pairs():
    names = [f"tiny:{s}" for s in range(5)]
    calls = []

    def loader(name):
        calls.append(name)
        return tiny(int(name.split(":")[1]))

    res = scans.checkpoint_scan(names, PROMPT, loader=loader, grid=[0, 10, 20, 30, 40],
                                n_samples=3, n_tokens=N, L_max=2, rng=2, progress=False)
    assert calls == names
    assert res.labels == tuple(names) and res.grid.tolist() == [0, 10, 20, 30, 40]
    W = 3
    for k in range(5):
        for d in range(-W, W + 1):
            j = k + d
            for s in range(3):
                if 0 <= j < 5:
                    n = res.lengths[k, s]
                    expect = naive_logp(tiny(j), PROMPT, res.tokens[k, s, :n], [1.0])[0]
                    assert abs(res.logp[k, s, W + d] - expect) < 1e-10
                else:
                    assert np.isnan(res.logp[k, s, W + d])


def test_checkpoint_scan_from_state_dicts():
    base = tiny(0)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    pairs = [(f"step{s}", tiny(s).model.state_dict()) for s in (1, 2, 3, 4)]
    inner = scans.state_dict_loader(base)
    calls = []

    def loader(item):
        calls.append(item[0])
        return inner(item)

    res = scans.checkpoint_scan(pairs, PROMPT, loader=loader, n_samples=3, n_tokens=N,
                                rng=0, progress=False)
    assert calls == ["step1", "step2", "step3", "step4"]
    for k, s in [(0, 0), (2, 1)]:
        n = res.lengths[k, s]
        for d in (-1, 0, 1):
            if 0 <= k + d < 4:
                expect = naive_logp(tiny(k + d + 1), PROMPT, res.tokens[k, s, :n], [1.0])[0]
                assert abs(res.logp[k, s, 1 + d] - expect) < 1e-10
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="loader must be given"):
        scans.checkpoint_scan(pairs, PROMPT, n_samples=3, n_tokens=N, progress=False)


def test_checkpoint_scan_rejects_mixed_vocabularies():
    models = {"a": tiny(0), "b": tiny_model(V + 1, seed=1, eos_token_id=EOS, dtype="float64")}
    with pytest.raises(ValueError, match="share one vocabulary"):
        scans.checkpoint_scan(["a", "b"], PROMPT, loader=models.__getitem__, n_samples=2,
                              n_tokens=2, progress=False)


# ============================================================================ storage and cache
def test_save_and_load_round_trip(tscan, pscan, tmp_path):
    for res in (tscan, pscan):
        path = res.save(tmp_path / f"{res.kind}.npz")
        back = ScanResult.load(path)
        assert back == res
        np.testing.assert_array_equal(back.logp, res.logp)   # NaN pattern included
        assert back.params == res.params and back.labels == res.labels
        assert [p.tolist() for p in back.prompt_ids] == [p.tolist() for p in res.prompt_ids]
    assert not list(tmp_path.glob("*.part"))


def test_scan_result_repr_and_pandas(tscan):
    text = repr(tscan)
    assert "kind='temperature'" in text and "K=8" in text and "S=400" in text
    frame = tscan.to_pandas()
    assert len(frame) == 8 * 400
    assert {"grid", "label", "logp", "energy", "dlogp_dT", "conditional_fisher"} <= set(frame)
    table = tscan.indicator_table(L=2)
    assert sorted(set(table["measure"])) == ["js", "linear", "tv"] and len(table) == 3 * 5


def test_thermo_needs_a_temperature_scan(pscan):
    with pytest.raises(ValueError, match="needs a temperature scan"):
        pscan.heat_capacity()
    with pytest.raises(ValueError, match="needs a temperature scan"):
        pscan.fisher_information()
    with pytest.raises(ValueError, match="L must be an integer in"):
        pscan.indicator(L=3)


def test_scan_result_validation(tscan):
    good = dict(kind="prompt", grid=[0.0, 1.0], logp=np.array([[[np.nan, -1.0, -2.0]],
                                                               [[-1.0, -2.0, np.nan]]]).repeat(2, 1),
                tokens=np.zeros((2, 2, 1)), lengths=np.ones((2, 2)), prompt_ids=([1], [2]),
                labels=("a", "b"), model_name="m", params={}, seed=0)
    ScanResult(**good)
    bad_cases = [
        (dict(kind="other"), "kind must be one of"),
        (dict(grid=[1.0, 0.0]), "strictly increasing"),
        (dict(logp=np.zeros((2, 2, 2))), "logp must have shape"),
        (dict(logp=np.zeros((2, 2, 3))), "NaN where the neighbour lies outside"),
        (dict(logp=np.full((2, 2, 3), np.nan)), "not NaN"),
        (dict(lengths=np.zeros((2, 2))), "lengths must have shape"),
        (dict(labels=("a",)), "one entry per grid point"),
        (dict(energy=np.zeros(3)), "energy must be a finite array"),
    ]
    for change, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            ScanResult(**{**good, **change})


class RaisingModule(torch.nn.Module):
    """Stands in for a model: same parameters, but any forward call fails the test."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        raise AssertionError("the model was called")

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)


def test_cache_hit_does_not_touch_the_model(lm, tmp_path):
    kw = dict(n_samples=5, n_tokens=2, rng=9, cache_dir=tmp_path, progress=False)
    first = scans.temperature_scan(lm, PROMPT, [0.5, 1.0, 2.0], **kw)
    files = list(tmp_path.glob("temperature-*.npz"))
    assert len(files) == 1 and first.cache_key is not None
    assert files[0].name.startswith(f"temperature-{first.cache_key[:24]}")
    stand_in = dataclasses.replace(lm, model=RaisingModule(lm.model))
    assert scans.temperature_scan(stand_in, PROMPT, [0.5, 1.0, 2.0], **kw) == first
    for change in (dict(rng=10), dict(n_samples=6), dict(n_tokens=3), dict(L_max=1, eos="none")):
        with pytest.raises(AssertionError, match="the model was called"):
            scans.temperature_scan(stand_in, PROMPT, [0.5, 1.0, 2.0], **{**kw, **change})
    for grid, prompt in (([0.5, 1.0, 2.5], PROMPT), ([0.5, 1.0, 2.0], [0, 3])):
        with pytest.raises(AssertionError, match="the model was called"):
            scans.temperature_scan(stand_in, prompt, grid, **kw)
    other = dataclasses.replace(tiny(4), model=RaisingModule(tiny(4).model))
    with pytest.raises(AssertionError, match="the model was called"):
        scans.temperature_scan(other, PROMPT, [0.5, 1.0, 2.0], **kw)


class FlakyModule(torch.nn.Module):
    """Passes calls through to a model until ``budget`` forward calls are used up, then
    fails as an interruption would."""

    def __init__(self, inner, budget):
        super().__init__()
        self.inner, self.budget, self.calls = inner, budget, 0

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        if self.calls == self.budget:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner(input_ids, logits_to_keep=logits_to_keep, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)


@pytest.mark.parametrize("kind", ["temperature", "prompt"])
def test_interrupted_scan_resumes_from_finished_pieces(lm, tmp_path, kind):
    def run(model, cache_dir):
        # batch_size 8 packs two temperatures per forward pass: pieces of two points
        kw = dict(n_samples=4, n_tokens=N, L_max=2, rng=3, progress=False, cache_dir=cache_dir,
                  batch_size=8)
        if kind == "temperature":
            return scans.temperature_scan(model, PROMPT, TEMPS[:5], **kw)
        return scans.prompt_scan(model, varying_prompt, VALUES[:5], **kw)

    counting = FlakyModule(lm.model, budget=-1)
    whole = run(dataclasses.replace(lm, model=counting), None)
    flaky = FlakyModule(lm.model, budget=counting.calls // 2)
    with pytest.raises(KeyboardInterrupt):
        run(dataclasses.replace(lm, model=flaky), tmp_path)
    assert len(list(tmp_path.glob("*.parts/*.npz"))) >= 2
    rest = FlakyModule(lm.model, budget=-1)
    resumed = run(dataclasses.replace(lm, model=rest), tmp_path)
    assert counting.calls - flaky.calls <= rest.calls < counting.calls
    np.testing.assert_array_equal(resumed.tokens, whole.tokens)
    np.testing.assert_allclose(resumed.logp, whole.logp, rtol=1e-12)
    assert not list(tmp_path.glob("*.parts"))            # pieces dropped once complete


def test_interrupted_checkpoint_scan_reloads_only_what_it_needs(tmp_path):
    names = [str(s) for s in range(5)]
    calls = []

    def loader(name, fail_at=None):
        if name == fail_at:
            raise KeyboardInterrupt
        calls.append(name)
        return tiny(int(name))

    kw = dict(n_samples=3, n_tokens=N, rng=4, progress=False)
    whole = scans.checkpoint_scan(names, PROMPT, loader=loader, **kw)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        scans.checkpoint_scan(names, PROMPT, loader=lambda n: loader(n, "3"), cache_dir=tmp_path,
                              **kw)
    assert calls == ["0", "1", "2"]
    calls.clear()
    resumed = scans.checkpoint_scan(names, PROMPT, loader=loader, cache_dir=tmp_path, **kw)
    assert calls == ["3", "2", "4"]      # 2 again: its pair with 3 was not yet scored
    np.testing.assert_array_equal(resumed.tokens, whole.tokens)
    np.testing.assert_allclose(resumed.logp, whole.logp, rtol=1e-12)


def test_prompt_and_checkpoint_cache_hits(lm, tmp_path):
    kw = dict(n_samples=3, n_tokens=2, rng=1, cache_dir=tmp_path, progress=False)
    first = scans.prompt_scan(lm, varying_prompt, [0, 1, 2], **kw)
    stand_in = dataclasses.replace(lm, model=RaisingModule(lm.model))
    assert scans.prompt_scan(stand_in, varying_prompt, [0, 1, 2], **kw) == first
    calls = []

    def loader(name):
        calls.append(name)
        return tiny(int(name))

    ck = scans.checkpoint_scan(["0", "1"], PROMPT, loader=loader, **kw)
    assert scans.checkpoint_scan(["0", "1"], PROMPT, loader=loader, **kw) == ck
    assert calls == ["0", "1"]                           # the second call loaded nothing


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch, pscan):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        pscan.save(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_cache_key_is_exact_and_stable():
    base = {"grid": np.array([0.1, 0.2]), "n": 3, "prompt": "hi"}
    assert cache.cache_key(base) == cache.cache_key(dict(reversed(list(base.items()))))
    assert cache.cache_key(base) != cache.cache_key({**base, "grid": np.array([0.1, 0.2000001])})
    assert cache.cache_key(base) != cache.cache_key({**base, "n": 4})
    with pytest.raises(TypeError, match="cannot build a cache key"):
        cache.cache_key({"x": object()})
    with pytest.raises(ValueError, match="must end in '.npz'"):
        cache.write_npz_atomic("x.txt", {}, {})


def test_load_rejects_foreign_files(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a file written by this package"):
        ScanResult.load(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="is not an existing file"):
        ScanResult.load(tmp_path / "missing.npz")


# ============================================================================ invalid input
def test_invalid_scan_input(lm):
    kw = dict(n_samples=2, n_tokens=2, progress=False)
    grid = [0.5, 1.0]
    cases = [
        (lambda: scans.temperature_scan(lm, PROMPT, [0.0, 1.0], **kw), r"temperatures must be > 0"),
        (lambda: scans.temperature_scan(lm, PROMPT, [-1.0, 1.0], **kw), r"temperatures must be > 0"),
        (lambda: scans.temperature_scan(lm, [], grid, **kw), r"prompt must contain at least one"),
        (lambda: scans.temperature_scan(lm, "", grid, **kw), r"prompt must be a non-empty"),
        (lambda: scans.temperature_scan(lm, [0, 9], grid, **kw), r"prompt token ids must lie in"),
        (lambda: scans.temperature_scan(lm, PROMPT, [0.5, 1.0, 2.0], L_max=2, **kw),
         r"temperatures has 3 points; a window of L_max=2 needs at least 4"),
        (lambda: scans.temperature_scan(lm, PROMPT, grid, n_samples=1, n_tokens=2),
         r"n_samples must be an integer in \[2, inf\)"),
        (lambda: scans.temperature_scan(lm, PROMPT, grid, n_tokens=0, n_samples=2),
         r"n_tokens must be an integer"),
        (lambda: scans.temperature_scan(lm, PROMPT, grid, eos="maybe", **kw), r"eos must be one of"),
        (lambda: scans.temperature_scan(lm, PROMPT, grid, rng=-1, **kw), r"rng must be None"),
        (lambda: scans.prompt_scan(lm, "no slot", [1, 2], **kw), r"exactly one '\{\}' slot, got 0"),
        (lambda: scans.prompt_scan(lm, "{} and {}", [1, 2], **kw), r"got 2 slots"),
        (lambda: scans.prompt_scan(lm, "{x}", [1, 2], **kw), r"an empty '\{\}' slot"),
        (lambda: scans.prompt_scan(lm, "{", [1, 2], **kw), r"not a valid format string"),
        (lambda: scans.prompt_scan(lm, varying_prompt, [2, 1], **kw), r"values must be strictly"),
        (lambda: scans.prompt_scan(lm, lambda v: [], [1, 2], **kw), r"prompt for value 1 must contain"),
        (lambda: scans.prompt_scan(lm, varying_prompt, [1, 2], temperature=0.0, **kw),
         r"temperature must lie in \(0"),
        (lambda: scans.checkpoint_scan([], PROMPT, **kw), r"checkpoints must be a non-empty"),
        (lambda: scans.checkpoint_scan(["a", "b"], PROMPT, grid=[0, 1, 2], loader=tiny, **kw),
         r"grid must have one value per checkpoint"),
        (lambda: scans.checkpoint_scan(["a", "b"], "", loader=tiny, **kw), r"prompt must be a non-empty"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_model_without_eos_needs_eos_none():
    no_eos = tiny_model(V, seed=0)
    with pytest.raises(ValueError, match="eos='stop' needs a model with an end-of-sequence"):
        scans.temperature_scan(no_eos, PROMPT, [0.5, 1.0], n_samples=2, n_tokens=2, progress=False)
    res = scans.temperature_scan(no_eos, PROMPT, [0.5, 1.0], n_samples=2, n_tokens=2,
                                 eos="none", progress=False, rng=0)
    assert np.all(res.lengths == 2)


def test_sequences_longer_than_the_context_are_refused():
    short = tiny_model(V, seed=0, eos_token_id=EOS, context_length=8)
    with pytest.raises(ValueError, match=r"n_tokens=5 with a prompt of 4 tokens needs 9 positions"):
        scans.temperature_scan(short, [0, 1, 2, 3], [0.5, 1.0], n_samples=2, n_tokens=5,
                               progress=False)
    with pytest.raises(ValueError, match=r"n_tokens \(prompt for value 6\)"):
        scans.prompt_scan(short, lambda v: [0] * v, [4, 5, 6], n_samples=2, n_tokens=3,
                          progress=False)


def test_unknown_model_path_is_refused(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="no-such-model' does not exist"):
        scans.checkpoint_scan([missing, missing], PROMPT, n_samples=2, n_tokens=2, progress=False)


def test_import_downloads_nothing():
    """Importing the scan modules loads no model and opens no connection (torch is lazy
    for the result and cache modules)."""
    import subprocess
    import sys

    code = ("import sys, socket\n"
            "def refuse(*a, **k): raise RuntimeError('network used at import')\n"
            "socket.socket.connect = refuse\n"
            "import llm_bridge.scans, llm_bridge.scan_result, llm_bridge.cache, llm_bridge.thermo\n"
            "import llm_bridge.commands.scan\n"
            "assert 'transformers' not in sys.modules, 'transformers imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ============================================================================ the real model
@pytest.mark.slow
def test_default_model_temperature_scan_end_to_end(real_lm, tmp_path):
    grid = scans.log_temperature_grid(0.3, 2.0, 4)
    res = scans.temperature_scan(real_lm, "The capital of France is", grid, n_samples=8,
                                 n_tokens=4, rng=0, progress=False, cache_dir=tmp_path)
    assert res.model_name == "SmolLM2-135M-Instruct"
    assert res.tokens.shape == (4, 8, 4) and np.all(np.isfinite(res.logp[:, :, 1]))
    for measure in ("linear", "tv", "js"):
        curve = res.indicator(measure=measure)
        assert curve.value.shape == (3,)
        assert np.all(np.isfinite(curve.value)) and np.all(np.isfinite(curve.se))
        # A zero standard error only at the maximum 1: every sample told the laws apart.
        assert np.all((curve.se > 0) | (curve.value == 1.0))
    for curve in (res.fisher_information(), res.heat_capacity()):
        assert np.all(np.isfinite(curve.value)) and np.all(np.isfinite(curve.se))
    ids = real_lm.encode("The capital of France is")
    ref = sampling.score(real_lm, ids, res.tokens[1], res.lengths[1], temperatures=grid[:3])
    np.testing.assert_allclose(res.logp[1], ref, rtol=1e-4, atol=1e-3)
    back = ScanResult.load(tmp_path / next(p.name for p in tmp_path.glob("*.npz")))
    assert back == res
    path = res.save(tmp_path / "again.npz")
    assert ScanResult.load(path) == res


# ============================================================================ checked up front
def recording_loader(calls):
    def load(item):
        calls.append(item)
        raise AssertionError("a checkpoint was loaded before the checkpoints were checked")

    return load


def test_checkpoint_problems_are_found_before_any_model_is_loaded(tmp_path):
    kw = dict(n_samples=2, n_tokens=2, progress=False)
    calls = []
    for vocab, name in ((V, "a"), (V + 1, "b")):
        tiny_model(vocab, seed=0).model.save_pretrained(tmp_path / name)
    cases = [
        ([str(tmp_path / "a"), str(tmp_path / "missing")], r"'.*missing' does not exist"),
        ([str(tmp_path / "a"), str(tmp_path / "a"), str(tmp_path / "b")],
         r"share one vocabulary: '.*b' has vocab_size 6, '.*a' has 5"),
        ([("s1", tiny(1).model.state_dict()),
          ("s2", tiny_model(V + 1, seed=2, eos_token_id=EOS).model.state_dict())],
         r"'lm_head.bias' is \(6,\) in 's2' and \(5,\) in 's1'"),
    ]
    for checkpoints, message in cases:
        with pytest.raises(ValueError, match=message):
            scans.checkpoint_scan(checkpoints, PROMPT, loader=recording_loader(calls), **kw)
    assert calls == []


# ============================================================================ packing grid points
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_packed_temperature_scan_equals_one_point_at_a_time(dtype):
    """Several temperatures share each forward pass once batch_size >= 2 * n_samples; the
    result must not depend on the packing, and grid point k must be exactly the draw that
    ``sample`` makes alone with that point's generator (the unpacked route)."""
    model = tiny_model(V, seed=3, eos_token_id=EOS, eos_bias=-1.0, dtype=dtype)
    grid, S, W = scans.log_temperature_grid(0.3, 3.0, 6), 5, 3
    kw = dict(n_samples=S, n_tokens=N, L_max=2, rng=21, progress=False)
    runs = [scans.temperature_scan(model, PROMPT, grid, batch_size=b, **kw)
            for b in (S, 2 * S + 1, 4 * S, 100)]   # 1, 2, 4 and all 6 points per pass
    gens = scans._grid_generators(np.random.SeedSequence(21), len(grid))
    for k in range(len(grid)):
        alone = sampling.sample(model, PROMPT, S, N, temperature=grid[k], rng=gens[k])
        rescored = sampling.score(model, PROMPT, alone.tokens, temperatures=[grid[k]])[:, 0]
        for run in runs:
            np.testing.assert_array_equal(run.tokens[k], alone.tokens)
            np.testing.assert_array_equal(run.lengths[k], alone.lengths)
            # the scan rescales the logits in float64, score() in the model's precision: equal
            # for a float64 model, within float32 rounding (seen 1e-7) for a float32 one
            atol = 0.0 if dtype == "float64" else 1e-5
            np.testing.assert_allclose(run.logp[k, :, W], rescored, rtol=0, atol=atol)
    for run in runs[1:]:                                       # bit-identical, any packing
        for name in ("tokens", "logp", "energy", "dlogp_dT", "conditional_fisher"):
            np.testing.assert_array_equal(getattr(run, name), getattr(runs[0], name))
