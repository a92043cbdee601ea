r"""Atomic files with content digests, and the resumable on-disk store built from them.

One implementation serves every file the package keeps between runs: the chunks of a
parameter sweep (:mod:`branching.sweep`) and the pieces and finished results of a model scan
(``llm_bridge.cache``).

* :func:`write_atomic` writes bytes to a temporary file in the destination directory and
  moves it into place with :func:`os.replace`: a reader never sees a half-written file and an
  interrupted write leaves none behind.  The file gets the user's normal permissions
  (``0o666`` masked by the umask), not the ``0o600`` of :func:`tempfile.mkstemp`.
* :func:`write_json` / :func:`read_json` and :func:`write_npz` / :func:`read_npz` store a
  SHA-256 digest of the content next to it and verify it on every read, so a truncated file,
  random bytes, or a file edited into other valid content raises :class:`DamagedFileError`,
  which names the file.
* :class:`Store` is a directory of such entries with an optional manifest: a store opened with
  a different configuration is refused with a message naming the manifest, and a damaged
  entry is reported (``logging.warning`` with its path) and treated as missing, so that the
  caller recomputes and overwrites it.

Notes
-----
The digest of a JSON document is taken over its canonical text
(``json.dumps(content, sort_keys=True, separators=(",", ":"))``); Python's JSON writes
floats with :func:`repr`, which round-trips exactly, so re-serialising what was read gives
the same text.  The digest of an ``.npz`` file covers, for every array in name order, its
name, dtype, shape and bytes, followed by the canonical JSON of the metadata.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = [
    "DamagedFileError",
    "Store",
    "read_json",
    "read_npz",
    "write_atomic",
    "write_json",
    "write_npz",
]

logger = logging.getLogger(__name__)

#: Reserved names inside an ``.npz`` file: the JSON metadata and the content digest.
NPZ_METADATA = "__metadata__"
NPZ_DIGEST = "__sha256__"
_JSON_FORMAT = "llm_branching.verified_json"


class DamagedFileError(ValueError):
    """A stored file that cannot be read or whose content does not match its digest.

    Attributes
    ----------
    path : pathlib.Path
        The damaged file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"damaged file {os.fspath(path)!r}: {reason}")


def _canonical_json(content) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"))


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, with the user's normal file permissions.

    Parameters
    ----------
    path : path-like
        Destination; its directory is created if needed.
    data : bytes
        The complete content.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The bytes go to a uniquely named temporary file in the same directory (created with
    mode ``0o666``, which the process umask reduces as for any new file), are flushed to
    disk, and the file is renamed onto ``path`` with :func:`os.replace`, which is atomic on
    POSIX and Windows.  On any error the temporary file is removed.

    Examples
    --------
    >>> import os, stat, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_atomic(os.path.join(d, "a.txt"), b"hello")
    ...     (p.read_bytes(), oct(stat.S_IMODE(p.stat().st_mode)) == oct(0o666 & ~_umask()))
    (b'hello', True)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.debug("wrote %s", path)
    return path


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- JSON
def write_json(path, content) -> Path:
    """Write JSON ``content`` atomically together with its SHA-256 digest.

    The file holds ``{"format": ..., "sha256": <digest of the canonical text>,
    "content": content}``; :func:`read_json` verifies it.

    Parameters
    ----------
    path : path-like
        Destination; its directory is created if needed.
    content : JSON-serialisable object
        What to store (dicts, lists, strings, numbers, booleans, ``None``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        ``content`` is not JSON-serialisable (nothing is written).

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_json(os.path.join(d, "x.json"), {"a": [1, 0.1]})
    ...     read_json(p)
    {'a': [1, 0.1]}
    """
    text = _canonical_json(content)
    envelope = {"format": _JSON_FORMAT,
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "content": content}
    return write_atomic(path, json.dumps(envelope).encode())


