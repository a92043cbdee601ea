"""Shared fixtures: every test must leave global state as it found it."""

import os
import warnings

import matplotlib
import numpy as np
import pytest
# These libraries add warnings filters when first imported; import them before any test runs
# so that the guard below sees only what the tests themselves do.
import matplotlib.pyplot  # noqa: F401
import scipy.integrate  # noqa: F401
import scipy.optimize  # noqa: F401
import scipy.sparse  # noqa: F401
import scipy.special  # noqa: F401
import scipy.stats  # noqa: F401
import sympy  # noqa: F401

matplotlib.use("Agg")  # figures are written to files; no display is needed or assumed


@pytest.fixture(autouse=True)
def _no_global_state_change():
    """Fail a test that touches numpy's global RNG, the warnings filters or the cwd."""
    rng_state = np.random.get_state()
    filters = list(warnings.filters)
    cwd = os.getcwd()
    yield
    after = np.random.get_state()
    assert after[0] == rng_state[0] and np.array_equal(after[1], rng_state[1]) and \
        after[2:] == rng_state[2:], "test changed numpy's global random state"
    assert warnings.filters == filters, "test changed the warnings filters"
    assert os.getcwd() == cwd, "test changed the working directory"
