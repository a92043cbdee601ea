"""Indicator throughput: the vectorised log-space estimator vs a per-sample loop.

The loop is the straightforward way to write the estimator: for every split, grid point
and sample, exponentiate the window log-probabilities, sum them, and apply g to the
resulting classifier probability, skipping samples whose sums vanish.  Both run on the
same banded array in one process and the ratio of their times is printed.  A second run
on outputs with log-probabilities near -1e4 shows what the loop's exponentiation does
there: every window sum underflows and every sample is dropped.

Usage: ``python benchmarks/bench_transitions.py [--K 16] [--S 2000] [--L 2]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from branching.toys import MarkovToy
from branching.transitions import indicator


def loop_indicator(logp, L):
    """Per-sample Python loop in probability space; returns values, SEs and dropped count."""
    K, S, width = logp.shape
    W = width // 2
    values, ses, dropped = [], [], 0
    for j in range(K - 2 * L + 1):
        means, variances = [], []
        for k in range(j, j + 2 * L):
            terms = []
            for s in range(S):
                left = sum(np.exp(logp[k, s, W + kk - k]) for kk in range(j, j + L))
                right = sum(np.exp(logp[k, s, W + kk - k]) for kk in range(j + L, j + 2 * L))
                if left + right > 0:
                    p = (left if k < j + L else right) / (left + right)
                    terms.append(2 * p - 1)
                else:
                    dropped += 1
            means.append(np.mean(terms) if terms else np.nan)
            variances.append(np.var(terms, ddof=1) if len(terms) > 1 else np.nan)
        values.append(np.mean(means))
        ses.append(np.sqrt(np.sum(variances) / S) / (2 * L))
    return np.array(values), np.array(ses), dropped


def best_time(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, default=16, help="grid points")
    parser.add_argument("--S", type=int, default=2000, help="samples per grid point")
    parser.add_argument("--L", type=int, default=2, help="window size")
    args = parser.parse_args(argv)

    toy = MarkovToy.random(V=6, N=4, rng=1, control="temperature", scale=2.0)
    grid = np.geomspace(0.3, 3.0, args.K)
    logp = toy.logp_banded(grid, args.S, 2 * args.L - 1, rng=2)

    t_vec, curve = best_time(lambda: indicator(logp, grid, L=args.L), repeat=5)
    t_loop, (values, ses, dropped) = best_time(lambda: loop_indicator(logp, args.L), repeat=1)
    agree = np.max(np.abs(values - curve.value))
    n_terms = (args.K - 2 * args.L + 1) * 2 * args.L * args.S
    print(f"grid K={args.K}, S={args.S}, L={args.L}: {n_terms} per-sample terms")
    print(f"  vectorised log-space : {t_vec * 1e3:9.2f} ms")
    print(f"  per-sample loop      : {t_loop * 1e3:9.2f} ms   (max |difference| {agree:.1e})")
    print(f"  speed-up             : {t_loop / t_vec:9.1f} x")

    long_logp = logp - 1.0e4  # the same likelihood ratios, sequence log-probabilities ~ -1e4
    long_curve = indicator(long_logp, grid, L=args.L)
    with np.errstate(invalid="ignore"):
        _, _, long_dropped = loop_indicator(long_logp[: 2 * args.L + 1], args.L)
    print("log-probabilities shifted by -1e4:")
    print(f"  vectorised: max |change| {np.max(np.abs(long_curve.value - curve.value)):.1e}, "
          f"no sample dropped")
    print(f"  loop      : {long_dropped} of {2 * 2 * args.L * args.S} samples dropped (underflow)")


if __name__ == "__main__":
    main()
