r"""Numba kernels of the Monte Carlo engine (private; see :mod:`branching.simulate`).

Everything here is ``@njit(cache=True)``, holds no Python objects and writes into
preallocated arrays.  The Python wrapper validates the arguments.

The process has three kernels, each for one kind of run, with arguments grouped in small
named tuples (:data:`Laws`, :data:`Table`, :data:`Rules`, :data:`Outputs`):

* :func:`plain_chunk` -- one binomial law for offspring and immigrants, no misses, no
  list cap: the hot path, one table-inversion draw per step while the count is small;
* :func:`count_chunk` -- any laws, misses and list cap;
* :func:`cohort_chunk` -- the same, also tracking the cohorts of every replicate and the
  divergence-depth law.

Random numbers
--------------
Each replicate ``r`` has its own SFC64 generator (the "small fast chaotic" generator that
NumPy ships as :class:`numpy.random.SFC64`; the step function here produces the same
stream as NumPy's for the same state, which the tests check).  Its state words are
``mix(key_i + r * 0x9E3779B97F4A7C15)`` for a 192-bit key (drawn once from the caller's
:class:`numpy.random.SeedSequence`) and the global replicate index ``r``, ``mix`` being the
SplitMix64 finaliser (a bijection of 64-bit words), followed by the twelve warm-up rounds
NumPy uses when seeding SFC64.  A replicate's path therefore depends only on the key and
its index -- not on how replicates are grouped into chunks or which thread runs them.

Samplers (all exact up to double-precision rounding, like NumPy's own; truncations are
at tail probabilities below 1e-30, which no 53-bit uniform can resolve):

* uniform doubles ``(u64 >> 11) * 2**-53`` and unbiased integers below ``n`` (rejection
  on the top bits);
* standard normal by Marsaglia's polar method;
* gamma by Marsaglia and Tsang's squeeze method (``shape < 1`` through
  ``Gamma(shape + 1) * U**(1/shape)``), with the acceptance test written with ``log1p``
  so that it stays accurate for shapes up to ``2**60``;
* Poisson by sequential inversion for means below 10 and Hormann's transformed rejection
  (PTRS) above, its acceptance test written in the Stirling form
  ``log p(k) = d - (k + 1/2) log1p(d / lam) - log(2 pi lam)/2 - fc(k)``, ``d = k + 1 - lam``,
  which avoids the cancellation of ``-lam + k log lam - lgamma(k + 1)`` for large means;
* binomial by inversion for ``n p < 10`` and Hormann's BTRD (transformed rejection with
  decomposition) above, using ``Bin(n, p) = n - Bin(n, 1 - p)`` for ``p > 1/2``; for
  the plain process (one binomial law at every step) the step total of a small count is
  drawn by inversion of a precomputed table of cumulative probabilities instead
  (:func:`binomial_cdf_table`), the same inversion with its sums done once.

Why the package carries its own generator and samplers: numba supports
:class:`numpy.random.Generator` objects inside compiled code, and
``benchmarks/bench_simulate.py`` measures that alternative against these samplers in the
same run (one thread, M = 50257, T = 100, R0 in {0.5, 1, 1.5}, one Generator per fixed
block of 1024 replicates so that results would stay independent of the thread count).
Numba's Generator reached 0.29 to 0.79 of the rate of the custom code (below the 0.75
needed at every R0 to replace it): its binomial sampler (sequential inversion up to mean
30, BTPE above) starts from scratch at every call, as the number of trials changes at every
step, where the plain process here inverts a precomputed table for small counts.  It also fails
an accuracy requirement: its Poisson sampler (NumPy's PTRS, acceptance test written as
``-lam + k log lam - lgamma(k + 1)``) loses the acceptance test to cancellation at large
means -- at mean 3e14 the standard deviation of its standardised draws is 1.046 instead of
1 (KS p-value 7e-5 against the normal limit), while the Stirling form used below gives
0.997 (p = 0.9); Poisson and negative-binomial totals near the ceiling need such means.
Per-replicate streams also keep every replicate independent of ``chunk_size``.

Speed: the hot helpers are compiled into their callers (``inline="always"``), rare
branches (the final acceptance tests) are kept out of line, and only scalars are passed on
the hot path.

Counts and the ceiling
----------------------
Counts are ``int64``.  A sum of counts is only ever formed after checking it against a
*limit* (the ceiling, at most ``2**50``); a total that would exceed it is reported as
``-1``.  Before drawing, a total whose mean ``mu`` is so far above the limit that the
Chernoff bound ``P(X <= limit) <= exp(-mu (1 - limit/mu)**2 / 2)`` is below ``e**-50``
(a probability that no double-precision uniform can resolve) is reported as ``-1``
without drawing; otherwise the total is drawn exactly, splitting ``Bin(n, p)`` into
pieces with at most ``2**62`` trials (``Bin(a + b, p) = Bin(a, p) + Bin(b, p)``) and
stopping as soon as the running sum passes the limit.  No product or sum can overflow.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros

# --------------------------------------------------------------------------- constants
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_S11 = _U64(11)
_S3 = _U64(3)
_S24 = _U64(24)
_S40 = _U64(40)
_S30 = _U64(30)
_S27 = _U64(27)
_S31 = _U64(31)
_ONE = _U64(1)
_TWO_M53 = 1.0 / 9007199254740992.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: Largest ceiling accepted by the kernels: counts stay exactly representable as doubles.
MAX_CEILING = 2**50
#: Trials per binomial piece, so that ``n`` always fits an int64.
_MAX_TRIALS = 2**62
_ONE_PIECE = 4.0e18  # below 2**62, with room for rounding of the float estimate
#: Limit used when an exact count is needed (capped lists): below 2**53.
EXACT_LIMIT = 2**51
#: ``-log`` of the tail probability below which a total is declared above the limit.
_CHERNOFF_EXPONENT = 50.0
#: Inversion for means below 10 stops at 110 (tail probability below 1e-60).
_INVERSION_CAP = 110
_SHORT_SCAN = 7
_RECIPROCALS = np.concatenate((np.zeros(1), 1.0 / np.arange(1.0, _INVERSION_CAP + 1.0)))

# Offspring / immigration law codes.
BINOMIAL = 0
POISSON = 1
NEGATIVE_BINOMIAL = 2
GROUPS = 3  # Poisson-binomial over groups of tokens (leave-one-out for immigration)

# Loss causes of the oracle path.
LOST_NEVER = 0
LOST_MISS = 1
LOST_PRUNED = 2

# Histogram of counts used for quantiles: one bin per value below EXACT_BINS = 2**8, then
# each octave [2**o, 2**(o+1)) for o = 8 .. 50 split into 32 equal bins (relative width
# at most 1/32).
_EXACT_BITS = 8
EXACT_BINS = 1 << _EXACT_BITS
_SUB_BITS = 5
_SUB_BINS = 1 << _SUB_BITS
N_BINS = EXACT_BINS + (50 - _EXACT_BITS + 1) * _SUB_BINS


# --------------------------------------------------------------------------- generator
@njit(cache=True)
def _mix64(x):
    """SplitMix64 finaliser (a bijection of uint64)."""
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


@njit(cache=True)
def next_u64(st):
    """One SFC64 step on ``st = [a, b, c, counter]``; returns the output word."""
    a = st[0]
    b = st[1]
    c = st[2]
    w = st[3]
    tmp = a + b + w
    st[3] = w + _ONE
    st[0] = b ^ (b >> _S11)
    st[1] = c + (c << _S3)
    st[2] = ((c << _S24) | (c >> _S40)) + tmp
    return tmp


@njit(cache=True)
def seed_replicate(key, run, st):
    """Derive the SFC64 state of replicate ``run`` from the 256-bit ``key``."""
    offset = _U64(run) * _GOLDEN
    st[0] = _mix64(key[0] + offset)
    st[1] = _mix64(key[1] + offset)
    st[2] = _mix64(key[2] + offset)
    st[3] = _ONE
    for _ in range(12):
        next_u64(st)


@njit(cache=True)
def uniform(st):
    """Uniform double on [0, 1) with 53 random bits."""
    return float(next_u64(st) >> _S11) * _TWO_M53


@njit(cache=True)
def integer_below(st, n):
    """Uniform integer in ``[0, n)`` for ``1 <= n < 2**63`` (unbiased rejection)."""
    if n <= 1:
        return 0
    shift = _U64(leading_zeros(np.int64(n - 1)))
    while True:
        r = np.int64(next_u64(st) >> shift)
        if r < n:
            return r


@njit(cache=True)
def standard_normal(st):
    """Standard normal by Marsaglia's polar method (one value per call)."""
    while True:
        x = 2.0 * uniform(st) - 1.0
        y = 2.0 * uniform(st) - 1.0
        s = x * x + y * y
        if 0.0 < s < 1.0:
            return x * math.sqrt(-2.0 * math.log(s) / s)


