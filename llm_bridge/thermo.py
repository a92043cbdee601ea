"""Temperature response of a language model's output law: score, Fisher information, heat capacity.

For temperature sampling the probability of a continuation :math:`x = (x_1, \\dots, x_N)` is

.. math::

    \\log P(x \\mid T) = \\sum_i \\log q_{T,i}(x_i), \\qquad q_{T,i} = \\mathrm{softmax}(z_i / T),

where the logits :math:`z_i` depend only on the prompt and the prefix :math:`x_{<i}`, never on
:math:`T`.  Differentiating one factor,
:math:`\\partial_T \\log q_{T,i}(v) = (\\mathbb E_{q_{T,i}}[z_i] - z_{i,v}) / T^2`, so the score is

.. math::

    s_T(x) = \\partial_T \\log P(x \\mid T)
           = \\frac{1}{T^2} \\sum_i \\bigl(\\mathbb E_{v \\sim q_{T,i}}[z_{i,v}] - z_{i,x_i}\\bigr).

Each term has conditional mean zero given the prefix (a martingale increment), so cross terms
vanish in :math:`\\mathbb E[s_T^2]` and the Fisher information has two unbiased estimators,

.. math::

    \\mathcal F(T) = \\mathbb E_{x \\sim P(\\cdot\\mid T)}[s_T(x)^2]
                   = \\frac{1}{T^4} \\sum_i \\mathbb E_x\\bigl[\\operatorname{Var}_{q_{T,i}}(z_i)\\bigr],

the second (conditional-variance, Rao-Blackwellised) one with smaller variance.  With the
sequence energy :math:`E(x) = -\\log P(x \\mid T=1)`, which does not depend on :math:`T`, the
heat capacity is

.. math::

    C(T) = \\partial_T \\, \\mathbb E_{P(\\cdot\\mid T)}[E(x)] = \\mathbb E[E(x)\\, s_T(x)]
         = \\operatorname{Cov}_{P(\\cdot\\mid T)}\\bigl(E(x), s_T(x)\\bigr),

using :math:`\\mathbb E[s_T] = 0`.  It can be negative: the sequence law is not a Boltzmann law
in :math:`T` even though every factor is.  Stopping at an end-of-sequence token changes
nothing: positions after the stop contribute zero, and the stopping time is bounded by
:math:`N`.

The per-sample quantities are computed from logits with :func:`sequence_log_probs` and
:func:`temperature_score` (torch, float64); the estimators :func:`fisher_information` and
:func:`heat_capacity` work on plain arrays, so a saved scan needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from branching import validation

__all__ = [
    "ThermoCurve",
    "fisher_information",
    "heat_capacity",
    "sequence_log_probs",
    "temperature_score",
]


@dataclass(frozen=True, eq=False, repr=False)
class ThermoCurve:
    """A thermodynamic response estimated at every grid temperature.

    Attributes
    ----------
    quantity : str
        ``"fisher_information"`` or ``"heat_capacity"``.
    method : str
        The estimator (``"score_squared"``, ``"conditional_variance"`` or ``"covariance"``).
    temperatures : ndarray, shape (K,)
        The grid.
    value, se : ndarray, shape (K,)
        Estimate and its standard error at each temperature.
    n_samples : int
        Samples per temperature.
    """

    quantity: str
    method: str
    temperatures: np.ndarray
    value: np.ndarray
    se: np.ndarray
    n_samples: int

    def __repr__(self) -> str:
        k = len(self.temperatures)
        return (
            f"ThermoCurve(quantity={self.quantity!r}, method={self.method!r}, K={k}, "
            f"T=[{self.temperatures[0]:.4g}, {self.temperatures[-1]:.4g}], "
            f"n_samples={self.n_samples})"
        )

    def to_pandas(self):
        """Tidy table: one row per temperature with ``value`` and ``se``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "quantity": self.quantity,
                "method": self.method,
                "temperature": self.temperatures,
                "value": self.value,
                "se": self.se,
                "n_samples": self.n_samples,
            }
        )


def _per_temperature(name: str, values, temperatures) -> tuple[np.ndarray, np.ndarray]:
    temps = validation.array("temperatures", temperatures, ndim=1, low=0.0)
    if np.any(temps <= 0):
        raise ValueError(f"temperatures must be > 0, got minimum {float(temps.min())!r}")
    arr = validation.array(name, values, ndim=2)
    if arr.shape[0] != len(temps):
        raise ValueError(
            f"{name} must have one row per temperature ({len(temps)}), got shape {arr.shape}"
        )
    if arr.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 samples per temperature, got {arr.shape[1]}")
    return arr, temps


