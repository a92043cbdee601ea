r"""The bridge end to end on a real model: distance curves, measured R0, the theory's fit.

For every prompt, along one grid of temperatures :math:`T_1<\dots<T_K`:

1. a temperature scan (:func:`~llm_bridge.scans.temperature_scan`): ``S`` continuations of
   ``N`` tokens per temperature (exactly ``N``: the end-of-sequence token is an ordinary
   token here, as in the theory's fixed horizon) and the linear dissimilarity between
   neighbouring temperatures (window ``L = 1``, on the logarithmic axis) -- the empirical
   distance curve;
2. the list decoder run at every temperature (:func:`~llm_bridge.r0_scan.r0_scan`, depth
   ``N``): the measured :math:`\hat R_0(T)` with bootstrap standard errors;
3. the theory fitted to the curve (:func:`branching.fit.fit_threshold`, vocabulary
   :math:`M` of the model, horizon :math:`N`): the log-linear link
   :math:`R_0=(T/T_c)^b` with an amplitude, and the threshold-free bump for falsification;
4. the three routes to the threshold (:func:`branching.fit.threshold_routes`).

Then the measured link (:math:`R_0=s\,\hat R_0(T)`, amplitude and ``s`` shared) is fitted on
all prompts but the last ``n_heldout`` and predicts the held-out prompts' peaks from their
own :math:`\hat R_0(T)` (:func:`branching.fit.heldout_prediction`).

Both scans cache finished pieces under ``cache_dir``: a re-run resumes or returns at once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from branching import validation as check
from branching import fit as bfit
from branching.seeding import SeedRecord, seed_sequence

__all__ = ["BridgePrompt", "BridgeResult", "plot_bridge", "run_bridge"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, repr=False)
class BridgePrompt:
    """One prompt's measurements and fit.

    Attributes
    ----------
    name : str
    scan : llm_bridge.scan_result.ScanResult
    curve : branching.transitions.IndicatorCurve
        Linear dissimilarity, ``L = 1``.
    r0_scan : llm_bridge.r0_scan.R0Scan
    measured : branching.fit.MeasuredR0
    fit : branching.fit.ThresholdFit
        The log-linear fit.
    routes : pandas.DataFrame
        :func:`branching.fit.threshold_routes`.
    """

    name: str
    scan: object
    curve: object
    r0_scan: object
    measured: bfit.MeasuredR0
    fit: bfit.ThresholdFit
    routes: object


@dataclass(frozen=True, eq=False, repr=False)
class BridgeResult:
    """The bridge on several prompts and the held-out prediction.

    Attributes
    ----------
    model_name : str
    prompts : tuple of BridgePrompt
    heldout : branching.fit.HeldOutResult or None
    params : dict
        Everything that produced the result (grid, sample sizes, rule, seed, ...).
    """

    model_name: str
    prompts: tuple
    heldout: bfit.HeldOutResult
    params: dict

    def summary(self):
        """One row per prompt: the three routes, fit quality and the falsification verdict."""
        import pandas as pd

        rows = []
        for p in self.prompts:
            r = p.routes.set_index("route")
            row = {"prompt": p.name,
                   "heldout": self.heldout is not None and p.name in self.heldout.test}
            for key, route in (("fit", "(i) fitted x_c"), ("r0_crossing", "(ii) measured R0 crossing"),
                               ("peak", "(iii) empirical peak")):
                row[key] = r.loc[route, "estimate"]
                row[f"{key}_low"], row[f"{key}_high"] = r.loc[route, "ci_low"], r.loc[route, "ci_high"]
            row.update(chi2_dof=p.fit.chi2_dof, p_value=p.fit.p_value, delta_aic=p.fit.delta_aic,
                       falsified=p.fit.falsified, verdict=p.fit.verdict)
            rows.append(row)
        return pd.DataFrame(rows)

    def to_pandas(self):
        """:meth:`summary` (one row per prompt)."""
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready record: parameters, per-prompt fits and routes, the held-out result."""
        record = {
            "model": self.model_name, "params": self.params,
            "prompts": [{"name": p.name, "fit": p.fit.summary(),
                         "routes": p.routes.replace({math.nan: None}).to_dict(orient="records")}
                        for p in self.prompts],
            "heldout": None,
        }
        if self.heldout is not None:
            record["heldout"] = {
                "params": self.heldout.params,
                "params_ci": {k: list(v) for k, v in self.heldout.params_ci.items()},
                "coverage": list(self.heldout.coverage),
                "rows": self.heldout.to_pandas().to_dict(orient="records"),
            }
        return record

    def __repr__(self):
        lines = [f"BridgeResult(model={self.model_name!r}, {len(self.prompts)} prompts)"]
        for p in self.prompts:
            lo, hi = p.fit.x_c_ci
            lines.append(f"  {p.name}: x_c={p.fit.x_c:.3g} [{lo:.3g}, {hi:.3g}], "
                         f"chi2/dof={p.fit.chi2_dof:.3g}, dAIC={p.fit.delta_aic:+.3g}")
        if self.heldout is not None:
            k, n = self.heldout.coverage
            lines.append(f"  held-out peaks covered: {k}/{n}")
        return "\n".join(lines)


