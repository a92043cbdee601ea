r"""``llm-branching sweep``: a parameter sweep of the list decoder, written as a tidy table.

The grid comes from flags, from a TOML or JSON file (``--config``), or both (flags win).
A value is a single number, a comma-separated list, or ``start:stop:count`` for evenly
spaced values; ``none`` stands for an absent ``K``, ``eps_oracle`` or ``dispersion``.

Examples::

    llm-branching sweep --M 1000 --r0 0.5:1.5:21 --T 50,100,200 --runs 2000 --seed 1 \
        --out table.csv --plot plot.png
    llm-branching sweep --config sweep.toml --store runs/sweep1 --workers 4

A config file holds the grid under ``[grid]`` (and optional ``[[zip]]`` groups of
parameters varying together), plus any of ``task``, ``runs``, ``seed``, ``chunk_points``,
``store``, ``workers``, ``out``, ``plot`` and ``statistic``::

    task = "simulate"
    runs = 2000
    seed = 1
    [grid]
    M = 1000
    r0 = "0.5:1.5:21"
    T = [50, 100, 200]

With ``--store DIR`` finished chunks are saved as they complete; after an interruption
the same command resumes, skipping them, and gives the same table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..sweep import PARAMETERS, Grid, run_sweep
from ._budget import check_memory, count
from ._paths import check_output_dir, check_output_file, check_plot_file

_SETTINGS = ("task", "runs", "seed", "chunk_points", "store", "workers", "out", "plot", "statistic")
_OPTIONAL = ("K", "eps_oracle", "dispersion")
_INTEGER = ("M", "T", "K")
#: Memory per grid point of a sweep and its table (measured peak ~4 kB, doubled for the table).
_BYTES_PER_POINT = 8192


def _number(text: str):
    text = text.strip()
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _range(name: str, value: str) -> tuple[float, float, int] | None:
    """``(start, stop, count)`` of a ``start:stop:count`` value (``None`` for other values)."""
    if value.count(":") != 2:
        return None
    start, stop, count = value.split(":")
    try:
        start, stop, count = float(start), float(stop), int(count)
    except ValueError:
        raise ValueError(f"{name} range must be 'start:stop:count' with an integer count, "
                         f"got {value!r}") from None
    if count < 2 or not start < stop:
        raise ValueError(f"{name} range needs start < stop and count >= 2, got {value!r}")
    return start, stop, count


def _length(name: str, value) -> int:
    """How many values a flag or config value gives, without building them."""
    if isinstance(value, list):
        return len(value)
    if not isinstance(value, str):
        return 1
    bounds = _range(name, value)
    return bounds[2] if bounds is not None else len([v for v in value.split(",") if v.strip()])


def parse_values(name: str, value):
    """A flag or config value -> list of grid values (``a:b:n``, ``a,b,c``, scalar or list).

    A range of an integer parameter (``M``, ``T``, ``K``) must give whole numbers, which
    become integers; otherwise the message says how to write it.
    """
    if isinstance(value, list):
        return [_number(v) if isinstance(v, str) else v for v in value]
    if not isinstance(value, str):
        return [value]
    bounds = _range(name, value)
    if bounds is None:
        return [_number(v) for v in value.split(",") if v.strip()]
    values = np.linspace(*bounds).tolist()
    if name.lstrip("-") in _INTEGER:
        rounded = [round(v) for v in values]
        if any(abs(v - r) > 1e-9 * max(1.0, abs(v)) for v, r in zip(values, rounded)):
            start, stop, count = bounds
            hint = "list the values instead"
            if float(start).is_integer() and float(stop).is_integer():
                hint = (f"choose count with (stop - start) / (count - 1) whole, e.g. "
                        f"'{start:g}:{stop:g}:{_whole_count(int(start), int(stop), count)}', or {hint}")
            raise ValueError(
                f"{name} range {value!r} gives values that are not whole numbers "
                f"({_show_values(values)}); {name.lstrip('-')} is an integer: {hint}"
            )
        values = rounded
    return values


def _show_values(values: list) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:4])
    return shown + (", ..." if len(values) > 4 else "")


def _whole_count(start: int, stop: int, count: int) -> int:
    """A count near ``count`` whose steps from ``start`` to ``stop`` are whole numbers."""
    span = stop - start
    near = sorted(range(max(1, count - 1 - 1000), min(span, count - 1 + 1000) + 1),
                  key=lambda d: (abs(d + 1 - count), d + 1 < count))
    return next((d + 1 for d in near if span % d == 0), 2)


def _read_config(path: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config file not found: {str(path)!r}")
    if path.suffix.lower() == ".json":
        with open(path) as handle:
            try:
                config = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"--config {str(path)!r} is not valid JSON: {err}") from None
    elif path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ValueError("a TOML config needs Python 3.11+ or the tomli package; "
                                 "use a JSON config instead") from None
        with open(path, "rb") as handle:
            try:
                config = tomllib.load(handle)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"--config {str(path)!r} is not valid TOML: {err}") from None
    else:
        raise ValueError(f"--config must be a .toml or .json file, got {str(path)!r}")
    if not isinstance(config, dict):
        raise ValueError(f"--config {str(path)!r} must hold a table of settings")
    unknown = sorted(set(config) - set(_SETTINGS) - {"grid", "zip"})
    if unknown:
        raise ValueError(f"--config {str(path)!r} has unknown keys {unknown}; "
                         f"valid keys are grid, zip and {list(_SETTINGS)}")
    return config


def register(subparsers) -> None:
    """Add the ``sweep`` subcommand."""
    parser = subparsers.add_parser(
        "sweep",
        help="sweep model parameters, simulated or exact, into a tidy table",
        description=(
            "Evaluate the list decoder at every point of a parameter grid (Monte Carlo or "
            "exact), in parallel and resumably, and write a tidy table (one row per grid "
            "point and statistic, with standard errors) and a plot of a statistic against R0."
        ),
    )
    grid = parser.add_argument_group("grid (VALUES: x | x,y,z | start:stop:count)")
    for name in PARAMETERS:
        flag = "--" + name.replace("_", "-")
        grid.add_argument(flag, dest=f"grid_{name}", metavar="VALUES", default=None,
                          help=f"values of {name}")
    parser.add_argument("--config", default=None, help="TOML or JSON file with the grid and settings")
    parser.add_argument("--task", choices=("simulate", "exact"), default=None,
                        help="Monte Carlo (default) or exact statistics")
    parser.add_argument("--runs", type=count, default=None,
                        help="Monte Carlo runs per grid point (e.g. 2000 or 1e4)")
    parser.add_argument("--seed", type=int, default=None,
                        help="root seed (default: fresh entropy, or the one stored in --store)")
    parser.add_argument("--chunk-points", type=int, default=None, help="grid points per chunk (default 1)")
    parser.add_argument("--store", default=None, help="directory for resumable storage of chunks")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: one per CPU; 1: no subprocesses)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", default=None, help="write the table (.csv, or .parquet with pyarrow)")
    parser.add_argument("--plot", default=None, help="write a plot (PNG, PDF, SVG) of --statistic vs R0")
    parser.add_argument("--statistic", default=None,
                        help="statistic printed and plotted (default: accuracy)")
    parser.set_defaults(handler=run)


def _settings(args: argparse.Namespace) -> tuple[Grid, dict]:
    if args.grid_r0 is not None and args.grid_eps is not None:
        raise ValueError(f"--r0 {args.grid_r0} and --eps {args.grid_eps} are alternatives "
                         "(eps = r0 / M); give one of them")
    config = _read_config(args.config) if args.config else {}
    raw = dict(config.get("grid") or {})
    zipped = config.get("zip") or []
    if isinstance(zipped, dict):
        zipped = [zipped]
    flags = {}
    for name in PARAMETERS:
        value = getattr(args, f"grid_{name}")
        if value is None:
            continue
        flags[name] = value
        raw.pop(name, None)
        other = {"eps": "r0", "r0": "eps"}.get(name)
        if other is not None:  # a flag for eps replaces r0 from the config, and vice versa
            raw.pop(other, None)
            zipped = [{k: v for k, v in g.items() if k != other} for g in zipped]
            zipped = [g for g in zipped if g]
    flag_names = {name: "--" + name.replace("_", "-") for name in flags}
    lengths = [_length(name, value) for name, value in raw.items()]
    lengths += [_length(flag_names[name], value) for name, value in flags.items()]
    lengths += [max((_length(name, v) for name, v in group.items()), default=1) for group in zipped]
    n_points = math.prod(lengths)
    check_memory(f"a sweep of {n_points} grid points", n_points * _BYTES_PER_POINT)
    axes = {name: parse_values(name, value) for name, value in raw.items()}
    axes.update({name: parse_values(flag_names[name], value) for name, value in flags.items()})
    zipped = [{name: parse_values(name, v) for name, v in group.items()} for group in zipped]
    settings = {key: config.get(key) for key in _SETTINGS}
    for key in _SETTINGS:
        flag = getattr(args, key, None)
        if flag is not None:
            settings[key] = flag
    settings["task"] = settings["task"] or "simulate"
    if settings["task"] not in ("simulate", "exact"):
        raise ValueError(f"task must be 'simulate' or 'exact', got {settings['task']!r}")
    if settings["task"] == "simulate" and settings["runs"] is None:
        raise ValueError("--runs is required for a Monte Carlo sweep (or use --task exact)")
    for key, low in (("runs", 2), ("chunk_points", 1), ("workers", 1)):
        value = settings[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise ValueError(f"--{key.replace('_', '-')} must be an integer >= {low}, "
                             f"got {value!r}")
    return Grid(axes, zipped=zipped), settings


def _check_paths(settings: dict) -> None:
    """Refuse unusable --out, --plot and --store paths before any work starts."""
    if settings["out"]:
        check_output_file("--out", settings["out"], suffixes=(".csv", ".parquet"))
        if Path(settings["out"]).suffix.lower() == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValueError(f"--out {settings['out']!r}: writing parquet needs the pyarrow "
                                 "package; install it or write .csv") from None
    if settings["plot"]:
        check_plot_file("--plot", settings["plot"])
    if settings["store"]:
        check_output_dir("--store", settings["store"])


def _write_table(result, path: str) -> None:
    if Path(path).suffix.lower() == ".csv":
        result.to_csv(path)
        return
    try:
        result.to_parquet(path)
    except ImportError as err:
        raise ValueError(str(err)) from None


def _curve_groups(result, statistic: str) -> dict:
    """``{label: (r0, value, se)}``: one curve per combination of the other parameters."""
    value, se = result.values(statistic)
    columns = result.parameter_columns()
    varying = [n for n in result.grid.parameters
               if n not in ("eps", "r0") and len(set(columns[n])) > 1]
    groups: dict = {}
    for i, r0 in enumerate(columns["r0"]):
        label = ", ".join(f"{n}={columns[n][i]}" for n in varying)
        groups.setdefault(label, []).append((r0, value[i], se[i]))
    return {label: tuple(np.array(col) for col in zip(*sorted(rows)))
            for label, rows in groups.items()}


def _plot(result, statistic: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _curve_groups(result, statistic)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (r0, value, se) in groups.items():
        ax.errorbar(r0, value, yerr=se, marker="o", markersize=3, capsize=2, label=label or None)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(r"$R_0 = M\varepsilon$")
    ax.set_ylabel(statistic)
    ax.set_title(f"{result.task} sweep, {len(result.grid)} grid points", fontsize=9)
    if any(groups):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print a summary, write the table and the plot; returns the exit code."""
    grid, settings = _settings(args)
    _check_paths(settings)
    try:
        result = run_sweep(
            grid, settings["task"], n_runs=settings["runs"], rng=settings["seed"],
            workers=settings["workers"], store=settings["store"], progress=not args.no_progress,
            chunk_points=1 if settings["chunk_points"] is None else settings["chunk_points"],
        )
    except KeyboardInterrupt:
        if settings["store"]:
            raise KeyboardInterrupt(f"finished chunks are kept in {settings['store']!r}; "
                                    "the same command resumes") from None
        raise KeyboardInterrupt("nothing was stored (--store DIR makes a sweep resumable)") from None
    statistic = settings["statistic"] or ("accuracy" if "accuracy" in result.statistics
                                          else result.statistics[0])
    if statistic not in result.statistics:
        raise ValueError(f"--statistic must be one of {list(result.statistics)}, got {statistic!r}")
    print(f"{result.task}: {len(grid)} grid points, seed {result.seed.entropy}, "
          f"statistics {', '.join(result.statistics)}")
    for label, (r0, value, se) in _curve_groups(result, statistic).items():
        print(f"{statistic} [{label}]" if label else statistic)
        for x, v, e in zip(r0, value, se):
            print(f"  r0={x:<10.6g} {v:.6g} +- {e:.2g}")
    if settings["out"]:
        _write_table(result, settings["out"])
        print(f"table: {settings['out']}", file=sys.stderr)
    if settings["plot"]:
        _plot(result, statistic, settings["plot"])
        print(f"plot: {settings['plot']}", file=sys.stderr)
    return 0
