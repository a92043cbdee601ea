r"""Monte Carlo simulation of the list decoder.

Three simulators of the same model, and two contrasts:

* :func:`simulate` -- the count-level process (numba kernels, parallel over replicates);
* :func:`simulate_token_decoder` -- an explicit token-level list decoder for small
  ``M`` and ``T``, with real token sequences and real eligibility draws, which exists to
  check the count-level reduction and to show the model concretely;
* :func:`simulate_instant_generation` and :func:`simulate_top_k` -- decoders without the
  list-decoding threshold: one token at a time, and a fixed number of children.

The count-level process
-----------------------
With :math:`Z_t` erroneous candidates after :math:`t` steps and the oracle prefix alive,

.. math::  Z_{t+1} = \sum_{i=1}^{Z_t}\xi_{t,i} + I_t ,

:math:`\xi_{t,i}` iid from the step-:math:`t` offspring law and :math:`I_t` from the
immigration law (wrong tokens eligible on the oracle prefix; none once the oracle is
lost).  The sum of :math:`Z` iid offspring is drawn in one go, which is exact because
each family is closed under convolution:

* :math:`\sum_{i\le Z}\mathrm{Bin}(M,\varepsilon)=\mathrm{Bin}(MZ,\varepsilon)`: the
  :math:`MZ` token slots of the :math:`Z` candidates are independent Bernoulli
  (:math:`\varepsilon`) trials;
* :math:`\sum_{i\le Z}\mathrm{Poisson}(\mu)=\mathrm{Poisson}(Z\mu)`;
* :math:`\sum_{i\le Z}\mathrm{NB}(\mu,k)=\mathrm{NB}(Z\mu,Zk)`, a Poisson whose rate is
  :math:`\mathrm{Gamma}(Zk,\mu/k)` (gamma shapes add at a common scale);
* per-token rates (Poisson-binomial): grouping the tokens by rate,
  :math:`\sum_g\mathrm{Bin}(Z n_g, p_g)`; the immigration law with per-token rates
  (oracle token uniformly random, LeaveOneOut) draws the oracle token's group and then
  :math:`\sum_g\mathrm{Bin}(n_g-[g=g^*],p_g)`.

When the oracle is alive and the two laws share their parameter, offspring and
immigrants are drawn as one total (:math:`\mathrm{Bin}(MZ+M-1,\varepsilon)`, etc.).

Misses, list cap, ceiling (in this order within a step): while alive, the oracle prefix
still contributes its immigrants at the step it is missed (probability ``delta``) and
none afterwards.  With a cap ``K``, a list of :math:`1+Z>K` candidates keeps ``K``
chosen uniformly: the oracle survives with probability :math:`K/(1+Z)` and the count
becomes ``K - 1``, or ``K`` if the oracle is pruned.  A count above ``ceiling`` marks the
replicate *capped*: its count stays at ``ceiling`` from then on (the oracle path keeps
evolving; with cohort tracking, the cohort sizes of the last uncapped step are rescaled to
sum to ``ceiling`` and then held), and every statistic computed from it is a bound, flagged by
``capped_fraction`` and ``capped_by_step``.  No count ever overflows.

Reproducibility
---------------
``rng`` is normalised once to a :class:`numpy.random.SeedSequence`; its generated key and
the replicate index alone seed each replicate's generator (see :mod:`branching._kernels`).
Replicates are run in chunks of ``chunk_size`` on ``threads`` threads, and chunk
statistics are merged in chunk order, so the result is bit-identical for any number of
threads.  ``chunk_size`` does not change any replicate; it changes only the grouping of
floating-point sums, hence the statistics at the level of rounding (about 1e-15).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import _kernels as kern
from . import validation as check
from .cpus import available_cpus
from .model import ListDecoderModel
from .offspring import (
    Binomial,
    LeaveOneOut,
    NegativeBinomial,
    Poisson,
    PoissonBinomial,
)
from .seeding import SeedRecord, seed_sequence

__all__ = [
    "simulate",
    "simulate_token_decoder",
    "simulate_instant_generation",
    "simulate_top_k",
    "SimulationResult",
    "ContrastResult",
    "DEFAULT_CEILING",
    "MAX_CEILING",
    "QUANTILE_LEVELS",
]

logger = logging.getLogger(__name__)

#: Default ceiling on the number of erroneous candidates.
DEFAULT_CEILING = 10**15
#: Largest accepted ceiling (counts stay exact in double precision).
MAX_CEILING = kern.MAX_CEILING
#: Quantile levels reported by default.
QUANTILE_LEVELS = (0.1, 0.5, 0.9)
_MAX_RUNS = 2**40
_MAX_PATH_ENTRIES = 10**8
_MAX_CHUNK_ENTRIES = 2**25
_MAX_COHORT_T = 2000
_MAX_TOKEN_M = 10_000
_MAX_TOKEN_T = 200
_TABLE_MAX_MEAN = 256.0
_TABLE_MAX_ROWS = 2048
_TABLE_MAX_CELLS = 2**18


# =========================================================================== results
def _frozen(value):
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    return value


def _se_text(value: float, se: float) -> str:
    return f"{value:.4g} +/- {se:.2g}"


@dataclass(frozen=True, repr=False)
class SimulationResult:
    r"""Monte Carlo estimates for one model, with standard errors.

    Attributes
    ----------
    model : ListDecoderModel
        The model simulated.
    n_runs : int
        Number of independent replicates.
    seed : SeedRecord
        Entropy and spawn key of the :class:`numpy.random.SeedSequence` used;
        ``rng=result.seed_sequence()`` reproduces the run.
    level : {"count", "token"}
        Which simulator produced it.
    ceiling : int or None
        Ceiling on the erroneous count (count level only).
    chunk_size : int
        Replicates per chunk (count level; see the module notes on reproducibility).
    mean, mean_se : ndarray, shape (T + 1,)
        :math:`\mathbb E[Z_t]` and its standard error.
    variance, variance_se : ndarray, shape (T + 1,)
        :math:`\operatorname{Var}Z_t` (unbiased) and its standard error (delta method,
        from the fourth central moment).
    quantiles : dict[float, ndarray]
        For each level ``q``, the ``q``-quantile of :math:`Z_t` (smallest ``x`` with
        :math:`P(Z_t\le x)\ge q`).  Exact below 256; above, the lower edge of a bin of
        relative width at most 1/32 that contains it (count level), exact at token level.
    p_no_error, p_no_error_se : float
        :math:`P(Z_T = 0)`.
    accuracy, accuracy_se : float
        :math:`\mathbb E[\mathbf 1\{\text{oracle in } \mathcal L_T\}/L_T]`: the probability
        that a uniform choice from the final list is the oracle sequence (an empty list
        gives no output and counts as wrong).
    oracle_survival, oracle_survival_se : float
        Probability that the oracle sequence is in the final list.
    compute, compute_se : float
        :math:`\mathbb E[\sum_{t<T}L_t]`, the expected number of model calls.
    p_no_output, p_no_output_se : float
        Probability that the final list is empty (oracle lost and :math:`Z_T=0`).
    capped_fraction : float
        Fraction of replicates that hit the ceiling.  When positive, means, quantiles
        and compute from the first capped step on are lower bounds, and accuracy an
        upper bound.
    capped_by_step : ndarray, shape (T + 1,)
        Fraction of replicates capped at or before step ``t``.
    lost_by_miss, lost_by_pruning : ndarray, shape (T + 1,)
        Fraction of replicates that lose the oracle at step ``t`` by a miss or by pruning.
    cohort_mean, cohort_mean_se : ndarray, shape (T, T + 1), or None
        ``[j, t]``: mean number of candidates at step ``t`` whose first wrong token is at
        position ``j`` (they branched off the oracle after ``j`` correct tokens).
    depth_law, depth_law_se : ndarray, shape (T + 1,), or None
        ``[d]``: probability that a uniform choice from the final list shares exactly
        ``d`` leading tokens with the oracle (``d = T``: it is the oracle, so
        ``depth_law[T] == accuracy``); the remainder ``p_no_output`` has no output.
    paths : ndarray, shape (n_runs, T + 1), or None
        :math:`Z_t` per replicate (only when requested).
    oracle_lost_at : ndarray, shape (n_runs,), or None
        Step at which each replicate lost the oracle (-1: never), with ``paths``.
    lists : tuple or None
        Token level with ``keep_lists``: per replicate a dict with the oracle sequence,
        the final list (one row per candidate) and the chosen output (None if empty).
    """

    model: ListDecoderModel
    n_runs: int
    seed: SeedRecord
    level: str
    ceiling: int | None
    chunk_size: int
    mean: np.ndarray
    mean_se: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    quantiles: dict
    p_no_error: float
    p_no_error_se: float
    accuracy: float
    accuracy_se: float
    oracle_survival: float
    oracle_survival_se: float
    compute: float
    compute_se: float
    p_no_output: float
    p_no_output_se: float
    capped_fraction: float
    capped_by_step: np.ndarray
    lost_by_miss: np.ndarray
    lost_by_pruning: np.ndarray
    cohort_mean: np.ndarray | None = None
    cohort_mean_se: np.ndarray | None = None
    depth_law: np.ndarray | None = None
    depth_law_se: np.ndarray | None = None
    paths: np.ndarray | None = field(default=None)
    oracle_lost_at: np.ndarray | None = field(default=None)
    lists: tuple | None = field(default=None)

    def __post_init__(self):
        for value in self.__dict__.values():
            _frozen(value)
        for value in self.quantiles.values():
            _frozen(value)

    @property
    def steps(self) -> np.ndarray:
        """Steps ``0 .. T``."""
        return np.arange(self.model.T + 1)

    def seed_sequence(self) -> np.random.SeedSequence:
        """The :class:`~numpy.random.SeedSequence` that reproduces this result."""
        return self.seed.seed_sequence()

    def summary(self) -> dict[str, tuple[float, float]]:
        """Scalar statistics as ``{name: (value, standard error)}``."""
        T = self.model.T
        n = self.n_runs
        capped_se = math.sqrt(self.capped_fraction * (1 - self.capped_fraction) / (n - 1))
        return {
            "mean_Z_T": (float(self.mean[T]), float(self.mean_se[T])),
            "p_no_error": (self.p_no_error, self.p_no_error_se),
            "accuracy": (self.accuracy, self.accuracy_se),
            "oracle_survival": (self.oracle_survival, self.oracle_survival_se),
            "compute": (self.compute, self.compute_se),
            "p_no_output": (self.p_no_output, self.p_no_output_se),
            "capped_fraction": (self.capped_fraction, capped_se),
        }

    def rows(self):
        """Tidy rows ``(statistic, step, depth, value, se)``; ``depth`` is None except for
        ``cohort_mean`` (the branching position) and ``depth_law`` (the divergence depth)."""
        T = self.model.T
        per_step = [("mean", self.mean, self.mean_se),
                    ("variance", self.variance, self.variance_se)]
        per_step += [(f"quantile_{q:g}", values, None) for q, values in self.quantiles.items()]
        per_step += [
            ("capped_by_step", self.capped_by_step, None),
            ("lost_by_miss", self.lost_by_miss, None),
            ("lost_by_pruning", self.lost_by_pruning, None),
        ]
        for name, values, errors in per_step:
            for t in range(T + 1):
                yield name, t, None, float(values[t]), None if errors is None else float(errors[t])
        for name, (value, se) in self.summary().items():
            if name != "mean_Z_T":
                yield name, T, None, value, se
        if self.cohort_mean is not None:
            for j in range(T):
                for t in range(j + 1, T + 1):
                    yield ("cohort_mean", t, j, float(self.cohort_mean[j, t]),
                           float(self.cohort_mean_se[j, t]))
            for d in range(T + 1):
                yield "depth_law", T, d, float(self.depth_law[d]), float(self.depth_law_se[d])

    def to_pandas(self):
        """A tidy :class:`pandas.DataFrame`: one row per statistic, step (and depth)."""
        import pandas as pd

        columns = ["statistic", "step", "depth", "value", "se"]
        frame = pd.DataFrame(list(self.rows()), columns=columns)
        frame["depth"] = frame["depth"].astype("Int64")
        return frame

    def __repr__(self):
        parts = [
            f"level={self.level!r}",
            f"model={self.model!r}",
            f"n_runs={self.n_runs}",
            f"mean_Z_T={_se_text(self.mean[-1], self.mean_se[-1])}",
            f"p_no_error={_se_text(self.p_no_error, self.p_no_error_se)}",
            f"accuracy={_se_text(self.accuracy, self.accuracy_se)}",
            f"oracle_survival={_se_text(self.oracle_survival, self.oracle_survival_se)}",
            f"compute={_se_text(self.compute, self.compute_se)}",
        ]
        if self.capped_fraction > 0:
            first = int(np.argmax(self.capped_by_step > 0))
            parts.append(
                f"capped_fraction={self.capped_fraction:.4g} "
                f"(statistics from step {first} on are bounds)"
            )
        return "SimulationResult(" + ", ".join(parts) + ")"


@dataclass(frozen=True, repr=False)
class ContrastResult:
    r"""Result of a decoder without list decoding (one token at a time, or top-k lists).

    Attributes
    ----------
    kind : {"instant", "top_k"}
    M, T : int
    eps : float
    k : int or None
        Children per candidate (top-k only).
    n_runs : int
    seed : SeedRecord
        Entropy and spawn key of the seed sequence used.
    accuracy, accuracy_se : float
        Probability that the output is the oracle sequence.
    log_accuracy : float
        Its natural logarithm (``-inf`` if zero); for top-k the accuracy
        :math:`P(\text{oracle kept})/k^T` may underflow while this does not.
    oracle_survival, oracle_survival_se : float
        Probability that the oracle sequence is still produced after ``T`` steps (for
        instant generation: the current prefix is still correct).
    p_failed, p_failed_se : float
        Probability that the run stopped without output (instant generation: an empty
        eligible set; top-k: never).
    compute, compute_se : float or int
        Expected number of model calls; for top-k the exact integer
        :math:`\sum_{t<T}k^t` (standard error 0).
    list_size : int
        Final list size (1, or :math:`k^T`, exact).
    """

    kind: str
    M: int
    eps: float
    T: int
    k: int | None
    n_runs: int
    seed: SeedRecord
    accuracy: float
    accuracy_se: float
    log_accuracy: float
    oracle_survival: float
    oracle_survival_se: float
    p_failed: float
    p_failed_se: float
    compute: float | int
    compute_se: float
    list_size: int

    def summary(self) -> dict[str, tuple[float, float]]:
        """Scalar statistics as ``{name: (value, standard error)}``."""
        return {
            "accuracy": (self.accuracy, self.accuracy_se),
            "oracle_survival": (self.oracle_survival, self.oracle_survival_se),
            "p_failed": (self.p_failed, self.p_failed_se),
            "compute": (float(self.compute), self.compute_se),
        }

    def to_pandas(self):
        """A tidy :class:`pandas.DataFrame`: one row per statistic."""
        import pandas as pd

        rows = [(self.kind, name, value, se) for name, (value, se) in self.summary().items()]
        return pd.DataFrame(rows, columns=["decoder", "statistic", "value", "se"])

    def __repr__(self):
        k = f", k={self.k}" if self.k is not None else ""
        return (
            f"ContrastResult(kind={self.kind!r}, M={self.M}, eps={self.eps:.6g}, T={self.T}{k}, "
            f"n_runs={self.n_runs}, accuracy={_se_text(self.accuracy, self.accuracy_se)}, "
            f"oracle_survival={_se_text(self.oracle_survival, self.oracle_survival_se)}, "
            f"p_failed={_se_text(self.p_failed, self.p_failed_se)}, compute={self.compute:.6g})"
        )


# =========================================================================== validation
def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {check._show(value)}")
    return bool(value)


def _ceiling(value) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return check.integer("ceiling", value, low=1, high=MAX_CEILING)


def _levels(levels) -> tuple:
    arr = check.array("quantile_levels", levels, ndim=1, low=0.0, high=1.0)
    if np.any(arr == 0.0):
        raise ValueError("quantile_levels must lie in (0, 1], got a level 0")
    return tuple(float(q) for q in arr)


# =========================================================================== encoding
def _fusable(off_kind, off_par, imm_kind, imm_par) -> bool:
    """Whether offspring and immigrants can be drawn as one total."""
    if off_kind == kern.BINOMIAL and imm_kind == kern.BINOMIAL:
        return bool(np.array_equal(off_par[:, 0], imm_par[:, 0]))
    if off_kind == kern.POISSON and imm_kind == kern.POISSON:
        return True
    return off_kind == kern.GROUPS and imm_kind == kern.GROUPS


def _table(laws: kern.Laws) -> kern.Table:
    """Cumulative-probability tables of the fused binomial step total, when it is the same
    law at every step (empty arrays otherwise)."""
    p = laws.off_par[:, 0]
    if laws.fused and laws.off_kind == kern.BINOMIAL and np.all(p == p[0]) \
            and 0.0 < p[0] <= 0.5:
        return kern.Table(*kern.binomial_cdf_table(
            laws.off_n, laws.imm_n, float(p[0]), _TABLE_MAX_MEAN, _TABLE_MAX_ROWS,
            _TABLE_MAX_CELLS))
    return kern.Table(np.zeros(0), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _require_kernel_laws(model: ListDecoderModel) -> None:
    """Refuse, before any work, a model given by a law object that no kernel draws."""
    if isinstance(model.law, str):
        return
    for law in (model.offspring(0), model.immigration(0)):
        if not isinstance(law, (Binomial, Poisson, NegativeBinomial)):
            raise ValueError(
                f"law={model.law!r} cannot be simulated: the kernels draw binomial, Poisson "
                f"and negative-binomial counts (and Poisson-binomial groups only for a per-token "
                f"eps array), and {type(law).__name__} is none of these; its exact laws are in "
                "branching.exact"
            )


def _law_code(law) -> tuple[int, int, float, float]:
    """``(kind, binomial trials, probability or mean, shape)`` of one offspring law."""
    if isinstance(law, Binomial):
        return kern.BINOMIAL, law.n, law.p, 0.0
    if isinstance(law, Poisson):
        return kern.POISSON, 0, law.mu, 0.0
    if isinstance(law, NegativeBinomial):
        return kern.NEGATIVE_BINOMIAL, 0, law.mu, law.k
    if isinstance(law, (PoissonBinomial, LeaveOneOut)):
        return kern.GROUPS, 0, 0.0, 0.0
    raise ValueError(f"model has an offspring law the simulator does not know: {law!r}")


def _encode(model: ListDecoderModel, fuse: bool) -> kern.Laws:
    """Flatten the model's per-step laws into kernel arrays; offspring and immigrants are
    drawn as one total when ``fuse`` and the laws allow it."""
    steps = model.laws() if model.T > 0 else [(model.offspring(0), model.immigration(0))]
    if model.per_token:
        values, counts = np.unique(model.eps, return_counts=True)
        groups, grp_n = kern.law_table(values.astype(float), 0.0, True), counts.astype(np.int64)
    else:
        groups, grp_n = np.zeros((1, 4)), np.ones(1, dtype=np.int64)

    def table(laws):
        codes = [_law_code(law) for law in laws]
        kind, trials, _, shape = codes[0]
        values = np.array([code[2] for code in codes], dtype=float)
        return kind, trials, kern.law_table(values, float(shape), kind == kern.BINOMIAL)

    off_kind, off_n, off_par = table([f for f, _ in steps])
    imm_kind, imm_n, imm_par = table([h for _, h in steps])
    fused = fuse and _fusable(off_kind, off_par, imm_kind, imm_par)
    return kern.Laws(off_kind, off_n, off_par, imm_kind, imm_n, imm_par, groups, grp_n,
                     model.M, fused)


# =========================================================================== reduction
class _Moments:
    """Count, mean and central moment sums (orders 2..order, order 2 or 4) of a vector
    statistic, merged across groups by ``_kernels.merge_moments``."""

    def __init__(self, size, order: int):
        self.n = 0
        self.order = order
        self.m = np.zeros((order, *np.atleast_1d(size)))

    def merge(self, n_b: int, m_b: np.ndarray) -> None:
        """Merge a group of ``n_b`` observations with moments ``m_b`` (same layout)."""
        m_b = np.ascontiguousarray(m_b[: self.order], dtype=float)
        kern.merge_moments(self.n, self.m.reshape(self.order, -1), n_b,
                           m_b.reshape(self.order, -1))
        self.n += n_b

    def add_sample(self, values: np.ndarray) -> None:
        """Merge a block of observations (rows)."""
        values = np.asarray(values, dtype=float)
        mean = values.mean(axis=0)
        dev = values - mean
        block = [mean] + [(dev**k).sum(axis=0) for k in range(2, self.order + 1)]
        self.merge(values.shape[0], np.array(block))

    @property
    def mean(self) -> np.ndarray:
        return self.m[0]

    def variance(self) -> np.ndarray:
        return self.m[1] / (self.n - 1)

    def mean_se(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.variance(), 0.0) / self.n)

    def variance_se(self) -> np.ndarray:
        n = self.n
        mu2 = self.m[1] / n
        mu4 = self.m[3] / n
        return np.sqrt(np.maximum(mu4 - mu2 * mu2 * (n - 3) / (n - 1), 0.0) / n)


_OUTCOMES = kern.OUTCOMES


class _Summary:
    """Everything merged from chunks (or from token-level replicates)."""

    def __init__(self, T: int, cohorts: bool, histogram: bool):
        self.T = T
        self.z = _Moments(T + 1, 4)
        self.hist = np.zeros((T + 1, kern.N_BINS) if histogram else (0, 0), dtype=np.int64)
        self.outcomes = _Moments(len(_OUTCOMES), 2)
        self.capped_at = np.zeros(T + 1, dtype=np.int64)
        self.lost = np.zeros((3, T + 1), dtype=np.int64)
        self.cohort = _Moments((T, T + 1), 2) if cohorts else None
        self.depth = _Moments(T + 1, 2) if cohorts else None

    def add_replicates(self, outcomes) -> None:
        """Merge one block's :func:`_replicate_outcomes`."""
        n, moments, capped_hist, lost_hist = outcomes
        self.outcomes.merge(n, moments)
        self.capped_at += capped_hist
        self.lost += lost_hist

    def quantiles(self, levels) -> dict:
        n = self.z.n
        cum = np.cumsum(self.hist, axis=1)
        edges = _bin_edges()
        out = {}
        for q in levels:
            idx = np.array([np.searchsorted(row, q * n, side="left") for row in cum])
            out[q] = edges[np.minimum(idx, kern.N_BINS - 1)].astype(float)
        return out


