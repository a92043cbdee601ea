"""Checkpoint files of the zoo: where they live, how they are written, read and verified.

A trained model is a directory ``<cache>/zoo/<task>/<size>-seed<seed>-<key>/`` holding one
``step-XXXXXXXX.npz`` per checkpoint.  Each file holds the model's state dict, the
optimiser state (to resume), the training curve up to that step, and JSON metadata with the
SHA-256 digests of the weights and of everything else; files are written atomically, and a
file whose digests do not match its content is reported as corrupted.  The key hashes the
task, the size, the seed, the training recipe and the package version, so a changed recipe
or a new release never reuses stale weights.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from llm_bridge import cache

__all__ = [
    "CorruptCheckpoint",
    "arrays_digest",
    "checkpoint_files",
    "default_cache_dir",
    "read_checkpoint",
    "resolve_cache_dir",
    "write_checkpoint",
]

ENV_CACHE = "LLM_BRANCHING_CACHE"
_STEP_FILE = re.compile(r"^step-(\d{8})\.npz$")


class CorruptCheckpoint(ValueError):
    """A checkpoint file that cannot be read or whose digest does not match its content."""


def default_cache_dir() -> Path:
    """``$LLM_BRANCHING_CACHE``, else ``$XDG_CACHE_HOME/llm-branching``, else
    ``~/.cache/llm-branching``.

    Returns
    -------
    pathlib.Path
        The cache root chosen by the environment (``~`` expanded).  The directory is
        neither created nor checked; :func:`resolve_cache_dir` does that.

    Examples
    --------
    >>> import tempfile
    >>> from unittest import mock
    >>> d = tempfile.mkdtemp()
    >>> with mock.patch.dict(os.environ, {ENV_CACHE: d}):
    ...     default_cache_dir() == Path(d)
    True
    >>> with mock.patch.dict(os.environ, {ENV_CACHE: "", "XDG_CACHE_HOME": d}):
    ...     default_cache_dir() == Path(d) / "llm-branching"
    True
    """
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llm-branching"


def resolve_cache_dir(cache_dir=None) -> Path:
    """The zoo's directory inside ``cache_dir`` (default :func:`default_cache_dir`), created
    and checked to be writable.

    Parameters
    ----------
    cache_dir : path-like, optional
        Cache root (``~`` is expanded); ``None`` means :func:`default_cache_dir`.

    Returns
    -------
    pathlib.Path
        ``<cache_dir>/zoo``, an existing writable directory.

    Raises
    ------
    ValueError
        If the directory cannot be created or is not writable; the message names it.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> zoo = resolve_cache_dir(d)
    >>> zoo == Path(d) / "zoo", zoo.is_dir()
    (True, True)
    >>> blocker = Path(d) / "a-file"
    >>> blocker.write_text("")
    0
    >>> resolve_cache_dir(blocker)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cache_dir '...a-file' is not a writable directory (...)
    """
    root = default_cache_dir() if cache_dir is None else Path(os.fspath(cache_dir)).expanduser()
    zoo = root / "zoo"
    try:
        zoo.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=zoo):
            pass
    except OSError as exc:
        raise ValueError(
            f"cache_dir {os.fspath(root)!r} is not a writable directory ({exc.strerror or exc})"
        ) from None
    return zoo


def arrays_digest(arrays: dict) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes and bytes, in sorted name order).

    Parameters
    ----------
    arrays : dict
        ``name -> array`` (numpy arrays or torch tensors).

    Returns
    -------
    str
        The digest as 64 hexadecimal characters; it does not depend on the insertion order
        of ``arrays`` but changes with any name, dtype, shape or value.

    Examples
    --------
    >>> digest = arrays_digest({"a": np.zeros(3), "b": np.ones(2)})
    >>> len(digest), digest == arrays_digest({"b": np.ones(2), "a": np.zeros(3)})
    (64, True)
    >>> digest == arrays_digest({"a": np.zeros(3, dtype=np.float32), "b": np.ones(2)})
    False
    """
    return cache.state_dict_digest(arrays)


