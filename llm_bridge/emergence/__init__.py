r"""The representation-level emergence metric (information emergence, IE).

For block :math:`l` of a causal language model with input :math:`h_l` and output
:math:`h_{l+1}` (both captured with forward hooks), the per-position emergence is

.. math::

    E_l(t)=\mathrm{MI}\bigl(h^{(t)}_{l},h^{(t)}_{l+1}\bigr)
    -\frac{1}{t+1}\sum_{i\le t}\mathrm{MI}\bigl(h^{\mathrm{mi},i}_{l},h^{\mathrm{mi},i}_{l+1}\bigr)

in bits, where :math:`h^{(t)}` is the representation at position :math:`t` of a fixed-length
window (the macro variable) and :math:`h^{\mathrm{mi},i}` that of token :math:`i` fed to the
model alone, as the one-token sequence ``[tok]`` at position 0 with no BOS (the micro
variable); :math:`E(l)=E_l(T-1)`.  Windows are likewise fed without BOS, so at
:math:`t=0` the macro and micro variables coincide and :math:`E_l(0)=0`.

Modules
-------
``mi``        Gaussian (Ledoit-Wolf) and KSG estimators, the known-MI synthetic benchmark
``neural``    InfoNCE and MINE (torch), trained on one split and read out on another
``data``      category lists, natural-text windows, controls, plug-in prefix entropies
``capture``   block inputs/outputs by forward hooks, streamed to ``.npy`` files on disk
``metric``    :math:`E(l)` and :math:`E_l(t)` with bands over seeds
``controls``  near-identity blocks and randomly initialised copies of a model
``known_mi``  every estimator on correlated Gaussians of known MI
``experiment`` datasets and controls by name, capture + metric in one call

Names are imported lazily, so ``import llm_bridge.emergence`` does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "MIEstimate": "mi",
    "correlated_gaussians": "mi",
    "estimate_mi": "mi",
    "gaussian_mi": "mi",
    "ksg_mi": "mi",
    "ledoit_wolf": "mi",
    "ESTIMATORS": "mi",
    "infonce_mi": "neural",
    "mine_mi": "neural",
    "TokenDataset": "data",
    "category_lists": "data",
    "icl_lists": "data",
    "text_windows": "data",
    "Representations": "capture",
    "EmergenceResult": "metric",
    "emergence": "metric",
    "near_identity": "controls",
    "random_init": "controls",
    "known_mi_benchmark": "known_mi",
    "build_dataset": "experiment",
    "run_experiment": "experiment",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_bridge.emergence' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
