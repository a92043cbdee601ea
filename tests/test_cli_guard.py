"""Guard: every subcommand fails on bad input with one clear line, and survives damaged files.

``BAD_INPUTS`` is a table of command lines that must fail: non-zero exit code, exactly one
line on stderr, naming the flag or file (``needle``), and no traceback.  Every registered
subcommand must have at least one row (``test_every_subcommand_has_rows``), so a new
subcommand joins the guard by adding its rows here.  In a row, ``{tmp}`` stands for an empty
temporary directory and ``{file}`` for an existing regular file inside it.

The commands run in-process through :func:`branching.cli.main`; the scan rows use a tiny
random model (``tiny:V``) or fail on their paths before any model is loaded.  The second
half damages the files the package keeps (sweep chunks and manifest, scan caches and the
pieces of an interrupted scan) and checks that a damaged entry is reported with its path
and recomputed, giving the same result as an undamaged run.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from branching import cli

try:  # imported here once: the first import of torch adds warnings filters
    import torch
except ImportError:  # the scan rows then fail on their paths or skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="the scan cases need torch")

MODEL = ["--M", "10", "--r0", "0.5", "--T", "5"]
SWEEP = ["sweep", "--M", "10", "--r0", "0.5", "--T", "5", "--runs", "10", "--no-progress",
         "--workers", "1"]
TINY = ["--model", "tiny:12", "--samples", "3", "--tokens", "2", "--eos", "none", "--no-progress"]
TEMPERATURE = ["scan", "temperature", *TINY, "--prompt", "1 2", "--grid", "0.5:1.5:3"]

#: (row id, argv, text the single stderr line must contain)
BAD_INPUTS = [
    # simulate
    ("simulate-out-proc", ["simulate", *MODEL, "--out", "/proc/x.csv"], "'/proc/x.csv'"),
    ("simulate-out-dir", ["simulate", *MODEL, "--out", "{tmp}"], "--out"),
    ("simulate-out-under-file", ["simulate", *MODEL, "--out", "{file}/x.csv"], "--out"),
    ("simulate-out-missing-dir", ["simulate", *MODEL, "--out", "{tmp}/no/x.csv"], "--out"),
    ("simulate-plot-proc", ["simulate", *MODEL, "--plot", "/proc/x.png"], "--plot"),
    ("simulate-plot-format", ["simulate", *MODEL, "--plot", "{tmp}/x.txt"], "--plot"),
    ("simulate-huge-T", ["simulate", "--M", "10", "--r0", "0.5", "--T", "100000000"],
     "T must be at most"),
    ("simulate-negative-eps", ["simulate", "--M", "10", "--eps", "-1e-5", "--T", "5"], "eps"),
    ("simulate-runs-word", ["simulate", *MODEL, "--runs", "many"], "--runs"),
    ("simulate-runs-fraction", ["simulate", *MODEL, "--runs", "1.5"], "--runs"),
    ("simulate-unknown-flag", ["simulate", *MODEL, "--bogus", "1"], "--bogus"),
    # bridge, zoo, emergence
    ("bridge-measure-out-under-file", ["bridge", "measure", "--model", "tiny:16", "--prompt", "1 2",
                                       "--grid", "0.5:1:3", "--out", "{file}/x"], "--out"),
    ("bridge-fit-out-under-file", ["bridge", "fit", "--scan", "{tmp}/none.npz", "--vocab", "16",
                                   "--out", "{file}/x"], "--"),
    ("zoo-measure-out-under-file", ["zoo", "measure", "--out", "{file}/x"], "--out"),
    ("emergence-out-under-file", ["emergence", "--out", "{file}/x"], "--out"),
    # sweep
    ("sweep-out-proc", [*SWEEP, "--out", "/proc/x.csv"], "--out"),
    ("sweep-out-dir", [*SWEEP, "--out", "{tmp}"], "--out"),
    ("sweep-out-suffix", [*SWEEP, "--out", "{tmp}/x.txt"], "--out"),
    ("sweep-store-file", [*SWEEP, "--store", "{file}"], "--store"),
    ("sweep-store-proc", [*SWEEP, "--store", "/proc/x"], "--store"),
    ("sweep-plot-under-file", [*SWEEP, "--plot", "{file}/x.png"], "--plot"),
    ("sweep-r0-and-eps", [*SWEEP, "--eps", "0.01"], "--eps"),
    ("sweep-chunk-points-0", [*SWEEP, "--chunk-points", "0"], "--chunk-points"),
    ("sweep-integer-range", ["sweep", "--M", "10", "--r0", "0.5", "--T", "1:100:3",
                             "--runs", "10"], "--T"),
    ("sweep-too-large", ["sweep", "--M", "10", "--r0", "0.5:1.5:1000000000", "--T", "5",
                         "--runs", "10"], "memory"),
    ("sweep-missing-config", [*SWEEP, "--config", "{tmp}/none.toml"], "--config"),
    ("sweep-bad-config", [*SWEEP, "--config", "{file}"], "--config"),
    # transitions
    ("transitions-out-proc", ["transitions", "--M", "10", "--T", "5", "--r0", "0.5:1.5:5",
                              "--out", "/proc/x.csv"], "--out"),
    ("transitions-plot-dir", ["transitions", "--M", "10", "--T", "5", "--r0", "0.5:1.5:5",
                              "--plot", "{tmp}"], "--plot"),
    ("transitions-eps-one", ["transitions", "--M", "2", "--T", "5", "--r0", "0.5:2:5"], "--r0"),
    ("transitions-too-many", ["transitions", "--M", "10", "--T", "5",
                              "--r0", "0.5:1.5:1000000000"], "--r0"),
    ("transitions-bad-grid", ["transitions", "--M", "10", "--T", "5", "--r0", "a:b:c"], "--r0"),
    # exact and threshold
    ("exact-too-large", ["exact", "--M", "10", "--r0", "0.5", "--T", "100000000000"], "memory"),
    ("exact-negative-eps", ["exact", "--M", "10", "--eps", "-1e-5", "--T", "5"], "eps"),
    ("exact-missing-flag", ["exact", "--M", "10", "--T", "5"], "--r0"),
    ("threshold-eps", ["threshold", "--M", "10", "--eps", "2"], "eps"),
    ("threshold-M", ["threshold", "--M", "1"], "M"),
    # scan
    ("scan-out-proc", [*TEMPERATURE, "--out", "/proc/x"], "--out"),
    ("scan-out-file", [*TEMPERATURE, "--out", "{file}"], "--out"),
    ("scan-cache-dir-file", [*TEMPERATURE, "--out", "{tmp}/o", "--cache-dir", "{file}"],
     "--cache-dir"),
    ("scan-values-range", ["scan", "prompt", *TINY, "--template", "1 {}", "--values", "a:b:c",
                           "--out", "{tmp}/o"], "--values"),
    ("scan-values-too-few", ["scan", "prompt", *TINY, "--template", "1 {}", "--values", "3",
                             "--out", "{tmp}/o"], "--values"),
    ("scan-positions", ["scan", "checkpoint", "--checkpoints", "tiny:12", "tiny:12:1",
                        "--positions", "a,b", "--prompt", "1", "--out", "{tmp}/o"],
     "--positions"),
    ("scan-grid", ["scan", "temperature", *TINY, "--prompt", "1", "--grid", "0:1:3",
                   "--out", "{tmp}/o"], "--grid"),
    # demo
    ("demo-out-file", ["demo", "--out", "{file}"], "--out"),
]


def run(argv, capsys) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``llm-branching argv``, in this process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def _fill(argv, tmp_path):
    file = tmp_path / "afile.txt"
    file.write_text("not a directory\n")
    return [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(file)) for a in argv]


@pytest.mark.parametrize("argv, needle", [row[1:] for row in BAD_INPUTS],
                         ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_fails_with_one_line(argv, needle, tmp_path, capsys):
    code, _, err = run(_fill(argv, tmp_path), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert lines[0].startswith("llm-branching"), lines[0]


def test_every_subcommand_has_rows():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    covered = {row[1][0] for row in BAD_INPUTS}
    assert set(commands) <= covered, f"add rows for {sorted(set(commands) - covered)}"


def test_negative_numbers_in_exponent_notation_are_values(capsys):
    code, out, err = run(["exact", "--M", "10", "--eps", "1e-5", "--T", "3",
                          "--delta", "-0e-3", "--format", "json"], capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- damaged files
def _sweep(tmp_path, capsys, *extra):
    out = tmp_path / "table.csv"
    code, _, err = run(["sweep", "--M", "10", "--r0", "0.5:1.5:4", "--T", "4", "--task", "exact",
                        "--no-progress", "--workers", "1", "--seed", "1",
                        "--store", tmp_path / "store", "--out", out, *extra], capsys)
    return code, err, (pd.read_csv(out) if code == 0 else None)


@pytest.mark.parametrize("damage", ["truncate", "random", "edit"])
def test_damaged_sweep_chunk_is_reported_and_recomputed(tmp_path, capsys, caplog, damage):
    code, _, reference = _sweep(tmp_path, capsys)
    assert code == 0
    victim = sorted((tmp_path / "store").glob("chunk-*.json"))[1]
    text = victim.read_text()
    if damage == "truncate":
        victim.write_text(text[:-20])
    elif damage == "random":
        victim.write_bytes(np.random.default_rng(0).bytes(200))
    else:
        victim.write_text(text.replace('"results": [{"mean_Z_T": [', '"results": [{"mean_Z_T": [1'))
        assert victim.read_text() != text
    with caplog.at_level("WARNING"):
        code, err, again = _sweep(tmp_path, capsys)
    assert code == 0 and "Traceback" not in err
    assert str(victim) in caplog.text
    pd.testing.assert_frame_equal(reference, again)


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '{"format": 2}'])
def test_damaged_sweep_manifest_is_refused_naming_it(tmp_path, capsys, content):
    assert _sweep(tmp_path, capsys)[0] == 0
    manifest = tmp_path / "store" / "manifest.json"
    manifest.write_text(content)
    code, err, _ = _sweep(tmp_path, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and repr(str(manifest)) in lines[0]


def _scan(tmp_path, capsys, out="o"):
    code, _, err = run([*TEMPERATURE, "--seed", "3", "--out", tmp_path / out,
                        "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 0, err
    with np.load(tmp_path / out / "scan.npz") as data:
        return {k: data[k] for k in data.files if k != "__metadata__"}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    else:  # a valid .npz whose numbers changed, with the original digest
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["logp"] = arrays["logp"] - 1.0
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)


@needs_torch
@pytest.mark.parametrize("how", ["truncate", "random", "edit"])
def test_damaged_scan_cache_is_reported_and_recomputed(tmp_path, capsys, caplog, how):
    reference = _scan(tmp_path, capsys)
    (cached,) = (tmp_path / "cache").glob("temperature-*.npz")
    _damage(cached, how)
    with caplog.at_level("WARNING"):
        again = _scan(tmp_path, capsys, out="o2")
    assert str(cached) in caplog.text
    _same(reference, again)


@needs_torch
def test_damaged_piece_of_an_interrupted_scan_is_reported_and_recomputed(
        tmp_path, capsys, caplog, monkeypatch):
    from llm_bridge import sampling

    reference = _scan(tmp_path / "fresh", capsys)
    real, calls = sampling._draw, []

    def stop_at_second_point(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    # One grid point per forward pass (3 samples per point), so the first point is stored
    # before the interruption.
    monkeypatch.setattr(sampling, "_draw", stop_at_second_point)
    code, _, err = run([*TEMPERATURE, "--batch-size", "3", "--seed", "3", "--out",
                        tmp_path / "o", "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 130 and "the same command resumes" in err
    monkeypatch.setattr(sampling, "_draw", real)
    (piece,) = (tmp_path / "cache").glob("temperature-*.parts/piece0.npz")
    _damage(piece, "truncate")
    with caplog.at_level("WARNING"):
        again = _scan(tmp_path, capsys, out="o2")
    assert str(piece) in caplog.text
    _same(reference, again)


@needs_torch
def test_written_files_get_the_normal_permissions(tmp_path, capsys):
    _scan(tmp_path, capsys)
    assert _sweep(tmp_path, capsys)[0] == 0
    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "scan.npz" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_interrupt_without_storage_does_not_promise_a_resume(capsys, monkeypatch):
    from branching.commands import exact

    def interrupted(model):
        raise KeyboardInterrupt

    monkeypatch.setattr(exact, "summary", interrupted)
    code, _, err = run(["exact", *MODEL], capsys)
    assert code == 130 and err.strip() == "interrupted"


def test_an_os_error_while_writing_is_one_line(capsys, monkeypatch, tmp_path):
    from branching.commands import simulate

    def disk_full(result, path):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(simulate, "_plot", disk_full)
    code, _, err = run(["simulate", *MODEL, "--runs", "1e2", "--seed", "1", "--no-progress",
                        "--plot", tmp_path / "p.png"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (f"llm-branching simulate: error: No space left on device: "
                           f"{str(tmp_path / 'p.png')!r}")
