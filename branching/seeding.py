r"""Randomness: one rule from ``rng`` to a seed, and one record of the seed a result used.

Every public function of the package that draws random numbers takes a keyword-only
``rng`` -- ``None``, a non-negative int, a :class:`numpy.random.SeedSequence` or a
:class:`numpy.random.Generator` -- and turns it into a :class:`~numpy.random.SeedSequence`
with :func:`seed_sequence`, once, at its entry.  Work is then split by child seeds (explicit
spawn keys or per-replicate keys), never by sharing a generator, so results depend on the
seed alone.  The result records that seed as a :class:`SeedRecord`, whose
:meth:`SeedRecord.seed_sequence` reproduces it.

Examples
--------
>>> import numpy as np
>>> from branching.seeding import SeedRecord, seed_sequence
>>> seq = seed_sequence(42)
>>> record = SeedRecord.from_seed_sequence(seq)
>>> record
SeedRecord(entropy=42, spawn_key=())
>>> record.to_dict()
{'entropy': 42, 'spawn_key': []}
>>> SeedRecord.from_dict(record.to_dict()) == record
True
>>> bool(np.array_equal(record.seed_sequence().generate_state(2), seq.generate_state(2)))
True
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .validation import _show

__all__ = ["seed_sequence", "SeedRecord", "GENERATOR_WORDS"]

#: Number of 64-bit words drawn from a :class:`~numpy.random.Generator` passed as ``rng``.
GENERATOR_WORDS = 4
_POOL_SIZE = 4  # numpy's default SeedSequence pool size, the only one a record reproduces


def seed_sequence(rng=None) -> np.random.SeedSequence:
    """Turn ``rng`` into a :class:`numpy.random.SeedSequence` by one rule.

    Parameters
    ----------
    rng : None, int, SeedSequence, SeedRecord or Generator
        * ``None``: fresh entropy from the operating system;
        * a :class:`SeedRecord` (a result's recorded seed): its SeedSequence, so that
          passing ``result.seed`` back as ``rng`` reproduces the result;
        * a non-negative int ``s``: ``SeedSequence(s)``;
        * a SeedSequence: a fresh copy with the same entropy and spawn key (so that
          children derived from it do not depend on what was spawned from the caller's
          object before, and the recorded seed reproduces the result);
        * a Generator: it is *consumed*: :data:`GENERATOR_WORDS` (four) 64-bit words
          ``rng.integers(0, 2**64, size=4, dtype=uint64)`` are drawn from it and become
          the entropy of a new SeedSequence.  Two calls with the same Generator therefore
          get different seeds, as successive draws from one generator should, and each
          result still records a seed that reproduces it without the Generator.

    Returns
    -------
    numpy.random.SeedSequence

    Raises
    ------
    ValueError
        If ``rng`` is of another type, a negative int, a bool, or a SeedSequence with a
        non-default pool size (which a :class:`SeedRecord` could not reproduce).

    Notes
    -----
    The package never uses numpy's global random state.  Seeding a generator with
    :func:`numpy.random.default_rng` of the returned sequence is how a function draws;
    splitting work uses children ``SeedSequence(entropy, spawn_key=key + (i,))``.

    Examples
    --------
    >>> import numpy as np
    >>> from branching.seeding import seed_sequence
    >>> seed_sequence(7).entropy
    7
    >>> gen = np.random.default_rng(0)
    >>> a, b = seed_sequence(gen), seed_sequence(gen)
    >>> len(a.entropy), a.entropy == b.entropy
    (4, False)
    >>> seed_sequence(-1)
    Traceback (most recent call last):
    ...
    ValueError: rng must be None, a non-negative int, a numpy.random.SeedSequence, a SeedRecord or a numpy.random.Generator, got -1
    """
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.SeedSequence):
        if rng.pool_size != _POOL_SIZE:
            raise ValueError(
                f"rng must be a SeedSequence with the default pool_size={_POOL_SIZE}, "
                f"got pool_size={rng.pool_size}"
            )
        return np.random.SeedSequence(rng.entropy, spawn_key=rng.spawn_key)
    if isinstance(rng, SeedRecord):
        return rng.seed_sequence()
    if isinstance(rng, np.random.Generator):
        words = rng.integers(0, 2**64, size=GENERATOR_WORDS, dtype=np.uint64)
        return np.random.SeedSequence([int(w) for w in words])
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)) and rng >= 0:
        return np.random.SeedSequence(int(rng))
    raise ValueError(
        "rng must be None, a non-negative int, a numpy.random.SeedSequence, a SeedRecord or "
        f"a numpy.random.Generator, got {_show(rng)}"
    )


def _non_negative_ints(name: str, values) -> tuple[int, ...]:
    out = []
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
                or value < 0:
            raise ValueError(f"{name} must hold non-negative integers, got {_show(value)}")
        out.append(int(value))
    return tuple(out)


@dataclass(frozen=True)
class SeedRecord:
    """The seed a result was produced with: entropy and spawn key of a SeedSequence.

    Attributes
    ----------
    entropy : int or tuple of int
        :attr:`numpy.random.SeedSequence.entropy` (non-negative).
    spawn_key : tuple of int
        :attr:`numpy.random.SeedSequence.spawn_key`.

    Examples
    --------
    >>> from branching.seeding import SeedRecord
    >>> SeedRecord(3, (1, 0)).seed_sequence().spawn_key
    (1, 0)
    >>> SeedRecord.from_dict({"entropy": [1, 2], "spawn_key": [5]})
    SeedRecord(entropy=(1, 2), spawn_key=(5,))
    """

    entropy: int | tuple[int, ...]
    spawn_key: tuple[int, ...] = ()

    def __post_init__(self):
        entropy = self.entropy
        if isinstance(entropy, (list, tuple, np.ndarray)):
            if len(entropy) == 0:
                raise ValueError("entropy must be a non-negative int or a non-empty sequence "
                                 "of them, got an empty sequence")
            entropy = _non_negative_ints("entropy", entropy)
        else:
            entropy = _non_negative_ints("entropy", [entropy])[0]
        if isinstance(self.spawn_key, (str, bytes)) or not hasattr(self.spawn_key, "__iter__"):
            raise ValueError(f"spawn_key must be a sequence of non-negative integers, "
                             f"got {_show(self.spawn_key)}")
        object.__setattr__(self, "entropy", entropy)
        object.__setattr__(self, "spawn_key", _non_negative_ints("spawn_key", self.spawn_key))

    @classmethod
    def from_seed_sequence(cls, seq: np.random.SeedSequence) -> SeedRecord:
        """The record of ``seq`` (its entropy and spawn key)."""
        if not isinstance(seq, np.random.SeedSequence):
            raise ValueError(f"seq must be a numpy.random.SeedSequence, got {_show(seq)}")
        entropy = seq.entropy
        if np.ndim(entropy) > 0:
            entropy = tuple(int(e) for e in entropy)
        return cls(entropy, tuple(seq.spawn_key))

    @classmethod
    def from_dict(cls, data: dict) -> SeedRecord:
        """Inverse of :meth:`to_dict`; a missing ``spawn_key`` means the root ``()``."""
        if not isinstance(data, dict) or "entropy" not in data:
            raise ValueError(f"data must be a dict with an 'entropy' entry, got {_show(data)}")
        return cls(data["entropy"], tuple(data.get("spawn_key", ())))

    def to_dict(self) -> dict:
        """JSON-ready ``{"entropy": int or list, "spawn_key": list}``."""
        entropy = list(self.entropy) if isinstance(self.entropy, tuple) else self.entropy
        return {"entropy": entropy, "spawn_key": list(self.spawn_key)}

    def seed_sequence(self) -> np.random.SeedSequence:
        """A fresh :class:`~numpy.random.SeedSequence` with this entropy and spawn key."""
        return np.random.SeedSequence(self.entropy, spawn_key=self.spawn_key)