def _replicate_outcomes(T, run_z, run_alive, run_compute, run_capped, run_lost, run_cause):
    """Summaries of one block of replicates (see ``_kernels.outcome_summary``)."""
    moments = np.empty((2, len(_OUTCOMES)))
    capped_hist = np.zeros(T + 1, dtype=np.int64)
    lost_hist = np.zeros((3, T + 1), dtype=np.int64)
    kern.outcome_summary(run_z, run_alive, run_compute, run_capped, run_lost, run_cause,
                         moments, capped_hist, lost_hist)
    return run_z.size, moments, capped_hist, lost_hist


def _bin_edges() -> np.ndarray:
    """Lower edge of every histogram bin (see ``_kernels.histogram_bin``)."""
    exact = np.arange(kern.EXACT_BINS, dtype=np.int64)
    b = np.arange(kern.N_BINS - kern.EXACT_BINS)
    octave = kern._EXACT_BITS + b // kern._SUB_BINS
    sub = b % kern._SUB_BINS
    upper = (kern._SUB_BINS + sub).astype(np.int64) << (octave - kern._SUB_BITS).astype(np.int64)
    return np.concatenate([exact, upper])


def _build_result(summary: _Summary, *, model, n_runs, seed, level, ceiling, chunk_size,
                  levels, paths=None, lost_at=None, lists=None) -> SimulationResult:
    T = model.T
    n = summary.z.n
    o = summary.outcomes
    mean, se = o.mean, o.mean_se()
    kw = {name: float(mean[i]) for i, name in enumerate(_OUTCOMES)}
    kse = {name: float(se[i]) for i, name in enumerate(_OUTCOMES)}
    cohort_mean = cohort_se = depth = depth_se = None
    if summary.cohort is not None:
        cohort_mean, cohort_se = summary.cohort.mean, summary.cohort.mean_se()
        depth, depth_se = summary.depth.mean, summary.depth.mean_se()
    capped_fraction = kw["capped"]
    if capped_fraction > 0:
        logger.warning(
            "%.3g%% of the replicates reached the ceiling %s; statistics from step %d on are "
            "bounds", 100 * capped_fraction, ceiling, int(np.argmax(summary.capped_at > 0)),
        )
    return SimulationResult(
        model=model, n_runs=n_runs, seed=seed, level=level, ceiling=ceiling,
        chunk_size=chunk_size,
        mean=summary.z.mean.copy(), mean_se=summary.z.mean_se(),
        variance=summary.z.variance(), variance_se=summary.z.variance_se(),
        quantiles=summary.quantiles(levels),
        p_no_error=kw["no_error"], p_no_error_se=kse["no_error"],
        accuracy=kw["accuracy"], accuracy_se=kse["accuracy"],
        oracle_survival=kw["survival"], oracle_survival_se=kse["survival"],
        compute=kw["compute"], compute_se=kse["compute"],
        p_no_output=kw["no_output"], p_no_output_se=kse["no_output"],
        capped_fraction=capped_fraction,
        capped_by_step=np.cumsum(summary.capped_at) / n,
        lost_by_miss=summary.lost[kern.LOST_MISS] / n,
        lost_by_pruning=summary.lost[kern.LOST_PRUNED] / n,
        cohort_mean=cohort_mean, cohort_mean_se=cohort_se,
        depth_law=depth, depth_law_se=depth_se,
        paths=paths, oracle_lost_at=lost_at, lists=lists,
    )