def _prompt_ids(lm, prompt, chat: bool) -> list:
    if isinstance(prompt, str):
        return [int(i) for i in np.asarray(lm.encode(prompt, chat=chat)).ravel()]
    return [int(i) for i in prompt]


def run_bridge(lm, prompts, *, grid, n_samples: int = 32, n_tokens: int = 6, rule=None,
               cap: int = 64, n_heldout: int = 1, n_boot: int = 200, level: float = 0.95,
               chat: bool = True, se_floor="min_positive", rng=None, cache_dir=None,
               progress: bool = True, names=None) -> BridgeResult:
    r"""Measure and fit the bridge on a real model for several prompts.

    Parameters
    ----------
    lm : llm_bridge.models.LanguageModel
        The model; its vocabulary size is the theory's :math:`M`.
    prompts : sequence of str or token-id sequences
        At least ``n_heldout + 1`` prompts (the last ``n_heldout`` are held out).
    grid : array_like
        Strictly increasing temperatures (> 0), at least 6 (a logarithmic grid is natural).
    n_samples, n_tokens : int
        Samples per temperature and generated tokens (the theory's horizon ``N``, also the
        list decoder's depth).
    rule : eligibility rule, optional
        Of the list decoder (default ``Threshold(0.05)``).
    cap : int
        Largest list per depth of the list decoder.
    n_heldout : int
        Prompts held out of the link fit (0: no held-out prediction).
    n_boot : int
        Bootstrap replicates of the fits (``>= 2``).
    level : float
        Interval level, in (0, 1).
    chat : bool
        Encode text prompts with the chat template.
    se_floor : float or "min_positive"
        Passed to the fits (a temperature where every sample is the same has zero SE).
    rng : None, int, SeedSequence or Generator
        Randomness of the scans and the bootstraps; every prompt gets its own child seeds.
    cache_dir : path, optional
        Cache of both scans (default: no cache).
    progress : bool
        Show progress bars of the scans.
    names : sequence of str, optional
        Prompt names for tables (default ``p0, p1, ...``).

    Returns
    -------
    BridgeResult
        Per prompt: the scan, its curve, the measured :math:`\hat R_0(T)`, the log-linear
        fit and the three routes; the held-out prediction (``None`` when
        ``n_heldout = 0``) and the parameters of the run.

    Raises
    ------
    ValueError
        Fewer than ``n_heldout + 1`` prompts, ``names`` of the wrong length, bad
        ``n_heldout`` or ``n_boot``, or input that the scans or the fits refuse (e.g. a
        grid too short for the fit's free parameters).

    Examples
    --------
    A tiny random model, two prompts (the second held out), six temperatures and the
    smallest sample sizes:

    >>> import tempfile
    >>> import numpy as np
    >>> from llm_bridge.models import tiny_model
    >>> result = run_bridge(tiny_model(8, seed=0), [[1, 2], [3, 4]], grid=np.geomspace(0.5, 4.0, 6),
    ...                     n_samples=2, n_tokens=2, n_boot=2, cap=4, rng=0,
    ...                     cache_dir=tempfile.mkdtemp(), progress=False)
    >>> [p.name for p in result.prompts], result.heldout.test
    (['p0', 'p1'], ('p1',))
    >>> fit = result.prompts[0].fit
    >>> fit.M, fit.N, fit.link, list(result.summary()["heldout"])
    (8, 2, 'loglinear', [False, True])
    """
    from .eligibility import Threshold
    from .r0_scan import r0_scan
    from .scans import temperature_scan

    prompts = list(prompts)
    n_heldout = check.integer("n_heldout", n_heldout, low=0)
    if len(prompts) < n_heldout + 1:
        raise ValueError(f"prompts must hold at least n_heldout + 1 = {n_heldout + 1} prompts, "
                         f"got {len(prompts)}")
    names = [f"p{i}" for i in range(len(prompts))] if names is None else [str(n) for n in names]
    if len(names) != len(prompts):
        raise ValueError(f"names must have one entry per prompt ({len(prompts)}), got {len(names)}")
    n_boot = check.integer("n_boot", n_boot, low=2)
    rule = Threshold(0.05) if rule is None else rule
    temperatures = np.asarray(grid, dtype=float)
    root = seed_sequence(rng)
    children = root.spawn(len(prompts) + 1)
    M = int(lm.vocab_size)
    results, data = [], []
    for name, prompt, child in zip(names, prompts, children):
        scan_seed, r0_seed, fit_seed, route_seed = child.spawn(4)
        ids = _prompt_ids(lm, prompt, chat)
        scan = temperature_scan(lm, ids, temperatures, n_samples=n_samples, n_tokens=n_tokens,
                                eos="none", rng=scan_seed, cache_dir=cache_dir, progress=progress)
        curve = scan.indicator(L=1, measure="linear", log_grid=True)
        measured_scan = r0_scan(lm, [ids], control="temperature", grid=temperatures, rule=rule,
                                n_steps=n_tokens, cap=cap, n_boot=max(n_boot, 100), level=level,
                                rng=r0_seed, cache_dir=cache_dir, progress=progress)
        measured = bfit.MeasuredR0(measured_scan.x, measured_scan.r0, measured_scan.r0_se, log_x=True)
        fit = bfit.fit_threshold(curve, M=M, N=n_tokens, link="loglinear", increasing=True,
                                 n_boot=n_boot, level=level, se_floor=se_floor, rng=fit_seed)
        routes = bfit.threshold_routes(fit, measured, curve, n_boot=max(n_boot, 200), rng=route_seed)
        logger.info("bridge %s: %r", name, fit)
        results.append(BridgePrompt(name=name, scan=scan, curve=curve, r0_scan=measured_scan,
                                    measured=measured, fit=fit, routes=routes))
        data.append(bfit.PromptData(name, curve, measured))
    heldout = None
    if n_heldout:
        heldout = bfit.heldout_prediction(data[:-n_heldout], data[-n_heldout:], M=M, N=n_tokens,
                                          n_boot=n_boot, level=level, se_floor=se_floor,
                                          rng=children[-1])
    params = {"grid": temperatures.tolist(), "n_samples": n_samples, "n_tokens": n_tokens,
              "rule": {"name": rule.name, "parameter": rule.parameter}, "cap": cap,
              "n_heldout": n_heldout, "n_boot": n_boot, "level": level, "chat": chat,
              "se_floor": se_floor, "prompts": [p if isinstance(p, str) else list(p) for p in prompts],
              "names": names, "seed": SeedRecord.from_seed_sequence(root).to_dict()}
    return BridgeResult(model_name=getattr(lm, "name", type(lm).__name__), prompts=tuple(results),
                        heldout=heldout, params=params)


