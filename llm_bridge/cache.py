"""On-disk storage of scan results: content keys, atomic verified ``.npz`` files with JSON metadata.

A scan is keyed by a SHA-256 hash of everything that determines its output -- model identity
(name plus the size and modification time of the weight files, or a hash of the parameters of
an in-memory model), prompt, grid, sample count, continuation length, end-of-sequence policy,
window size, seed and the package version -- so a figure can be redrawn from the cache without
loading the model, and a changed input never returns a stale result.  Files are written and
verified by :mod:`branching.store` (atomic, normal permissions, SHA-256 content digest), so a
damaged cache file is detected, reported with its path, and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from branching.store import DamagedFileError, Store, write_npz
from branching.store import read_npz as _read_npz

__all__ = [
    "DamagedFileError",
    "PartStore",
    "cache_key",
    "cache_path",
    "file_identity",
    "package_version",
    "read_npz",
    "state_dict_digest",
    "write_npz_atomic",
]

logger = logging.getLogger(__name__)

def package_version() -> str:
    """The installed version of ``llm-branching`` (``"unknown"`` when not installed).

    Returns
    -------
    str
        The version string from the package metadata, or ``"unknown"``.  It is part of
        every :func:`cache_key`, so an upgrade never reuses results of an older version.

    Examples
    --------
    >>> v = package_version()
    >>> v == "unknown" or v[0].isdigit()
    True
    """
    try:
        return version("llm-branching")
    except PackageNotFoundError:
        return "unknown"


def _canonical(value):
    """A JSON-serialisable, order-stable form of ``value`` for hashing."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value).hex()  # exact: 0.1 and 0.1000000000000001 differ
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot build a cache key from a {type(value).__name__}")


def cache_key(parts: dict) -> str:
    """SHA-256 hex digest of the canonical JSON form of ``parts`` (plus the package version).

    Floats enter through their exact hexadecimal form, arrays with dtype and shape, dicts with
    sorted keys, so equal inputs give equal keys and any change gives a different key.

    Parameters
    ----------
    parts : dict
        Everything that determines a result: nested dicts, lists and tuples of strings,
        integers, floats, booleans, ``None``, numpy scalars and arrays, and paths.

    Returns
    -------
    str
        64 lowercase hexadecimal digits.

    Raises
    ------
    TypeError
        ``parts`` holds a value of another type.

    Examples
    --------
    >>> import numpy as np
    >>> key = cache_key({"grid": np.array([0.5, 1.0]), "eps": 0.1})
    >>> len(key), key == cache_key({"eps": 0.1, "grid": np.array([0.5, 1.0])})
    (64, True)
    >>> key == cache_key({"grid": np.array([0.5, 1.0]), "eps": 0.1000000000000001})
    False
    """
    payload = {"parts": _canonical(parts), "package_version": package_version()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir, kind: str, key: str) -> Path:
    """Where the scan of ``kind`` with ``key`` lives inside ``cache_dir``.

    Parameters
    ----------
    cache_dir : path-like
        The cache directory.
    kind : str
        The kind of scan (a file-name prefix, e.g. ``"temperature"``).
    key : str
        The scan's :func:`cache_key`; its first 24 characters name the file.

    Returns
    -------
    pathlib.Path
        ``<cache_dir>/<kind>-<key[:24]>.npz`` (nothing is created).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> path = cache_path(d, "temperature", "0123456789abcdef" * 4)
    >>> path.name, str(path.parent) == d
    ('temperature-0123456789abcdef01234567.npz', True)
    """
    return Path(cache_dir) / f"{kind}-{key[:24]}.npz"


def file_identity(path) -> dict | None:
    """Size and modification time of every file under ``path`` (a file or a directory).

    Returns ``None`` when ``path`` does not exist locally (e.g. a hub id).  Hashing the bytes
    of multi-gigabyte weights on every scan would cost more than the check is worth; size and
    ``mtime_ns`` change whenever a file is replaced.

    Parameters
    ----------
    path : path-like
        A file or directory (``~`` is expanded), or a name that is not a local path.

    Returns
    -------
    dict or None
        ``{"path": <resolved path>, "files": [[<resolved file>, <size in bytes>,
        <mtime_ns>], ...]}`` with the files of a directory (recursively) in sorted order;
        ``None`` if ``path`` does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "weights.bin"), "wb") as f:
    ...     _ = f.write(b"abc")
    >>> [(os.path.basename(name), size) for name, size, _ in file_identity(d)["files"]]
    [('weights.bin', 3)]
    >>> file_identity(os.path.join(d, "missing")) is None
    True
    """
    p = Path(path).expanduser()
    if not p.exists():
        return None
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    entries = []
    for f in files:
        st = f.stat()
        entries.append([os.fspath(f.resolve()), st.st_size, st.st_mtime_ns])
    return {"path": os.fspath(p.resolve()), "files": entries}


