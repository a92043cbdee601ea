"""``llm-branching scan ...`` on tiny models: files written, agreement with the library, errors."""

from importlib.metadata import entry_points

import matplotlib.figure  # noqa: F401  - imported here: first imports add warnings filters
import numpy as np
import pandas as pd
import pytest
import transformers  # noqa: F401

from branching import cli
from llm_bridge import scans
from llm_bridge.commands.scan import load_cli_model, parse_grid, parse_values
from llm_bridge.scan_result import ScanResult

TINY = "tiny:5:0:4"


def run(*argv):
    return cli.main(["scan", *argv, "--no-progress"])


def test_scan_is_a_registered_command():
    names = {e.name: e.value for e in entry_points(group=cli.GROUP)}
    assert names.get("scan") == "llm_bridge.commands.scan"


def test_temperature_cli_writes_arrays_table_and_plot(tmp_path, capsys):
    out = tmp_path / "t"
    assert run("temperature", "--model", TINY, "--prompt", "0 1", "--log-grid", "0.3:3:6",
               "--samples", "20", "--tokens", "3", "--L", "2", "--seed", "7",
               "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "kind='temperature'" in printed and "wrote" in printed
    res = ScanResult.load(out / "scan.npz")
    lib = scans.temperature_scan(load_cli_model(TINY), [0, 1], scans.log_temperature_grid(0.3, 3, 6),
                                 n_samples=20, n_tokens=3, L_max=2, rng=7, progress=False)
    assert res == lib                                   # the CLI runs exactly the library scan
    table = pd.read_csv(out / "indicators.csv")
    assert sorted(set(table["measure"])) == ["js", "linear", "tv"]
    assert len(table) == 3 * (6 - 2 * 2 + 1) and set(table["L"]) == {2}
    curve = lib.indicator(L=2)
    np.testing.assert_allclose(table[table["measure"] == "linear"]["value"], curve.value)
    np.testing.assert_allclose(table[table["measure"] == "linear"]["se"], curve.se)
    thermo = pd.read_csv(out / "thermo.csv")
    assert set(thermo["quantity"]) == {"fisher_information", "heat_capacity"} and len(thermo) == 12
    np.testing.assert_allclose(thermo[thermo["quantity"] == "heat_capacity"]["value"],
                               lib.heat_capacity().value)
    assert (out / "indicators.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "cache").glob("temperature-*.npz"))) == 1   # default cache


def test_linear_grid_option(tmp_path):
    out = tmp_path / "lin"
    assert run("temperature", "--model", TINY, "--prompt", "2", "--grid", "0.5:2:4",
               "--samples", "4", "--tokens", "2", "--out", str(out)) == 0
    res = ScanResult.load(out / "scan.npz")
    np.testing.assert_allclose(res.grid, [0.5, 1.0, 1.5, 2.0])
    assert not bool(pd.read_csv(out / "indicators.csv")["log_grid"].iloc[0])


def test_prompt_cli(tmp_path):
    out = tmp_path / "p"
    assert run("prompt", "--model", TINY, "--template", "0 {}", "--values", "0:3",
               "--temperature", "1.5", "--samples", "10", "--tokens", "2", "--out", str(out)) == 0
    res = ScanResult.load(out / "scan.npz")
    assert res.kind == "prompt" and res.labels == ("0", "1", "2", "3")
    assert [p.tolist() for p in res.prompt_ids] == [[0, v] for v in range(4)]
    assert res.params["temperature"] == 1.5
    assert len(pd.read_csv(out / "indicators.csv")) == 3 * 3
    assert not (out / "thermo.csv").exists() and (out / "indicators.png").is_file()


def test_checkpoint_cli(tmp_path):
    out = tmp_path / "c"
    names = ["tiny:5:0:4", "tiny:5:1:4", "tiny:5:2:4"]
    assert run("checkpoint", "--checkpoints", *names, "--positions", "0,100,200",
               "--prompt", "0,1", "--samples", "6", "--tokens", "2", "--out", str(out)) == 0
    res = ScanResult.load(out / "scan.npz")
    assert res.kind == "checkpoint" and res.labels == tuple(names)
    assert res.grid.tolist() == [0.0, 100.0, 200.0]


def test_parsers():
    assert parse_grid("0.01:2:16", "--grid") == (0.01, 2.0, 16)
    assert parse_values("3:9:3") == [3, 6, 9]
    assert parse_values("1,2,5") == [1, 2, 5]
    assert parse_values("0.5, 1.5") == [0.5, 1.5]
    assert parse_values("cat,dog") == ["cat", "dog"]
    lm = load_cli_model("tiny:6:2:5")
    assert lm.vocab_size == 6 and lm.eos_token_id == 5


@pytest.mark.parametrize("argv, message", [
    (["temperature", "--model", TINY, "--prompt", "0", "--grid", "0:1"], "--grid must look like LO:HI:K"),
    (["temperature", "--model", TINY, "--prompt", "0", "--log-grid", "0:1:4"], "--log-grid needs 0 < LO < HI"),
    (["temperature", "--model", TINY, "--prompt", "", "--grid", "0.5:1:4"], "--prompt must not be empty"),
    (["temperature", "--model", TINY, "--prompt", "a b", "--grid", "0.5:1:4"], "--prompt must be token ids"),
    (["temperature", "--model", TINY, "--prompt", "0", "--grid", "0.5:1:2", "--L", "2"],
     "temperatures has 2 points; a window of L_max=2 needs at least 4"),
    (["temperature", "--model", TINY, "--prompt", "0", "--grid", "0.5:1:4", "--tokens", "70"],
     "context length is 64"),
    (["temperature", "--model", "tiny:x", "--prompt", "0", "--grid", "0.5:1:4"], "tiny:V"),
    (["temperature", "--model", "./no/such/model/dir", "--prompt", "0", "--grid", "0.5:1:4"],
     "name_or_path"),
    (["prompt", "--model", TINY, "--template", "0", "--values", "1:3"], "exactly one '{}' slot"),
    (["prompt", "--model", TINY, "--template", "1 2 {} {}", "--values", "1:3"], "got 2 slots"),
    (["prompt", "--model", TINY, "--template", "0 {}", "--values", "3:1"], "--values range"),
])
def test_cli_errors_exit_2_with_a_message(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        run(*argv, "--out", str(tmp_path / "x"))
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