@njit(cache=True)
def standard_gamma(st, shape):
    """Gamma(shape, 1) for ``shape > 0`` (Marsaglia and Tsang)."""
    boost = shape < 1.0
    d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = standard_normal(st)
        cx = c * x
        if cx <= -1.0:
            continue
        e = cx * (3.0 + cx * (3.0 + cx))  # v - 1 with v = (1 + c x)^3
        v = 1.0 + e
        u = uniform(st)
        x2 = x * x
        if u < 1.0 - 0.0331 * x2 * x2 or (
            u > 0.0 and math.log(u) < 0.5 * x2 + d * (3.0 * math.log1p(cx) - e)
        ):
            if not boost:
                return d * v
            w = uniform(st)
            while w == 0.0:
                w = uniform(st)
            return d * v * math.exp(math.log(w) / shape)


@njit(cache=True)
def _stirling_tail(k):
    """``log k! - [(k + 1/2) log(k + 1) - (k + 1) + log(2 pi)/2]`` for integer ``k >= 0``."""
    x = k + 1.0
    if k < 10:
        return math.lgamma(x) - ((k + 0.5) * math.log(x) - x + _LOG_SQRT_2PI)
    x2 = x * x
    return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * x2)) / x2) / x2) / x


@njit(cache=True)
def _poisson_log_pmf(k, lam, loglam_half):
    """``log P(X = k)`` for ``X ~ Poisson(lam)`` in the Stirling form (no cancellation)."""
    d = k + 1.0 - lam
    return d - (k + 0.5) * math.log1p(d / lam) - loglam_half - _LOG_SQRT_2PI - _stirling_tail(k)


@njit(cache=True)
def poisson(st, lam):
    """Poisson(lam) for ``0 <= lam < 2**52``."""
    if lam <= 0.0:
        return np.int64(0)
    if lam < 10.0:
        p0 = math.exp(-lam)
        bound = int(lam + 12.0 * math.sqrt(lam) + 40.0)
        while True:
            u = uniform(st)
            x = 0
            p = p0
            while u > p and x <= bound:
                u -= p
                x += 1
                p *= lam / x
            if x <= bound:
                return np.int64(x)
    slam = math.sqrt(lam)
    loglam_half = 0.5 * math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = uniform(st) - 0.5
        v = uniform(st)
        us = 0.5 - abs(u)
        if us >= 0.07 and v <= v_r:
            return np.int64(np.floor((2.0 * a / us + b) * u + lam + 0.43))
        if us <= 0.0 or v <= 0.0 or (us < 0.013 and v > us):
            continue
        k = np.floor((2.0 * a / us + b) * u + lam + 0.43)
        if k < 0.0:
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b) \
                <= _poisson_log_pmf(k, lam, loglam_half):
            return np.int64(k)


