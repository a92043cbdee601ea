"""The bridge on the default model (SmolLM2-135M-Instruct) along temperature, three prompts.

For each prompt: the empirical linear dissimilarity with error bars, the theory's curve
fitted through the log-linear link (and the threshold-free bump), the list decoder's measured
R0(T) with its band, and the three threshold estimates -- the fitted T_c, the crossing of the
measured R0 with 1, the empirical peak.  The last prompt is held out: its peak is predicted
from its own measured R0(T) with the link fitted on the other two.

Writes ``bridge.png`` and ``bridge_summary.csv`` (one row per prompt) and prints the numbers.
The full run checks them against the values quoted in the README (``README_VALUES``, with
the tolerance stated there); the scans are cached under ``<out_dir>/cache``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._shared import default_model

PROMPTS = ("Write one sentence about the sea.", "Name a colour.", "What is the capital of France?")
NAMES = ("sea", "colour", "capital")

FULL = dict(T_min=0.1, K=8, n_samples=16, n_tokens=4, n_boot=100, cap=32)
#: Quick mode starts at T = 0.5: below it the list decoder rarely meets an erroneous
#: candidate in a few samples, and R0 must be defined at three points for the fit.
QUICK = dict(T_min=0.5, K=6, n_samples=6, n_tokens=4, n_boot=10, cap=16)

#: The README's numbers (fitted T_c per prompt, measured-R0 crossing, held-out coverage).
#: Checked in full mode: each T_c within ``TOLERANCE`` (relative) of the stored value.
README_VALUES: dict | None = {"x_c": {"sea": 1.351, "colour": 1.165, "capital": 1.287},
                              "coverage": [1, 1]}
TOLERANCE = 0.02


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Run (or load) the bridge and draw the figure; returns the written paths."""
    with warnings.catch_warnings():  # libraries imported on first use add filters
        return _make(out_dir, quick=quick)


def _make(out_dir: Path, *, quick: bool) -> list[Path]:
    from matplotlib.figure import Figure

    from llm_bridge.bridge import plot_bridge, run_bridge
    from llm_bridge.scans import log_temperature_grid

    settings = QUICK if quick else FULL
    lm = default_model()
    result = run_bridge(
        lm, list(PROMPTS), grid=log_temperature_grid(settings["T_min"], 4.0, settings["K"]),
        n_samples=settings["n_samples"], n_tokens=settings["n_tokens"], cap=settings["cap"],
        n_boot=settings["n_boot"], n_heldout=1, rng=2024, names=NAMES,
        cache_dir=out_dir / "cache", progress=not quick,
    )
    fig = Figure(figsize=(18, 7.5), layout="constrained")
    for sub, p in zip(fig.subfigures(1, len(result.prompts)), result.prompts):
        held = " (held out)" if p.name in result.heldout.test else ""
        verdict = "falsified by the bump" if p.fit.falsified else "not falsified"
        plot_bridge(sub, p.fit, p.measured, p.routes,
                    title=f"{p.name}{held}: T_c = {p.fit.x_c:.3g}, chi2/dof {p.fit.chi2_dof:.2g} "
                          f"(p = {p.fit.p_value:.2g}), dAIC {p.fit.delta_aic:+.2g}: {verdict}")
    fig.suptitle(f"{result.model_name}: the theory's threshold fitted along temperature "
                 f"({settings['n_samples']} samples x {settings['n_tokens']} tokens)")
    path = out_dir / "bridge.png"
    fig.savefig(path, dpi=110)
    table = result.summary()
    csv = out_dir / "bridge_summary.csv"
    table.to_csv(csv, index=False)
    print(table.drop(columns=["verdict"]).to_string(index=False))
    print(result.heldout)
    if not quick and README_VALUES is not None:
        _check(result)
    return [path]


def _check(result) -> None:
    """Compare the numbers with the README's, with the stated tolerance."""
    for p in result.prompts:
        want = README_VALUES["x_c"][p.name]
        if not np.isclose(p.fit.x_c, want, rtol=TOLERANCE):
            raise AssertionError(f"{p.name}: fitted T_c {p.fit.x_c:.4g} differs from the README's "
                                 f"{want:.4g} by more than {TOLERANCE:.0%}")
    if list(result.heldout.coverage) != README_VALUES["coverage"]:
        raise AssertionError(f"held-out coverage {result.heldout.coverage} differs from the "
                             f"README's {README_VALUES['coverage']}")
