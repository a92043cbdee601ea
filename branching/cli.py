"""The ``llm-branching`` command.

Subcommands are discovered through the entry-point group ``llm_branching.commands``: each
entry names a module with ``register(subparsers)``, which adds one subparser and sets its
``handler`` default to a function of the parsed arguments returning an exit code.  This is
how :mod:`llm_bridge` adds ``scan`` without :mod:`branching` importing it.

Failures end with one line on stderr and a non-zero exit code, never a traceback: a usage
error or a ValueError (bad input, a bad output path, a damaged store) exits with 2, an
OSError met while writing with 1, Ctrl-C with 130.  A handler that keeps its finished work
says so by raising ``KeyboardInterrupt(note)``; the note is printed after "interrupted".
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from importlib.metadata import entry_points

GROUP = "llm_branching.commands"

#: Arguments that are numbers, also in exponent notation ("-1e-5"), not options.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$")


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and whose values may be negative
    numbers in any notation (``--eps -1e-5``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse decides whether "-1e-5" is an option or a value with this pattern;
        # its default accepts only "-1" and "-1.5".
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message):
        """Print one line, ``prog: error: message (see prog --help)``, and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every installed subcommand."""
    parser = CommandParser(
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
    prefix = f"llm-branching {args.command}: error:"
    try:
        return int(args.handler(args) or 0)
    except ValueError as err:
        parser.exit(2, f"{prefix} {_one_line(err)}\n")
    except OSError as err:
        where = f": {os.fspath(err.filename)!r}" if err.filename is not None else ""
        parser.exit(1, f"{prefix} {err.strerror or _one_line(err)}{where}\n")
    except KeyboardInterrupt as err:
        note = f"; {err}" if str(err) else ""
        print(f"interrupted{note}", file=sys.stderr)
        return 130


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