# =========================================================================== count level
def simulate(
    model: ListDecoderModel,
    n_runs: int,
    *,
    rng=None,
    ceiling: int = DEFAULT_CEILING,
    cohorts: bool = False,
    keep_paths: bool = False,
    threads: int | None = None,
    chunk_size: int = 1024,
    quantile_levels=QUANTILE_LEVELS,
    progress: bool = False,
) -> SimulationResult:
    r"""Simulate the count-level list-decoder process.

    Parameters
    ----------
    model : ListDecoderModel
        Any model: binomial, Poisson or negative-binomial laws, per-token rates
        (Poisson-binomial offspring, LeaveOneOut immigration), per-step rates,
        ``eps_oracle``, a miss probability ``delta`` and a list cap ``K``.
    n_runs : int
        Number of independent replicates, ``2 <= n_runs <= 2**40``.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator, keyword-only
        Source of randomness, normalised once by :func:`branching.seeding.seed_sequence`
        (a Generator is consumed to draw fresh entropy).  The result records the seed
        that reproduces it.
    ceiling : int, keyword-only
        Largest erroneous count simulated, ``1 <= ceiling <= 2**50``; a replicate whose
        count would exceed it is capped (frozen at ``ceiling``) and reported.
    cohorts : bool, keyword-only
        Track how many candidates descend from the error made at each step, and the
        divergence-depth law of a uniformly chosen output (cost :math:`O(T^2)` per
        replicate; ``T <= 2000``).  Cohort tracking draws the immigrants and the offspring of
        each cohort separately instead of as one total per step, so for the same ``rng`` the
        replicates differ from those of ``cohorts=False``; they have the same law, and every
        statistic agrees within its Monte Carlo error.
    keep_paths : bool, keyword-only
        Also return the raw paths :math:`Z_t` (``n_runs * (T + 1) <= 1e8``).
    threads : int, optional, keyword-only
        Threads running chunks concurrently (default: the CPUs available); the kernels
        release the GIL.  The result does not depend on it.
    chunk_size : int, keyword-only
        Replicates per chunk, ``1 <= chunk_size <= 2**20`` and
        ``chunk_size * (T + 1) <= 2**25`` (a chunk's paths are buffered).  It changes no
        replicate, only the grouping of floating-point sums (module notes).
    quantile_levels : sequence of float, keyword-only
        Levels in (0, 1] of the reported quantiles; an empty sequence turns the
        per-step histogram (memory :math:`O(T)` per thread) off.
    progress : bool, keyword-only
        Show a progress bar over chunks.

    Returns
    -------
    SimulationResult

    Notes
    -----
    Each step draws the total offspring of all :math:`Z_t` candidates at once, which is
    exact by closure under convolution (module notes).  All samplers are exact up to
    double-precision rounding.  A total whose Chernoff lower-tail bound of not exceeding
    the ceiling is below :math:`e^{-50}` is declared capped without being drawn.

    Replicate ``r`` is driven by its own generator, seeded from ``rng`` and ``r`` alone;
    chunks of replicates run on a thread pool and their statistics are merged in chunk
    order, so the result is bit-identical for any ``threads``.

    The list cap needs exact pre-pruning counts, so ``M * (K + 1) <= 2**50`` is required.
    With negative-binomial offspring a pre-pruning count above :math:`2^{51}` (a gamma
    rate that large) cannot be drawn exactly; such a replicate is marked capped, its
    oracle taken as pruned (true survival probability below :math:`K/2^{51}`).

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> from branching.simulate import simulate
    >>> model = ListDecoderModel.from_r0(M=1000, r0=0.8, T=20)
    >>> result = simulate(model, 4000, rng=1)
    >>> lam, m = 0.8 * 999 / 1000, 0.8          # immigration and offspring means
    >>> exact_mean = lam * (1 - m**20) / (1 - m)
    >>> bool(abs(result.mean[-1] - exact_mean) < 4 * result.mean_se[-1])
    True
    """
    if not isinstance(model, ListDecoderModel):
        raise ValueError(f"model must be a ListDecoderModel, got {check._show(model)}")
    _require_kernel_laws(model)
    n_runs = check.integer("n_runs", n_runs, low=2, high=_MAX_RUNS)
    ceiling = _ceiling(ceiling)
    cohorts = _flag("cohorts", cohorts)
    keep_paths = _flag("keep_paths", keep_paths)
    progress = _flag("progress", progress)
    threads = available_cpus() if threads is None else check.integer("threads", threads, low=1)
    chunk_size = check.integer("chunk_size", chunk_size, low=1, high=2**20)
    levels = _levels(quantile_levels) if len(quantile_levels) else ()
    T, M = model.T, model.M
    if model.K is not None and M * (model.K + 1) > MAX_CEILING:
        raise ValueError(
            f"K must be an integer in [1, {MAX_CEILING // M - 1}] for exact pruning at M={M} "
            f"(M * (K + 1) <= 2**50), got {model.K}; use K=None for an unbounded list"
        )
    if T + 1 > _MAX_CHUNK_ENTRIES:
        raise ValueError(
            f"T must be at most {_MAX_CHUNK_ENTRIES - 1} (a chunk buffers chunk_size * (T + 1) "
            f"<= 2**25 path entries, and chunk_size >= 1), got {T}"
        )
    if chunk_size * (T + 1) > _MAX_CHUNK_ENTRIES:
        raise ValueError(
            f"chunk_size must be at most {_MAX_CHUNK_ENTRIES // (T + 1)} at T={T} (a chunk's "
            f"paths are buffered: chunk_size * (T + 1) <= 2**25), got {chunk_size}"
        )
    if cohorts and T > _MAX_COHORT_T:
        raise ValueError(f"T must be at most {_MAX_COHORT_T} with cohorts=True, got {T}")
    if keep_paths and n_runs * (T + 1) > _MAX_PATH_ENTRIES:
        raise ValueError(
            f"n_runs * (T + 1) must be at most {_MAX_PATH_ENTRIES:.0e} with keep_paths=True, "
            f"got {n_runs * (T + 1)}"
        )
    seq = seed_sequence(rng)
    key = seq.generate_state(3, np.uint64)
    laws = _encode(model, fuse=not cohorts)
    table = _table(laws)
    K = 0 if model.K is None else model.K
    rules = kern.Rules(T, float(model.delta), K, ceiling)
    plain = laws.fused and laws.off_kind == kern.BINOMIAL and model.delta == 0.0 and K == 0
    n_chunks = -(-n_runs // chunk_size)
    threads = min(threads, n_chunks)
    logger.debug("simulate %r: %d runs in %d chunks on %d threads",
                 model, n_runs, n_chunks, threads)

    paths = np.empty((n_runs, T + 1), dtype=np.int64) if keep_paths else np.empty((0, 0), np.int64)
    lost_all = np.empty(n_runs, dtype=np.int64) if keep_paths else None
    summary = _Summary(T, cohorts, histogram=bool(levels))
    hist_shape = summary.hist.shape
    local = threading.local()
    hists: list[np.ndarray] = []
    lock = threading.Lock()

    def thread_hist():
        hist = getattr(local, "hist", None)
        if hist is None:
            hist = local.hist = np.zeros(hist_shape, dtype=np.int64)
            with lock:
                hists.append(hist)
        return hist

    cohort_shape = (2, T, T + 1) if cohorts else (2, 0, 0)
    depth_shape = (2, T + 1) if cohorts else (2, 0)

    def run_chunk(c):
        start = c * chunk_size
        n = min(chunk_size, n_runs - start)
        chunk_paths = paths[start:start + n] if keep_paths else np.empty((n, T + 1), np.int64)
        moments = np.empty((4, T + 1))
        out = kern.Outputs(
            z=np.empty(n, dtype=np.int64), alive=np.empty(n, dtype=np.int64),
            compute=np.empty(n), capped_at=np.empty(n, dtype=np.int64),
            lost_at=np.empty(n, dtype=np.int64), cause=np.empty(n, dtype=np.int64),
            paths=chunk_paths,
        )
        cohort_m = np.zeros(cohort_shape)
        depth_m = np.zeros(depth_shape)
        if cohorts:
            kern.cohort_chunk(key, start, laws, rules, out, cohort_m, depth_m)
        elif plain:
            kern.plain_chunk(key, start, laws, table, rules, out)
        else:
            kern.count_chunk(key, start, laws, table, rules, out)
        kern.path_summary(chunk_paths, moments, thread_hist())
        outcomes = _replicate_outcomes(T, out.z, out.alive, out.compute, out.capped_at,
                                       out.lost_at, out.cause)
        run_lost = out.lost_at
        return n, moments, outcomes, run_lost, cohort_m, depth_m

    def merge(c, out):
        n, moments, outcomes, run_lost, cohort_m, depth_m = out
        summary.z.merge(n, moments)
        summary.add_replicates(outcomes)
        if cohorts:
            summary.cohort.merge(n, cohort_m)
            summary.depth.merge(n, depth_m)
        if keep_paths:
            lost_all[c * chunk_size:c * chunk_size + n] = run_lost

    bar = _progress_bar(n_chunks, progress)
    try:
        if threads == 1:
            for c in range(n_chunks):
                merge(c, run_chunk(c))
                bar.update()
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                pending = deque()
                for c in range(n_chunks):
                    pending.append((c, pool.submit(run_chunk, c)))
                    while len(pending) > 2 * threads:
                        done, future = pending.popleft()
                        merge(done, future.result())
                        bar.update()
                while pending:
                    done, future = pending.popleft()
                    merge(done, future.result())
                    bar.update()
    finally:
        bar.close()
    for hist in hists:
        summary.hist += hist
    return _build_result(
        summary, model=model, n_runs=n_runs, seed=SeedRecord.from_seed_sequence(seq),
        level="count", ceiling=ceiling, chunk_size=chunk_size, levels=levels,
        paths=paths if keep_paths else None, lost_at=lost_all,
    )


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="chunks", leave=False)


