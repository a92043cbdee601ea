r"""One emergence experiment end to end: dataset, controls, capture, metric.

The default experiment (``llm-branching emergence`` with no options) is SmolLM2-135M-
Instruct on 1024 in-context category lists of 5 shots (``T = 10`` tokens: entity, comma,
...), every block, the Gaussian estimator on 32 PCA components per variable, 3 seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import numpy as np

from branching import validation as check

from . import data as datasets
from ._common import seed_sequence
from .capture import capture
from .controls import near_identity, random_init
from .metric import EmergenceResult, emergence

__all__ = ["CONTROLS", "DATASETS", "build_dataset", "run_experiment"]

logger = logging.getLogger(__name__)

DATASETS = ("icl", "icl-mixed", "text", "text-shuffled", "unigram")
CONTROLS = ("none", "random-init", "near-identity")


def _tiny_categories(vocab_size: int) -> dict[str, list[int]]:
    """Three equal id categories 1.. for tokenizer-less models (id 0 is the separator)."""
    size = (vocab_size - 1) // 3
    if size < 1:
        raise ValueError(f"a tokenizer-less model needs vocab_size >= 4, got {vocab_size}")
    return {f"c{i}": list(range(1 + i * size, 1 + (i + 1) * size)) for i in range(3)}


def build_dataset(lm, kind: str = "icl", *, shots: int = 5, length: int = 8, n: int = 1024,
                  rng=None):
    """A dataset for ``lm`` by name.

    Parameters
    ----------
    lm : LanguageModel
    kind : {"icl", "icl-mixed", "text", "text-shuffled", "unigram"}
        Category lists (``shots`` entities, window ``2 * shots``), the same lists mixing
        categories, windows of the shipped prose (``length`` tokens), the same windows
        shuffled within each window, or i.i.d. tokens with the per-position law of the
        category lists.  A model without a tokenizer gets id categories
        ``1..V-1`` split in three (separator 0) and, for text, a uniform random token stream.
    shots, length, n : int
        Entities per list, tokens per text window, and number of windows.
    rng : None, int, SeedSequence or Generator
        Randomness of the data; the controls use a separate child seed.

    Returns
    -------
    TokenDataset

    Raises
    ------
    ValueError
        For an unknown ``kind``, a tokenizer-less model with ``vocab_size < 4``, or sizes
        the builders refuse (``shots`` above the entities per category, ``length`` above
        the text, ...).

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(13, seed=0)                  # no tokenizer: id categories 1..12
    >>> data = build_dataset(lm, "icl", shots=2, n=200, rng=0)
    >>> data.kind, data.ids.shape, data.params["categories"]
    ('category', (200, 4), ['c0', 'c1', 'c2'])
    >>> build_dataset(lm, "text-shuffled", length=5, n=3, rng=0).ids.shape
    (3, 5)
    """
    check.choice("kind", kind, DATASETS)
    seq = seed_sequence(rng)
    data_seed, control_seed = seq.spawn(2)
    if kind in ("icl", "icl-mixed", "unigram"):
        mixed = kind == "icl-mixed"
        if lm.tokenizer is None:
            data = datasets.category_lists(_tiny_categories(lm.vocab_size), 0, shots=shots, n=n,
                                           mixed=mixed, rng=data_seed)
        else:
            data = datasets.icl_lists(lm, shots=shots, n=n, mixed=mixed, rng=data_seed)
        return datasets.unigram_control(data, rng=control_seed) if kind == "unigram" else data
    if lm.tokenizer is None:
        stream = np.random.default_rng(data_seed).integers(0, lm.vocab_size, size=4096)
        data = datasets.windows_from_ids(stream, length=length, n=n, rng=data_seed)
    else:
        data = datasets.text_windows(lm, length=length, n=n, rng=data_seed)
    return datasets.shuffled(data, rng=control_seed) if kind == "text-shuffled" else data


def run_experiment(lm, data, out_dir, *, layers=None, control: str = "none",
                   estimator: str = "gaussian", n_seeds: int = 3, batch_size: int = 64,
                   control_seed: int = 0, rng=None, progress: bool = False,
                   **options) -> EmergenceResult:
    """Capture ``data`` through ``lm`` (or a control of it) into ``out_dir`` and measure E.

    Parameters
    ----------
    lm : LanguageModel
    data : TokenDataset
    out_dir : path
        Where the representations are streamed (reused when already complete).
    layers : sequence of int, optional
        Blocks (default: all).
    control : {"none", "random-init", "near-identity"}
        Measure a randomly initialised copy of ``lm`` (seed ``control_seed``), or ``lm``
        with the measured blocks turned into near-identities.
    estimator, n_seeds, rng, **options
        As in :func:`llm_bridge.emergence.metric.emergence`.
    batch_size : int
        Windows per forward pass.
    control_seed : int
        Seed of the weights of the ``"random-init"`` control (see
        :func:`llm_bridge.emergence.controls.random_init`).
    progress : bool
        Show progress bars for the capture and the metric.

    Returns
    -------
    EmergenceResult
        ``label`` names the control.

    Raises
    ------
    ValueError
        For an unknown ``control``, and as :func:`llm_bridge.emergence.capture.capture`
        and :func:`llm_bridge.emergence.metric.emergence` (ids outside the vocabulary, a
        layer out of range, estimator settings the data cannot support, ...).

    Examples
    --------
    >>> import tempfile
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(13, seed=0)
    >>> data = build_dataset(lm, "icl", shots=2, n=200, rng=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     result = run_experiment(lm, data, tmp, layers=[1], control="random-init",
    ...                             n_seeds=2, dim=4, rng=0)
    >>> result.label, result.layers, result.macro.shape
    ('random-init', (1,), (1, 4, 2))
    """
    check.choice("control", control, CONTROLS)
    model = random_init(lm, seed=control_seed) if control == "random-init" else lm
    if control == "near-identity":
        from .capture import _check_layers, blocks

        chosen = list(_check_layers(layers, len(blocks(model.model))))
        context = near_identity(model, chosen)
        # a different name, so that a stored capture of the intact model is not reused
        model = dataclasses.replace(model, name=f"{model.name} (near-identity blocks)")
    else:
        context = contextlib.nullcontext()
    with context:
        reps = capture(model, data, Path(out_dir), layers=layers, batch_size=batch_size,
                       progress=progress)
    logger.info("captured %s in %.1f s", reps, reps.capture_seconds)
    return emergence(reps, dataset=data, estimator=estimator, n_seeds=n_seeds, rng=rng,
                     progress=progress, label=control, **options)
