"""Figures of the project, one module ``fig_*.py`` per figure.

Each module defines ``make(out_dir: pathlib.Path, *, quick: bool = False) -> list[Path]``
and uses only the public API of :mod:`branching` and :mod:`llm_bridge`.  Regenerate all of
them with ``python -m paper_figures`` (``--quick`` for small, fast versions).
"""
