"""A per-user cache of GGUF models converted to ordinary safetensors checkpoints.

Reading a GGUF file de-quantises every tensor in Python, which takes half a minute for the
bundled default model.  The result depends only on the bytes of the file and on the code
that converts it, so it is converted once and stored as a plain Hugging Face checkpoint
(``model.safetensors`` in float32, ``config.json``, the tokenizer files) in a directory
named by

* the SHA-256 digest of the GGUF file,
* the version of this package and of transformers.

Every entry carries a manifest with the SHA-256 of each of its files, written last; an entry
whose manifest is missing or does not match its files (an interrupted copy, a flipped bit) is
reported in the log, deleted and rebuilt.  Entries are assembled in a temporary directory
and moved into place with one rename, so a reader never sees a half-written entry; a lock
file makes concurrent processes (parallel test workers) convert a file once, the others
waiting for the entry.

Where the cache lives, first match wins: the ``cache_dir`` argument, the environment
variable ``LLM_BRANCHING_CACHE_DIR``, ``$XDG_CACHE_HOME/llm-branching``,
``~/.cache/llm-branching``; entries sit in its ``gguf/`` subdirectory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root", "converted_checkpoint", "file_digest"]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the per-user cache directory.
CACHE_ENV = "LLM_BRANCHING_CACHE_DIR"

_MANIFEST = "manifest.json"
_CHUNK = 1 << 22


def cache_root(cache_dir=None) -> Path:
    """The cache directory: ``cache_dir``, else ``$LLM_BRANCHING_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/llm-branching``, else ``~/.cache/llm-branching``.

    Parameters
    ----------
    cache_dir : str or path-like, optional

    Returns
    -------
    pathlib.Path
        Not created here.

    Examples
    --------
    >>> str(cache_root("/tmp/models"))
    '/tmp/models'
    """
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)) or not os.fspath(cache_dir):
            raise ValueError(f"cache_dir must be a directory path, got {cache_dir!r}")
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llm-branching"


def file_digest(path) -> str:
    """SHA-256 hex digest of a file's bytes (about 0.2 s per 100 MB).

    Parameters
    ----------
    path : str or os.PathLike
        The file, read in chunks of 4 MiB so that memory stays bounded.

    Returns
    -------
    str
        The 64 lowercase hexadecimal digits of the digest.

    Raises
    ------
    OSError
        If the file cannot be opened or read.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> with open(path, "wb") as handle:
    ...     _ = handle.write(b"abc")
    >>> file_digest(path)
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> str:
    import transformers

    try:
        package = version("llm-branching")
    except PackageNotFoundError:
        package = "unknown"
    return f"llm-branching-{package}-transformers-{transformers.__version__}"


def _entry_name(gguf_path) -> str:
    return f"{file_digest(gguf_path)[:32]}-{_versions()}"


def _manifest_of(directory: Path) -> dict:
    return {
        f.name: file_digest(f)
        for f in sorted(directory.iterdir())
        if f.is_file() and f.name != _MANIFEST
    }


def _intact(entry: Path) -> bool:
    """True when ``entry`` has a manifest and every file matches it (and no file is extra)."""
    try:
        recorded = json.loads((entry / _MANIFEST).read_text())
        return isinstance(recorded, dict) and bool(recorded) and _manifest_of(entry) == recorded
    except (OSError, ValueError):
        return False


def _save_plain(model, directory: Path) -> None:
    """Weights (safetensors), config and generation config of ``model`` as a plain
    checkpoint.  A model read from GGUF is marked as quantised, which ``save_pretrained``
    refuses; its tensors are already de-quantised, so they are written directly and the
    quantisation record is left out of the config."""
    from safetensors.torch import save_model

    save_model(model, os.fspath(directory / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(directory)


def _build(entry: Path, convert: Callable) -> None:
    """Convert, save into a temporary sibling of ``entry`` and rename it into place."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name[:16]}-"))
    try:
        model, tokenizer = convert()
        _save_plain(model, staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        (staging / _MANIFEST).write_text(json.dumps(_manifest_of(staging), indent=1))
        os.rename(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def converted_checkpoint(gguf_path, convert: Callable, *, cache_dir=None) -> Path:
    """Directory of the converted checkpoint of ``gguf_path``, converting on a miss.

    Parameters
    ----------
    gguf_path : str or path-like
        The GGUF file; its digest names the entry.
    convert : callable
        ``convert() -> (model, tokenizer)``: reads the GGUF file and returns a
        transformers model (float32, as stored) and its tokenizer (or ``None``).  Called only
        when no intact entry exists.
    cache_dir : str or path-like, optional
        See :func:`cache_root`.

    Returns
    -------
    pathlib.Path
        A directory that ``from_pretrained`` loads (model and tokenizer).

    Notes
    -----
    A hit costs the SHA-256 of the GGUF file and of the entry's files (about 0.2 s per
    100 MB each), which is what detects a corrupted entry; a corrupted entry is logged at
    WARNING level, deleted and rebuilt.

    Examples
    --------
    >>> import tempfile, transformers
    >>> from llm_bridge.models import tiny_model
    >>> folder = tempfile.mkdtemp()
    >>> source = os.path.join(folder, "weights.gguf")
    >>> _ = open(source, "wb").write(b"stand-in bytes")
    >>> convert = lambda: (tiny_model(4).model, None)
    >>> entry = converted_checkpoint(source, convert, cache_dir=folder)
    >>> sorted(p.name for p in entry.iterdir())
    ['config.json', 'generation_config.json', 'manifest.json', 'model.safetensors']
    >>> converted_checkpoint(source, convert, cache_dir=folder) == entry
    True
    """
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise ValueError(f"gguf_path {os.fspath(gguf_path)!r} is not an existing file")
    entry = cache_root(cache_dir) / "gguf" / _entry_name(gguf_path)
    if entry.is_dir() and _intact(entry):
        logger.info("converted GGUF found in %s", entry)
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(entry.parent / f".{entry.name}.lock"):
        if entry.is_dir():  # another process may have finished it meanwhile
            if _intact(entry):
                return entry
            logger.warning("the converted-model cache entry %s is corrupted; rebuilding it",
                           entry)
            shutil.rmtree(entry, ignore_errors=True)
        logger.info("converting %s once into %s", gguf_path, entry)
        _build(entry, convert)
    return entry


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; no lock elsewhere), so that
    parallel processes convert a file once instead of each converting it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
