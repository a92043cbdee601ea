"""``llm-branching demo``: the theory in numbers, then a real model measured the same way.

1. the threshold eps_c = 1/M derived symbolically (SmolLM2's vocabulary, M = 49152);
2. exact laws of the erroneous-candidate count below, at and above it (T = 1000);
3. Monte Carlo against the exact values, with standard errors;
4. the theory's own distance curve along R0 and where it peaks;
5. a temperature scan of the bundled SmolLM2-135M-Instruct (skipped with ``--no-model``):
   the linear dissimilarity with error bars and the Fisher information, saved as a figure;
6. the bridge on the same model: R0 of the list decoder measured along the same
   temperatures, the theory's curve fitted to the scan, and the verdict (threshold with its
   interval, fit quality, falsification against a threshold-free bump), saved as a figure.

torch is imported only from step 5 on, so the first four steps run without the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SMOLLM2_VOCABULARY = 49152
PROMPT = "Write one sentence about the sea."


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="a tour: threshold, exact laws, Monte Carlo, the theory's distance curve, a real-model scan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="directory for the figure and scan arrays (default: demo_output)")
    parser.add_argument("--no-model", action="store_true", help="skip the real-model scan")
    parser.add_argument("--seed", type=int, default=2024, help="seed of every random step")
    parser.set_defaults(handler=run)


def run(args) -> int:
    """Run the demo; returns the exit code."""
    from branching import ListDecoderModel, exact, simulate, symbolic, theory_curve
    from branching.commands._paths import check_output_dir

    if not args.no_model:
        check_output_dir("--out", args.out)

    M = SMOLLM2_VOCABULARY
    _section("1. The threshold, derived with sympy")
    report = symbolic.threshold_report(M=M)
    print(f"R0 = f'(1) = {symbolic.threshold()['R0']};  R0 = 1  <=>  eps_c = 1/M = {report.eps_c:.6g}")

    _section("2. Exact laws at T = 1000 (generating functions)")
    print(f"{'R0':>5} {'E[Z_T]':>12} {'P(Z_T=0)':>12} {'accuracy':>12}")
    for r0 in (0.9, 1.0, 1.1):
        model = ListDecoderModel.from_r0(M=M, r0=r0, T=1000)
        print(f"{r0:>5} {exact.mean_path(model)[-1]:>12.5g} {exact.prob_no_error(model):>12.5g} "
              f"{exact.accuracy(model):>12.5g}")

    _section("3. Monte Carlo (numba) against the exact values, T = 100, R0 = 1")
    model = ListDecoderModel.from_r0(M=M, r0=1.0, T=100)
    start = time.perf_counter()
    result = simulate.simulate(model, 20_000, rng=args.seed)
    took = time.perf_counter() - start
    summary = result.summary()
    for name, exact_value in [("mean_Z_T", exact.mean_path(model)[-1]),
                              ("p_no_error", exact.prob_no_error(model)),
                              ("accuracy", exact.accuracy(model))]:
        value, se = summary[name]
        print(f"{name:>11}: simulated {value:.5g} +- {se:.2g}   exact {exact_value:.5g}   "
              f"({(value - exact_value) / se:+.2f} se)")
    print(f"(20000 runs x 100 steps in {took:.2f} s)")

    _section("4. The theory's distance curve: how fast the decoder's output law changes with R0")
    r0_grid = np.linspace(0.8, 1.2, 41)
    for T in (50, 100, 200):
        curve = theory_curve.theory_indicator(M, T, r0_grid, measures=("linear",))
        peak = curve.peak("linear")
        print(f"T = {T:>3}: linear dissimilarity peaks at R0 = {peak.location:.4f} "
              f"(width {curve.width('linear'):.3f})")

    if args.no_model:
        return 0
    _section("5. A real model: temperature scan of SmolLM2-135M-Instruct")
    lm, scan = _temperature_scan(args)
    _section("6. The bridge: R0 of the list decoder along temperature, and the theory's fit")
    return _bridge(args, lm, scan)


def _temperature_scan(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llm_bridge.models import load_model
    from llm_bridge.scans import log_temperature_grid, temperature_scan

    start = time.perf_counter()
    lm = load_model()
    print(f"loaded {lm.name} in {time.perf_counter() - start:.1f} s")
    grid = log_temperature_grid(0.05, 3.0, 12)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scan = temperature_scan(lm, lm.encode(PROMPT, chat=True), grid, n_samples=16, n_tokens=6,
                            rng=args.seed, cache_dir=args.out / "cache")
    print(f"scanned {grid.size} temperatures x 16 samples x 6 tokens in "
          f"{time.perf_counter() - start:.1f} s")
    curve = scan.indicator(L=1, measure="linear")
    fisher = scan.fisher_information()
    peak = curve.peak()
    print(f"linear dissimilarity peaks at T = {peak.location:.3g} (p = {peak.p_value:.2g})")

    fig, (ax_i, ax_f) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_i.errorbar(curve.position, curve.value, curve.se, fmt="o-", capsize=2)
    ax_i.set(xscale="log", xlabel="temperature", ylabel="linear dissimilarity (L = 1)",
             title=f"{lm.name}: output-law change along T")
    ax_f.errorbar(fisher.temperatures, fisher.value, fisher.se, fmt="s-", capsize=2)
    ax_f.set(xscale="log", yscale="log", xlabel="temperature", ylabel="Fisher information",
             title="score-function estimate")
    path = args.out / "temperature_scan.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    scan.save(args.out / "temperature_scan.npz")
    print(f"figure: {path}")
    return lm, scan


def _bridge(args, lm, scan) -> int:
    from matplotlib.figure import Figure

    from branching.fit import MeasuredR0, fit_threshold, threshold_routes
    from llm_bridge.bridge import plot_bridge
    from llm_bridge.eligibility import Threshold
    from llm_bridge.r0_scan import r0_scan

    start = time.perf_counter()
    ids = [int(i) for i in scan.prompt_ids[0]]  # the scan's own prompt
    measured_scan = r0_scan(lm, [ids], control="temperature",
                            grid=scan.grid, rule=Threshold(0.05), n_steps=scan.n_tokens, cap=16,
                            n_boot=200, rng=args.seed, cache_dir=args.out / "cache", progress=False)
    print(f"list decoder (threshold 0.05, depth {scan.n_tokens}) at {scan.n_grid} temperatures in "
          f"{time.perf_counter() - start:.1f} s")
    shown = ", ".join(f"{x:.2g}: {r:.2f}" if np.isfinite(r) else f"{x:.2g}: undefined"
                      for x, r in zip(measured_scan.x, measured_scan.r0))
    print(f"measured R0(T): {shown}")
    measured = MeasuredR0(measured_scan.x, measured_scan.r0, measured_scan.r0_se)
    curve = scan.indicator(L=1, measure="linear", log_grid=True)
    fit = fit_threshold(curve, M=lm.vocab_size, N=scan.n_tokens, n_boot=100, se_floor="min_positive",
                        rng=args.seed)
    routes = threshold_routes(fit, measured, curve, n_boot=200, rng=args.seed)
    lo, hi = fit.x_c_ci
    print(f"fitted threshold T_c = {fit.x_c:.3g} [{lo:.3g}, {hi:.3g}] (95%), "
          f"R0 = (T/T_c)^b with b = {fit.params['b']:.3g}")
    print(f"fit quality: chi2/dof = {fit.chi2_dof:.3g} on {fit.dof} dof, p = {fit.p_value:.3g}")
    print(f"falsification: dAIC (theory - threshold-free bump) = {fit.delta_aic:+.3g}")
    print(f"verdict: {fit.verdict}")
    print(routes[["route", "estimate", "ci_low", "ci_high"]].to_string(index=False))
    if measured.side() != "crosses":
        print(routes.set_index("route").loc["(ii) measured R0 crossing", "what"])
    fig = Figure(figsize=(6.4, 6.4), layout="constrained")
    plot_bridge(fig, fit, measured, routes, title=f"{lm.name}: the bridge along temperature")
    path = args.out / "bridge.png"
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")
    return 0


def _section(title: str) -> None:
    print(f"\n== {title}")
