r"""The theory's indicator curves: how fast the list decoder's output law changes with R0.

Exact g-dissimilarities (:func:`branching.theory_curve.theory_indicator`) between the output
laws at neighbouring grid points, for several horizons ``T``, each on its own grid
:math:`R_0 \in 1 \pm 6/T`.  Linear and JS are second order in the grid spacing ``h``, so they
are shown normalised by :math:`h^2` (the Fisher-information scale); TV is first order and is
shown divided by :math:`h`.  Dots mark the peaks (parabolic interpolation,
:func:`branching.transitions.find_peak`), the grey line :math:`R_0 = 1`.  The last panel
rescales the linear curves by :math:`T^2` against :math:`T(R_0-1)`: they collapse, the
finite-size form of a critical point whose width shrinks as :math:`1/T`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from branching.theory_curve import theory_indicator

VOCABULARY = 50257  # GPT-2
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
TITLES = {"linear": "linear", "tv": "TV", "js": "Jensen-Shannon"}
PANELS = (
    ("linear", r"linear $D_g / h^2$", "normalized"),
    ("tv", r"TV $D_g / h$", "first_order"),
    ("js", r"JS (bits) $D_g / h^2$", "normalized"),
)


def _scaled(curve, how: str) -> np.ndarray:
    """The curve on the scale where its small-spacing limit does not depend on ``h``."""
    if how == "normalized":
        return curve.normalized
    return curve.value / (curve.L * curve.spacing)


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into ``out_dir``; returns the written paths."""
    horizons, n_points = ((25, 50, 100), 41) if quick else ((25, 50, 100, 200), 81)
    theory = {T: theory_indicator(VOCABULARY, T, 1.0 + np.linspace(-6.0 / T, 6.0 / T, n_points))
              for T in horizons}

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), constrained_layout=True)
    for ax, (measure, label, how) in zip(axes, PANELS):
        for (T, result), colour in zip(theory.items(), COLOURS):
            curve = result.curves[measure]
            y = _scaled(curve, how)
            peak = result.peak(measure)
            ax.plot(curve.position, y, color=colour, lw=1.3,
                    label=f"T = {T}: peak at {peak.location:.4f}")
            ax.plot([peak.location], [np.interp(peak.location, curve.position, y)], "o",
                    color=colour, ms=5)
        ax.axvline(1.0, color="gray", lw=0.8)
        low = min(_scaled(r.curves[measure], how).min() for r in theory.values())
        high = max(_scaled(r.curves[measure], how).max() for r in theory.values())
        ax.set(yscale="log", ylim=(low / 3, high * 1.6), xlabel=r"$R_0 = M\varepsilon$",
               ylabel=label, title=f"{TITLES[measure]} indicator (exact)")
        ax.legend(fontsize=8, loc="lower center")

    ax = axes[-1]
    for (T, result), colour in zip(theory.items(), COLOURS):
        curve = result.curves["linear"]
        ax.plot(T * (curve.position - 1.0), curve.normalized / T**2, color=colour, lw=1.3,
                label=f"T = {T}: FWHM = {result.width('linear') * T:.2f}/T")
    ax.axvline(0.0, color="gray", lw=0.8)
    ax.set(xlabel=r"$T(R_0 - 1)$", ylabel=r"linear $D_g / (h^2 T^2)$",
           title="finite-size collapse of the linear curve")
    ax.set_ylim(0.0, None)
    ax.legend(fontsize=8, loc="lower center")

    fig.suptitle(f"Exact transition indicators of the list decoder's output law (M = {VOCABULARY}, L = 1)")
    path = out_dir / "theory_indicator.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
