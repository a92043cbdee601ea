r"""The emergence metric :math:`E_l(t)` and :math:`E(l)` from captured representations.

For every captured block :math:`l` and position :math:`t`:

.. math::

    \mathrm{macro}_l(t)=\mathrm{MI}\bigl(h^{(t)}_l;h^{(t)}_{l+1}\bigr),\qquad
    \mathrm{micro}_l(i)=\mathrm{MI}\bigl(h^{\mathrm{mi},i}_l;h^{\mathrm{mi},i}_{l+1}\bigr),

    E_l(t)=\mathrm{macro}_l(t)-\frac1{t+1}\sum_{i\le t}\mathrm{micro}_l(i),\qquad
    E(l)=E_l(T-1),

in bits, with any estimator of :mod:`llm_bridge.emergence.mi`.  Seed ``s`` of the macro and
micro estimates at ``(l, t)`` uses the same child seed (hence the same split), so where the
two variables coincide (``t = 0``: no BOS, causal attention) :math:`E_l(0)=0` exactly up to
the float32 difference of a batched and a single-token forward pass.  Bands are standard
deviations over the ``n_seeds`` values of :math:`E` computed seed by seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from branching import validation as check

from ._common import seed_of, seed_sequence
from .mi import ESTIMATORS, estimate_mi

__all__ = ["EmergenceResult", "emergence"]


@dataclass(frozen=True, repr=False)
class EmergenceResult:
    """Macro and micro MI of every captured block and position, per seed, in bits.

    Attributes
    ----------
    model_name, estimator : str
    options : dict
        Estimator settings.
    layers : tuple of int
    macro, micro : arrays of shape (n_layers, T, n_seeds)
        Held-out MI estimates, bits.
    prefix_entropy, token_entropy : arrays of shape (T,)
        Plug-in :math:`H(S_{\\le t})` and :math:`H(S_t)` of the dataset, bits.
    n : int
        Number of windows (the reference ceiling is :math:`\\log_2 n`).
    estimator_ceiling : float or None
        The estimator's own cap (``log2 K`` for InfoNCE, the KSG maximum), if any.
    dataset : str
        Dataset kind (``"category"``, ``"mixed"``, ``"text"``, ...).
    seed : int or None
    """

    model_name: str
    estimator: str
    options: dict
    layers: tuple
    macro: np.ndarray
    micro: np.ndarray
    prefix_entropy: np.ndarray
    token_entropy: np.ndarray
    n: int
    estimator_ceiling: float | None = None
    dataset: str = ""
    seed: int | None = None
    label: str = field(default="")

    @property
    def length(self) -> int:
        return int(self.macro.shape[1])

    @property
    def ceiling_bits(self) -> float:
        return math.log2(self.n)

    @property
    def reference(self) -> np.ndarray:
        """The value of :math:`E_l(t)` for injective blocks: prefix minus mean token entropy."""
        return self.prefix_entropy - np.cumsum(self.token_entropy) / np.arange(1, self.length + 1)

    def emergence(self) -> np.ndarray:
        """:math:`E_l(t)` per seed, shape ``(n_layers, T, n_seeds)``."""
        counts = np.arange(1, self.length + 1)[None, :, None]
        return self.macro - np.cumsum(self.micro, axis=1) / counts

    def per_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """:math:`E(l)` (last position): mean and standard deviation over seeds."""
        values = self.emergence()[:, -1, :]
        return values.mean(axis=1), _sd(values)

    def per_position(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """:math:`E_l(t)` for block ``layer``: mean and standard deviation over seeds."""
        if layer not in self.layers:
            raise ValueError(f"layer must be one of {list(self.layers)}, got {layer!r}")
        values = self.emergence()[self.layers.index(layer)]
        return values.mean(axis=1), _sd(values)

    def __repr__(self) -> str:
        mean, sd = self.per_layer()
        best = int(np.argmax(mean))
        return (f"EmergenceResult({self.model_name!r}, {self.dataset or 'data'}, "
                f"{self.estimator}: T={self.length}, n={self.n}, {len(self.layers)} blocks, "
                f"{self.macro.shape[2]} seeds; max E(l)={mean[best]:.2f}+-{sd[best]:.2f} bits "
                f"at block {self.layers[best]}; H(S)={self.prefix_entropy[-1]:.2f}, "
                f"log2 N={self.ceiling_bits:.2f})")

    def to_pandas(self):
        """Tidy table: one row per block, position and quantity (macro, micro, emergence)."""
        import pandas as pd

        rows = []
        for quantity, values in (("macro", self.macro), ("micro", self.micro),
                                 ("emergence", self.emergence())):
            for i, layer in enumerate(self.layers):
                for t in range(self.length):
                    v = values[i, t]
                    rows.append({"layer": layer, "position": t, "quantity": quantity,
                                 "bits": float(v.mean()), "sd": float(_sd(v)),
                                 "n_seeds": v.size})
        frame = pd.DataFrame(rows)
        frame["prefix_entropy_bits"] = self.prefix_entropy[frame["position"]]
        frame["ceiling_bits"] = self.ceiling_bits
        frame["estimator"] = self.estimator
        frame["model"] = self.model_name
        frame["dataset"] = self.dataset
        return frame

    def to_dict(self) -> dict:
        """JSON-ready contents."""
        out = asdict(self)
        for key in ("macro", "micro", "prefix_entropy", "token_entropy"):
            out[key] = np.asarray(out[key]).tolist()
        out["layers"] = list(self.layers)
        return out

    def save(self, path) -> Path:
        """Write the result as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path) -> "EmergenceResult":
        data = json.loads(Path(path).read_text())
        for key in ("macro", "micro", "prefix_entropy", "token_entropy"):
            data[key] = np.asarray(data[key], dtype=float)
        data["layers"] = tuple(data["layers"])
        return cls(**data)


