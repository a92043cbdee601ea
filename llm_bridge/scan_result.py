"""The result of a scan: the banded log-probability array plus everything that produced it.

The exchange format with :mod:`branching.transitions` is the banded array

.. math::

    \\texttt{logp}[k, s, W + d] = \\log P\\bigl(x^{(k,s)} \\mid \\theta_{k+d}\\bigr),
    \\qquad |d| \\le W = 2L_{\\max} - 1,

for the sample :math:`x^{(k,s)}` drawn at grid point :math:`\\theta_k`, with ``NaN`` where
:math:`k+d` falls outside the grid.  A :class:`ScanResult` also keeps the token ids, lengths,
prompt ids and seed, and for temperature scans the per-sample energy and score, so that every
indicator, window size, measure, Fisher information and heat capacity can be recomputed
without the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from branching.seeding import SeedRecord
from llm_bridge import cache, thermo

__all__ = ["ScanResult", "KINDS"]

KINDS = ("temperature", "prompt", "checkpoint")
_OPTIONAL = ("energy", "dlogp_dT", "conditional_fisher")


def band_mask(n_grid: int, half_width: int) -> np.ndarray:
    """``mask[k, W + d]`` is True where ``0 <= k + d < n_grid`` (shape ``(K, 2W+1)``)."""
    offsets = np.arange(-half_width, half_width + 1)
    target = np.arange(n_grid)[:, None] + offsets[None, :]
    return (target >= 0) & (target < n_grid)


@dataclass(frozen=True, eq=False, repr=False)
class ScanResult:
    """Samples and their log-probabilities along a control parameter.

    Attributes
    ----------
    kind : {"temperature", "prompt", "checkpoint"}
        What was scanned.
    grid : ndarray, shape (K,)
        The control parameter: temperatures, slot values (or their indices when the values
        are not numbers), or checkpoint positions; strictly increasing.
    logp : ndarray, shape (K, S, 2W+1)
        Banded log-probabilities (see the module docstring); ``W = 2 * L_max - 1``.
    tokens : ndarray of int64, shape (K, S, N)
        Sampled continuations; entries at or after ``lengths`` are padding.
    lengths : ndarray of int64, shape (K, S)
        Number of tokens that count in each continuation (``N`` unless it stopped at the
        end-of-sequence token, which is counted).
    prompt_ids : tuple of K int64 arrays
        The prompt token ids used at each grid point.
    labels : tuple of K str
        Human-readable names of the grid points (slot values, checkpoint names).
    model_name : str
        The model (or checkpoint family) that was scanned.
    params : dict
        JSON-serialisable parameters: ``n_samples``, ``n_tokens``, ``L_max``, ``eos``, and
        ``temperature`` for prompt and checkpoint scans, the prompt or template, ...
    seed : branching.seeding.SeedRecord or None
        The seed whose SeedSequence's ``K`` children drew the samples; passing it back as
        ``rng`` reproduces the scan.  An int, a sequence of ints or a ``to_dict()`` record
        is converted.
    energy : ndarray, shape (K, S), optional
        Temperature scans: :math:`E(x) = -\\log P(x \\mid T=1)`.
    dlogp_dT : ndarray, shape (K, S), optional
        Temperature scans: the score :math:`\\partial_T \\log P(x\\mid T)` at the sample's own
        temperature.
    conditional_fisher : ndarray, shape (K, S), optional
        Temperature scans: :math:`T^{-4} \\sum_i \\operatorname{Var}_{q_{T,i}}(z_i)`.
    cache_key : str, optional
        The on-disk cache key of the scan that produced it (ignored by ``==``).
    """

    kind: str
    grid: np.ndarray
    logp: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    prompt_ids: tuple
    labels: tuple
    model_name: str
    params: dict
    seed: SeedRecord | None
    energy: np.ndarray | None = None
    dlogp_dT: np.ndarray | None = None
    conditional_fisher: np.ndarray | None = None
    cache_key: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        grid = np.asarray(self.grid, dtype=float)
        logp = np.asarray(self.logp, dtype=float)
        tokens = np.asarray(self.tokens, dtype=np.int64)
        lengths = np.asarray(self.lengths, dtype=np.int64)
        if grid.ndim != 1 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
            raise ValueError(f"grid must be a finite, strictly increasing 1-d array, got {grid!r}")
        n_grid = len(grid)
        if logp.ndim != 3 or logp.shape[0] != n_grid or logp.shape[2] % 4 != 3:
            raise ValueError(
                f"logp must have shape (K={n_grid}, S, 4*L_max-1), got {logp.shape}"
            )
        n_samples = logp.shape[1]
        if tokens.ndim != 3 or tokens.shape[:2] != (n_grid, n_samples):
            raise ValueError(
                f"tokens must have shape ({n_grid}, {n_samples}, N), got {tokens.shape}"
            )
        if lengths.shape != (n_grid, n_samples) or np.any(lengths < 1) or np.any(
            lengths > tokens.shape[2]
        ):
            raise ValueError(
                f"lengths must have shape ({n_grid}, {n_samples}) with entries in "
                f"[1, {tokens.shape[2]}]"
            )
        inside = np.broadcast_to(band_mask(n_grid, logp.shape[2] // 2)[:, None, :], logp.shape)
        if np.any(np.isnan(logp[inside])) or np.any(np.isposinf(logp)):
            raise ValueError("logp must be a log-probability (not NaN, not +inf) inside the grid")
        if not np.all(np.isnan(logp[~inside])):
            raise ValueError("logp must be NaN where the neighbour lies outside the grid")
        if len(self.prompt_ids) != n_grid or len(self.labels) != n_grid:
            raise ValueError(f"prompt_ids and labels must have one entry per grid point ({n_grid})")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "logp", logp)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(
            self, "prompt_ids", tuple(np.asarray(p, dtype=np.int64) for p in self.prompt_ids)
        )
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        object.__setattr__(self, "params", dict(self.params))
        if self.seed is not None and not isinstance(self.seed, SeedRecord):
            seed = self.seed
            object.__setattr__(self, "seed", SeedRecord.from_dict(seed) if isinstance(seed, dict)
                               else SeedRecord(seed))
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value, dtype=float)
                if arr.shape != (n_grid, n_samples) or not np.all(np.isfinite(arr)):
                    raise ValueError(
                        f"{name} must be a finite array of shape ({n_grid}, {n_samples})"
                    )
                object.__setattr__(self, name, arr)

    # ---------------------------------------------------------------- shape
    @property
    def n_grid(self) -> int:
        """Number of grid points K."""
        return len(self.grid)

    @property
    def n_samples(self) -> int:
        """Samples per grid point S."""
        return self.logp.shape[1]

    @property
    def n_tokens(self) -> int:
        """Continuation length N."""
        return self.tokens.shape[2]

    @property
    def L_max(self) -> int:
        """Largest window size the band supports: ``logp.shape[2] == 4 * L_max - 1``."""
        return (self.logp.shape[2] + 1) // 4

    def __repr__(self) -> str:
        extra = ", thermo" if self.dlogp_dT is not None else ""
        return (
            f"ScanResult(kind={self.kind!r}, model={self.model_name!r}, K={self.n_grid}, "
            f"S={self.n_samples}, N={self.n_tokens}, L_max={self.L_max}, "
            f"grid=[{self.grid[0]:.4g}, {self.grid[-1]:.4g}], seed={self.seed}{extra})"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, ScanResult):
            return NotImplemented
        for f in fields(self):
            if f.name == "cache_key":
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "prompt_ids":
                if len(a) != len(b) or not all(np.array_equal(x, y) for x, y in zip(a, b)):
                    return False
            elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None

    # ---------------------------------------------------------------- analysis
    def _log_grid(self, log_grid: bool | None) -> bool:
        if log_grid is None:
            return self.kind == "temperature" and _is_geometric(self.grid)
        return bool(log_grid)

    def indicator(self, L: int = 1, measure: str = "linear", *, log_grid: bool | None = None):
        """The windowed g-dissimilarity indicator along the grid.

        Parameters
        ----------
        L : int
            Window size, ``1 <= L <= L_max``.
        measure : {"linear", "tv", "js"}
            The dissimilarity (see :func:`branching.transitions.indicator`).
        log_grid : bool, optional
            Place and normalise the indicator on a logarithmic axis.  By default this is
            True for a temperature scan on a geometric grid (constant ratio) and False
            otherwise.

        Returns
        -------
        branching.transitions.IndicatorCurve
        """
        from branching import validation, transitions

        L = validation.integer("L", L, low=1, high=self.L_max)
        return transitions.indicator(
            self.logp, self.grid, L=L, measure=measure, log_grid=self._log_grid(log_grid)
        )

    def indicators(self, L: int = 1, measures=("linear", "tv", "js"), *,
                   log_grid: bool | None = None) -> dict:
        """:meth:`indicator` for several measures: ``{measure: IndicatorCurve}``."""
        from branching import validation, transitions

        L = validation.integer("L", L, low=1, high=self.L_max)
        return transitions.indicators(
            self.logp, self.grid, L=L, measures=measures, log_grid=self._log_grid(log_grid)
        )

    def indicator_table(self, L: int = 1, measures=("linear", "tv", "js"), *,
                        log_grid: bool | None = None):
        """Tidy table of :meth:`indicators` (one row per measure and split)."""
        import pandas as pd

        curves = self.indicators(L=L, measures=measures, log_grid=log_grid)
        return pd.concat([c.to_pandas() for c in curves.values()], ignore_index=True)

    def _require_thermo(self, what: str) -> None:
        if self.kind != "temperature" or self.dlogp_dT is None:
            raise ValueError(f"{what} needs a temperature scan, got kind={self.kind!r}")

    def fisher_information(self, method: str = "conditional_variance") -> thermo.ThermoCurve:
        """Fisher information :math:`\\mathcal F(T_k)` from the stored per-sample scores.

        Parameters
        ----------
        method : {"conditional_variance", "score_squared"}
            :math:`T^{-4}\\sum_i \\mathbb E\\,\\operatorname{Var}_{q_{T,i}}(z_i)` (lower variance)
            or :math:`\\mathbb E[s_T^2]`; both unbiased (see :mod:`llm_bridge.thermo`).
        """
        from branching import validation

        self._require_thermo("fisher_information")
        validation.choice("method", method, {"conditional_variance", "score_squared"})
        extra = self.conditional_fisher if method == "conditional_variance" else None
        return thermo.fisher_information(self.dlogp_dT, self.grid, conditional_variance=extra)

    def heat_capacity(self) -> thermo.ThermoCurve:
        """Heat capacity :math:`C(T_k) = \\operatorname{Cov}_{T_k}(E, s_{T_k})` with errors."""
        self._require_thermo("heat_capacity")
        return thermo.heat_capacity(self.energy, self.dlogp_dT, self.grid)

    def to_pandas(self):
        """Tidy per-sample table: grid point, label, sample index, length, own log-probability,
        and for temperature scans the energy, score and conditional Fisher term."""
        import pandas as pd

        k_idx, s_idx = np.meshgrid(np.arange(self.n_grid), np.arange(self.n_samples), indexing="ij")
        half = self.logp.shape[2] // 2
        columns = {
            "kind": self.kind,
            "k": k_idx.ravel(),
            "grid": self.grid[k_idx].ravel(),
            "label": np.asarray(self.labels, dtype=object)[k_idx].ravel(),
            "sample": s_idx.ravel(),
            "length": self.lengths.ravel(),
            "logp": self.logp[:, :, half].ravel(),
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                columns[name] = value.ravel()
        return pd.DataFrame(columns)

    # ---------------------------------------------------------------- storage
    def save(self, path) -> Path:
        """Write the result to ``path`` (``.npz`` with JSON metadata), atomically."""
        arrays = {
            "grid": self.grid,
            "logp": self.logp,
            "tokens": self.tokens,
            "lengths": self.lengths,
            "prompt_ids_flat": np.concatenate(self.prompt_ids) if self.prompt_ids else
            np.zeros(0, dtype=np.int64),
            "prompt_ids_lengths": np.array([len(p) for p in self.prompt_ids], dtype=np.int64),
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        metadata = {
            "format": "llm_branching.ScanResult",
            "format_version": 2,
            "package_version": cache.package_version(),
            "kind": self.kind,
            "labels": list(self.labels),
            "model_name": self.model_name,
            "params": self.params,
            "seed": None if self.seed is None else self.seed.to_dict(),
            "cache_key": self.cache_key,
        }
        json.dumps(metadata)  # fail here, not half-way, if params are not JSON
        return cache.write_npz_atomic(path, arrays, metadata)

    @classmethod
    def load(cls, path) -> "ScanResult":
        """Read a result written by :meth:`save`."""
        arrays, meta = cache.read_npz(path)
        if meta.get("format") != "llm_branching.ScanResult":
            raise ValueError(f"path {str(path)!r} does not hold a ScanResult")
        cuts = np.cumsum(arrays["prompt_ids_lengths"])[:-1]
        prompt_ids = tuple(np.split(arrays["prompt_ids_flat"], cuts))
        return cls(
            kind=meta["kind"],
            grid=arrays["grid"],
            logp=arrays["logp"],
            tokens=arrays["tokens"],
            lengths=arrays["lengths"],
            prompt_ids=prompt_ids,
            labels=tuple(meta["labels"]),
            model_name=meta["model_name"],
            params=meta["params"],
            seed=_stored_seed(meta),
            cache_key=meta.get("cache_key"),
            **{name: arrays.get(name) for name in _OPTIONAL},
        )


def _stored_seed(meta: dict) -> SeedRecord | None:
    """The seed of a saved scan; format 1 kept the spawn key in the parameters."""
    seed = meta["seed"]
    if seed is None or isinstance(seed, dict):
        return None if seed is None else SeedRecord.from_dict(seed)
    return SeedRecord(seed, tuple(meta["params"].get("spawn_key", ())))


def _is_geometric(grid: np.ndarray) -> bool:
    """True when consecutive ratios are constant (and differences are not)."""
    if len(grid) < 3 or np.any(grid <= 0):
        return False
    ratios = grid[1:] / grid[:-1]
    steps = np.diff(grid)
    return bool(np.allclose(ratios, ratios[0], rtol=1e-6)) and not bool(
        np.allclose(steps, steps[0], rtol=1e-6)
    )
