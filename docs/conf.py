"""Sphinx configuration of the llm-branching documentation (``make docs``).

The build is offline: MathJax is served from the site itself (``sphinx-mathjax-offline``),
the notebooks are executed during the build in their quick mode, and the figure gallery shows
the full figures of ``python -m paper_figures`` where they exist and draws quick versions
otherwise (only quick versions when the build runs with ``LLM_BRANCHING_QUICK=1``, as the
test suite's does).  ``-W`` turns every
warning (a broken cross-reference, a docstring section numpydoc cannot parse, a notebook
error) into a failure.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

project = "llm-branching"
author = "the llm-branching developers"
copyright = "2026, the llm-branching developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the site (the package is named so)
    "numpydoc",
    "myst_nb",
    "gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_gallery", "notebooks/.ipynb_checkpoints"]
html_theme = "alabaster"
html_static_path = []
templates_path = ["_templates"]
html_title = "llm-branching"

# API reference: one page per public module, generated from the docstrings.
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = {"GL08"}  # every public object has a docstring
numpydoc_validation_exclude = {
    # overrides of OffspringLaw's methods: the reference shows the base class's docstring
    r"\.(Binomial|Poisson|NegativeBinomial|PoissonBinomial|LeaveOneOut|FinitePmf)\."
    r"(mean|variance|support_max|log_pgf_1m|dlog_pgf_1m|one_minus_pgf)$",
    # data documented by a ``#:`` comment or in the class's Attributes section
    r"^branching\.symbolic\.SYMBOLS$",
    r"^branching\.transitions\.IndicatorCurve\.log_ratio$",
}

# Notebooks: executed during the build, never committed with outputs.
gallery_quick = os.environ.get("LLM_BRANCHING_QUICK") == "1"
os.environ["LLM_BRANCHING_QUICK"] = "1"  # the notebooks' quick mode (their kernels inherit it)
# no progress bars in executed notebooks, and no tqdm.auto warning that ipywidgets is missing
# ("IProgress not found", printed by the first import of tqdm.auto in a kernel)
os.environ["TQDM_DISABLE"] = "1"
os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"
nb_execution_mode = "force"
nb_execution_in_temp = True  # what a notebook writes goes to a temporary directory
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
os.environ.setdefault("MPLBACKEND", "Agg")

suppress_warnings = ["mystnb.unknown_mime_type"]
