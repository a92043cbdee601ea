r"""Small autoregressive models whose every output sequence can be enumerated.

They are the exactly solvable test bed of :mod:`branching.transitions`: the Monte Carlo
indicators computed from samples can be compared with the exact dissimilarities obtained
by enumerating all :math:`V^N` sequences.

The model
---------
:class:`MarkovToy` generates :math:`N` tokens from a vocabulary of :math:`V` tokens; the
logits of token :math:`x_t` depend on the previous token (a start symbol, index ``V``, for
the first one) and on a scalar control parameter :math:`\theta`,

.. math::  P(x\mid\theta)=\prod_{t=1}^{N}\mathrm{softmax}\bigl(z_\theta(x_{t-1})\bigr)_{x_t},

with one of three controls, ``A`` the ``base`` and ``C`` the ``tilt`` logit tables:

=================  =============================================  ============================
control            logits :math:`z_\theta`                        :math:`\partial_\theta z`
=================  =============================================  ============================
``"temperature"``  :math:`A/\theta`, :math:`\theta>0`             :math:`-A/\theta^2`
``"tilt"``         :math:`A+\theta C`                             :math:`C`
``"switch"``       :math:`A+\tanh(\kappa(\theta-\theta_c))\,C`    :math:`\kappa\,\mathrm{sech}^2(\kappa(\theta-\theta_c))\,C`
=================  =============================================  ============================

``"switch"`` concentrates the change of the output law near :math:`\theta_c` (a sharp
crossover of width :math:`1/\kappa`), which gives the transition indicators a peak.

Score and Fisher information
----------------------------
The score is :math:`\partial_\theta\log P(x\mid\theta)=\sum_t\bigl(\partial_\theta
z(x_{t-1})_{x_t}-\mathbb E_{v\sim q_t}[\partial_\theta z(x_{t-1})_v]\bigr)` with
:math:`q_t=\mathrm{softmax}(z_\theta(x_{t-1}))`.  Its terms are martingale differences,
so the Fisher information is

.. math::  \mathcal F(\theta)=\sum_{t=1}^{N}\sum_u \pi_{t-1}(u)\,
           \mathrm{Var}_{v\sim q(u)}\bigl[\partial_\theta z(u)_v\bigr],

with :math:`\pi_{t-1}` the law of the token preceding position :math:`t` (propagated
through the chain, no enumeration) -- :meth:`MarkovToy.fisher_information`.

Long outputs
------------
:class:`PaddedToy` appends to a core toy's output a long block drawn from a second chain
whose law does not depend on :math:`\theta`.  Then
:math:`\log P(x,y\mid\theta)=\log P_{\rm core}(x\mid\theta)+\log P_{\rm pad}(y)`: the
padding adds the same amount to a sample's log-probability at every grid point, so every
likelihood ratio, and hence every window dissimilarity, equals the core toy's exactly,
while the log-probabilities themselves are of order :math:`-10^4`.  It tests that nothing
underflows and nothing is dropped.

Truncated sampling
------------------
``sample(..., top_k=k)`` draws every token from the ``k`` most probable ones only
(renormalised), while :meth:`MarkovToy.log_prob` always scores with the full softmax --
the mismatch that biases an indicator when a generator truncates by default.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from . import validation as check
from .seeding import seed_sequence

__all__ = ["MarkovToy", "PaddedToy", "CONTROLS"]

log = logging.getLogger(__name__)

CONTROLS = ("temperature", "tilt", "switch")
_MAX_ENUMERATION = 2_000_000


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shift = z - z.max(axis=-1, keepdims=True)
    return shift - np.log(np.exp(shift).sum(axis=-1, keepdims=True))


def _as_theta(theta) -> tuple[np.ndarray, bool]:
    """Validated 1-d float array of parameters and whether the input was a scalar."""
    scalar = np.ndim(theta) == 0
    if scalar:
        theta = check.real("theta", theta)
    values = check.array("theta", np.atleast_1d(theta), ndim=1)
    return values, scalar


def _truncate(probs: np.ndarray, top_k: int | None) -> np.ndarray:
    """Keep the ``top_k`` largest entries of every row (ties by index), renormalised."""
    if top_k is None or top_k >= probs.shape[-1]:
        return probs
    order = np.argsort(-probs, axis=-1, kind="stable")
    keep = np.zeros_like(probs, dtype=bool)
    np.put_along_axis(keep, order[..., :top_k], True, axis=-1)
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


def _sample_chain(probs: np.ndarray, N: int, S: int, gen: np.random.Generator) -> np.ndarray:
    """Ancestral sampling of ``S`` paths of length ``N`` from a (V+1, V) transition table.

    Inverse-CDF draws: token = number of cumulative probabilities <= u * row total, the
    first token whose cumulative probability exceeds the uniform; tokens of probability
    zero are never drawn.
    """
    V = probs.shape[1]
    cdf = np.cumsum(probs, axis=1)
    tokens = np.empty((S, N), dtype=np.intp)
    prev = np.full(S, V, dtype=np.intp)
    for t in range(N):
        rows = cdf[prev]
        u = gen.random(S) * rows[:, -1]
        tokens[:, t] = np.minimum((rows <= u[:, None]).sum(axis=1), V - 1)
        prev = tokens[:, t]
    return tokens


class _SequenceModel:
    """Builds the estimator's input arrays from ``sample`` and ``log_prob``."""

    def logp_banded(
        self, grid, S: int, W: int, *, rng=None, top_k: int | None = None,
        return_tokens: bool = False,
    ):
        r"""Sample ``S`` outputs at every grid point and score them at the neighbours.

        Parameters
        ----------
        grid : array of shape (K,)
            Control-parameter values.
        S : int
            Samples per grid point, ``S >= 1``.
        W : int
            Half-width of the band, ``W >= 0``.
        rng : None, int, SeedSequence or Generator
            Randomness; one child generator is spawned per grid point, so the samples at
            grid point ``k`` do not depend on the rest of the grid's length.
        top_k : int, optional
            Sample from the ``top_k`` most probable tokens only (scoring stays exact).
        return_tokens : bool
            Also return the sampled tokens, shape (K, S, N).

        Returns
        -------
        logp : ndarray of shape (K, S, 2W+1)
            ``logp[k, s, W + d] = log P(x^{(k,s)} | grid[k+d])``; NaN where ``k+d`` is
            outside the grid.
        tokens : ndarray of shape (K, S, N), only if ``return_tokens``
        """
        W = check.integer("W", W, low=0)
        return self._scored(grid, S, W, rng, top_k, return_tokens)

    def logp_full(self, grid, S: int, *, rng=None, top_k: int | None = None,
                  return_tokens: bool = False):
        """As :meth:`logp_banded` but scored at every grid point: shape (K, S, K),
        ``logp[k, s, k'] = log P(x^{(k,s)} | grid[k'])``."""
        return self._scored(grid, S, None, rng, top_k, return_tokens)

    def _scored(self, grid, S, W, rng, top_k, return_tokens):
        grid = check.array("grid", grid, ndim=1)
        S = check.integer("S", S, low=1)
        K = grid.size
        children = np.random.default_rng(seed_sequence(rng)).spawn(K)
        width = K if W is None else 2 * W + 1
        out = np.full((K, S, width), np.nan)
        tokens = np.empty((K, S, self.N), dtype=np.intp)
        for k in range(K):
            tokens[k] = self.sample(grid[k], S, rng=children[k], top_k=top_k)
            if W is None:
                out[k] = self.log_prob(tokens[k], grid)
            else:
                lo, hi = max(0, k - W), min(K, k + W + 1)
                out[k, :, lo - k + W:hi - k + W] = self.log_prob(tokens[k], grid[lo:hi])
        return (out, tokens) if return_tokens else out


