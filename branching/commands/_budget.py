"""Memory and time budgets of a subcommand, checked before the work starts.

A command estimates the memory its request needs and the work it implies; a request that
cannot fit in the memory available is refused with the estimate in the message, and one
that will merely take long is announced on stderr with an estimate of its duration.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

#: Requests estimated to take longer than this many seconds are announced.
ANNOUNCE_SECONDS = 10.0


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``None`` when it cannot be read)."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def show_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``'1.5 GiB'``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = 0 if n < 1024 else min(int(math.log(n, 1024)), len(units) - 1)
    return f"{n / 1024 ** power:.3g} {units[power]}"


def show_seconds(seconds: float) -> str:
    """A duration in the largest sensible unit, e.g. ``'3.2 hours'``."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.2g} {unit}"
    return f"{seconds:.2g} s"


def check_memory(what: str, nbytes: float, *, available: int | None = None) -> None:
    """Refuse a request whose estimated memory exceeds what is available.

    Raises
    ------
    ValueError
        ``"{what} needs about <estimate> of memory, more than the <available> available"``.
    """
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise ValueError(f"{what} needs about {show_bytes(nbytes)} of memory, more than the "
                         f"{show_bytes(available)} available; make the request smaller")


def announce(what: str, seconds: float) -> None:
    """Print an estimate of the duration to stderr when it exceeds ``ANNOUNCE_SECONDS``."""
    if math.isfinite(seconds) and seconds > ANNOUNCE_SECONDS:
        print(f"{what}: estimated time about {show_seconds(seconds)} (Ctrl-C stops it)",
              file=sys.stderr)


def count(text: str) -> int:
    """An argparse type for a count: an integer, also written ``1e6`` or ``1_000_000``."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)
