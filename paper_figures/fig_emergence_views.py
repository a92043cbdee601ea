"""Three views of emergence along the number of shots, on the same model and prompts.

For category lists of k = 1..K shots (prompts: the first ``2k`` tokens of the same lists):
(a) the representation metric E_l(t) at the comma after shot k (blocks averaged, band: sd over
seeds), with the prefix-entropy reference; (b) the temperature-scan indicator: the
temperature at which the linear dissimilarity of neighbouring temperatures peaks, and its
peak height, for the continuation of each prompt; (c) the list decoder's R0 (threshold
rule, model's own greedy continuation as the oracle) with its bootstrap interval, against
the critical value 1.  Quick mode uses a tiny random model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ._shared import default_model
from .fig_emergence import case


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Compute the three views and draw them; returns the written paths."""
    with warnings.catch_warnings():  # first imports of torch/transformers add filters
        return _make(Path(out_dir), quick=quick)


def _make(out_dir: Path, *, quick: bool) -> list[Path]:
    from llm_bridge.eligibility import Threshold
    from llm_bridge.emergence.experiment import build_dataset
    from llm_bridge.listdecode import list_decode
    from llm_bridge.models import tiny_model
    from llm_bridge.scans import log_temperature_grid, temperature_scan

    out_dir = Path(out_dir)
    if quick:
        lm, n, shots, dim, n_prompts = tiny_model(40, seed=0, hidden_size=32, n_layers=3), 96, 3, 4, 2
        grid, samples, tokens = log_temperature_grid(0.2, 4.0, 4), 4, 2
    else:
        lm, n, shots, dim, n_prompts = default_model(), 1024, 5, 32, 4
        grid, samples, tokens = log_temperature_grid(0.1, 4.0, 10), 32, 4
    data = build_dataset(lm, "icl", shots=shots, length=8, n=n, rng=0)
    result = case(lm, out_dir, "icl", "none", label="category lists", shots=shots, n=n,
                  dim=dim, n_seeds=2 if quick else 3, progress=not quick)
    e = result.emergence()[:, 1::2]  # (blocks, shots, seeds) at the comma after each shot
    blocks = [i for i, layer in enumerate(result.layers) if layer >= 1]
    e_mean = e[blocks].mean(axis=0)  # block average per seed
    ks = np.arange(1, shots + 1)
    peaks, heights, r0, r0_lo, r0_hi = [], [], [], [], []
    for k in ks:
        prompts = [data.ids[i, : 2 * k].tolist() for i in range(n_prompts)]
        scans = [temperature_scan(lm, p, grid, n_samples=samples, n_tokens=tokens, rng=k,
                                  eos="stop" if lm.eos_token_id is not None else "none",
                                  progress=False) for p in prompts]
        curves = [s.indicator(L=1) for s in scans]
        mean_curve = np.mean([c.value for c in curves], axis=0)
        peaks.append(float(curves[0].position[np.argmax(mean_curve)]))
        heights.append(float(mean_curve.max()))
        decoded = list_decode(lm, prompts, rule=Threshold(0.05), n_steps=tokens, cap=64,
                              n_boot=20 if quick else 200, rng=k)
        est = decoded.estimates
        r0.append(est.r0 if est.r0_defined else np.nan)
        r0_lo.append(est.r0_ci[0] if est.r0_defined else np.nan)
        r0_hi.append(est.r0_ci[1] if est.r0_defined else np.nan)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    ax = axes[0]
    ax.errorbar(ks, e_mean.mean(axis=1), e_mean.std(axis=1, ddof=1), fmt="o-", capsize=2,
                label="E_l(t) at the comma, mean over blocks >= 1")
    ax.plot(ks, result.reference[1::2], "k--", lw=1, label="H(S<=t) - mean H(S_i)")
    ax.axhline(result.ceiling_bits, color="gray", ls=":", label="log2 N")
    ax.set(xlabel="shots", ylabel="bits", title="(a) representation metric")
    ax.legend(fontsize="small")
    ax = axes[1]
    ax.plot(ks, peaks, "o-", label="peak temperature")
    ax.set(xlabel="shots", ylabel="temperature of the indicator peak", yscale="log",
           title="(b) temperature-scan indicator")
    twin = ax.twinx()
    twin.plot(ks, heights, "s--", color="C1", label="peak height")
    twin.set_ylabel("peak linear dissimilarity (L=1)")
    ax.legend(loc="upper left", fontsize="small")
    twin.legend(loc="upper right", fontsize="small")
    ax = axes[2]
    r0 = np.array(r0)
    ax.errorbar(ks, r0, [r0 - np.array(r0_lo), np.array(r0_hi) - r0], fmt="o-", capsize=2,
                label="R0 (threshold 0.05, T = 1)")
    ax.axhline(1.0, color="k", lw=0.8, label="R0 = 1")
    ax.set(xlabel="shots", ylabel="R0", title="(c) list decoder")
    ax.legend(fontsize="small")
    name = result.model_name if len(result.model_name) <= 60 else result.model_name[:57] + "..."
    fig.suptitle(f"{name}: the same category-list prompts, {n_prompts} per shot count",
                 fontsize="medium")
    path = out_dir / "emergence_views.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
