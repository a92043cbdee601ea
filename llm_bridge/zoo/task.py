r"""The zoo's task: running sums modulo M, with disjoint train / measure / test inputs.

An input is a sequence :math:`x = (x_1, \dots, x_T)` of increments in
:math:`\{0, \dots, K-1\}` (``K <= M``, default ``M``); its answer is the sequence of prefix
sums

.. math::  y_t = (x_1 + \dots + x_t) \bmod M = (y_{t-1} + x_t) \bmod M, \qquad y_0 = 0 .

A model reads ``x`` as its prompt and writes ``y`` after it, one token per step, so the
vocabulary of the model is exactly the task's ``M`` tokens and the list decoder's
branching factor is the theory's :math:`M`.

Why the answer is unique: :math:`y` is a function of :math:`x` (each :math:`y_t` is fixed by
:math:`y_{t-1}` and :math:`x_t`), so for every input exactly one output of :math:`T` tokens is
correct, and every other output differs from it at some first position.

Why the difficulty grows smoothly with :math:`T`: every output step is the same sub-problem
-- add the previous output token and the aligned input token modulo :math:`M`, a table of
:math:`MK` entries reached by attending :math:`T-1` positions back -- so a model that gets a
step right with probability :math:`1-p` gets the whole answer right with probability about
:math:`(1-p)^T`, and an erroneous prefix (a wrong :math:`y_{t-1}`) has no correct
continuation: errors are irreversible, as in the list-decoder model.  A small transformer
learns the table only partially; the fraction it learns grows with its size and training.

Splits: an input belongs to split ``train``, ``measure`` or ``test`` according to a hash of
its tokens (a fixed random polynomial hash modulo the prime :math:`2^{31}-1`, reduced modulo
10: residues 0-7 are ``train``, 8 is ``measure``, 9 is ``test``).  The splits are therefore
disjoint sets of inputs, fixed by the task alone; inputs of a split are drawn uniformly
from it by rejection, on the fly, from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from branching import validation as check

__all__ = ["SPLITS", "RunningSumTask"]

SPLITS = ("train", "measure", "test")
_RESIDUES = {"train": range(0, 8), "measure": range(8, 9), "test": range(9, 10)}
_PRIME = (1 << 31) - 1
_ENUMERATE_BELOW = 1 << 16  # input spaces up to this size are listed, not rejection-sampled
_HASH_SEED = 0x5EED_2F0C


@dataclass(frozen=True)
class RunningSumTask:
    r"""Running sums modulo ``M`` of ``T`` input tokens (see the module notes).

    Parameters
    ----------
    M : int
        Vocabulary size, ``2 <= M <= 65536`` (the zoo uses 32 to 1024).
    T : int
        Output length (and input length), ``T >= 1``.
    K : int, optional
        Number of distinct increments, ``1 <= K <= M`` (default ``M``): the difficulty knob
        (the model must learn an ``M x K`` addition table).

    Examples
    --------
    >>> task = RunningSumTask(M=10, T=4)
    >>> task.answers(np.array([[3, 9, 5, 1]])).tolist()
    [[3, 2, 7, 8]]
    >>> x = task.inputs("measure", 3, rng=0)
    >>> x.shape, set(task.split_of(x).tolist())
    ((3, 4), {'measure'})
    """

    M: int
    T: int
    K: int | None = None

    def __post_init__(self):
        M = check.integer("M", self.M, low=2, high=1 << 16)
        object.__setattr__(self, "M", M)
        object.__setattr__(self, "T", check.integer("T", self.T, low=1))
        K = M if self.K is None else check.integer("K", self.K, low=1, high=M)
        object.__setattr__(self, "K", K)

    @property
    def name(self) -> str:
        """Short identifier, e.g. ``"running_sum(M=32,T=4)"``."""
        return f"running_sum(M={self.M},T={self.T},K={self.K})"

    @property
    def context_length(self) -> int:
        """Prompt plus answer: ``2 T`` positions."""
        return 2 * self.T

    # ------------------------------------------------------------------ answers
    def _check_inputs(self, inputs) -> np.ndarray:
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.T or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(
                f"inputs must be an integer array of shape (n, T={self.T}), got "
                f"{x.dtype} array of shape {x.shape}"
            )
        if x.size and (x.min() < 0 or x.max() >= self.K):
            raise ValueError(
                f"inputs must hold tokens in [0, K-1 = {self.K - 1}], got values in "
                f"[{x.min()}, {x.max()}]"
            )
        return x.astype(np.int64)

    def answers(self, inputs) -> np.ndarray:
        """The unique correct outputs, ``(x_1 + ... + x_t) mod M``, shape ``(n, T)``."""
        x = self._check_inputs(inputs)
        return np.cumsum(x, axis=1) % self.M

    # ------------------------------------------------------------------ splits
    def _hash(self, x: np.ndarray) -> np.ndarray:
        weights = np.random.default_rng([_HASH_SEED, self.M, self.T]).integers(
            1, 1 << 20, size=self.T, dtype=np.int64
        )
        # Horner's rule: acc < 2^31, multiplier < 2^20, x * w < 2^16 * 2^20, so no overflow.
        acc = np.zeros(x.shape[0], dtype=np.int64)
        for t in range(self.T):
            acc = (acc * 1_000_003 + x[:, t] * weights[t] + 1) % _PRIME
        return acc % 10

    def split_of(self, inputs) -> np.ndarray:
        """Name of the split of each input (an array of ``"train"``/``"measure"``/``"test"``)."""
        residue = self._hash(self._check_inputs(inputs))
        names = np.array(SPLITS)
        return names[np.where(residue < 8, 0, residue - 7)]

    def inputs(self, split: str, n: int, *, rng=None) -> np.ndarray:
        r"""``n`` inputs drawn uniformly from ``split``, shape ``(n, T)``, dtype int64.

        Parameters
        ----------
        split : {"train", "measure", "test"}
        n : int
            Number of inputs, ``n >= 0``.
        rng : None, int, SeedSequence or Generator
            Source of randomness.

        Notes
        -----
        Uniform draws from :math:`\{0..M-1\}^T` are kept when their hash falls in the
        split (rejection), so the kept inputs are uniform on the split.  Draws repeat
        inputs only by chance (with probability about :math:`n^2 / (2 M^T)`).
        """
        check.choice("split", split, SPLITS)
        n = check.integer("n", n, low=0)
        gen = np.random.default_rng(rng)
        wanted = _RESIDUES[split]
        if self.K ** self.T <= _ENUMERATE_BELOW:
            every = np.stack(np.unravel_index(np.arange(self.K ** self.T), (self.K,) * self.T), 1)
            members = every[np.isin(self._hash(every), list(wanted))].astype(np.int64)
            if members.shape[0] == 0 and n > 0:
                raise ValueError(
                    f"split {split!r} holds no input for K={self.K}, T={self.T} "
                    f"({self.K ** self.T} inputs in all); use a larger K or T"
                )
            return members[gen.integers(0, members.shape[0], size=n)] if n else members[:0]
        out = np.empty((0, self.T), dtype=np.int64)
        while out.shape[0] < n:
            batch = max(16, int(1.3 * (n - out.shape[0]) * 10 / len(wanted)) + 8)
            x = gen.integers(0, self.K, size=(batch, self.T), dtype=np.int64)
            residue = self._hash(x)
            keep = (residue >= wanted.start) & (residue < wanted.stop)
            out = np.concatenate([out, x[keep]])
        return out[:n]
