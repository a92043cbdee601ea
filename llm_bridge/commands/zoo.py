"""``llm-branching zoo train|measure``: the family of trained models (the scale axis).

``zoo train`` trains every size of a family (or returns it from the cache, or resumes an
interrupted run) and prints one row per model.  ``zoo measure`` measures every model with
the list decoder (branching parameters on the measure split, accuracies on the test split,
the theory's prediction), optionally the checkpoints of one model along training, prints
the table and writes ``sizes.csv``, ``training.csv``, ``zoo.json`` and ``scale.png`` into
``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

_DESCRIPTION = """\
The zoo: decoder-only Llama models of increasing size trained by the package on running
sums modulo M (a task with exactly one correct answer), cached under --cache-dir (default
$LLM_BRANCHING_CACHE, else $XDG_CACHE_HOME/llm-branching); a re-run reuses them and an
interrupted training resumes from its last checkpoint.
  zoo train    train (or load) every size of --family
  zoo measure  list-decode every model: R0, immigration, misses on the measure split;
               list-decoding and greedy accuracy on the test split; the theory's accuracy
               from the measured parameters; --checkpoints I adds the training scan of
               size I.  Writes sizes.csv, training.csv, zoo.json and scale.png into --out.
"""


def register(subparsers) -> None:
    """Add the ``zoo`` subcommand and its two actions."""
    parser = subparsers.add_parser(
        "zoo", help="train and measure a family of small models (the scale axis)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train (or load) every size of a family")
    _common(train)
    train.add_argument("--max-step", type=int, default=None,
                       help="stop every model after this many steps (resumable)")
    train.set_defaults(handler=run_train)

    measure = actions.add_parser("measure", help="measure every model of a family")
    _common(measure)
    measure.add_argument("--theta", type=float, default=0.1,
                         help="eligibility threshold: p(token) >= theta (default 0.1)")
    measure.add_argument("--temperature", type=float, default=1.0)
    measure.add_argument("--n-measure", type=int, default=100, help="measure-split inputs")
    measure.add_argument("--n-test", type=int, default=100, help="test-split inputs")
    measure.add_argument("--cap", type=int, default=256, help="list cap of the decoder")
    measure.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates")
    measure.add_argument("--seed", type=int, default=0, help="seed of inputs and bootstrap")
    measure.add_argument("--checkpoints", type=int, default=None, metavar="I",
                         help="also scan the checkpoints of size I (-1: the largest)")
    measure.add_argument("--out", default=None, help="directory for csv, json and png")
    measure.set_defaults(handler=run_measure)


def _common(parser) -> None:
    parser.add_argument("--family", default="quick", choices=("quick", "default"),
                        help="predefined family (default: quick)")
    parser.add_argument("--cache-dir", default=None, help="cache root")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _models(args, max_step=None):
    from llm_bridge.zoo import get_family, train_model

    family = get_family(args.family)
    return family, [train_model(family, i, cache_dir=args.cache_dir, max_step=max_step,
                                threads=args.threads, progress=not args.no_progress)
                    for i in range(len(family.sizes))]


def run_train(args) -> int:
    """Handler of ``zoo train``."""
    family, models = _models(args, args.max_step)
    rows = []
    for m in models:
        tail = slice(max(0, m.loss.size - 20), None)
        rows.append({
            "model": m.name, "parameters": m.n_parameters, "steps": m.steps[-1],
            "complete": m.complete, "loss": float(m.loss[tail].mean()) if m.loss.size else None,
            "token_accuracy": float(m.token_accuracy[tail].mean()) if m.loss.size else None,
            "seconds": round(m.seconds, 2), "digest": m.digest, "directory": str(m.directory),
        })
    if args.format == "json":
        print(json.dumps({"family": family.name, "task": family.task.name, "models": rows},
                         indent=2))
        return 0
    print(f"family {family.name}: {family.task.name}, {family.train.steps} steps, "
          f"seed {family.seed}")
    print(f"{'model':<28} {'params':>8} {'step':>6} {'loss':>7} {'tok acc':>8} "
          f"{'seconds':>8}  digest")
    for r in rows:
        loss = "-" if r["loss"] is None else f"{r['loss']:.4f}"
        acc = "-" if r["token_accuracy"] is None else f"{r['token_accuracy']:.3f}"
        print(f"{r['model']:<28} {r['parameters']:>8,} {r['steps']:>6} {loss:>7} {acc:>8} "
              f"{r['seconds']:>8.1f}  {r['digest'][:16]}")
    return 0


def _out_dir(text) -> Path | None:
    if text is None:
        return None
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {text!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {text!r} cannot be created ({exc.strerror})") from None
    return out


def run_measure(args) -> int:
    """Handler of ``zoo measure``."""
    from llm_bridge.zoo.measure import (MeasureSettings, emergence_point, measure_models,
                                        power_law_crossing, training_scan)

    out = _out_dir(args.out)
    settings = MeasureSettings(theta=args.theta, temperature=args.temperature,
                               n_measure=args.n_measure, n_test=args.n_test, cap=args.cap,
                               n_boot=args.n_boot, seed=args.seed)
    family, models = _models(args)
    if args.checkpoints is not None and not -len(models) <= args.checkpoints < len(models):
        raise ValueError(f"--checkpoints must be a size index in [-{len(models)}, "
                         f"{len(models) - 1}], got {args.checkpoints}")
    progress = not args.no_progress
    sizes = measure_models([m.language_model() for m in models],
                           [m.n_parameters for m in models], family.task,
                           labels=[m.size.name for m in models], settings=settings,
                           cache_dir=args.cache_dir, progress=progress)
    fit = power_law_crossing(sizes.x, sizes.r0, sizes.r0_boot, level=settings.level)
    summary = {
        "family": family.name,
        "observed_emergence": emergence_point(sizes.x, sizes.ld_accuracy),
        "predicted_emergence": emergence_point(sizes.x, sizes.predicted),
        "r0_power_law": fit,
    }
    training = None
    if args.checkpoints is not None:
        training = training_scan(models[args.checkpoints], settings=settings,
                                 cache_dir=args.cache_dir, progress=progress)
        summary["training"] = {
            "model": models[args.checkpoints].name,
            "indicator_peak": training.peak.location,
            "indicator_peak_ci": list(training.peak.location_ci),
            "r0_crossings": [c.x for c in training.measurement.r0_crossings],
            "observed_emergence": emergence_point(
                training.measurement.x[1:], training.measurement.ld_accuracy[1:]),
        }
    if out is not None:
        from llm_bridge.zoo.plot import plot_scale

        sizes.to_pandas().to_csv(out / "sizes.csv", index=False)
        if training is not None:
            training.measurement.to_pandas().to_csv(out / "training.csv", index=False)
        payload = {"summary": summary, "sizes": sizes.to_json(),
                   "training": None if training is None else training.measurement.to_json()}
        (out / "zoo.json").write_text(json.dumps(payload, indent=2, default=_json_default))
        plot_scale(sizes, training, out / "scale.png")
    if args.format == "json":
        print(json.dumps({"summary": summary, "sizes": sizes.to_json(),
                          "training": None if training is None else training.measurement.to_json()},
                         indent=2, default=_json_default))
        return 0
    _print_table(sizes)
    print(f"observed emergence (test accuracy 1/2): {_fmt(summary['observed_emergence'])} "
          f"parameters; predicted: {_fmt(summary['predicted_emergence'])}")
    print(f"R0 power law: slope {fit['slope']:.3f}, crosses 1 at {_fmt(fit['x_c'])} parameters "
          f"(CI {_fmt(fit['ci'][0])} .. {_fmt(fit['ci'][1])}); measured crossings: "
          f"{[round(c.x) for c in sizes.r0_crossings] or 'none'}")
    if training is not None:
        print(f"\ntraining of {summary['training']['model']}:")
        _print_table(training.measurement)
        t = summary["training"]
        print(f"output-law indicator peak at step {t['indicator_peak']:.3g} (CI "
              f"{t['indicator_peak_ci'][0]:.3g} .. {t['indicator_peak_ci'][1]:.3g}); R0 = 1 "
              f"crossings: {[round(c) for c in t['r0_crossings']] or 'none'}")
    if out is not None:
        print(f"wrote {out / 'sizes.csv'}, {out / 'zoo.json'}, {out / 'scale.png'}")
    return 0


def _fmt(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.4g}"


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_table(m) -> None:
    print(f"{m.axis:>11} {'label':>10} {'R0 [CI]':>20} {'lambda':>7} {'delta':>6} "
          f"{'acc LD':>12} {'predicted [band]':>22} {'greedy':>6} {'assume':>6} {'agree':>5}")
    for i in range(m.x.size):
        r0 = "-" if not math.isfinite(m.r0[i]) else \
            f"{m.r0[i]:.3f} [{m.r0_ci[0, i]:.2f},{m.r0_ci[1, i]:.2f}]"
        print(f"{m.x[i]:>11,.0f} {m.labels[i]:>10} {r0:>20} {m.immigration[i]:>7.3f} "
              f"{m.delta[i]:>6.3f} {m.ld_accuracy[i]:>6.3f}±{m.ld_accuracy_se[i]:.3f} "
              f"{m.predicted[i]:>6.3f} [{m.predicted_band[0, i]:.3f},{m.predicted_band[1, i]:.3f}]"
              f" {m.greedy_accuracy[i]:>6.3f} {str(bool(m.assumptions_hold[i])):>6} "
              f"{str(bool(m.agrees[i])):>5}")
