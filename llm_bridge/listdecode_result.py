r"""Results of a real list decoder: records, estimates, the theory's prediction, storage.

:class:`ListDecodeResult` carries every parameter of the run (model, rule, temperature,
depth, cap, prompts, oracle, seed, bootstrap settings) and its :class:`Records`; the
estimates (:mod:`llm_bridge.offspring_stats`) are computed from the records on first use
with the run's bootstrap seed, so a saved and reloaded result gives identical numbers.

:meth:`ListDecodeResult.predict` feeds the measured :math:`(\hat R_0, \hat\lambda,
\hat\delta)` and offspring law into :mod:`branching.exact` and compares the predicted
:math:`\mathbb E Z_t`, :math:`P(Z_t=0)` and accuracy
:math:`(1-\delta)^t\,\mathbb E[1/(1+Z_t)\mid\text{oracle kept}]` with what the decoder
produced, depth by depth (:class:`Prediction`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import stats

from branching import ListDecoderModel, exact
from branching.seeding import SeedRecord

from . import cache
from .eligibility import rule_from_dict, rule_to_dict
from .offspring_stats import Estimates, bootstrap_estimates

__all__ = ["ListDecodeResult", "Prediction", "Records"]

_LAWS = ("auto", "binomial", "poisson", "negative_binomial")


@dataclass(frozen=True, eq=False)
class Records:
    """What the decoder saw, as flat arrays.

    Per prompt ``p`` and depth ``t = 0..T`` (shape ``(P, T+1)``): ``list_size`` (candidates
    kept), ``n_erroneous`` (:math:`Z_t`, the weighted number of erroneous candidates before
    any subsampling at that depth -- an unbiased estimate of the uncapped count),
    ``oracle_in_list`` and ``capped`` (the depth was subsampled).  ``oracle_ids`` has shape
    ``(P, T)`` (``-1`` after the oracle candidate was lost under a greedy oracle).

    Per node (every candidate in a list, depths ``0..T``; shape ``(n,)``): ``prompt``,
    ``depth``, ``parent`` (global node index, ``-1`` for the prompt), ``token`` (last token,
    ``-1`` for the prompt), ``weight`` (Horvitz-Thompson), ``oracle`` (on the oracle path),
    ``diverged`` (depth at which it left the oracle path, ``-1`` on it), ``children``
    (number of eligible tokens; ``-1`` at depth ``T``, not expanded), ``wrong`` (for oracle
    nodes: eligible wrong tokens; else ``-1``), ``missed`` (oracle node whose correct token
    was not eligible) and ``eligible_mass`` (total tempered probability of the eligible
    tokens; ``nan`` at depth ``T``).
    """

    NODE_FIELDS = ("depth", "parent", "token", "weight", "oracle", "diverged", "children",
                   "wrong", "missed", "eligible_mass")
    DEPTH_FIELDS = ("list_size", "n_erroneous", "oracle_in_list", "capped")
    _DTYPES = {"depth": np.int64, "parent": np.int64, "token": np.int64, "weight": float,
               "oracle": bool, "diverged": np.int64, "children": np.int64, "wrong": np.int64,
               "missed": bool, "eligible_mass": float, "prompt": np.int64}

    list_size: np.ndarray
    n_erroneous: np.ndarray
    oracle_in_list: np.ndarray
    capped: np.ndarray
    oracle_ids: np.ndarray
    nodes: dict = field(repr=False)

    @classmethod
    def from_trees(cls, trees, columns) -> "Records":
        """Stack per-prompt trees; node parents become global indices."""
        offset, parts = 0, []
        for nodes in columns:
            nodes = dict(nodes)
            parent = np.asarray(nodes["parent"], dtype=np.int64)
            nodes["parent"] = np.where(parent >= 0, parent + offset, -1)
            offset += len(parent)
            parts.append(nodes)
        merged = {name: np.concatenate([np.asarray(p[name]) for p in parts]).astype(dtype)
                  for name, dtype in cls._DTYPES.items()}
        return cls(
            list_size=np.stack([t.list_size for t in trees]),
            n_erroneous=np.stack([t.n_erroneous for t in trees]),
            oracle_in_list=np.stack([t.oracle_in_list for t in trees]),
            capped=np.stack([t.capped for t in trees]),
            oracle_ids=np.stack([t.oracle_ids for t in trees]),
            nodes=merged,
        )

    def expanded(self) -> np.ndarray:
        """Mask of the nodes that were expanded (depth < T)."""
        return self.nodes["children"] >= 0


@dataclass(frozen=True, eq=False)
class Prediction:
    r"""The theory's prediction from measured parameters against the decoder, per depth.

    Attributes
    ----------
    model : branching.ListDecoderModel
        The model built from the estimates (``M`` = vocabulary size).
    depth : ndarray, shape (T+1,)
    observed_mean, observed_mean_se, predicted_mean, predicted_sd : ndarray
        :math:`\mathbb E Z_t` across prompts (standard error over prompts) and the theory's
        mean and standard deviation of :math:`Z_t`.
    observed_p0, predicted_p0 : ndarray
        :math:`P(Z_t = 0)`.
    observed_accuracy, observed_accuracy_se, predicted_accuracy : ndarray
        :math:`\mathbb E[\mathbf 1\{\text{oracle in list}\}/(1+Z_t)]`.
    z_mean, z_p0, z_accuracy : ndarray
        Standardised differences: by the predicted standard error over ``n_prompts``
        (mean, P(Z=0)) or the observed one (accuracy); ``nan`` where that standard error is
        zero (e.g. depth 0, where both sides are exact).
    n_prompts : int
    """

    model: ListDecoderModel
    depth: np.ndarray
    observed_mean: np.ndarray
    observed_mean_se: np.ndarray
    predicted_mean: np.ndarray
    predicted_sd: np.ndarray
    observed_p0: np.ndarray
    predicted_p0: np.ndarray
    observed_accuracy: np.ndarray
    observed_accuracy_se: np.ndarray
    predicted_accuracy: np.ndarray
    z_mean: np.ndarray
    z_p0: np.ndarray
    z_accuracy: np.ndarray
    n_prompts: int

    def goodness_of_fit(self) -> dict:
        r"""``{statistic: (chi2, dof, p_value)}`` for ``mean``, ``p0`` and ``accuracy``.

        :math:`\chi^2=\sum_t z_t^2` over the depths where :math:`z_t` is defined, referred to
        :math:`\chi^2_{\text{dof}}`.  Depths share lineages and the parameters are
        estimated from the same run, so the p-value is a screening value, not exact.
        """
        out = {}
        for name in ("mean", "p0", "accuracy"):
            z = getattr(self, f"z_{name}")
            z = z[np.isfinite(z)]
            chi2 = float(np.sum(z**2))
            out[name] = (chi2, int(z.size), float(stats.chi2.sf(chi2, z.size)) if z.size else 1.0)
        return out

    def to_pandas(self):
        """One row per depth with every observed and predicted column."""
        import pandas as pd

        names = ("depth", "observed_mean", "observed_mean_se", "predicted_mean", "predicted_sd",
                 "z_mean", "observed_p0", "predicted_p0", "z_p0", "observed_accuracy",
                 "observed_accuracy_se", "predicted_accuracy", "z_accuracy")
        return pd.DataFrame({name: getattr(self, name) for name in names})

    def __repr__(self):
        gof = ", ".join(f"{k}: chi2={v[0]:.3g}/{v[1]} p={v[2]:.3g}"
                        for k, v in self.goodness_of_fit().items())
        return f"Prediction(model={self.model!r}, n_prompts={self.n_prompts}, {gof})"


@dataclass(frozen=True, eq=False, repr=False)
class ListDecodeResult:
    """A list-decoder run on a language model (see :func:`llm_bridge.listdecode.list_decode`).

    Attributes
    ----------
    model_name : str
    vocab_size : int
    rule : Threshold, Nucleus or TopK
    temperature : float
    n_steps : int
        Depth :math:`T`.
    cap : int or None
    oracle_kind : str
        ``"greedy"`` or ``"reference"``.
    prompt_ids : tuple of tuple of int
    records : Records
    bootstrap : str
    n_boot : int
    level : float
    seed : branching.seeding.SeedRecord
        The seed of the run (pass it back as ``rng`` to reproduce the run); the second child
        of its SeedSequence seeds the bootstrap.
    """

    model_name: str
    vocab_size: int
    rule: object
    temperature: float
    n_steps: int
    cap: int | None
    oracle_kind: str
    prompt_ids: tuple
    records: Records
    bootstrap: str
    n_boot: int
    level: float
    seed: SeedRecord

    # ------------------------------------------------------------------ per depth
    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_erroneous(self) -> np.ndarray:
        """:math:`Z_t` per prompt and depth, shape ``(P, T+1)`` (weighted when capped)."""
        return self.records.n_erroneous

    @property
    def list_size(self) -> np.ndarray:
        """Candidates kept per prompt and depth, shape ``(P, T+1)``."""
        return self.records.list_size

    @property
    def oracle_in_list(self) -> np.ndarray:
        return self.records.oracle_in_list

    @property
    def oracle_ids(self) -> np.ndarray:
        return self.records.oracle_ids

    # ------------------------------------------------------------------ estimates
    @cached_property
    def estimates(self) -> Estimates:
        """R0, immigration, delta and dispersion with intervals (computed once)."""
        nodes = self.records.nodes
        expanded = self.records.expanded()
        bootstrap_seed = self.seed.seed_sequence().spawn(2)[1]
        return bootstrap_estimates(
            nodes["prompt"][expanded], nodes["oracle"][expanded], nodes["children"][expanded],
            nodes["weight"][expanded], nodes["wrong"][expanded], nodes["missed"][expanded],
            n_prompts=self.n_prompts, bootstrap=self.bootstrap, n_boot=self.n_boot,
            level=self.level, rng=bootstrap_seed,
        )

    @property
    def r0(self) -> float:
        return self.estimates.r0

    @property
    def r0_ci(self) -> tuple:
        return self.estimates.r0_ci

    # ------------------------------------------------------------------ prediction
    def theory_model(self, law: str = "auto") -> ListDecoderModel:
        """The :class:`~branching.ListDecoderModel` with the measured parameters.

        ``M`` is the vocabulary size, ``eps = R0 / M``, ``eps_oracle = lambda / (M - 1)``,
        ``delta`` as measured and ``T = n_steps``.  ``law="auto"`` takes the negative
        binomial with the fitted ``k`` when the dispersion interval excludes the Poisson
        limit, else the binomial (the theory's own law).
        """
        law = _choice("law", law, _LAWS)
        est = self.estimates
        if not est.r0_defined:
            raise ValueError("cannot build the theory model: no erroneous candidate was "
                             "expanded, so R0 is undefined")
        if not math.isfinite(est.immigration):
            raise ValueError("cannot build the theory model: no oracle candidate was expanded")
        if est.delta >= 1.0:
            raise ValueError(f"cannot build the theory model: the oracle token was never "
                             f"eligible (delta = {est.delta})")
        M = self.vocab_size
        fit = est.dispersion
        if law == "auto":
            overdispersed = fit.defined and math.isfinite(fit.k_ci[1]) and est.r0 > 0
            law = "negative_binomial" if overdispersed else "binomial"
        extra = {"dispersion": fit.k} if law == "negative_binomial" else {}
        return ListDecoderModel(M=M, eps=est.r0 / M, T=self.n_steps,
                                eps_oracle=est.immigration / (M - 1), delta=est.delta,
                                law=law, **extra)

    def predict(self, law: str = "auto") -> Prediction:
        r"""Compare the decoder's :math:`Z_t` with the theory fed the measured parameters.

        Parameters
        ----------
        law : {"auto", "binomial", "poisson", "negative_binomial"}
            Offspring law of the theory model (:meth:`theory_model`).

        Returns
        -------
        Prediction

        Raises
        ------
        ValueError
            When R0 or the immigration mean is undefined, or delta is 1.

        Notes
        -----
        Predicted: :func:`branching.exact.mean_path`, :func:`~branching.exact.variance_path`,
        :func:`~branching.exact.prob_no_error` and :func:`~branching.exact.accuracy` at every
        horizon ``t = 0..T``.  Observed: across the ``P`` prompts, the mean of :math:`Z_t`,
        the fraction with :math:`Z_t=0` (the list is the oracle alone or empty) and the mean
        of :math:`\mathbf 1\{\text{oracle in list}\}/(1+Z_t)`.  With a cap, :math:`Z_t` is a
        weighted estimate: its mean stays unbiased, the other two are approximations.  The
        uncertainty of the estimated parameters is not propagated.
        """
        model = self.theory_model(law)
        T, P = self.n_steps, self.n_prompts
        Z = self.n_erroneous
        kept = self.oracle_in_list
        mean = exact.mean_path(model)
        sd = np.sqrt(np.maximum(exact.variance_path(model), 0.0))
        p0 = np.array([exact.prob_no_error(model.replace(T=t)) for t in range(T + 1)])
        acc = np.array([exact.accuracy(model.replace(T=t)) for t in range(T + 1)])
        obs_mean = Z.mean(axis=0)
        obs_mean_se = Z.std(axis=0, ddof=1) / math.sqrt(P) if P > 1 else np.full(T + 1, np.nan)
        obs_p0 = (Z == 0).mean(axis=0)
        per_prompt_acc = kept / (1.0 + Z)
        obs_acc = per_prompt_acc.mean(axis=0)
        obs_acc_se = (per_prompt_acc.std(axis=0, ddof=1) / math.sqrt(P) if P > 1
                      else np.full(T + 1, np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            se_mean = sd / math.sqrt(P)
            z_mean = np.where(se_mean > 0, (obs_mean - mean) / se_mean, np.nan)
            se_p0 = np.sqrt(p0 * (1.0 - p0) / P)
            z_p0 = np.where(se_p0 > 0, (obs_p0 - p0) / se_p0, np.nan)
            z_acc = np.where(obs_acc_se > 0, (obs_acc - acc) / obs_acc_se, np.nan)
        return Prediction(
            model=model, depth=np.arange(T + 1), observed_mean=obs_mean,
            observed_mean_se=obs_mean_se, predicted_mean=mean, predicted_sd=sd,
            observed_p0=obs_p0, predicted_p0=p0, observed_accuracy=obs_acc,
            observed_accuracy_se=obs_acc_se, predicted_accuracy=acc, z_mean=z_mean, z_p0=z_p0,
            z_accuracy=z_acc, n_prompts=P,
        )

    # ------------------------------------------------------------------ tables
    def params(self) -> dict:
        """Every parameter of the run, JSON-ready."""
        return {
            "model_name": self.model_name, "vocab_size": self.vocab_size,
            "rule": rule_to_dict(self.rule), "temperature": self.temperature,
            "n_steps": self.n_steps, "cap": self.cap, "oracle_kind": self.oracle_kind,
            "bootstrap": self.bootstrap, "n_boot": self.n_boot, "level": self.level,
            "seed": self.seed.to_dict(),
        }

    def to_pandas(self):
        """Tidy estimates: one row per statistic, with the run's parameters as columns."""
        table = self.estimates.to_pandas()
        table.insert(0, "rule", self.rule.name)
        table.insert(1, "rule_parameter", self.rule.parameter)
        table.insert(2, "temperature", self.temperature)
        table["n_steps"], table["cap"] = self.n_steps, self.cap
        table["n_prompts"], table["model"] = self.n_prompts, self.model_name
        return table

    def depth_table(self):
        """One row per prompt and depth: list size, Z_t, oracle in list, capped."""
        import pandas as pd

        P, D = self.n_erroneous.shape
        return pd.DataFrame({
            "prompt": np.repeat(np.arange(P), D), "depth": np.tile(np.arange(D), P),
            "list_size": self.list_size.ravel(), "n_erroneous": self.n_erroneous.ravel(),
            "oracle_in_list": self.oracle_in_list.ravel(),
            "capped": self.records.capped.ravel(),
        })

    def __repr__(self):
        est = self.estimates
        return (f"ListDecodeResult(model={self.model_name!r}, rule={self.rule!r}, "
                f"temperature={self.temperature:g}, n_steps={self.n_steps}, cap={self.cap}, "
                f"n_prompts={self.n_prompts}, oracle={self.oracle_kind!r}, "
                f"r0={est.r0:.4g} [{est.r0_ci[0]:.4g}, {est.r0_ci[1]:.4g}], "
                f"immigration={est.immigration:.4g}, delta={est.delta:.4g}, "
                f"n_erroneous_nodes={est.n_erroneous_nodes})")

    # ------------------------------------------------------------------ storage
    def save(self, path):
        """Write the run to ``path`` (``.npz`` with JSON metadata; no pickle), atomically."""
        rec = self.records
        arrays = {f"node_{k}": v for k, v in rec.nodes.items()}
        arrays.update({name: getattr(rec, name) for name in Records.DEPTH_FIELDS})
        arrays["oracle_ids"] = rec.oracle_ids
        arrays["prompt_flat"] = np.concatenate([np.asarray(p, dtype=np.int64)
                                                for p in self.prompt_ids])
        arrays["prompt_lengths"] = np.array([len(p) for p in self.prompt_ids], dtype=np.int64)
        return cache.write_npz_atomic(path, arrays, {"kind": "list_decode", **self.params()})

    @classmethod
    def load(cls, path) -> "ListDecodeResult":
        """Read a result written by :meth:`save`."""
        arrays, meta = cache.read_npz(path)
        if meta.get("kind") != "list_decode":
            raise ValueError(f"path {str(path)!r} does not hold a list-decode result")
        cuts = np.cumsum(arrays["prompt_lengths"])[:-1]
        prompts = tuple(tuple(int(x) for x in p) for p in np.split(arrays["prompt_flat"], cuts))
        records = Records(
            **{name: arrays[name] for name in Records.DEPTH_FIELDS},
            oracle_ids=arrays["oracle_ids"],
            nodes={k.removeprefix("node_"): v for k, v in arrays.items()
                   if k.startswith("node_")},
        )
        return cls(
            model_name=meta["model_name"], vocab_size=meta["vocab_size"],
            rule=rule_from_dict(meta["rule"]), temperature=meta["temperature"],
            n_steps=meta["n_steps"], cap=meta["cap"], oracle_kind=meta["oracle_kind"],
            prompt_ids=prompts, records=records, bootstrap=meta["bootstrap"],
            n_boot=meta["n_boot"], level=meta["level"],
            seed=SeedRecord.from_dict(meta["seed"]),
        )


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value

