"""``llm-branching bridge STEP``: the bridge between the theory and a real model.

Each step lives in its own module ``llm_bridge.commands.bridge_<step>`` that defines
``add_parser(steps)``, adding one subparser to the ``bridge`` subparsers and setting its
``handler``; a step whose module is absent is left out.
"""

from __future__ import annotations

import argparse
import importlib

_STEPS = ("measure", "fit")

_DESCRIPTION = """\
The bridge between the branching theory and a real language model:
  measure   list-decode a model over a control grid (temperature, eligibility parameter,
            prompt slot, checkpoints) and write R0, immigration and delta per grid point
  fit       fit the theory's threshold curves to measured curves
"""


def register(subparsers) -> None:
    """Add the ``bridge`` subcommand and every step that is installed."""
    parser = subparsers.add_parser(
        "bridge", help="measure the list decoder of a real model and fit the theory to it",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    for step in _STEPS:
        name = f"{__package__}.bridge_{step}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        module.add_parser(steps)
