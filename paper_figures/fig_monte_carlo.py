r"""Monte Carlo against exact curves across the transition, and the threshold located blind.

(a) :math:`\mathbb E[Z_T]/(\lambda T)` against :math:`R_0` for several horizons ``T``: Monte
Carlo estimates with standard errors from one sweep (points) and the exact recursion
(lines), with the chi-square of the agreement.  These curves all pass through 1 at
:math:`R_0=1` by construction (:math:`\mathbb E[Z_T]=\lambda T` at :math:`m=1`): the panel
checks the simulator, it does not locate anything.
(b) The same points against :math:`x = T(R_0-1)`, with the limit :math:`(e^x-1)/x` derived
symbolically (:func:`branching.symbolic.finite_horizon_scaling`).
(c) The threshold located from a statistic with no identity at :math:`R_0=1`: the crossings
of successive horizons' Monte Carlo curves of :math:`T\,\mathbb E[1/(1+Z_T)]` (same sweep)
with their intervals and combined estimate, the scaling collapse of the same curves, and
the exact curves' crossings (lines) for comparison.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from branching import ListDecoderModel, exact, scaling, symbolic
from branching.sweep import Grid, run_sweep

VOCABULARY = 50257  # GPT-2
HORIZONS = (25, 50, 100, 200)
HALF_WIDTH = 0.1  # the R0 window is 1 +- HALF_WIDTH
SEED = 20240501
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _normaliser(r0: np.ndarray, T: int) -> np.ndarray:
    """lambda(R0) * T, with the model's own immigration mean."""
    return np.array([ListDecoderModel.from_r0(VOCABULARY, float(r), T).immigration_mean for r in r0]) * T


def _exact_scaled(r0: np.ndarray, T: int) -> np.ndarray:
    """Exact E[Z_T] / (lambda T) from the mean recursion."""
    means = np.array([exact.mean_path(ListDecoderModel.from_r0(VOCABULARY, float(r), T))[-1] for r in r0])
    return means / _normaliser(r0, T)


def _exact_scaled_accuracy(r0: np.ndarray, T: int) -> np.ndarray:
    """Exact T E[1/(1+Z_T)] (the list decoder's accuracy times the horizon)."""
    return np.array([T * exact.accuracy(ListDecoderModel.from_r0(VOCABULARY, float(r), T)) for r in r0])


