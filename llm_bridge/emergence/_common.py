"""Helpers shared by the estimators: seeds, splits, standardisation and PCA."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg

from branching import validation as check
from branching.seeding import seed_sequence

LOG2E = 1.0 / np.log(2.0)


def seed_of(seq: np.random.SeedSequence) -> int | None:
    """The integer entropy of a seed sequence when it was built from one integer."""
    entropy = seq.entropy
    return int(entropy) if isinstance(entropy, numbers.Integral) and not seq.spawn_key else None


def paired(x, y, *, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate two sample matrices with the same number of rows (1-d means one feature)."""
    x = check.array("x", x)
    y = check.array("y", y)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"x and y must be 1- or 2-dimensional, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[0] < min_samples:
        raise ValueError(
            f"x has {x.shape[0]} samples; this estimator needs at least {min_samples} "
            f"(n_samples must be >= {min_samples})"
        )
    if x.shape[1] == 0 or y.shape[1] == 0:
        raise ValueError(f"x and y need at least one feature, got shapes {x.shape} and {y.shape}")
    return x, y


def split(n: int, test_fraction: float, generator: np.random.Generator):
    """A random train/test partition of ``range(n)``."""
    order = generator.permutation(n)
    n_test = int(round(test_fraction * n))
    return order[n_test:], order[:n_test]


class Projection:
    """Standardise each feature, then project onto the leading principal components.

    Both steps are fitted on the training rows only.  Standardising is invertible, so it
    leaves the mutual information unchanged; the projection keeps the ``dim`` directions of
    largest variance (of the standardised features).  Constant features are left at zero.
    """

    def __init__(self, train: np.ndarray, dim: int):
        n, d = train.shape
        if dim > d:
            dim = d
        if dim > n:
            raise ValueError(
                f"dim must not exceed the number of training samples {n}, got dim={dim}"
            )
        self.mean = train.mean(axis=0)
        scale = train.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        z = (train - self.mean) / self.scale
        if dim == d:
            self.components = np.eye(d)
        else:
            # eigenvectors of the d x d covariance: cheaper than an SVD when n > d
            covariance = z.T @ z / n if n >= d else None
            if covariance is not None:
                _, vectors = scipy.linalg.eigh(covariance, subset_by_index=[d - dim, d - 1])
                self.components = vectors[:, ::-1]
            else:
                try:
                    _, _, vt = np.linalg.svd(z, full_matrices=False)
                except np.linalg.LinAlgError:  # divide and conquer can fail on repeated rows
                    _, _, vt = scipy.linalg.svd(z, full_matrices=False, lapack_driver="gesvd")
                self.components = vt[:dim].T
        self.dim = dim

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.scale) @ self.components


def check_dim(dim, n_train: int, *, name: str = "dim") -> int:
    """A PCA dimension: a positive integer not above the training sample count."""
    dim = check.integer(name, dim, low=1)
    if dim > n_train:
        raise ValueError(
            f"{name} must not exceed the number of training samples ({n_train}), got {dim}"
        )
    return dim


def degenerate(a: np.ndarray, b: np.ndarray) -> bool:
    """True when either variable is constant over the rows: its MI with anything is 0."""
    return bool(np.ptp(a, axis=0).max() == 0 or np.ptp(b, axis=0).max() == 0)