def checkpoint_files(directory) -> dict[int, Path]:
    """``{step: path}`` of the checkpoint files in ``directory`` (empty if it does not exist).

    Parameters
    ----------
    directory : path-like
        Directory of one model's checkpoints.

    Returns
    -------
    dict of int to pathlib.Path
        The files named ``step-XXXXXXXX.npz`` (eight digits), keyed by step in increasing
        order; other files are ignored.  The files are listed, not read or verified.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for step in (10, 0):
    ...     _ = write_checkpoint(step_path(d, step), {"w": np.zeros(2)}, {}, {"step": step})
    >>> _ = (d / "notes.txt").write_text("not a checkpoint")
    >>> {step: path.name for step, path in checkpoint_files(d).items()}
    {0: 'step-00000000.npz', 10: 'step-00000010.npz'}
    >>> checkpoint_files(d / "missing")
    {}
    """
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        match = _STEP_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def step_path(directory, step: int) -> Path:
    """Where the checkpoint of ``step`` lives in ``directory``."""
    return Path(directory) / f"step-{step:08d}.npz"


def write_checkpoint(path, weights: dict, extra: dict, metadata: dict) -> str:
    """Write weights (``name -> array``) and extra arrays atomically; returns the weights digest.

    The metadata gains ``weights_digest`` and ``extra_digest``, checked by
    :func:`read_checkpoint`.

    Parameters
    ----------
    path : path-like
        The ``.npz`` file to write (replaced if it exists).
    weights : dict
        ``name -> array``: the model's state dict as numpy arrays.
    extra : dict
        ``name -> array``: everything else stored with the weights (optimiser state,
        training curve).
    metadata : dict
        JSON-serialisable metadata; it is stored with the two digests added and is not
        modified in place.

    Returns
    -------
    str
        :func:`arrays_digest` of ``weights``.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "step-00000005.npz"
    >>> weights = {"w": np.arange(4.0)}
    >>> digest = write_checkpoint(path, weights, {"loss": np.array([2.5, 1.5])}, {"step": 5})
    >>> digest == arrays_digest(weights), path.is_file()
    (True, True)
    """
    weights = {name: np.ascontiguousarray(a) for name, a in weights.items()}
    extra = {name: np.ascontiguousarray(a) for name, a in extra.items()}
    digest = arrays_digest(weights)
    meta = dict(metadata, weights_digest=digest, extra_digest=arrays_digest(extra))
    payload = {f"w/{k}": v for k, v in weights.items()}
    payload.update({f"x/{k}": v for k, v in extra.items()})
    cache.write_npz_atomic(path, payload, meta)
    return digest


def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """Read and verify a checkpoint: ``(weights, extra, metadata)``.

    Parameters
    ----------
    path : path-like
        A file written by :func:`write_checkpoint`.

    Returns
    -------
    weights : dict
        ``name -> numpy.ndarray``, as written.
    extra : dict
        ``name -> numpy.ndarray``, as written.
    metadata : dict
        The metadata written, including ``weights_digest`` and ``extra_digest``.

    Raises
    ------
    ValueError
        If ``path`` is not an existing file.
    CorruptCheckpoint
        (a ``ValueError``) if the file cannot be parsed or a digest does not match.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "step-00000005.npz"
    >>> _ = write_checkpoint(path, {"w": np.arange(4.0)}, {"loss": np.array([2.5])}, {"step": 5})
    >>> weights, extra, meta = read_checkpoint(path)
    >>> weights["w"].tolist(), extra["loss"].tolist(), meta["step"]
    ([0.0, 1.0, 2.0, 3.0], [2.5], 5)
    >>> _ = path.write_bytes(b"damaged")
    >>> read_checkpoint(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llm_bridge.zoo.store.CorruptCheckpoint: checkpoint '...step-00000005.npz' is corrupted ...
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {os.fspath(path)!r} is not an existing file")
    try:
        arrays, meta = cache.read_npz(path)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CorruptCheckpoint(
            f"checkpoint {os.fspath(path)!r} is corrupted (cannot be read: "
            f"{type(exc).__name__}: {str(exc)[:80]})"
        ) from None
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}
    extra = {k[2:]: v for k, v in arrays.items() if k.startswith("x/")}
    for what, part in (("weights_digest", weights), ("extra_digest", extra)):
        if meta.get(what) != arrays_digest(part):
            raise CorruptCheckpoint(
                f"checkpoint {os.fspath(path)!r} is corrupted: its {what.split('_')[0]} do not "
                f"match the recorded digest"
            )
    return weights, extra, meta