def _ci_text(estimate: float, interval: tuple) -> str:
    return f"{estimate:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into ``out_dir``; returns the written paths."""
    n_points, n_runs = (21, 1000) if quick else (41, 20000)
    n_boot_crossings, n_boot_collapse = (200, 10) if quick else (1000, 100)
    r0 = 1.0 + np.linspace(-HALF_WIDTH, HALF_WIDTH, n_points)
    grid = Grid({"M": VOCABULARY, "r0": r0, "T": list(HORIZONS)})
    sweep = run_sweep(grid, n_runs=n_runs, rng=SEED, workers=1, progress=False)
    xs, raw = sweep.curves("mean_Z_T")
    mc = {T: np.array(raw[T]) / _normaliser(xs, T) for T in HORIZONS}  # (value, se) per T
    ex = {T: _exact_scaled(xs, T) for T in HORIZONS}

    residuals = np.concatenate([(mc[T][0] - ex[T]) / mc[T][1] for T in HORIZONS])
    chi2 = float(residuals @ residuals)
    p_value = float(stats.chi2.sf(chi2, residuals.size))

    _, raw_accuracy = sweep.curves("accuracy")
    scaled_accuracy = {T: np.array(raw_accuracy[T]) * T for T in HORIZONS}  # (value, se) per T
    crossings = scaling.crossing_points(xs, scaled_accuracy, n_boot=n_boot_crossings, rng=SEED,
                                        extrapolate=False)
    collapse = scaling.scaling_collapse(xs, scaled_accuracy, corrections=True, n_boot=n_boot_collapse,
                                        rng=SEED)
    exact_crossings = scaling.crossing_points(xs, {T: _exact_scaled_accuracy(xs, T) for T in HORIZONS})
    limit = symbolic.finite_horizon_scaling().lambdify()

    fig, (ax_r, ax_x, ax_c) = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    fine = np.linspace(xs[0], xs[-1], 401)
    for T, colour in zip(HORIZONS, COLOURS):
        value, se = mc[T]
        ax_r.plot(fine, _exact_scaled(fine, T), color=colour, lw=1.2)
        ax_r.errorbar(xs, value, yerr=se, fmt="o", ms=3, color=colour, label=f"T = {T}")
        ax_x.errorbar(T * (xs - 1.0), value, yerr=se, fmt="o", ms=3, color=colour, label=f"T = {T}")
    lo, hi = crossings.threshold_ci
    ax_r.axvline(1.0, color="gray", lw=0.8, ls=":", label="all pass through 1 at $R_0 = 1$ (identity)")
    ax_r.set(yscale="log", xlabel=r"$R_0 = M\varepsilon$", ylabel=r"$\mathbb{E}[Z_T] / (\lambda T)$",
             title=f"Monte Carlo (points, {n_runs} runs each) vs exact (lines)")
    ax_r.legend(loc="upper left", fontsize=8,
                title=f"M = {VOCABULARY}; $\\chi^2$ = {chi2:.1f} on {residuals.size} points, p = {p_value:.2f}",
                title_fontsize=8)

    x_line = np.linspace(-8.0, 8.0, 401)
    ax_x.plot(x_line, limit(x=x_line), "k--", lw=1.2, label=r"$(e^x - 1)/x$ (limit $T \to \infty$)")
    ax_x.set(yscale="log", xlim=(-8, 8), ylim=(0.08, 600), xlabel=r"$x = T(R_0 - 1)$",
             ylabel=r"$\mathbb{E}[Z_T] / (\lambda T)$", title="finite-horizon collapse")
    ax_x.legend(loc="upper left", fontsize=8)

    pairs = crossings.horizons
    u = np.array([1.0 / np.sqrt(a * b) for a, b in pairs])
    ci = crossings.crossing_ci
    ax_c.errorbar(u, crossings.crossings, yerr=[crossings.crossings - ci[:, 0], ci[:, 1] - crossings.crossings],
                  fmt="o", color="tab:purple", capsize=3, label="Monte Carlo crossing of $T_a$, $T_b$")
    ax_c.plot(u, exact_crossings.crossings, "x", color="k", ms=7, label="exact crossing")
    for (a, b), ui, yi in zip(pairs, u, crossings.crossings):
        ax_c.annotate(f"{a}/{b}", (ui, yi), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax_c.errorbar([0.0], [crossings.threshold], yerr=[[crossings.threshold - lo], [hi - crossings.threshold]],
                  fmt="s", color="k", capsize=3,
                  label=("extrapolated" if crossings.extrapolated else "combined")
                  + f": {_ci_text(crossings.threshold, crossings.threshold_ci)}")
    c_lo, c_hi = collapse.r0_c_ci
    ax_c.axhspan(c_lo, c_hi, color="tab:cyan", alpha=0.3, lw=0,
                 label=f"collapse: {_ci_text(collapse.r0_c, collapse.r0_c_ci)},\n"
                       f"$\\nu$ = {collapse.nu:.3f} [{collapse.nu_ci[0]:.3f}, {collapse.nu_ci[1]:.3f}]")
    ax_c.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax_c.set(xlabel=r"$1/\sqrt{T_a T_b}$", ylabel=r"threshold estimate $R_{0,c}$",
             title=r"threshold from crossings of $T\,\mathbb{E}[1/(1+Z_T)]$"
                   f" ({crossings.confidence:.0%} intervals)")
    ax_c.set_xlim(-0.004, u.max() * 1.25)
    ax_c.legend(loc="best", fontsize=8)

    path = out_dir / "monte_carlo.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
