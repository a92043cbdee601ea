"""``llm-branching bridge measure``: R0 of a real list decoder along a control parameter.

Writes into ``--out``:

* ``r0_scan.csv`` -- one row per grid point: R0, immigration, delta (each with standard error
  and interval), the dispersion k with its interval, node counts and the run's parameters;
* ``crossings.csv`` -- every crossing of R0 = 1 with its bootstrap interval;
* ``depths.csv`` -- list size and number of erroneous candidates per grid point, prompt and
  depth;
* ``r0_scan.png`` -- R0 (with intervals and the line R0 = 1), immigration and delta.

Every finished grid point is stored in ``--cache-dir`` (default ``OUT/cache``): an interrupted
run resumes, a repeated one returns at once.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_DESCRIPTION = """\
List-decode a model at every point of a control grid and write into --out:
  r0_scan.csv     R0, immigration, delta (with standard errors and intervals), dispersion k
  crossings.csv   where R0 crosses 1, with bootstrap intervals
  depths.csv      list size and erroneous candidates per grid point, prompt and depth
  r0_scan.png     the curves
  cache/          finished grid points (an interrupted run resumes; --cache-dir moves it)
Controls: temperature (--grid/--log-grid of temperatures), rule (grid of the rule's
parameter: theta, top_p or k), prompt (--template with '{}' and --values), checkpoint
(--checkpoints, one model per grid point).  --model takes a Hugging Face id or directory
(default: the bundled SmolLM2-135M-Instruct) or tiny:V[:SEED[:EOS]] (prompts as token ids).
"""


def add_parser(steps) -> None:
    """Add ``measure`` to the ``bridge`` steps."""
    parser = steps.add_parser(
        "measure", help="list-decode a model over a control grid: R0, immigration, delta",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None,
                        help="hub id, directory or tiny:V[:SEED[:EOS]] (default: bundled model)")
    parser.add_argument("--control", default="temperature",
                        choices=("temperature", "rule", "prompt", "checkpoint"))
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--grid", metavar="LO:HI:K", help="K evenly spaced control values")
    grid.add_argument("--log-grid", metavar="LO:HI:K", help="K log-spaced control values")
    grid.add_argument("--values", help="control values: 'A:B[:STEP]' or a comma-separated list")
    parser.add_argument("--prompt", action="append", default=[],
                        help="a prompt (repeat for several; token ids for tiny:)")
    parser.add_argument("--prompts-file", help="file with one prompt per line")
    parser.add_argument("--template", action="append", default=[],
                        help="prompt template with one '{}' slot (control=prompt; repeatable)")
    parser.add_argument("--checkpoints", nargs="+", metavar="MODEL",
                        help="one model per grid point (control=checkpoint)")
    parser.add_argument("--rule", default="threshold=0.05",
                        help="eligibility rule: threshold=THETA, nucleus=TOP_P or top_k=K")
    parser.add_argument("--steps", type=int, default=6, help="decoding depth T")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="temperature (when it is not the control)")
    parser.add_argument("--chat", action="store_true", help="encode prompts with the chat template")
    parser.add_argument("--cap", type=int, default=128, help="largest list per depth (0: none)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="candidates per forward call (the grid points share them)")
    parser.add_argument("--bootstrap", default="both", choices=("prompts", "nodes", "both"))
    parser.add_argument("--boot", type=int, default=400, help="bootstrap replicates")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dtype", default="float32", help="model dtype")
    parser.add_argument("--cache-dir", default=None, help="finished grid points (default OUT/cache)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def _ids(text: str, option: str) -> list[int]:
    try:
        ids = [int(x) for x in re.split(r"[,\s]+", text.strip()) if x]
    except ValueError:
        raise ValueError(f"{option} must be token ids (e.g. '1,2,3') for a model without a "
                         f"tokenizer, got {text!r}") from None
    if not ids:
        raise ValueError(f"{option} must not be empty")
    return ids


def _grid(args):
    import numpy as np

    from llm_bridge.commands.scan import parse_grid, parse_values

    if args.grid is not None:
        lo, hi, n = parse_grid(args.grid, "--grid")
        return np.linspace(lo, hi, n)
    if args.log_grid is not None:
        lo, hi, n = parse_grid(args.log_grid, "--log-grid")
        return np.geomspace(lo, hi, n)
    if args.values is not None:
        values = parse_values(args.values)
        if not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"--values must be numbers, got {args.values!r}")
        return np.asarray(values, dtype=float)
    if args.control == "checkpoint" and args.checkpoints:
        return np.arange(len(args.checkpoints), dtype=float)
    raise ValueError("a grid is needed: --grid LO:HI:K, --log-grid LO:HI:K or --values")


def _prompts(args, tokenizer_free: bool):
    texts = list(args.prompt)
    if args.prompts_file is not None:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise ValueError(f"--prompts-file {args.prompts_file!r} is not an existing file")
        texts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not texts:
        raise ValueError("at least one --prompt or a --prompts-file is needed")
    return [_ids(t, "--prompt") for t in texts] if tokenizer_free else texts


def run(args) -> int:
    """Handler of ``llm-branching bridge measure``."""
    from llm_bridge.commands.scan import load_cli_model
    from llm_bridge.eligibility import parse_rule
    from llm_bridge.r0_scan import r0_scan

    from branching.commands._paths import check_output_dir

    out = check_output_dir("--out", args.out)
    if args.cache_dir is not None:
        check_output_dir("--cache-dir", args.cache_dir)
    rule = parse_rule(args.rule)
    grid = _grid(args)
    cap = None if args.cap == 0 else args.cap
    if args.control == "checkpoint":
        if not args.checkpoints:
            raise ValueError("--checkpoints is needed with --control checkpoint")
        first = load_cli_model(args.checkpoints[0], args.dtype)
        lm = [first] + list(args.checkpoints[1:])
        loader = lambda spec: load_cli_model(spec, args.dtype)  # noqa: E731
        prompts = _prompts(args, first.tokenizer is None)
    else:
        lm = load_cli_model(args.model, args.dtype)
        loader = None
        if args.control == "prompt":
            if not args.template:
                raise ValueError("--template is needed with --control prompt")
            if lm.tokenizer is None:
                raise ValueError("--control prompt needs a model with a tokenizer")
            prompts = list(args.template)
        else:
            prompts = _prompts(args, lm.tokenizer is None)
    scan = r0_scan(
        lm, prompts, control=args.control, grid=grid, rule=rule, n_steps=args.steps,
        temperature=args.temperature, cap=cap, batch_size=args.batch_size, chat=args.chat,
        labels=args.checkpoints if args.control == "checkpoint" else None,
        loader=loader, bootstrap=args.bootstrap, n_boot=args.boot, level=args.level,
        rng=args.seed, cache_dir=out / "cache" if args.cache_dir is None else args.cache_dir,
        progress=not args.no_progress,
    )
    for path in write_outputs(scan, out):
        print(f"wrote {path}")
    print(scan)
    return 0


def write_outputs(scan, out: Path) -> list[Path]:
    """Write the tables and the figure of an :class:`~llm_bridge.r0_scan.R0Scan`."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "r0_scan.csv", out / "crossings.csv", out / "depths.csv", out / "r0_scan.png"]
    scan.to_pandas().to_csv(paths[0], index=False)
    pd.DataFrame(
        [{"x": c.x, "ci_low": c.ci[0], "ci_high": c.ci[1], "direction": c.direction,
          "found_fraction": c.found_fraction} for c in scan.crossings()],
        columns=["x", "ci_low", "ci_high", "direction", "found_fraction"],
    ).to_csv(paths[1], index=False)
    frames = []
    for x, label, point in zip(scan.x, scan.labels, scan.points):
        frame = point.depth_table()
        frame.insert(0, "x", x)
        frame.insert(1, "label", label)
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_csv(paths[2], index=False)
    _plot(scan, paths[3])
    return paths