@dataclass(frozen=True, eq=False, repr=False)
class MarkovToy(_SequenceModel):
    r"""A first-order Markov chain over ``V`` tokens with parameter-dependent logits.

    Parameters
    ----------
    base : array of shape (V+1, V)
        Logits ``A[u, v]`` of token ``v`` after token ``u``; row ``V`` is the start row
        (logits of the first token).  ``V >= 2``.
    N : int
        Output length, ``N >= 1``.
    control : {"temperature", "tilt", "switch"}
        How the parameter enters the logits (module docstring).
    tilt : array of shape (V+1, V), optional
        The direction ``C``; required for ``"tilt"`` and ``"switch"``, unused otherwise.
    center, sharpness : float
        :math:`\theta_c` and :math:`\kappa > 0` of the ``"switch"`` control.

    Notes
    -----
    Every sequence has positive probability for every admissible :math:`\theta` (finite
    logits), so the log-probabilities are finite.

    Examples
    --------
    >>> import numpy as np
    >>> from branching.toys import MarkovToy
    >>> toy = MarkovToy.random(V=3, N=2, rng=0, control="tilt")
    >>> table = toy.log_prob_table([0.0, 0.5])          # every sequence, both thetas
    >>> table.shape, np.allclose(np.exp(table).sum(axis=1), 1.0)
    ((2, 9), True)
    """

    base: np.ndarray
    N: int
    control: str = "temperature"
    tilt: np.ndarray | None = None
    center: float = 0.0
    sharpness: float = 1.0
    _shape: tuple = field(init=False, repr=False)

    def __post_init__(self):
        set_ = object.__setattr__
        base = check.array("base", self.base, ndim=2)
        V = base.shape[1]
        if V < 2 or base.shape != (V + 1, V):
            raise ValueError(f"base must have shape (V+1, V) with V >= 2, got {base.shape}")
        set_(self, "N", check.integer("N", self.N, low=1))
        check.choice("control", self.control, CONTROLS)
        if self.control == "temperature":
            tilt = None
        else:
            if self.tilt is None:
                raise ValueError(f"tilt (shape {(V + 1, V)}) is required for control={self.control!r}")
            tilt = check.array("tilt", self.tilt, shape=(V + 1, V))
            tilt.setflags(write=False)
        base.setflags(write=False)
        set_(self, "base", base)
        set_(self, "tilt", tilt)
        set_(self, "center", check.real("center", self.center))
        set_(self, "sharpness", check.real("sharpness", self.sharpness, low=0.0, low_open=True))
        set_(self, "_shape", (V + 1, V))

    @classmethod
    def random(
        cls, V: int, N: int, *, rng=None, control: str = "tilt", scale: float = 1.0,
        center: float = 0.0, sharpness: float = 1.0,
    ) -> "MarkovToy":
        """A toy with independent standard-normal logits times ``scale`` (base and tilt)."""
        V = check.integer("V", V, low=2)
        scale = check.real("scale", scale, low=0.0)
        gen = np.random.default_rng(seed_sequence(rng))
        base = scale * gen.standard_normal((V + 1, V))
        tilt = scale * gen.standard_normal((V + 1, V))
        return cls(base=base, N=N, control=control, tilt=None if control == "temperature" else tilt,
                   center=center, sharpness=sharpness)

    @property
    def V(self) -> int:
        """Vocabulary size."""
        return self._shape[1]

    def __repr__(self):
        extra = ""
        if self.control == "switch":
            extra = f", center={self.center:g}, sharpness={self.sharpness:g}"
        return f"MarkovToy(V={self.V}, N={self.N}, control={self.control!r}{extra})"

    # ------------------------------------------------------------------ the law
    def logits(self, theta) -> np.ndarray:
        """Logit tables ``z_theta``: shape (V+1, V) for scalar theta, else (m, V+1, V)."""
        values, scalar = self._theta(theta)
        t = values[:, None, None]
        if self.control == "temperature":
            z = self.base / t
        elif self.control == "tilt":
            z = self.base + t * self.tilt
        else:
            z = self.base + np.tanh(self.sharpness * (t - self.center)) * self.tilt
        return z[0] if scalar else z

    def logit_derivative(self, theta) -> np.ndarray:
        r""":math:`\partial_\theta z_\theta`, shaped like :meth:`logits`."""
        values, scalar = self._theta(theta)
        t = values[:, None, None]
        if self.control == "temperature":
            dz = -self.base / t**2
        elif self.control == "tilt":
            dz = np.broadcast_to(self.tilt, (values.size, *self._shape)).copy()
        else:
            dz = self.sharpness / np.cosh(self.sharpness * (t - self.center)) ** 2 * self.tilt
        return dz[0] if scalar else dz

    def log_transition(self, theta) -> np.ndarray:
        """Log transition tables ``log softmax(z_theta)``, shaped like :meth:`logits`."""
        return _log_softmax(self.logits(theta))

    def _theta(self, theta):
        values, scalar = _as_theta(theta)
        if self.control == "temperature" and np.any(values <= 0):
            raise ValueError(f"theta (a temperature) must be > 0, got {values[values <= 0][0]!r}")
        return values, scalar

    # ------------------------------------------------------------------ sampling and scoring
    def sample(self, theta, S: int, *, rng=None, top_k: int | None = None) -> np.ndarray:
        """``S`` exact ancestral samples at ``theta``: int array of shape (S, N).

        With ``top_k`` every token is drawn from the ``top_k`` most probable tokens of its
        conditional law, renormalised (a deliberately *inexact* sampler).
        """
        theta = check.real("theta", theta)
        S = check.integer("S", S, low=1)
        if top_k is not None:
            top_k = check.integer("top_k", top_k, low=1, high=self.V)
        probs = _truncate(np.exp(self.log_transition(theta)), top_k)
        return _sample_chain(probs, self.N, S, np.random.default_rng(seed_sequence(rng)))

    def _tokens(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.N:
            raise ValueError(f"tokens must have shape (S, {self.N}), got {tokens.shape}")
        if not np.issubdtype(tokens.dtype, np.integer) or tokens.size and (
            tokens.min() < 0 or tokens.max() >= self.V
        ):
            raise ValueError(f"tokens must be integers in [0, {self.V - 1}]")
        return tokens.astype(np.intp, copy=False)

    def _previous(self, tokens: np.ndarray) -> np.ndarray:
        start = np.full((tokens.shape[0], 1), self.V, dtype=np.intp)
        return np.concatenate([start, tokens[:, :-1]], axis=1)

    def log_prob(self, tokens, theta) -> np.ndarray:
        r"""Teacher-forced :math:`\log P(x\mid\theta)` of each row of ``tokens``.

        Returns shape (S,) for scalar ``theta`` and (S, m) for ``theta`` of shape (m,).
        """
        tokens = self._tokens(tokens)
        values, scalar = self._theta(theta)
        table = self.log_transition(values)  # (m, V+1, V)
        out = table[:, self._previous(tokens), tokens].sum(axis=-1).T
        return out[:, 0] if scalar else out

    def score(self, tokens, theta) -> np.ndarray:
        r""":math:`\partial_\theta\log P(x\mid\theta)` of each row of ``tokens`` (scalar
        ``theta``), shape (S,)."""
        tokens = self._tokens(tokens)
        theta = check.real("theta", theta)
        q = np.exp(self.log_transition(theta))
        dz = self.logit_derivative(theta)
        centred = dz - (q * dz).sum(axis=1, keepdims=True)
        return centred[self._previous(tokens), tokens].sum(axis=1)

    # ------------------------------------------------------------------ exact quantities
    def enumerate_all(self) -> np.ndarray:
        """Every output sequence, shape (V**N, N), in lexicographic order."""
        count = self.V**self.N
        if count > _MAX_ENUMERATION:
            raise ValueError(
                f"V**N must be at most {_MAX_ENUMERATION} to enumerate, got {self.V}**{self.N} = {count}"
            )
        return np.array(list(itertools.product(range(self.V), repeat=self.N)), dtype=np.intp)

    def log_prob_table(self, grid) -> np.ndarray:
        """``table[k, x] = log P(x | grid[k])`` over every sequence x of :meth:`enumerate_all`."""
        grid = check.array("grid", grid, ndim=1)
        return self.log_prob(self.enumerate_all(), grid).T

    def fisher_information(self, theta) -> float:
        r"""Exact :math:`\mathcal F(\theta)` by the martingale formula (module docstring).

        Propagates the marginal law of the previous token through the chain instead of
        enumerating sequences, so it is an independent route to
        :math:`\sum_x P(x\mid\theta)\,(\partial_\theta\log P(x\mid\theta))^2`.
        """
        theta = check.real("theta", theta)
        q = np.exp(self.log_transition(theta))
        dz = self.logit_derivative(theta)
        mean = (q * dz).sum(axis=1)
        var = (q * (dz - mean[:, None]) ** 2).sum(axis=1)  # per previous token
        law = np.zeros(self.V + 1)
        law[self.V] = 1.0
        total = 0.0
        for _ in range(self.N):
            total += law @ var
            law = np.append(law @ q, 0.0)
        return float(total)


@dataclass(frozen=True, eq=False, repr=False)
class PaddedToy(_SequenceModel):
    r"""A core toy followed by a long :math:`\theta`-independent padding block.

    Parameters
    ----------
    core : MarkovToy
        The part whose law depends on :math:`\theta`.
    padding : MarkovToy
        The chain generating the padding tokens, always evaluated at ``padding_theta``.
    padding_theta : float
        Fixed parameter of the padding chain.

    Notes
    -----
    Outputs are the concatenation ``(x, y)``, ``N = core.N + padding.N``; the padding tokens
    take values in the padding chain's vocabulary.  Since
    :math:`\log P(x,y\mid\theta)=\log P_{\rm core}(x\mid\theta)+\log P_{\rm pad}(y)`, every
    window dissimilarity equals the core toy's exactly (module docstring).
    """

    core: MarkovToy
    padding: MarkovToy
    padding_theta: float

    def __post_init__(self):
        for name in ("core", "padding"):
            if not isinstance(getattr(self, name), MarkovToy):
                raise ValueError(f"{name} must be a MarkovToy, got {type(getattr(self, name)).__name__}")
        object.__setattr__(self, "padding_theta", check.real("padding_theta", self.padding_theta))
        self.padding.log_transition(self.padding_theta)  # validates the parameter

    @property
    def N(self) -> int:
        """Total output length."""
        return self.core.N + self.padding.N

    def __repr__(self):
        return (f"PaddedToy(core={self.core!r}, padding={self.padding!r}, "
                f"padding_theta={self.padding_theta:g})")

    def sample(self, theta, S: int, *, rng=None, top_k: int | None = None) -> np.ndarray:
        """Samples of shape (S, N): core at ``theta``, then padding (``top_k`` applies to the core)."""
        core_rng, pad_rng = np.random.default_rng(seed_sequence(rng)).spawn(2)
        head = self.core.sample(theta, S, rng=core_rng, top_k=top_k)
        tail = self.padding.sample(self.padding_theta, S, rng=pad_rng)
        return np.concatenate([head, tail], axis=1)

    def log_prob(self, tokens, theta) -> np.ndarray:
        """:math:`\\log P_{\\rm core}(x\\mid\\theta)+\\log P_{\\rm pad}(y)`, shaped as
        :meth:`MarkovToy.log_prob`."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.N:
            raise ValueError(f"tokens must have shape (S, {self.N}), got {tokens.shape}")
        head = self.core.log_prob(tokens[:, : self.core.N], theta)
        tail = self.padding.log_prob(tokens[:, self.core.N:], self.padding_theta)
        return head + (tail if np.ndim(theta) == 0 else tail[:, None])
