r"""First passage of the list size: the exact law of the step at which the list first
holds ``K`` candidates, and its super-critical approximation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import signal, sparse
from scipy.sparse import csgraph

from .. import validation as check
from ..model import ListDecoderModel
from ..offspring import OffspringLaw
from ._common import _require_model


@dataclass(frozen=True)
class FirstPassage:
    r"""Law of :math:`\tau_K = \inf\{t: L_t \ge K\}`, the first step the list reaches ``K``.

    Attributes
    ----------
    K : int
    survival : ndarray of shape (T+1,)
        :math:`P(\tau_K > t)`, ``t = 0..T``.
    pmf : ndarray of shape (T+1,)
        :math:`P(\tau_K = t)`, ``t = 0..T``.
    mean : float or None
        :math:`\mathbb E\tau_K` over an unbounded horizon (``inf`` if the list may never
        reach ``K``); None for per-position rates, which are defined only up to ``T``.
    prob_finite : float or None
        :math:`P(\tau_K < \infty)` (None for per-position rates).
    model : ListDecoderModel
    """

    K: int
    survival: np.ndarray = field(repr=False)
    pmf: np.ndarray = field(repr=False)
    mean: float | None
    prob_finite: float | None
    model: ListDecoderModel

    def to_pandas(self):
        """Tidy table: one row per step ``t`` with P(tau = t) and P(tau > t)."""
        import pandas as pd

        frame = pd.DataFrame({"t": np.arange(self.pmf.size), "pmf": self.pmf,
                              "survival": self.survival})
        frame.attrs.update(K=self.K, mean=self.mean, prob_finite=self.prob_finite,
                           model=repr(self.model))
        return frame

    def __repr__(self):
        return (f"FirstPassage(K={self.K}, mean={self.mean}, prob_finite={self.prob_finite}, "
                f"P(tau<=T)={math.fsum(self.pmf):.6g}, model={self.model!r})")


def _truncated_convolve(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """First ``size`` coefficients of the product of two series (exact truncation)."""
    if min(a.size, b.size) > 200:
        out = signal.fftconvolve(a, b)[:size]
        out = np.clip(out, 0.0, None)
    else:
        out = np.convolve(a, b)[:size]
    if out.size < size:
        out = np.pad(out, (0, size - out.size))
    return out


def _killed_kernel(f: OffspringLaw, h: OffspringLaw, K: int, delta: float):
    r"""Sub-stochastic kernel of (oracle kept, Z) killed when ``L >= K``, and its escape.

    States ``0..K-2`` are "oracle kept, Z = z" (``L = z + 1``); with misses, states
    ``K-1..2K-2`` are "oracle lost, Z = z" (``L = z``, ``z = 0..K-1``).  Row ``z`` of the
    kept block is the law of :math:`\sum_{i\le z}\xi_i + I` restricted to small values,
    obtained by truncated convolution (exact: all coefficients are non-negative).  Returns
    ``(Q, escape)`` with ``escape[i]`` the probability of being killed from state ``i``;
    transitions and escapes that the supports of the laws rule out are exactly zero.
    """
    size = K  # values 0..K-1 are all that any block needs
    fp = np.asarray(f.pmf(size - 1), dtype=float)
    hp = np.asarray(h.pmf(size - 1), dtype=float)
    f_max, h_max = f.support_max, h.support_max
    kept_states = K - 1
    lost_states = K if delta > 0 else 0
    n = kept_states + lost_states
    Q = np.zeros((n, n))
    escape = np.zeros(n)
    power = np.zeros(size)
    power[0] = 1.0  # law of a sum of zero offspring
    for z in range(max(kept_states, lost_states)):
        top_lost = z * f_max if z > 0 else 0.0  # largest possible sum of z offspring
        if z < kept_states:
            row = _truncated_convolve(power, hp, size)
            top = top_lost + h_max
            if top < size:
                row[int(top) + 1:] = 0.0
            Q[z, :kept_states] = (1.0 - delta) * row[:kept_states]
            if lost_states:
                Q[z, kept_states:] = delta * row[:lost_states]
            # killed iff Z' >= K-1 (kept) or, after a miss, Z' >= K
            reach = (1.0 - delta) * (top >= K - 1) + delta * (top >= K)
            if reach > 0:
                escape[z] = max(0.0, 1.0 - math.fsum(Q[z]))
        if z < lost_states:
            row = power.copy()
            if top_lost < size:
                row[int(top_lost) + 1:] = 0.0
            Q[kept_states + z, kept_states:] = row[:lost_states]
            if top_lost >= K:
                escape[kept_states + z] = max(0.0, 1.0 - math.fsum(row[:lost_states]))
        power = _truncated_convolve(power, fp, size)
    return Q, escape


def time_to_size(model: ListDecoderModel, K: int) -> FirstPassage:
    r"""Exact law of the first step at which the list holds at least ``K`` candidates.

    Parameters
    ----------
    model : ListDecoderModel
    K : int
        Target list size, ``K >= 1`` (``L_0 = 1``, so ``K = 1`` gives ``tau = 0``).

    Returns
    -------
    FirstPassage

    Notes
    -----
    :math:`L_t = A_t + Z_t` (oracle included while kept).  The pair :math:`(A_t, Z_t)` is
    a Markov chain; killed on reaching :math:`L\ge K` it lives on the states
    :math:`(1, 0..K-2)` and, with misses, :math:`(0, 0..K-1)`, with sub-stochastic kernel
    :math:`Q_t` (:func:`_killed_kernel`).  Then :math:`P(\tau_K > t) = e_0^\top
    Q_0\cdots Q_{t-1}\mathbf 1`.  For step-independent laws, :math:`\mathbb E\tau_K =
    e_0^\top(I-Q)^{-1}\mathbf 1` when every state reachable from the start can reach
    :math:`K` (``inf`` otherwise), and :math:`P(\tau_K<\infty) = u_0` with
    :math:`(I-Q)u = q^{\mathrm{esc}}` (the per-state killing probabilities) on the states
    that can escape.  The cost is :math:`O(K^2\log K)` per distinct step law, :math:`O(TK^2)`
    for the law and :math:`O(K^3)` for the mean (``K`` in the low thousands is fine).  See
    :func:`time_to_size_asymptotic` for the super-critical approximation.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> fp = time_to_size(ListDecoderModel(M=10, eps=0.05, T=2), K=2)
    >>> round(float(fp.pmf[1]), 12)  # P(Z_1 >= 1) = 1 - 0.95**9
    0.369750590275
    """
    model = _require_model(model, "time_to_size")
    K = check.integer("K", K, low=1)
    T = model.T
    if K == 1:
        pmf_t = np.zeros(T + 1)
        pmf_t[0] = 1.0
        return FirstPassage(K=K, survival=np.zeros(T + 1), pmf=pmf_t, mean=0.0,
                            prob_finite=1.0, model=model)
    delta = model.delta
    fixed = (_killed_kernel(model.offspring(0), model.immigration(0), K, delta)
             if model.homogeneous else None)
    dist = np.zeros(K - 1 + (K if delta > 0 else 0))
    dist[0] = 1.0
    survival = np.ones(T + 1)
    pmf_t = np.zeros(T + 1)
    for t in range(T):
        Q, escape = fixed if fixed is not None else _killed_kernel(
            model.offspring(t), model.immigration(t), K, delta)
        pmf_t[t + 1] = float(dist @ escape)
        dist = dist @ Q
        survival[t + 1] = min(survival[t], float(math.fsum(dist)))
    mean = prob_finite = None
    if fixed is not None:
        mean, prob_finite = _killed_chain_summary(*fixed)
    return FirstPassage(K=K, survival=survival, pmf=np.clip(pmf_t, 0.0, 1.0), mean=mean,
                        prob_finite=prob_finite, model=model)


def _killed_chain_summary(Q: np.ndarray, escape: np.ndarray) -> tuple[float, float]:
    """(E tau, P(tau < inf)) for the killed chain started in state 0.

    Graph search on the support of ``Q`` (plus a sink for the killing) decides which states
    can still reach ``K``; the mean is infinite when the start can reach a state that
    cannot.  On the states that can, ``I - Q`` is non-singular.
    """
    n = Q.shape[0]
    rows, cols = np.nonzero(Q > 0)
    sinks = np.flatnonzero(escape > 0)
    graph = sparse.csr_matrix(
        (np.ones(rows.size + sinks.size), (np.concatenate([rows, sinks]),
                                           np.concatenate([cols, np.full(sinks.size, n)]))),
        shape=(n + 1, n + 1),
    )
    reach = np.zeros(n + 1, dtype=bool)
    reach[csgraph.breadth_first_order(graph, 0, directed=True, return_predecessors=False)] = True
    can_escape = np.zeros(n + 1, dtype=bool)
    can_escape[csgraph.breadth_first_order(graph.T.tocsr(), n, directed=True,
                                           return_predecessors=False)] = True
    reach, can_escape = reach[:n], can_escape[:n]
    if not can_escape[0]:
        return math.inf, 0.0
    idx = np.flatnonzero(can_escape)
    sub = np.eye(idx.size) - Q[np.ix_(idx, idx)]
    solution = np.linalg.solve(sub, np.column_stack([escape[idx], np.ones(idx.size)]))
    prob_finite = float(min(1.0, max(0.0, solution[0, 0])))
    if np.any(reach & ~can_escape):
        return math.inf, prob_finite
    mean = float(solution[0, 1])
    if not (math.isfinite(mean) and mean >= 0):
        raise ValueError(f"E[tau_K] could not be computed (solve returned {mean!r})")
    return mean, prob_finite


def time_to_size_asymptotic(model: ListDecoderModel, K: int) -> float:
    r"""Super-critical approximation :math:`\log(K(m-1)/\lambda)/\log m` of :math:`\mathbb E\tau_K`.

    Parameters
    ----------
    model : ListDecoderModel
        Homogeneous, ``delta = 0``, ``r0 > 1``.
    K : int
        Target list size, ``K >= 2``.

    Returns
    -------
    float

    Notes
    -----
    :math:`Z_t\approx W m^t` with :math:`\mathbb E W = \lambda/(m-1)`, so
    :math:`\tau_K\approx(\log K - \log W)/\log m`; replacing :math:`\log W` by
    :math:`\log\mathbb E W` gives this formula (reference sec. 4.8).  By Jensen's inequality
    it underestimates :math:`\mathbb E[-\log W]`, and it ignores the discreteness of
    :math:`t`; it is a large-``K`` guide, not an exact value (:func:`time_to_size` is).

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> round(time_to_size_asymptotic(ListDecoderModel(M=10, eps=0.2, T=0), 1000), 6)
    9.117787
    """
    model = _require_model(model, "time_to_size_asymptotic")
    K = check.integer("K", K, low=2)
    if model.per_step or model.delta > 0:
        raise ValueError("time_to_size_asymptotic needs step-independent laws and delta = 0")
    m, lam = model.offspring(0).mean, model.immigration(0).mean
    if not m > 1:
        raise ValueError(f"time_to_size_asymptotic needs r0 > 1 (super-critical), got r0={m!r}")
    if lam <= 0:
        raise ValueError(f"time_to_size_asymptotic needs an immigration mean > 0, got {lam!r}")
    return math.log(K * (m - 1.0) / lam) / math.log(m)
