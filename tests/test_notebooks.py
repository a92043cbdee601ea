"""Notebooks are committed without outputs.

They are executed (quick mode) by the documentation build, which fails on any cell error:
see ``tests/test_docs.py``.
"""

from pathlib import Path

import nbformat

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_committed_without_outputs():
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    for path in NOTEBOOKS:
        assert not any(
            cell.get("outputs") for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"
        ), f"{path.name} is committed with outputs"