def plot_bridge(fig, fit: bfit.ThresholdFit, measured: bfit.MeasuredR0 | None, routes, *,
                title: str | None = None):
    """Draw one prompt's bridge into a matplotlib ``Figure``: two panels, shared control axis.

    Top: the empirical indicator with error bars, the fitted theory curve and the
    threshold-free bump.  Bottom: the measured :math:`\\hat R_0(x)` with its band
    (:math:`\\pm z\\,\\mathrm{se}` at the fit's level), its smooth, the fitted link and
    :math:`R_0=1`.  Both: the three threshold estimates with their intervals.

    Returns the two axes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to draw into (two subplots are added).
    fit : branching.fit.ThresholdFit
        The fit of the prompt's distance curve.
    measured : branching.fit.MeasuredR0 or None
        The measured :math:`\\hat R_0(x)` (not drawn if None).
    routes : pandas.DataFrame
        :func:`branching.fit.threshold_routes` of the fit; rows without a finite estimate
        are skipped.
    title : str, optional
        Title of the top panel.

    Returns
    -------
    ax_d : matplotlib.axes.Axes
        The top panel: the dissimilarity curves.
    ax_r : matplotlib.axes.Axes
        The bottom panel: :math:`R_0` on a logarithmic axis.

    Examples
    --------
    >>> import numpy as np
    >>> from dataclasses import replace
    >>> from matplotlib.figure import Figure
    >>> from branching import transitions as tr
    >>> grid = np.geomspace(0.2, 5.0, 14)
    >>> exact = tr.exact_indicator(np.log(bfit.theory_table(50, 4).laws(grid / 1.1)), grid, log_grid=True)
    >>> se = np.full(exact.value.size, 0.02 * exact.value.max())
    >>> curve = replace(exact, value=np.random.default_rng(0).normal(exact.value, se), se=se, n_samples=100)
    >>> fit = bfit.fit_threshold(curve, M=50, N=4, n_boot=20, rng=1)
    >>> measured = bfit.MeasuredR0(grid, grid / 1.1, 0.02 * grid / 1.1)
    >>> routes = bfit.threshold_routes(fit, measured, curve, n_boot=20, rng=2)
    >>> ax_d, ax_r = plot_bridge(Figure(), fit, measured, routes, title="synthetic")
    >>> ax_d.get_title(), ax_r.get_ylabel(), ax_r.get_yscale()
    ('synthetic', 'R0', 'log')
    """
    from scipy import stats

    ax_d, ax_r = fig.subplots(2, 1, sharex=True)
    x = fit.position
    ax_d.errorbar(x, fit.y, fit.se, fmt="o", ms=3, capsize=2, color="k", label="measured")
    ax_d.plot(x, fit.fitted, "-", color="C0", label=f"theory ({fit.link}), chi2/dof {fit.chi2_dof:.2g}")
    ax_d.plot(x, fit.bump_fitted, "--", color="C1", label=f"bump, dAIC {fit.delta_aic:+.2g}")
    ax_d.set_ylabel(f"{fit.measure} dissimilarity (L={fit.L})")
    z = float(stats.norm.ppf(0.5 + 0.5 * fit.level))
    if measured is not None:
        used = measured.used
        mx, r0, se = measured.x[used], measured.r0[used], measured.r0_se[used]
        ax_r.errorbar(mx, r0, z * se, fmt="s", ms=3, capsize=2, color="C2", label="measured R0")
        ax_r.fill_between(mx, np.maximum(r0 - z * se, 1e-3), r0 + z * se, color="C2", alpha=0.15)
        fine = np.geomspace(mx[0], mx[-1], 200) if measured.log_x else np.linspace(mx[0], mx[-1], 200)
        ax_r.plot(fine, np.exp(measured.log_r0_at(fine)), ":", color="C2", label="smooth of measured R0")
    ax_r.plot(fit.grid, fit.r0_fitted, "-", color="C0", label=f"fitted link ({fit.link})")
    ax_r.axhline(1.0, color="grey", lw=0.8)
    ax_r.set_yscale("log")
    ax_r.set_ylabel("R0")
    for (_, row), color in zip(routes.iterrows(), ("C0", "C2", "k", "C3")):
        if not np.isfinite(row["estimate"]):
            continue
        for ax in (ax_d, ax_r):
            ax.axvline(row["estimate"], color=color, lw=1, ls="-.")
            lo, hi = row["ci_low"], row["ci_high"]
            if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                ax.axvspan(max(lo, x[0] * 0.5), min(hi, x[-1] * 2), color=color, alpha=0.08)
        ax_r.plot([], [], color=color, ls="-.", label=str(row["route"]))
    if fit.log_grid:
        ax_r.set_xscale("log")
    ax_r.set_xlabel("control")
    ax_d.legend(fontsize=7)
    ax_r.legend(fontsize=7)
    if title:
        ax_d.set_title(title, fontsize=9)
    return ax_d, ax_r