@njit(cache=True, inline="always")
def _binomial_inversion(st, n, log_q, r):
    """Bin(n, p) by sequential inversion, for ``p <= 1/2`` and ``n p < 10``.

    ``log_q = log(1 - p)`` and ``r = p / (1 - p)``; ``P(X = x) / P(X = x - 1) =
    r (n + 1 - x) / x``.  Values above 110 (probability below 1e-60) restart the draw.
    """
    g = r * (n + 1.0)
    q_n = math.exp(n * log_q)
    while True:
        u = uniform(st)
        x = 0
        px = q_n
        while u > px and x < _INVERSION_CAP:
            u -= px
            x += 1
            px *= g * _RECIPROCALS[x] - r
        if u <= px:
            return np.int64(x)


@njit(cache=True)
def _binomial_log_ratio(n, m, k, r):
    """``log(P(X = k) / P(X = m))`` for ``X ~ Bin(n, p)``, ``r = p / (1 - p)``, in the
    Stirling form of BTRD's final acceptance test (kept out of line: it is rarely run)."""
    nf = float(n)
    nm = nf - m + 1.0
    nk = nf - k + 1.0
    h = (m + 0.5) * math.log((m + 1.0) / (r * nm)) + _stirling_tail(m) + _stirling_tail(n - m)
    return h + (nf + 1.0) * math.log1p(float(k - m) / nk) \
        + (k + 0.5) * math.log(nk * r / (k + 1.0)) - _stirling_tail(k) - _stirling_tail(n - k)


@njit(cache=True, inline="always")
def _binomial_btrd(st, n, p, r):
    """Bin(n, p) by Hormann's BTRD, for ``p <= 1/2``, ``n p >= 10``, ``r = p / (1 - p)``."""
    nf = float(n)
    q = 1.0 - p
    m = np.int64(math.floor((nf + 1.0) * p))
    nr = (nf + 1.0) * r
    npq = nf * p * q
    spq = math.sqrt(npq)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = nf * p + 0.5
    inv_b = 1.0 / b
    alpha = (2.83 + 5.1 * inv_b) * spq
    v_r = 0.92 - 4.2 * inv_b
    inv_vr = 1.0 / v_r
    ur_vr = 0.86 * v_r
    while True:
        v = uniform(st)
        if v <= ur_vr:
            u = v * inv_vr - 0.43
            return np.int64(np.floor((2.0 * a / (0.5 - abs(u)) + b) * u + c))
        if v >= v_r:
            u = uniform(st) - 0.5
        else:
            u = v * inv_vr - 0.93
            u = math.copysign(0.5, u) - u
            v = uniform(st) * v_r
        us = 0.5 - abs(u)
        if us <= 0.0:
            continue
        inv_us = 1.0 / us
        kf = np.floor((2.0 * a * inv_us + b) * u + c)
        if kf < 0.0 or kf > nf:
            continue
        k = np.int64(kf)
        v = v * alpha / (a * inv_us * inv_us + b)
        km = abs(k - m)
        if km <= 15:
            # f(k)/f(m) as a ratio of two products (each factor r (n + 1 - i) / i).
            num = 1.0
            den = 1.0
            lo, hi = (m, k) if m < k else (k, m)
            for i in range(lo + 1, hi + 1):
                num *= nr - r * i
                den *= i
            if (v * den <= num) if m < k else (v * num <= den):
                return k
            continue
        if v <= 0.0:
            continue
        v = math.log(v)
        kmf = float(km)
        rho = (kmf / npq) * (((kmf / 3.0 + 0.625) * kmf + 1.0 / 6.0) / npq + 0.5)
        t = -kmf * kmf / (2.0 * npq)
        if v < t - rho:
            return k
        if v > t + rho:
            continue
        if v <= _binomial_log_ratio(n, m, k, r):
            return k


@njit(cache=True)
def binomial_cdf_table(n_unit, extra, p, max_mean, max_rows, max_cells):
    """Cumulative probabilities of ``Bin(u * n_unit + extra, p)`` for ``u = 0 .. U - 1``.

    Row ``u`` covers ``x = 0 .. L_u - 1`` with ``L_u - 1 = min(n, mean + 12 sd + 24)``
    (beyond it the mass is below 1e-30), computed by the same recursion as sequential
    inversion, ``P(0) = (1 - p)**n``, ``P(x) = P(x - 1) r (n + 1 - x) / x``.  Rows stop at
    mean ``max_mean``, ``max_rows`` rows or ``max_cells`` entries; ``p`` must be in
    (0, 1/2].  Returns ``(cdf, start, guess)``: row ``u`` is ``cdf[start[u]:start[u + 1]]``
    and ``guess[u]`` the entry where the search starts (the floor of the mean).
    """
    log_q, r = binomial_constants(p)
    rows = 0
    cells = 0
    while rows < max_rows:
        n = rows * n_unit + extra
        mean = n * p
        if mean > max_mean:
            break
        length = min(n, int(mean + 12.0 * math.sqrt(mean * (1.0 - p)) + 24.0)) + 1
        if cells + length > max_cells:
            break
        cells += length
        rows += 1
    cdf = np.empty(cells)
    start = np.zeros(rows + 1, dtype=np.int64)
    guess = np.zeros(rows, dtype=np.int64)
    pos = 0
    for u in range(rows):
        n = u * n_unit + extra
        mean = n * p
        length = min(n, int(mean + 12.0 * math.sqrt(mean * (1.0 - p)) + 24.0)) + 1
        start[u] = pos
        guess[u] = min(length - 1, int(mean))
        px = math.exp(n * log_q)
        acc = 0.0
        for x in range(length):
            if x > 0:
                px *= r * (n + 1 - x) / x
            acc += px
            cdf[pos + x] = acc
        pos += length
    start[rows] = pos
    return cdf, start, guess