def read_json(path):
    """The content of a file written by :func:`write_json`, verified against its digest.

    Parameters
    ----------
    path : path-like
        A file written by :func:`write_json`.

    Returns
    -------
    object
        The stored JSON content, as :func:`json.loads` returns it.

    Raises
    ------
    DamagedFileError
        The file is not valid JSON, not in the format of :func:`write_json`, or its content
        does not match the stored digest (also when ``path`` is a directory).
    FileNotFoundError
        There is no file at ``path``.

    Examples
    --------
    An edit of the stored content, even into other valid JSON, is detected:

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = write_json(os.path.join(d, "x.json"), {"n": 3})
    >>> read_json(p)
    {'n': 3}
    >>> _ = p.write_text(p.read_text().replace('"n": 3', '"n": 4'))
    >>> read_json(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    branching.store.DamagedFileError: damaged file '...x.json': content does not match its SHA-256 digest
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DamagedFileError(path, "is a directory, not a file") from None
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(path, f"not valid JSON ({err})") from None
    if (not isinstance(envelope, dict) or envelope.get("format") != _JSON_FORMAT
            or not isinstance(envelope.get("sha256"), str) or "content" not in envelope):
        raise DamagedFileError(path, "not a file written by this package (no content digest)")
    content = envelope["content"]
    if hashlib.sha256(_canonical_json(content).encode()).hexdigest() != envelope["sha256"]:
        raise DamagedFileError(path, "content does not match its SHA-256 digest")
    return content


# --------------------------------------------------------------------------- npz
def _npz_digest(arrays: Mapping[str, np.ndarray], metadata_text: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    digest.update(metadata_text.encode())
    return digest.hexdigest()


def write_npz(path, arrays: Mapping, metadata: Mapping) -> Path:
    """Write ``arrays`` and JSON ``metadata`` to one compressed ``.npz`` file, atomically.

    Parameters
    ----------
    path : path-like
        Destination, ending in ``.npz``.
    arrays : mapping of str to array-like
        Numeric or string arrays (no Python objects: files are read without pickle).
    metadata : mapping
        JSON-serialisable metadata.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        ``path`` does not end in ``.npz``, or ``arrays`` uses a reserved name.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_npz(os.path.join(d, "x.npz"), {"a": np.arange(3)}, {"n": 3})
    ...     arrays, meta = read_npz(p)
    >>> arrays["a"], meta
    (array([0, 1, 2]), {'n': 3})
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in '.npz', got {os.fspath(path)!r}")
    reserved = {NPZ_METADATA, NPZ_DIGEST} & set(arrays)
    if reserved:
        raise ValueError(f"arrays must not contain the reserved keys {sorted(reserved)}")
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects, which cannot be stored")
    text = _canonical_json(metadata)
    payload = dict(arrays)
    payload[NPZ_METADATA] = np.array(text)
    payload[NPZ_DIGEST] = np.array(_npz_digest(arrays, text))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    return write_atomic(path, buffer.getvalue())


def read_npz(path) -> tuple[dict, dict]:
    """Read and verify a file written by :func:`write_npz`: ``(arrays, metadata)``.

    Parameters
    ----------
    path : path-like
        A file written by :func:`write_npz`.

    Returns
    -------
    arrays : dict of str to ndarray
        The stored arrays, in name order.
    metadata : dict
        The stored JSON metadata.

    Raises
    ------
    DamagedFileError
        The file is not a readable ``.npz`` archive (truncated, random bytes, ...), lacks
        the metadata or digest, or its content does not match the digest (also when
        ``path`` is a directory).
    FileNotFoundError
        There is no file at ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> d = tempfile.mkdtemp()
    >>> p = write_npz(os.path.join(d, "x.npz"), {"b": np.ones(2), "a": np.arange(3)}, {"n": 3})
    >>> arrays, meta = read_npz(p)
    >>> list(arrays), arrays["a"], meta
    (['a', 'b'], array([0, 1, 2]), {'n': 3})
    >>> _ = p.write_bytes(p.read_bytes()[:50])  # truncate the file
    >>> read_npz(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    branching.store.DamagedFileError: damaged file '...x.npz': not a readable .npz archive...
    """
    path = Path(path)
    if path.is_dir():
        raise DamagedFileError(path, "is a directory, not a file")
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if NPZ_METADATA not in names or NPZ_DIGEST not in names:
                raise DamagedFileError(path, "not a file written by this package "
                                             "(no metadata or content digest)")
            text = str(data[NPZ_METADATA])
            stored = str(data[NPZ_DIGEST])
            arrays = {name: data[name] for name in sorted(names - {NPZ_METADATA, NPZ_DIGEST})}
    except DamagedFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        reason = "not a readable .npz archive"
        if isinstance(err, (zipfile.BadZipFile, EOFError, zlib.error)):
            reason += f" ({err})"
        raise DamagedFileError(path, reason) from None
    if _npz_digest(arrays, text) != stored:
        raise DamagedFileError(path, "content does not match its SHA-256 digest")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError:  # pragma: no cover - the digest covers the text
        raise DamagedFileError(path, "metadata is not valid JSON") from None
    return arrays, metadata


