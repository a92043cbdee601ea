r"""Eligibility rules of a list decoder on a real language model.

A rule decides, from the tempered next-token log-probabilities
:math:`\log p_T(x\mid s) = \log\operatorname{softmax}(z(s)/T)_x` of a candidate prefix
:math:`s`, which tokens are *eligible*, i.e. which children the candidate proposes:

``Threshold(theta)``
    :math:`x` is eligible when :math:`p_T(x\mid s)\ge\theta`.  This is the rule of the theory:
    the number of eligible tokens varies from prefix to prefix, and at most
    :math:`\lfloor 1/\theta\rfloor` tokens can be eligible.
``Nucleus(top_p)``
    The smallest set of most probable tokens whose probability reaches ``top_p``: with the
    tokens sorted by decreasing probability, :math:`x` is eligible when the mass of the
    tokens strictly before it is below ``top_p``.
``TopK(k)``
    The ``k`` most probable tokens (ties broken by the lower token id).  Every candidate has
    exactly ``k`` children, so the list grows like :math:`k^t` whatever the model: the
    contrast without a transition.

Rules are small frozen dataclasses, validated at construction; :func:`parse_rule` reads the
``name=value`` form used by the command line.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from branching import validation as check

__all__ = ["RULES", "Nucleus", "Threshold", "TopK", "parse_rule", "rule_from_dict"]


@dataclass(frozen=True)
class Threshold:
    """Eligible when the tempered probability is at least ``theta``.

    Parameters
    ----------
    theta : float
        Threshold in (0, 1].

    Examples
    --------
    >>> import torch
    >>> rule = Threshold(0.2)
    >>> rule.eligible(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))).tolist()
    [[True, True, False, False]]
    """

    theta: float
    name = "threshold"

    def __post_init__(self):
        object.__setattr__(
            self, "theta", check.real("theta", self.theta, low=0.0, high=1.0, low_open=True)
        )

    def eligible(self, logp: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the eligible tokens, same shape as ``logp`` (rows: prefixes)."""
        return logp >= math.log(self.theta)

    @property
    def parameter(self) -> float:
        """The rule's parameter (the value a scan can fit)."""
        return self.theta


@dataclass(frozen=True)
class Nucleus:
    """Eligible when in the nucleus (top-p set) of the tempered distribution.

    Parameters
    ----------
    top_p : float
        Nucleus mass in (0, 1].

    Examples
    --------
    >>> import torch
    >>> rule = Nucleus(0.7)
    >>> rule.eligible(torch.log(torch.tensor([[0.15, 0.5, 0.3, 0.05]]))).tolist()
    [[False, True, True, False]]
    """

    top_p: float
    name = "nucleus"

    def __post_init__(self):
        object.__setattr__(
            self, "top_p", check.real("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        )

    def eligible(self, logp: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the nucleus, same shape as ``logp``."""
        sorted_logp, order = torch.sort(logp, dim=-1, descending=True, stable=True)
        mass = torch.exp(sorted_logp.to(torch.float64))
        before = torch.cumsum(mass, dim=-1) - mass
        keep_sorted = before < self.top_p
        return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)

    @property
    def parameter(self) -> float:
        """The rule's parameter."""
        return self.top_p


@dataclass(frozen=True)
class TopK:
    """The ``k`` most probable tokens are eligible.

    Parameters
    ----------
    k : int
        Number of children of every candidate, ``k >= 1`` (at most the vocabulary size).

    Examples
    --------
    >>> import torch
    >>> TopK(2).eligible(torch.log(torch.tensor([[0.15, 0.5, 0.3, 0.05]]))).tolist()
    [[False, True, True, False]]
    """

    k: int
    name = "top_k"

    def __post_init__(self):
        object.__setattr__(self, "k", check.integer("k", self.k, low=1))

    def eligible(self, logp: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the ``k`` largest entries of each row."""
        if self.k > logp.shape[-1]:
            raise ValueError(
                f"k must be at most the vocabulary size {logp.shape[-1]}, got {self.k}"
            )
        if self.k == logp.shape[-1]:
            return torch.ones_like(logp, dtype=torch.bool)
        top = torch.topk(logp, self.k + 1, dim=-1).values
        kth = top[..., self.k - 1:self.k]
        # the usual case: the (k+1)-th largest is below the k-th, so {logp >= kth} holds
        # exactly k entries (no pass over the row beyond the comparison itself)
        if bool((top[..., self.k:] < kth).all()):
            return logp >= kth
        tied = logp == kth
        above = logp > kth
        room = self.k - above.sum(dim=-1, keepdim=True)
        return above | (tied & (torch.cumsum(tied, dim=-1) <= room))

    @property
    def parameter(self) -> int:
        """The rule's parameter."""
        return self.k


RULES = {"threshold": Threshold, "nucleus": Nucleus, "top_k": TopK}
_FIELDS = {"threshold": "theta", "nucleus": "top_p", "top_k": "k"}


def rule_from_dict(record: dict):
    """Rebuild a rule from ``{"name": ..., <parameter>: ...}`` (as stored in saved results).

    Parameters
    ----------
    record : dict
        ``{"name": "threshold", "theta": ...}``, ``{"name": "nucleus", "top_p": ...}`` or
        ``{"name": "top_k", "k": ...}``, as written by ``rule_to_dict``.

    Returns
    -------
    Threshold, Nucleus or TopK
        The rule, validated by its constructor.

    Raises
    ------
    ValueError
        An unknown rule name, a record without the rule's parameter, or a parameter
        outside the rule's range.

    Examples
    --------
    >>> rule_from_dict({"name": "nucleus", "top_p": 0.9})
    Nucleus(top_p=0.9)
    >>> rule = TopK(3)
    >>> rule_from_dict(rule_to_dict(rule)) == rule
    True
    """
    name = record.get("name")
    if name not in RULES:
        raise ValueError(f"rule name must be one of {sorted(RULES)}, got {name!r}")
    field = _FIELDS[name]
    if field not in record:
        raise ValueError(f"a {name} rule record must hold its parameter {field!r}, got keys "
                         f"{sorted(record)}")
    return RULES[name](record[field])


def rule_to_dict(rule) -> dict:
    """``{"name": ..., <parameter>: ...}`` for saving."""
    return {"name": rule.name, **asdict(rule)}


def parse_rule(text: str):
    """A rule from ``"threshold=0.05"``, ``"nucleus=0.9"`` or ``"top_k=3"``.

    Parameters
    ----------
    text : str
        ``name=value`` with ``name`` one of ``threshold``, ``nucleus``, ``top_k`` (``top-k``
        is accepted too; spaces around the name are ignored) and ``value`` a number (an
        integer for ``top_k``).

    Returns
    -------
    Threshold, Nucleus or TopK
        The rule, validated by its constructor.

    Raises
    ------
    ValueError
        No ``=``, an unknown rule name, a value that is not a number, or a parameter
        outside the rule's range.

    Examples
    --------
    >>> parse_rule("threshold=0.05")
    Threshold(theta=0.05)
    >>> parse_rule("top_k=3")
    TopK(k=3)
    >>> parse_rule("nucleus=1.5")
    Traceback (most recent call last):
    ...
    ValueError: top_p must lie in (0, 1], got 1.5
    """
    name, sep, value = str(text).partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in RULES:
        raise ValueError(
            f"rule must look like threshold=THETA, nucleus=TOP_P or top_k=K, got {text!r}"
        )
    try:
        parsed = int(value) if name == "top_k" else float(value)
    except ValueError:
        raise ValueError(f"rule {name} needs a number after '=', got {text!r}") from None
    return RULES[name](parsed)