@njit(cache=True, inline="always")
def table_draw(st, cdf, start, guess, row):
    """Inversion of row ``row`` of :func:`binomial_cdf_table`, searching from its mean.

    Returns the smallest ``x`` with ``cdf[x] >= U``; a uniform beyond the last entry (a
    rounding-level event) is redrawn.
    """
    lo = start[row]
    last = start[row + 1] - 1
    while True:
        u = uniform(st)
        if last - lo >= _SHORT_SCAN and u <= cdf[lo + _SHORT_SCAN]:
            # Small values: count the entries below u without branches.
            x = 0
            for i in range(_SHORT_SCAN):
                x += u > cdf[lo + i]
            return np.int64(x)
        i = lo + guess[row]
        if u <= cdf[i]:
            while i > lo and u <= cdf[i - 1]:
                i -= 1
            return np.int64(i - lo)
        while i < last and u > cdf[i]:
            i += 1
        if u <= cdf[i]:
            return np.int64(i - lo)


@njit(cache=True)
def binomial_constants(p):
    """``(log(1 - s), s / (1 - s))`` for ``s = min(p, 1 - p)``, the sampler's constants."""
    s = min(p, 1.0 - p)
    if s <= 0.0:
        return 0.0, 0.0
    return math.log1p(-s), s / (1.0 - s)


@njit(cache=True)
def binomial_prepared(st, n, p, log_q, r):
    """Bin(n, p) for ``0 <= n <= 2**62`` with precomputed :func:`binomial_constants`."""
    return _binomial_inline(st, n, p, log_q, r)


@njit(cache=True, inline="always")
def _binomial_inline(st, n, p, log_q, r):
    """:func:`binomial_prepared` compiled into its caller (the hot path of the kernel)."""
    if n <= 0 or p <= 0.0:
        return np.int64(0)
    if p >= 1.0:
        return np.int64(n)
    flip = p > 0.5
    s = 1.0 - p if flip else p
    if n * s < 10.0:
        x = _binomial_inversion(st, n, log_q, r)
    else:
        x = _binomial_btrd(st, n, s, r)
    return n - x if flip else x


# --------------------------------------------------------------------------- totals
@njit(cache=True)
def _surely_above(mean, limit):
    """True when a sum of independent Bernoulli/Poisson terms with this mean exceeds
    ``limit`` except with probability below ``exp(-50)`` (Chernoff lower tail)."""
    if mean <= limit:
        return False
    gap = 1.0 - limit / mean
    return 0.5 * mean * gap * gap > _CHERNOFF_EXPONENT


@njit(cache=True)
def binomial_total(st, units, n_unit, extra, p, log_q, r, limit):
    """``Bin(units * n_unit + extra, p)``, or -1 if it exceeds ``limit``.

    ``log_q, r`` are :func:`binomial_constants` of ``p``.  More than ``2**62`` trials are
    drawn in pieces (``Bin(a + b, p) = Bin(a, p) + Bin(b, p)``), stopping at the limit.
    """
    if p <= 0.0 or (units == 0 and extra == 0):
        return np.int64(0)
    trials = units * float(n_unit) + extra
    if _surely_above(trials * p, float(limit)):
        return np.int64(-1)
    if trials < _ONE_PIECE:
        x = binomial_prepared(st, units * n_unit + extra, p, log_q, r)
        return x if x <= limit else np.int64(-1)
    total = binomial_prepared(st, extra, p, log_q, r)
    per_piece = _MAX_TRIALS // n_unit
    left = units
    while left > 0 and total <= limit:
        piece = min(left, per_piece)
        total += binomial_prepared(st, piece * n_unit, p, log_q, r)
        left -= piece
    return total if total <= limit else np.int64(-1)


@njit(cache=True)
def poisson_total(st, mean, limit):
    """``Poisson(mean)``, or -1 if it exceeds ``limit``."""
    if mean <= 0.0:
        return np.int64(0)
    if _surely_above(mean, float(limit)):
        return np.int64(-1)
    x = poisson(st, mean)
    return x if x <= limit else np.int64(-1)


@njit(cache=True)
def negative_binomial_total(st, units, mu, k, limit):
    """Sum of ``units`` iid NB(mean mu, shape k) = Poisson(Gamma(units k, mu / k))."""
    if units == 0 or mu <= 0.0:
        return np.int64(0)
    rate = standard_gamma(st, units * k) * (mu / k)
    return poisson_total(st, rate, limit)


@njit(cache=True)
def groups_total(st, units, groups, grp_n, excluded, extra_units, limit):
    """Poisson-binomial total over token groups.

    Group ``g`` holds ``grp_n[g]`` tokens of rate ``groups[g, 0]`` (``groups[g, 1:3]`` its
    :func:`binomial_constants`); the total is
    ``sum_g Bin(units * grp_n[g] + extra_units * (grp_n[g] - [g == excluded]), groups[g, 0])``
    (``excluded = -1`` excludes nothing), or -1 if it exceeds ``limit``.
    """
    mean = 0.0
    for g in range(grp_n.size):
        n_extra = extra_units * (grp_n[g] - (1 if g == excluded else 0))
        mean += (units * float(grp_n[g]) + n_extra) * groups[g, 0]
    if _surely_above(mean, float(limit)):
        return np.int64(-1)
    total = np.int64(0)
    for g in range(grp_n.size):
        n_extra = extra_units * (grp_n[g] - (1 if g == excluded else 0))
        x = binomial_total(st, units, grp_n[g], n_extra, groups[g, 0], groups[g, 1],
                           groups[g, 2], limit - total)
        if x < 0:
            return np.int64(-1)
        total += x
    return total


