"""Regenerate every figure: ``python -m paper_figures [--quick] [--out DIR] [NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

import matplotlib

import paper_figures


def figure_modules() -> list[str]:
    """Names of the figure modules, in a stable order."""
    return sorted(
        info.name for info in pkgutil.iter_modules(paper_figures.__path__) if info.name.startswith("fig_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures", description=__doc__)
    parser.add_argument("names", nargs="*", help="figure modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small, fast versions")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")
    names = args.names or figure_modules()
    unknown = sorted(set(names) - set(figure_modules()))
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; available: {figure_modules()}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        module = importlib.import_module(f"paper_figures.{name}")
        paths = module.make(args.out, quick=args.quick)
        took = time.perf_counter() - start
        for path in paths:
            print(f"{name}: {path} ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
