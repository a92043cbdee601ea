r"""The generating-function engine: backward passes carrying the distance ``w = 1 - s``,
Chernoff tail bounds and the inversion of a pgf by FFT on a circle."""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import fft as sfft

from ..model import ListDecoderModel
from ..offspring import Binomial, OffspringLaw, cexpm1, clog1p
from ._common import _MAX_PMF_WORK

logger = logging.getLogger(__name__)


def _log_mix(log_delta: float, log_keep: float, z):
    """``log(delta + (1 - delta) exp(z))`` for real or complex ``z`` (no overflow)."""
    b = log_keep + z
    top = np.maximum(log_delta, np.real(b))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = top + np.log(np.exp(log_delta - top) + np.exp(b - top))
    return np.where(np.real(b) == np.inf, b, out)


def _scaled(c: float, z):
    """``c * z`` for real ``c``, without the NaN of ``c * (-inf + iy)`` in complex arithmetic."""
    if np.iscomplexobj(z):
        return c * z.real + 1j * (c * z.imag)
    return c * z


def _step(f: OffspringLaw, h: OffspringLaw, w, advance: bool):
    """``(log h(1-w), 1 - f(1-w))``; the second is None when ``advance`` is False.

    The list decoder's own pair -- Binomial(M, p) offspring and Binomial(M-1, p)
    immigration -- shares one ``log1p(-p w)``.
    """
    if type(f) is Binomial and type(h) is Binomial and f.p == h.p and f.p > 0:
        log_factor = clog1p(-f.p * w)
        return (_scaled(h.n, log_factor),
                -cexpm1(_scaled(f.n, log_factor)) if advance else None)
    return h.log_pgf_1m(w), (f.one_minus_pgf(w) if advance else None)


def _log_pgf(model: ListDecoderModel, w, *, delta: float | None = None):
    r"""``log E[s^{Z_T}]`` at ``s = 1 - w`` (real or complex array), by one backward pass.

    ``delta`` defaults to the model's; ``delta = 0`` gives the law given the oracle kept.
    Real ``w < 0`` (``s > 1``) is allowed: the result may then be ``+inf``.
    """
    delta = model.delta if delta is None else delta
    w = np.array(w, copy=True)
    laws = model.laws()
    acc = np.zeros(w.shape, dtype=np.result_type(w, float))
    if delta > 0:
        log_delta, log_keep = math.log(delta), math.log1p(-delta)
    with np.errstate(all="ignore"):
        for k in range(model.T - 1, -1, -1):
            f, h = laws[k]
            log_h, w = _step(f, h, w, k > 0)
            if delta > 0:
                # R_k = H_k (delta + (1 - delta) R_{k+1}); acc holds log R_{k+1} (R_T = 1).
                acc = log_h + _log_mix(log_delta, log_keep, acc)
            else:
                acc = acc + log_h
    return acc


def _log_pgf_stationary(model: ListDecoderModel, w, *, max_steps: int = 10_000_000,
                        bound_only: bool = False):
    r"""``log Pi(s)`` of the stationary law, ``Pi(s) = prod_{k>=0} h(f_k(s))``.

    The product is truncated once ``|w_k| <= 1e-9 (1 - m)``; the remaining factors are
    ``exp(-lambda w_k / (1 - m))`` to first order (relative error ``O(|w_k|/(1-m))``).
    Points whose ``w`` grows (real ``s`` beyond the repelling fixed point) give ``+inf``;
    so do points not converged after ``max_steps`` when ``bound_only`` (used for tail
    bounds, where ``+inf`` just drops the point), which otherwise raise ``ValueError``.
    """
    f, h = model.offspring(0), model.immigration(0)
    m, lam = f.mean, h.mean
    w = np.array(w, copy=True)
    acc = np.zeros(w.shape, dtype=np.result_type(w, float))
    done = np.zeros(w.shape, dtype=bool)
    small = 1e-9 * (1.0 - m)
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            active = ~done
            if not np.any(active):
                break
            wa = w[active]
            acc[active] = acc[active] + h.log_pgf_1m(wa)
            w_next = f.one_minus_pgf(wa)
            converged = np.abs(w_next) <= small
            diverged = ~np.isfinite(w_next) | (np.abs(w_next) > 1e3)
            idx = np.flatnonzero(active)
            w[idx] = w_next
            finish = idx[converged]
            acc[finish] = acc[finish] - lam * w[finish] / (1.0 - m)
            blow = idx[diverged & ~converged]
            acc[blow] = np.inf
            done[finish] = True
            done[blow] = True
        else:
            if not bound_only:
                raise ValueError(
                    f"the stationary product did not converge in {max_steps} steps (r0={m!r} "
                    "is too close to 1); use pmf at a finite horizon instead"
                )
            acc[~done] = np.inf
    return acc


