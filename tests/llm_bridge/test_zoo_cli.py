"""The ``zoo`` command line: train with a budget, JSON output, bad paths."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "branching.cli", "zoo", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_train_json_and_cache_reuse(tmp_path):
    first = _run("train", "--max-step", "2", "--cache-dir", str(tmp_path), "--no-progress",
                 "--format", "json")
    assert first.returncode == 0, first.stderr
    rows = json.loads(first.stdout)["models"]
    assert len(rows) == 6 and all(r["steps"] == 1 and not r["complete"] for r in rows)
    assert [r["parameters"] for r in rows] == sorted(r["parameters"] for r in rows)
    again = json.loads(_run("train", "--max-step", "2", "--cache-dir", str(tmp_path),
                            "--no-progress", "--format", "json").stdout)["models"]
    assert [r["digest"] for r in again] == [r["digest"] for r in rows]


def test_cache_dir_that_is_a_file_is_one_line_on_stderr(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _run("train", "--cache-dir", str(blocker), "--no-progress")
    assert done.returncode == 2
    assert "not a writable directory" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_out_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _run("measure", "--out", str(blocker), "--cache-dir", str(tmp_path / "c"),
                "--no-progress")
    assert done.returncode == 2 and "is not a directory" in done.stderr
    assert "Traceback" not in done.stderr
