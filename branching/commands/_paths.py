"""Checks of the output paths of a subcommand, run before any work starts.

Each check probes the file system the way the command will use it later (creating a file
in the target directory and removing it again), so that a path that cannot be written --
a missing or read-only directory, a directory where a file is wanted, a file where a
directory is wanted, a pseudo file system -- is reported at once, as a ValueError naming the
flag and the path, instead of an OSError with a traceback after the work is done.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _probe(directory: Path) -> str | None:
    """Why a new file cannot be created in the existing ``directory`` (``None`` if it can)."""
    probe = directory / f".llm-branching-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")  # pragma: no cover - the root always exists


def check_output_file(flag: str, path, *, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse ``path`` as an output file for ``flag`` unless the command can write it.

    Parameters
    ----------
    flag : str
        The command-line flag, e.g. ``"--out"``, used in the message.
    path : path-like
        The file the command will write (created or replaced).
    suffixes : tuple of str, optional
        Accepted file-name endings (lower case, with the dot).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        ``"{flag} {path!r}: <reason>"`` when the suffix is not accepted, ``path`` is a
        directory, its parent is missing or not a directory, or a file cannot be created
        or replaced there.
    """
    p = Path(path).expanduser()
    shown = f"{flag} {os.fspath(path)!r}"
    if p.is_dir():
        raise ValueError(f"{shown}: is a directory; give a file name")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise ValueError(f"{shown}: the file name must end in one of {', '.join(suffixes)}")
    parent = p.parent
    ancestor = _existing_ancestor(parent)
    if not ancestor.is_dir():
        raise ValueError(f"{shown}: {os.fspath(ancestor)!r} is a file, not a directory")
    if ancestor != parent:
        raise ValueError(f"{shown}: the directory {os.fspath(parent)!r} does not exist")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise ValueError(f"{shown}: the existing file is not writable")
        return p
    reason = _probe(parent)
    if reason is not None:
        raise ValueError(f"{shown}: cannot create a file there ({reason})")
    return p


def check_output_dir(flag: str, path) -> Path:
    """Refuse ``path`` as an output directory for ``flag`` unless it is (or can become) one.

    An existing directory must accept new files; a missing one must be creatable, i.e. its
    nearest existing ancestor must be a directory that accepts new entries.  Nothing is
    created.

    Raises
    ------
    ValueError
        ``"{flag} {path!r}: <reason>"``.
    """
    p = Path(path).expanduser()
    shown = f"{flag} {os.fspath(path)!r}"
    ancestor = _existing_ancestor(p)
    if not ancestor.is_dir():
        what = "is a file" if ancestor == p else f"is inside the file {os.fspath(ancestor)!r}"
        raise ValueError(f"{shown}: {what}; give a directory")
    reason = _probe(ancestor)
    if reason is not None:
        where = "in it" if ancestor == p else f"in {os.fspath(ancestor)!r}"
        raise ValueError(f"{shown}: cannot create files {where} ({reason})")
    return p


def check_plot_file(flag: str, path) -> Path:
    """:func:`check_output_file` for a figure: the suffix must be a format matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = tuple(sorted("." + ext for ext in FigureCanvasBase.get_supported_filetypes()))
    return check_output_file(flag, path, suffixes=formats)

