"""``llm-branching scan temperature|prompt|checkpoint``: run a scan, write arrays, table, plot.

Every scan writes into ``--out``:

* ``scan.npz`` -- the :class:`~llm_bridge.scan_result.ScanResult` (banded log-probabilities,
  token ids, seed, ...), reloadable with ``ScanResult.load``;
* ``indicators.csv`` -- the linear, TV and JS indicators for window ``--L`` with standard
  errors (for temperature scans also ``thermo.csv``: Fisher information and heat capacity);
* ``indicators.png`` -- the indicator curves (and the thermodynamic curves).

Finished grid points and whole scans are kept in ``--cache-dir`` (default ``OUT/cache``), so
an interrupted scan resumes and a repeated one returns without sampling.

Models: ``--model`` takes a Hugging Face id or local directory (default: the bundled
SmolLM2-135M-Instruct), or ``tiny:V[:SEED[:EOS]]`` for a tiny random model with ``V`` tokens
(initialisation seed ``SEED``, end-of-sequence token ``EOS``), used in tests.  A tiny model
has no tokenizer, so its prompts are written as token ids separated by commas or spaces.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_DESCRIPTION = """\
Sample continuations at every grid point of a control parameter, score them at the
neighbouring grid points, and write into --out:
  scan.npz         the scan (log-probabilities, token ids, seed), for ScanResult.load
  indicators.csv   linear, TV and JS indicators for window --L, with standard errors
  thermo.csv       Fisher information and heat capacity (temperature scans only)
  indicators.png   the curves
  cache/           finished pieces and whole scans: an interrupted scan resumes, a repeated
                   one returns at once (--cache-dir moves it)
--model takes a Hugging Face id or local directory (default: the bundled
SmolLM2-135M-Instruct), or tiny:V[:SEED[:EOS]] for a tiny random test model with V tokens;
a tiny model has no tokenizer, so its prompts are token ids ('0 1 2' or '0,1,2').
"""

_TINY = re.compile(r"^tiny:(\d+)(?::(\d+))?(?::(\d+))?$")


def register(subparsers) -> None:
    """Add the ``scan`` subcommand and its three kinds."""
    parser = subparsers.add_parser(
        "scan",
        help="scan temperature, a prompt slot or checkpoints of a language model",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    temperature = kinds.add_parser("temperature", help="scan the sampling temperature")
    _common(temperature, model=True)
    temperature.add_argument("--prompt", required=True, help="prompt text (token ids for tiny:)")
    grid = temperature.add_mutually_exclusive_group(required=True)
    grid.add_argument("--grid", metavar="LO:HI:K", help="K evenly spaced temperatures")
    grid.add_argument("--log-grid", metavar="LO:HI:K", help="K log-spaced temperatures")

    prompt = kinds.add_parser("prompt", help="scan a slot in the prompt")
    _common(prompt, model=True)
    prompt.add_argument("--template", required=True, help="prompt with one '{}' slot")
    prompt.add_argument(
        "--values", required=True,
        help="slot values: 'A:B' or 'A:B:STEP' (integers, inclusive) or a comma-separated list",
    )
    prompt.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")

    checkpoint = kinds.add_parser("checkpoint", help="scan a sequence of checkpoints")
    _common(checkpoint, model=False)
    checkpoint.add_argument(
        "--checkpoints", nargs="+", required=True, metavar="MODEL",
        help="checkpoints in order (ids, directories or tiny:V:SEED)",
    )
    checkpoint.add_argument("--prompt", required=True, help="prompt text (token ids for tiny:)")
    checkpoint.add_argument(
        "--positions", help="comma-separated grid positions (e.g. training steps); default 0..K-1"
    )
    checkpoint.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")

    for sub in (temperature, prompt, checkpoint):
        sub.set_defaults(handler=run)


def _common(parser, *, model: bool) -> None:
    if model:
        parser.add_argument(
            "--model", default=None,
            help="hub id, local directory or tiny:V[:SEED[:EOS]] (default: bundled SmolLM2-135M)",
        )
    parser.add_argument("--samples", type=int, default=64, help="samples per grid point")
    parser.add_argument("--tokens", type=int, default=10, help="tokens per continuation")
    parser.add_argument("--L", type=int, default=1, help="indicator window size")
    parser.add_argument("--eos", default="stop", help="end-of-sequence policy (see sampling)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dtype", default="float32", help="model dtype")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass")
    parser.add_argument(
        "--cache-dir", default=None,
        help="store finished grid points and whole scans here, so that a re-run resumes or "
             "returns at once (default: OUT/cache)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ---------------------------------------------------------------------------- parsing
def parse_grid(text: str, option: str) -> tuple[float, float, int]:
    """``"LO:HI:K"`` -> ``(lo, hi, K)``; a ValueError names ``option`` otherwise."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"{option} must look like LO:HI:K (e.g. 0.01:2:16), got {text!r}") from None
    if not (0 < lo < hi) or n < 2:
        raise ValueError(f"{option} needs 0 < LO < HI and K >= 2, got {text!r}")
    return lo, hi, n