# =========================================================================== token level
def simulate_token_decoder(
    M: int,
    eps,
    T: int,
    n_runs: int,
    *,
    eps_oracle: float | None = None,
    delta: float = 0.0,
    K: int | None = None,
    rng=None,
    keep_lists: bool = False,
    max_list: int = 100_000,
    quantile_levels=QUANTILE_LEVELS,
) -> SimulationResult:
    r"""Run an explicit token-level list decoder on a random oracle.

    Each replicate draws an oracle sequence :math:`y^*` uniformly from
    :math:`\{0,\dots,M-1\}^T`.  The list starts with the empty prefix.  At step ``t``
    every prefix in the list draws, independently for each of the ``M`` tokens ``v``,
    whether ``v`` is eligible: on the prefix :math:`y^*_{<t}` the token :math:`y^*_t` with
    probability ``1 - delta`` and every other token with probability ``eps_oracle``
    (default: ``eps``, per token if ``eps`` is an array); on any other prefix every token
    with probability ``eps`` (``eps[v]``).  The next list is every prefix extended by each
    of its eligible tokens; with a cap ``K`` it is cut to ``K`` prefixes chosen uniformly.
    Where each candidate left the oracle (the length of its common prefix with
    :math:`y^*`) is read off its tokens as it grows.  The output is a uniform choice from
    the final list.

    Parameters
    ----------
    M : int
        Vocabulary size, ``2 <= M <= 10000``.
    eps : float or array of shape (M,)
        False-eligibility probability (per token if an array).
    T : int
        Number of steps, ``0 <= T <= 200``.
    n_runs : int
        Replicates, ``n_runs >= 2``.
    eps_oracle, delta, K
        As in :class:`~branching.model.ListDecoderModel`.
    rng : None, int, SeedSequence or Generator, keyword-only
    keep_lists : bool, keyword-only
        Keep, per replicate, the oracle, the final list and the chosen output.
    max_list : int, keyword-only
        Largest list allowed; a list that grows beyond it raises ``ValueError`` (the
        explicit decoder is meant for small, mostly subcritical cases).
    quantile_levels : sequence of float, keyword-only

    Returns
    -------
    SimulationResult
        With ``level="token"``; the paths, cohort statistics and the divergence-depth law
        are always present.  Statistics use the conditional expectations ``1/L_T`` (and
        the shares of each depth) rather than the sampled output, which lowers their
        variance.

    Examples
    --------
    >>> from branching.simulate import simulate_token_decoder
    >>> result = simulate_token_decoder(4, 0.1, 3, 200, rng=0)
    >>> result.level, result.depth_law.shape
    ('token', (4,))
    """
    model = ListDecoderModel(M=M, eps=eps, T=T, eps_oracle=eps_oracle, delta=delta, K=K)
    M, T = model.M, model.T
    if M > _MAX_TOKEN_M:
        raise ValueError(f"M must be at most {_MAX_TOKEN_M} for the token-level decoder, got {M}")
    if T > _MAX_TOKEN_T:
        raise ValueError(f"T must be at most {_MAX_TOKEN_T} for the token-level decoder, got {T}")
    n_runs = check.integer("n_runs", n_runs, low=2, high=10**7)
    keep_lists = _flag("keep_lists", keep_lists)
    max_list = check.integer("max_list", max_list, low=1, high=10**7)
    levels = _levels(quantile_levels) if len(quantile_levels) else ()
    seq = seed_sequence(rng)
    gen = np.random.default_rng(seq)

    wrong = np.broadcast_to(np.asarray(model.eps, dtype=float), (M,))
    on_oracle = wrong if model.eps_oracle is None else np.full(M, model.eps_oracle)
    paths = np.zeros((n_runs, T + 1), dtype=np.int64)
    cohort = np.zeros((n_runs, T, T + 1))
    shares = np.zeros((n_runs, T + 1))
    alive_end = np.zeros(n_runs, dtype=bool)
    compute = np.zeros(n_runs)
    lost_at = np.full(n_runs, -1, dtype=np.int64)
    cause = np.zeros(n_runs, dtype=np.int64)
    lists = [] if keep_lists else None
    keep_correct = 1.0 - model.delta
    for r in range(n_runs):
        oracle = gen.integers(0, M, size=T)
        prefixes = np.zeros((1, 0), dtype=np.int64)
        # depth[i]: length of the common prefix of row i with the oracle sequence; a row
        # is the oracle prefix at step t exactly when depth[i] == t.
        depth = np.zeros(1, dtype=np.int64)
        for t in range(T):
            compute[r] += prefixes.shape[0]
            draws = gen.random((prefixes.shape[0], M))
            eligible = draws < wrong
            on = np.flatnonzero(depth == t)
            had_oracle = on.size > 0
            if had_oracle:
                row_rates = on_oracle.copy()
                row_rates[oracle[t]] = keep_correct
                eligible[on[0]] = draws[on[0]] < row_rates
            rows, tokens = np.nonzero(eligible)
            prefixes = np.concatenate([prefixes[rows], tokens[:, None]], axis=1)
            parent = depth[rows]
            depth = np.where((parent == t) & (tokens == oracle[t]), t + 1, parent)
            if had_oracle and not np.any(depth == t + 1):
                lost_at[r], cause[r] = t + 1, kern.LOST_MISS
            if model.K is not None and prefixes.shape[0] > model.K:
                keep = np.sort(gen.choice(prefixes.shape[0], model.K, replace=False))
                prefixes, depth = prefixes[keep], depth[keep]
                if lost_at[r] < 0 and had_oracle and not np.any(depth == t + 1):
                    lost_at[r], cause[r] = t + 1, kern.LOST_PRUNED
            if prefixes.shape[0] > max_list:
                raise ValueError(
                    f"the list grew to {prefixes.shape[0]} candidates, above max_list={max_list}; "
                    "the token-level decoder is for small M, eps and T (use simulate())"
                )
            wrong_rows = depth[depth <= t]
            paths[r, t + 1] = wrong_rows.size
            cohort[r, :, t + 1] = np.bincount(wrong_rows, minlength=T)[:T]
        alive_end[r] = bool(np.any(depth == T))
        if prefixes.shape[0] > 0:
            shares[r] = np.bincount(depth, minlength=T + 1) / prefixes.shape[0]
        if keep_lists:
            output = prefixes[gen.integers(prefixes.shape[0])] if prefixes.shape[0] else None
            lists.append({"oracle": oracle, "final_list": prefixes, "output": output})

    summary = _Summary(T, cohorts=True, histogram=bool(levels))
    moments = np.empty((4, T + 1))
    kern.path_summary(paths, moments, summary.hist)
    summary.z.merge(n_runs, moments)
    summary.add_replicates(_replicate_outcomes(
        T, paths[:, T].copy(), alive_end.astype(np.int64), compute,
        np.full(n_runs, -1, dtype=np.int64), lost_at, cause))
    summary.cohort.add_sample(cohort)
    summary.depth.add_sample(shares)
    return _build_result(
        summary, model=model, n_runs=n_runs, seed=SeedRecord.from_seed_sequence(seq),
        level="token", ceiling=None, chunk_size=n_runs, levels=levels, paths=paths, lost_at=lost_at,
        lists=tuple(lists) if keep_lists else None,
    )


