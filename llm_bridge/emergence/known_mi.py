r"""The synthetic control: every estimator on correlated Gaussians of known MI.

Same width as the representations after PCA (``dim`` per variable), so that the error of
each estimator is measured where it is used.
"""

from __future__ import annotations

import numpy as np

from branching import validation as check

from ._common import seed_sequence
from .mi import ESTIMATORS, correlated_gaussians, estimate_mi

__all__ = ["known_mi_benchmark"]


def known_mi_benchmark(truths=(0.0, 2.0, 5.0, 10.0, 20.0), *, n: int = 2048, dim: int = 8,
                       estimators=("gaussian", "ksg", "infonce", "mine"), n_seeds: int = 3,
                       options=None, rng=None):
    r"""Estimate known mutual informations with every estimator.

    Parameters
    ----------
    truths : sequence of float
        True MI values in bits (>= 0); values above :math:`\log_2 n` show the ceilings.
    n : int
        Samples per case (split in half: training and held-out).
    dim : int
        Width of each variable (and the PCA dimension).
    estimators : sequence of str
        Names in :data:`~llm_bridge.emergence.mi.ESTIMATORS`; ``"mine-max"`` adds MINE with
        the original pipeline's read-out (maximum over training steps on the training data).
    n_seeds : int
    options : dict of str to dict, optional
        Extra settings per estimator name (e.g. ``{"infonce": {"steps": 200}}``).
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    pandas.DataFrame
        One row per (estimator, truth): ``true_bits``, ``bits`` (mean over seeds), ``sd``,
        ``error_bits`` = bits - true_bits, ``ceiling_bits`` (estimator cap or None),
        ``log2_n_test``.

    Examples
    --------
    >>> table = known_mi_benchmark([1.0], n=400, dim=2, estimators=["gaussian"], rng=0)
    >>> bool(abs(table["error_bits"].iloc[0]) < 0.2)
    True
    """
    import pandas as pd

    options = dict(options or {})
    truths = [check.real("truths", t, low=0.0) for t in truths]
    names = list(estimators)
    for name in names:
        check.choice("estimators", name, set(ESTIMATORS) | {"mine-max"})
    seq = seed_sequence(rng)
    rows = []
    for truth, child in zip(truths, seq.spawn(len(truths))):
        data_seed, *estimator_seeds = child.spawn(1 + len(names))
        x, y, exact = correlated_gaussians(n, dim, mi_bits=truth, rng=data_seed)
        for name, est_seed in zip(names, estimator_seeds):
            settings = {"dim": dim, "n_seeds": n_seeds, **options.get(name, {})}
            if name == "mine-max":
                settings.setdefault("readout", "max_train")
                est = estimate_mi(x, y, estimator="mine", rng=est_seed, **settings)
            else:
                est = estimate_mi(x, y, estimator=name, rng=est_seed, **settings)
            rows.append({"estimator": name, "true_bits": exact, "bits": est.bits, "sd": est.sd,
                         "error_bits": est.bits - exact, "ceiling_bits": est.ceiling_bits,
                         "log2_n_test": float(np.log2(est.n_test)), "n": n, "dim": dim})
    return pd.DataFrame(rows)
