"""Sphinx extension: the figure gallery, drawn by ``paper_figures`` during the build.

At ``builder-inited`` every figure module runs (``make(out_dir, quick=...)``) into
``docs/_gallery/`` and ``docs/_gallery/figures.md`` is written: per figure, its module
docstring (what it shows and how) and the image.  With the configuration value
``gallery_quick`` (the test suite's build) every figure is drawn in quick mode; otherwise the
full figures of ``python -m paper_figures`` are used where ``paper_figures/output/`` holds
them, and quick versions are drawn for the others.  The page says which version each image is.  A figure
script that fails, or draws anything but a PNG of at least 10 kB, fails the build (the test
suite's build is the figures' test).
"""

from __future__ import annotations

import importlib
import shutil
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "_gallery"
FULL = DOCS.parent / "paper_figures" / "output"


def _draw(app) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from paper_figures.__main__ import figure_modules

    quick_only = app.config.gallery_quick
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    lines = []
    for name in figure_modules():
        module = importlib.import_module(f"paper_figures.{name}")
        full = _full_images(name) if not quick_only else None
        if full:
            images, version = [shutil.copy(p, OUT / p.name) for p in full], "full run"
        else:
            images, version = module.make(OUT, quick=True), "quick version"
        for image in images:
            if Path(image).suffix != ".png" or Path(image).stat().st_size < 10_000:
                raise RuntimeError(f"{name} drew {image}, not a PNG of at least 10 kB")
        doc = textwrap.dedent(module.__doc__ or "").strip()
        lines += [f"## {name}", "", f"`python -m paper_figures {name}` ({version} shown)", "",
                  "```{eval-rst}", doc, "```", ""]
        lines += [f"![{name}](_gallery/{Path(image).name})" for image in images] + [""]
    (OUT / "figures.md").write_text("\n".join(lines))


def _full_images(name: str) -> list[Path] | None:
    """The images a full ``python -m paper_figures`` run left for ``name``, if any."""
    path = FULL / f"{name.removeprefix('fig_')}.png"
    return [path] if path.is_file() else None


def setup(app):
    app.add_config_value("gallery_quick", False, "env")
    app.connect("builder-inited", _draw)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