@njit(cache=True)
def _uniform_group(st, grp_n, n_tokens):
    """Group of a uniformly random token (the oracle token under per-token rates)."""
    u = integer_below(st, n_tokens)
    for g in range(grp_n.size):
        if u < grp_n[g]:
            return g
        u -= grp_n[g]
    return grp_n.size - 1


@njit(cache=True)
def _family_total(st, kind, units, n_unit, p, log_q, r, k, limit):
    """Sum of ``units`` iid draws of a binomial (``n_unit`` trials), Poisson or negative
    binomial law with step parameters ``p`` (probability or mean), ``log_q, r``
    (binomial constants) and ``k`` (shape); -1 if it exceeds ``limit``.

    Scalars only: this sits on the hot path, where array arguments cost time.
    """
    if units == 0:
        return np.int64(0)
    if kind == BINOMIAL:
        return binomial_total(st, units, n_unit, 0, p, log_q, r, limit)
    if kind == POISSON:
        return poisson_total(st, units * p, limit)
    return negative_binomial_total(st, units, p, k, limit)


@njit(cache=True)
def law_table(mean_or_p, shape, binomial_kind):
    """Per-step parameter rows ``(p or mean, log_q, r, shape)`` of one law."""
    out = np.zeros((mean_or_p.size, 4))
    for t in range(mean_or_p.size):
        out[t, 0] = mean_or_p[t]
        if binomial_kind:
            out[t, 1], out[t, 2] = binomial_constants(mean_or_p[t])
        out[t, 3] = shape
    return out


# --------------------------------------------------------------------------- recording
@njit(cache=True)
def histogram_bin(z):
    """Bin of count ``z`` (``0 <= z <= 2**50``) in the quantile histogram."""
    if z < EXACT_BINS:
        return z
    octave = 63 - leading_zeros(z)
    sub = (z >> (octave - _SUB_BITS)) - _SUB_BINS
    return EXACT_BINS + (octave - _EXACT_BITS) * _SUB_BINS + sub


@njit(cache=True)
def _welford(mean, m2, i, j, x, inv_n):
    delta = x - mean[i, j]
    mean[i, j] += delta * inv_n
    m2[i, j] += delta * (x - mean[i, j])


@njit(cache=True, nogil=True)
def path_summary(paths, moments, hist):
    """Per-step mean and central moment sums of ``paths[r, t]`` over replicates ``r``.

    Two passes over the rows (both vectorise over ``t``): ``moments[0, t]`` gets the
    mean, ``moments[1..3, t]`` the sums of squared, cubed and fourth-power deviations
    from it.  ``hist[t, bin]`` (if not empty) is incremented for every entry.
    """
    n_rows, n_cols = paths.shape
    for t in range(n_cols):
        for k in range(4):
            moments[k, t] = 0.0
    for r in range(n_rows):
        for t in range(n_cols):
            moments[0, t] += paths[r, t]
    for t in range(n_cols):
        moments[0, t] /= max(n_rows, 1)
    for r in range(n_rows):
        for t in range(n_cols):
            d = paths[r, t] - moments[0, t]
            d2 = d * d
            moments[1, t] += d2
            moments[2, t] += d2 * d
            moments[3, t] += d2 * d2
    if hist.shape[0] > 0:
        for r in range(n_rows):
            for t in range(n_cols):
                hist[t, histogram_bin(paths[r, t])] += 1


@njit(cache=True, nogil=True)
def merge_moments(n_a, m_a, n_b, m_b):
    """Merge group ``b`` into group ``a`` in place (pairwise formulas of Chan et al. and
    Pebay): ``m[0, i]`` is the mean and ``m[k - 1, i]`` the sum of ``k``-th powers of the
    deviations from it, ``k = 2 .. order`` with ``order = m_a.shape[0]`` (2 or 4)."""
    order = m_a.shape[0]
    if n_b == 0:
        return
    empty = n_a == 0
    n_a = float(n_a)  # products of counts in floating point: no integer overflow
    n_b = float(n_b)
    n = n_a + n_b
    for i in range(m_a.shape[1]):
        if empty:
            for k in range(order):
                m_a[k, i] = m_b[k, i]
            continue
        d = m_b[0, i] - m_a[0, i]
        a2, b2 = m_a[1, i], m_b[1, i]
        m_a[0, i] += d * (n_b / n)
        m_a[1, i] = a2 + b2 + d * d * (n_a * n_b / n)
        if order > 2:
            a3, b3 = m_a[2, i], m_b[2, i]
            m_a[2, i] = a3 + b3 + d * d * d * n_a * n_b * (n_a - n_b) / (n * n) \
                + 3.0 * d * (n_a * b2 - n_b * a2) / n
            m_a[3, i] += m_b[3, i] \
                + d ** 4 * n_a * n_b * (n_a * n_a - n_a * n_b + n_b * n_b) / (n * n * n) \
                + 6.0 * d * d * (n_a * n_a * b2 + n_b * n_b * a2) / (n * n) \
                + 4.0 * d * (n_a * b3 - n_b * a3) / n


#: Per-replicate outcomes summarised by :func:`outcome_summary`, in this order.
OUTCOMES = ("no_error", "accuracy", "survival", "compute", "capped", "no_output")
_N_OUTCOMES = len(OUTCOMES)