# =========================================================================== contrasts
def _contrast_args(M, eps, T, n_runs):
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    T = check.integer("T", T, low=0)
    n_runs = check.integer("n_runs", n_runs, low=2, high=10**8)
    return M, eps, T, n_runs


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def simulate_instant_generation(
    M: int, eps: float, T: int, n_runs: int, *, rng=None
) -> ContrastResult:
    r"""One-token-at-a-time generation: the contrast without a list.

    A single prefix is extended ``T`` times.  At each step the eligible set of the current
    prefix is drawn as in the list decoder (on the correct prefix the correct token is
    always eligible and each of the ``M - 1`` others with probability ``eps``; on a wrong
    prefix each of the ``M`` tokens with probability ``eps``) and one token is picked
    uniformly from it.  Errors are irreversible.  If the eligible set is empty (only
    possible on a wrong prefix, probability :math:`(1-\varepsilon)^M`) generation stops
    without output: the run *failed*.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability.
    T : int
        Number of steps.
    n_runs : int
        Replicates, ``n_runs >= 2``.
    rng : None, int, SeedSequence or Generator, keyword-only

    Returns
    -------
    ContrastResult
        ``compute`` is the expected number of steps executed (model calls).

    Notes
    -----
    With :math:`B\sim\mathrm{Bin}(M-1,\varepsilon)` wrong tokens eligible, the correct
    token is picked with probability

    .. math:: \mathbb E\Big[\frac{1}{1+B}\Big]
        = \sum_{b}\binom{M-1}{b}\frac{\varepsilon^b(1-\varepsilon)^{M-1-b}}{b+1}
        = \frac{1}{M\varepsilon}\sum_{b}\binom{M}{b+1}\varepsilon^{b+1}(1-\varepsilon)^{M-1-b}
        = \frac{1-(1-\varepsilon)^M}{M\varepsilon},

    using :math:`\binom{M-1}{b}/(b+1)=\binom{M}{b+1}/M`.  Steps are independent, so
    :math:`P(\text{correct})=\big[(1-(1-\varepsilon)^M)/(M\varepsilon)\big]^T`, which decays
    exponentially for every :math:`\varepsilon>0`: no threshold.

    Examples
    --------
    >>> from branching.simulate import simulate_instant_generation
    >>> res = simulate_instant_generation(100, 0.005, 10, 20000, rng=0)
    >>> exact = ((1 - (1 - 0.005) ** 100) / (100 * 0.005)) ** 10
    >>> abs(res.accuracy - exact) < 4 * res.accuracy_se
    True
    """
    M, eps, T, n_runs = _contrast_args(M, eps, T, n_runs)
    seq = seed_sequence(rng)
    gen = np.random.default_rng(seq)
    correct = np.ones(n_runs, dtype=bool)
    running = np.ones(n_runs, dtype=bool)
    calls = np.zeros(n_runs)
    for _ in range(T):
        calls += running
        wrong_eligible = gen.binomial(M - 1, eps, size=n_runs)
        on_wrong = gen.binomial(M, eps, size=n_runs)
        picked_correct = gen.integers(0, wrong_eligible + 1) == 0
        running &= correct | (on_wrong > 0)
        correct &= picked_correct
    accuracy, accuracy_se = _mean_se(correct)
    failed, failed_se = _mean_se(~running)
    compute, compute_se = _mean_se(calls)
    return ContrastResult(
        kind="instant", M=M, eps=eps, T=T, k=None, n_runs=n_runs,
        seed=SeedRecord.from_seed_sequence(seq),
        accuracy=accuracy, accuracy_se=accuracy_se,
        log_accuracy=math.log(accuracy) if accuracy > 0 else -math.inf,
        oracle_survival=accuracy, oracle_survival_se=accuracy_se,
        p_failed=failed, p_failed_se=failed_se, compute=compute, compute_se=compute_se,
        list_size=1,
    )


