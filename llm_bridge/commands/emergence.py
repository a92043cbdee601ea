"""``llm-branching emergence``: the representation-level emergence metric on a model.

Writes into ``--out``: ``emergence.json`` (the full result, per block, position and seed),
``emergence.csv`` (tidy table), ``emergence.png`` (E_l(t) against position and E(l) against
block, with bands over seeds, the prefix-entropy reference and the log2 N ceiling) and the
captured representations under ``reps/`` (reused by a re-run).  Prints a table of E(l)
or, with ``--format json``, the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_DESCRIPTION = """\
Capture block inputs and outputs of a language model on fixed-length windows, estimate
macro (window) and micro (token alone) input-output mutual information per block and
position, and report E_l(t) = macro(t) - mean_{i<=t} micro(i) and E(l) = E_l(T-1), in bits.
Default: SmolLM2-135M-Instruct, 1024 category lists of 5 shots, every block, Gaussian
estimator on 32 PCA components, 3 seeds.  --model tiny:V[:SEED] uses a tiny random model.
"""


def register(subparsers) -> None:
    """Add the ``emergence`` subcommand."""
    from llm_bridge.emergence.experiment import CONTROLS, DATASETS
    from llm_bridge.emergence.mi import ESTIMATORS

    parser = subparsers.add_parser(
        "emergence", help="the information-emergence metric E(l), E_l(t) on a model",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None,
                        help="hub id, directory or tiny:V[:SEED] (default: bundled SmolLM2-135M)")
    parser.add_argument("--data", default="icl", choices=DATASETS, help="dataset (default icl)")
    parser.add_argument("--shots", type=int, default=5, help="entities per list (icl data)")
    parser.add_argument("--length", type=int, default=8, help="window length (text data)")
    parser.add_argument("--samples", type=int, default=1024, help="number of windows")
    parser.add_argument("--layers", default="all",
                        help="blocks: 'all', 'A:B[:STEP]' (inclusive) or a comma list")
    parser.add_argument("--control", default="none", choices=CONTROLS,
                        help="measure a random-init copy or near-identity blocks instead")
    parser.add_argument("--estimator", default="gaussian", choices=sorted(ESTIMATORS))
    parser.add_argument("--dim", type=int, default=32, help="PCA components per variable")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (splits, initialisations)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per forward pass")
    parser.add_argument("--format", default="table", choices=("table", "json"),
                        help="what to print")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def parse_layers(text: str):
    """``'all'`` -> None; otherwise integer block indices (see ``scan --values``)."""
    from llm_bridge.commands.scan import parse_values

    if text.strip() == "all":
        return None
    layers = parse_values(text)
    if not all(isinstance(x, int) for x in layers):
        raise ValueError(f"--layers must be 'all', A:B[:STEP] or integers, got {text!r}")
    return layers


def run(args) -> int:
    """Handler of ``llm-branching emergence``."""
    from llm_bridge.commands.scan import load_cli_model
    from llm_bridge.emergence.experiment import build_dataset, run_experiment

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {args.out!r} cannot be created: {err.strerror}") from None
    if not out.is_dir():
        raise ValueError(f"--out {args.out!r} is not a directory")
    layers = parse_layers(args.layers)
    lm = load_cli_model(args.model)
    data = build_dataset(lm, args.data, shots=args.shots, length=args.length, n=args.samples,
                         rng=args.seed)
    result = run_experiment(
        lm, data, out / "reps", layers=layers, control=args.control,
        estimator=args.estimator, n_seeds=args.seeds, batch_size=args.batch_size,
        control_seed=args.seed, rng=args.seed, progress=not args.no_progress, dim=args.dim,
    )
    result.save(out / "emergence.json")
    result.to_pandas().to_csv(out / "emergence.csv", index=False)
    plot(result, out / "emergence.png")
    if args.format == "json":
        json.dump(result.to_dict(), sys.stdout)
        print()
    else:
        print(result)
        print(layer_table(result).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"wrote {out / 'emergence.json'}, {out / 'emergence.csv'}, {out / 'emergence.png'}")
    return 0


def layer_table(result):
    """One row per block: E(l), its sd over seeds, and the macro and mean micro MI."""
    import pandas as pd

    mean, sd = result.per_layer()
    return pd.DataFrame({
        "layer": result.layers, "E_bits": mean, "sd": sd,
        "macro_bits": result.macro[:, -1].mean(axis=1),
        "mean_micro_bits": result.micro.mean(axis=(1, 2)),
        "H_prefix_bits": result.prefix_entropy[-1], "log2_N": result.ceiling_bits,
    })


def plot(result, path: Path, *, layers_shown: int = 4) -> Path:
    """E_l(t) for a few blocks and E(l), with seed bands and the reference lines."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    t = np.arange(result.length)
    shown = result.layers[:: max(1, len(result.layers) // layers_shown)][:layers_shown]
    for layer in shown:
        mean, sd = result.per_position(layer)
        left.plot(t, mean, marker="o", ms=3, label=f"block {layer}")
        left.fill_between(t, mean - sd, mean + sd, alpha=0.25)
    draw_references(left, result, t)
    left.set_xlabel("position t")
    left.set_ylabel("E_l(t) [bits]")
    left.legend(fontsize="small")
    mean, sd = result.per_layer()
    right.errorbar(result.layers, mean, yerr=sd, marker="o", ms=3, capsize=2, label="E(l)")
    right.axhline(result.reference[-1], color="k", ls="--", lw=1,
                  label="H(prefix) - mean H(token)")
    right.axhline(result.ceiling_bits, color="gray", ls=":", lw=1, label="log2 N")
    right.set_xlabel("block l")
    right.set_ylabel("E(l) = E_l(T-1) [bits]")
    right.legend(fontsize="small")
    name = result.model_name if len(result.model_name) <= 50 else result.model_name[:47] + "..."
    fig.suptitle(f"{name}: {result.dataset} data, {result.estimator} estimator, "
                 f"n={result.n}, bands: sd over {result.macro.shape[2]} seeds",
                 fontsize="medium")
    fig.savefig(path, dpi=120)
    return path


def draw_references(ax, result, t) -> None:
    """The discrete references: prefix entropy, its emergence value, and log2 N."""
    ax.plot(t, result.prefix_entropy, color="k", lw=1, ls="-.", label="H(S<=t)")
    ax.plot(t, result.reference, color="k", lw=1, ls="--", label="H(S<=t) - mean H(S_i)")
    ax.axhline(result.ceiling_bits, color="gray", ls=":", lw=1, label="log2 N")
