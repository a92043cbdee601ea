"""The shared store: atomic writes, normal permissions, digests verified on read."""

from __future__ import annotations

import json
import os
import re
import stat

import numpy as np
import pytest

from branching import store as st


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_has_normal_permissions_and_leaves_no_temporary(tmp_path):
    path = st.write_atomic(tmp_path / "sub" / "a.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert [p.name for p in path.parent.iterdir()] == ["a.bin"]


def test_atomic_write_failure_leaves_the_old_file(tmp_path, monkeypatch):
    path = st.write_atomic(tmp_path / "a.bin", b"old")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        st.write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_npz_round_trip_is_exact(tmp_path):
    arrays = {"x": np.array([0.1, np.nan, -np.inf]), "n": np.arange(4, dtype=np.int32),
              "s": np.array(["a", "bc"])}
    arrays_back, meta = st.read_npz(st.write_npz(tmp_path / "a.npz", arrays, {"k": [1, 0.5]}))
    assert meta == {"k": [1, 0.5]}
    for name, value in arrays.items():
        np.testing.assert_array_equal(arrays_back[name], value)
        assert arrays_back[name].dtype == value.dtype


def _npz(tmp_path):
    return st.write_npz(tmp_path / "a.npz", {"x": np.linspace(0, 1, 50)}, {"k": 1})


@pytest.mark.parametrize("damage", ["truncate", "random", "edit_array", "edit_metadata", "plain"])
def test_damaged_npz_is_detected_and_named(tmp_path, damage):
    path = _npz(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage in ("edit_array", "edit_metadata"):  # still a valid archive with the old digest
        with np.load(path) as npz:
            content = {k: npz[k] for k in npz.files}
        if damage == "edit_array":
            content["x"] = content["x"].copy()
            content["x"][7] += 1e-12
        else:
            content[st.NPZ_METADATA] = np.array('{"k":2}')
        np.savez(path, **content)
    else:
        np.savez(path, x=np.zeros(3))
    with pytest.raises(st.DamagedFileError, match=re.escape(repr(str(path)))):
        st.read_npz(path)


def test_damaged_json_is_detected_and_named(tmp_path):
    path = st.write_json(tmp_path / "a.json", {"v": [0.1, 2]})
    envelope = json.loads(path.read_text())
    envelope["content"]["v"][0] = 0.2
    path.write_text(json.dumps(envelope))
    with pytest.raises(st.DamagedFileError, match="does not match its SHA-256 digest"):
        st.read_json(path)
    path.write_text('{"v": [0.1, 2]}')
    with pytest.raises(st.DamagedFileError, match="no content digest"):
        st.read_json(path)


def test_store_reports_and_forgets_a_damaged_entry(tmp_path, caplog):
    store = st.Store(tmp_path / "s")
    store.put_npz("p0", {"x": np.ones(3)})
    store.put_json("c0", {"a": 1})
    (tmp_path / "s" / "p0.npz").write_bytes(b"garbage")
    (tmp_path / "s" / "c0.json").write_text("[1")
    with caplog.at_level("WARNING", logger="branching.store"):
        assert store.get_npz("p0") is None and store.get_json("c0") is None
    assert str(tmp_path / "s" / "p0.npz") in caplog.text
    assert str(tmp_path / "s" / "c0.json") in caplog.text
    assert store.get_npz("missing") is None
    store.put_npz("p0", {"x": np.ones(3)})
    np.testing.assert_array_equal(store.get_npz("p0")[0]["x"], np.ones(3))
    store.clear()
    assert not (tmp_path / "s").exists()


def test_store_manifest_refuses_another_configuration_naming_it(tmp_path):
    st.Store(tmp_path, config={"a": 1, "b": [1, 2]})
    st.Store(tmp_path, config={"b": [1, 2], "a": 1})  # same configuration, other key order
    manifest = re.escape(repr(str(tmp_path / "manifest.json")))
    with pytest.raises(ValueError, match=f"{manifest} records a different .*differs in: b"):
        st.Store(tmp_path, config={"a": 1, "b": [1, 3]})
    st.write_json(tmp_path / "manifest.json", [1, 2])
    with pytest.raises(ValueError, match=f"{manifest} must hold a JSON object"):
        st.Store(tmp_path, config={"a": 1})
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match=manifest):
        st.Store(tmp_path, config={"a": 1})
