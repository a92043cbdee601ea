"""The number of CPUs this process may run on (the default worker and thread count).

Examples
--------
>>> from branching.cpus import available_cpus
>>> available_cpus() >= 1
True
"""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """CPUs available to this process, at least 1.

    Returns
    -------
    int
        The size of the process's CPU affinity set where the platform reports it (Linux;
        it honours ``taskset`` and container CPU sets), else :func:`os.cpu_count`.

    Examples
    --------
    >>> import os
    >>> n = available_cpus()
    >>> isinstance(n, int) and 1 <= n <= (os.cpu_count() or n)
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)
