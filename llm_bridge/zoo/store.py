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
    ``~/.cache/llm-branching``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llm-branching"


def resolve_cache_dir(cache_dir=None) -> Path:
    """The zoo's directory inside ``cache_dir`` (default :func:`default_cache_dir`), created
    and checked to be writable.

    Raises
    ------
    ValueError
        If the directory cannot be created or is not writable; the message names it.
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
    """SHA-256 of named arrays (names, dtypes, shapes and bytes, in sorted name order)."""
    return cache.state_dict_digest(arrays)


def checkpoint_files(directory) -> dict[int, Path]:
    """``{step: path}`` of the checkpoint files in ``directory`` (empty if it does not exist)."""
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

    Raises
    ------
    ValueError
        If ``path`` is not an existing file.
    CorruptCheckpoint
        (a ``ValueError``) if the file cannot be parsed or a digest does not match.
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

