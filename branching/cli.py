"""The ``llm-branching`` command.

Subcommands are discovered through the entry-point group ``llm_branching.commands``: each
entry names a module with ``register(subparsers)``, which adds one subparser and sets its
``handler`` default to a function of the parsed arguments returning an exit code.  This is
how :mod:`llm_bridge` adds ``scan`` without :mod:`branching` importing it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

GROUP = "llm_branching.commands"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every installed subcommand."""
    parser = argparse.ArgumentParser(
        prog="llm-branching",
        description="The list-decoder branching model of emergence in language models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            entry.load().register(subparsers)
        except ImportError as err:  # an optional extra that is not installed
            logging.getLogger(__name__).debug("command %s unavailable: %s", entry.name, err)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except ValueError as err:
        parser.exit(2, f"llm-branching {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        print("interrupted; finished chunks are kept and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