def fisher_information(score, temperatures, *, conditional_variance=None) -> ThermoCurve:
    """Fisher information of the output law with respect to temperature.

    Parameters
    ----------
    score : array_like, shape (K, S)
        :math:`s_{T_k}(x^{(k,s)})` for samples drawn at :math:`T_k`.
    temperatures : array_like, shape (K,)
        The grid, all > 0.
    conditional_variance : array_like, shape (K, S), optional
        Per-sample :math:`T^{-4}\\sum_i \\operatorname{Var}_{q_{T,i}}(z_i)`.  When given, the
        lower-variance conditional-variance estimator is used instead of the mean of
        :math:`s^2`.

    Returns
    -------
    ThermoCurve
        Sample mean of the chosen per-sample term and its standard error
        :math:`\\hat\\sigma / \\sqrt S` (``ddof=1``).

    Notes
    -----
    :math:`\\mathcal F(T) = \\mathbb E[s_T^2] = T^{-4}\\sum_i\\mathbb E[\\operatorname{Var}_{q_{T,i}}
    (z_i)]`; see the module docstring for the derivation.

    In a frozen phase (very low :math:`T`) all ``S`` samples can coincide; the
    conditional-variance estimate is then that path's exact term and its standard error is
    0, which says nothing about rarer paths the sample missed.  Check the number of
    distinct samples before trusting a zero error bar.

    Examples
    --------
    >>> import numpy as np
    >>> score = np.random.default_rng(0).normal(size=(3, 100))
    >>> fisher_information(score, [0.5, 1.0, 2.0]).value.shape
    (3,)
    """
    arr, temps = _per_temperature("score", score, temperatures)
    if conditional_variance is None:
        terms, method = arr**2, "score_squared"
    else:
        terms, _ = _per_temperature("conditional_variance", conditional_variance, temperatures)
        if terms.shape != arr.shape:
            raise ValueError(
                f"conditional_variance must have the shape of score {arr.shape}, got {terms.shape}"
            )
        if np.any(terms < 0):
            raise ValueError("conditional_variance must be >= 0 (it is a sum of variances)")
        method = "conditional_variance"
    n = terms.shape[1]
    return ThermoCurve(
        quantity="fisher_information",
        method=method,
        temperatures=temps,
        value=terms.mean(axis=1),
        se=terms.std(axis=1, ddof=1) / np.sqrt(n),
        n_samples=n,
    )


def heat_capacity(energy, score, temperatures) -> ThermoCurve:
    """Heat capacity :math:`C(T) = \\operatorname{Cov}_T(E(x), s_T(x))` from samples.

    Parameters
    ----------
    energy : array_like, shape (K, S)
        :math:`E(x^{(k,s)}) = -\\log P(x^{(k,s)} \\mid T=1)`.
    score : array_like, shape (K, S)
        :math:`s_{T_k}(x^{(k,s)}) = \\partial_T \\log P(x^{(k,s)} \\mid T)` at :math:`T = T_k`.
    temperatures : array_like, shape (K,)
        The grid, all > 0.

    Returns
    -------
    ThermoCurve
        The unbiased sample covariance at each temperature, with the standard error of the
        influence terms :math:`u_s = (E_s - \\bar E)(s_s - \\bar s)`:
        :math:`\\hat\\sigma_u / \\sqrt S`.

    Notes
    -----
    :math:`C(T) = \\partial_T \\sum_x P(x\\mid T) E(x) = \\sum_x P(x\\mid T)\\, s_T(x) E(x)`, and
    :math:`\\mathbb E[s_T] = 0` makes it a covariance; centring the energy is a free control
    variate.  No finite difference between grid points is involved.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=(2, 500)); e = 3.0 * s + rng.normal(size=(2, 500))
    >>> bool(np.all(abs(heat_capacity(e, s, [1.0, 2.0]).value - 3.0) < 0.5))
    True
    """
    e, temps = _per_temperature("energy", energy, temperatures)
    s, _ = _per_temperature("score", score, temperatures)
    if e.shape != s.shape:
        raise ValueError(f"energy and score must have the same shape, got {e.shape} and {s.shape}")
    n = e.shape[1]
    u = (e - e.mean(axis=1, keepdims=True)) * (s - s.mean(axis=1, keepdims=True))
    return ThermoCurve(
        quantity="heat_capacity",
        method="covariance",
        temperatures=temps,
        value=u.sum(axis=1) / (n - 1),
        se=u.std(axis=1, ddof=1) / np.sqrt(n),
        n_samples=n,
    )


