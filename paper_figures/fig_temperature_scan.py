"""Temperature scan of the default model (SmolLM2-135M-Instruct): the linear, TV and JS
dissimilarities with error bars, the Fisher information and the heat capacity.

The scan is cached under ``<out_dir>/cache`` (keyed by model, prompt, grid, sample count and
seed), so the figure can be redrawn without running the model again.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ._shared import default_model

PROMPT = "Write one sentence about the sea."


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Run (or load) the scan and draw the figure; returns the written paths."""
    from llm_bridge.scans import log_temperature_grid, temperature_scan

    lm = default_model()
    grid = log_temperature_grid(0.02, 4.0, 10 if quick else 28)
    scan = temperature_scan(
        lm, lm.encode(PROMPT, chat=True), grid,
        n_samples=8 if quick else 96, n_tokens=4 if quick else 10,
        rng=7, cache_dir=out_dir / "cache", progress=not quick,
    )
    curves = scan.indicators(L=1)
    fisher = scan.fisher_information()
    heat = scan.heat_capacity()

    fig, (ax_i, ax_f, ax_c) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for measure, curve in curves.items():
        ax_i.errorbar(curve.position, curve.value, curve.se, fmt="o-", ms=3, capsize=2, label=measure)
    ax_i.set(xscale="log", xlabel="temperature $T$", ylabel="dissimilarity of neighbours (L = 1)",
             title=f"{scan.model_name}: {scan.n_samples} samples x {scan.n_tokens} tokens")
    ax_i.legend()
    ax_f.errorbar(fisher.temperatures, fisher.value, fisher.se, fmt="s-", ms=3, capsize=2)
    ax_f.set(xscale="log", yscale="log", xlabel="temperature $T$", ylabel=r"Fisher information $F(T)$",
             title="score-function estimate")
    ax_c.errorbar(heat.temperatures, heat.value, heat.se, fmt="^-", ms=3, capsize=2)
    ax_c.axhline(0, color="gray", lw=0.8)
    ax_c.set(xscale="log", xlabel="temperature $T$", ylabel=r"heat capacity $C(T)$",
             title=r"$C = \mathrm{Cov}(E, \partial_T \log P)$ (can be negative)")
    path = out_dir / "temperature_scan.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
