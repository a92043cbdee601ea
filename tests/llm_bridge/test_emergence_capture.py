"""Datasets, hook capture, streaming to disk, controls and the metric, on tiny models."""

import json
import math

import numpy as np
import pytest
import torch

from llm_bridge.emergence.capture import Representations, block_io, blocks, capture
from llm_bridge.emergence.controls import near_identity, random_init
from llm_bridge.emergence.data import (
    category_lists,
    shuffled,
    unigram_control,
    windows_from_ids,
)
from llm_bridge.emergence.metric import EmergenceResult, emergence
from llm_bridge.models import tiny_model

ENTITIES = {"a": [1, 2, 3], "b": [4, 5, 6]}


@pytest.fixture(scope="module")
def lm():
    return tiny_model(40, seed=0, hidden_size=32, n_layers=3)


@pytest.fixture(scope="module")
def lists():
    pools = {"a": list(range(1, 11)), "b": list(range(11, 21)), "c": list(range(21, 31))}
    return category_lists(pools, 0, shots=3, n=400, rng=0)


@pytest.fixture(scope="module")
def reps(lm, lists, tmp_path_factory):
    return capture(lm, lists, tmp_path_factory.mktemp("reps"), batch_size=64)


# ----------------------------------------------------------------------------- data
@pytest.mark.parametrize("mixed", [False, True])
def test_plugin_prefix_entropy_matches_the_generating_law(mixed):
    # 2 categories x 3 entities, 2 shots: 12 pure or 30 mixed lists.  The plug-in bias is
    # about (support - 1) / (2 n ln 2) < 1.1e-3 bits at n = 20000; allow 0.01 bits.
    data = category_lists(ENTITIES, 0, shots=2, n=20_000, mixed=mixed, rng=1)
    exact = np.array(data.params["exact_prefix_entropy"])
    support = 30 if mixed else 12
    assert exact[-1] == pytest.approx(math.log2(support))
    np.testing.assert_allclose(data.prefix_entropy(), exact, atol=0.01)
    # the separator carries no information; each entity position is uniform on 6 tokens
    np.testing.assert_allclose(data.token_entropy()[1::2], 0.0)
    np.testing.assert_allclose(data.token_entropy()[0::2], math.log2(6), atol=0.01)


def test_category_lists_hold_distinct_entities_of_one_category():
    data = category_lists(ENTITIES, 0, shots=3, n=50, rng=2)
    for row, label in zip(data.ids, data.labels):
        entities = row[0::2]
        assert len(set(entities)) == 3 and set(entities) == set(ENTITIES["ab"[label]])
        assert (row[1::2] == 0).all()


def test_text_windows_and_controls():
    tokens = np.arange(100, 160)
    data = windows_from_ids(tokens, length=5, n=30, rng=0)
    assert (np.diff(data.ids, axis=1) == 1).all()  # consecutive tokens
    mixed = shuffled(data, rng=1)
    assert all(sorted(a) == sorted(b) for a, b in zip(mixed.ids, data.ids))
    iid = unigram_control(data, rng=2)
    for col in range(5):
        assert set(iid.ids[:, col]) <= set(data.ids[:, col])
    assert data.seed == 0 and "text" in repr(data)


# ----------------------------------------------------------------------------- capture
def test_stream_j_is_block_j_input_and_block_j_minus_1_output(lm):
    ids = [[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]]
    _, out0 = block_io(lm, ids, 0)
    in1, out1 = block_io(lm, ids, 1)
    np.testing.assert_array_equal(out0, in1)
    # independent route: transformers' hidden_states (embeddings, then each block's output
    # except the last, which comes after the final norm)
    with torch.inference_mode():
        hidden = lm.model(torch.tensor(ids), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(in1, hidden[1].numpy(), atol=1e-6)
    np.testing.assert_allclose(out1, hidden[2].numpy(), atol=1e-6)
    _, last = block_io(lm, ids, 2)
    assert not np.allclose(last, hidden[3].numpy(), atol=1e-3)


def test_capture_matches_hooks_and_does_not_depend_on_batch_size(lm, lists, reps, tmp_path):
    assert reps.streams == (0, 1, 2, 3) and reps.ids.shape == (400, 6)
    x, y = block_io(lm, lists.ids[:7], 1)
    np.testing.assert_allclose(reps.macro(1, 4)[0][:7], x[:, 4], atol=1e-6)
    np.testing.assert_allclose(reps.macro(1, 4)[1][:7], y[:, 4], atol=1e-6)
    other = capture(lm, lists.ids, tmp_path, layers=[1], batch_size=7)
    np.testing.assert_allclose(other.macro(1, 5)[1], reps.macro(1, 5)[1], atol=1e-5)
    stored = np.load(tmp_path / "stream_002.npy", mmap_mode="r")
    assert stored.dtype == np.float32 and stored.shape == (400, 6, 32)


def test_micro_variable_is_the_token_fed_alone(lm, lists, reps):
    token = int(lists.ids[5, 2])
    x, y = block_io(lm, [[token]], 2)
    mx, my = reps.micro(2, 2)
    np.testing.assert_allclose(mx[5], x[0, 0], atol=1e-5)
    np.testing.assert_allclose(my[5], y[0, 0], atol=1e-5)
    # no BOS: at position 0 the macro and micro variables coincide
    np.testing.assert_allclose(reps.macro(2, 0)[1], reps.micro(2, 0)[1], atol=1e-5)


def test_interrupted_capture_resumes(lm, lists, tmp_path):
    full = capture(lm, lists.ids[:40], tmp_path / "full", batch_size=8)
    part = tmp_path / "part"
    capture(lm, lists.ids[:40], part, batch_size=8)
    (part / "progress.json").write_text(json.dumps({"rows": 16, "seconds": 0.0,
                                                    "complete": False}))
    stream = np.load(part / "stream_003.npy", mmap_mode="r+")
    stream[16:] = 0.0
    stream.flush()
    del stream
    with pytest.raises(ValueError, match="unfinished"):
        Representations.load(part)
    resumed = capture(lm, lists.ids[:40], part, batch_size=8)
    np.testing.assert_array_equal(resumed.macro(2, 3)[1], full.macro(2, 3)[1])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"data": [[1], [2]]}, "window length"),
        ({"layers": [3]}, "layers"),
        ({"data": [[1, 99]]}, "token ids"),
    ],
)
def test_capture_rejects_bad_input(lm, tmp_path, kwargs, match):
    args = {"data": [[1, 2], [3, 4]], **kwargs}
    with pytest.raises(ValueError, match=match):
        capture(lm, args.pop("data"), tmp_path, **args)