def parse_values(text: str) -> list:
    """Slot values: ``A:B[:STEP]`` (inclusive integer range) or a comma-separated list.

    List entries that all parse as integers (or all as numbers) become numbers; otherwise
    they are kept as strings.
    """
    if "," not in text and text.count(":") in (1, 2) and not re.fullmatch(r"\s*-?\d+:-?\d+(:-?\d+)?\s*", text):
        raise ValueError(f"--values range must be A:B or A:B:STEP with integers "
                         f"(e.g. 1:20:2), got {text!r}; write other values as a comma-separated list")
    if re.fullmatch(r"-?\d+:-?\d+(:-?\d+)?", text.strip()):
        a, b, *step = (int(x) for x in text.split(":"))
        step = step[0] if step else 1
        if step <= 0 or b < a:
            raise ValueError(f"--values range A:B:STEP needs A <= B and STEP > 0, got {text!r}")
        return list(range(a, b + 1, step))
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ValueError(f"--values must list at least one value, got {text!r}")
    for kind in (int, float):
        try:
            return [kind(x) for x in items]
        except ValueError:
            continue
    return items


def _token_ids(text: str, option: str) -> list[int]:
    try:
        ids = [int(x) for x in re.split(r"[,\s]+", text.strip()) if x]
    except ValueError:
        raise ValueError(
            f"{option} must be token ids (e.g. '1,2,3') for a model without a tokenizer, got {text!r}"
        ) from None
    if not ids:
        raise ValueError(f"{option} must not be empty")
    return ids


def load_cli_model(spec: str | None, dtype: str = "float32"):
    """Load ``spec``: ``None`` (the default model), ``tiny:V[:SEED[:EOS]]``, or an id/path."""
    from llm_bridge import models

    match = _TINY.match(spec or "")
    if match:
        vocab, seed, eos = match.groups()
        return models.tiny_model(
            int(vocab), seed=int(seed or 0), eos_token_id=None if eos is None else int(eos),
            dtype=dtype,
        )
    if spec is not None and spec.startswith("tiny"):
        raise ValueError(f"--model tiny models are written tiny:V[:SEED[:EOS]], got {spec!r}")
    return models.load_model(spec, dtype=dtype)


def _prompt_for(lm, text: str, option: str):
    if not text:
        raise ValueError(f"{option} must not be empty")
    return _token_ids(text, option) if lm.tokenizer is None else text