@njit(cache=True, nogil=True)
def outcome_summary(run_z, run_alive, run_compute, run_capped_at, run_lost_at, run_cause,
                    moments, capped_hist, lost_hist):
    """Mean and sum of squared deviations (``moments[0|1, k]``, two passes) of the
    per-replicate outcomes :data:`OUTCOMES`, and counts of the steps of capping
    (``capped_hist[t]``) and of losing the oracle by cause (``lost_hist[cause, t]``).

    Outcomes of a replicate: ``Z_T = 0``; ``A / (A + Z_T)`` with ``A`` the oracle indicator
    (0 for an empty list); ``A``; its compute; capped or not; empty final list.
    """
    n = run_z.size
    values = np.empty(_N_OUTCOMES)
    for k in range(_N_OUTCOMES):
        moments[0, k] = 0.0
        moments[1, k] = 0.0
    for sweep in range(2):
        for r in range(n):
            alive = float(run_alive[r])
            listed = run_z[r] + alive
            values[0] = 1.0 if run_z[r] == 0 else 0.0
            values[1] = alive / listed if listed > 0.0 else 0.0
            values[2] = alive
            values[3] = run_compute[r]
            values[4] = 1.0 if run_capped_at[r] >= 0 else 0.0
            values[5] = 1.0 if listed == 0.0 else 0.0
            for k in range(_N_OUTCOMES):
                if sweep == 0:
                    moments[0, k] += values[k]
                else:
                    d = values[k] - moments[0, k]
                    moments[1, k] += d * d
        if sweep == 0:
            for k in range(_N_OUTCOMES):
                moments[0, k] /= max(n, 1)
    for r in range(n):
        if run_capped_at[r] >= 0:
            capped_hist[run_capped_at[r]] += 1
        if run_lost_at[r] >= 0:
            lost_hist[run_cause[r], run_lost_at[r]] += 1


# --------------------------------------------------------------------------- capping
@njit(cache=True)
def _rescale_cohorts(cohort, upto, total, newest):
    """Rescale ``cohort[:upto]`` in place to sum to ``total`` when a run is capped.

    The composition of the last uncapped step is kept: each cohort gets the floor of its
    proportional share and the remainder goes, one each, to the largest fractional parts.
    With no earlier candidates, all ``total`` belong to the ``newest`` cohort.
    """
    before = 0.0
    for j in range(upto):
        before += cohort[j]
    if before == 0.0:
        cohort[newest] = total
        return
    fraction = np.empty(upto)
    assigned = np.int64(0)
    for j in range(upto):
        exact_share = cohort[j] / before * total
        share = np.int64(math.floor(exact_share))
        fraction[j] = exact_share - share
        cohort[j] = share
        assigned += share
    for _ in range(total - assigned):
        j = np.argmax(fraction)
        cohort[j] += 1
        fraction[j] = -1.0


# --------------------------------------------------------------------------- pruning
@njit(cache=True)
def _keep_uniform_subset(st, counts, upto, keep, scratch):
    """Keep a uniformly random subset of ``keep`` of the ``sum(counts[:upto])`` items.

    ``counts[j]`` is the number of items of class ``j``; on return it holds the number
    kept (a multivariate hypergeometric draw, made by sequential sampling without
    replacement of whichever of the kept or the dropped items are fewer).
    """
    total = np.int64(0)
    for j in range(upto):
        total += counts[j]
    if keep >= total:
        return
    pick_kept = keep <= total - keep
    picks = keep if pick_kept else total - keep
    for j in range(upto):
        scratch[j] = 0
    remaining = total
    for _ in range(picks):
        u = integer_below(st, remaining)
        j = 0
        while u >= counts[j] - scratch[j]:
            u -= counts[j] - scratch[j]
            j += 1
        scratch[j] += 1
        remaining -= 1
    for j in range(upto):
        counts[j] = scratch[j] if pick_kept else counts[j] - scratch[j]


# --------------------------------------------------------------------------- the process
#: The model's laws as the kernels read them: kind codes, binomial trials per unit and
#: per-step parameter rows (:func:`law_table`) of the offspring and immigration laws, the
#: per-token groups (rates with their binomial constants, sizes), the vocabulary size,
#: and whether offspring and immigrants may be drawn as one total (``fused``).
Laws = namedtuple("Laws", "off_kind off_n off_par imm_kind imm_n imm_par groups grp_n "
                          "n_tokens fused")
#: :func:`binomial_cdf_table` of the fused binomial step total (possibly empty).
Table = namedtuple("Table", "cdf start guess")
#: The decoder's rules: horizon, miss probability, list cap (0: none), ceiling.
Rules = namedtuple("Rules", "T delta K ceiling")
#: Per-replicate outputs (overwritten): final count, oracle alive (0/1), compute
#: ``sum_{t<T} L_t``, step of capping (-1: never), step and cause of losing the oracle,
#: and the path ``paths[r, t] = Z_t``.
Outputs = namedtuple("Outputs", "z alive compute capped_at lost_at cause paths")


@njit(cache=True, inline="always")
def _record(out, r, z, alive, compute, capped_at, lost_at, cause):
    out.z[r] = z
    out.alive[r] = 1 if alive else 0
    out.compute[r] = compute
    out.capped_at[r] = capped_at
    out.lost_at[r] = lost_at
    out.cause[r] = cause


@njit(cache=True, inline="always")
def _fused_binomial_run(st, T, off_n, imm_n, off_par, cdf, start, guess, ceiling, path):
    """One replicate of the plain binomial process (oracle never lost, no list cap):
    ``Z_{t+1} = Bin(M Z_t + M - 1, eps_t)``, by table inversion while ``Z_t`` has a table
    row.  Fills ``path``; returns ``(Z_T, compute, step capped or -1)``."""
    z = np.int64(0)
    compute = 0.0
    capped_at = -1
    rows = guess.size
    path[0] = 0
    for t in range(T):
        compute += z + 1
        if capped_at < 0:
            p = off_par[t, 0]
            trials = z * float(off_n) + imm_n
            if z < rows:
                new = table_draw(st, cdf, start, guess, z)
            elif trials < _ONE_PIECE and trials * p <= ceiling:
                new = _binomial_inline(st, z * off_n + imm_n, p, off_par[t, 1], off_par[t, 2])
            else:
                new = binomial_total(st, z, off_n, imm_n, p, off_par[t, 1], off_par[t, 2],
                                     ceiling)
            if new < 0 or new > ceiling:
                capped_at = t + 1
                z = np.int64(ceiling)
            else:
                z = new
        path[t + 1] = z
    return z, compute, capped_at