# --------------------------------------------------------------------------- store
class Store:
    """A directory of verified entries (JSON or ``.npz``) with an optional manifest.

    Parameters
    ----------
    directory : path-like
        Where the entries live; created when the first entry (or the manifest) is written.
    config : dict, optional
        The configuration the entries belong to (JSON-serialisable).  It is written to
        ``manifest.json`` on creation; opening an existing store with a different
        configuration raises a ValueError naming the manifest.

    Raises
    ------
    ValueError
        ``directory`` is an existing file; the manifest is damaged or holds another
        configuration.

    Notes
    -----
    :meth:`get_json` and :meth:`get_npz` return ``None`` for a missing entry and also for a
    damaged one, after a ``logging.warning`` naming its path, so that the caller recomputes
    it; the next :meth:`put_json` / :meth:`put_npz` replaces the damaged file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(d, config={"n": 1})
    ...     _ = store.put_json("a", [1, 2])
    ...     first = store.get_json("a")
    ...     again = Store(d, config={"n": 1}).get_json("a")
    >>> first, again
    ([1, 2], [1, 2])
    """

    MANIFEST = "manifest.json"

    def __init__(self, directory, config: dict | None = None):
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"store must be a directory, got the file {os.fspath(self.dir)!r}")
        self.config = None if config is None else json.loads(_canonical_json(config))
        if self.config is None:
            return
        stored = self.read_manifest(self.dir)
        manifest = self.dir / self.MANIFEST
        if stored is None:
            write_json(manifest, self.config)
        elif stored != self.config:
            differ = sorted(k for k in set(stored) | set(self.config)
                            if stored.get(k) != self.config.get(k))
            raise ValueError(
                f"the store manifest {os.fspath(manifest)!r} records a different configuration "
                f"(differs in: {', '.join(differ)}); use another directory or the same settings"
            )

    @classmethod
    def read_manifest(cls, directory) -> dict | None:
        """The configuration recorded in ``directory``'s manifest (``None`` if it has none).

        Raises
        ------
        ValueError
            The manifest is damaged or does not hold a configuration (a JSON object).
        """
        manifest = Path(directory) / cls.MANIFEST
        if not manifest.exists():
            return None
        try:
            content = read_json(manifest)
        except DamagedFileError as err:
            raise ValueError(f"{err}; delete the store directory or use another one") from None
        if not isinstance(content, dict):
            raise ValueError(f"store manifest {os.fspath(manifest)!r} must hold a JSON object, "
                             f"got a {type(content).__name__}; delete it or use another directory")
        return content

    def path(self, name: str, suffix: str) -> Path:
        """The file of entry ``name``."""
        return self.dir / f"{name}{suffix}"

    def _get(self, name: str, suffix: str, reader):
        path = self.path(name, suffix)
        if not path.exists():
            return None
        try:
            return reader(path)
        except DamagedFileError as err:
            logger.warning("recomputing %s", err)
            return None

    def get_json(self, name: str):
        """The content of JSON entry ``name``, or ``None`` when missing or damaged."""
        return self._get(name, ".json", read_json)

    def put_json(self, name: str, content) -> Path:
        """Store JSON entry ``name`` atomically."""
        return write_json(self.path(name, ".json"), content)

    def get_npz(self, name: str) -> tuple[dict, dict] | None:
        """``(arrays, metadata)`` of entry ``name``, or ``None`` when missing or damaged."""
        return self._get(name, ".npz", read_npz)

    def put_npz(self, name: str, arrays: Mapping, metadata: Mapping | None = None) -> Path:
        """Store ``.npz`` entry ``name`` atomically."""
        return write_npz(self.path(name, ".npz"), arrays, metadata or {})

    def clear(self) -> None:
        """Delete every entry, the manifest and the directory itself (if it is then empty)."""
        if not self.dir.is_dir():
            return
        for f in self.dir.iterdir():
            if f.is_file() and (f.suffix in (".json", ".npz") or f.name.endswith(".tmp")):
                f.unlink()
        try:
            self.dir.rmdir()
        except OSError:
            logger.debug("kept non-empty store directory %s", self.dir)