def state_dict_digest(state_dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (torch tensors or arrays).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor or array_like
        The parameters, e.g. ``model.state_dict()``.  Tensors are moved to the CPU;
        ``bfloat16`` tensors are hashed as ``float32`` (numpy has no ``bfloat16``).

    Returns
    -------
    str
        64 lowercase hexadecimal digits; the entries are hashed in name order, so the
        mapping's order does not matter.

    Examples
    --------
    >>> import numpy as np
    >>> digest = state_dict_digest({"w": np.zeros(2), "b": np.ones(1)})
    >>> len(digest), digest == state_dict_digest({"b": np.ones(1), "w": np.zeros(2)})
    (64, True)
    >>> digest == state_dict_digest({"w": np.zeros(2, dtype=np.float32), "b": np.ones(1)})
    False
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if hasattr(tensor, "detach"):
            tensor = tensor.detach().cpu()
            if str(tensor.dtype) == "torch.bfloat16":  # numpy has no bfloat16
                tensor = tensor.float()
            tensor = tensor.numpy()
        arr = np.ascontiguousarray(tensor)
        digest.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


class PartStore:
    """Finished pieces of one scan, so that an interrupted scan resumes where it stopped.

    Each piece (a grid point's samples, a block of scores) is a verified ``.npz`` entry of a
    :class:`branching.store.Store` in the directory ``<cache_dir>/<kind>-<key>.parts``,
    written atomically when the piece is done.  A damaged piece is reported (a logged
    warning naming its file) and treated as unfinished, so it is recomputed.  Without a
    cache directory every method is a no-op.  :meth:`clear` removes the directory once the
    whole scan is stored.
    """

    def __init__(self, cache_dir, kind: str, key: str | None):
        self.store = None if cache_dir is None else Store(Path(cache_dir) / f"{kind}-{key[:24]}.parts")
        self.directory = None if self.store is None else self.store.dir

    def get(self, name: str) -> dict | None:
        """The arrays of piece ``name``, or ``None`` if it is not finished (or damaged)."""
        entry = None if self.store is None else self.store.get_npz(name)
        if entry is None:
            return None
        logger.debug("resumed piece %s from %s", name, self.directory)
        return entry[0]

    def put(self, name: str, arrays: dict) -> None:
        """Store piece ``name`` (atomically)."""
        if self.store is not None:
            self.store.put_npz(name, arrays, {"piece": name})

    def clear(self) -> None:
        """Delete the pieces (after the complete result has been written)."""
        if self.store is not None:
            self.store.clear()


def write_npz_atomic(path, arrays: dict, metadata: dict) -> Path:
    """Write ``arrays`` and JSON ``metadata`` to ``path`` as one ``.npz``, atomically, with a
    content digest (:func:`branching.store.write_npz`).

    Parameters
    ----------
    path : path-like
        Destination, ending in ``.npz``; its directory is created if needed.
    arrays : dict of str to array_like
        Numeric or string arrays (no Python objects: files are read without pickle).
    metadata : dict
        JSON-serialisable metadata.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        ``path`` does not end in ``.npz``, ``arrays`` uses a reserved name or holds Python
        objects.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> d = tempfile.mkdtemp()
    >>> path = write_npz_atomic(os.path.join(d, "scan.npz"), {"x": np.arange(3)}, {"kind": "demo"})
    >>> arrays, metadata = read_npz(path)
    >>> arrays["x"], metadata
    (array([0, 1, 2]), {'kind': 'demo'})
    """
    return write_npz(path, arrays, metadata)


def read_npz(path) -> tuple[dict, dict]:
    """Read and verify a file written by :func:`write_npz_atomic`: ``(arrays, metadata)``.

    Parameters
    ----------
    path : path-like
        A file written by :func:`write_npz_atomic`.

    Returns
    -------
    arrays : dict of str to ndarray
        The stored arrays, in name order.
    metadata : dict
        The stored JSON metadata.

    Raises
    ------
    branching.store.DamagedFileError
        (a ValueError) The file is unreadable or its content does not match its digest;
        the message names the file.
    ValueError
        There is no file at ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> d = tempfile.mkdtemp()
    >>> path = write_npz_atomic(os.path.join(d, "scan.npz"), {"r0": np.array([0.5, 2.0])}, {"n": 2})
    >>> arrays, metadata = read_npz(path)
    >>> arrays["r0"].tolist(), metadata["n"]
    ([0.5, 2.0], 2)
    >>> read_npz(os.path.join(d, "missing.npz"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: path '...missing.npz' is not an existing file
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"path {os.fspath(path)!r} is not an existing file")
    return _read_npz(path)
