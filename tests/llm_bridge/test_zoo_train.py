"""The zoo's task, family and training: uniqueness, splits, determinism, cache, resume."""

import logging

import numpy as np
import pytest
import torch

from llm_bridge.zoo import Family, ModelSize, RunningSumTask, TrainConfig, get_family, train_model
from llm_bridge.zoo import store
from llm_bridge.zoo.train import build_model

TINY = Family(
    task=RunningSumTask(M=32, T=3, K=4),
    sizes=(ModelSize(8, 1, 1), ModelSize(16, 1, 2)),
    train=TrainConfig(steps=12, batch_size=16, lr=1e-2, warmup=2, n_checkpoints=3),
    seed=3, name="tiny",
)


# ---------------------------------------------------------------------------- task
def test_answers_are_running_sums_by_a_loop():
    task = RunningSumTask(M=7, T=5, K=7)
    x = task.inputs("train", 50, rng=0)
    y = task.answers(x)
    for row, ans in zip(x, y):
        total = 0
        for t in range(5):
            total = (total + int(row[t])) % 7
            assert ans[t] == total


def test_splits_are_disjoint_and_consistent():
    task = RunningSumTask(M=32, T=3, K=8)
    drawn = {s: task.inputs(s, 400, rng=1) for s in ("train", "measure", "test")}
    for split, x in drawn.items():
        assert (task.split_of(x) == split).all()
        assert x.min() >= 0 and x.max() < 8
    keys = {s: {tuple(r) for r in x} for s, x in drawn.items()}
    assert not keys["measure"] & keys["test"]
    assert not keys["train"] & (keys["measure"] | keys["test"])
    # every input of the space is in exactly one split, in proportions near 8:1:1
    every = np.stack(np.unravel_index(np.arange(8**3), (8, 8, 8)), 1)
    share = np.mean(task.split_of(every) == "measure")
    assert abs(share - 0.1) < 5 * np.sqrt(0.09 / 512)


def test_inputs_are_reproducible_from_the_seed():
    task = RunningSumTask(M=64, T=6)
    assert np.array_equal(task.inputs("test", 30, rng=5), task.inputs("test", 30, rng=5))
    assert not np.array_equal(task.inputs("test", 30, rng=5), task.inputs("test", 30, rng=6))


@pytest.mark.parametrize("kwargs, match", [
    ({"M": 1, "T": 3}, "M must be an integer in"),
    ({"M": 32, "T": 0}, "T must be an integer in"),
    ({"M": 32, "T": 3, "K": 33}, "K must be an integer in"),
])
def test_task_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunningSumTask(**kwargs)


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="holds no input"):
        RunningSumTask(M=4, T=1, K=1).inputs("test", 2, rng=0)


def test_inputs_out_of_range_are_refused():
    with pytest.raises(ValueError, match="inputs must hold tokens"):
        RunningSumTask(M=8, T=2, K=4).answers(np.array([[1, 5]]))


# ---------------------------------------------------------------------------- family
def test_parameter_count_matches_the_built_model():
    for i, size in enumerate(get_family("quick").sizes):
        model = build_model(get_family("quick"), i)
        assert sum(p.numel() for p in model.parameters()) == size.n_parameters(32)


def test_families_span_the_required_range():
    for name in ("quick", "default"):
        counts = get_family(name).n_parameters()
        assert len(counts) >= 6 and counts[-1] / counts[0] >= 30


def test_sizes_must_increase():
    with pytest.raises(ValueError, match="strictly increasing parameter counts"):
        TINY.replace(sizes=(ModelSize(16, 1, 2), ModelSize(8, 1, 1)))
    with pytest.raises(ValueError, match="hidden_size must be a multiple"):
        ModelSize(10, 1, 2)


