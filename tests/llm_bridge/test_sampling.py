"""Exact sampling and scoring: enumeration, chi-square, cache vs full pass, EOS policies.

The independent route for every exact quantity is a brute-force reference written here
with plain ``model(ids).logits`` calls: one full, uncached forward pass per prefix, no code
shared with :mod:`llm_bridge.sampling`.
"""

from __future__ import annotations

import itertools
import socket

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from llm_bridge.models import tiny_model
from llm_bridge.sampling import (
    EOS_POLICIES,
    Samples,
    iter_output_logits,
    output_logits,
    sample,
    score,
)

V, EOS, N = 5, 4, 3
PROMPT = (0, 2, 1)
TEMPERATURES = (0.3, 1.0, 2.0)


@pytest.fixture(scope="module")
def lm64():
    return tiny_model(V, seed=3, eos_token_id=EOS, dtype="float64", device="cpu")


@pytest.fixture(scope="module")
def lm32():
    return tiny_model(V, seed=3, eos_token_id=EOS, dtype="float32", device="cpu")


# ---------------------------------------------------------------------------------------
# brute-force reference


def continuations(eos: str) -> list[tuple[int, ...]]:
    """Every distinct continuation under the policy ("stop": EOS-padded after the first EOS)."""
    if eos == "forbid":
        return list(itertools.product([t for t in range(V) if t != EOS], repeat=N))
    every = list(itertools.product(range(V), repeat=N))
    if eos == "none":
        return every
    canonical = []
    for x in every:
        if EOS in x:
            j = x.index(EOS)
            if any(t != EOS for t in x[j:]):
                continue
        canonical.append(x)
    return canonical


_PREFIX_LOGITS: dict = {}


def last_logits(lm, ids: tuple[int, ...]) -> torch.Tensor:
    """Logits after ``ids`` from one full, uncached forward pass (memoised per model)."""
    key = (lm, ids)
    if key not in _PREFIX_LOGITS:
        with torch.no_grad():
            _PREFIX_LOGITS[key] = lm.model(torch.tensor([ids])).logits[0, -1].to(torch.float64)
    return _PREFIX_LOGITS[key]


def reference_logp(lm, prompt, xs, eos, temperature) -> np.ndarray:
    """log P(x | prompt, T) from full uncached forward passes over each prefix, in float64."""
    out = []
    for x in xs:
        total = 0.0
        for i, token in enumerate(x):
            z = last_logits(lm, tuple(prompt) + tuple(int(t) for t in x[:i]))
            if eos == "forbid":
                z = z.clone()
                z[EOS] = -torch.inf
            total += float(torch.log_softmax(z / temperature, dim=0)[token])
            if eos == "stop" and token == EOS:
                break
        out.append(total)
    return np.array(out)


@pytest.fixture(scope="module")
def exact_laws(lm64):
    """{(eos, T): (continuations, reference log-probabilities)} for the float64 tiny model."""
    laws = {}
    for eos in EOS_POLICIES:
        xs = continuations(eos)
        for temperature in TEMPERATURES:
            laws[eos, temperature] = xs, reference_logp(lm64, PROMPT, xs, eos, temperature)
    return laws


def lengths_of(xs, eos):
    return np.array([x.index(EOS) + 1 if eos == "stop" and EOS in x else N for x in xs])


# ---------------------------------------------------------------------------------------
# exact law


@pytest.mark.parametrize("eos", EOS_POLICIES)
def test_scored_law_is_the_reference_and_sums_to_one(lm64, exact_laws, eos):
    xs = continuations(eos)
    logp = score(lm64, PROMPT, np.array(xs), temperatures=TEMPERATURES, eos=eos)
    assert logp.shape == (len(xs), len(TEMPERATURES))
    for k, temperature in enumerate(TEMPERATURES):
        _, reference = exact_laws[eos, temperature]
        np.testing.assert_allclose(logp[:, k], reference, rtol=0, atol=1e-10)
        assert abs(np.exp(logp[:, k]).sum() - 1.0) < 1e-12
    # lengths passed explicitly give the same result
    again = score(lm64, PROMPT, np.array(xs), lengths_of(xs, eos), temperatures=TEMPERATURES,
                  eos=eos)
    np.testing.assert_array_equal(again, logp)


