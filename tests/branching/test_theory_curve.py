"""The theory's distance curve: the output law of the list decoder enumerated outcome by
outcome for tiny M and T, against the depth-law reduction; peak and sharpening; the CLI."""

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from branching import transitions as tr
from branching.cli import main
from branching.exact import divergence_depth_law
from branching.model import ListDecoderModel
from branching.theory_curve import depth_law_table, theory_indicator

LN2 = math.log(2.0)


def brute_force_output_law(M, T, eps, *, eps_oracle=None, delta=0.0):
    """Law of the decoder's output (a token tuple, or None for an empty list).

    Enumerates every eligibility outcome of every prefix that is in the list; the oracle
    sequence is all zeros.  Output: one candidate drawn uniformly from the final list.
    """
    e_oracle = eps if eps_oracle is None else eps_oracle
    law = defaultdict(float)

    def subsets(prefix, t):
        on_oracle = all(v == 0 for v in prefix)
        rates = [(1.0 - delta if v == 0 else e_oracle) if on_oracle else eps for v in range(M)]
        out = []
        for mask in itertools.product((0, 1), repeat=M):
            p = math.prod(r if b else 1.0 - r for r, b in zip(rates, mask))
            if p > 0:
                out.append(([prefix + (v,) for v in range(M) if mask[v]], p))
        return out

    def expand(candidates, t, prob):
        if t == T:
            if not candidates:
                law[None] += prob
            for x in candidates:
                law[x] += prob / len(candidates)
            return
        for combo in itertools.product(*(subsets(p, t) for p in candidates)):
            children = [c for kids, _ in combo for c in kids]
            expand(children, t + 1, prob * math.prod(p for _, p in combo))

    expand([()], 0, 1.0)
    return dict(law)


def depth(x, T):
    for j, v in enumerate(x):
        if v != 0:
            return j
    return T


def closed_forms(P, Q):
    both = (P + Q) > 0
    p, q = P[both], Q[both]
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return np.sum(a[nz] * np.log(a[nz] / b[nz]))

    return {
        "linear": 0.5 * np.sum((p - q) ** 2 / (p + q)),
        "tv": 0.5 * np.sum(np.abs(p - q)),
        "js": (0.5 * kl(p, m) + 0.5 * kl(q, m)) / LN2,
    }


TINY = [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2)]


@pytest.mark.parametrize("M, T", TINY)
def test_output_probability_depends_only_on_the_divergence_depth(M, T):
    for eps in (0.15, 0.6):
        law = brute_force_output_law(M, T, eps)
        assert sum(law.values()) == pytest.approx(1.0, abs=1e-13)
        assert None not in law  # the oracle is always kept (delta = 0)
        classes = defaultdict(list)
        for x, p in law.items():
            classes[depth(x, T)].append(p)
        q = divergence_depth_law(ListDecoderModel(M=M, eps=eps, T=T))
        for j in range(T + 1):
            size = 1 if j == T else (M - 1) * M ** (T - j - 1)
            members = classes.get(j, [])
            assert len(members) in (0, size)
            if members:
                np.testing.assert_allclose(members, members[0], rtol=1e-12)
            assert sum(members) == pytest.approx(q[j], rel=1e-8, abs=1e-14)


@pytest.mark.parametrize("M, T", [(2, 2), (2, 3), (3, 2)])
@pytest.mark.parametrize("options", [{}, {"delta": 0.3}, {"eps_oracle": 0.1}])
def test_sequence_level_divergence_equals_depth_level(M, T, options):
    r0_grid = np.array([0.4, 0.9, 1.3, 1.9])
    laws = [brute_force_output_law(M, T, r0 / M, **options) for r0 in r0_grid]
    support = sorted(set().union(*laws), key=lambda x: (x is None, x or ()))
    seq = np.array([[law.get(x, 0.0) for x in support] for law in laws])  # (K, outcomes)
    theory = theory_indicator(M, T, r0_grid, L=1, **options)
    theory2 = theory_indicator(M, T, r0_grid, L=2, **options)
    table = depth_law_table(M, T, r0_grid, **options)
    assert table.shape[1] == T + 1 + ("delta" in options)
    if "delta" in options:
        np.testing.assert_allclose(table[:, -1], [law.get(None, 0.0) for law in laws], rtol=1e-8)
    for measure in tr.MEASURES:
        for j in range(3):
            want = closed_forms(seq[j], seq[j + 1])[measure]
            assert theory.curves[measure].value[j] == pytest.approx(want, rel=1e-7)
        want = closed_forms(seq[:2].mean(0), seq[2:].mean(0))[measure]
        assert theory2.curves[measure].value[0] == pytest.approx(want, rel=1e-7)


def test_peak_sits_near_r0_one_and_sharpens_with_the_horizon():
    """Finite-size scaling in (R0 - 1) T: on grids 1 +- 6/T the peak offset times T, the
    width times T and the normalised height over T^2 settle as T doubles."""
    offset, width, height = [], [], []
    for T in (20, 40, 80):
        curve = theory_indicator(10, T, np.linspace(1 - 6 / T, 1 + 6 / T, 41), measures=("linear", "js"))
        for measure in ("linear", "js"):
            assert not curve.peak(measure).at_edge
        peak = curve.peak("linear")
        offset.append((peak.location - 1.0) * T)
        width.append(curve.width("linear") * T)
        height.append(peak.height / T**2)
    assert all(abs(o) < 1.0 for o in offset) and offset[0] < offset[1] < offset[2]  # -0.33, 0.09, 0.33
    assert abs(width[2] / width[1] - 1) < abs(width[1] / width[0] - 1) < 0.05
    assert abs(height[2] / height[1] - 1) < abs(height[1] / height[0] - 1) < 0.1