def _sd(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.shape[-1] < 2:
        return np.zeros(values.shape[:-1]) if values.ndim > 1 else 0.0
    return values.std(axis=-1, ddof=1)


def emergence(reps, *, dataset=None, estimator: str = "gaussian", layers=None,
              n_seeds: int = 3, rng=None, progress: bool = False, label: str = "",
              **options) -> EmergenceResult:
    r"""Per-block, per-position emergence :math:`E_l(t)` from captured representations.

    Parameters
    ----------
    reps : Representations
        From :func:`llm_bridge.emergence.capture.capture`.
    dataset : TokenDataset, optional
        Only its ``kind`` is recorded; the entropies are computed from ``reps.ids``.
    estimator : {"gaussian", "ksg", "infonce", "mine"}
    layers : sequence of int, optional
        Subset of the captured blocks (default: all captured).
    n_seeds : int
        Seeds (random splits, and initialisations for the neural estimators), >= 1.
    rng : None, int, SeedSequence or Generator
    progress : bool
        Progress bar over blocks.
    label : str
        Free text kept with the result (e.g. the control's name).
    **options
        Estimator settings (``dim``, ``k``, ``steps``, ...).

    Returns
    -------
    EmergenceResult

    Raises
    ------
    ValueError
        For a layer that was not captured, or settings the estimator refuses (too few
        samples, ``dim`` above the training sample count, ...).

    Notes
    -----
    The micro estimate at position ``i`` does not depend on ``t``; it is computed once.
    Each ``(layer, position)`` gets its own child seed (spawned by index), so the result
    does not depend on which other blocks are analysed.

    Examples
    --------
    At position 0 the macro and micro variables coincide, so :math:`E_l(0) = 0`:

    >>> import tempfile
    >>> from llm_bridge.models import tiny_model
    >>> from llm_bridge.emergence.capture import capture
    >>> from llm_bridge.emergence.data import category_lists
    >>> data = category_lists({"a": [1, 2, 3], "b": [4, 5, 6]}, 0, shots=2, n=200, rng=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     reps = capture(tiny_model(7, seed=0), data, tmp, layers=[1])
    ...     result = emergence(reps, dataset=data, dim=4, n_seeds=2, rng=0)
    >>> result.macro.shape, bool(np.allclose(result.emergence()[:, 0], 0.0, atol=1e-3))
    ((1, 4, 2), True)
    """
    check.choice("estimator", estimator, ESTIMATORS)
    n_seeds = check.integer("n_seeds", n_seeds, low=1)
    if layers is None:
        layers = reps.layers
    layers = tuple(int(reps._layer(l)) for l in ([layers] if isinstance(layers, int) else layers))
    if not layers:
        raise ValueError("layers must name at least one captured block")
    seq = seed_sequence(rng)
    T = reps.length
    macro = np.empty((len(layers), T, n_seeds))
    micro = np.empty_like(macro)
    ceiling = None
    from tqdm.auto import tqdm

    for i, layer in enumerate(tqdm(layers, disable=not progress, desc="emergence", unit="block")):
        for t in range(T):
            for level, out in (("macro", macro), ("micro", micro)):
                # the same (fresh) child seed for both levels: identical splits
                child = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, layer, t))
                x, y = getattr(reps, level)(layer, t)
                est = estimate_mi(x, y, estimator=estimator, n_seeds=n_seeds, rng=child, **options)
                out[i, t] = est.values
                ceiling = est.ceiling_bits if est.ceiling_bits is not None else ceiling
                options_used = est.options
    ids = reps.ids
    from .data import TokenDataset

    data = TokenDataset(ids=ids, kind=getattr(dataset, "kind", ""))
    return EmergenceResult(
        model_name=reps.model_name, estimator=estimator, options=dict(options_used),
        layers=layers, macro=macro, micro=micro, prefix_entropy=data.prefix_entropy(),
        token_entropy=data.token_entropy(), n=reps.n, estimator_ceiling=ceiling,
        dataset=data.kind, seed=seed_of(seq), label=label,
    )
