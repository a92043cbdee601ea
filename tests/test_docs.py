"""The documentation site builds offline in quick mode, warning-free, and every page opens.

The build (``sphinx-build -W``) executes every notebook and draws every figure in quick mode,
so it fails on a notebook error, a figure error (or a figure that is not a PNG of at least
10 kB), a broken cross-reference or a docstring that numpydoc cannot parse: it is the test of
the notebooks and of the figure scripts.  Then: every public name of ``branching`` and ``llm_bridge`` has an
anchor on a page of the API reference, MathJax is served by the site itself (no page loads
anything from the network), and every page opens in headless Chromium without a console error
and with its mathematics typeset.
"""

import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "LLM_BRANCHING_QUICK": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(out), "-d", str(tmp_path_factory.mktemp("doctrees"))],
        env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def public_names():
    for package in ("branching", "llm_bridge"):
        root = importlib.import_module(package)
        modules = [root] + [importlib.import_module(info.name)
                            for info in pkgutil.walk_packages(root.__path__, package + ".")
                            if not any(part.startswith("_") for part in info.name.split("."))]
        for module in modules:
            for name in getattr(module, "__all__", []):
                obj = getattr(module, name)
                if getattr(obj, "__module__", None) == module.__name__:
                    yield f"{module.__name__}.{name}"


# importing every module adds warnings filters (torch, transformers): at collection, not in a test
PUBLIC_NAMES = sorted(public_names())


def test_every_public_function_documents_parameters_returns_and_examples():
    """numpydoc's checks PR01/PR02 (every parameter, no unknown one), RT01/YD01 (Returns or
    Yields) and EX01 (Examples; the doctests run with the suite) on every public function."""
    import inspect

    from numpydoc.validate import validate

    codes = {"PR01", "PR02", "RT01", "YD01", "EX01"}
    failures = {}
    for name in PUBLIC_NAMES:
        module, _, attr = name.rpartition(".")
        if inspect.isfunction(getattr(importlib.import_module(module), attr)):
            errors = [code for code, _ in validate(name)["errors"] if code in codes]
            if errors:
                failures[name] = errors
    assert not failures, failures


@pytest.mark.slow
def test_every_public_name_has_an_anchor(site):
    html = "\n".join(p.read_text() for p in (site / "generated").glob("*.html"))
    missing = [name for name in PUBLIC_NAMES if f'id="{name}"' not in html]
    assert not missing, missing


@pytest.mark.slow
def test_pages_load_nothing_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    remote = re.compile(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', re.I)
    offenders = [str(p.relative_to(site)) for p in pages if remote.search(p.read_text())]
    assert not offenders, offenders
    assert list(site.rglob("tex-chtml*.js")), "MathJax is not shipped with the site"


def test_executed_notebooks_show_no_widget_fallback_text(site):
    pages = sorted((site / "notebooks").glob("*.html"))
    assert len(pages) >= 7
    assert not [p.name for p in pages if "IProgress not found" in p.read_text()]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="headless Chromium not installed (CI installs it)")
def test_every_page_opens_in_a_browser_without_console_errors(site):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must provide Chromium (.ci/run installs Debian's chromium)"
    failures = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda req: errors.append(f"failed request {req.url}"))
        for path in sorted(site.rglob("*.html")):
            errors.clear()
            page.goto(path.as_uri(), wait_until="load")
            if 'class="math' in path.read_text():
                try:
                    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise",
                                           timeout=10_000)
                    page.evaluate("MathJax.startup.promise")
                except PlaywrightError as err:
                    errors.append(f"MathJax did not start: {err}"[:200])
                if page.locator("mjx-container").count() == 0:
                    errors.append("mathematics not typeset")
            if errors:
                failures.append((str(path.relative_to(site)), errors[:3]))
        browser.close()
    assert not failures, failures
