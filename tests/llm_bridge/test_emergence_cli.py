"""``llm-branching emergence`` on a tiny model: files, agreement with the library, errors."""

import json
from importlib.metadata import entry_points

import matplotlib.figure  # noqa: F401  - first imports add warnings filters
import numpy as np
import pandas as pd
import pytest
import transformers  # noqa: F401

from branching import cli
from llm_bridge.commands.emergence import parse_layers
from llm_bridge.commands.scan import load_cli_model
from llm_bridge.emergence.experiment import build_dataset, run_experiment
from llm_bridge.emergence.metric import EmergenceResult

TINY = "tiny:40:0"
ARGS = ["--model", TINY, "--samples", "200", "--shots", "3", "--dim", "6", "--seeds", "2",
        "--no-progress"]


def test_emergence_is_a_registered_command():
    names = {e.name: e.value for e in entry_points(group=cli.GROUP)}
    assert names.get("emergence") == "llm_bridge.commands.emergence"


def test_cli_writes_result_table_figure_and_matches_the_library(tmp_path, capsys):
    out = tmp_path / "e"
    assert cli.main(["emergence", *ARGS, "--seed", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "E_bits" in printed and "wrote" in printed
    result = EmergenceResult.load(out / "emergence.json")
    lm = load_cli_model(TINY)
    data = build_dataset(lm, "icl", shots=3, n=200, rng=4)
    lib = run_experiment(lm, data, tmp_path / "lib", n_seeds=2, rng=4, dim=6)
    np.testing.assert_allclose(result.emergence(), lib.emergence())
    table = pd.read_csv(out / "emergence.csv")
    assert len(table) == 3 * 2 * 6
    assert (out / "emergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_format_and_controls(tmp_path, capsys):
    assert cli.main(["emergence", *ARGS, "--format", "json", "--control", "near-identity",
                     "--layers", "1", "--out", str(tmp_path / "j")]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["layers"] == [1] and payload["label"] == "near-identity"
    assert np.asarray(payload["macro"]).shape == (1, 6, 2)


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--layers", "5"], "layers"),
        (["--layers", "a,b"], "--layers"),
        (["--shots", "20"], "shots"),
        (["--samples", "6"], "samples"),
        (["--dim", "500"], "dim"),
    ],
)
def test_bad_input_is_one_line_on_stderr(tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["emergence", *ARGS, *extra, "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(SystemExit):
        cli.main(["emergence", *ARGS, "--out", str(path)])
    assert "--out" in capsys.readouterr().err


def test_parse_layers():
    assert parse_layers("all") is None
    assert parse_layers("0:6:3") == [0, 3, 6]
    assert parse_layers("1,4") == [1, 4]