@njit(cache=True, nogil=True)
def plain_chunk(key, first_run, laws, table, rules, out):
    """Replicates ``first_run ..`` of the plain binomial process: one binomial law shared
    by offspring and immigration (``laws.fused``), no misses, no list cap, no cohorts.

    ``Z_{t+1} = Bin(M Z_t + M - 1, eps_t)``, frozen at ``rules.ceiling`` once above it.
    """
    st = np.empty(4, dtype=np.uint64)
    for r in range(out.z.size):
        seed_replicate(key, first_run + r, st)
        z, compute, capped_at = _fused_binomial_run(
            st, rules.T, laws.off_n, laws.imm_n, laws.off_par, table.cdf, table.start,
            table.guess, rules.ceiling, out.paths[r])
        _record(out, r, z, True, compute, capped_at, -1, LOST_NEVER)


@njit(cache=True)
def _fused_total(st, laws, table, t, z, limit):
    """Offspring of ``z`` candidates and the oracle's immigrants as one total (closed
    under convolution); -1 above ``limit``."""
    par = laws.off_par
    if laws.off_kind == BINOMIAL and z < table.guess.size:
        new = table_draw(st, table.cdf, table.start, table.guess, z)
        return new if new <= limit else np.int64(-1)
    if laws.off_kind == BINOMIAL:
        return binomial_total(st, z, laws.off_n, laws.imm_n, par[t, 0], par[t, 1], par[t, 2],
                              limit)
    if laws.off_kind == POISSON:
        return poisson_total(st, z * par[t, 0] + laws.imm_par[t, 0], limit)
    oracle_group = _uniform_group(st, laws.grp_n, laws.n_tokens)
    return groups_total(st, z, laws.groups, laws.grp_n, oracle_group, 1, limit)


@njit(cache=True)
def _offspring_total(st, laws, t, units, limit):
    """Total offspring of ``units`` erroneous candidates at step ``t``; -1 above ``limit``."""
    if units == 0:
        return np.int64(0)
    if laws.off_kind == GROUPS:
        return groups_total(st, units, laws.groups, laws.grp_n, -1, 0, limit)
    par = laws.off_par
    return _family_total(st, laws.off_kind, units, laws.off_n, par[t, 0], par[t, 1],
                         par[t, 2], par[t, 3], limit)


@njit(cache=True)
def _immigrant_total(st, laws, t, limit):
    """Wrong tokens eligible on the oracle prefix at step ``t``; -1 above ``limit``."""
    if laws.imm_kind == GROUPS:
        oracle_group = _uniform_group(st, laws.grp_n, laws.n_tokens)
        return groups_total(st, 0, laws.groups, laws.grp_n, oracle_group, 1, limit)
    par = laws.imm_par
    return _family_total(st, laws.imm_kind, 1, laws.imm_n, par[t, 0], par[t, 1], par[t, 2],
                         par[t, 3], limit)


@njit(cache=True)
def _oracle_fate(st, new, alive, rules):
    """The oracle prefix after a step with ``new`` erroneous candidates (-1: too many):
    missed with probability ``delta``, then -- if the list of ``new`` plus the oracle is
    longer than the cap ``K`` -- kept with probability ``K / (1 + new)``.

    Returns ``(alive, cause, keep)``: ``cause`` of a loss at this step (``LOST_NEVER``
    if none) and the number of erroneous candidates kept by pruning (-1: no pruning).
    """
    cause = LOST_NEVER
    if alive and rules.delta > 0.0 and uniform(st) < rules.delta:
        alive = False
        cause = LOST_MISS
    keep = np.int64(-1)
    K = rules.K
    if new >= 0 and K > 0 and new + (1 if alive else 0) > K:
        keep = np.int64(K)
        if alive:
            if integer_below(st, new + 1) < K:
                keep = np.int64(K - 1)
            else:
                alive = False
                cause = LOST_PRUNED
    return alive, cause, keep


@njit(cache=True)
def _missed(st, alive, delta):
    """Whether the oracle prefix, alive, is missed at a step (probability ``delta``)."""
    return alive and delta > 0.0 and uniform(st) < delta


@njit(cache=True)
def _settle(st, new, alive, lost_at, cause, t, rules):
    """End of step ``t`` with ``new`` erroneous candidates drawn (-1: above the limit):
    the oracle's fate (:func:`_oracle_fate`), pruning, then the ceiling.

    Returns ``(z, capped, alive, lost_at, cause, keep)``: the count after the step,
    whether the replicate is capped at this step, the oracle's state, and the number kept
    by pruning (-1: no pruning).  A capped count is the ceiling, except that a pre-pruning
    count above ``2**51`` under a list cap (only reachable with negative-binomial
    offspring) leaves ``min(K, ceiling)`` and counts the oracle as pruned.
    """
    alive, lost, keep = _oracle_fate(st, new, alive, rules)
    if lost != LOST_NEVER:
        lost_at, cause = t + 1, lost
    if keep >= 0:
        new = keep
    if new >= 0 and new <= rules.ceiling:
        return new, False, alive, lost_at, cause, keep
    z = np.int64(rules.ceiling)
    if new < 0 and rules.K > 0:
        z = np.int64(min(rules.K, rules.ceiling))
        if alive:
            alive, lost_at, cause = False, t + 1, LOST_PRUNED
    return z, True, alive, lost_at, cause, keep


