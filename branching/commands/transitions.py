r"""``llm-branching transitions``: the exact distance curve of the list decoder's output law.

For each horizon ``T`` the g-dissimilarity indicator between output laws at neighbouring
:math:`R_0 = M\varepsilon` (from :func:`branching.theory_curve.theory_indicator`), its
peak relative to :math:`R_0 = 1` and its width.

Examples::

    llm-branching transitions --M 10 --T 20 40 80 --r0 0.5:1.5:41
    llm-branching transitions --M 50257 --T 100 --r0 0.8:1.2:81 --L 2 --out curve.csv --plot curve.png
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import transitions as tr
from ..theory_curve import theory_indicator
from ._budget import announce, check_memory
from ._paths import check_output_file, check_plot_file

#: Rough cost of one grid point of the exact curve on one core (seconds, fitted to
#: T = 100 and T = 1000 at M = 10): ``_SECONDS_LINEAR * T + _SECONDS_QUADRATIC * T**2``.
_SECONDS_LINEAR, _SECONDS_QUADRATIC = 1.7e-3, 2.1e-6
#: Peak memory per grid point and step (bytes), measured at T = 1000.
_BYTES_PER_STEP = 4096


def parse_grid(text: str) -> np.ndarray:
    """``"a:b:n"`` -> ``n`` evenly spaced values from ``a`` to ``b`` (``n >= 2``)."""
    parts = text.split(":")
    if len(parts) == 3 and parts[2].strip().isdigit() and int(parts[2]) > 10**8:
        raise ValueError(f"--r0 asks for {int(parts[2])} grid points; at most 10**8 are "
                         f"supported (and far fewer finish in reasonable time), got {text!r}")
    if len(parts) != 3:
        raise ValueError(f"--r0 must be 'start:stop:count', got {text!r}")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--r0 must be 'start:stop:count' with an integer count, got {text!r}") from None
    if count < 2 or not start < stop:
        raise ValueError(f"--r0 needs start < stop and count >= 2, got {text!r}")
    return np.linspace(start, stop, count)


def register(subparsers) -> None:
    """Add the ``transitions`` subcommand."""
    parser = subparsers.add_parser(
        "transitions",
        help="exact distance curve of the list decoder's output law along R0",
        description=(
            "Exact g-dissimilarity (linear, TV, JS) between the list decoder's output laws at "
            "neighbouring R0 = M*eps, computed from the law of the divergence depth; prints the "
            "peak location relative to R0 = 1 and its width for every horizon T."
        ),
    )
    parser.add_argument("--M", type=int, required=True, help="vocabulary size (integer >= 2)")
    parser.add_argument("--T", type=int, nargs="+", required=True, help="one or more horizons")
    parser.add_argument("--r0", type=str, required=True, metavar="A:B:N",
                        help="R0 grid: N evenly spaced values from A to B")
    parser.add_argument("--L", type=int, default=1, help="window size (grid points per side)")
    parser.add_argument("--measure", nargs="+", choices=tr.MEASURES, default=list(tr.MEASURES),
                        help="measures to compute (the first is tabulated and plotted)")
    parser.add_argument("--delta", type=float, default=0.0, help="miss probability of the oracle token")
    parser.add_argument("--log-grid", action="store_true", help="normalise spacings in log R0")
    parser.add_argument("--out", type=str, default=None, help="write the tidy curve table (CSV)")
    parser.add_argument("--plot", type=str, default=None, help="write a plot of the normalised curves")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Compute, print and optionally write the curves; returns the exit code."""
    import pandas as pd

    if args.out:
        check_output_file("--out", args.out, suffixes=(".csv",))
    if args.plot:
        check_plot_file("--plot", args.plot)
    if any(T < 1 for T in args.T):
        raise ValueError(f"--T must be integers >= 1, got {args.T}")
    grid = parse_grid(args.r0)
    if grid[-1] >= args.M:
        raise ValueError(
            f"--r0 {args.r0!r} reaches eps = r0 / M = {grid[-1] / args.M:g} at M = {args.M}; "
            "at eps = 1 every token is eligible, the erroneous count grows deterministically "
            "and the output law has no density in eps, so the curve is defined only for "
            f"r0 < M = {args.M}"
        )
    check_memory(f"the curve at {grid.size} grid points and T = {max(args.T)}",
                 grid.size * (max(args.T) + 1) * _BYTES_PER_STEP)
    announce("transitions", grid.size * sum(_SECONDS_LINEAR * T + _SECONDS_QUADRATIC * T**2
                                            for T in args.T))
    options = {"delta": args.delta} if args.delta else {}
    curves = [
        theory_indicator(args.M, T, grid, L=args.L, measures=args.measure, log_grid=args.log_grid, **options)
        for T in args.T
    ]
    summary = pd.concat([c.summary() for c in curves], ignore_index=True)
    table = pd.concat([c.to_pandas() for c in curves], ignore_index=True)
    first = args.measure[0]
    wide = table[table["measure"] == first].pivot(index="r0", columns="T", values="normalized")
    wide.columns = [f"T={T}" for T in wide.columns]

    display = ("display.width", 120, "display.max_rows", 200, "display.float_format", "{:.6g}".format)
    with pd.option_context(*display):
        print(f"list decoder, M={args.M}, L={args.L}: peak of the indicator along R0")
        print(summary.drop(columns=["M", "L"]).to_string(index=False))
        print()
        print(f"normalised {first} indicator (value / (L dR0)^2):")
        print(wide.to_string())
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    if args.plot:
        _plot(curves, first, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot(curves, measure: str, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for curve in curves:
        c = curve.curves[measure]
        ax.plot(c.position, c.normalized, marker=".", label=f"T = {curve.T}")
    ax.axvline(1.0, color="0.5", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel(r"$R_0 = M\varepsilon$")
    ax.set_ylabel(f"{measure} indicator / $(L\\,\\Delta R_0)^2$")
    ax.set_title(f"list decoder output law, M = {curves[0].M}, L = {curves[0].L}")
    ax.legend()
    fig.savefig(path, dpi=120)
