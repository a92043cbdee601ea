r"""Mutual-information estimators with a held-out split, in bits.

Every estimator fits its preprocessing (per-feature standardisation, then PCA to ``dim``
components, :class:`~llm_bridge.emergence._common.Projection`) on a training split only and
reads the estimate out on the held-out split; this is repeated for ``n_seeds`` random
splits and the spread over seeds is reported.

* :func:`gaussian_mi` -- closed-form Gaussian MI with a Ledoit-Wolf shrinkage covariance;
* :func:`ksg_mi` -- the Kraskov-Stoegbauer-Grassberger nearest-neighbour estimator (1);
* :func:`llm_bridge.emergence.neural.infonce_mi` and :func:`~llm_bridge.emergence.neural.mine_mi`
  -- trained critics (torch);
* :func:`estimate_mi` dispatches on a name.

The synthetic benchmark with known MI is :func:`correlated_gaussians`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

from branching import validation as check

from ._common import (
    LOG2E, Projection, check_dim, degenerate, paired, seed_of, seed_sequence, split,
)

__all__ = [
    "ESTIMATORS",
    "MIEstimate",
    "correlated_gaussians",
    "estimate_mi",
    "gaussian_mi",
    "ksg_mi",
    "ledoit_wolf",
]


@dataclass(frozen=True, repr=False)
class MIEstimate:
    """A mutual-information estimate over several random splits (and initialisations).

    Attributes
    ----------
    estimator : str
        ``"gaussian"``, ``"ksg"``, ``"infonce"`` or ``"mine"``.
    bits : float
        Mean over seeds of the held-out estimate, in bits.
    sd : float
        Standard deviation over seeds (``ddof=1``; 0 for a single seed).
    values : tuple of float
        The held-out estimate of each seed, in bits.
    train_values : tuple of float
        The same quantity computed on the training split (in-sample), in bits; for the MINE
        ``readout="max_train"`` option this is the maximum over training steps; empty for
        KSG.
    n_train, n_test : int
        Sizes of the two splits.
    ceiling_bits : float or None
        The largest value the estimator can return at this sample or batch size
        (``log2 K`` for InfoNCE, :math:`(\\psi(N)-\\psi(k))/\\ln 2` for KSG), ``None`` when
        there is no such cap.
    options : dict
        The estimator's settings (``dim``, ``k``, ``batch_size``, ...).
    seed : int or None
        The integer seed when one was given.
    """

    estimator: str
    bits: float
    sd: float
    values: tuple
    train_values: tuple
    n_train: int
    n_test: int
    ceiling_bits: float | None
    options: dict = field(default_factory=dict)
    seed: int | None = None

    def __repr__(self) -> str:
        cap = "" if self.ceiling_bits is None else f", ceiling={self.ceiling_bits:.2f}"
        return (
            f"MIEstimate({self.estimator}: {self.bits:.3f} +- {self.sd:.3f} bits over "
            f"{len(self.values)} seeds, n_train={self.n_train}, n_test={self.n_test}{cap})"
        )

    def to_pandas(self):
        """One row per seed: held-out and in-sample estimates with the settings."""
        import pandas as pd

        rows = [
            {"estimator": self.estimator, "seed_index": i, "heldout_bits": v,
             "train_bits": t, "n_train": self.n_train, "n_test": self.n_test,
             "ceiling_bits": self.ceiling_bits, **self.options}
            for i, (v, t) in enumerate(
                zip(self.values, self.train_values or (None,) * len(self.values))
            )
        ]
        return pd.DataFrame(rows)


def _finish(name, held, train, n_train, n_test, ceiling, options, seq) -> MIEstimate:
    held = np.asarray(held, dtype=float)
    if not np.all(np.isfinite(held)):
        raise ValueError(f"the {name} estimate is not finite ({held.tolist()}); check the inputs")
    return MIEstimate(
        estimator=name,
        bits=float(held.mean()),
        sd=float(held.std(ddof=1)) if held.size > 1 else 0.0,
        values=tuple(float(v) for v in held),
        train_values=tuple(float(v) for v in train),
        n_train=n_train,
        n_test=n_test,
        ceiling_bits=ceiling,
        options=options,
        seed=seed_of(seq),
    )


def _splits(n, test_fraction, n_seeds):
    test_fraction = check.real("test_fraction", test_fraction, low=0.0, high=1.0,
                               low_open=True, high_open=True)
    n_seeds = check.integer("n_seeds", n_seeds, low=1)
    n_test = int(round(test_fraction * n))
    return test_fraction, n_seeds, n - n_test, n_test


def ledoit_wolf(z) -> tuple[np.ndarray, float]:
    r"""Ledoit-Wolf shrinkage estimate of a covariance matrix.

    Parameters
    ----------
    z : array of shape (n, p)
        Samples in rows; they are centred here.

    Returns
    -------
    covariance : array of shape (p, p)
    shrinkage : float
        The weight :math:`\rho\in[0,1]` of the scaled identity.

    Notes
    -----
    With :math:`S=Z^\top Z/n`, :math:`m=\operatorname{tr}S/p`,
    :math:`d^2=\|S-mI\|_F^2/p` and
    :math:`\bar b^2=\frac{1}{n^2p}\sum_k\|z_kz_k^\top-S\|_F^2
    =\frac{1}{np}\bigl(\frac1n\sum_k\|z_k\|^4-\|S\|_F^2\bigr)`, the estimate is
    :math:`\rho mI+(1-\rho)S` with :math:`\rho=\min(\bar b^2,d^2)/d^2` (Ledoit & Wolf 2004,
    *A well-conditioned estimator for large-dimensional covariance matrices*).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cov, rho = ledoit_wolf(rng.standard_normal((500, 3)))
    >>> bool(np.allclose(cov, np.eye(3), atol=0.1)), 0 <= rho <= 1
    (True, True)
    """
    z = check.array("z", z, ndim=2)
    n, p = z.shape
    if n < 2:
        raise ValueError(f"z needs at least 2 samples, got {n}")
    z = z - z.mean(axis=0)
    s = z.T @ z / n
    m = np.trace(s) / p
    d2 = np.sum((s - m * np.eye(p)) ** 2) / p
    if d2 <= 0:
        return s, 0.0
    b2_bar = (np.mean(np.sum(z * z, axis=1) ** 2) - np.sum(s * s)) / (n * p)
    rho = float(min(max(b2_bar, 0.0), d2) / d2)
    return rho * m * np.eye(p) + (1.0 - rho) * s, rho


def _gaussian_logpdf(z, mean, covariance):
    """Log density of each row of ``z`` under N(mean, covariance), in nats."""
    chol = np.linalg.cholesky(covariance)
    solved = np.linalg.solve(chol, (z - mean).T)
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    p = z.shape[1]
    return -0.5 * (np.sum(solved**2, axis=0) + log_det + p * math.log(2 * math.pi))


def gaussian_mi(x, y, *, dim: int = 32, test_fraction: float = 0.5, n_seeds: int = 3,
                rng=None) -> MIEstimate:
    r"""Gaussian mutual information of PCA features with a Ledoit-Wolf covariance.

    Parameters
    ----------
    x, y : array of shape (n, dx) and (n, dy)
        Paired samples (rows aligned).
    dim : int
        Principal components kept for each of ``x`` and ``y`` (at most their width, and at
        most the training sample count).
    test_fraction : float
        Fraction of rows held out, in (0, 1).
    n_seeds : int
        Number of random train/test splits.
    rng : None, int, SeedSequence or Generator
        Seed of the splits.

    Returns
    -------
    MIEstimate
        ``values``: the held-out average pointwise MI; ``train_values``: the closed form.

    Raises
    ------
    ValueError
        For mismatched or non-finite inputs, fewer than 4 samples per split, or ``dim``
        above the training sample count.

    Notes
    -----
    On the training split the features :math:`a=P_x(x)`, :math:`b=P_y(y)` get a joint
    shrinkage covariance :math:`\Sigma` (:func:`ledoit_wolf`).  The closed form is
    :math:`\tfrac12\log_2(\det\Sigma_{aa}\det\Sigma_{bb}/\det\Sigma)`; the held-out estimate
    averages the pointwise MI :math:`\log_2 p(a,b)-\log_2p(a)-\log_2p(b)` of the fitted
    Gaussian over the held-out rows, which converges to the closed form when the model is
    right and falls below it when the training fit does not generalise.  For jointly
    Gaussian data this is the exact MI of the projected features (a lower bound on the MI
    of ``x`` and ``y``); otherwise it is the MI of the best Gaussian approximation.

    A variable that is constant on the training split carries no information: the estimate
    of that split is exactly 0 (so are those of the other estimators).

    Examples
    --------
    >>> x, y, truth = correlated_gaussians(4000, 4, rho=0.8, rng=0)
    >>> est = gaussian_mi(x, y, dim=4, rng=1)
    >>> round(truth, 2), abs(est.bits - truth) < 0.1
    (2.95, True)
    """
    x, y = paired(x, y, min_samples=8)
    n = x.shape[0]
    test_fraction, n_seeds, n_train, n_test = _splits(n, test_fraction, n_seeds)
    if n_train < 4 or n_test < 4:
        raise ValueError(
            f"n_samples={n} with test_fraction={test_fraction} leaves {n_train} training and "
            f"{n_test} held-out rows; the Gaussian estimator needs at least 4 in each"
        )
    dim = check_dim(dim, n_train)
    seq = seed_sequence(rng)
    held, train = [], []
    for child in seq.spawn(n_seeds):
        tr, te = split(n, test_fraction, np.random.default_rng(child))
        if degenerate(x[tr], y[tr]):
            held.append(0.0)
            train.append(0.0)
            continue
        px, py = Projection(x[tr], dim), Projection(y[tr], dim)
        a_tr, b_tr = px(x[tr]), py(y[tr])
        z_tr = np.hstack([a_tr, b_tr])
        mean = z_tr.mean(axis=0)
        cov, _ = ledoit_wolf(z_tr)
        k = a_tr.shape[1]
        _, logdet = np.linalg.slogdet(cov)
        _, logdet_a = np.linalg.slogdet(cov[:k, :k])
        _, logdet_b = np.linalg.slogdet(cov[k:, k:])
        train.append(0.5 * (logdet_a + logdet_b - logdet) * LOG2E)
        z_te = np.hstack([px(x[te]), py(y[te])])
        pointwise = (
            _gaussian_logpdf(z_te, mean, cov)
            - _gaussian_logpdf(z_te[:, :k], mean[:k], cov[:k, :k])
            - _gaussian_logpdf(z_te[:, k:], mean[k:], cov[k:, k:])
        )
        held.append(pointwise.mean() * LOG2E)
    return _finish("gaussian", held, train, n_train, n_test, None,
                   {"dim": dim, "test_fraction": test_fraction}, seq)


def _ksg(a, b, k):
    """KSG estimator 1 in nats (max-norm in the joint space)."""
    n = a.shape[0]
    joint = np.hstack([a, b])
    distances, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf)
    radius = distances[:, -1]
    # strictly closer than the k-th joint neighbour: shrink the radius by one ulp
    inner = np.nextafter(radius, 0)
    n_a = cKDTree(a).query_ball_point(a, inner, p=np.inf, return_length=True) - 1
    n_b = cKDTree(b).query_ball_point(b, inner, p=np.inf, return_length=True) - 1
    return digamma(k) + digamma(n) - np.mean(digamma(n_a + 1) + digamma(n_b + 1))


def ksg_mi(x, y, *, k: int = 3, dim: int = 8, test_fraction: float = 0.5, n_seeds: int = 3,
           jitter: float = 1e-8, rng=None) -> MIEstimate:
    r"""Kraskov-Stoegbauer-Grassberger (KSG, estimator 1) mutual information, in bits.

    Parameters
    ----------
    x, y : array of shape (n, dx) and (n, dy)
        Paired samples.
    k : int
        Number of nearest neighbours, at least 1.
    dim : int
        Principal components kept for each variable (PCA fitted on the training split).
    test_fraction : float
        Fraction of rows on which the estimate is computed (the rest fits the PCA).
    n_seeds : int
        Number of random splits (and jitter draws).
    jitter : float
        Standard deviation of the Gaussian noise added to the standardised features to break
        ties (repeated points, e.g. representations of a repeated token); 0 disables it.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    MIEstimate
        ``values``: KSG on the held-out rows; ``train_values`` is empty (the training rows
        only fit the projection).

    Raises
    ------
    ValueError
        For mismatched inputs, ``k`` too large for the held-out split, or ``dim`` above the
        training sample count.

    Notes
    -----
    For each point, :math:`\epsilon_i` is the max-norm distance to its ``k``-th neighbour in
    the joint space and :math:`n_x(i)`, :math:`n_y(i)` count the other points strictly
    within :math:`\epsilon_i` in each marginal space; then
    :math:`\hat I=\psi(k)+\psi(N)-\langle\psi(n_x+1)+\psi(n_y+1)\rangle` nats (Kraskov,
    Stoegbauer & Grassberger 2004, *Estimating mutual information*).  The estimate cannot
    exceed :math:`\psi(N)-\psi(k)` (reached when ``y`` is a function of ``x`` preserving
    neighbourhoods), reported as ``ceiling_bits``.  Keep ``dim`` small (<= 16): the
    estimator's bias grows quickly with dimension.

    Examples
    --------
    >>> x, y, truth = correlated_gaussians(2000, 2, rho=0.9, rng=0)
    >>> est = ksg_mi(x, y, dim=2, rng=1)
    >>> round(truth, 2), abs(est.bits - truth) < 0.15
    (2.4, True)
    """
    x, y = paired(x, y, min_samples=8)
    n = x.shape[0]
    k = check.integer("k", k, low=1)
    jitter = check.real("jitter", jitter, low=0.0)
    test_fraction, n_seeds, n_train, n_test = _splits(n, test_fraction, n_seeds)
    if n_test < k + 2 or n_train < k + 2:
        raise ValueError(
            f"n_samples={n} with test_fraction={test_fraction} leaves {n_train} training and "
            f"{n_test} held-out rows; KSG with k={k} needs at least k + 2 = {k + 2} in each"
        )
    dim = check_dim(dim, n_train)
    seq = seed_sequence(rng)
    held, train = [], []
    for child in seq.spawn(n_seeds):
        generator = np.random.default_rng(child)
        tr, te = split(n, test_fraction, generator)
        if degenerate(x[tr], y[tr]):
            held.append(0.0)
            continue
        px, py = Projection(x[tr], dim), Projection(y[tr], dim)
        a, b = px(x[te]), py(y[te])
        if jitter:
            a = a + jitter * generator.standard_normal(a.shape)
            b = b + jitter * generator.standard_normal(b.shape)
        held.append(_ksg(a, b, k) * LOG2E)
    ceiling = float((digamma(n_test) - digamma(k)) * LOG2E)
    return _finish("ksg", held, train, n_train, n_test, ceiling,
                   {"dim": dim, "k": k, "test_fraction": test_fraction}, seq)


def correlated_gaussians(n: int, dim: int, *, rho: float | None = None,
                         mi_bits: float | None = None, rng=None):
    r"""Paired Gaussian samples with a known mutual information.

    Parameters
    ----------
    n : int
        Number of samples.
    dim : int
        Width of each of ``x`` and ``y``.
    rho : float, optional
        Correlation of each coordinate pair, in (-1, 1).
    mi_bits : float, optional
        The total MI wanted instead of ``rho`` (exactly one of the two), >= 0.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    x, y : arrays of shape (n, dim)
    mi_bits : float
        The true MI :math:`-\tfrac{d}{2}\log_2(1-\rho^2)`.

    Notes
    -----
    :math:`x\sim\mathcal N(0,I_d)` and :math:`y=\rho x+\sqrt{1-\rho^2}\,\xi`, coordinate by
    coordinate, so the pairs are independent and each carries
    :math:`-\tfrac12\log_2(1-\rho^2)` bits.  This is the Gaussian channel
    :math:`y'=x+\sigma\xi` with :math:`1+1/\sigma^2=1/(1-\rho^2)` up to a rescaling of ``y``.

    Examples
    --------
    >>> x, y, truth = correlated_gaussians(5, 3, mi_bits=6.0, rng=0)
    >>> x.shape, round(truth, 6)
    ((5, 3), 6.0)
    """
    n = check.integer("n", n, low=1)
    dim = check.integer("dim", dim, low=1)
    if (rho is None) == (mi_bits is None):
        raise ValueError(f"give exactly one of rho and mi_bits, got rho={rho}, mi_bits={mi_bits}")
    if rho is None:
        mi_bits = check.real("mi_bits", mi_bits, low=0.0)
        rho = math.sqrt(-math.expm1(-2.0 * mi_bits / dim * math.log(2.0)))
        if rho >= 1.0:
            raise ValueError(f"mi_bits={mi_bits} is too large to represent in float64")
    rho = check.real("rho", rho, low=-1.0, high=1.0, low_open=True, high_open=True)
    generator = np.random.default_rng(seed_sequence(rng))
    x = generator.standard_normal((n, dim))
    y = rho * x + math.sqrt(1.0 - rho * rho) * generator.standard_normal((n, dim))
    return x, y, float(-0.5 * dim * math.log2(1.0 - rho * rho))


def _neural(name):
    def estimator(x, y, **options):
        from . import neural

        return getattr(neural, f"{name}_mi")(x, y, **options)

    return estimator


ESTIMATORS = {
    "gaussian": gaussian_mi,
    "ksg": ksg_mi,
    "infonce": _neural("infonce"),
    "mine": _neural("mine"),
}


def estimate_mi(x, y, *, estimator: str = "gaussian", **options) -> MIEstimate:
    """Estimate the mutual information of ``x`` and ``y`` with the named estimator.

    Parameters
    ----------
    x, y : array of shape (n, dx) and (n, dy)
    estimator : {"gaussian", "ksg", "infonce", "mine"}
    **options
        Passed to :func:`gaussian_mi`, :func:`ksg_mi`,
        :func:`~llm_bridge.emergence.neural.infonce_mi` or
        :func:`~llm_bridge.emergence.neural.mine_mi`.

    Returns
    -------
    MIEstimate

    Examples
    --------
    >>> x, y, truth = correlated_gaussians(1000, 2, rho=0.5, rng=0)
    >>> estimate_mi(x, y, estimator="gaussian", dim=2, rng=0).estimator
    'gaussian'
    """
    check.choice("estimator", estimator, ESTIMATORS)
    return ESTIMATORS[estimator](x, y, **options)
