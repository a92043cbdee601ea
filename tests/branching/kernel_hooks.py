"""Compiled entry points into the private samplers of ``branching._kernels``, for tests."""

import numpy as np
from numba import njit

from branching import _kernels as kern

UNIFORM, NORMAL, GAMMA, POISSON, BINOMIAL, INTEGER_BELOW, REPLICATE_SEEDS = range(7)


@njit(cache=True)
def fill_raw(state, out):
    """Raw SFC64 words from ``state`` (modified in place)."""
    for i in range(out.size):
        out[i] = kern.next_u64(state)


@njit(cache=True)
def replicate_state(key, run, out):
    """The initial SFC64 state ``[a, b, c, counter]`` of replicate ``run`` into ``out``."""
    kern.seed_replicate(key, run, out)


@njit(cache=True)
def fill_samples(key, law, a, n, b, out):
    """Samples of one law from the generator of replicate 0 under ``key``: uniform,
    normal, gamma(a), Poisson(a), Bin(n, b), integer below n, or (``REPLICATE_SEEDS``)
    the first uniform of replicate ``i`` for ``i = 0, 1, ...``."""
    st = np.empty(4, dtype=np.uint64)
    kern.seed_replicate(key, 0, st)
    for i in range(out.size):
        if law == UNIFORM:
            out[i] = kern.uniform(st)
        elif law == NORMAL:
            out[i] = kern.standard_normal(st)
        elif law == GAMMA:
            out[i] = kern.standard_gamma(st, a)
        elif law == POISSON:
            out[i] = kern.poisson(st, a)
        elif law == BINOMIAL:
            log_q, r = kern.binomial_constants(b)
            out[i] = kern.binomial_prepared(st, n, b, log_q, r)
        elif law == INTEGER_BELOW:
            out[i] = kern.integer_below(st, n)
        else:
            kern.seed_replicate(key, i, st)
            out[i] = kern.uniform(st)