def _chernoff(log_pgf_real):
    r"""``bound(t)``: smallest ``n`` with ``P(Z >= n) <= t`` by the Chernoff bound, or None.

    :math:`P(Z\ge n)\le\min_{\rho>1}\mathbb E[\rho^Z]/\rho^n`; the minimum is taken over a
    geometric grid of :math:`\rho - 1` in :math:`[10^{-30}, 10]` (one backward pass).
    """
    x = np.logspace(-30, 1, 400)
    with np.errstate(all="ignore"):
        lg = np.real(log_pgf_real(-x))
    lg = np.where(np.isnan(lg), np.inf, lg)
    ok = np.isfinite(lg)
    x, lg = x[ok], lg[ok]
    log_rho = np.log1p(x)

    def bound(t: float) -> int | None:
        if x.size == 0:
            return None
        best = float(np.min((lg - math.log(t)) / log_rho))
        return max(1, int(math.ceil(best))) if math.isfinite(best) else None

    return bound


def _invert(log_pgf_complex, n_out: int, *, damped: bool, horizon: int,
            min_size: int = 0) -> np.ndarray:
    r"""``P(Z = 0..n_out-1)`` from the pgf on a circle of radius ``r <= 1`` + inverse FFT.

    With ``N`` points, :math:`b_n = \frac1N\sum_k G(r\omega^k)\omega^{-kn}
    = \sum_{j\ge0} p_{n+jN} r^{n+jN}`, so :math:`p_n \approx b_n r^{-n}` with aliasing
    error :math:`\sum_{j\ge1}p_{n+jN}r^{jN} \le r^N P(Z\ge N)` and round-off
    :math:`\approx 10^{-16} G(r) r^{-n}`.  Undamped grids (mass beyond ``n_out`` below the
    tail; ``N >= 2 n_out`` and ``N >= min_size``, a size with :math:`P(Z\ge N)\le10^{-17}`;
    ``r^N = 0.1``) keep round-off and aliasing near machine precision; damped
    grids (mass beyond the cap) use ``N >= 8 n_out`` and ``r^N = 1e-14``, which bounds the
    aliasing by ``1e-14`` and the round-off amplification by ``10^{14/8} < 60``.  The raw
    values are returned: round-off can make tiny probabilities slightly negative, and
    :func:`_make_law` reports it.
    """
    over, alpha = (8, 1e-14) if damped else (2, 0.1)
    size = sfft.next_fast_len(max(64, over * n_out, min_size), real=True)
    size += size % 2
    work = size * max(horizon, 1)
    if work > _MAX_PMF_WORK:
        raise ValueError(
            f"the pmf needs a grid of {size} points over {horizon} steps ({work:.3g} pgf "
            f"evaluations, limit {_MAX_PMF_WORK:.3g}); pass a smaller cap or a larger tail"
        )
    log_r = math.log(alpha) / size
    theta = 2.0 * np.pi * np.arange(size // 2 + 1) / size
    z = log_r + 1j * theta
    w = -cexpm1(z)  # 1 - r e^{i theta}, accurate near theta = 0
    logger.debug("pmf inversion: %d points, radius %.17g", size, math.exp(log_r))
    with np.errstate(under="ignore"):
        values = np.exp(log_pgf_complex(w))
    if not np.all(np.isfinite(values)):
        raise ValueError("the generating function is not finite on the inversion circle")
    b = np.fft.irfft(np.conj(values), n=size)[:n_out]
    with np.errstate(over="ignore"):
        return b * np.exp(-log_r * np.arange(n_out))