def test_policies_differ_as_they_should(lm64, exact_laws):
    # "forbid" renormalises: each EOS-free continuation gains probability relative to "none".
    xs_forbid, forbid = exact_laws["forbid", 1.0]
    xs_none, none = exact_laws["none", 1.0]
    lookup = dict(zip(xs_none, none))
    assert all(f > lookup[x] for x, f in zip(xs_forbid, forbid))
    # "stop" and "none" agree on continuations without EOS.
    xs_stop, stop = exact_laws["stop", 1.0]
    for x, value in zip(xs_stop, stop):
        if EOS not in x:
            assert value == pytest.approx(lookup[x], abs=1e-12)


def chi_square_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson chi-square goodness of fit, cells with small expectation pooled into one."""
    n = counts.sum()
    expected = n * probs
    small = expected < min_expected
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    return stats.chisquare(observed[keep], expected[keep]).pvalue


@pytest.mark.parametrize("eos", EOS_POLICIES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_sampled_frequencies_match_exact_law(lm64, exact_laws, eos, temperature):
    xs, reference = exact_laws[eos, temperature]
    n_samples = 4000
    out = sample(lm64, PROMPT, n_samples, N, temperature=temperature, eos=eos,
                 batch_size=4000, rng=20240 + int(10 * temperature))
    index = {x: i for i, x in enumerate(xs)}
    cells = np.array([index[tuple(row)] for row in out.tokens])  # KeyError = impossible sample
    counts = np.bincount(cells, minlength=len(xs))
    assert chi_square_pvalue(counts, np.exp(reference)) > 1e-3
    # the same samples reject a neighbouring temperature's law: the test has power
    other = 1.0 if temperature != 1.0 else 2.0
    _, wrong = exact_laws[eos, other]
    assert chi_square_pvalue(counts, np.exp(wrong)) < 1e-6


@pytest.mark.parametrize("eos", EOS_POLICIES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_sampling_and_scoring_logp_agree(lm64, lm32, exact_laws, eos, temperature):
    for lm, tolerance in [(lm64, 1e-10), (lm32, 1e-5)]:
        out = sample(lm, PROMPT, 200, N, temperature=temperature, eos=eos, batch_size=100, rng=7)
        scored = score(lm, PROMPT, out.tokens, out.lengths, temperatures=[temperature], eos=eos)
        np.testing.assert_allclose(scored[:, 0], out.logp, rtol=0, atol=tolerance)
    # and the float64 sampling-time logp is the brute-force reference value
    xs, reference = exact_laws[eos, temperature]
    lookup = dict(zip(xs, reference))
    out = sample(lm64, PROMPT, 50, N, temperature=temperature, eos=eos, rng=8)
    expected = np.array([lookup[tuple(row)] for row in out.tokens])
    np.testing.assert_allclose(out.logp, expected, rtol=0, atol=1e-10)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    temperature=st.floats(0.05, 5.0),
    eos=st.sampled_from(EOS_POLICIES),
    n_tokens=st.integers(1, 6),
    batch_size=st.integers(1, 9),
)
def test_property_logp_agrees_for_any_draw(lm64, seed, temperature, eos, n_tokens, batch_size):
    out = sample(lm64, PROMPT, 9, n_tokens, temperature=temperature, eos=eos,
                 batch_size=batch_size, rng=seed)
    scored = score(lm64, PROMPT, out.tokens, temperatures=[temperature], eos=eos, batch_size=4)
    np.testing.assert_allclose(scored[:, 0], out.logp, rtol=0, atol=1e-9)
    assert np.all(np.isfinite(out.logp)) and np.all(out.logp <= 0)


# ---------------------------------------------------------------------------------------
# cache, padding and batching


def test_cached_output_logits_equal_full_forward(lm32, lm64):
    for lm, tolerance in [(lm64, 1e-12), (lm32, 1e-5)]:
        out = sample(lm, PROMPT, 6, 7, eos="none", rng=1)
        logits = output_logits(lm, PROMPT, out.tokens, eos="none")
        assert logits.shape == (6, 7, V)
        assert logits.dtype == (np.float64 if lm is lm64 else np.float32)
        full = torch.cat([torch.tensor([PROMPT] * 6), torch.as_tensor(out.tokens)], dim=1)
        with torch.no_grad():
            expected = lm.model(full).logits[:, len(PROMPT) - 1:-1].numpy()
        np.testing.assert_allclose(logits, expected, rtol=0, atol=tolerance)


def test_padded_scoring_of_different_prompts_equals_unpadded(lm32):
    out = sample(lm32, PROMPT, 5, 4, eos="stop", rng=2)
    prompts = [(3,), (0, 1, 2, 3, 0, 1, 2), (2, 2), PROMPT, (1, 0, 3, 3)]
    padded = score(lm32, prompts, out.tokens, out.lengths, temperatures=[0.5, 1.5], eos="stop")
    alone = np.vstack([
        score(lm32, p, out.tokens[s:s + 1], temperatures=[0.5, 1.5], eos="stop")
        for s, p in enumerate(prompts)
    ])
    np.testing.assert_allclose(padded, alone, rtol=0, atol=1e-5)
    # and both equal the brute-force reference for the stopped continuations
    reference = [reference_logp(lm32, p, [tuple(out.tokens[s, :out.lengths[s]])], "stop", 0.5)[0]
                 for s, p in enumerate(prompts)]
    np.testing.assert_allclose(padded[:, 0], reference, rtol=0, atol=1e-5)
    # a 2-D array of equal-length prompts with repeats mixes the cached and padded routes
    grid = np.array([PROMPT, PROMPT, (1, 1, 1), PROMPT, (2, 0, 1)])
    mixed = score(lm32, grid, out.tokens, out.lengths, eos="stop", batch_size=2)
    alone = [score(lm32, g, out.tokens[s:s + 1], eos="stop")[0, 0] for s, g in enumerate(grid)]
    np.testing.assert_allclose(mixed[:, 0], alone, rtol=0, atol=1e-5)


def test_iter_output_logits_covers_every_sample_once(lm64):
    out = sample(lm64, PROMPT, 11, 4, eos="forbid", rng=3)
    seen = []
    full = output_logits(lm64, PROMPT, out.tokens, eos="forbid", batch_size=4)
    for index, logits in iter_output_logits(lm64, PROMPT, out.tokens, eos="forbid", batch_size=4):
        assert logits.shape == (len(index), 4, V)
        np.testing.assert_array_equal(logits.numpy(), full[index])
        seen.extend(index.tolist())
    assert sorted(seen) == list(range(11))
    assert np.all(np.isneginf(full[..., EOS]))


@pytest.mark.parametrize("vocab", [5, 300, 49152])
def test_inverse_cdf_draw_matches_a_full_float64_search(vocab):
    from llm_bridge.sampling import _inverse_cdf

    generator = torch.Generator().manual_seed(vocab)
    for dtype in (torch.float32, torch.float64):
        z = 3 * torch.randn(64, vocab, generator=generator, dtype=dtype)
        z[:, 1] = -torch.inf  # a forbidden token
        z[:8, -3:] = -torch.inf  # a zero-probability tail
        logq = torch.log_softmax(z, dim=-1)
        u = 1 - torch.rand(64, generator=generator, dtype=torch.float64)
        u[:8] = 1.0  # the very top of the cdf: the last token with positive probability
        u[8] = 1e-300  # the very bottom: the first token with positive probability
        cdf = torch.cumsum(torch.exp(logq.double()), dim=-1)
        expected = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1)
        drawn = _inverse_cdf(logq, u)
        torch.testing.assert_close(drawn, expected, rtol=0, atol=0)
        last_positive = max(i for i in range(vocab - 3) if i != 1)
        assert torch.all(drawn[:8] == last_positive) and drawn[8] == 0
        assert not torch.any(drawn == 1)


def test_result_does_not_depend_on_batch_size(lm64):
    a = sample(lm64, PROMPT, 50, 5, temperature=1.3, batch_size=50, rng=11)
    b = sample(lm64, PROMPT, 50, 5, temperature=1.3, batch_size=7, rng=11)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_allclose(a.logp, b.logp, rtol=0, atol=1e-12)


def test_randomness_conventions(lm64):
    a = sample(lm64, PROMPT, 20, 4, rng=5)
    b = sample(lm64, PROMPT, 20, 4, rng=np.random.SeedSequence(5))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    c = sample(lm64, PROMPT, 20, 4, rng=a.seed)  # the recorded seed reproduces the draw
    np.testing.assert_array_equal(a.tokens, c.tokens)
    generator = np.random.default_rng(0)
    d = sample(lm64, PROMPT, 20, 4, rng=generator)
    e = sample(lm64, PROMPT, 20, 4, rng=generator)  # the generator advances
    assert not np.array_equal(d.tokens, e.tokens)
    torch_state = torch.random.get_rng_state()
    sample(lm64, PROMPT, 5, 3, rng=None)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


# ---------------------------------------------------------------------------------------
# EOS handling


def test_batch_finishing_early_is_handled():
    lm = tiny_model(V, seed=4, eos_token_id=EOS, eos_bias=2.5, dtype="float64", device="cpu")
    out = sample(lm, PROMPT, 40, 8, eos="stop", batch_size=16, rng=0)
    assert out.tokens.shape == (40, 8) and out.lengths.shape == (40,)
    assert out.lengths.max() < 8  # every sequence stopped; the loop ended early
    for row, length in zip(out.tokens, out.lengths):
        assert row[length - 1] == EOS and EOS not in row[:length - 1]
        assert np.all(row[length:] == EOS)
    scored = score(lm, PROMPT, out.tokens, out.lengths, temperatures=[1.0], eos="stop")
    np.testing.assert_allclose(scored[:, 0], out.logp, rtol=0, atol=1e-10)
    reference = [reference_logp(lm, PROMPT, [tuple(r)], "stop", 1.0)[0] for r in out.tokens[:5]]
    np.testing.assert_allclose(out.logp[:5], reference, rtol=0, atol=1e-10)
    # EOS all but certain: every continuation is the single token EOS
    sure = tiny_model(V, seed=4, eos_token_id=EOS, eos_bias=60.0, dtype="float64", device="cpu")
    out = sample(sure, PROMPT, 10, 6, eos="stop", rng=0)
    assert out.tokens.shape == (10, 6)
    np.testing.assert_array_equal(out.lengths, 1)
    np.testing.assert_array_equal(out.tokens, EOS)
    assert np.all(out.logp > -1e-12)
    # forbidding EOS leaves a proper law over the other tokens
    out = sample(sure, PROMPT, 10, 6, eos="forbid", rng=0)
    assert EOS not in out.tokens and np.all(out.lengths == 6) and np.all(np.isfinite(out.logp))


def test_forbid_scores_eos_as_impossible(lm64):
    tokens = np.array([[0, EOS, 1], [0, 1, 2]])
    logp = score(lm64, PROMPT, tokens, eos="forbid")
    assert np.isneginf(logp[0, 0]) and np.isfinite(logp[1, 0])


def test_stop_scoring_ignores_padding_content(lm64):
    tokens = np.array([[1, EOS, EOS], [1, EOS, -7], [1, EOS, 3]])
    logp = score(lm64, PROMPT, tokens, eos="stop")
    assert logp[0, 0] == logp[1, 0] == logp[2, 0]


# ---------------------------------------------------------------------------------------
# results and validation


def test_samples_result_carries_its_parameters(lm64):
    out = sample(lm64, PROMPT, 4, 3, temperature=0.5, eos="none", rng=9)
    assert isinstance(out, Samples)
    assert out.prompt_ids == PROMPT and out.temperature == 0.5 and out.eos == "none"
    assert out.tokens.dtype == np.int64 and out.n_samples == 4 and out.n_tokens == 3
    text = repr(out)
    assert "temperature=0.5" in text and "eos='none'" in text and len(text) < 400
    frame = out.to_pandas()
    assert list(frame.columns[:5]) == ["sample", "temperature", "eos", "length", "logp"]
    assert frame.shape == (4, 8)
    np.testing.assert_array_equal(frame[["token_0", "token_1", "token_2"]].to_numpy(), out.tokens)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"prompt_ids": []}, "prompt_ids.*empty"),
        ({"prompt_ids": "hello"}, "prompt_ids"),
        ({"prompt_ids": [0, V]}, r"prompt_ids.*\[0, 4\]"),
        ({"prompt_ids": [0.5, 1.0]}, "prompt_ids"),
        ({"n_tokens": 0}, "n_tokens"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_tokens": 62}, r"n_tokens must be <= 61.*context_length 64"),
        ({"eos": "ignore"}, "eos"),
        ({"batch_size": 0}, "batch_size"),
        ({"rng": -1}, "rng"),
        ({"rng": 1.5}, "rng"),
    ],
)
def test_sample_rejects_bad_input(lm64, kwargs, match):
    args = {"prompt_ids": PROMPT, "n_samples": 2, "n_tokens": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        sample(lm64, **args)


def test_temperature_too_small_for_the_dtype(lm32, lm64):
    with pytest.raises(ValueError, match="temperature 1e-40 is too small.*float32"):
        sample(lm32, PROMPT, 2, 2, temperature=1e-40, rng=0)
    with pytest.raises(ValueError, match="temperature 1e-40 is too small.*float32"):
        score(lm32, PROMPT, np.zeros((2, 2), dtype=int), temperatures=[1.0, 1e-40])
    out = sample(lm64, PROMPT, 3, 2, temperature=1e-40, rng=0)  # fine in float64: greedy
    np.testing.assert_allclose(out.logp, 0.0, atol=1e-12)


def test_eos_policy_needs_an_eos_token():
    lm = tiny_model(V, seed=0, device="cpu")
    with pytest.raises(ValueError, match="eos='stop' needs a model with an eos_token_id"):
        sample(lm, PROMPT, 2, 2)
    out = sample(lm, PROMPT, 2, 2, eos="none", rng=0)
    assert out.tokens.shape == (2, 2)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((PROMPT, np.zeros((2, 2), int)), {"temperatures": []}, "temperatures"),
        ((PROMPT, np.zeros((2, 2), int)), {"temperatures": [1.0, 0.0]}, "temperatures.*entry 1"),
        ((PROMPT, np.zeros((2, 2), int)), {"temperatures": [float("nan")]}, "temperatures"),
        ((PROMPT, np.zeros(2, int)), {}, "tokens must be a non-empty 2-D"),
        ((PROMPT, np.zeros((2, 0), int)), {}, "tokens must be a non-empty 2-D"),
        ((PROMPT, np.zeros((2, 2))), {}, "tokens must hold integer"),
        ((PROMPT, np.array([[0, 5]])), {}, r"tokens\[0, 1\]"),
        ((PROMPT, np.array([[0, EOS]]), [1]), {}, "lengths.*disagrees"),
        ((PROMPT, np.array([[0, 1]]), [3]), {"eos": "none"}, r"lengths must lie in \[1, 2\]"),
        (([], np.zeros((1, 2), int)), {}, "prompt_ids.*empty"),
        (([PROMPT, PROMPT], np.zeros((3, 2), int)), {}, "one prompt per sample"),
        ((PROMPT, np.zeros((1, 62), int)), {}, "n_tokens must be <= 61"),
    ],
)
def test_score_rejects_bad_input(lm64, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        score(lm64, *args, **kwargs)
    if "temperatures" not in kwargs:
        with pytest.raises(ValueError, match=match):
            output_logits(lm64, *args, **kwargs)


# ---------------------------------------------------------------------------------------
# the real default model (one load for the whole module)


@pytest.mark.slow
def test_real_model_samples_and_scores_consistently(real_lm):
    lm = real_lm
    assert lm.name == "SmolLM2-135M-Instruct" and lm.dtype == torch.float32
    assert lm.vocab_size == 49152 and lm.eos_token_id is not None
    prompt = lm.encode("Name a colour.", chat=True)
    assert lm.tokenizer.decode(prompt[-4:], skip_special_tokens=False) == "<|im_start|>assistant\n"
    n_tokens = 12
    out = sample(lm, prompt, 6, n_tokens, temperature=0.8, eos="stop", batch_size=6, rng=0)
    scored = score(lm, prompt, out.tokens, out.lengths, temperatures=[0.8, 1.0], eos="stop")
    # float32 logits from the cached one-token steps and from the teacher-forced block differ
    # by about 2e-6 relative (different kernel shapes and summation orders: 6e-5 on logits
    # of size 30), so a token's log-probability moves by ~1e-5 at most and a sum of N terms
    # by N * 1e-5; the largest gap seen is 2.5e-5 for N = 12.
    np.testing.assert_allclose(scored[:, 0], out.logp, rtol=0, atol=n_tokens * 1e-5)
    assert np.all(np.isfinite(scored)) and np.all(scored <= 0)
    # the sampled continuation really follows the prompt (ids, never re-encoded)
    assert out.tokens.shape == (6, n_tokens) and out.prompt_ids == tuple(prompt)
    text = lm.tokenizer.decode(out.tokens[0, :out.lengths[0]])
    assert isinstance(text, str) and text


def test_non_finite_logits_raise():
    lm = tiny_model(V, seed=0, eos_token_id=EOS, dtype="float64", device="cpu")
    with torch.no_grad():
        lm.model.lm_head.bias[1] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or infinite logits"):
        sample(lm, PROMPT, 3, 2, rng=0)
    with pytest.raises(FloatingPointError, match="NaN or infinite logits"):
        score(lm, PROMPT, np.zeros((2, 2), dtype=int))


@pytest.mark.slow
def test_real_model_cache_padding_and_encoding(real_lm):
    lm = real_lm
    chat = lm.encode("Name a colour.", chat=True)
    plain = lm.encode("The colour of the sky is")
    out = sample(lm, chat, 2, 6, temperature=1.0, eos="none", rng=1)
    # cached teacher forcing == one full uncached forward over prompt + continuation
    cached = output_logits(lm, chat, out.tokens, eos="none")
    full_ids = torch.cat([torch.tensor([chat] * 2), torch.as_tensor(out.tokens)], dim=1)
    with torch.no_grad():
        full = lm.model(full_ids).logits[:, len(chat) - 1:-1].numpy()
    scale = np.abs(full).max()
    assert np.abs(cached - full).max() < 1e-5 * scale  # seen: 2e-6 relative (float32)
    # prompts of different lengths in one left-padded batch == each prompt alone (seen: 1e-5
    # on sums of 6 log-probabilities; the bound allows 10 times that)
    prompts = [chat, plain]
    padded = score(lm, prompts, out.tokens, eos="none", temperatures=[0.7, 1.0])
    alone = np.vstack([score(lm, p, out.tokens[s:s + 1], eos="none", temperatures=[0.7, 1.0])
                       for s, p in enumerate(prompts)])
    np.testing.assert_allclose(padded, alone, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="non-empty string"):
        lm.encode("")
    with pytest.raises(ValueError, match="non-empty"):
        lm.encode([], chat=True)