#: Peak of the linear indicator (L = 1, M = 50257) in x = (R0 - 1) T and its width in x,
#: on grids of spacing 0.1 in x (the numbers quoted in the module docstring and README).
PEAK_X = {50: 0.1805, 100: 0.3828, 200: 0.4876}
FWHM_X = {50: 8.404, 100: 8.487, 200: 8.528}


def test_peak_location_at_finite_horizons_and_its_limit():
    """The quoted finite-T peaks 0.18/T, 0.38/T, 0.49/T (to 1e-3 in x; the engine behind
    them is checked outcome by outcome above), increments that halve as T doubles (a 1/T
    approach), and the Richardson limit 2 x(200) - x(100) = 0.592, within 0.01 of the
    quoted 0.595 (from T = 800, 1600).  The old claims (0.33/T at T = 80, 0.46/T at
    T = 160; "anywhere in 1 +- 1/T") are excluded."""
    x = np.linspace(-1.0, 2.0, 31)
    found = {}
    for T in PEAK_X:
        curve = theory_indicator(50257, T, 1 + x / T, measures=("linear",))
        found[T] = (curve.peak("linear").location - 1.0) * T
    for T in PEAK_X:
        assert found[T] == pytest.approx(PEAK_X[T], abs=1e-3)
    wide = theory_indicator(50257, 50, 1 + np.linspace(-6, 6, 121) / 50, measures=("linear",))
    assert wide.width("linear") * 50 == pytest.approx(FWHM_X[50], abs=0.01)
    assert (wide.peak("linear").location - 1) * 50 == pytest.approx(PEAK_X[50], abs=1e-4)
    step1, step2 = found[100] - found[50], found[200] - found[100]
    assert step2 / step1 == pytest.approx(0.5, abs=0.05)
    assert 2 * found[200] - found[100] == pytest.approx(0.595, abs=0.01)


def test_peak_on_a_coarse_grid_is_set_by_the_grid():
    """The README command's grid (spacing 0.01) reproduces 0.18/T, 0.39/T, 0.55/T: at
    T = 200 the grid spacing is 2/T and the parabola moves the peak by 0.06/T."""
    grid = np.linspace(0.8, 1.2, 41)
    got = {T: (theory_indicator(50257, T, grid, measures=("linear",)).peak("linear").location - 1) * T
           for T in (50, 100, 200)}
    assert got[50] == pytest.approx(0.18, abs=0.005)
    assert got[100] == pytest.approx(0.39, abs=0.005)
    assert got[200] == pytest.approx(0.545, abs=0.005)
    assert got[200] - PEAK_X[200] > 0.04


@pytest.mark.parametrize("options", [{"law": "poisson"},
                                     {"law": "negative_binomial", "dispersion": 2.0}])
def test_laws_without_a_sequence_model_are_refused(options):
    with pytest.raises(ValueError, match="only the binomial law comes from a sequence-level model"):
        theory_indicator(10, 5, [0.5, 1.0, 1.5], **options)
    with pytest.raises(ValueError, match="law must be 'binomial'"):
        depth_law_table(10, 5, [0.5, 1.0], **options)


def test_theory_curve_results():
    curve = theory_indicator(5, 6, np.linspace(0.5, 1.5, 11), L=2)
    assert curve.depth_law.shape == (11, 7)
    np.testing.assert_allclose(curve.depth_law.sum(axis=1), 1.0)
    frame = curve.to_pandas()
    assert len(frame) == 3 * 8 and {"M", "T", "r0", "value", "normalized", "measure"} <= set(frame)
    assert set(curve.summary()["measure"]) == set(tr.MEASURES)
    assert repr(curve).startswith("TheoryCurve(M=5, T=6, L=2")
    assert math.isinf(theory_indicator(5, 6, np.linspace(0.9, 1.1, 5)).width())  # no half-maximum inside


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: theory_indicator(1, 5, [0.5, 1.0]), "M"),
        (lambda: theory_indicator(5, 0, [0.5, 1.0]), "T"),
        (lambda: theory_indicator(5, 5, [0.5, 6.0]), "r0_grid"),
        (lambda: theory_indicator(5, 5, [1.0, 0.5, 0.7]), "strictly monotone"),
        (lambda: theory_indicator(5, 5, [0.5, 1.0], measures="linear"), "measures"),
        (lambda: theory_indicator(5, 5, [0.5, 1.0], measures=("hellinger",)), "measure"),
        (lambda: theory_indicator(5, 5, [0.5, 1.0], L=2), "L"),
        (lambda: theory_indicator(5, 5, [0.5, 1.0], eps=0.1), "eps"),
        (lambda: theory_indicator(5, 5, [0.5, 1.0], delta=1.5), "delta"),
    ],
)
def test_invalid_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cli_prints_and_writes(tmp_path, capsys):
    out, plot = tmp_path / "curve.csv", tmp_path / "curve.png"
    code = main(["transitions", "--M", "10", "--T", "20", "40", "--r0", "0.5:1.5:21",
                 "--measure", "linear", "js", "--out", str(out), "--plot", str(plot)])
    assert code == 0
    text = capsys.readouterr().out
    assert "peak_r0" in text and "T=40" in text
    import pandas as pd

    table = pd.read_csv(out)
    assert set(table["T"]) == {20, 40} and set(table["measure"]) == {"linear", "js"}
    assert len(table) == 2 * 2 * 20
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize("grid", ["1:0:5", "0.5:1.5", "a:b:c", "0.5:1.5:1"])
def test_cli_rejects_bad_grids(grid, capsys):
    with pytest.raises(SystemExit) as err:
        main(["transitions", "--M", "10", "--T", "5", "--r0", grid])
    assert err.value.code == 2
    assert "--r0" in capsys.readouterr().err
