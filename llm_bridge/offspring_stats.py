r"""Estimates of the branching parameters from list-decoder node records (numpy and scipy only).

A list-decoder run produces *nodes*: every candidate that was expanded, with the number of
eligible tokens it proposed (its offspring), whether it lies on the oracle path, a
Horvitz-Thompson weight (1 unless the list was subsampled at a cap) and the prompt it
belongs to.  From them:

* :math:`\hat R_0 = \sum_i w_i\xi_i / \sum_i w_i` over erroneous nodes (mean offspring);
* :math:`\hat\lambda` = mean number of wrong eligible tokens on the oracle prefix
  (immigration), and :math:`\hat\delta` = fraction of oracle nodes whose correct token was
  not eligible (miss);
* the dispersion :math:`k` of a negative binomial offspring law
  (:math:`\operatorname{Var}\xi = \mu + \mu^2/k`) by maximum likelihood, with a
  profile-likelihood interval (:func:`negative_binomial_dispersion`), and the index of
  dispersion :math:`\operatorname{Var}\xi/\mathbb E\xi` (1 for Poisson, :math:`1-\varepsilon`
  for the theory's binomial);
* bootstrap standard errors and percentile intervals over prompts, over nodes, or both
  (:func:`bootstrap_estimates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from branching import validation as check

__all__ = [
    "BOOTSTRAP_KINDS",
    "DispersionFit",
    "Estimates",
    "bootstrap_estimates",
    "negative_binomial_dispersion",
]

BOOTSTRAP_KINDS = ("prompts", "nodes", "both")

#: Range of log k searched by the dispersion fit; k above the upper end is reported as inf.
_LOG_K_RANGE = (math.log(1e-4), math.log(1e8))


@dataclass(frozen=True)
class DispersionFit:
    """Negative binomial dispersion of offspring counts.

    Attributes
    ----------
    k : float
        Maximum-likelihood shape (``inf`` when the likelihood increases towards the Poisson
        limit, i.e. no overdispersion).
    k_ci : (float, float)
        Profile-likelihood interval at ``level`` (upper end ``inf`` when the Poisson limit is
        inside it).
    mean : float
        Weighted mean count (the MLE of the negative binomial mean for every k).
    index_of_dispersion : float
        Weighted variance over mean.
    loglik, loglik_poisson : float
        Maximised log-likelihood and the Poisson (k = inf) log-likelihood.
    level : float
    defined : bool
        False when there are no counts or all are zero (then k is ``inf`` and the interval
        ``(0, inf)``: nothing is learnt).
    """

    k: float
    k_ci: tuple
    mean: float
    index_of_dispersion: float
    loglik: float
    loglik_poisson: float
    level: float
    defined: bool


def _nb_loglik(log_k: float, x: np.ndarray, w: np.ndarray, mu: float) -> float:
    k = math.exp(log_k)
    terms = (special.gammaln(x + k) - special.gammaln(k) - special.gammaln(x + 1.0)
             - k * math.log1p(mu / k) + x * (math.log(mu) - math.log(k + mu)))
    return float(np.dot(w, terms))


def negative_binomial_dispersion(counts, weights=None, *, level: float = 0.95) -> DispersionFit:
    r"""Maximum-likelihood negative binomial dispersion with a profile-likelihood interval.

    Parameters
    ----------
    counts : array_like of int
        Offspring counts, ``>= 0``.
    weights : array_like, optional
        Frequency (Horvitz-Thompson) weights, ``>= 0``; default 1.
    level : float
        Confidence level of the interval, in (0, 1).

    Returns
    -------
    DispersionFit

    Notes
    -----
    With :math:`\ell(\mu,k)=\sum_i w_i\log\mathrm{NB}(x_i;\mu,k)`, the score in :math:`\mu`
    vanishes at the weighted mean :math:`\bar x` for every :math:`k`, so the profile
    likelihood of :math:`k` is :math:`\ell(\bar x, k)`.  It is maximised over
    :math:`\log k\in[\log 10^{-4}, \log 10^{8}]`; a maximum at the upper end means the
    Poisson limit fits best and :math:`\hat k=\infty`.  The interval is
    :math:`\{k: 2(\ell_{\max}-\ell(\bar x,k))\le\chi^2_{1,\text{level}}\}`, open to
    :math:`\infty` when the Poisson log-likelihood is within the cut-off.  With weights
    other than 1 the likelihood is a pseudo-likelihood and the interval is approximate.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.negative_binomial(2.0, 2.0 / 3.0, size=2000)   # mean 1, k = 2
    >>> fit = negative_binomial_dispersion(x)
    >>> bool(fit.k_ci[0] < 2.0 < fit.k_ci[1])
    True
    """
    x = check.array("counts", counts, ndim=1, low=0.0)
    if np.any(x != np.round(x)):
        raise ValueError("counts must be whole numbers")
    w = np.ones_like(x) if weights is None else check.array(
        "weights", weights, shape=(x.size,), low=0.0)
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    total = float(w.sum())
    if total == 0.0 or not np.any(x[w > 0] > 0):
        mean = float(np.dot(w, x) / total) if total > 0 else 0.0
        return DispersionFit(math.inf, (0.0, math.inf), mean, math.nan if total == 0 else 0.0,
                             0.0, 0.0, level, False)
    mu = float(np.dot(w, x) / total)
    var = float(np.dot(w, (x - mu) ** 2) / total)
    loglik_poisson = float(np.dot(w, x * math.log(mu) - mu - special.gammaln(x + 1.0)))
    cut = 0.5 * stats.chi2.ppf(level, 1)

    def negative(log_k):
        return -_nb_loglik(log_k, x, w, mu)

    lo, hi = _LOG_K_RANGE
    grid = np.linspace(lo, hi, 49)
    values = np.array([-negative(g) for g in grid])
    best = int(np.argmax(values))
    if best == grid.size - 1 or loglik_poisson >= values[best]:
        log_k_hat, loglik = math.inf, max(loglik_poisson, float(values[best]))
    else:
        bracket = (grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)])
        opt = optimize.minimize_scalar(negative, bounds=bracket, method="bounded",
                                       options={"xatol": 1e-10})
        log_k_hat, loglik = float(opt.x), -float(opt.fun)
    target = loglik - cut

    def excess(log_k):
        return -negative(log_k) - target

    start = min(log_k_hat, hi)
    if excess(lo - 5.0) >= 0:
        lower = 0.0
    else:
        lower = math.exp(optimize.brentq(excess, lo - 5.0, start, xtol=1e-10))
    if loglik_poisson >= target:
        upper = math.inf
    else:
        top = hi
        while excess(top) > 0:
            top += 5.0
        upper = math.exp(optimize.brentq(excess, start, top, xtol=1e-10))
    return DispersionFit(
        k=math.exp(log_k_hat) if math.isfinite(log_k_hat) else math.inf,
        k_ci=(lower, upper), mean=mu, index_of_dispersion=var / mu, loglik=loglik,
        loglik_poisson=loglik_poisson, level=level, defined=True,
    )


@dataclass(frozen=True, repr=False)
class Estimates:
    """Branching parameters estimated from one list-decoder run.

    Attributes
    ----------
    r0, immigration, delta, index_of_dispersion : float
        Point estimates; ``r0`` is ``nan`` exactly when ``r0_defined`` is False (no
        erroneous node was expanded), ``immigration`` and ``delta`` when no oracle node was.
    r0_se, immigration_se, delta_se, index_of_dispersion_se : float
        Bootstrap standard errors.
    r0_ci, immigration_ci, delta_ci, index_of_dispersion_ci : (float, float)
        Bootstrap percentile intervals at ``level``.
    r0_defined : bool
    dispersion : DispersionFit
        Negative binomial dispersion of the erroneous offspring, profile-likelihood interval.
    n_erroneous_nodes, n_oracle_nodes : int
        Expanded nodes of each kind (unweighted).
    r0_boot : ndarray
        The bootstrap replicates of ``r0`` (replicates without an erroneous node dropped).
    bootstrap : str
        ``"prompts"``, ``"nodes"`` or ``"both"``.
    n_boot : int
    level : float
    """

    r0: float
    r0_se: float
    r0_ci: tuple
    r0_defined: bool
    immigration: float
    immigration_se: float
    immigration_ci: tuple
    delta: float
    delta_se: float
    delta_ci: tuple
    index_of_dispersion: float
    index_of_dispersion_se: float
    index_of_dispersion_ci: tuple
    dispersion: DispersionFit
    n_erroneous_nodes: int
    n_oracle_nodes: int
    r0_boot: np.ndarray
    bootstrap: str
    n_boot: int
    level: float

    def __repr__(self):
        def show(name):
            value, ci = getattr(self, name), getattr(self, f"{name}_ci")
            return f"{name}={value:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"

        k = self.dispersion
        return (f"Estimates({show('r0')}, {show('immigration')}, {show('delta')}, "
                f"k={k.k:.4g} [{k.k_ci[0]:.4g}, {k.k_ci[1]:.4g}], "
                f"n_erroneous_nodes={self.n_erroneous_nodes}, "
                f"n_oracle_nodes={self.n_oracle_nodes}, bootstrap={self.bootstrap!r})")

    def to_pandas(self):
        """One row per statistic: ``statistic, value, se, ci_low, ci_high, n``."""
        import pandas as pd

        rows = []
        for name, n in (("r0", self.n_erroneous_nodes), ("immigration", self.n_oracle_nodes),
                        ("delta", self.n_oracle_nodes),
                        ("index_of_dispersion", self.n_erroneous_nodes)):
            ci = getattr(self, f"{name}_ci")
            rows.append({"statistic": name, "value": getattr(self, name),
                         "se": getattr(self, f"{name}_se"), "ci_low": ci[0], "ci_high": ci[1],
                         "n": n})
        k = self.dispersion
        rows.append({"statistic": "dispersion_k", "value": k.k, "se": math.nan,
                     "ci_low": k.k_ci[0], "ci_high": k.k_ci[1], "n": self.n_erroneous_nodes})
        return pd.DataFrame(rows)


def _multiplicities(groups, strata, n_groups, kind, rng):
    """Bootstrap multiplicity of every node for one replicate."""
    n = groups.size
    if kind == "prompts":
        return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups))[groups]
    out = np.zeros(n, dtype=np.int64)
    if kind == "nodes":
        copies = np.ones(n_groups, dtype=np.int64)
    else:
        copies = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups))
    cells = groups * 2 + strata
    order = np.argsort(cells, kind="stable")
    bounds = np.searchsorted(cells[order], np.arange(2 * n_groups + 1))
    for cell in range(2 * n_groups):
        members = order[bounds[cell]:bounds[cell + 1]]
        c = copies[cell // 2]
        if members.size and c:
            if kind == "nodes":
                out[members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size))
            else:
                out[members] = rng.multinomial(c * members.size,
                                               np.full(members.size, 1.0 / members.size))
    return out


def _point(mult, erroneous, oracle, children, weight, wrong, missed):
    we = mult[erroneous] * weight[erroneous]
    total = we.sum()
    r0 = np.dot(we, children[erroneous]) / total if total > 0 else math.nan
    if total > 0 and r0 > 0:
        var = np.dot(we, (children[erroneous] - r0) ** 2) / total
        iod = var / r0
    else:
        iod = math.nan
    wo = mult[oracle]
    n_o = wo.sum()
    immigration = np.dot(wo, wrong[oracle]) / n_o if n_o > 0 else math.nan
    delta = np.dot(wo, missed[oracle]) / n_o if n_o > 0 else math.nan
    return r0, immigration, delta, iod


def _proportion_interval(p: float, n: int, se: float, level: float) -> tuple:
    """Wilson score interval for a proportion, with ``n`` shrunk by the design effect.

    The design effect is the bootstrap variance over the binomial variance ``p(1-p)/n``
    (at least 1; taken as 1 when ``p`` is 0 or 1, where the bootstrap has no spread).
    """
    deff = 1.0
    if 0.0 < p < 1.0 and math.isfinite(se):
        deff = max(1.0, se**2 / (p * (1.0 - p) / n))
    m = n / deff
    z = stats.norm.ppf(0.5 + level / 2.0)
    denom = 1.0 + z**2 / m
    centre = (p + z**2 / (2.0 * m)) / denom
    half = z * math.sqrt(p * (1.0 - p) / m + z**2 / (4.0 * m**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_estimates(
    prompt, oracle, children, weight, wrong, missed, *, n_prompts: int,
    bootstrap: str = "both", n_boot: int = 400, level: float = 0.95, rng=None,
) -> Estimates:
    r"""Point estimates and bootstrap intervals of the branching parameters.

    Parameters
    ----------
    prompt : array of int, shape (n,)
        Prompt index of every expanded node, in ``[0, n_prompts)``.
    oracle : array of bool, shape (n,)
        True for the oracle node (at most one per prompt and depth).
    children : array of int, shape (n,)
        Number of eligible tokens of every node.
    weight : array of float, shape (n,)
        Horvitz-Thompson weights of the nodes (1 without a cap).
    wrong : array of int, shape (n,)
        For oracle nodes, the number of eligible wrong tokens (immigrants); ignored elsewhere.
    missed : array of bool, shape (n,)
        For oracle nodes, True when the correct token was not eligible; ignored elsewhere.
    n_prompts : int
        Number of prompts (clusters).
    bootstrap : {"prompts", "nodes", "both"}
        What is resampled: whole prompts (cluster bootstrap: valid when nodes of one prompt
        are dependent), nodes within their kind (erroneous or oracle) and prompt (valid for
        independent nodes, as in the theory), or both stages (prompts, then nodes within
        each drawn prompt: conservative).
    n_boot : int
        Number of replicates, ``>= 20``.
    level : float
        Level of the percentile intervals, in (0, 1).
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    Estimates

    Raises
    ------
    ValueError
        For an unknown ``bootstrap`` kind, ``n_boot < 20``, ``level`` outside (0, 1) or
        ``n_prompts < 1``.

    Notes
    -----
    Every replicate draws a multiplicity :math:`m_i` per node and recomputes the ratio
    estimates with weights :math:`m_i w_i`; replicates with no erroneous (oracle) node give
    no value for the statistics that need one and are left out of their interval.  The
    standard error is the standard deviation of the replicates, the interval their
    ``(1-level)/2`` and ``(1+level)/2`` quantiles -- except for :math:`\delta`, a
    proportion often estimated from few misses, whose interval is the Wilson score interval
    with the number of oracle nodes divided by the design effect (bootstrap variance over
    binomial variance, at least 1), which keeps its coverage when no miss was seen.

    Examples
    --------
    Two prompts, each with one oracle node and two erroneous nodes:

    >>> est = bootstrap_estimates(
    ...     prompt=[0, 0, 0, 1, 1, 1], oracle=[True, False, False, True, False, False],
    ...     children=[2, 0, 2, 1, 1, 3], weight=np.ones(6), wrong=[1, 0, 0, 0, 0, 0],
    ...     missed=[False, False, False, True, False, False], n_prompts=2, n_boot=200, rng=0)
    >>> est.r0, est.immigration, est.delta     # (0 + 2 + 1 + 3) / 4, 1 / 2, 1 / 2
    (1.5, 0.5, 0.5)
    >>> est.n_erroneous_nodes, bool(est.r0_ci[0] <= est.r0 <= est.r0_ci[1])
    (4, True)
    """
    bootstrap = check.choice("bootstrap", bootstrap, BOOTSTRAP_KINDS)
    n_boot = check.integer("n_boot", n_boot, low=20)
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    n_prompts = check.integer("n_prompts", n_prompts, low=1)
    prompt = np.asarray(prompt, dtype=np.int64)
    oracle = np.asarray(oracle, dtype=bool)
    erroneous = ~oracle
    children = np.asarray(children, dtype=float)
    weight = np.asarray(weight, dtype=float)
    wrong = np.asarray(wrong, dtype=float)
    missed = np.asarray(missed, dtype=float)
    generator = np.random.default_rng(rng)
    arrays = (erroneous, oracle, children, weight, wrong, missed)
    point = _point(np.ones(prompt.size), *arrays)
    reps = np.array([
        _point(_multiplicities(prompt, oracle.astype(np.int64), n_prompts, bootstrap, generator),
               *arrays)
        for _ in range(n_boot)
    ]).reshape(n_boot, 4)
    q = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)

    def summary(j):
        values = reps[:, j][np.isfinite(reps[:, j])]
        if not math.isfinite(point[j]) or values.size < 2:
            return math.nan, (math.nan, math.nan)
        return float(values.std(ddof=1)), tuple(float(v) for v in np.quantile(values, q))

    (r0_se, r0_ci), (im_se, im_ci), (de_se, de_ci), (iod_se, iod_ci) = (summary(j) for j in range(4))
    n_oracle = int(oracle.sum())
    if n_oracle:
        de_ci = _proportion_interval(float(point[2]), n_oracle, de_se, level)
    dispersion = negative_binomial_dispersion(children[erroneous], weight[erroneous], level=level)
    return Estimates(
        r0=float(point[0]), r0_se=r0_se, r0_ci=r0_ci, r0_defined=bool(math.isfinite(point[0])),
        immigration=float(point[1]), immigration_se=im_se, immigration_ci=im_ci,
        delta=float(point[2]), delta_se=de_se, delta_ci=de_ci,
        index_of_dispersion=float(point[3]), index_of_dispersion_se=iod_se,
        index_of_dispersion_ci=iod_ci, dispersion=dispersion,
        n_erroneous_nodes=int(erroneous.sum()), n_oracle_nodes=int(oracle.sum()),
        r0_boot=reps[:, 0][np.isfinite(reps[:, 0])], bootstrap=bootstrap, n_boot=n_boot,
        level=level,
    )
