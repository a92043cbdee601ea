"""Subcommands of ``llm-branching``, one module each (see :mod:`branching.cli`)."""
