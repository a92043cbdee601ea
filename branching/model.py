r"""The list-decoder branching model.

A language model over a vocabulary of :math:`M` tokens is a random sequence-to-sequence
function; a list decoder keeps every candidate whose next token is eligible.  On the
oracle (correct) prefix the correct token is eligible (except with miss probability
:math:`\delta`) and each of the :math:`M-1` wrong tokens is falsely eligible with
probability :math:`\varepsilon_o`; on an erroneous prefix each of the :math:`M` tokens is
falsely eligible with probability :math:`\varepsilon`.  The number :math:`Z_t` of erroneous
candidates after :math:`t` steps is a Galton-Watson process with immigration,

.. math::  Z_{t+1} = \sum_{i=1}^{Z_t} \xi_{t,i} + I_t, \qquad Z_0 = 0,

with offspring :math:`\xi\sim\mathrm{Bin}(M,\varepsilon)` (mean :math:`R_0 = M\varepsilon`) and
immigrants :math:`I\sim\mathrm{Bin}(M-1,\varepsilon_o)` (mean :math:`\lambda=(M-1)\varepsilon_o`).
The process is critical at :math:`R_0 = 1`, i.e. :math:`\varepsilon_c = 1/M`.

Variants: per-token rates (Poisson-binomial offspring), per-position rates (a different
law at every step), Poisson and negative-binomial laws (overdispersion), a miss probability
:math:`\delta` of the oracle token, and a cap :math:`K` on the list size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from . import validation as check
from .offspring import (
    Binomial,
    LeaveOneOut,
    NegativeBinomial,
    OffspringLaw,
    Poisson,
    PoissonBinomial,
)

__all__ = ["ListDecoderModel", "LAWS"]

LAWS = ("binomial", "poisson", "negative_binomial")


@dataclass(frozen=True)
class ListDecoderModel:
    """Parameters of the list-decoder branching process.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float or array of shape (M,)
        False-eligibility probability of a wrong token on an erroneous prefix, in [0, 1];
        an array gives one probability per token (Poisson-binomial offspring; the oracle
        token is then uniformly random at each step).
    T : int
        Horizon (number of decoding steps), ``T >= 0``.
    eps_steps : array of shape (T,), optional
        Per-position false-eligibility probabilities; step ``t`` uses ``eps_steps[t]``
        both on erroneous and (unless ``eps_oracle`` is given) on the oracle prefix.
        Mutually exclusive with an array ``eps``; the scalar ``eps`` is then unused
        except as the default reported by :attr:`r0` when ``T = 0``.
    eps_oracle : float, optional
        False-eligibility probability of the ``M - 1`` wrong tokens on the oracle prefix
        (this sets the immigration law).  Default: the same as on erroneous prefixes.
    delta : float
        Probability that the oracle token is *not* eligible at a step (a miss), in [0, 1).
        After a miss the oracle path is gone and immigration stops.
    K : int, optional
        Cap on the list size (oracle included); ``None`` for an unbounded list.
    law : {"binomial", "poisson", "negative_binomial"} or OffspringLaw
        Family of the offspring and immigration laws.  ``"poisson"`` is the large-M limit
        with the same means; ``"negative_binomial"`` needs ``dispersion``.  An
        :class:`~branching.offspring.OffspringLaw` instance (any class of
        :mod:`branching.offspring`, e.g. ``FinitePmf``) is the offspring law of every
        erroneous candidate at every step; the immigration law is then
        ``Binomial(M - 1, eps_oracle)`` when ``eps_oracle`` is given and the same law
        otherwise (a generic law has no tokens to leave one out).  ``eps`` is then
        ``law.mean / M`` (pass ``None``, or use :meth:`from_law`); per-token and per-position
        rates and ``dispersion`` do not apply.
    dispersion : float, optional
        Shape ``k > 0`` of the negative binomial (variance ``mu + mu^2/k``).

    Notes
    -----
    ``r0`` is the offspring mean ``M * eps`` (``sum(eps)`` for per-token rates); for
    per-position rates it is the geometric mean of the per-step offspring means over the
    horizon, the per-step growth factor of ``E[Z_t]`` without immigration.

    Examples
    --------
    >>> from branching import ListDecoderModel
    >>> model = ListDecoderModel.from_r0(M=50257, r0=0.9, T=1000)
    >>> round(model.r0, 12)
    0.9
    """

    M: int
    eps: float | np.ndarray = field(repr=False)
    T: int
    eps_steps: np.ndarray | None = field(default=None, repr=False)
    eps_oracle: float | None = None
    delta: float = 0.0
    K: int | None = None
    law: str = "binomial"
    dispersion: float | None = None

    def __post_init__(self):
        M = check.integer("M", self.M, low=2)
        T = check.integer("T", self.T, low=0)
        set_ = object.__setattr__
        set_(self, "M", M)
        set_(self, "T", T)
        if isinstance(self.law, OffspringLaw):
            self._check_law_object(M)
        elif np.ndim(self.eps) == 0:
            set_(self, "eps", check.probability("eps", self.eps))
        else:
            eps = check.array("eps", self.eps, shape=(M,), low=0.0, high=1.0)
            eps.setflags(write=False)
            set_(self, "eps", eps)
        if self.eps_steps is not None:
            if np.ndim(self.eps) != 0:
                raise ValueError(
                    "eps_steps (per-position rates) cannot be combined with per-token eps; "
                    "pass a scalar eps"
                )
            steps = check.array("eps_steps", self.eps_steps, shape=(T,), low=0.0, high=1.0)
            steps.setflags(write=False)
            set_(self, "eps_steps", steps)
        if self.eps_oracle is not None:
            set_(self, "eps_oracle", check.probability("eps_oracle", self.eps_oracle))
        set_(self, "delta", check.real("delta", self.delta, low=0.0, high=1.0, high_open=True))
        if self.K is not None:
            set_(self, "K", check.integer("K", self.K, low=1))
        if not isinstance(self.law, OffspringLaw):
            check.choice("law", self.law, LAWS)
        if self.law == "negative_binomial":
            if self.dispersion is None:
                raise ValueError("dispersion must be given (a real k > 0) when law='negative_binomial'")
            set_(self, "dispersion", check.real("dispersion", self.dispersion, low=0.0, low_open=True))
        elif self.dispersion is not None:
            raise ValueError(f"dispersion applies only to law='negative_binomial', got law={self.law!r}")
        if self.per_token and self.law != "binomial":
            raise ValueError(f"per-token eps needs law='binomial' (Poisson-binomial), got {self.law!r}")

    def _check_law_object(self, M: int) -> None:
        """Validate a model given by an offspring-law object; sets ``eps = law.mean / M``."""
        law = self.law
        if np.ndim(self.eps) != 0:
            raise ValueError(f"per-token eps cannot be combined with a law object (law={law!r}); "
                             "pass eps=None")
        if self.eps_steps is not None:
            raise ValueError(f"eps_steps (per-position rates) cannot be combined with a law object "
                             f"(law={law!r})")
        rate = law.mean / M
        if self.eps is not None:
            eps = check.real("eps", self.eps, low=0.0)
            if not math.isclose(eps, rate, rel_tol=1e-12, abs_tol=1e-300):
                raise ValueError(f"eps must be law.mean / M = {rate!r} for law={law!r} (or None), "
                                 f"got {eps!r}")
        object.__setattr__(self, "eps", rate)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_r0(cls, M: int, r0: float, T: int, **kwargs) -> "ListDecoderModel":
        """The homogeneous model with ``eps = r0 / M`` (``0 <= r0 <= M``)."""
        M = check.integer("M", M, low=2)
        r0 = check.real("r0", r0, low=0.0, high=float(M))
        return cls(M=M, eps=r0 / M, T=T, **kwargs)

    @classmethod
    def from_law(cls, M: int, law: OffspringLaw, T: int, **kwargs) -> "ListDecoderModel":
        """The model whose erroneous candidates have offspring law ``law`` at every step.

        Examples
        --------
        >>> import numpy as np
        >>> from branching import FinitePmf, ListDecoderModel
        >>> model = ListDecoderModel.from_law(M=4, law=FinitePmf(np.array([0.5, 0.0, 0.5])), T=3)
        >>> model.r0, model.eps
        (1.0, 0.25)
        """
        if not isinstance(law, OffspringLaw):
            raise ValueError(f"law must be an OffspringLaw, got {check._show(law)}")
        return cls(M=M, eps=None, T=T, law=law, **kwargs)

    def replace(self, **changes) -> "ListDecoderModel":
        """A copy with some parameters changed (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ structure
    @property
    def per_token(self) -> bool:
        """True when eps is one probability per token."""
        return np.ndim(self.eps) != 0

    @property
    def per_step(self) -> bool:
        """True when the rates change with the position."""
        return self.eps_steps is not None

    @property
    def homogeneous(self) -> bool:
        """True when every step uses the same laws."""
        return not self.per_step

    def eps_at(self, t: int) -> float:
        """Scalar false-eligibility rate on erroneous prefixes at step ``t``."""
        if self.per_token:
            raise ValueError("eps_at is undefined for per-token eps; use offspring(t)")
        return float(self.eps_steps[t]) if self.per_step else float(self.eps)

    def offspring(self, t: int = 0) -> OffspringLaw:
        """Offspring law of one erroneous candidate at step ``t`` (0-based)."""
        return self._laws[self._step(t)][0]

    def immigration(self, t: int = 0) -> OffspringLaw:
        """Law of the wrong tokens eligible on the oracle prefix at step ``t``."""
        return self._laws[self._step(t)][1]

    def laws(self) -> list[tuple[OffspringLaw, OffspringLaw]]:
        """``[(offspring_t, immigration_t) for t in range(T)]``."""
        if self.homogeneous:
            return [self._laws[0]] * self.T
        return list(self._laws)

    def _step(self, t: int) -> int:
        if self.homogeneous:
            check.integer("t", t, low=0)
            return 0
        return check.integer("t", t, low=0, high=max(self.T - 1, 0))

    @cached_property
    def _laws(self) -> tuple[tuple[OffspringLaw, OffspringLaw], ...]:
        if self.per_token:
            offspring = PoissonBinomial(self.eps)
            immigration = (
                LeaveOneOut(self.eps)
                if self.eps_oracle is None
                else Binomial(self.M - 1, self.eps_oracle)
            )
            return ((offspring, immigration),)
        rates = self.eps_steps if self.per_step else np.array([self.eps])
        return tuple(
            (
                self._law(self.M, float(e)),
                self._law(self.M - 1, float(e) if self.eps_oracle is None else self.eps_oracle),
            )
            for e in rates
        )

    def _law(self, n: int, p: float) -> OffspringLaw:
        if isinstance(self.law, OffspringLaw):
            # offspring (n = M): the law itself; immigration: the same law unless eps_oracle
            return self.law if n == self.M or self.eps_oracle is None else Binomial(n, p)
        if self.law == "binomial":
            return Binomial(n, p)
        if self.law == "poisson":
            return Poisson(n * p)
        return NegativeBinomial(n * p, self.dispersion)

    # ------------------------------------------------------------------ summaries
    @property
    def r0(self) -> float:
        """Basic reproduction number: the mean offspring of one erroneous candidate."""
        if not self.per_step:
            return self.offspring(0).mean
        if self.T == 0:
            return self.M * float(self.eps)
        means = np.array([law.mean for law, _ in self._laws])
        if np.any(means == 0):
            return 0.0
        return float(np.exp(np.mean(np.log(means))))

    @property
    def immigration_mean(self) -> float:
        """Mean number of new erroneous candidates per step (time-averaged if per-step)."""
        return float(np.mean([imm.mean for _, imm in self._laws]))

    @property
    def regime(self) -> str:
        """'subcritical', 'critical' or 'supercritical' according to r0 vs 1."""
        r0 = self.r0
        if np.isclose(r0, 1.0, rtol=0, atol=1e-12):
            return "critical"
        return "subcritical" if r0 < 1 else "supercritical"

    def __repr__(self):
        if self.per_token:
            eps = f"eps=<per-token, mean {np.mean(self.eps):.4g}>"
        elif self.per_step:
            eps = f"eps_steps=<{self.T} rates, mean {np.mean(self.eps_steps):.4g}>"
        else:
            eps = f"eps={self.eps:.6g}"
        extras = [
            f"{name}={getattr(self, name)!r}"
            for name, default in (("eps_oracle", None), ("delta", 0.0), ("K", None),
                                  ("law", "binomial"), ("dispersion", None))
            if getattr(self, name) != default
        ]
        body = ", ".join([f"M={self.M}", eps, f"T={self.T}", *extras, f"r0={self.r0:.6g}"])
        return f"ListDecoderModel({body})"