def _plot(scan, path: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(6.4, 7.0), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    defined = scan.defined
    for ax, name in zip(axes, ("r0", "immigration", "delta")):
        value, ci = getattr(scan, name), getattr(scan, f"{name}_ci")
        ok = np.isfinite(value)
        ax.errorbar(scan.x[ok], value[ok], yerr=np.abs(ci[:, ok] - value[ok]), marker="o",
                    ms=3, capsize=2)
        ax.set_ylabel({"r0": "R0", "immigration": "immigration mean",
                       "delta": "miss rate delta"}[name])
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    if (~defined).any():
        axes[0].plot(scan.x[~defined], np.zeros((~defined).sum()), "x", color="red",
                     label="undefined (no erroneous candidate)")
        axes[0].legend(fontsize="small")
    for crossing in scan.crossings():
        axes[0].axvline(crossing.x, color="C3", lw=0.8)
        if np.all(np.isfinite(crossing.ci)):
            axes[0].axvspan(*crossing.ci, color="C3", alpha=0.15)
    first = scan.points[0]
    axes[0].set_title(f"{first.model_name[:60]}\nrule {first.rule}, T={first.n_steps}, "
                      f"{first.n_prompts} prompts", fontsize="medium")
    if scan.control == "temperature" and np.all(scan.x > 0) and scan.x[-1] / scan.x[0] > 5:
        axes[-1].set_xscale("log")
    axes[-1].set_xlabel(scan.control)
    if scan.control == "checkpoint":
        axes[-1].set_xticks(scan.x, scan.labels, rotation=45, ha="right")
    fig.savefig(path, dpi=120)
