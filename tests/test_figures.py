"""Every figure script runs in quick mode and writes a non-empty PNG."""

import importlib

import pytest

from paper_figures.__main__ import figure_modules

REAL_MODEL = {"fig_temperature_scan", "fig_prompt_scan", "fig_bridge", "fig_scale"}  # or long


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in REAL_MODEL else n for n in figure_modules()],
)
def test_figure_quick(name, tmp_path):
    paths = importlib.import_module(f"paper_figures.{name}").make(tmp_path, quick=True)
    assert paths
    for path in paths:
        assert path.suffix == ".png" and path.stat().st_size > 10_000