# ---------------------------------------------------------------------------- run
def run(args) -> int:
    """Handler of ``llm-branching scan KIND``: run, write, print a summary."""
    from branching.commands._paths import check_output_dir

    from llm_bridge import scans

    check_output_dir("--out", args.out)
    if args.cache_dir is not None:
        check_output_dir("--cache-dir", args.cache_dir)
    cache_dir = Path(args.out) / "cache" if args.cache_dir is None else args.cache_dir
    try:
        result = _scan(args, scans, cache_dir)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"finished grid points are kept in {str(cache_dir)!r}; "
                                "the same command resumes") from None
    paths = write_outputs(result, Path(args.out), L=args.L)
    print(result)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _scan(args, scans, cache_dir):
    """Parse the grid of ``args.kind``, load the model(s) and run the scan."""
    common = {
        "n_samples": args.samples, "n_tokens": args.tokens, "L_max": args.L, "eos": args.eos,
        "batch_size": args.batch_size, "rng": args.seed,
        "cache_dir": cache_dir,
        "progress": not args.no_progress,
    }
    if args.kind == "temperature":
        if args.grid is not None:
            import numpy as np

            lo, hi, n = parse_grid(args.grid, "--grid")
            grid = np.linspace(lo, hi, n)
        else:
            grid = scans.log_temperature_grid(*parse_grid(args.log_grid, "--log-grid"))
        lm = load_cli_model(args.model, args.dtype)
        result = scans.temperature_scan(lm, _prompt_for(lm, args.prompt, "--prompt"), grid, **common)
    elif args.kind == "prompt":
        values = parse_values(args.values)
        if len(values) < 2 * args.L:
            raise ValueError(f"--values {args.values!r} gives {len(values)} value(s); a window "
                             f"--L {args.L} needs at least {2 * args.L}")
        lm = load_cli_model(args.model, args.dtype)
        template = scans.check_template(args.template)
        if lm.tokenizer is None:
            def template(value, _t=args.template):  # noqa: E306 - ids for a tokenizer-less model
                return _token_ids(_t.format(value), "--template")
        result = scans.prompt_scan(
            lm, template, values, temperature=args.temperature, **common
        )
    else:
        first = args.checkpoints[0]
        positions = None
        if args.positions is not None:
            try:
                positions = [float(x) for x in args.positions.split(",")]
            except ValueError:
                raise ValueError(f"--positions must be comma-separated numbers (e.g. 0,100,200), "
                                 f"got {args.positions!r}") from None
            if len(positions) != len(args.checkpoints):
                raise ValueError(f"--positions gives {len(positions)} positions for "
                                 f"{len(args.checkpoints)} --checkpoints; give one per checkpoint")

        def loader(spec):
            return load_cli_model(spec, args.dtype)

        prompt = args.prompt
        if _TINY.match(first):
            prompt = _token_ids(args.prompt, "--prompt")
        result = scans.checkpoint_scan(
            args.checkpoints, prompt, grid=positions, loader=loader,
            temperature=args.temperature, **common,
        )
    return result


def write_outputs(result, out: Path, *, L: int = 1) -> list[Path]:
    """Write ``scan.npz``, ``indicators.csv`` (+ ``thermo.csv``) and ``indicators.png``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [result.save(out / "scan.npz")]
    table = result.indicator_table(L=L)
    table.to_csv(out / "indicators.csv", index=False)
    paths.append(out / "indicators.csv")
    thermo_curves = []
    if result.kind == "temperature":
        import pandas as pd

        thermo_curves = [result.fisher_information(), result.heat_capacity()]
        pd.concat([c.to_pandas() for c in thermo_curves], ignore_index=True).to_csv(
            out / "thermo.csv", index=False
        )
        paths.append(out / "thermo.csv")
    paths.append(_plot(result, table, thermo_curves, out / "indicators.png", L=L))
    return paths


def _numeric(labels) -> bool:
    try:
        [float(x) for x in labels]
    except ValueError:
        return False
    return True


def _plot(result, table, thermo_curves, path: Path, *, L: int) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    rows = 1 + len(thermo_curves)
    fig = Figure(figsize=(6.4, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False, sharex=True)[:, 0]
    log_x = bool(table["log_grid"].iloc[0])
    for measure, frame in table.groupby("measure", sort=False):
        axes[0].errorbar(frame["position"], frame["value"], yerr=frame["se"], marker="o", ms=3,
                         capsize=2, label=measure)
    axes[0].set_ylabel(f"indicator (L={L})")
    axes[0].legend()
    name = result.model_name if len(result.model_name) <= 60 else result.model_name[:57] + "..."
    axes[0].set_title(f"{result.kind} scan, S={result.n_samples}, N={result.n_tokens}\n{name}",
                      fontsize="medium")
    for ax, curve in zip(axes[1:], thermo_curves):
        ax.errorbar(curve.temperatures, curve.value, yerr=curve.se, marker="o", ms=3, capsize=2)
        ax.set_ylabel(curve.quantity.replace("_", " "))
    if log_x:
        axes[-1].set_xscale("log")
    axes[-1].set_xlabel({"temperature": "temperature", "prompt": "slot value",
                         "checkpoint": "checkpoint"}[result.kind])
    if result.kind != "temperature" and not _numeric(result.labels):
        axes[-1].set_xticks(result.grid, result.labels, rotation=45, ha="right")
    fig.savefig(path, dpi=120)
    return path
