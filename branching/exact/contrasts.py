r"""Decoders without a list, for contrast: instant generation and fixed top-``k`` lists."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .. import validation as check


def instant_generation_accuracy(M: int, eps: float, T: int) -> float:
    r"""Accuracy of instant generation: one prefix, one token drawn per step.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability of each wrong token, in [0, 1].
    T : int
        Number of steps, ``T >= 0``.

    Returns
    -------
    float

    Notes
    -----
    At each step the eligible set is the oracle token plus :math:`B\sim\mathrm{Bin}(M-1,
    \varepsilon)` wrong ones and the token is drawn uniformly from it; an error is never
    undone, so

    .. math::  P = \Bigl(\mathbb E\frac{1}{1+B}\Bigr)^T
               = \Bigl[\frac{1-(1-\varepsilon)^M}{M\varepsilon}\Bigr]^T,

    evaluated as ``-expm1(M log1p(-eps)) / (M eps)`` (limit 1 as eps -> 0).  It decays
    exponentially in ``T`` for every ``eps > 0``: without the list there is no threshold.

    Examples
    --------
    >>> round(instant_generation_accuracy(10, 0.05, 1), 12)
    0.802526121523
    >>> instant_generation_accuracy(10, 0.0, 100)
    1.0
    """
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    T = check.integer("T", T, low=0)
    if eps == 0.0:
        return 1.0
    with np.errstate(divide="ignore"):
        per_step = -math.expm1(M * float(np.log1p(-eps))) / (M * eps)
    return math.exp(T * math.log(per_step))


def top_k_list_size(k: int, T: int) -> int:
    r"""List size :math:`k^T` of a decoder that keeps exactly ``k`` children per candidate.

    Returns an exact Python ``int`` (no overflow).  The size does not depend on
    :math:`\varepsilon`: top-:math:`k` eligibility has no phase transition.

    Examples
    --------
    >>> top_k_list_size(2, 10)
    1024
    """
    k = check.integer("k", k, low=1)
    T = check.integer("T", T, low=0)
    return k**T


def _top_k_keep(M: int, eps: float, k: int) -> float:
    """P(the oracle token is among the k kept) = E[min(1, k / (1 + B))], B ~ Bin(M-1, eps)."""
    if k >= M:
        return 1.0
    b = np.arange(M)
    probs = stats.binom.pmf(b, M - 1, eps)
    return float(min(1.0, math.fsum(probs * np.minimum(1.0, k / (1.0 + b)))))


def _top_k_args(M, eps, k, T):
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    k = check.integer("k", k, low=1, high=M)
    T = check.integer("T", T, low=0)
    return M, eps, k, T


def top_k_oracle_kept(M: int, eps: float, k: int, T: int) -> float:
    r"""Probability that a fixed top-``k`` decoder keeps the oracle for ``T`` steps.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability of each wrong token, in [0, 1].
    k : int
        Children kept per candidate, ``1 <= k <= M``.
    T : int
        Number of steps.

    Returns
    -------
    float
        :math:`p_k^T` with :math:`p_k = \mathbb E[\min(1, k/(1+B))]`,
        :math:`B\sim\mathrm{Bin}(M-1,\varepsilon)`.

    Notes
    -----
    Assumption: the decoder ranks the tokens by a score under which every eligible token
    beats every ineligible one, ties among eligible tokens broken uniformly at random, and
    keeps the top ``k``.  On the oracle prefix the oracle token is one of :math:`1+B`
    eligible tokens, so it survives the step iff its random rank is at most ``k``.
    :math:`p_k<1` for every :math:`\varepsilon>0` when :math:`k<M`: the oracle is lost
    exponentially fast in ``T`` at any error rate.

    Examples
    --------
    >>> round(top_k_oracle_kept(10, 0.05, 1, 1), 12)  # top-1 = instant generation
    0.802526121523
    """
    M, eps, k, T = _top_k_args(M, eps, k, T)
    p = _top_k_keep(M, eps, k)
    return 0.0 if p == 0.0 else math.exp(T * math.log(p))


def top_k_accuracy(M: int, eps: float, k: int, T: int) -> float:
    r"""Accuracy of a fixed top-``k`` decoder with a uniform final choice.

    The list always holds :math:`k^T` candidates and contains the oracle with probability
    :func:`top_k_oracle_kept` (same assumption), so a uniform draw is correct with
    probability :math:`(p_k/k)^T`.  For ``k = 1`` it equals
    :func:`instant_generation_accuracy`.

    Examples
    --------
    >>> round(top_k_accuracy(10, 0.05, 2, 1), 12)
    0.487401416661
    """
    M, eps, k, T = _top_k_args(M, eps, k, T)
    p = _top_k_keep(M, eps, k) / k
    return 0.0 if p == 0.0 else math.exp(T * math.log(p))
