"""``llm-branching bridge measure`` on tiny models: files, agreement with the library, errors."""

import matplotlib.figure  # noqa: F401  - imported here: first imports add warnings filters
import numpy as np
import pandas as pd
import pytest
import transformers  # noqa: F401

from branching import cli
from llm_bridge.commands.scan import load_cli_model
from llm_bridge.eligibility import Threshold
from llm_bridge.r0_scan import r0_scan

TINY = "tiny:8:0"


def run(*argv):
    return cli.main(["bridge", "measure", *argv, "--no-progress"])


def test_measure_writes_tables_and_figure_matching_the_library(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ("--model", TINY, "--prompt", "1 2", "--prompt", "3,4", "--control", "temperature",
            "--grid", "0.5:2:4", "--rule", "threshold=0.15", "--steps", "4", "--boot", "50",
            "--seed", "5", "--out", str(out))
    assert run(*argv) == 0
    printed = capsys.readouterr().out
    assert "R0Scan(control='temperature'" in printed and "wrote" in printed
    table = pd.read_csv(out / "r0_scan.csv")
    lib = r0_scan(load_cli_model(TINY), [[1, 2], [3, 4]], grid=np.linspace(0.5, 2, 4),
                  rule=Threshold(0.15), n_steps=4, cap=128, n_boot=50, rng=5, progress=False)
    np.testing.assert_allclose(table["x"], lib.x)
    np.testing.assert_allclose(table["r0"], lib.r0)
    np.testing.assert_allclose(table[["r0_ci_low", "r0_ci_high"]].to_numpy().T, lib.r0_ci)
    depths = pd.read_csv(out / "depths.csv")
    assert len(depths) == 4 * 2 * 5 and set(depths["depth"]) == set(range(5))
    assert list(pd.read_csv(out / "crossings.csv").columns) == [
        "x", "ci_low", "ci_high", "direction", "found_fraction"]
    assert (out / "r0_scan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cached = sorted((out / "cache").glob("list_decode-*.npz"))
    assert len(cached) == 4
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert run(*argv) == 0  # the second run reads every point from the cache
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    pd.testing.assert_frame_equal(pd.read_csv(out / "r0_scan.csv"), table)


def test_measure_along_the_rule_parameter(tmp_path):
    out = tmp_path / "rule"
    assert run("--model", TINY, "--prompt", "1 2", "--control", "rule", "--values",
               "0.1,0.2,0.4", "--rule", "threshold=0.1", "--steps", "3", "--boot", "30",
               "--cap", "0", "--out", str(out)) == 0
    table = pd.read_csv(out / "r0_scan.csv")
    np.testing.assert_allclose(table["rule_parameter"], [0.1, 0.2, 0.4])
    assert table["cap"].isna().all()


@pytest.mark.parametrize("argv, message", [
    (("--prompts-file", "/nonexistent/prompts.txt"), "--prompts-file"),
    (("--prompt", "1", "--rule", "beam=2"), "rule"),
    (("--prompt", "1", "--rule", "threshold=0"), "theta"),
    (("--prompt", "a b"), "--prompt"),
    (("--prompt", "1", "--grid", "2:1:3"), "--grid"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    full = ("--model", TINY, "--steps", "2", "--out", str(tmp_path / "x"), *argv)
    if "--grid" not in argv:
        full += ("--grid", "0.5:1:2")
    with pytest.raises(SystemExit) as exc:
        run(*full)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
