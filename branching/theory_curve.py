r"""The theory's own distance curve: how fast the list decoder's output law changes with R0.

The list decoder's output -- one candidate drawn uniformly from the final list -- is a
random sequence of :math:`T` tokens whose law :math:`P_\varepsilon` moves with the false-
eligibility rate.  :func:`theory_indicator` computes the exact g-dissimilarity indicators of
:mod:`branching.transitions` along a grid of :math:`R_0=M\varepsilon`, from the law of the
*divergence depth* alone (:func:`branching.exact.divergence_depth_law`).

Why the depth law suffices
--------------------------
Let :math:`y^*` be the oracle sequence and, for an output :math:`x\in\{1..M\}^T`, let
:math:`D(x)=j` if :math:`x` first differs from :math:`y^*` at position :math:`j+1`
(:math:`j=0..T-1`), and :math:`D(y^*)=T`.  Write :math:`C_j=\{x: D(x)=j\}`, of size
:math:`n_j=(M-1)M^{T-j-1}` for :math:`j<T` and :math:`n_T=1`.

*Claim 1 (exchangeability).*  :math:`P_\varepsilon(x)=q_\varepsilon(j)/n_j` for every
:math:`x\in C_j`, where :math:`q_\varepsilon(j)=P_\varepsilon(D=j)`.

*Proof.*  The decoder's randomness is one eligibility indicator per (prefix, token):
independent Bernoulli variables whose success probability depends only on whether the
prefix is the oracle prefix :math:`y^*_{1:t}` and, there, whether the token is the oracle
token :math:`y^*_{t+1}` (probability :math:`1-\delta`) or a wrong one (:math:`\varepsilon_o`);
on an erroneous prefix every token has probability :math:`\varepsilon_t`.  Let :math:`G` be
the group of relabellings of the prefix tree that permute, independently at every prefix,
its children -- all :math:`M` of them at an erroneous prefix, the :math:`M-1` wrong ones
(fixing :math:`y^*_{t+1}`) at an oracle prefix.  Every :math:`g\in G` maps oracle prefixes
to themselves and erroneous prefixes to erroneous prefixes at the same depth, so it maps
the family of eligibility indicators to a family with the same joint law.  The final list
is a function of the indicators that commutes with :math:`g` (a prefix is kept iff each of
its tokens was eligible after its parent), and the uniform pick from the list commutes with
:math:`g` too.  Hence :math:`P_\varepsilon(x)=P_\varepsilon(gx)` for all :math:`g\in G`.  Two
sequences :math:`x,x'\in C_j` share :math:`y^*_{1:j}`; a permutation of the wrong tokens at
:math:`y^*_{1:j}` maps :math:`x_{j+1}` to :math:`x'_{j+1}`, and permutations at the
erroneous prefixes below map the rest, so :math:`G` is transitive on :math:`C_j` and
:math:`P_\varepsilon` is constant there.  :math:`\square`

*Claim 2 (sufficiency).*  For any grid of rates and windows, the g-dissimilarity between
the window mixtures of output laws equals the one between the window mixtures of depth
laws.

*Proof.*  Mixtures keep the form of Claim 1: :math:`P_L(x)=a_j/n_j`, :math:`P_R(x)=b_j/n_j`
with :math:`a,b` the mixed depth laws.  The classifier probability
:math:`p_L(x)=a_j/(a_j+b_j)` depends on :math:`x` through :math:`D(x)` only, so
:math:`D_g=\tfrac12\sum_j\sum_{x\in C_j}\bigl[P_L(x)g(p_L)+P_R(x)g(1-p_L)\bigr]
=\tfrac12\sum_j\bigl[a_j\,g(p_L)+b_j\,g(1-p_L)\bigr]`, the g-dissimilarity of :math:`a`
and :math:`b`.  The same argument holds for every f-divergence.  :math:`\square`

With misses (:math:`\delta>0`) the list can end empty; "no output" is then one more atom
with probability :math:`1-\sum_j q(j)`, appended to the depth law, and both claims hold
unchanged.  Claim 1 needs tokens to be exchangeable: it holds for per-position rates but
not for per-token rates, which :func:`theory_indicator` does not offer.

Numbers
-------
The indicator peaks just above :math:`R_0=1` and sharpens as the horizon grows, with the
finite-size scaling form of a critical point in the variable :math:`x=(R_0-1)T`.  For the
linear measure with :math:`L=1` at :math:`M=50257`, on grids :math:`R_0=1+x/T` with spacing
:math:`\Delta x=0.1` (fine enough that the parabolic peak interpolation does not move the
digits quoted), the peak sits at :math:`x = 0.181, 0.383, 0.488, 0.541, 0.568, 0.581` for
:math:`T = 50, 100, 200, 400, 800, 1600`.  The approach is :math:`1/T` (the increments
halve as :math:`T` doubles), and Richardson extrapolation of the last pairs gives the limit
:math:`x\approx0.595`, i.e. a peak at :math:`R_0-1\approx0.59/T` for long horizons.  The
full width at half maximum is :math:`8.40/T, 8.49/T, 8.53/T` for :math:`T=50, 100, 200`.
On the coarser grid of the README command (``--r0 0.8:1.2:41``, spacing 0.01, i.e.
:math:`\Delta x = 0.5, 1, 2`) the interpolated peaks are :math:`0.18/T, 0.39/T, 0.55/T`: at
:math:`T=200` the grid, not the model, sets the last digit.  The CLI
``llm-branching transitions`` tabulates and plots the curves.

Only the binomial law has a sequence-level model (a candidate has at most :math:`M`
children, one per token); :func:`theory_indicator` refuses the Poisson and
negative-binomial laws, whose offspring counts are unbounded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from . import validation as check
from . import transitions as tr
from .exact import divergence_depth_law
from .model import ListDecoderModel

__all__ = ["TheoryCurve", "theory_indicator", "depth_law_table"]

log = logging.getLogger(__name__)

_MASS_TOL = 1e-9


def depth_law_table(M: int, T: int, r0_grid, **model_options) -> np.ndarray:
    """Divergence-depth laws along an R0 grid, with an empty-list atom when it has mass.

    Parameters
    ----------
    M, T : int
        Vocabulary size (``>= 2``) and horizon (``>= 1``).
    r0_grid : array of shape (K,)
        Values of :math:`R_0=M\\varepsilon` in ``[0, M]``.
    **model_options
        Further :class:`~branching.model.ListDecoderModel` arguments (``eps_oracle``,
        ``delta``); ``eps`` is set from ``r0``.  ``law`` may only be ``"binomial"``.

    Returns
    -------
    ndarray of shape (K, T+1), or (K, T+2) when the list can end empty (``delta > 0``)
        Row ``k``: the depth law at ``r0_grid[k]`` (entry ``T``: the output is the oracle),
        plus the probability of an empty list as the last entry when ``delta > 0``.

    Raises
    ------
    ValueError
        ``r0_grid`` not one-dimensional or with negative entries, bad ``M`` or ``T``,
        ``eps`` or ``eps_steps`` among ``model_options``, a ``law`` other than
        ``"binomial"``, or a computed row that is not a probability vector.

    Examples
    --------
    At :math:`R_0=0` the output is the oracle; the oracle's mass falls as :math:`R_0` grows:

    >>> import numpy as np
    >>> table = depth_law_table(10, 3, [0.0, 1.0, 5.0])
    >>> table.shape, table[0].tolist()
    ((3, 4), [0.0, 0.0, 0.0, 1.0])
    >>> bool(np.all(np.diff(table[:, -1]) < 0)), np.allclose(table.sum(axis=1), 1.0)
    (True, True)
    >>> depth_law_table(10, 3, [1.0], delta=0.1).shape  # plus the empty-list atom
    (1, 5)
    """
    grid = check.array("r0_grid", r0_grid, ndim=1, low=0.0)
    if "eps" in model_options or "eps_steps" in model_options:
        raise ValueError("eps and eps_steps are set by r0_grid; pass model options other than eps")
    _require_sequence_law(model_options)
    T = check.integer("T", T, low=1)
    with_empty = model_options.get("delta", 0.0) != 0
    rows = []
    for r0 in grid:
        law = divergence_depth_law(ListDecoderModel.from_r0(M, float(r0), T, **model_options))
        if with_empty:
            law = np.append(law, 1.0 - law.sum())
        if np.any(law < -_MASS_TOL) or abs(law.sum() - 1.0) > _MASS_TOL:
            raise ValueError(
                f"the divergence-depth law at r0={float(r0)!r} is not a probability vector "
                f"(sum {law.sum()!r}, min {law.min()!r}); tolerance {_MASS_TOL:g}"
            )
        rows.append(np.maximum(law, 0.0))
    table = np.array(rows)
    return table / table.sum(axis=1, keepdims=True)


def _require_sequence_law(model_options: dict) -> None:
    """Refuse offspring laws that no list decoder over M tokens can produce."""
    law = model_options.get("law", "binomial")
    if law != "binomial":
        raise ValueError(
            f"law must be 'binomial' for the theory curve, got {law!r}: the curve is the law "
            "of the decoder's output sequence, and only the binomial law comes from a "
            "sequence-level model (a candidate has at most M children, one per token); "
            "Poisson and negative-binomial offspring counts are unbounded"
        )


@dataclass(frozen=True, eq=False, repr=False)
class TheoryCurve:
    r"""Exact indicator curves of the list decoder's output law along an R0 grid.

    Attributes
    ----------
    M, T, L : int
        Vocabulary size, horizon and window size.
    r0 : ndarray (K,)
        The grid of :math:`R_0`.
    depth_law : ndarray (K, T+1) or (K, T+2)
        The laws the curves are computed from (:func:`depth_law_table`).
    curves : dict
        ``{measure: IndicatorCurve}`` (exact curves, positions in :math:`R_0`).
    model_options : dict
        Extra model parameters used (``delta``, ``eps_oracle``, ...).
    """

    M: int
    T: int
    L: int
    r0: np.ndarray
    depth_law: np.ndarray
    curves: dict
    model_options: dict = field(default_factory=dict)

    def peak(self, measure: str = "linear", *, statistic: str = "normalized") -> tr.Peak:
        """The (exact) peak of one measure's curve."""
        return tr.find_peak(self._curve(measure), statistic=statistic)

    def width(self, measure: str = "linear") -> float:
        """Full width at half maximum of the normalised curve, in :math:`R_0`.

        Linear interpolation between grid positions on each side of the maximum; ``inf``
        when the curve does not fall below half its maximum on both sides within the grid.
        """
        curve = self._curve(measure)
        y, x = curve.normalized, curve.position
        j = int(np.argmax(y))
        half = 0.5 * y[j]
        left = np.nonzero(y[:j] < half)[0]
        right = np.nonzero(y[j + 1:] < half)[0]
        if left.size == 0 or right.size == 0:
            return math.inf
        a = left[-1]
        b = j + 1 + right[0]
        x_left = np.interp(half, [y[a], y[a + 1]], [x[a], x[a + 1]])
        x_right = np.interp(half, [y[b], y[b - 1]], [x[b], x[b - 1]])
        return float(x_right - x_left)

    def summary(self):
        """One row per measure: peak location, its distance to R0 = 1, height and width."""
        import pandas as pd

        rows = []
        for measure in self.curves:
            peak = self.peak(measure)
            rows.append({
                "M": self.M, "T": self.T, "L": self.L, "measure": measure,
                "peak_r0": peak.location, "peak_minus_1": peak.location - 1.0,
                "height": peak.height, "fwhm": self.width(measure), "at_edge": peak.at_edge,
            })
        return pd.DataFrame(rows)

    def to_pandas(self):
        """Tidy table: one row per (measure, split) with the curve values."""
        import pandas as pd

        frames = []
        for measure, curve in self.curves.items():
            frame = curve.to_pandas().rename(columns={"position": "r0"})
            frame.insert(0, "T", self.T)
            frame.insert(0, "M", self.M)
            frames.append(frame.drop(columns=["se", "normalized_se", "n_samples"]))
        return pd.concat(frames, ignore_index=True)

    def _curve(self, measure: str) -> tr.IndicatorCurve:
        if measure not in self.curves:
            raise ValueError(f"measure must be one of {sorted(self.curves)}, got {measure!r}")
        return self.curves[measure]

    def __repr__(self):
        parts = [f"M={self.M}", f"T={self.T}", f"L={self.L}",
                 f"r0=[{self.r0[0]:g}..{self.r0[-1]:g}] ({self.r0.size} points)"]
        parts += [f"{k}={v!r}" for k, v in self.model_options.items()]
        peaks = ", ".join(f"{m} peak at {self.peak(m).location:.4g}" for m in self.curves)
        return f"TheoryCurve({', '.join(parts)}; {peaks})"