# --------------------------------------------------------------------------------------------
# Per-sample quantities from logits (torch)
# --------------------------------------------------------------------------------------------


def _gathered(z, tokens, mask):
    """Logit of the emitted token at each position (0 where masked)."""
    import torch

    safe = torch.where(mask, tokens, torch.zeros_like(tokens))
    return torch.gather(z, -1, safe.unsqueeze(-1)).squeeze(-1)


def sequence_log_probs(logits, tokens, mask, temperatures):
    """:math:`\\log P(x \\mid T') = \\sum_i \\log\\mathrm{softmax}(z_i/T')_{x_i}` for several T'.

    Parameters
    ----------
    logits : torch.Tensor, shape (B, N, V)
        Next-token logits at each output position (an end-of-sequence policy that forbids a
        token is expressed as a ``-inf`` logit).
    tokens : torch.LongTensor, shape (B, N)
        The continuation.
    mask : torch.BoolTensor, shape (B, N)
        Positions that count (``False`` after an end-of-sequence stop).
    temperatures : sequence of float
        The temperatures :math:`T'`, all > 0.

    Returns
    -------
    torch.Tensor, float64, shape (B, len(temperatures))

    Notes
    -----
    One set of logits serves every temperature: only the division by :math:`T'` changes.
    Computed in float64 because dividing by a small :math:`T'` magnifies rounding errors.

    Examples
    --------
    One sample of two positions over two tokens, the second position masked out:
    :math:`\\log P = -\\log(1 + e^{-2/T'})`.

    >>> import torch
    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    >>> tokens, mask = torch.tensor([[0, 1]]), torch.tensor([[True, False]])
    >>> sequence_log_probs(logits, tokens, mask, [1.0, 2.0]).round(decimals=4)
    tensor([[-0.1269, -0.3133]], dtype=torch.float64)
    """
    import torch

    z = logits.to(torch.float64)
    out = torch.empty((z.shape[0], len(temperatures)), dtype=torch.float64, device=z.device)
    for j, t in enumerate(temperatures):
        lsm = torch.log_softmax(z / float(t), dim=-1)
        picked = _gathered(lsm, tokens, mask)
        out[:, j] = torch.where(mask, picked, torch.zeros_like(picked)).sum(dim=-1)
    return out


def temperature_score(logits, tokens, mask, temperature: float):
    """Score :math:`s_T(x)` and the conditional-variance Fisher term of each sample.

    Parameters
    ----------
    logits, tokens, mask
        As in :func:`sequence_log_probs`.
    temperature : float
        :math:`T > 0`.

    Returns
    -------
    score : torch.Tensor, float64, shape (B,)
        :math:`T^{-2}\\sum_i (\\mathbb E_{q_{T,i}}[z_i] - z_{i,x_i})`.
    conditional_variance : torch.Tensor, float64, shape (B,)
        :math:`T^{-4}\\sum_i \\operatorname{Var}_{q_{T,i}}(z_i)`.

    Notes
    -----
    Tokens with a ``-inf`` logit have zero probability and are left out of both moments
    (instead of producing ``0 * inf``).

    Examples
    --------
    The score is the temperature derivative of :math:`\\log P(x \\mid T)`:

    >>> import torch
    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    >>> tokens, mask = torch.tensor([[0, 1]]), torch.tensor([[True, False]])
    >>> score, variance = temperature_score(logits, tokens, mask, 1.0)
    >>> lp = sequence_log_probs(logits, tokens, mask, [1 - 1e-5, 1 + 1e-5])
    >>> round(float(score[0]), 4), round(float((lp[0, 1] - lp[0, 0]) / 2e-5), 4)
    (-0.2384, -0.2384)
    """
    import torch

    t = float(temperature)
    z = logits.to(torch.float64)
    q = torch.softmax(z / t, dim=-1)
    live = q > 0
    zero = torch.zeros((), dtype=torch.float64, device=z.device)
    mean_z = torch.where(live, q * z, zero).sum(dim=-1)
    centred = torch.where(live, z - mean_z.unsqueeze(-1), zero)
    var_z = (q * centred**2).sum(dim=-1)
    emitted = _gathered(z, tokens, mask)
    per_position = torch.where(mask, mean_z - emitted, zero)
    score = per_position.sum(dim=-1) / t**2
    conditional_variance = torch.where(mask, var_z, zero).sum(dim=-1) / t**4
    return score, conditional_variance
