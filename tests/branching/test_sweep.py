"""Parameter sweeps: grids, seeds, executors, the resumable store, the table and the CLI."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest

from branching import ListDecoderModel
from branching.cli import main
from branching.seeding import SeedRecord
from branching.sweep import ExactTask, Grid, SimulationTask, SweepResult, run_sweep

HERE = Path(__file__).resolve().parent
_STATE = {"calls": 0, "interrupt_after": None}


# --------------------------------------------------------------------------- tasks
def offspring_task(model, *, n_runs, rng):
    """Sample mean of n_runs offspring counts Bin(M, eps), and r0 itself (se 0)."""
    gen = np.random.default_rng(rng)
    x = gen.binomial(model.M, model.eps, size=n_runs)
    _STATE["calls"] += 1
    return {"offspring_mean": (float(x.mean()), float(x.std(ddof=1) / math.sqrt(n_runs))),
            "r0": (model.r0, 0.0)}


def interruptible_task(model, *, n_runs, rng):
    """offspring_task, but Ctrl-C arrives once ``interrupt_after`` points are done."""
    if _STATE["interrupt_after"] is not None and _STATE["calls"] >= _STATE["interrupt_after"]:
        raise KeyboardInterrupt
    return offspring_task(model, n_runs=n_runs, rng=rng)


def slow_task(model, *, n_runs, rng):
    """offspring_task after an optional delay (set by the environment of a subprocess)."""
    time.sleep(float(os.environ.get("LLM_BRANCHING_TEST_DELAY", "0")))
    return offspring_task(model, n_runs=n_runs, rng=rng)


def dying_task(model, *, n_runs, rng):
    """offspring_task that kills its own worker process at one grid point when asked."""
    if os.environ.get("LLM_BRANCHING_TEST_KILL") == "1" and model.T == 4 and model.eps == 0.04:
        os.kill(os.getpid(), signal.SIGKILL)
    return offspring_task(model, n_runs=n_runs, rng=rng)


def nan_task(model, *, n_runs, rng):
    return {"bad": (float("nan"), 0.0)}


def small_grid():
    return Grid({"M": 50, "eps": [0.01, 0.02, 0.03, 0.04], "T": [3, 4]})


@pytest.fixture(autouse=True)
def _reset_state():
    _STATE["calls"] = 0
    _STATE["interrupt_after"] = None
    yield
    _STATE["calls"] = 0
    _STATE["interrupt_after"] = None


def assert_same_table(a: SweepResult, b: SweepResult):
    assert np.array_equal(a.point, b.point)
    assert a.statistic.tolist() == b.statistic.tolist()
    assert np.array_equal(a.value, b.value)
    assert np.array_equal(a.se, b.se)


def sweep(grid=None, task=offspring_task, **kwargs):
    options = {"n_runs": 64, "rng": 2024, "workers": 1, "progress": False}
    options.update(kwargs)
    return run_sweep(small_grid() if grid is None else grid, task, **options)


# --------------------------------------------------------------------------- grid
def test_grid_points_are_the_product_in_order_with_zipped_groups():
    grid = Grid({"M": 1000, "r0": [0.9, 1.1], "T": [10, 20, 30]})
    assert len(grid) == 6
    assert [(p["r0"], p["T"]) for p in grid.points] == [
        (0.9, 10), (0.9, 20), (0.9, 30), (1.1, 10), (1.1, 20), (1.1, 30)]
    zipped = Grid({"T": [5, 6]}, zipped=[{"M": [10, 100], "eps": [0.05, 0.005]}])
    assert zipped.points == (
        {"T": 5, "M": 10, "eps": 0.05}, {"T": 5, "M": 100, "eps": 0.005},
        {"T": 6, "M": 10, "eps": 0.05}, {"T": 6, "M": 100, "eps": 0.005})
    models = grid.models()
    assert models[3] == ListDecoderModel(M=1000, eps=1.1 / 1000, T=10)
    assert "6 points" in repr(grid)
    # numpy values become plain Python scalars (JSON-serialisable)
    np_grid = Grid({"M": np.int64(10), "eps": np.array([0.1, 0.2]), "T": np.arange(2, 4)})
    assert json.dumps(np_grid.to_dict())
    assert np_grid == Grid({"M": 10, "eps": [0.1, 0.2], "T": [2, 3]})


@pytest.mark.parametrize("axes, zipped, match", [
    ({"M": 10, "eps": 0.1, "T": 3, "Q": 1}, (), r"unknown grid parameter 'Q'"),
    ({"M": 10, "eps": 0.1, "r0": 1.0, "T": 3}, (), r"either eps or r0"),
    ({"M": 10, "T": 3}, (), r"needs the parameters \['eps or r0'\]"),
    ({"eps": 0.1, "T": 3}, (), r"needs the parameters \['M'\]"),
    ({"M": 10, "eps": [], "T": 3}, (), r"eps has no values"),
    ({"M": 10, "eps": 0.1, "T": 3, "delta": float("nan")}, (), r"delta must be finite"),
    ({"M": 10, "eps": 0.1, "T": True}, (), r"boolean"),
    ({"M": 10, "T": 3}, [{"eps": [0.1, 0.2], "delta": [0.0]}], r"one common length"),
    ({"M": 10, "eps": 0.1, "T": 3}, [{"M": [10, 20]}], r"more than once: \['M'\]"),
    ({"M": 10, "eps": 0.1, "T": 3}, [{}], r"non-empty mapping"),
])
def test_grid_rejects_bad_specifications(axes, zipped, match):
    with pytest.raises(ValueError, match=match):
        Grid(axes, zipped=zipped)


def test_an_invalid_point_fails_before_any_work_naming_the_point():
    grid = Grid({"M": 1000, "r0": [0.5, 1.0, 2000.0], "T": [5, 6]})
    with pytest.raises(ValueError, match=r"grid point 4 \{'M': 1000, 'r0': 2000.0, 'T': 5\}"
                                         r" is invalid: r0 must lie in \[0, 1000\]"):
        sweep(grid)
    assert _STATE["calls"] == 0
    bad_delta = Grid({"M": 10, "eps": 0.1, "T": 2, "delta": [0.0, 1.0]})
    with pytest.raises(ValueError, match=r"grid point 1 .*'delta': 1.0.*delta must lie in"):
        sweep(bad_delta)
    with pytest.raises(ValueError, match=r"grid point 0 .*law='negative_binomial'"):
        sweep(Grid({"M": 10, "eps": 0.1, "T": 2, "law": "negative_binomial"}))
    # a task's own validation also runs before any work
    with pytest.raises(ValueError, match=r"grid point 1 .*exact task needs K=None"):
        run_sweep(Grid({"M": 10, "eps": 0.05, "T": 3, "K": [None, 4]}), "exact",
                  workers=1, progress=False)
    assert _STATE["calls"] == 0


# --------------------------------------------------------------------------- seeds and values
def test_point_i_uses_child_i_of_the_root_seed():
    result = sweep(rng=np.random.SeedSequence(99))
    children = np.random.SeedSequence(99).spawn(len(small_grid()))
    for i, model in enumerate(small_grid().models()):
        direct = offspring_task(model, n_runs=64, rng=children[i])
        value, se = result.values("offspring_mean")
        assert (value[i], se[i]) == direct["offspring_mean"]
    assert result.seed == SeedRecord(99, ())


def test_sweep_estimates_match_the_offspring_mean():
    result = sweep(n_runs=4000)
    value, se = result.values("offspring_mean")
    r0, r0_se = result.values("r0")
    assert np.all(r0_se == 0)
    assert np.allclose(r0, [50 * e for e in (0.01, 0.01, 0.02, 0.02, 0.03, 0.03, 0.04, 0.04)])
    assert np.all(np.abs(value - r0) < 4 * se)


def test_rng_forms_and_their_errors():
    a = sweep(rng=np.random.default_rng(5))
    b = sweep(rng=np.random.default_rng(5))
    assert_same_table(a, b)
    fresh = sweep(rng=None)
    assert isinstance(fresh.seed.entropy, int)
    assert_same_table(fresh, sweep(rng=fresh.seed.seed_sequence()))
    for bad in (-1, 1.5, "seed", True):
        with pytest.raises(ValueError, match="rng must be"):
            sweep(rng=bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_runs": 0}, r"n_runs must be an integer in \[1, inf\)"),
    ({"chunk_points": 0}, r"chunk_points must be an integer in \[1, inf\)"),
    ({"workers": 0}, r"workers must be an integer in \[1, inf\)"),
    ({"workers": "many"}, r"workers must be None, an int"),
    ({"task": "magic"}, r"task must be one of \['exact', 'simulate'\]"),
    ({"task": 3}, r"task must be 'simulate', 'exact' or a callable"),
    ({"task": lambda model, *, n_runs, rng: {}}, r"no stable identity"),
    ({"task": nan_task}, r"statistic 'bad' at grid point 0 is \(nan, 0.0\)"),
])
def test_invalid_sweep_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweep(**kwargs)


def test_simulate_task_needs_n_runs_before_any_work():
    with pytest.raises(ValueError, match="n_runs must be given"):
        run_sweep(small_grid(), "simulate", workers=1, progress=False)
    with pytest.raises(ValueError, match=r"n_runs must be an integer in \[2, inf\)"):
        run_sweep(small_grid(), "simulate", n_runs=1, workers=1, progress=False)
    huge_cap = Grid({"M": 2**40, "eps": 1e-12, "T": 3, "K": [10, 2**20]})
    with pytest.raises(ValueError, match=r"grid point 1 .*K must be at most 1023"):
        run_sweep(huge_cap, "simulate", n_runs=10, workers=1, progress=False)
    with pytest.raises(ValueError, match="grid must be a Grid"):
        run_sweep({"M": 10}, offspring_task, workers=1)


# --------------------------------------------------------------------------- executors
def test_identical_tables_for_any_worker_count_executor_and_chunking():
    reference = sweep()
    assert_same_table(reference, sweep(workers=2, chunk_points=3))
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert_same_table(reference, sweep(workers=pool, chunk_points=2))
    assert_same_table(reference, sweep(workers=map))  # a map-like callable


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_local_cluster_gives_the_same_table(dask_client, tmp_path):
    reference = sweep()
    assert_same_table(reference, sweep(workers=dask_client))
    assert_same_table(reference, sweep(workers=dask_client, chunk_points=3, store=tmp_path))
    assert len(list(tmp_path.glob("chunk-*.json"))) == 3


# --------------------------------------------------------------------------- resumable store
def test_interrupted_sweep_keeps_finished_chunks_and_resumes_identically(tmp_path):
    reference = sweep(chunk_points=2)
    _STATE["calls"] = 0
    _STATE["interrupt_after"] = 5
    with pytest.raises(KeyboardInterrupt):
        sweep(task=interruptible_task, chunk_points=2, store=tmp_path)
    chunks = sorted(tmp_path.glob("chunk-*.json"))
    assert len(chunks) == 2  # points 0-3 in two finished chunks; chunk 2 was cut short
    assert not list(tmp_path.glob(".tmp-*"))
    _STATE["calls"] = 0
    _STATE["interrupt_after"] = None
    resumed = sweep(task=interruptible_task, chunk_points=2, store=tmp_path, rng=None)
    assert _STATE["calls"] == 4  # only the unfinished points were computed
    assert_same_table(reference, resumed)
    assert resumed.seed == reference.seed  # rng=None resumes with the stored seed
    _STATE["calls"] = 0
    assert_same_table(reference, sweep(task=interruptible_task, chunk_points=2, store=tmp_path))
    assert _STATE["calls"] == 0


def test_ctrl_c_in_a_subprocess_loses_no_finished_chunk(tmp_path):
    store = tmp_path / "store"
    script = (
        # a child of a background job inherits an ignored SIGINT: restore Python's handler
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from test_sweep import slow_task, small_grid\n"
        "from branching.sweep import run_sweep\n"
        "run_sweep(small_grid(), slow_task, n_runs=64, rng=2024, workers=1, store=sys.argv[2],"
        " progress=False)\n"
    )
    env = dict(os.environ, LLM_BRANCHING_TEST_DELAY="0.4")
    proc = subprocess.Popen([sys.executable, "-c", script, str(HERE), str(store)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(store.glob("chunk-*.json"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the subprocess made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    finished = sorted(store.glob("chunk-*.json"))
    assert 2 <= len(finished) < len(small_grid())
    for path in finished:
        json.loads(path.read_text())  # complete files only (atomic writes)
    resumed = sweep(task=slow_task, store=store)
    assert _STATE["calls"] == len(small_grid()) - len(finished)
    assert_same_table(sweep(task=slow_task), resumed)


def test_a_killed_worker_loses_no_finished_chunk(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_BRANCHING_TEST_KILL", "1")
    with pytest.raises(BrokenProcessPool):
        sweep(task=dying_task, workers=2, store=tmp_path)
    for path in tmp_path.glob("chunk-*.json"):
        json.loads(path.read_text())
    monkeypatch.delenv("LLM_BRANCHING_TEST_KILL")
    assert_same_table(sweep(task=dying_task), sweep(task=dying_task, store=tmp_path))


def test_store_refuses_a_different_configuration(tmp_path):
    sweep(store=tmp_path)
    with pytest.raises(ValueError, match=r"different configuration \(differs in: n_runs\)"):
        sweep(store=tmp_path, n_runs=65)
    with pytest.raises(ValueError, match=r"differs in: seed"):
        sweep(store=tmp_path, rng=1)
    with pytest.raises(ValueError, match=r"differs in: points"):
        sweep(Grid({"M": 50, "eps": [0.01, 0.02], "T": [3, 4]}), store=tmp_path)
    with pytest.raises(ValueError, match=r"differs in: task"):
        sweep(task=slow_task, store=tmp_path)
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(ValueError, match="store must be a directory"):
        sweep(store=file)


@pytest.mark.parametrize("damage", ["truncate", "edit", "other_chunk"])
def test_a_damaged_chunk_is_recomputed_with_a_warning_naming_it(tmp_path, caplog, damage):
    reference = sweep(store=tmp_path)
    chunks = sorted(tmp_path.glob("chunk-*.json"))
    victim = chunks[3]
    text = victim.read_text()
    if damage == "truncate":
        victim.write_text(text[: len(text) // 2])
    elif damage == "edit":  # still valid JSON in the right layout, but the numbers changed
        envelope = json.loads(text)
        for row in envelope["content"]["results"]:
            for name in row:
                row[name][0] += 1.0
        victim.write_text(json.dumps(envelope))
    else:  # a verified file, but the one of another chunk
        victim.write_text(chunks[2].read_text())
    _STATE["calls"] = 0
    with caplog.at_level("WARNING", logger="branching"):
        again = sweep(store=tmp_path)
    assert _STATE["calls"] == 1
    assert "recomputing" in caplog.text and str(victim) in caplog.text
    assert_same_table(reference, again)


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", '{"format": 1}'])
def test_a_damaged_manifest_is_refused_with_its_path(tmp_path, content):
    sweep(store=tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(ValueError, match=re.escape(repr(str(manifest)))):
        sweep(store=tmp_path)


def test_store_files_get_the_normal_permissions(tmp_path):
    import stat

    sweep(store=tmp_path)
    mask = os.umask(0o022)
    os.umask(mask)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


# --------------------------------------------------------------------------- the table
def test_tidy_table_columns_rows_and_files(tmp_path):
    import pandas as pd

    result = sweep(Grid({"M": 50, "r0": [0.5, 1.5], "T": [3, 4], "delta": 0.1}))
    frame = result.to_pandas()
    assert list(frame.columns) == ["M", "eps", "r0", "T", "delta", "point", "statistic", "value", "se"]
    assert len(frame) == 4 * 2
    assert frame.groupby("point").size().tolist() == [2, 2, 2, 2]
    assert np.allclose(frame["eps"], frame["r0"] / 50)
    assert np.array_equal(frame["value"].to_numpy(), result.value)
    csv = result.to_csv(tmp_path / "table.csv")
    back = pd.read_csv(csv)
    assert list(back.columns) == list(frame.columns)
    assert np.array_equal(back["value"].to_numpy(), result.value)  # exact round trip
    assert np.array_equal(back["se"].to_numpy(), result.se)
    assert "rows=8" in repr(result) and "statistics=[offspring_mean, r0]" in repr(result)
    xs, curves = result.curves("offspring_mean")
    assert xs.tolist() == [0.5, 1.5] and sorted(curves) == [3, 4]
    assert np.array_equal(curves[4][0], result.values("offspring_mean")[0][[1, 3]])


def test_curves_need_a_complete_grid():
    result = sweep(Grid({"M": [50, 60], "eps": [0.01, 0.02], "T": [3, 4]}))
    with pytest.raises(ValueError, match="curves\\(\\) needs M constant"):
        result.curves("r0")
    with pytest.raises(ValueError, match="'K' is not a grid parameter"):
        result.curves("r0", by="K")
    with pytest.raises(ValueError, match="statistic must be one of"):
        result.values("missing")


def test_parquet_needs_pyarrow(tmp_path, monkeypatch):
    result = sweep()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match="to_parquet needs pyarrow"):
        result.to_parquet(tmp_path / "t.parquet")


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    result = sweep()
    back = pd.read_parquet(result.to_parquet(tmp_path / "t.parquet"))
    assert np.array_equal(back["value"].to_numpy(), result.value)


def test_progress_bar_can_be_turned_off(capsys):
    sweep(progress=True)
    assert "sweep" in capsys.readouterr().err
    sweep(progress=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- built-in tasks
def test_simulate_task_is_simulate_at_the_child_seed_and_agrees_with_exact():
    from branching.simulate import simulate

    grid = Grid({"M": 200, "r0": [0.6, 1.0], "T": [5, 12]})
    simulated = run_sweep(grid, "simulate", n_runs=2000, rng=11, workers=1, progress=False)
    assert simulated.task == repr(SimulationTask())
    children = np.random.SeedSequence(11).spawn(len(grid))
    for i, model in enumerate(grid.models()):
        direct = simulate(model, 2000, rng=children[i], threads=1, quantile_levels=()).summary()
        got = {s: (v, e) for p, s, v, e in zip(simulated.point, simulated.statistic,
                                                 simulated.value, simulated.se) if p == i}
        assert got == direct
    exact = run_sweep(grid, "exact", workers=1, progress=False)
    assert exact.task == repr(ExactTask()) and np.all(exact.se == 0)
    mean, _ = exact.values("mean_Z_T")
    for i, model in enumerate(grid.models()):  # closed form (M-1) eps sum_k m^k
        m, lam = model.r0, (model.M - 1) * model.eps
        assert mean[i] == pytest.approx(lam * sum(m**k for k in range(model.T)), rel=1e-12)
    for name in ("mean_Z_T", "p_no_error", "accuracy", "compute"):
        sim_v, sim_se = simulated.values(name)
        ex_v, _ = exact.values(name)
        assert np.all(np.abs(sim_v - ex_v) < 4 * sim_se + 1e-12), name


# --------------------------------------------------------------------------- CLI
def cli(*args):
    return main(["sweep", *map(str, args), "--workers", "1", "--no-progress"])


def test_cli_sweep_from_flags_writes_table_and_plot(tmp_path, capsys):
    import pandas as pd

    out, plot = tmp_path / "table.csv", tmp_path / "plot.png"
    code = cli("--M", 100, "--r0", "0.5:1.5:3", "--T", "5,10", "--runs", 200, "--seed", 3,
               "--out", out, "--plot", plot)
    assert code == 0
    printed = capsys.readouterr().out
    assert "6 grid points, seed 3" in printed and "accuracy [T=5]" in printed
    assert plot.stat().st_size > 0
    table = pd.read_csv(out)
    expected = run_sweep(Grid({"M": 100, "r0": [0.5, 1.0, 1.5], "T": [5, 10]}), "simulate",
                         n_runs=200, rng=3, workers=1, progress=False)
    assert np.array_equal(table["value"].to_numpy(), expected.value)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_cli_sweep_from_a_config_file_and_resume(tmp_path, capsys, suffix):
    import pandas as pd

    config = tmp_path / f"sweep{suffix}"
    if suffix == ".toml":
        config.write_text('task = "exact"\nstatistic = "p_no_error"\n[grid]\nM = 20\n'
                          'eps = "0.01:0.05:3"\nT = [4, 8]\n')
    else:
        config.write_text(json.dumps({"task": "exact", "statistic": "p_no_error",
                                      "grid": {"M": 20, "eps": "0.01:0.05:3", "T": [4, 8]}}))
    store, out = tmp_path / "store", tmp_path / "t.csv"
    assert cli("--config", config, "--store", store, "--out", out) == 0
    first = pd.read_csv(out)
    assert "p_no_error [T=4]" in capsys.readouterr().out
    assert len(list(store.glob("chunk-*.json"))) == 6
    assert cli("--config", config, "--store", store, "--out", out, "--T", "4,8") == 0
    pd.testing.assert_frame_equal(first, pd.read_csv(out))
    # a flag overrides the config: r0 replaces the file's eps
    assert cli("--config", config, "--r0", "0.5,1.5", "--out", out) == 0
    assert sorted(set(pd.read_csv(out)["r0"])) == [0.5, 1.5]


@pytest.mark.parametrize("args, match", [
    (["--M", 100, "--r0", "0.5,200", "--T", 5, "--runs", 10], "grid point 1"),
    (["--M", 100, "--r0", 0.5, "--T", 5], "--runs is required"),
    (["--M", 100, "--r0", "1:0:3", "--T", 5, "--runs", 10], "start < stop"),
    (["--M", 100, "--r0", 0.5, "--T", 5, "--runs", 10, "--out", "t.txt"], "must end in one of .csv, .parquet"),
    (["--M", 100, "--r0", 0.5, "--T", 5, "--runs", 10, "--statistic", "nope"], "--statistic must be"),
    (["--config", "missing.toml"], "config file not found"),
])
def test_cli_errors_exit_with_code_2(args, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli(*args)
    assert stop.value.code == 2
    assert match in capsys.readouterr().err