def theory_indicator(M: int, T: int, r0_grid, *, L: int = 1, measures=tr.MEASURES,
                     log_grid: bool = False, **model_options) -> TheoryCurve:
    r"""Exact g-dissimilarity curves of the list decoder's output law along :math:`R_0`.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    T : int
        Horizon, ``T >= 1``.
    r0_grid : array of shape (K,)
        Strictly monotone values of :math:`R_0=M\varepsilon` in ``[0, M]``.
    L : int
        Window size of the indicator.
    measures : sequence of {"linear", "tv", "js"}
        Measures to compute.
    log_grid : bool
        Measure spacings and positions in :math:`\log R_0`.
    **model_options
        Further :class:`~branching.model.ListDecoderModel` arguments (``eps_oracle``,
        ``delta``).  ``law`` may only be ``"binomial"``: the Poisson and negative-binomial
        laws have no sequence-level model and raise ``ValueError``.

    Returns
    -------
    TheoryCurve

    Notes
    -----
    By the sufficiency of the divergence depth (module docstring), the indicator between
    output laws over all :math:`M^T` sequences is :func:`branching.transitions.exact_indicator`
    of the table of depth laws.

    Examples
    --------
    >>> import numpy as np
    >>> curve = theory_indicator(10, 40, np.linspace(0.5, 1.5, 21), measures=("linear",))
    >>> abs(curve.peak("linear").location - 1.0) < 0.05
    True
    """
    M = check.integer("M", M, low=2)
    T = check.integer("T", T, low=1)
    if isinstance(measures, str) or len(measures) == 0:
        raise ValueError(f"measures must be a non-empty sequence of {list(tr.MEASURES)}, got {measures!r}")
    measures = [check.choice("measure", m, tr.MEASURES) for m in measures]
    grid = check.array("r0_grid", r0_grid, ndim=1, low=0.0, high=float(M))
    table = depth_law_table(M, T, grid, **model_options)
    with np.errstate(divide="ignore"):
        log_table = np.log(table)
    curves = {m: tr.exact_indicator(log_table, grid, L=L, measure=m, log_grid=log_grid) for m in measures}
    table.setflags(write=False)
    grid = grid.copy()
    grid.setflags(write=False)
    log.debug("theory indicator M=%d T=%d on %d points", M, T, grid.size)
    return TheoryCurve(M=M, T=T, L=curves[measures[0]].L, r0=grid, depth_law=table, curves=curves,
                       model_options=dict(model_options))
