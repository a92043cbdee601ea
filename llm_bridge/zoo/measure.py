r"""Branching parameters and accuracies of the zoo's models, and the theory's prediction.

For every model (a size of the family, or a checkpoint along training) the real list
decoder (:func:`llm_bridge.listdecode.list_decode`, through :func:`llm_bridge.r0_scan.r0_scan`)
runs with a fixed eligibility rule ``Threshold(theta)`` and temperature, with the task's
true answer as the oracle:

* on inputs of the **measure** split it estimates the offspring mean :math:`R_0` on
  erroneous prefixes, the immigration mean :math:`\lambda=(M-1)\varepsilon_{\rm oracle}` on
  the oracle prefix, the miss probability :math:`\delta` and the offspring dispersion,
  with bootstrap intervals;
* on inputs of the **test** split it measures the theory's accuracy -- list decoding
  followed by a uniform pick from the final list, i.e. the mean over inputs of
  :math:`\mathbf 1\{\text{oracle kept}\}/(1+Z_T)` (the pick's expectation given the list)
  -- and the accuracy of greedy decoding (exact match of all ``T`` tokens).

The prediction is :func:`branching.exact.accuracy` of the :class:`~branching.ListDecoderModel`
with the measure-split parameters, :math:`(1-\delta)^T\,\mathbb E[1/(1+Z_T)]`; its band
evaluates the same function at the corners of the parameter intervals (the accuracy
decreases in :math:`R_0`, :math:`\lambda` and :math:`\delta`, so the corners bound it).
The two splits are disjoint sets of inputs (checked, not assumed).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from branching import ListDecoderModel
from branching import validation as check
from branching import exact

from . import store
from .task import RunningSumTask

__all__ = ["MeasureSettings", "ScaleMeasurement", "TrainingScan", "check_disjoint",
           "emergence_point", "greedy_accuracy", "measure_models", "power_law_crossing",
           "training_scan"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasureSettings:
    """The fixed protocol of a measurement (recorded with every result).

    Parameters
    ----------
    theta : float
        Eligibility threshold: a token is eligible when its probability is at least theta.
    temperature : float
        Temperature of the probabilities the rule sees.
    n_measure, n_test : int
        Inputs of the measure and test splits, >= 2 each.
    cap : int
        List cap of the decoder (Horvitz-Thompson weights beyond it), >= 2.
    n_boot : int
        Bootstrap replicates of the intervals, >= 20.
    level : float
        Interval level, in (0, 1).
    law : {"auto", "binomial", "poisson", "negative_binomial"}
        Offspring law of the theory model (see ``ListDecodeResult.theory_model``).
    seed : int
        Seed of the inputs, of the cap's subsampling and of the bootstrap.
    """

    theta: float = 0.1
    temperature: float = 1.0
    n_measure: int = 100
    n_test: int = 100
    cap: int = 256
    n_boot: int = 200
    level: float = 0.95
    law: str = "auto"
    seed: int = 0

    def __post_init__(self):
        check.real("theta", self.theta, low=0.0, high=1.0, low_open=True)
        check.real("temperature", self.temperature, low=0.0, low_open=True)
        check.integer("n_measure", self.n_measure, low=2)
        check.integer("n_test", self.n_test, low=2)
        check.integer("cap", self.cap, low=2)
        check.integer("n_boot", self.n_boot, low=20)
        check.real("level", self.level, low=0.0, high=1.0, low_open=True, high_open=True)
        check.choice("law", self.law, ("auto", "binomial", "poisson", "negative_binomial"))


def check_disjoint(a, b, names=("measure", "test")) -> None:
    """Raise ``ValueError`` if two input arrays (rows = inputs) share an input.

    Parameters
    ----------
    a, b : array_like, shape (n, T)
        Two sets of inputs, one input per row.
    names : tuple of str
        Names of ``a`` and ``b`` used in the error message.

    Raises
    ------
    ValueError
        If some row of ``a`` equals some row of ``b``; the message counts the shared
        inputs and shows the smallest.

    Examples
    --------
    >>> check_disjoint([[0, 1], [2, 3]], [[4, 5]])  # disjoint: returns None
    >>> check_disjoint([[0, 1], [2, 3]], [[2, 3]], names=("train", "test"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the train and test inputs must be disjoint, but 1 input(s) occur ... (2, 3)
    """
    shared = {tuple(r) for r in np.asarray(a).tolist()} & {tuple(r) for r in np.asarray(b).tolist()}
    if shared:
        raise ValueError(
            f"the {names[0]} and {names[1]} inputs must be disjoint, but {len(shared)} input(s) "
            f"occur in both, e.g. {sorted(shared)[0]}"
        )


def greedy_accuracy(lm, task: RunningSumTask, inputs, answers=None) -> np.ndarray:
    r"""Per-input exact match of greedy decoding: 1.0 when all ``T`` argmax tokens are right.

    Greedy decoding appends :math:`\arg\max_v z_v` (first index on ties) ``T`` times; the
    context is at most ``2T`` tokens, so every step is one batched forward pass over the
    whole prefix.

    Parameters
    ----------
    lm : LanguageModel
        A model over the task's ``M`` tokens whose context holds ``2T`` positions.
    task : RunningSumTask
        The task; it fixes ``T`` and, by default, the correct answers.
    inputs : array_like of int, shape (n, T)
        The prompts, tokens in ``[0, K-1]``.
    answers : array_like of int, shape (n, T), optional
        The correct outputs; default ``task.answers(inputs)``.

    Returns
    -------
    numpy.ndarray, shape (n,)
        1.0 where all ``T`` greedy tokens equal the answer, else 0.0; its mean is the greedy
        accuracy.

    Raises
    ------
    ValueError
        If ``inputs`` is not an integer array of shape ``(n, T)`` with tokens in
        ``[0, K-1]``.

    Examples
    --------
    A theory model with ``eps = 0`` and ``delta = 0`` makes only its oracle token eligible,
    so greedy decoding follows the oracle path exactly:

    >>> from llm_bridge.theory_lm import theory_model
    >>> task = RunningSumTask(M=32, T=5, K=8)
    >>> lm = theory_model(32, 0.0, theta=0.04, prompt_length=5, context_length=10)
    >>> x = task.inputs("test", 4, rng=0)
    >>> oracle = [lm.model.oracle(list(row), task.T) for row in x]
    >>> greedy_accuracy(lm, task, x, oracle).tolist(), greedy_accuracy(lm, task, x).tolist()
    ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    """
    x = task._check_inputs(inputs)
    ids = torch.from_numpy(x)
    with torch.no_grad():
        for _ in range(task.T):
            logits = lm.model(input_ids=ids.to(lm.device)).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True).cpu()], dim=1)
    answers = task.answers(x) if answers is None else np.asarray(answers)
    return (ids[:, task.T:].numpy() == answers).all(axis=1).astype(float)


def _wilson(k: float, n: int, level: float) -> tuple[float, float]:
    from scipy import stats

    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _theory(point, law: str, M: int, T: int) -> tuple[ListDecoderModel | None, float, tuple]:
    """Theory model, predicted accuracy and its band from one measure-split run."""
    est = point.estimates
    if est.delta >= 1.0:  # the oracle token was never eligible: the oracle is always lost
        return None, 0.0, (0.0, 0.0)
    if not est.r0_defined:  # no erroneous candidate ever: eps enters only through lambda = 0
        model = ListDecoderModel(M=M, eps=0.0, T=T, eps_oracle=est.immigration / (M - 1),
                                 delta=est.delta)
    else:
        model = point.theory_model(law)
    value = exact.accuracy(model)

    def corner(side: int) -> float:
        r0 = model.r0 if not est.r0_defined else est.r0_ci[side]
        return exact.accuracy(model.replace(
            eps=min(r0 / M, 1.0), eps_oracle=min(est.immigration_ci[side] / (M - 1), 1.0),
            delta=min(est.delta_ci[side], 1.0 - 1e-12)))

    return model, value, (corner(1), corner(0))


def _law_index(model: ListDecoderModel | None) -> float:
    """Index of dispersion (variance / mean) of the theory model's offspring law."""
    if model is None or model.r0 == 0:
        return math.nan
    law = model.offspring(0)
    return float(law.variance / law.mean)


@dataclass(frozen=True, eq=False, repr=False)
class ScaleMeasurement:
    r"""Measured parameters, accuracies and predictions along a family axis.

    Attributes
    ----------
    axis : str
        ``"parameters"`` (model size) or ``"step"`` (training step).
    x : ndarray, shape (n,)
        Parameter counts or training steps.
    labels : tuple of str
    r0, r0_ci, immigration, immigration_ci, delta, delta_ci : ndarray
        Measure-split estimates (intervals: shape ``(2, n)``).
    dispersion_index, dispersion_index_ci : ndarray
        Measured offspring variance / mean; ``law_index`` is the theory law's.
    ld_accuracy, ld_accuracy_se : ndarray
        Test-split accuracy of list decoding + uniform pick, and its standard error.
    greedy_accuracy, greedy_ci : ndarray
        Test-split greedy exact-match accuracy and its Wilson interval.
    predicted, predicted_band : ndarray
        The theory's accuracy from the measure-split parameters and its band ``(2, n)``.
    assumptions_hold : ndarray of bool
        On the measure split: the measured offspring dispersion interval contains the
        theory law's index, the list cap was never reached, the oracle token was eligible
        at least once, and the mean path :math:`\mathbb E Z_t` agrees with the theory's
        (``mean_path_p >= 0.01``).
    mean_path_p : ndarray
        Screening p-value of the mean path (``Prediction.goodness_of_fit()["mean"]``).
    agrees : ndarray of bool
        ``|predicted - ld_accuracy| <= z * sqrt(se_obs^2 + se_pred^2)``, ``se_pred`` being the
        band's half-width / z, z the normal quantile of ``level``.
    r0_crossings : list of llm_bridge.r0_scan.Crossing
        Observed crossings of R0 = 1 between neighbouring points.
    settings : MeasureSettings
    task : RunningSumTask
    measure_inputs, test_inputs : ndarray
    """

    axis: str
    x: np.ndarray
    labels: tuple
    r0: np.ndarray
    r0_ci: np.ndarray
    immigration: np.ndarray
    immigration_ci: np.ndarray
    delta: np.ndarray
    delta_ci: np.ndarray
    dispersion_index: np.ndarray
    dispersion_index_ci: np.ndarray
    law_index: np.ndarray
    ld_accuracy: np.ndarray
    ld_accuracy_se: np.ndarray
    greedy_accuracy: np.ndarray
    greedy_ci: np.ndarray
    predicted: np.ndarray
    predicted_band: np.ndarray
    assumptions_hold: np.ndarray
    mean_path_p: np.ndarray
    agrees: np.ndarray
    r0_crossings: list
    settings: MeasureSettings
    task: RunningSumTask
    measure_inputs: np.ndarray = field(repr=False)
    test_inputs: np.ndarray = field(repr=False)
    r0_boot: np.ndarray = field(repr=False, default=None)

    def to_pandas(self):
        """One row per model: every estimate, accuracy and prediction."""
        import pandas as pd

        return pd.DataFrame({
            self.axis: self.x, "label": list(self.labels),
            "r0": self.r0, "r0_lo": self.r0_ci[0], "r0_hi": self.r0_ci[1],
            "immigration": self.immigration, "immigration_lo": self.immigration_ci[0],
            "immigration_hi": self.immigration_ci[1],
            "delta": self.delta, "delta_lo": self.delta_ci[0], "delta_hi": self.delta_ci[1],
            "dispersion_index": self.dispersion_index, "law_index": self.law_index,
            "ld_accuracy": self.ld_accuracy, "ld_accuracy_se": self.ld_accuracy_se,
            "predicted": self.predicted, "predicted_lo": self.predicted_band[0],
            "predicted_hi": self.predicted_band[1],
            "greedy_accuracy": self.greedy_accuracy, "greedy_lo": self.greedy_ci[0],
            "greedy_hi": self.greedy_ci[1],
            "mean_path_p": self.mean_path_p, "assumptions_hold": self.assumptions_hold,
            "agrees": self.agrees,
        })

    def to_json(self) -> dict:
        """JSON-ready dict: settings, task, the table's rows and the crossings."""
        table = self.to_pandas()
        rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in table.to_dict(orient="records")]
        return {
            "axis": self.axis, "task": self.task.name,
            "settings": dataclasses.asdict(self.settings), "rows": rows,
            "r0_crossings": [dataclasses.asdict(c) for c in self.r0_crossings],
        }

    def __repr__(self):
        return (f"ScaleMeasurement(axis={self.axis!r}, n={self.x.size}, task={self.task.name!r}, "
                f"theta={self.settings.theta}, r0=[{np.nanmin(self.r0):.3g}, "
                f"{np.nanmax(self.r0):.3g}], agrees={int(self.agrees.sum())}/{self.x.size}, "
                f"assumptions_hold={int(self.assumptions_hold.sum())}/{self.x.size})")


def measure_models(models, x, task: RunningSumTask, *, axis: str = "parameters", labels=None,
                   settings: MeasureSettings | None = None, oracle=None, cache_dir=None,
                   progress: bool = True) -> ScaleMeasurement:
    r"""Measure branching parameters and accuracies of ``models`` and predict the accuracy.

    Parameters
    ----------
    models : sequence of LanguageModel
        Models with the task's vocabulary (sizes of a family, or checkpoints).
    x : array_like
        Strictly increasing positions (parameter counts or training steps).
    task : RunningSumTask
    axis : {"parameters", "step"}
    labels : sequence of str, optional
    settings : MeasureSettings, optional
    oracle : callable, optional
        ``oracle(lm, inputs) -> answers`` (shape ``(n, T)``), the correct outputs; default
        the task's answers.  (A synthetic model of the theory brings its own oracle.)
    cache_dir : path-like, optional
        Cache root (as for training); every list-decoder run is stored under
        ``<cache>/zoo/measure`` and reused.
    progress : bool
        Show a progress bar over models.

    Returns
    -------
    ScaleMeasurement

    Raises
    ------
    ValueError
        For mismatched lengths, a model whose vocabulary is not the task's ``M``, or
        measure and test inputs that overlap.

    Notes
    -----
    The measure and test inputs are drawn from the task's disjoint splits with children 0
    and 1 of ``SeedSequence(settings.seed)``; list decoding uses ``Threshold(theta)``,
    ``temperature``, ``cap`` and the true answers as the oracle.

    Examples
    --------
    A positive control: a theory model with :math:`R_0 = M\varepsilon = 1`, immigration
    mean 0.3 and miss probability 0.02, measured on 10 + 10 inputs with its own oracle:

    >>> import tempfile
    >>> from llm_bridge.theory_lm import theory_model
    >>> task = RunningSumTask(M=32, T=5, K=8)
    >>> lm = theory_model(32, 1 / 32, eps_oracle=0.3 / 31, delta=0.02, theta=0.04,
    ...                   prompt_length=5, context_length=10)
    >>> def oracle(lm, inputs):
    ...     return [lm.model.oracle(list(row), task.T) for row in inputs]
    >>> settings = MeasureSettings(theta=0.04, n_measure=10, n_test=10, n_boot=20)
    >>> res = measure_models([lm], [1], task, settings=settings, oracle=oracle,
    ...                      cache_dir=tempfile.mkdtemp(), progress=False)
    >>> res.r0.round(2).tolist(), res.predicted.round(2).tolist(), res.agrees.tolist()
    ([0.95], [0.64], [True])
    """
    from llm_bridge.eligibility import Threshold
    from llm_bridge.r0_scan import R0Scan, r0_scan

    settings = MeasureSettings() if settings is None else settings
    check.choice("axis", axis, ("parameters", "step"))
    models = list(models)
    x = np.asarray(x, dtype=float)
    if x.shape != (len(models),):
        raise ValueError(f"x must have one entry per model ({len(models)}), got shape {x.shape}")
    for lm in models:
        if lm.vocab_size != task.M:
            raise ValueError(f"every model must have vocab_size M={task.M}, got "
                             f"{lm.vocab_size} for {lm.name!r}")
    labels = tuple(str(v) for v in (labels if labels is not None else x))
    seeds = np.random.SeedSequence(settings.seed).spawn(4)
    measure_x = task.inputs("measure", settings.n_measure, rng=seeds[0])
    test_x = task.inputs("test", settings.n_test, rng=seeds[1])
    check_disjoint(measure_x, test_x)
    directory = store.resolve_cache_dir(cache_dir) / "measure"
    common = dict(control="checkpoint", rule=Threshold(settings.theta), n_steps=task.T,
                  temperature=settings.temperature, cap=settings.cap, n_boot=settings.n_boot,
                  level=settings.level, cache_dir=directory, progress=False)
    if oracle is None:
        def oracle(lm, inputs):
            return task.answers(inputs)

    from tqdm.auto import tqdm

    def scan(inputs, seed, split):
        points = []
        for i, (lm, child) in enumerate(tqdm(list(zip(models, seed.spawn(len(models)))),
                                             disable=not progress, desc=f"list decode ({split})")):
            points.append(r0_scan([lm], list(inputs), oracle=list(oracle(lm, inputs)), rng=child,
                                  grid=[x[i]], labels=[labels[i]], **common).points[0])
        return R0Scan(control="checkpoint", x=x, labels=labels, points=tuple(points),
                      level=settings.level)

    on_measure = scan(measure_x, seeds[2], "measure")
    on_test = scan(test_x, seeds[3], "test")

    n, M, T = len(models), task.M, task.T
    z = float(__import__("scipy.stats").stats.norm.ppf(0.5 + settings.level / 2))
    predicted, band, law_index, ld, ld_se, greedy, greedy_ci, holds, path_p = (
        [] for _ in range(9))
    for i, lm in enumerate(models):
        m_point, t_point = on_measure.points[i], on_test.points[i]
        model, value, corners = _theory(m_point, settings.law, M, T)
        predicted.append(value)
        band.append(corners)
        law_index.append(_law_index(model))
        per_input = t_point.oracle_in_list[:, -1] / (1.0 + t_point.n_erroneous[:, -1])
        ld.append(per_input.mean())
        ld_se.append(per_input.std(ddof=1) / math.sqrt(per_input.size))
        g = greedy_accuracy(lm, task, test_x, oracle(lm, test_x))
        greedy.append(g.mean())
        greedy_ci.append(_wilson(g.sum(), g.size, settings.level))
        est = m_point.estimates
        lo, hi = est.index_of_dispersion_ci
        mean_path_p = (m_point.predict(settings.law).goodness_of_fit()["mean"][2]
                       if model is not None and est.r0_defined else math.nan)
        path_p.append(mean_path_p)
        holds.append(bool(
            est.r0_defined and est.delta < 1.0 and lo <= law_index[-1] <= hi
            and not m_point.records.capped.any() and mean_path_p >= 0.01
        ))
    predicted, band = np.array(predicted), np.array(band).T
    ld, ld_se = np.array(ld), np.array(ld_se)
    se_pred = (band[1] - band[0]) / (2 * z)
    agrees = np.abs(predicted - ld) <= z * np.sqrt(ld_se**2 + se_pred**2)
    disp = np.array([p.estimates.index_of_dispersion for p in on_measure.points])
    disp_ci = np.array([p.estimates.index_of_dispersion_ci for p in on_measure.points]).T
    return ScaleMeasurement(
        axis=axis, x=x, labels=labels, r0=on_measure.r0, r0_ci=on_measure.r0_ci,
        immigration=on_measure.immigration, immigration_ci=on_measure.immigration_ci,
        delta=on_measure.delta, delta_ci=on_measure.delta_ci, dispersion_index=disp,
        dispersion_index_ci=disp_ci, law_index=np.array(law_index), ld_accuracy=ld,
        ld_accuracy_se=ld_se, greedy_accuracy=np.array(greedy),
        greedy_ci=np.array(greedy_ci).T, predicted=predicted, predicted_band=band,
        assumptions_hold=np.array(holds), mean_path_p=np.array(path_p), agrees=agrees, r0_crossings=on_measure.crossings(),
        settings=settings, task=task, measure_inputs=measure_x, test_inputs=test_x,
        r0_boot=_aligned_boot(on_measure),
    )


def _aligned_boot(scan) -> np.ndarray:
    """Bootstrap replicates of R0, one row per point, truncated to a common length."""
    boots = [np.asarray(p.estimates.r0_boot, dtype=float) if p.estimates.r0_defined
             else np.array([]) for p in scan.points]
    n_rep = min((b.size for b in boots if b.size), default=0)
    return np.array([b[:n_rep] if b.size else np.full(n_rep, np.nan) for b in boots])


def power_law_crossing(x, r0, r0_boot=None, *, level: float = 0.95) -> dict:
    r"""Where a power law fitted to :math:`R_0(x)` crosses 1, with a bootstrap interval.

    Parameters
    ----------
    x : array_like
        Positive positions (parameter counts or training steps), at least 2 with a defined
        :math:`R_0 > 0`.
    r0 : array_like
        Measured :math:`R_0` (``nan`` where undefined).
    r0_boot : array, shape (n, B), optional
        Bootstrap replicates of every point; the fit is repeated on the ``b``-th replicate
        of every point.
    level : float

    Returns
    -------
    dict
        ``slope`` and ``intercept`` of :math:`\log R_0 = a + b\log x`, the crossing
        ``x_c = exp(-a / b)`` (``nan`` when the slope is 0), ``ci`` (percentile interval of
        the replicate crossings, ``nan`` when fewer than half of them exist) and
        ``direction`` (``"down"`` when :math:`R_0` falls with ``x``).

    Notes
    -----
    The theory's scale hypothesis :math:`\varepsilon(N)=\varepsilon_0 (N/N_0)^{-\alpha}`
    gives :math:`R_0 = M\varepsilon(N)`, a straight line in log-log coordinates, and the
    critical scale :math:`N_c = N_0 (M\varepsilon_0)^{1/\alpha}`.  A crossing outside the
    measured range is an extrapolation.

    Examples
    --------
    >>> fit = power_law_crossing([1e3, 1e4, 1e5], [4.0, 2.0, 1.0])
    >>> round(fit["x_c"]), round(fit["slope"], 4)
    (100000, -0.301)
    """
    x = check.array("x", x, ndim=1, low=0.0)
    r0 = np.asarray(r0, dtype=float)
    if r0.shape != x.shape:
        raise ValueError(f"r0 must have the shape of x {x.shape}, got {r0.shape}")

    def fit(values):
        ok = np.isfinite(values) & (values > 0) & (x > 0)
        if ok.sum() < 2:
            return math.nan, math.nan, math.nan
        b, a = np.polyfit(np.log(x[ok]), np.log(values[ok]), 1)
        return b, a, (math.exp(-a / b) if b != 0 and abs(a / b) < 700 else math.nan)

    slope, intercept, x_c = fit(r0)
    if math.isnan(slope):
        raise ValueError("x and r0 must contain at least 2 points with x > 0 and R0 > 0")
    ci = (math.nan, math.nan)
    if r0_boot is not None and np.size(r0_boot):
        reps = np.array([fit(r0_boot[:, b])[2] for b in range(np.shape(r0_boot)[1])])
        reps = reps[np.isfinite(reps)]
        if reps.size >= np.shape(r0_boot)[1] / 2:
            q = ((1 - level) / 2, (1 + level) / 2)
            ci = tuple(float(v) for v in np.quantile(reps, q))
    return {"slope": float(slope), "intercept": float(intercept), "x_c": float(x_c),
            "ci": ci, "direction": "down" if slope < 0 else "up"}


@dataclass(frozen=True, eq=False, repr=False)
class TrainingScan:
    """Measurements along the training of one model, and the output-law indicator.

    Attributes
    ----------
    measurement : ScaleMeasurement
        ``axis="step"``: parameters, accuracies and predictions at every checkpoint.
    indicator : branching.transitions.IndicatorCurve
        Linear dissimilarity (window 1) of the model's output law on ``prompt`` between
        neighbouring checkpoints (:func:`llm_bridge.scans.checkpoint_scan`).
    peak : branching.transitions.Peak
        Its maximum (of the raw value: checkpoints are log-spaced, so the curve is not
        divided by the squared spacing), with a bootstrap interval.
    prompt : tuple of int
        The input (of the measure split) whose output law is scanned.
    """

    measurement: ScaleMeasurement
    indicator: object
    peak: object
    prompt: tuple

    def __repr__(self):
        crossings = [round(c.x, 1) for c in self.measurement.r0_crossings]
        return (f"TrainingScan(steps={self.measurement.x.astype(int).tolist()}, "
                f"peak={self.peak.location:.4g} [{self.peak.location_ci[0]:.4g}, "
                f"{self.peak.location_ci[1]:.4g}], r0_crossings={crossings})")


def training_scan(zoo_model, *, settings: MeasureSettings | None = None, n_samples: int = 64,
                  cache_dir=None, progress: bool = True) -> TrainingScan:
    r"""Measure every checkpoint of a trained model and scan its output law along training.

    Parameters
    ----------
    zoo_model : llm_bridge.zoo.ZooModel
    settings : MeasureSettings, optional
    n_samples : int
        Samples per checkpoint of the output-law scan, >= 2.
    cache_dir : path-like, optional
        Cache root; list-decoder runs and the scan are stored there.
    progress : bool

    Returns
    -------
    TrainingScan

    Notes
    -----
    The indicator's peak marks the steps where the output law on one input changes
    fastest; the theory places the emergence of the ability where the measured
    :math:`R_0` crosses 1 (``measurement.r0_crossings``).  The two are compared, not
    assumed to coincide.

    Examples
    --------
    The smallest quick model after one training step (checkpoints 0 and 1):

    >>> import tempfile
    >>> from llm_bridge.zoo import get_family, train_model
    >>> cache = tempfile.mkdtemp()
    >>> zm = train_model(get_family("quick"), 0, cache_dir=cache, max_step=1, progress=False)
    >>> scan = training_scan(zm, settings=MeasureSettings(n_measure=2, n_test=2, n_boot=20),
    ...                      n_samples=2, cache_dir=cache, progress=False)
    >>> scan.measurement.axis, scan.measurement.x.tolist(), len(scan.prompt)
    ('step', [0.0, 1.0], 5)
    """
    from branching.transitions import find_peak
    from llm_bridge.scans import checkpoint_scan, state_dict_loader

    settings = MeasureSettings() if settings is None else settings
    n_samples = check.integer("n_samples", n_samples, low=2)
    task = zoo_model.family.task
    steps = np.array(zoo_model.steps, dtype=float)
    models = [zoo_model.language_model(step=int(s)) for s in steps]
    measurement = measure_models(models, steps, task, axis="step",
                                 labels=[str(int(s)) for s in steps], settings=settings,
                                 cache_dir=cache_dir, progress=progress)
    prompt = tuple(int(v) for v in measurement.measure_inputs[0])
    seeds = np.random.SeedSequence(settings.seed, spawn_key=(7,)).spawn(2)
    scan = checkpoint_scan(
        zoo_model.checkpoints(), list(prompt), n_samples=n_samples, n_tokens=task.T,
        grid=steps, loader=state_dict_loader(models[-1]), eos="none",
        temperature=settings.temperature, rng=seeds[0],
        cache_dir=store.resolve_cache_dir(cache_dir) / "scans", progress=progress,
    )
    curve = scan.indicators(L=1, measures=("linear",))["linear"]
    peak = find_peak(curve, statistic="value", n_boot=200, n_perm=200, rng=seeds[1])
    return TrainingScan(measurement=measurement, indicator=curve, peak=peak, prompt=prompt)


def emergence_point(x, accuracy, *, level: float = 0.5) -> float:
    r"""First position where ``accuracy`` rises through ``level``, interpolated in log x.

    Returns ``nan`` when it never does.  Used for the observed (measured accuracy) and the
    predicted (theory's accuracy) emergence points.

    Parameters
    ----------
    x : array_like, shape (n,)
        Positive positions (parameter counts or training steps), in increasing order.
    accuracy : array_like, shape (n,)
        Accuracy at every position.
    level : float
        The accuracy that marks emergence, in (0, 1).

    Returns
    -------
    float
        For the first ``i`` with ``accuracy[i] < level <= accuracy[i + 1]``, the position
        where the straight line through ``(log x[i], accuracy[i])`` and
        ``(log x[i + 1], accuracy[i + 1])`` reaches ``level``; ``nan`` if there is none.

    Raises
    ------
    ValueError
        If ``x`` is not one-dimensional or not positive, ``accuracy`` does not have the
        shape of ``x``, or ``level`` is outside (0, 1).

    Examples
    --------
    >>> round(emergence_point([10, 100, 1000], [0.1, 0.3, 0.7]), 3)
    316.228
    """
    x = check.array("x", x, ndim=1, low=0.0)
    if np.any(x <= 0):
        raise ValueError(f"x must be positive (it is interpolated in log x), got {x.min()!r}")
    y = np.asarray(accuracy, dtype=float)
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    if y.shape != x.shape:
        raise ValueError(f"accuracy must have the shape of x {x.shape}, got {y.shape}")
    for i in range(len(x) - 1):
        if y[i] < level <= y[i + 1]:
            u = (level - y[i]) / (y[i + 1] - y[i])
            return float(np.exp(np.log(x[i]) + u * (np.log(x[i + 1]) - np.log(x[i]))))
    return math.nan
