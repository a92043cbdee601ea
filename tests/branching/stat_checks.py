"""Statistical assertions shared by the Monte Carlo tests (fixed seeds, stated tolerances)."""

import math

import numpy as np
from scipy import stats

P_MIN = 1e-3  # smallest acceptable goodness-of-fit p-value
N_SE = 4.0    # tolerance in standard errors


def assert_close(value, se, exact_value, what=""):
    """A Monte Carlo estimate within ``N_SE`` standard errors of the exact value."""
    assert se > 0, f"{what}: zero standard error"
    assert abs(value - exact_value) < N_SE * se, f"{what}: {value} vs {exact_value} (se {se})"


def assert_same(a, se_a, b, se_b, what=""):
    """Two independent estimates of the same quantity agree within ``N_SE`` combined SE."""
    se = math.hypot(se_a, se_b)
    assert se > 0, f"{what}: zero standard errors"
    assert abs(a - b) < N_SE * se, f"{what}: {a} vs {b} (se {se})"


def chi_square_pvalue(observed_counts, probs, n):
    """Chi-square p-value of counts against probabilities, pooling cells with expected < 5.

    Cells are pooled left to right; the mass not in ``probs`` goes to a final tail cell.
    """
    obs = np.zeros(len(probs) + 1)
    obs[: min(len(observed_counts), len(probs))] = observed_counts[: len(probs)]
    obs[-1] = n - obs[:-1].sum()
    exp = np.append(np.asarray(probs, float), max(0.0, 1.0 - float(np.sum(probs)))) * n
    pooled_o, pooled_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(obs, exp):
        acc_o += o
        acc_e += e
        if acc_e >= 5:
            pooled_o.append(acc_o)
            pooled_e.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 or acc_o > 0:
        if pooled_e:
            pooled_o[-1] += acc_o
            pooled_e[-1] += acc_e
        else:
            pooled_o.append(acc_o)
            pooled_e.append(acc_e)
    assert len(pooled_e) >= 2, "too few cells for a chi-square test"
    return stats.chisquare(pooled_o, pooled_e).pvalue


def law_pvalue(sample, probs):
    """Chi-square p-value of a sample of non-negative integers against a pmf."""
    return chi_square_pvalue(np.bincount(sample).astype(float), probs, sample.size)


def two_sample_pvalue(a, b):
    """Chi-square homogeneity p-value of two samples of counts (cells pooled to >= 20)."""
    top = int(max(a.max(), b.max())) + 1
    ca, cb = np.bincount(a, minlength=top), np.bincount(b, minlength=top)
    rows_a, rows_b, acc_a, acc_b = [], [], 0, 0
    for x, y in zip(ca, cb):
        acc_a, acc_b = acc_a + x, acc_b + y
        if acc_a + acc_b >= 20:
            rows_a.append(acc_a)
            rows_b.append(acc_b)
            acc_a = acc_b = 0
    if rows_a:
        rows_a[-1] += acc_a
        rows_b[-1] += acc_b
    return stats.chi2_contingency(np.array([rows_a, rows_b])).pvalue