@njit(cache=True, inline="always")
def _start_replicate():
    """State of a replicate at step 0: ``(Z, oracle alive, step capped, step lost, cause of
    the loss, compute)``."""
    return np.int64(0), True, -1, -1, LOST_NEVER, 0.0


@njit(cache=True, nogil=True)
def count_chunk(key, first_run, laws, table, rules, out):
    """Replicates ``first_run ..`` of the count process with any laws, misses and list cap.

    One step from ``t`` to ``t + 1``: every erroneous candidate draws its offspring from
    the step-``t`` offspring law; the oracle prefix, while alive, adds immigrants from the
    immigration law (in one draw with the offspring when ``laws.fused``) and keeps its
    correct token unless missed (probability ``delta``); with a list cap ``K`` a list of
    more than ``K`` candidates (the oracle while alive, and the ``Z`` erroneous ones) is
    cut to ``K`` chosen uniformly (the oracle kept with probability ``K / (1 + Z)``); a
    count above ``ceiling`` freezes the replicate at ``ceiling`` from then on (the oracle
    path still evolves).
    """
    st = np.empty(4, dtype=np.uint64)
    limit = EXACT_LIMIT if rules.K > 0 else rules.ceiling
    for r in range(out.z.size):
        seed_replicate(key, first_run + r, st)
        z, alive, capped_at, lost_at, cause, compute = _start_replicate()
        out.paths[r, 0] = 0
        for t in range(rules.T):
            compute += z + (1 if alive else 0)
            if capped_at >= 0:
                if _missed(st, alive, rules.delta):
                    alive, lost_at, cause = False, t + 1, LOST_MISS
                out.paths[r, t + 1] = z
                continue
            if laws.fused and alive:
                new = _fused_total(st, laws, table, t, z, limit)
            else:
                new = _offspring_total(st, laws, t, z, limit)
                if alive and new >= 0:
                    x = _immigrant_total(st, laws, t, limit - new)
                    new = -1 if x < 0 else new + x
            z, capped, alive, lost_at, cause, _ = _settle(st, new, alive, lost_at, cause, t,
                                                          rules)
            if capped:
                capped_at = t + 1
            out.paths[r, t + 1] = z
        _record(out, r, z, alive, compute, capped_at, lost_at, cause)


@njit(cache=True, nogil=True)
def cohort_chunk(key, first_run, laws, rules, out, cohort_moments, depth_moments):
    """:func:`count_chunk` (never fused) that also tracks the cohorts of every replicate.

    The cohort ``C_j(t)`` is the number of candidates at step ``t`` whose first wrong
    token is at position ``j``; each cohort draws its offspring separately, pruning keeps
    a uniform subset of all candidates, and a capped replicate keeps the composition of
    its last uncapped step (:func:`_rescale_cohorts`).

    Also outputs (overwritten) ``cohort_moments[0|1, j, t]``, the running mean and sum of
    squared deviations (Welford) of ``C_j(t)``, and ``depth_moments[0|1, d]`` the same
    for the probability that a uniform choice from the final list shares exactly ``d``
    leading tokens with the oracle (``d = T``: the oracle itself).
    """
    T = rules.T
    st = np.empty(4, dtype=np.uint64)
    limit = EXACT_LIMIT if rules.K > 0 else rules.ceiling
    cohort = np.zeros(T, dtype=np.int64)
    fresh = np.zeros(T, dtype=np.int64)
    scratch = np.zeros(T, dtype=np.int64)
    for r in range(out.z.size):
        inv_n = 1.0 / (r + 1)
        seed_replicate(key, first_run + r, st)
        z, alive, capped_at, lost_at, cause, compute = _start_replicate()
        cohort[:] = 0
        out.paths[r, 0] = 0
        for t in range(T):
            compute += z + (1 if alive else 0)
            if capped_at >= 0:
                if _missed(st, alive, rules.delta):
                    alive, lost_at, cause = False, t + 1, LOST_MISS
            else:
                new = np.int64(0)
                for j in range(t):
                    x = np.int64(0)
                    if cohort[j] > 0 and new >= 0:
                        x = _offspring_total(st, laws, t, cohort[j], limit - new)
                        new = -1 if x < 0 else new + x
                    fresh[j] = x
                x = np.int64(0)
                if alive and new >= 0:
                    x = _immigrant_total(st, laws, t, limit - new)
                    new = -1 if x < 0 else new + x
                fresh[t] = x
                z, capped, alive, lost_at, cause, keep = _settle(st, new, alive, lost_at,
                                                                 cause, t, rules)
                if keep >= 0:
                    _keep_uniform_subset(st, fresh, t + 1, keep, scratch)
                if capped:
                    capped_at = t + 1
                    _rescale_cohorts(cohort, t + 1, z, t)
                else:
                    for j in range(t + 1):
                        cohort[j] = fresh[j]
            out.paths[r, t + 1] = z
            for j in range(t + 1):
                _welford(cohort_moments[0], cohort_moments[1], j, t + 1, float(cohort[j]),
                         inv_n)
        _record(out, r, z, alive, compute, capped_at, lost_at, cause)
        listed = 1.0 if alive else 0.0
        for j in range(T):
            listed += cohort[j]
        scale = 1.0 / listed if listed > 0.0 else 0.0
        for j in range(T):
            _welford(depth_moments[0:1], depth_moments[1:2], 0, j, cohort[j] * scale, inv_n)
        _welford(depth_moments[0:1], depth_moments[1:2], 0, T, scale if alive else 0.0, inv_n)
