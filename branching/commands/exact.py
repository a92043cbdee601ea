"""``llm-branching exact``: exact summary statistics of one list-decoder model."""

from __future__ import annotations

import json
import math

from .. import exact
from ..model import ListDecoderModel
from ._budget import announce, check_memory
from ._model_args import add_model_arguments, model_from_args

#: Rough cost per horizon step of the statistics (measured at T = 10**6, M = 1000, r0 = 0.9):
#: seconds on one core and peak bytes.
_SECONDS_PER_STEP, _BYTES_PER_STEP = 1.3e-4, 128


def register(subparsers) -> None:
    """Add the ``exact`` subcommand."""
    parser = subparsers.add_parser(
        "exact",
        help="exact moments, P(Z_T=0), accuracy and lineage survival of one model",
        description=(
            "Exact statistics of the list-decoder branching process (no simulation): "
            "E Z_T, Var Z_T, P(Z_T = 0), the accuracy E[1/(1+Z_T)] of a uniform final "
            "choice, the stationary mean and variance when r0 < 1, the extinction and "
            "survival probabilities of one erroneous lineage, and the compute cost."
        ),
    )
    add_model_arguments(parser, variants=False)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def summary(model: ListDecoderModel) -> dict:
    """The statistics printed by the command, as a flat dict of numbers."""
    law = model.offspring(0)
    estimate = exact.accuracy_estimate(model)
    out = {
        "M": model.M,
        "eps": float(model.eps),
        "r0": model.r0,
        "T": model.T,
        "delta": model.delta,
        "mean_Z_T": float(exact.mean_path(model)[-1]),
        "var_Z_T": float(exact.variance_path(model)[-1]),
        "p_no_error": exact.prob_no_error(model),
        **({"p_oracle_alone": exact.prob_oracle_alone(model)} if model.delta > 0 else {}),
        "accuracy": estimate.value,
        "log10_accuracy": estimate.log10_value,
        "accuracy_abs_error": estimate.abs_error,
        "oracle_survival": exact.oracle_survival(model),
        "extinction_probability": exact.extinction_probability(law),
        "survival_probability": exact.survival_probability(law),
        "compute_cost": exact.compute_cost(model),
    }
    if model.r0 < 1 and model.delta == 0:
        out["stationary_mean"] = exact.stationary_mean(model)
        out["stationary_variance"] = exact.stationary_variance(model)
    return out


def run(args) -> int:
    """Handler: build the model, compute, print."""
    model = model_from_args(args)
    check_memory(f"exact statistics at T = {model.T}", (model.T + 1) * _BYTES_PER_STEP)
    announce("exact", model.T * _SECONDS_PER_STEP)
    stats = summary(model)
    if args.format == "json":
        print(json.dumps(stats, indent=2))
        return 0
    labels = {
        "mean_Z_T": "E Z_T", "var_Z_T": "Var Z_T",
        "accuracy_abs_error": "  quadrature error", "log10_accuracy": "  log10 accuracy",
        "oracle_survival": "P(oracle kept)", "stationary_mean": "stationary E Z",
        "stationary_variance": "stationary Var Z",
        "extinction_probability": "lineage extinction q",
        "survival_probability": "lineage survival 1-q", "compute_cost": "compute cost E sum L_t",
    }
    if args.delta > 0:  # misses: the list can end empty and the oracle can be lost
        labels.update({
            "p_no_error": "P(Z_T = 0) (oracle alone or empty list)",
            "p_oracle_alone": "P(list = oracle alone)",
            "accuracy": "accuracy (1-delta)^T E[1/(1+Z_T) | oracle kept]",
        })
    else:
        labels.update({"p_no_error": "P(Z_T = 0)", "accuracy": "accuracy E[1/(1+Z_T)]"})
    width = max(len(v) for v in labels.values())
    print(repr(model))
    for key, value in stats.items():
        if key in labels:
            text = f"{value:.10g}" if isinstance(value, float) and math.isfinite(value) else str(value)
            print(f"  {labels[key]:<{width}}  {text}")
    return 0
