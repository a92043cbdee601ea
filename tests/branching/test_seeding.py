"""The one rule from ``rng`` to a SeedSequence, the seed record, and the CPU count."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from branching import ListDecoderModel
from branching.cpus import available_cpus
from branching.seeding import GENERATOR_WORDS, SeedRecord, seed_sequence
from branching.simulate import simulate, simulate_instant_generation
from branching.sweep import Grid, run_sweep


def _state(seq: np.random.SeedSequence) -> list[int]:
    return seq.generate_state(4).tolist()


def test_int_and_seed_sequence_keep_their_entropy():
    assert _state(seed_sequence(5)) == _state(np.random.SeedSequence(5))
    assert _state(seed_sequence(np.int64(5))) == _state(np.random.SeedSequence(5))
    parent = np.random.SeedSequence(123, spawn_key=(2, 7))
    seq = seed_sequence(parent)
    assert seq is not parent
    assert (seq.entropy, seq.spawn_key) == (123, (2, 7))
    assert _state(seq) == _state(parent)


def test_spawned_children_do_not_depend_on_the_callers_spawn_counter():
    parent = np.random.SeedSequence(8)
    first = seed_sequence(parent).spawn(1)[0]
    parent.spawn(3)  # the caller spawns from its own object in between
    again = seed_sequence(parent).spawn(1)[0]
    assert _state(first) == _state(again)


def test_generator_rule_draws_four_words():
    gen = np.random.default_rng(9)
    seq = seed_sequence(gen)
    words = np.random.default_rng(9).integers(0, 2**64, size=GENERATOR_WORDS, dtype=np.uint64)
    assert seq.entropy == [int(w) for w in words]
    assert seq.spawn_key == ()
    # The generator was consumed: the next call gets the next four words.
    nxt = np.random.default_rng(9)
    nxt.integers(0, 2**64, size=GENERATOR_WORDS, dtype=np.uint64)
    expected = nxt.integers(0, 2**64, size=GENERATOR_WORDS, dtype=np.uint64)
    assert seed_sequence(gen).entropy == [int(w) for w in expected]


def test_none_gives_fresh_entropy():
    assert seed_sequence(None).entropy != seed_sequence().entropy


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, np.bool_(False), [1, 2], object()])
def test_bad_rng_is_refused(bad):
    with pytest.raises(ValueError, match="rng must be"):
        seed_sequence(bad)


def test_non_default_pool_size_is_refused():
    with pytest.raises(ValueError, match="pool_size"):
        seed_sequence(np.random.SeedSequence(1, pool_size=8))


@pytest.mark.parametrize("seq", [
    np.random.SeedSequence(42),
    np.random.SeedSequence([1, 2**70], spawn_key=(3,)),
    np.random.SeedSequence(),
])
def test_record_round_trips(seq):
    record = SeedRecord.from_seed_sequence(seq)
    assert _state(record.seed_sequence()) == _state(seq)
    text = json.dumps(record.to_dict())
    back = SeedRecord.from_dict(json.loads(text))
    assert back == record and hash(back) == hash(record)
    assert _state(back.seed_sequence()) == _state(seq)


def test_record_normalises_and_validates():
    assert SeedRecord([3, 4], [1]) == SeedRecord((3, 4), (1,))
    assert SeedRecord(np.uint64(7)).entropy == 7
    assert repr(SeedRecord(7, (1,))) == "SeedRecord(entropy=7, spawn_key=(1,))"
    assert SeedRecord.from_dict({"entropy": 5}) == SeedRecord(5)
    for kwargs, match in [
        (dict(entropy=-1), "entropy"), (dict(entropy=[]), "entropy"),
        (dict(entropy=1.5), "entropy"), (dict(entropy=1, spawn_key=(-2,)), "spawn_key"),
        (dict(entropy=1, spawn_key="ab"), "spawn_key"), (dict(entropy=1, spawn_key=3), "spawn_key"),
    ]:
        with pytest.raises(ValueError, match=match):
            SeedRecord(**kwargs)
    with pytest.raises(ValueError, match="data"):
        SeedRecord.from_dict({"spawn_key": []})
    with pytest.raises(ValueError, match="seq"):
        SeedRecord.from_seed_sequence(3)
    with pytest.raises(AttributeError):
        SeedRecord(1).entropy = 2


def test_every_branching_result_records_a_seed_record_that_reproduces_it():
    model = ListDecoderModel.from_r0(M=50, r0=0.9, T=5)
    gen = np.random.default_rng(3)
    sim = simulate(model, 200, rng=gen, threads=1)
    assert isinstance(sim.seed, SeedRecord) and len(sim.seed.entropy) == GENERATOR_WORDS
    again = simulate(model, 200, rng=sim.seed.seed_sequence(), threads=1)
    assert np.array_equal(sim.mean, again.mean)
    contrast = simulate_instant_generation(20, 0.05, 4, 100, rng=11)
    assert contrast.seed == SeedRecord(11)
    swept = run_sweep(Grid({"r0": [0.5, 0.9], "M": 50, "T": 5}), "simulate", n_runs=50, rng=gen, progress=False,
                      workers=1)
    assert isinstance(swept.seed, SeedRecord)
    replay = run_sweep(Grid({"r0": [0.5, 0.9], "M": 50, "T": 5}), "simulate", n_runs=50,
                       rng=swept.seed.seed_sequence(), workers=1, progress=False)
    assert np.array_equal(swept.value, replay.value)



def test_a_seed_record_passed_as_rng_is_its_seed_sequence():
    seq = seed_sequence(SeedRecord((1, 2), (3,)))
    assert seq.entropy == (1, 2) and seq.spawn_key == (3,)
    model = ListDecoderModel.from_r0(M=50, r0=0.9, T=5)
    sim = simulate(model, 200, rng=np.random.default_rng(5), threads=1)
    assert np.array_equal(simulate(model, 200, rng=sim.seed, threads=1).mean, sim.mean)


def test_available_cpus():
    n = available_cpus()
    assert isinstance(n, int) and n >= 1
    if hasattr(os, "sched_getaffinity"):
        assert n == len(os.sched_getaffinity(0))