def simulate_top_k(
    M: int, eps: float, T: int, k: int, n_runs: int, *, rng=None
) -> ContrastResult:
    r"""Fixed top-k lists: every candidate keeps exactly ``k`` children.

    Each prefix ranks its ``M`` tokens: eligible tokens (drawn as in the list decoder)
    first, in uniformly random order, then the ineligible ones, in random order; it keeps
    the first ``k``.  So the list holds exactly :math:`k^t` candidates at step ``t`` and the
    output is a uniform choice among the :math:`k^T` final ones.  On the oracle prefix the
    correct token (always eligible) is kept when it ranks among the first ``k`` of the
    :math:`1+B` eligible tokens, :math:`B\sim\mathrm{Bin}(M-1,\varepsilon)`: with
    probability :math:`\mathbb E[\min(1, k/(1+B))]` per step.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability.
    T : int
        Number of steps.
    k : int
        Children per candidate, ``1 <= k <= M``.
    n_runs : int
        Replicates, ``n_runs >= 2``.
    rng : None, int, SeedSequence or Generator, keyword-only

    Returns
    -------
    ContrastResult
        ``accuracy`` = P(oracle kept for ``T`` steps) / k**T (``log_accuracy`` never
        underflows); ``compute`` = :math:`\sum_{t<T}k^t` exactly (an int).

    Notes
    -----
    The list size does not depend on ``eps``: without the threshold-type eligibility rule
    there is no phase transition, and the accuracy is at most :math:`k^{-T}`.

    Examples
    --------
    >>> from branching.simulate import simulate_top_k
    >>> simulate_top_k(50, 0.01, 5, 2, 1000, rng=0).list_size
    32
    """
    M, eps, T, n_runs = _contrast_args(M, eps, T, n_runs)
    k = check.integer("k", k, low=1, high=M)
    seq = seed_sequence(rng)
    gen = np.random.default_rng(seq)
    kept = np.ones(n_runs, dtype=bool)
    for _ in range(T):
        eligible = 1 + gen.binomial(M - 1, eps, size=n_runs)
        kept &= gen.integers(0, eligible) < k
    survival, survival_se = _mean_se(kept)
    log_size = T * math.log(k)
    log_accuracy = math.log(survival) - log_size if survival > 0 else -math.inf
    return ContrastResult(
        kind="top_k", M=M, eps=eps, T=T, k=k, n_runs=n_runs,
        seed=SeedRecord.from_seed_sequence(seq),
        accuracy=math.exp(log_accuracy), accuracy_se=survival_se * math.exp(-log_size),
        log_accuracy=log_accuracy,
        oracle_survival=survival, oracle_survival_se=survival_se,
        p_failed=0.0, p_failed_se=0.0,
        compute=sum(k**t for t in range(T)), compute_se=0.0, list_size=k**T,
    )
