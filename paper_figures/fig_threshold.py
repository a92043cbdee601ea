"""The threshold of the list decoder: E[Z_t] below, at and above R0 = 1, and the
stationary list size and accuracy diverging/collapsing as M*eps -> 1.

Vocabulary sizes: GPT-2's (M = 50257) and SmolLM2's (M = 49152).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from branching import ListDecoderModel, exact

VOCABULARIES = {"GPT-2": 50257, "SmolLM2": 49152}


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into ``out_dir``; returns the written paths."""
    horizon = 200 if quick else 1000
    fig, (ax_t, ax_z, ax_acc) = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)

    for r0, colour in [(0.9, "tab:blue"), (1.0, "tab:gray"), (1.02, "tab:red")]:
        model = ListDecoderModel.from_r0(M=VOCABULARIES["GPT-2"], r0=r0, T=horizon)
        mean = exact.mean_path(model)
        ax_t.semilogy(np.arange(1, horizon + 1), mean[1:], color=colour, label=f"$R_0={r0}$")
    ax_t.set(xlabel="step $t$", ylabel=r"$\mathbb{E}[Z_t]$ (erroneous candidates)",
             title="below, at and above threshold (M = 50257)")
    ax_t.legend()

    below = 1 - np.logspace(-3, np.log10(0.95), 30 if quick else 100)
    wide = np.linspace(0.05, 1.5, 30 if quick else 90)
    for (name, M), style in zip(VOCABULARIES.items(), ["-", "--"]):
        stationary = [exact.stationary_mean(ListDecoderModel.from_r0(M=M, r0=r, T=horizon)) for r in below]
        ax_z.loglog(1 - below, stationary, style, label=f"{name} (M = {M})")
        accuracy = [exact.accuracy(ListDecoderModel.from_r0(M=M, r0=r, T=horizon)) for r in wide]
        ax_acc.plot(wide, accuracy, style, label=f"{name}, T = {horizon}")
    ax_z.set(xlabel=r"$1 - M\varepsilon$", ylabel=r"stationary $\mathbb{E}[Z]$",
             title=r"list size diverges as $M\varepsilon \to 1$")
    ax_z.legend()

    ax_acc.axvline(1.0, color="gray", lw=0.8)
    ax_acc.set(xlabel=r"$R_0 = M\varepsilon$", ylabel=r"accuracy $\mathbb{E}[1/(1+Z_T)]$",
               title="accuracy of a uniform final choice")
    ax_acc.legend()

    path = out_dir / "threshold.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
