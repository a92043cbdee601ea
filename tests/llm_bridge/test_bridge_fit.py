"""The bridge end to end on a tiny model (scans, list decoder, fits, held-out prediction), the
``bridge fit`` command on saved and new scans, and its errors."""

import json

import matplotlib.figure  # noqa: F401  - imported here: first imports add warnings filters
import numpy as np
import pandas as pd
import pytest
import transformers  # noqa: F401

from branching import cli
from branching.fit import ThresholdFit, fit_threshold
from llm_bridge import scans
from llm_bridge.bridge import run_bridge
from llm_bridge.models import tiny_model

TINY = "tiny:16:0"
PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8]]
GRID = np.geomspace(0.3, 5.0, 10)


def run(*argv):
    return cli.main(["bridge", "fit", *argv, "--no-progress"])


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    lm = tiny_model(16, seed=0)
    cache = tmp_path_factory.mktemp("bridge_cache")
    return run_bridge(lm, PROMPTS, grid=GRID, n_samples=24, n_tokens=3, n_boot=10, chat=False,
                      rng=1, cache_dir=cache, progress=False), lm, cache


def test_run_bridge_end_to_end(bridge):
    result, lm, cache = bridge
    assert len(result.prompts) == 3 and result.heldout.test == ("p2",)
    table = result.summary()
    assert list(table["prompt"]) == ["p0", "p1", "p2"] and list(table["heldout"]) == [False, False, True]
    for p in result.prompts:
        assert p.fit.M == 16 and p.fit.N == 3 and p.fit.bootstrap == "samples"
        assert np.isfinite(p.fit.x_c) and p.fit.dof == GRID.size - 1 - 3
        assert list(p.routes["route"][:3]) == ["(i) fitted x_c", "(ii) measured R0 crossing",
                                               "(iii) empirical peak"]
        # the fit is the library's fit of the scan's curve: same numbers from the saved pieces
        again = fit_threshold(p.scan.indicator(L=1, log_grid=True), M=16, N=3, n_boot=0,
                              se_floor="min_positive")
        assert again.x_c == pytest.approx(p.fit.x_c, rel=1e-6)
    json.dumps(result.to_dict(), default=str)
    assert "held-out peaks covered" in repr(result)
    # a re-run with the same seed comes from the cache and gives the same numbers
    rerun = run_bridge(lm, PROMPTS, grid=GRID, n_samples=24, n_tokens=3, n_boot=10, chat=False,
                       rng=1, cache_dir=cache, progress=False)
    assert [p.fit.x_c for p in rerun.prompts] == [p.fit.x_c for p in result.prompts]
    assert np.array_equal(rerun.heldout.predicted, result.heldout.predicted)


def test_cli_fits_a_saved_scan_with_measured_r0(bridge, tmp_path, capsys):
    result, _, _ = bridge
    p = result.prompts[0]
    scan_path = p.scan.save(tmp_path / "scan.npz")
    r0_path = tmp_path / "r0_scan.csv"
    p.r0_scan.to_pandas().to_csv(r0_path, index=False)
    out = tmp_path / "fit"
    assert run("--scan", str(scan_path), "--r0", str(r0_path), "--vocab", "16", "--boot", "10",
               "--seed", "3", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "threshold x_c" in printed and "verdict:" in printed and "(ii) measured R0 crossing" in printed
    fit = ThresholdFit.load(out / "fit.json")
    lib = fit_threshold(p.scan.indicator(L=1), M=16, N=3, n_boot=10, se_floor="min_positive", rng=3)
    assert fit.summary() == lib.summary()
    assert (out / "bridge.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "routes.csv")) == 4

    assert run("--scan", str(scan_path), "--r0", str(r0_path), "--vocab", "16", "--boot", "5",
               "--link", "measured_scaled", "--format", "json") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["fit"]["link"] == "measured_scaled" and set(record["fit"]["params"]) == {"s", "A"}


def test_cli_runs_prompts_on_a_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("--model", TINY, "--prompt", "1 2 3", "--prompt", "4 5",
               "--log-grid", "0.3:5:8", "--samples", "12", "--tokens", "2", "--boot", "5",
               "--format", "json", "--out", str(out)) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["prompts"]) == 2 and record["heldout"]["coverage"][1] == 1
    assert (out / "p1" / "bridge.png").is_file() and (out / "heldout.csv").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--scan", "no/such.npz", "--vocab", "16"], "--scan"),
    (["--scan", "{scan}"], "--vocab"),
    (["--scan", "{scan}", "--vocab", "16", "--r0", "no/such.csv"], "--r0"),
    (["--scan", "{scan}", "--vocab", "16", "--se-floor", "big"], "--se-floor"),
    (["--scan", "{scan}", "--vocab", "16", "--link", "measured"], "measured"),
    (["--prompt", "1 2", "--model", TINY, "--link", "linear"], "--scan"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    lm = tiny_model(16, seed=0)
    scan = scans.temperature_scan(lm, [1, 2], GRID[:6], n_samples=8, n_tokens=2, eos="none",
                                  rng=0, progress=False)
    path = scan.save(tmp_path / "scan.npz")
    argv = [a.replace("{scan}", str(path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        run(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_demo_bridge_step_on_a_tiny_model(tmp_path, capsys):
    from types import SimpleNamespace

    from llm_bridge.commands.demo import _bridge

    lm = tiny_model(16, seed=0)
    scan = scans.temperature_scan(lm, [1, 2, 3], GRID, n_samples=16, n_tokens=3, eos="none",
                                  rng=0, progress=False)
    assert _bridge(SimpleNamespace(out=tmp_path, seed=0), lm, scan) == 0
    printed = capsys.readouterr().out
    assert "fitted threshold T_c" in printed and "verdict:" in printed and "measured R0(T)" in printed
    assert (tmp_path / "bridge.png").is_file()