# ----------------------------------------------------------------------------- controls
def test_near_identity_block_is_the_identity_and_is_restored(lm):
    before = [p.clone() for p in blocks(lm.model)[1].parameters()]
    with near_identity(lm, [1]):
        x, y = block_io(lm, [[1, 2, 3]], 1)
        np.testing.assert_array_equal(x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, blocks(lm.model)[1].parameters()))


def test_near_identity_block_drives_ksg_to_its_ceiling(lm, tmp_path):
    # random windows: prefixes at the last position are distinct, so the estimate of
    # MI(h, h) must reach KSG's maximum psi(N) - psi(k)
    ids = np.random.default_rng(0).integers(1, 40, size=(300, 4))
    with near_identity(lm, [1]):
        reps = capture(lm, ids, tmp_path, layers=[1])
    result = emergence(reps, estimator="ksg", dim=4, jitter=0.0, n_seeds=1, rng=0)
    assert result.macro[0, -1, 0] == pytest.approx(result.estimator_ceiling, abs=0.05)


def test_random_init_keeps_the_architecture_and_global_rng(lm):
    state = torch.random.get_rng_state()
    other = random_init(lm, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert type(other.model) is type(lm.model) and "random init" in other.name
    a = dict(lm.model.model.named_parameters())  # the trunk (the tiny model's head differs)
    b = dict(other.model.model.named_parameters())
    assert a.keys() == b.keys()
    assert not torch.equal(a["layers.0.mlp.up_proj.weight"], b["layers.0.mlp.up_proj.weight"])


# ----------------------------------------------------------------------------- metric
def test_emergence_combines_macro_and_micro_as_defined(reps, lists, tmp_path):
    result = emergence(reps, dataset=lists, dim=8, rng=0)
    assert result.macro.shape == (3, 6, 3)
    e = result.emergence()
    for i in range(3):
        for t in range(6):
            for s in range(3):
                expected = result.macro[i, t, s] - np.mean(result.micro[i, : t + 1, s])
                assert e[i, t, s] == pytest.approx(expected)
    # position 0: macro and micro variables coincide, same splits -> E = 0
    np.testing.assert_allclose(e[:, 0], 0.0, atol=1e-3)
    # the separator fed alone is one fixed vector: its micro MI is exactly 0
    np.testing.assert_array_equal(result.micro[:, 1::2], 0.0)
    mean, sd = result.per_layer()
    assert mean.shape == sd.shape == (3,)
    np.testing.assert_allclose(result.prefix_entropy, lists.prefix_entropy())
    assert result.ceiling_bits == pytest.approx(math.log2(400))
    frame = result.to_pandas()
    assert set(frame["quantity"]) == {"macro", "micro", "emergence"} and len(frame) == 54
    again = EmergenceResult.load(result.save(tmp_path / "r.json"))
    np.testing.assert_array_equal(again.emergence(), e)
    assert "EmergenceResult" in repr(result)


def test_emergence_rejects_bad_settings(reps):
    with pytest.raises(ValueError, match="dim"):
        emergence(reps, dim=500, n_seeds=1, rng=0)
    with pytest.raises(ValueError, match="layer"):
        emergence(reps, layers=[7], n_seeds=1, rng=0)
    with pytest.raises(ValueError, match="estimator"):
        emergence(reps, estimator="mle", rng=0)
