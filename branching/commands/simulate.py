"""``llm-branching simulate``: Monte Carlo statistics of one list-decoder model."""

from __future__ import annotations

import csv
import math

from ..simulate import DEFAULT_CEILING, simulate
from ._budget import count
from ._model_args import add_model_arguments, model_from_args
from ._paths import check_output_file, check_plot_file

#: Path entries buffered per chunk (``chunk_size * (T + 1)``), as in :func:`simulate`.
_CHUNK_ENTRIES = 2**25


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="Monte Carlo simulation of the count-level list-decoder process",
        description=(
            "Simulate the number Z_t of erroneous candidates of the list decoder and print "
            "E Z_T, P(Z_T = 0), the accuracy of a uniform final choice, the survival of the "
            "oracle path and the compute used, each with its Monte Carlo standard error. "
            "--out writes the tidy per-step table (one row per statistic and step) as CSV. "
            "With --cohorts the immigrants and the offspring of each cohort are drawn "
            "separately, so the same --seed gives other replicates than without it (the same "
            "law: statistics agree within their standard errors)."
        ),
    )
    add_model_arguments(parser)
    parser.add_argument("--runs", type=count, default=10_000,
                        help="number of replicates (e.g. 10000 or 1e6)")
    parser.add_argument("--seed", type=int, default=None,
                        help="integer seed (default: fresh entropy, printed)")
    parser.add_argument("--ceiling", type=float, default=float(DEFAULT_CEILING),
                        help="largest erroneous count simulated (runs above it are capped)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: all CPUs)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="replicates per chunk (default: 1024, fewer for long horizons)")
    parser.add_argument("--cohorts", action="store_true",
                        help="also track cohorts and the divergence-depth law of the output "
                             "(other replicates for the same --seed, same law)")
    parser.add_argument("--out", default=None, metavar="TABLE.csv",
                        help="write the tidy per-step table to this CSV file")
    parser.add_argument("--plot", default=None, metavar="PLOT.png",
                        help="plot E Z_t with its standard error and the 10/50/90%% quantiles")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args) -> int:
    """Handler: build the model, simulate, print the summary, optionally write the table."""
    if args.out is not None:
        check_output_file("--out", args.out, suffixes=(".csv",))
    if args.plot is not None:
        check_plot_file("--plot", args.plot)
    model = model_from_args(args)
    chunk_size = args.chunk_size
    if chunk_size is None:
        chunk_size = max(1, min(1024, _CHUNK_ENTRIES // (model.T + 1)))
    result = simulate(
        model, args.runs, rng=args.seed, ceiling=args.ceiling, cohorts=args.cohorts,
        threads=args.threads, chunk_size=chunk_size, progress=not args.no_progress,
    )
    seed = result.seed
    print(repr(model))
    print(f"  runs {result.n_runs}, seed entropy {seed.entropy}"
          + (f", spawn key {seed.spawn_key}" if seed.spawn_key else ""))
    labels = {
        "mean_Z_T": "E Z_T", "p_no_error": "P(Z_T = 0)", "accuracy": "accuracy",
        "oracle_survival": "P(oracle kept)", "compute": "compute E sum L_t",
        "p_no_output": "P(empty list)", "capped_fraction": "capped fraction",
    }
    width = max(len(label) for label in labels.values())
    for key, (value, se) in result.summary().items():
        print(f"  {labels[key]:<{width}}  {_number(value)} +/- {_number(se)}")
    if result.capped_fraction > 0:
        first = int((result.capped_by_step > 0).argmax())
        print(f"  note: runs reached the ceiling from step {first}; statistics from there on "
              "are bounds (raise --ceiling or lower T)")
    if args.out is not None:
        with open(args.out, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["statistic", "step", "depth", "value", "se"])
            for row in result.rows():
                writer.writerow(["" if item is None else item for item in row])
        print(f"  table written to {args.out}")
    if args.plot is not None:
        _plot(result, args.plot)
        print(f"  plot written to {args.plot}")
    return 0


def _plot(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = range(result.model.T + 1)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(steps, result.mean, color="k", label="mean")
    ax.fill_between(steps, result.mean - 2 * result.mean_se, result.mean + 2 * result.mean_se,
                    color="k", alpha=0.2, label="mean +- 2 se")
    for level, values in result.quantiles.items():
        ax.plot(steps, values, lw=0.8, ls="--", label=f"{level:.0%} quantile")
    ax.set(xlabel="step t", ylabel="erroneous candidates Z_t", yscale="symlog",
           title=f"{result.n_runs} runs of {result.model!r}"[:90])
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)