# ---------------------------------------------------------------------------- training
def test_same_seed_same_digest_other_seed_other_digest(tmp_path):
    rng_before = torch.random.get_rng_state()
    a = train_model(TINY, 0, cache_dir=tmp_path / "a", progress=False)
    b = train_model(TINY, 0, cache_dir=tmp_path / "b", progress=False)
    c = train_model(TINY.replace(seed=4), 0, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert a.digest == b.digest != c.digest
    assert a.complete and a.steps == TINY.train.checkpoint_steps() == (0, 1, 3, 12)
    assert a.loss.shape == (12,) and np.isfinite(a.loss).all()
    # the digest is the SHA-256 of the stored weights, recomputed here from the model
    state = a.language_model().model.state_dict()
    assert store.arrays_digest({k: v.numpy() for k, v in state.items()}) == a.digest


def test_multi_tensor_optimizer_gives_the_per_tensor_weights(tmp_path, monkeypatch):
    """Training uses AdamW's multi-tensor (foreach) update for speed; models trained with the
    per-tensor loop (the update before) must keep their digests, so cached models stay valid."""
    fast = train_model(TINY, 1, cache_dir=tmp_path / "fast", progress=False)
    adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **k: adamw(*a, **{**k, "foreach": False}))
    slow = train_model(TINY, 1, cache_dir=tmp_path / "slow", progress=False)
    assert fast.digest == slow.digest
    np.testing.assert_array_equal(fast.loss, slow.loss)


def test_cache_is_reused(tmp_path):
    first = train_model(TINY, 1, cache_dir=tmp_path, progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in first.directory.iterdir()}
    again = train_model(TINY, 1, cache_dir=tmp_path, progress=False)
    assert again.digest == first.digest and again.seconds == 0.0
    assert {p: p.stat().st_mtime_ns for p in again.directory.iterdir()} == mtimes


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    full = train_model(TINY, 0, cache_dir=tmp_path / "full", progress=False)
    part = train_model(TINY, 0, cache_dir=tmp_path / "part", max_step=7, progress=False)
    assert not part.complete and part.steps == (0, 1, 3)  # steps 4-7 were lost
    resumed = train_model(TINY, 0, cache_dir=tmp_path / "part", progress=False)
    assert resumed.complete and resumed.digest == full.digest
    np.testing.assert_array_equal(resumed.loss, full.loss)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_checkpoint_is_detected_and_retrained(tmp_path, caplog, damage):
    good = train_model(TINY, 0, cache_dir=tmp_path, progress=False)
    path = store.step_path(good.directory, 12)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        # change one stored number without breaking the zip container: rewrite an array
        weights, extra, meta = store.read_checkpoint(path)
        name = sorted(weights)[0]
        weights[name] = weights[name] + 1.0
        payload = {f"w/{k}": v for k, v in weights.items()}
        payload.update({f"x/{k}": v for k, v in extra.items()})
        from llm_bridge import cache
        cache.write_npz_atomic(path, payload, meta)
    else:
        path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError, match="corrupted"):
        store.read_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="llm_bridge.zoo.train"):
        again = train_model(TINY, 0, cache_dir=tmp_path, progress=False)
    assert "corrupted" in caplog.text and "retraining from step 3" in caplog.text
    assert again.digest == good.digest and again.seconds > 0


def test_cache_dir_that_is_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is not a writable directory"):
        train_model(TINY, 0, cache_dir=blocker, progress=False)


def test_environment_variable_moves_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_BRANCHING_CACHE", str(tmp_path / "env"))
    zm = train_model(TINY, 0, max_step=1, progress=False)
    assert (tmp_path / "env" / "zoo") in zm.directory.parents


@pytest.mark.parametrize("kwargs, match", [
    ({"index": 2}, "index must be an integer in"),
    ({"index": 0, "max_step": 13}, "max_step must be an integer in"),
    ({"index": 0, "threads": 0}, "threads must be an integer in"),
])
def test_train_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_model(TINY, cache_dir=tmp_path, progress=False, **kwargs)


def test_trained_model_runs_through_the_sampler(tmp_path):
    from llm_bridge.sampling import sample

    zm = train_model(TINY, 0, cache_dir=tmp_path, progress=False)
    lm = zm.language_model(step=3)
    assert lm.vocab_size == 32 and lm.context_length == 6 and lm.tokenizer is None
    x = TINY.task.inputs("test", 1, rng=0)[0]
    drawn = sample(lm, x.tolist(), 4, 3, eos="none", rng=0)
    assert np.asarray(drawn.tokens).shape == (4, 3)
    with pytest.raises(ValueError, match="step must be one of the checkpoints"):
        zm.language_model(step=5)
