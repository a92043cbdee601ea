"""Prompt-integer scan of the default model: "Is N larger than 42?" for N around 42.

A model that compares integers changes its answer distribution abruptly at N = 42, and the
dissimilarity between neighbouring prompts peaks there.  SmolLM2-135M-Instruct does not:
its fraction of "Yes" answers stays near 0.35 on both sides and the indicator shows no peak
at 42 (128 samples per value) -- the ability is absent at this scale.  The scan is cached
under ``<out_dir>/cache``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ._shared import default_model

QUESTION = "Is {} larger than 42? Answer with Yes or No."


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Run (or load) the scan and draw the figure; returns the written paths."""
    from llm_bridge.scans import prompt_scan

    lm = default_model()
    values = np.arange(36, 49) if quick else np.arange(22, 63)
    scan = prompt_scan(
        lm, lambda n: lm.encode(QUESTION.format(n), chat=True), values,
        n_samples=8 if quick else 128, n_tokens=2 if quick else 3,
        rng=11, cache_dir=out_dir / "cache", progress=not quick,
    )
    curves = scan.indicators(L=1)

    first = scan.tokens[:, :, 0]
    yes_ids = {tid for word in ("Yes", " Yes", "yes") for tid in lm.encode(word)[:1]}
    p_yes = np.isin(first, list(yes_ids)).mean(axis=1)

    fig, (ax_i, ax_y) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for measure, curve in curves.items():
        ax_i.errorbar(curve.position, curve.value, curve.se, fmt="o-", ms=3, capsize=2, label=measure)
    ax_i.axvline(42, color="gray", lw=0.8)
    ax_i.set(xlabel="N in the prompt", ylabel="dissimilarity of neighbours (L = 1)",
             title=f'{scan.model_name}: "Is N larger than 42?"')
    ax_i.legend()
    ax_y.plot(values, p_yes, "o-")
    ax_y.axvline(42, color="gray", lw=0.8)
    ax_y.set(xlabel="N in the prompt", ylabel='fraction of answers starting with "Yes"',
             ylim=(-0.05, 1.05), title="what changes: the first answer token")
    path = out_dir / "prompt_scan.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
