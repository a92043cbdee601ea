r"""The law of the list size :math:`L_T = 1 + Z_T` below, at and above the threshold.

For :math:`R_0 \in \{0.9, 1.0, 1.1\}` at the GPT-2 vocabulary size: the exact pmf (generating
function inverted by FFT, :func:`branching.exact.pmf`, tabulated up to a common cap whose
missing mass is stated in the legend) as a line, and a Monte Carlo histogram of the count-level
simulator on top (probability per unit of :math:`L_T` in logarithmic bins, with binomial
standard errors).  Each panel reports a chi-square test of the Monte Carlo counts against the
exact law, over cells holding at least 5 expected counts, the mass beyond the cap being one
cell.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from branching import ListDecoderModel, exact
from branching.simulate import simulate

VOCABULARY = 50257  # GPT-2
HORIZON = 50
R0_VALUES = (0.9, 1.0, 1.1)
CAP = 2000  # largest Z_T tabulated exactly
SEED = 20240502
MIN_EXPECTED = 5.0


def _bin_edges(largest: int) -> np.ndarray:
    """Integer edges of bins of L: unit bins up to 16, then logarithmic; the last edge
    exceeds ``largest``."""
    top = max(largest + 1, 17)
    log_edges = np.round(np.geomspace(16, top, max(2, int(12 * np.log10(top / 16)) + 2)))
    edges = np.unique(np.concatenate([np.arange(1, 17), log_edges]).astype(np.int64))
    if edges[-1] <= largest:
        edges = np.append(edges, largest + 1)
    return edges


def _chi_square(sample_L: np.ndarray, pmf_L: np.ndarray, beyond: float) -> tuple[float, int, float]:
    """Chi-square of the sample of L against the exact law ``P(L = 1..len(pmf_L))`` plus the
    mass ``beyond`` it; adjacent cells are merged until each expects ``MIN_EXPECTED``."""
    n = sample_L.size
    observed = np.append(np.bincount(sample_L - 1, minlength=pmf_L.size)[:pmf_L.size],
                         np.count_nonzero(sample_L > pmf_L.size))
    expected = n * np.append(pmf_L, beyond)
    cells_o, cells_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= MIN_EXPECTED:
            cells_o.append(acc_o)
            cells_e.append(acc_e)
            acc_o = acc_e = 0.0
    cells_o[-1] += acc_o
    cells_e[-1] += acc_e
    cells_o, cells_e = np.array(cells_o), np.array(cells_e)
    chi2 = float(np.sum((cells_o - cells_e) ** 2 / cells_e))
    dof = cells_o.size - 1
    return chi2, dof, float(stats.chi2.sf(chi2, dof))


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into ``out_dir``; returns the written paths."""
    n_runs = 20_000 if quick else 400_000
    seeds = np.random.SeedSequence(SEED).spawn(len(R0_VALUES))
    fig, axes = plt.subplots(1, len(R0_VALUES), figsize=(15, 4.6), constrained_layout=True)
    for ax, r0, seed in zip(axes, R0_VALUES, seeds):
        model = ListDecoderModel.from_r0(VOCABULARY, r0, HORIZON)
        law = exact.pmf(model, cap=CAP)
        sim = simulate(model, n_runs, rng=seed, keep_paths=True, quantile_levels=())
        sample_L = 1 + sim.paths[:, -1]

        edges = _bin_edges(int(sample_L.max()))
        counts = np.histogram(sample_L, bins=edges)[0]
        width = np.diff(edges)
        share = counts / n_runs
        density, density_se = share / width, np.sqrt(share * (1 - share) / n_runs) / width
        centres = np.sqrt(edges[:-1] * (edges[1:] - 1.0))  # geometric middle of the integers covered
        seen = counts > 0
        beyond_mc = np.count_nonzero(sample_L > CAP + 1) / n_runs
        beyond_se = np.sqrt(beyond_mc * (1 - beyond_mc) / n_runs)
        label = f"Monte Carlo, {n_runs} runs"
        if beyond_mc > 0 or law.truncated_mass > 0:
            label += f"\n($P(L_T > {CAP + 1})$ = {beyond_mc:.3g} $\\pm$ {beyond_se:.1g})"
        ax.errorbar(centres[seen], density[seen], yerr=density_se[seen], fmt="o", ms=3.5,
                    color="tab:red", capsize=2, zorder=3, label=label)

        L_values = np.arange(1, law.values.size + 1)
        floor = 0.3 * density[seen].min()
        shown = law.values >= floor
        ax.plot(L_values[shown], law.values[shown], color="k", lw=1.3, zorder=2,
                label=f"exact pmf, $L_T \\leq {CAP + 1}$\n"
                      f"(mass beyond: {law.truncated_mass:.3g})")
        if law.truncated_mass > 0:
            ax.axvspan(CAP + 1.5, edges[-1], color="gray", alpha=0.15, lw=0, label="beyond the exact table")

        chi2, dof, p_value = _chi_square(sample_L, law.values, law.truncated_mass)
        regime = "below" if r0 < 1 else "at" if r0 == 1 else "above"
        ax.set(xscale="log", yscale="log", ylim=(floor, 1.0), xlim=(0.8, edges[-1] * 1.2),
               xlabel=r"list size $L_T = 1 + Z_T$", ylabel=r"$P(L_T = n)$ (per unit of $n$)",
               title=f"$R_0$ = {r0} ({regime} threshold): "
                     f"$\\mathbb{{E}}L_T$ = {1 + exact.mean_path(model)[-1]:.4g}")
        ax.text(0.03, 0.04, f"$\\chi^2$ = {chi2:.1f}, {dof} dof, p = {p_value:.2f}",
                transform=ax.transAxes, fontsize=8)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Law of the list size after T = {HORIZON} steps (M = {VOCABULARY})")
    path = out_dir / "list_size.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
