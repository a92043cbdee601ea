r"""Several error types: the Perron root of the mean matrix and the mean counts."""

from __future__ import annotations

import numpy as np

from .. import validation as check
from .moments import _finite_or_raise


def _mean_matrix(A) -> np.ndarray:
    A = check.array("A", A, ndim=2, low=0.0)
    if A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a non-empty square matrix, got shape {A.shape}")
    return A


def _immigration_vector(lam, d: int) -> np.ndarray:
    return check.array("lam", lam, shape=(d,), low=0.0)


def multitype_r0(A) -> float:
    r"""Reproduction number of a multi-type process: the Perron root :math:`\rho(A)`.

    Parameters
    ----------
    A : array of shape (d, d)
        Mean matrix, ``A[i, j]`` the mean number of type-``j`` children of a type-``i``
        candidate (non-negative).

    Returns
    -------
    float
        The spectral radius, which for a non-negative matrix is its largest real
        eigenvalue (Perron-Frobenius).

    Examples
    --------
    >>> round(multitype_r0([[0.5, 0.25], [0.25, 0.5]]), 12)
    0.75
    """
    A = _mean_matrix(A)
    return float(np.max(np.abs(np.linalg.eigvals(A))))


def multitype_stationary_mean(A, lam) -> np.ndarray:
    r"""Stationary mean :math:`\mathbb E Z_\infty = (I - A^\top)^{-1}\lambda` (Perron root < 1).

    Parameters
    ----------
    A : array of shape (d, d)
        Mean matrix (see :func:`multitype_r0`).
    lam : array of shape (d,)
        Mean immigration of each type per step.

    Returns
    -------
    ndarray of shape (d,)

    Notes
    -----
    :math:`\mathbb E Z_{t+1} = A^\top\mathbb E Z_t + \lambda` has the fixed point
    :math:`(I-A^\top)^{-1}\lambda = \sum_k (A^\top)^k\lambda`, finite iff
    :math:`\rho(A) < 1`.

    Examples
    --------
    >>> multitype_stationary_mean([[0.5, 0.0], [0.0, 0.5]], [1.0, 2.0])
    array([2., 4.])
    """
    A = _mean_matrix(A)
    lam = _immigration_vector(lam, A.shape[0])
    r0 = multitype_r0(A)
    if not r0 < 1:
        raise ValueError(
            f"the stationary mean exists only for a Perron root < 1, got Perron root {r0!r}"
        )
    return np.linalg.solve(np.eye(A.shape[0]) - A.T, lam)


def multitype_mean_path(A, lam, T: int) -> np.ndarray:
    r"""Mean counts of each type, :math:`\mathbb E Z_t` for ``t = 0..T``.

    Parameters
    ----------
    A : array of shape (d, d)
    lam : array of shape (d,)
    T : int

    Returns
    -------
    ndarray of shape (T+1, d)
        :math:`\mathbb E Z_{t+1} = A^\top\mathbb E Z_t + \lambda`, :math:`\mathbb E Z_0 = 0`.

    Examples
    --------
    >>> multitype_mean_path([[0.5, 0.5], [0.0, 1.0]], [1.0, 0.0], 2)
    array([[0. , 0. ],
           [1. , 0. ],
           [1.5, 0.5]])
    """
    A = _mean_matrix(A)
    lam = _immigration_vector(lam, A.shape[0])
    T = check.integer("T", T, low=0)
    out = np.zeros((T + 1, A.shape[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            out[t + 1] = A.T @ out[t] + lam
    _finite_or_raise(out.sum(axis=1), "E[Z_t]")
    return out
