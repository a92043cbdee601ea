"""Subcommands of ``llm-branching`` provided by :mod:`llm_bridge` (see :mod:`branching.cli`)."""
