"""The scale axis: accuracy and R0 of a family of trained models, against size and training.

Every model of the family (quick: six Llama models of 1.6k to 77k parameters trained on
running sums modulo 32, T = 5) is list-decoded with ``Threshold(0.1)`` at temperature 1:
R0, immigration and misses on the measure split predict, through the theory's exact
accuracy, the list-decoding accuracy measured on the disjoint test split.  The bottom row
follows the largest model along training, with the output-law indicator of a checkpoint
scan.

What the quick family shows (``python -m paper_figures fig_scale --quick``): the
list-decoding accuracy emerges with size (0.005 -> 0.95, crossing 1/2 near 8k
parameters) while the measured R0 falls only from 3.5 to 1.9 and never crosses 1 -- the
emergence is carried by the immigration (false eligibility on the oracle prefix, 1.9 ->
0.07), not by R0 crossing the threshold; the power-law extrapolation of R0 crosses 1 only
near 3e6 parameters.  The theory under-predicts the accuracy of the larger models (0.43
against 0.70 at 11k parameters): the offspring law and the mean path of the erroneous
candidates fail the process checks (lineages of one erroneous prefix are correlated).
What the default family shows (``python -m paper_figures fig_scale``: seven models of 2.1k to
455k parameters, running sums modulo 64, T = 8, 1500 steps each; training takes about 5
minutes on 2 cores, the measurements 3 more): the list-decoding accuracy emerges between
2k and 12k parameters, at 4.7k parameters (test accuracy 1/2), and the theory fed the
measure-split parameters puts it at 4.3k; its predicted accuracy agrees with the measured
one within their combined intervals for six of the seven models (not the smallest: 0.011
predicted, 0.000 measured).  R0 on erroneous prefixes falls from 1.45 to exactly 1 (from
37k parameters on, every erroneous prefix has one eligible child: a wrong partial sum is
continued as confidently as a right one) and is undefined where no erroneous candidate
appears; the immigration falls from 1.2 to 0.002.  So here too the emergence is carried by
the immigration, R0 never drops below 1, and the process checks fail for every model.  The
full run checks the two emergence points and the agreement pattern (``README_VALUES``).
Training and measurements are cached under ``<out_dir>/cache``.
"""

from __future__ import annotations

from pathlib import Path

#: The README's numbers for the default family: emergence points (parameters where the
#: measured / predicted list-decoding accuracy crosses 1/2, checked within ``TOLERANCE``
#: relative) and, per model, whether prediction and measurement agree.
README_VALUES = {"observed_emergence": 4665.0, "predicted_emergence": 4268.0,
                 "agrees": [False, True, True, True, True, True, True]}
TOLERANCE = 0.05


def make(out_dir: Path, *, quick: bool = False) -> list[Path]:
    """Train (or load) the family, measure it and draw the figure; returns the written paths."""
    import torch

    cache = Path(out_dir) / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only oversubscribe the cores
    try:
        return _make(out_dir, quick, cache)
    finally:
        torch.set_num_threads(threads)


def _make(out_dir: Path, quick: bool, cache: Path) -> list[Path]:
    from llm_bridge.zoo import get_family, train_family
    from llm_bridge.zoo.measure import (MeasureSettings, emergence_point, measure_models,
                                        training_scan)
    from llm_bridge.zoo.plot import plot_scale

    family = get_family("quick" if quick else "default")
    models = train_family(family, cache_dir=cache, progress=not quick)
    settings = MeasureSettings(n_measure=60, n_test=60) if quick else MeasureSettings(
        n_measure=200, n_test=200, n_boot=400)
    sizes = measure_models([m.language_model() for m in models],
                           [m.n_parameters for m in models], family.task,
                           labels=[m.size.name for m in models], settings=settings,
                           cache_dir=cache, progress=not quick)
    training = training_scan(models[-1], settings=settings, n_samples=32 if quick else 128,
                             cache_dir=cache, progress=not quick)
    path = Path(out_dir) / "scale.png"
    plot_scale(sizes, training, path, title=f"{family.name} family: ")
    found = {"observed_emergence": emergence_point(sizes.x, sizes.ld_accuracy),
             "predicted_emergence": emergence_point(sizes.x, sizes.predicted),
             "agrees": [bool(a) for a in sizes.agrees]}
    print(f"{family.name} family: emergence at {found['observed_emergence']:.4g} parameters "
          f"(predicted {found['predicted_emergence']:.4g}); prediction agrees for "
          f"{sum(found['agrees'])} of {len(found['agrees'])} models")
    if not quick:
        _check(found)
    return [path]


def _check(found: dict) -> None:
    """Compare the default family's numbers with the README's."""
    for key in ("observed_emergence", "predicted_emergence"):
        if not abs(found[key] - README_VALUES[key]) <= TOLERANCE * README_VALUES[key]:
            raise AssertionError(f"{key} {found[key]:.4g} differs from the README's "
                                 f"{README_VALUES[key]:.4g} by more than {TOLERANCE:.0%}")
    if found["agrees"] != README_VALUES["agrees"]:
        raise AssertionError(f"agreement per model {found['agrees']} differs from the README's "
                             f"{README_VALUES['agrees']}")
