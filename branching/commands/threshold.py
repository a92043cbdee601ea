r"""``llm-branching threshold``: the critical point :math:`M\varepsilon=1`, symbolically and numerically.

Examples::

    llm-branching threshold --M 50257
    llm-branching threshold --M 50257 --eps 1e-5
    llm-branching threshold --M 50257 --r0 1.1 --format json
    llm-branching threshold --r0 0.9 --latex
"""

from __future__ import annotations

import argparse
import json


_LABELS = {
    "M": "M (vocabulary size)",
    "eps": "eps (false eligibility)",
    "r0": "R0 = M eps",
    "eps_c": "eps_c = 1/M",
    "regime": "regime",
    "distance": "R0 - 1",
    "stationary_mean": "E[Z_inf]",
    "stationary_variance": "Var[Z_inf]",
    "accuracy_bound": "1/(1 + E[Z_inf]) (Jensen)",
    "survival_second_order": "1 - q, 2nd order in R0 - 1",
    "survival_poisson": "1 - q, Poisson limit (exact)",
}


#: The second-order survival expansion is printed only for 0 < R0 - 1 <= this value: its
#: next term is of order (R0 - 1)**3, and beyond it the expansion leaves [0, 1].
SECOND_ORDER_RANGE = 0.2


def _valid_second_order(report) -> bool:
    return report.r0 is not None and 0 < report.r0 - 1 <= SECOND_ORDER_RANGE


def register(subparsers) -> None:
    """Add the ``threshold`` subcommand."""
    parser = subparsers.add_parser(
        "threshold",
        help="critical threshold eps_c = 1/M and the regime of given parameters",
        description=(
            "The threshold R0 = f'(1) = M*eps = 1 derived with sympy from the offspring pgf "
            "(1 - eps + eps*s)^M, and numbers for given M, eps or r0: regime, distance to the "
            "threshold, stationary moments (subcritical) or survival probability (supercritical). "
            "r0 without M uses the Poisson limit M -> infinity."
        ),
    )
    parser.add_argument("--M", type=int, default=None, help="vocabulary size (integer >= 2)")
    rates = parser.add_mutually_exclusive_group()
    rates.add_argument("--eps", type=float, default=None, help="false-eligibility probability in [0, 1]")
    rates.add_argument("--r0", type=float, default=None, help="reproduction number M*eps")
    parser.add_argument("--latex", action="store_true", help="also print the LaTeX of the derivations")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the threshold report; returns the exit code."""
    from .. import symbolic  # sympy is imported only when the command runs

    report = symbolic.threshold_report(M=args.M, eps=args.eps, r0=args.r0)
    latex = _latex(report) if args.latex else None
    if args.format == "json":
        payload = report.to_dict()
        if not _valid_second_order(report):
            payload.pop("survival_second_order", None)
        if latex is not None:
            payload["latex"] = latex
        print(json.dumps(payload, indent=2))
        return 0
    print(_text(report))
    if latex is not None:
        print()
        print("LaTeX:")
        for name, text in latex.items():
            print(f"  {name}: {text}")
    return 0


def _text(report) -> str:
    from .. import symbolic

    derivation = symbolic.threshold()
    lines = [
        f"threshold: R0 = f'(1) = {derivation['R0']} with f(s) = {derivation['pgf']}; "
        f"R0 = 1 <=> eps_c = {derivation.expr}",
        f"law: {report.law}" + (" (M -> infinity at fixed R0)" if report.law == "poisson" else ""),
    ]
    width = max(len(label) for label in _LABELS.values())
    for name, label in _LABELS.items():
        value = getattr(report, name)
        if name == "survival_second_order" and not _valid_second_order(report):
            continue
        if value is not None:
            shown = f"{value:.10g}" if isinstance(value, float) else str(value)
            lines.append(f"  {label:<{width}}  {shown}")
    formulas = [(name, text) for name, text in report.formulas if name not in ("R0", "eps_c")]
    if report.survival_second_order is not None and not _valid_second_order(report):
        formulas = [(name, text) for name, text in formulas if name != "survival_second_order"]
        lines.append(f"  (the 2nd-order survival expansion is omitted: it holds for "
                     f"0 < R0 - 1 <= {SECOND_ORDER_RANGE}, here R0 - 1 = {report.r0 - 1:.6g})")
    if formulas:
        lines.append("formulas:")
        lines.extend(f"  {name} = {text}" for name, text in formulas)
    return "\n".join(lines)


def _latex(report) -> dict[str, str]:
    """LaTeX of the derivations behind the report, by name."""
    from .. import symbolic

    out = {"threshold": symbolic.threshold().latex(all_steps=True)}
    if report.regime == "subcritical":
        out["stationary_moments"] = symbolic.stationary_moments().latex(all_steps=True)
        out["accuracy_bound"] = symbolic.accuracy_bound().latex(all_steps=True)
    elif report.regime == "supercritical":
        out["survival_leading_term"] = symbolic.survival_leading_term().latex(all_steps=True)
    if report.regime is not None:
        out["mean_closed_form"] = symbolic.mean_closed_form().latex(all_steps=True)
    return out
