"""Every llm_bridge result records a branching.seeding.SeedRecord that reproduces it."""

import numpy as np

from branching.seeding import GENERATOR_WORDS, SeedRecord
from llm_bridge.eligibility import Threshold
from llm_bridge.listdecode import list_decode
from llm_bridge.models import tiny_model
from llm_bridge.sampling import sample
from llm_bridge.scans import temperature_scan


def test_every_result_records_a_seed_record_that_reproduces_it():
    lm = tiny_model(8, seed=0)
    gen = np.random.default_rng(9)
    kw = dict(n_samples=4, n_tokens=3, eos="none")
    draw = sample(lm, [1, 2], rng=gen, **kw)
    assert isinstance(draw.seed, SeedRecord) and len(draw.seed.entropy) == GENERATOR_WORDS
    assert np.array_equal(sample(lm, [1, 2], rng=draw.seed, **kw).tokens, draw.tokens)
    scan = temperature_scan(lm, [1, 2], [0.5, 1.0, 2.0], rng=gen, progress=False, **kw)
    assert isinstance(scan.seed, SeedRecord)
    assert temperature_scan(lm, [1, 2], [0.5, 1.0, 2.0], rng=scan.seed, progress=False, **kw) == scan
    decoded = list_decode(lm, [[1, 2]], rule=Threshold(0.15), n_steps=3, cap=2, n_boot=20, rng=gen)
    assert isinstance(decoded.seed, SeedRecord)
    again = list_decode(lm, [[1, 2]], rule=Threshold(0.15), n_steps=3, cap=2, n_boot=20,
                        rng=decoded.seed)
    assert again.estimates.r0_ci == decoded.estimates.r0_ci
    assert np.array_equal(again.records.nodes["weight"], decoded.records.nodes["weight"])
