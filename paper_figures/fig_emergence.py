"""The information-emergence metric on SmolLM2-135M-Instruct, with its controls.

(a) E_l(t) against the number of shots for one middle block on in-context category lists,
with the plug-in prefix entropy, its emergence value and the log2 N ceiling; (b) E(l)
across blocks on category lists and the controls (mixed categories, a randomly initialised
copy, prose windows and the same windows shuffled); (c) every estimator on correlated
Gaussians of known MI in the same dimension; (d) the macro MI of block l next to the prefix
entropy it would equal for an injective block.  Bands: sd over 3 seeds (random splits).
Quick mode uses a tiny random model.  Representations are kept under
``<out_dir>/emergence_reps`` so a re-run reuses them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ._shared import default_model

CASES = [  # label, dataset, control
    ("category lists", "icl", "none"),
    ("mixed categories", "icl-mixed", "none"),
    ("random init", "icl", "random-init"),
    ("prose windows", "text", "none"),
    ("shuffled prose", "text-shuffled", "none"),
]


def results(out_dir: Path, *, quick: bool = False) -> dict:
    """Run (or reuse) every case; returns ``{label: EmergenceResult}``."""
    from llm_bridge.emergence.experiment import build_dataset, run_experiment
    from llm_bridge.models import tiny_model

    if quick:
        lm, n, shots, dim = tiny_model(40, seed=0, hidden_size=32, n_layers=3), 128, 3, 4
    else:
        lm, n, shots, dim = default_model(), 1024, 5, 32
    out = {}
    for label, kind, control in CASES:
        data = build_dataset(lm, kind, shots=shots, length=8, n=n, rng=0)
        out[label] = run_experiment(
            lm, data, out_dir / "emergence_reps" / label.replace(" ", "_"), control=control,
            n_seeds=2 if quick else 3, rng=0, progress=not quick, dim=dim,
        )
    return out


def benchmark(*, quick: bool = False):
    """Known-MI benchmark in the PCA dimension of the figure."""
    from llm_bridge.emergence.known_mi import known_mi_benchmark

    if quick:
        return known_mi_benchmark([0.0, 2.0, 8.0], n=256, dim=4, n_seeds=1, rng=0,
                                  estimators=["gaussian", "ksg", "mine-max"],
                                  options={"mine-max": {"steps": 30}})
    return known_mi_benchmark([0.0, 2.0, 5.0, 10.0, 20.0], n=2048, dim=8, rng=0,
                              estimators=["gaussian", "ksg", "infonce", "mine", "mine-max"],
                              options={"infonce": {"steps": 400}, "mine": {"steps": 400}})


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Compute (or reuse) the results and draw the figure; returns the written paths."""
    out_dir = Path(out_dir)
    with warnings.catch_warnings():  # first imports of torch/transformers add filters
        found = results(out_dir, quick=quick)
        table = benchmark(quick=quick)
    main = found["category lists"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), constrained_layout=True)
    ax = axes[0, 0]
    layer = main.layers[len(main.layers) // 2]
    mean, sd = main.per_position(layer)
    t = np.arange(main.length)
    shots = t // 2 + 1
    for start, name, marker in ((0, "at the entity", "o"), (1, "at the comma", "s")):
        ax.errorbar(shots[start::2] + (0.08 if start else 0), mean[start::2], sd[start::2],
                    fmt=marker + "-", ms=4, capsize=2, label=f"E_l(t), block {layer}, {name}")
    ax.plot(shots[0::2], main.prefix_entropy[0::2], "k-.", lw=1, label="H(S<=t)")
    ax.plot(shots[1::2], main.reference[1::2], "k--", lw=1, label="H(S<=t) - mean H(S_i)")
    ax.axhline(main.ceiling_bits, color="gray", ls=":", label="log2 N")
    name = main.model_name if len(main.model_name) <= 40 else main.model_name[:37] + "..."
    ax.set(xlabel="shots", ylabel="bits", title=f"(a) {name}: category lists")
    ax.legend(fontsize="small")
    ax = axes[0, 1]
    for label, result in found.items():
        m, s = result.per_layer()
        ax.plot(result.layers, m, marker=".", label=f"{label} (H={result.prefix_entropy[-1]:.1f})")
        ax.fill_between(result.layers, m - s, m + s, alpha=0.2)
    ax.axhline(main.ceiling_bits, color="gray", ls=":", label="log2 N")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="block l", ylabel="E(l) = E_l(T-1) [bits]", title="(b) E(l) and controls")
    ax.legend(fontsize="small")
    ax = axes[1, 0]
    for name, rows in table.groupby("estimator", sort=False):
        ax.errorbar(rows["true_bits"], rows["bits"], rows["sd"], fmt="o-", ms=4, capsize=2,
                    label=name)
    top = table["true_bits"].max()
    ax.plot([0, top], [0, top], "k-", lw=0.8, label="truth")
    ax.axhline(table["log2_n_test"].iloc[0], color="gray", ls=":", label="log2 N (held out)")
    ax.set(xlabel="true MI [bits]", ylabel="estimate [bits]",
           title=f"(c) known MI, d={table['dim'].iloc[0]}, N={table['n'].iloc[0]}")
    ax.legend(fontsize="small")
    ax = axes[1, 1]
    macro = main.macro[:, -1]
    ax.errorbar(main.layers, macro.mean(1), macro.std(1, ddof=1), fmt="o-", ms=3, capsize=2,
                label="macro MI, last position")
    ax.errorbar(main.layers, main.micro.mean(axis=(1, 2)), fmt="s-", ms=3,
                label="mean micro MI")
    ax.axhline(main.prefix_entropy[-1], color="k", ls="-.", lw=1, label="H(S)")
    ax.axhline(main.ceiling_bits, color="gray", ls=":", label="log2 N")
    ax.set(xlabel="block l", ylabel="bits",
           title=f"(d) the two terms ({main.estimator}, dim {main.options.get('dim')})")
    ax.legend(fontsize="small")
    path = out_dir / "emergence.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    table.to_csv(out_dir / "emergence_known_mi.csv", index=False)
    return [path]
