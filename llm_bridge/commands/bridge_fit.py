"""``llm-branching bridge fit``: fit the theory's threshold to a distance curve.

Two ways in:

* ``--scan scan.npz`` (from ``llm-branching scan temperature``) fits the saved scan; with
  ``--r0 r0_scan.csv`` (from ``llm-branching bridge measure``) the measured R0 adds the
  second route to the threshold and allows ``--link measured``;
* ``--prompt P`` (repeatable) runs everything on a model: temperature scans, R0 along
  temperature from the list decoder, the fits, and with several prompts the held-out
  prediction of the last ``--heldout`` prompts.

Prints the fitted threshold with its interval, chi2/dof and its p-value, and the
falsification result against a threshold-free bump (``--format json`` for a record), and
with ``--out`` writes the tables, a JSON record and a figure.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

_DESCRIPTION = """\
Fit the theory's distance curve (the list decoder's output law along R0, vocabulary M,
horizon N = generated tokens) to an empirical one through a link from the control to R0.
  --scan scan.npz [--r0 r0_scan.csv]   fit a saved temperature/prompt/checkpoint scan
  --prompt P [--prompt P2 ...]         run the scans and the list decoder, then fit
Prints the threshold x_c (R0(x_c) = 1) with its bootstrap interval, chi2/dof, p, and the
verdict against a threshold-free bump (dAIC > 2: the theory fits worse).
With --out: fit.json, fit.csv, routes.csv, bridge.png (and summary.csv, heldout.csv).
"""


def add_parser(steps) -> None:
    """Add ``fit`` to the ``bridge`` steps."""
    parser = steps.add_parser(
        "fit", help="fit the theory's threshold to a distance curve (saved scan or a new run)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scan", help="a saved scan (scan.npz from `scan temperature`)")
    source.add_argument("--prompt", action="append", help="a prompt to run (repeat for several)")
    parser.add_argument("--r0", help="r0_scan.csv from `bridge measure` (with --scan)")
    parser.add_argument("--vocab", type=int, help="vocabulary size M of the scanned model (with --scan)")
    parser.add_argument("--link", default="loglinear",
                        choices=("loglinear", "linear", "measured", "measured_scaled"))
    parser.add_argument("--decreasing", action="store_true",
                        help="R0 decreases along the control (e.g. model scale)")
    parser.add_argument("--measure", default="linear", choices=("linear", "tv", "js"))
    parser.add_argument("--L", type=int, default=1, help="indicator window")
    parser.add_argument("--model", default=None,
                        help="hub id, directory or tiny:V[:SEED[:EOS]] (with --prompt; default: bundled)")
    parser.add_argument("--log-grid", default="0.1:4:12", metavar="LO:HI:K",
                        help="temperatures (with --prompt; default 0.1:4:12)")
    parser.add_argument("--samples", type=int, default=32, help="samples per temperature (--prompt)")
    parser.add_argument("--tokens", type=int, default=6, help="generated tokens N (--prompt)")
    parser.add_argument("--rule", default="threshold=0.05", help="list decoder's eligibility rule")
    parser.add_argument("--cap", type=int, default=64, help="list decoder's largest list per depth")
    parser.add_argument("--heldout", type=int, default=1, help="prompts held out (--prompt)")
    parser.add_argument("--no-chat", action="store_true", help="encode prompts without the chat template")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap replicates")
    parser.add_argument("--level", type=float, default=0.95, help="interval level")
    parser.add_argument("--se-floor", default="min_positive",
                        help="raise SEs to this (a number, 'min_positive' or 'none')")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dtype", default="float32", help="model dtype")
    parser.add_argument("--format", default="text", choices=("text", "json"))
    parser.add_argument("--out", help="directory for tables, fit.json and bridge.png")
    parser.add_argument("--cache-dir", default=None, help="scan cache (default OUT/cache)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def _se_floor(text: str):
    if text == "none":
        return None
    if text == "min_positive":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--se-floor must be a number, 'min_positive' or 'none', got {text!r}") from None


def read_measured(path, *, log_x: bool = True):
    """A :class:`~branching.fit.MeasuredR0` from ``r0_scan.csv`` of ``bridge measure``."""
    import pandas as pd

    from branching.fit import MeasuredR0

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--r0 {str(path)!r} is not a file")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"--r0 {str(path)!r} is not a readable CSV table: {err}") from None
    missing = {"x", "r0", "r0_se"} - set(frame.columns)
    if missing:
        raise ValueError(f"--r0 {str(path)!r} lacks the columns {sorted(missing)} (expected r0_scan.csv)")
    return MeasuredR0(frame["x"].to_numpy(float), frame["r0"].to_numpy(float),
                      frame["r0_se"].to_numpy(float), log_x=log_x)


def run(args) -> int:
    """Handler of ``llm-branching bridge fit``."""
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} exists and is not a directory")
    se_floor = _se_floor(args.se_floor)
    if args.scan:
        return _fit_saved(args, out, se_floor)
    return _run_prompts(args, out, se_floor)


def _fit_saved(args, out, se_floor) -> int:
    from branching.fit import fit_threshold, threshold_routes
    from llm_bridge.scan_result import ScanResult

    path = Path(args.scan)
    if not path.is_file():
        raise ValueError(f"--scan {args.scan!r} is not a file")
    if args.vocab is None:
        raise ValueError("--vocab (the model's vocabulary size M) is needed with --scan")
    try:
        scan = ScanResult.load(path)
    except (OSError, KeyError) as err:
        raise ValueError(f"--scan {args.scan!r} is not a saved scan: {err}") from None
    if args.L > scan.L_max:
        raise ValueError(f"--L {args.L} exceeds the scan's L_max = {scan.L_max}")
    curve = scan.indicator(L=args.L, measure=args.measure)
    measured = read_measured(args.r0, log_x=curve.log_grid) if args.r0 else None
    fit = fit_threshold(curve, M=args.vocab, N=scan.n_tokens, link=args.link, measured=measured,
                        increasing=not args.decreasing, n_boot=args.boot, level=args.level,
                        se_floor=se_floor, rng=args.seed)
    routes = threshold_routes(fit, measured, curve, n_boot=max(args.boot, 200), rng=args.seed + 1)
    if args.format == "json":
        print(json.dumps({"fit": fit.summary(), "routes": _records(routes)}, indent=1))
    else:
        _print_fit(fit, routes)
    if out is not None:
        for written in _write_fit(out, fit, measured, routes, title=f"{scan.model_name} ({scan.kind} scan)"):
            if args.format == "text":
                print(f"wrote {written}")
    return 0


def _run_prompts(args, out, se_floor) -> int:
    from llm_bridge.bridge import run_bridge
    from llm_bridge.commands.scan import load_cli_model, parse_grid
    from llm_bridge.eligibility import parse_rule
    from llm_bridge.scans import log_temperature_grid

    if args.link != "loglinear" or args.decreasing or args.measure != "linear" or args.L != 1:
        raise ValueError("--prompt runs fit the linear L=1 curve with the log-linear link "
                         "(increasing in temperature); --link/--decreasing/--measure/--L apply to --scan")
    lo, hi, k = parse_grid(args.log_grid, "--log-grid")
    rule = parse_rule(args.rule)
    lm = load_cli_model(args.model, args.dtype)
    prompts = args.prompt
    if lm.tokenizer is None:
        from llm_bridge.commands.bridge_measure import _ids

        prompts = [_ids(p, "--prompt") for p in prompts]
    cache = args.cache_dir or (out / "cache" if out is not None else None)
    result = run_bridge(lm, prompts, grid=log_temperature_grid(lo, hi, k), n_samples=args.samples,
                        n_tokens=args.tokens, rule=rule, cap=args.cap, n_heldout=args.heldout,
                        n_boot=args.boot, level=args.level, chat=not args.no_chat and lm.tokenizer is not None,
                        se_floor=se_floor, rng=args.seed, cache_dir=cache,
                        progress=not args.no_progress)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=1, default=_plain))
    else:
        for p in result.prompts:
            print(f"\n== {p.name}: {p.scan.params.get('prompt', '')!s:.60}")
            _print_fit(p.fit, p.routes)
        if result.heldout is not None:
            print("\n== held-out prediction")
            print(result.heldout.to_pandas().to_string(index=False))
            k_cov, n_cov = result.heldout.coverage
            print(f"covered {k_cov}/{n_cov} at {result.heldout.level:.0%}")
    if out is not None:
        written = []
        for p in result.prompts:
            written += _write_fit(out / p.name, p.fit, p.measured, p.routes,
                                  title=f"{result.model_name}: {p.name}")
        out.mkdir(parents=True, exist_ok=True)
        result.summary().to_csv(out / "summary.csv", index=False)
        written.append(out / "summary.csv")
        if result.heldout is not None:
            result.heldout.to_pandas().to_csv(out / "heldout.csv", index=False)
            written.append(out / "heldout.csv")
        (out / "bridge.json").write_text(json.dumps(result.to_dict(), indent=1, default=_plain))
        written.append(out / "bridge.json")
        if args.format == "text":
            for path in written:
                print(f"wrote {path}")
    return 0


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _records(routes) -> list:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in routes.to_dict(orient="records")]


def _print_fit(fit, routes) -> None:
    lo, hi = fit.x_c_ci
    print(f"threshold x_c = {fit.x_c:.4g}  [{lo:.4g}, {hi:.4g}] ({fit.level:.0%}, "
          f"bootstrap over {fit.bootstrap}, {fit.n_boot} replicates)")
    print("parameters: " + ", ".join(f"{k} = {v:.4g} [{fit.params_ci[k][0]:.4g}, {fit.params_ci[k][1]:.4g}]"
                                     for k, v in fit.params.items()))
    print(f"fit quality: chi2/dof = {fit.chi2_dof:.3g} (chi2 {fit.chi2:.3g} on {fit.dof} dof), "
          f"p = {fit.p_value:.3g}")
    print(f"falsification: threshold-free bump chi2 {fit.bump_chi2:.3g}, dAIC = {fit.delta_aic:+.3g}, "
          f"-2 log LR = {fit.lr_statistic:+.3g}")
    print(f"verdict: {fit.verdict}")
    print(routes.to_string(index=False))


def _write_fit(out: Path, fit, measured, routes, *, title: str) -> list:
    from matplotlib.figure import Figure

    from llm_bridge.bridge import plot_bridge

    out.mkdir(parents=True, exist_ok=True)
    paths = [fit.save(out / "fit.json"), out / "fit.csv", out / "routes.csv", out / "bridge.png"]
    fit.to_pandas().to_csv(paths[1], index=False)
    routes.to_csv(paths[2], index=False)
    fig = Figure(figsize=(6.4, 6.4), layout="constrained")
    plot_bridge(fig, fit, measured, routes, title=title)
    fig.savefig(paths[3], dpi=120)
    return paths
