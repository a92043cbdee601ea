"""The scale figure: accuracy and R0 against model size and against training step."""

from __future__ import annotations

import math

import numpy as np

from .measure import ScaleMeasurement, TrainingScan, emergence_point, power_law_crossing

__all__ = ["plot_scale"]


def _accuracy_panel(ax, m: ScaleMeasurement, x, xlabel: str) -> dict:
    lo, hi = m.predicted_band
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, lw=0, label="theory band")
    ax.plot(x, m.predicted, "-", color="C0", label="theory: list decoder, uniform pick")
    ax.errorbar(x, m.ld_accuracy, 2 * m.ld_accuracy_se, fmt="o", color="C1", capsize=2,
                ms=4, label="measured: list decoder, uniform pick (±2 se)")
    ax.errorbar(x, m.greedy_accuracy, np.abs(m.greedy_ci - m.greedy_accuracy), fmt="s",
                color="C2", capsize=2, ms=3, alpha=0.7, label="measured: greedy")
    points = {"observed": emergence_point(x, m.ld_accuracy),
              "predicted": emergence_point(x, m.predicted)}
    for (name, value), style in zip(points.items(), ("--", ":")):
        if math.isfinite(value):
            ax.axvline(value, color="k", ls=style, lw=1,
                       label=f"{name} emergence (accuracy 1/2): {value:,.0f}")
    ax.set(xscale="log", xlabel=xlabel, ylabel="test accuracy", ylim=(-0.03, 1.03))
    ax.legend(fontsize=7, loc="upper left")
    return points


def _r0_panel(ax, m: ScaleMeasurement, x, xlabel: str, fit: bool) -> dict | None:
    ok = np.isfinite(m.r0)
    ax.errorbar(x[ok], m.r0[ok], np.abs(m.r0_ci[:, ok] - m.r0[ok]), fmt="o", color="C3",
                capsize=2, ms=4, label=f"measured R0 ({m.settings.level:.0%} CI)")
    ax.axhline(1.0, color="k", lw=1, label="R0 = 1")
    result = None
    if fit and ok.sum() >= 2:
        result = power_law_crossing(x, m.r0, m.r0_boot, level=m.settings.level)
        grid = np.geomspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(grid, np.exp(result["intercept"]) * grid ** result["slope"], "-", color="C3",
                alpha=0.6, label=f"power law, slope {result['slope']:.2f}")
        text = (f"fit crosses R0 = 1 at {result['x_c']:.3g}" if math.isfinite(result["x_c"])
                else "fit never crosses R0 = 1")
        ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=7)
    for c in m.r0_crossings:
        ax.axvline(c.x, color="C3", ls="--", lw=1, label=f"measured crossing {c.x:,.0f}")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="R0 (erroneous prefixes)")
    ax.legend(fontsize=7, loc="upper right")
    return result


def plot_scale(sizes: ScaleMeasurement, training: TrainingScan | None = None, path=None,
               *, title: str = ""):
    """Draw the scale figure; returns the matplotlib figure (saved to ``path`` if given).

    Top row: accuracy and R0 against the number of parameters.  Bottom row (with
    ``training``): the same against training step (step 0 drawn at 0.5), with the
    output-law indicator and its peak.

    Parameters
    ----------
    sizes : ScaleMeasurement
        Measurement along model size (:func:`~llm_bridge.zoo.measure.measure_models`); a
        power law is fitted to its :math:`R_0` when at least two are defined.
    training : TrainingScan, optional
        Measurement along the training of one model
        (:func:`~llm_bridge.zoo.measure.training_scan`); adds the bottom row.
    path : path-like, optional
        Where to save the figure (format from the suffix, 130 dpi); the figure is then
        closed.
    title : str
        Prefix of the title of the first panel.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with two panels per row (plus a twin axis for the indicator).

    Examples
    --------
    >>> import os, tempfile
    >>> from llm_bridge.theory_lm import theory_model
    >>> from llm_bridge.zoo.measure import MeasureSettings, measure_models
    >>> from llm_bridge.zoo.task import RunningSumTask
    >>> task, d = RunningSumTask(M=32, T=5, K=8), tempfile.mkdtemp()
    >>> lm = theory_model(32, 1 / 32, theta=0.04, prompt_length=5, context_length=10)
    >>> def oracle(lm, inputs):
    ...     return [lm.model.oracle(list(row), task.T) for row in inputs]
    >>> settings = MeasureSettings(theta=0.04, n_measure=10, n_test=10, n_boot=20)
    >>> sizes = measure_models([lm], [1000], task, settings=settings, oracle=oracle,
    ...                        cache_dir=d, progress=False)
    >>> fig = plot_scale(sizes, path=os.path.join(d, "scale.png"))
    >>> len(fig.axes), os.path.getsize(os.path.join(d, "scale.png")) > 0
    (2, True)
    """
    import matplotlib.pyplot as plt

    rows = 2 if training is not None else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.3 * rows), constrained_layout=True,
                             squeeze=False)
    _accuracy_panel(axes[0, 0], sizes, sizes.x, "parameters")
    _r0_panel(axes[0, 1], sizes, sizes.x, "parameters", fit=True)
    axes[0, 0].set_title(f"{title}accuracy against size ({sizes.task.name}, "
                         f"threshold {sizes.settings.theta:g})", fontsize=9)
    axes[0, 1].set_title("branching number against size", fontsize=9)
    if training is not None:
        m = training.measurement
        steps = np.where(m.x > 0, m.x, 0.5)
        _accuracy_panel(axes[1, 0], m, steps, "training step")
        ax = axes[1, 1]
        _r0_panel(ax, m, steps, "training step", fit=False)
        twin = ax.twinx()
        position = np.where(training.indicator.position > 0, training.indicator.position, 0.5)
        twin.errorbar(position, training.indicator.value, training.indicator.se, fmt="^-",
                      color="C4", ms=3, capsize=2, alpha=0.7)
        peak = training.peak
        twin.axvspan(max(peak.location_ci[0], 0.5), max(peak.location_ci[1], 0.5),
                     color="C4", alpha=0.12)
        twin.axvline(max(peak.location, 0.5), color="C4", lw=1)
        twin.set_ylabel(f"output-law change (linear, L=1); peak {peak.location:.3g}",
                        color="C4")
        axes[1, 0].set_title("accuracy against training step (largest model)", fontsize=9)
        ax.set_title("R0 and the output-law indicator against training step", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=130)
        plt.close(fig)
    return fig
