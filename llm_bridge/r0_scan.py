r"""The reproduction number :math:`R_0` of a real list decoder along a control parameter.

:func:`r0_scan` runs :func:`~llm_bridge.listdecode.list_decode` at every point of a grid of

``"temperature"``
    the temperature :math:`T` of :math:`p_T=\operatorname{softmax}(z/T)`;
``"rule"``
    the parameter of the eligibility rule (``theta``, ``top_p`` or ``k``);
``"prompt"``
    a slot of a prompt template (``"Is {} larger than 42?"``), filled with each value;
``"checkpoint"``
    a sequence of models (training steps, model sizes, or synthetic models).

and collects the estimates into an :class:`R0Scan`, whose attributes ``x``, ``r0``,
``r0_se`` and ``r0_ci`` are the plain arrays a fit of the theory's threshold takes.  Whatever
shape :math:`R_0(x)` has is reported as measured: a point where no erroneous candidate was
expanded has an undefined :math:`R_0` (``defined`` is False and ``r0`` is ``nan`` there),
a point where the erroneous candidates had no eligible token has :math:`R_0=0`.
:meth:`R0Scan.crossings` locates every crossing of :math:`R_0=1` with a bootstrap interval.

Along temperature and rule parameter the model and prompts are the same at every point, so
up to ``_JOINT_POINTS`` points are decoded together (``listdecode._decode_many``):
each prompt runs through the model once, and the lists of all those points share the forward
batches -- the early depths, where each list holds a few candidates, fill one batch together.
The results are those of separate decodes (up to the rounding of batched matrix products).

With ``cache_dir`` every finished grid point is stored as soon as its group is done, under a
key of everything that determines it; a re-run resumes and returns finished points without
running the model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from branching import validation as check
from branching.seeding import SeedRecord, seed_sequence

from . import cache
from .eligibility import Nucleus, Threshold, TopK
from .listdecode import _decode_many
from .listdecode_result import ListDecodeResult

__all__ = ["CONTROLS", "Crossing", "R0Scan", "r0_scan"]

logger = logging.getLogger(__name__)

CONTROLS = ("temperature", "rule", "prompt", "checkpoint")

#: In-memory models up to this many parameters enter cache keys through a parameter hash.
#: Grid points decoded together: larger groups fill the forward batches better, smaller
#: ones lose less work to an interruption (a group is stored when all of it is done).
_JOINT_POINTS = 8
_HASHED_PARAMETERS = 10_000_000


@dataclass(frozen=True)
class Crossing:
    """A crossing of :math:`R_0 = 1` between two neighbouring defined grid points.

    Attributes
    ----------
    x : float
        Linear interpolation of :math:`R_0 - 1` between the two points.
    ci : (float, float)
        Bootstrap percentile interval: each replicate's crossing nearest to ``x``.
    direction : str
        ``"up"`` (R0 rises through 1 with x) or ``"down"``.
    found_fraction : float
        Fraction of replicates that have a crossing at all; when it is below the level the
        interval is not trustworthy.
    """

    x: float
    ci: tuple
    direction: str
    found_fraction: float


@dataclass(frozen=True, eq=False, repr=False)
class R0Scan:
    r""":math:`R_0` and the other branching parameters along a control parameter.

    Attributes
    ----------
    control : str
        One of :data:`CONTROLS`.
    x : ndarray, shape (n,)
        The grid.
    labels : tuple of str
        A label per grid point (slot value, checkpoint name, ...).
    r0, r0_se : ndarray, shape (n,)
        :math:`\hat R_0` and its bootstrap standard error; ``nan`` exactly where ``defined``
        is False.
    r0_ci : ndarray, shape (2, n)
        Percentile intervals (rows: low, high).
    defined : ndarray of bool, shape (n,)
        Whether any erroneous candidate was expanded at the point.
    immigration, immigration_se, delta, delta_se : ndarray, shape (n,)
    immigration_ci, delta_ci : ndarray, shape (2, n)
    dispersion_k : ndarray, shape (n,)
    dispersion_ci : ndarray, shape (2, n)
    n_erroneous_nodes, n_oracle_nodes : ndarray of int, shape (n,)
    points : tuple of ListDecodeResult
        The full run at every grid point.
    level : float
    """

    control: str
    x: np.ndarray
    labels: tuple
    points: tuple
    level: float

    def _stat(self, name):
        return np.array([getattr(p.estimates, name) for p in self.points], dtype=float)

    def _ci(self, name):
        return np.array([getattr(p.estimates, f"{name}_ci") for p in self.points],
                        dtype=float).T.reshape(2, len(self.points))

    @property
    def r0(self):
        return self._stat("r0")

    @property
    def r0_se(self):
        return self._stat("r0_se")

    @property
    def r0_ci(self):
        return self._ci("r0")

    @property
    def defined(self):
        return np.array([p.estimates.r0_defined for p in self.points], dtype=bool)

    @property
    def immigration(self):
        return self._stat("immigration")

    @property
    def immigration_se(self):
        return self._stat("immigration_se")

    @property
    def immigration_ci(self):
        return self._ci("immigration")

    @property
    def delta(self):
        return self._stat("delta")

    @property
    def delta_se(self):
        return self._stat("delta_se")

    @property
    def delta_ci(self):
        return self._ci("delta")

    @property
    def dispersion_k(self):
        return np.array([p.estimates.dispersion.k for p in self.points], dtype=float)

    @property
    def dispersion_ci(self):
        return np.array([p.estimates.dispersion.k_ci for p in self.points], dtype=float).T

    @property
    def n_erroneous_nodes(self):
        return np.array([p.estimates.n_erroneous_nodes for p in self.points], dtype=np.int64)

    @property
    def n_oracle_nodes(self):
        return np.array([p.estimates.n_oracle_nodes for p in self.points], dtype=np.int64)

    def crossings(self) -> list[Crossing]:
        r"""Every crossing of :math:`R_0 = 1` between neighbouring defined points.

        Returns
        -------
        list of Crossing
            Empty when :math:`R_0 - 1` keeps one sign (or fewer than two points are
            defined).

        Notes
        -----
        With :math:`s_i=\hat R_0(x_i)-1` over the defined points, a crossing lies between
        :math:`x_i` and :math:`x_j` (next defined point) when :math:`s_i s_j<0` or
        :math:`s_j=0`, at :math:`x_i + (x_j-x_i)\,s_i/(s_i-s_j)`.  Grid points are
        independent runs, so replicate ``b`` combines the ``b``-th bootstrap replicate of
        every point; its crossing nearest to the estimate enters the percentile interval.
        """
        defined = self.defined
        xs, r0 = self.x[defined], self.r0[defined]
        estimates = _crossings(xs, r0 - 1.0)
        if not estimates:
            return []
        boots = [p.estimates.r0_boot for p, d in zip(self.points, defined) if d]
        n_rep = min(len(b) for b in boots)
        replicates = np.array([b[:n_rep] for b in boots])  # (n_defined, n_rep)
        found = [_crossings(xs, replicates[:, b] - 1.0) for b in range(n_rep)]
        q = ((1.0 - self.level) / 2.0, (1.0 + self.level) / 2.0)
        out = []
        for x0, direction in estimates:
            nearest = [min(c, key=lambda item: abs(item[0] - x0))[0] for c in found if c]
            ci = (tuple(float(v) for v in np.quantile(nearest, q)) if nearest
                  else (math.nan, math.nan))
            out.append(Crossing(x=x0, ci=ci, direction=direction,
                                found_fraction=len(nearest) / max(n_rep, 1)))
        return out

    def to_pandas(self):
        """One row per grid point with every estimate, its standard error and interval."""
        import pandas as pd

        frame = pd.DataFrame({"control": self.control, "x": self.x, "label": self.labels,
                              "defined": self.defined})
        for name in ("r0", "immigration", "delta"):
            frame[name] = getattr(self, name)
            frame[f"{name}_se"] = getattr(self, f"{name}_se")
            ci = getattr(self, f"{name}_ci")
            frame[f"{name}_ci_low"], frame[f"{name}_ci_high"] = ci[0], ci[1]
        frame["dispersion_k"] = self.dispersion_k
        frame["dispersion_ci_low"], frame["dispersion_ci_high"] = self.dispersion_ci
        frame["n_erroneous_nodes"] = self.n_erroneous_nodes
        frame["n_oracle_nodes"] = self.n_oracle_nodes
        first = self.points[0]
        frame["rule"], frame["n_steps"], frame["cap"] = first.rule.name, first.n_steps, first.cap
        frame["n_prompts"] = [p.n_prompts for p in self.points]
        frame["temperature"] = [p.temperature for p in self.points]
        frame["rule_parameter"] = [p.rule.parameter for p in self.points]
        frame["model"] = [p.model_name for p in self.points]
        return frame

    def __repr__(self):
        shown = ", ".join(
            f"{x:g}: {r:.3g}" if d else f"{x:g}: undefined"
            for x, r, d in zip(self.x, self.r0, self.defined)
        )
        return (f"R0Scan(control={self.control!r}, n_points={len(self.x)}, r0={{{shown}}}, "
                f"crossings={[round(c.x, 4) for c in self.crossings()]})")


def _crossings(x: np.ndarray, s: np.ndarray) -> list[tuple[float, str]]:
    out = []
    for i in range(len(x) - 1):
        a, b = s[i], s[i + 1]
        if (a < 0 < b) or (a > 0 > b) or (b == 0 and a != 0):
            out.append((float(x[i] + (x[i + 1] - x[i]) * a / (a - b)), "up" if b > a else "down"))
    return out


# ======================================================================== inputs
def _grid(grid, control) -> np.ndarray:
    arr = check.array("grid", np.atleast_1d(grid), ndim=1)
    if arr.size == 0:
        raise ValueError("grid must contain at least one point, got none")
    if np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0))
        raise ValueError(f"grid must be strictly increasing; entries {i}, {i + 1} are "
                         f"{arr[i]!r}, {arr[i + 1]!r}")
    if control == "temperature" and np.any(arr <= 0):
        raise ValueError(f"grid (temperatures) must be > 0, got {arr.min()!r}")
    return arr


def _rule_at(rule, value):
    if isinstance(rule, Threshold):
        return Threshold(float(value))
    if isinstance(rule, Nucleus):
        return Nucleus(float(value))
    if float(value) != round(float(value)):
        raise ValueError(f"grid values of a top_k rule must be whole numbers, got {value!r}")
    return TopK(int(round(float(value))))


def _identity(item) -> dict:
    """What identifies a model or checkpoint in a cache key."""
    if hasattr(item, "vocab_size"):
        identity = {"name": str(item.name), "dtype": str(item.dtype),
                    "vocab_size": int(item.vocab_size),
                    "context_length": int(item.context_length)}
        files = cache.file_identity(str(item.name))
        if files is not None:
            identity["files"] = files
        elif 0 < item.n_parameters <= _HASHED_PARAMETERS:
            identity["parameters"] = cache.state_dict_digest(item.model.state_dict())
        return identity
    if isinstance(item, (str, os.PathLike)):
        return {"name": os.fspath(item), "files": cache.file_identity(item)}
    raise ValueError(f"a checkpoint must be a LanguageModel, a model id or a path, "
                     f"got {item!r:.80}")


def _plain(value):
    """JSON-ready form of prompts and oracles (arrays become lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ======================================================================== scan
def r0_scan(
    lm,
    prompts,
    *,
    control: str = "temperature",
    grid,
    rule,
    oracle="greedy",
    n_steps: int | None = None,
    temperature: float = 1.0,
    cap: int | None = 256,
    batch_size: int = 256,
    chat: bool = False,
    labels: Sequence | None = None,
    loader: Callable | None = None,
    bootstrap: str = "both",
    n_boot: int = 400,
    level: float = 0.95,
    rng=None,
    cache_dir=None,
    progress: bool = True,
) -> R0Scan:
    r"""List-decode a model at every point of a control grid and collect :math:`R_0(x)`.

    Parameters
    ----------
    lm : LanguageModel, or a sequence of checkpoints for ``control="checkpoint"``
        Checkpoints are :class:`~llm_bridge.models.LanguageModel` objects or anything
        ``loader`` accepts (model ids, directories), one per grid point; each is loaded
        when its point runs (and not at all when the point is cached).
    prompts : prompts as in :func:`~llm_bridge.listdecode.list_decode`, or for
        ``control="prompt"`` a template string with one ``{}`` slot (or a list of them)
    control : {"temperature", "rule", "prompt", "checkpoint"}
    grid : array_like, shape (n,)
        Strictly increasing control values: temperatures (> 0), rule parameters, slot
        values (each formatted into the template) or checkpoint positions.
    rule : Threshold, Nucleus or TopK
        The eligibility rule; with ``control="rule"`` its parameter is replaced by each
        grid value.
    oracle, n_steps, temperature, cap, batch_size, chat, bootstrap, n_boot, level
        As in :func:`~llm_bridge.listdecode.list_decode` (``temperature`` is the grid value
        when ``control="temperature"``).  ``batch_size`` is larger by default (256): the
        points decoded together fill the forward batches, and larger batches use the matrix
        products better.
    labels : sequence of str, optional
        A label per grid point (default: the grid values).
    loader : callable, optional
        ``loader(item) -> LanguageModel`` for checkpoints that are not loaded models
        (default :func:`llm_bridge.models.load_model`).
    rng : None, int, SeedSequence or Generator
        Grid point ``i`` uses the ``i``-th child of one root seed.
    cache_dir : path, optional
        Store every finished point there and reuse stored points.
    progress : bool
        Show a progress bar over grid points.

    Returns
    -------
    R0Scan

    Raises
    ------
    ValueError
        For a bad control, grid or rule, and everything :func:`list_decode` refuses.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> from llm_bridge.eligibility import Threshold
    >>> lm = tiny_model(8, seed=0)
    >>> scan = r0_scan(lm, [[1, 2], [3, 4]], grid=[0.5, 1.0, 2.0], rule=Threshold(0.15),
    ...                n_steps=3, n_boot=50, rng=0, progress=False)
    >>> scan.r0_ci.shape, bool(scan.defined.all())
    ((2, 3), True)
    """
    control = check.choice("control", control, CONTROLS)
    x = _grid(grid, control)
    n = x.size
    labels = tuple(f"{v:g}" for v in x) if labels is None else tuple(str(v) for v in labels)
    if len(labels) != n:
        raise ValueError(f"labels must have one entry per grid point ({n}), got {len(labels)}")
    if control == "checkpoint":
        checkpoints = list(lm)
        if len(checkpoints) != n:
            raise ValueError(f"lm must hold one checkpoint per grid point ({n}) with "
                             f"control='checkpoint', got {len(checkpoints)}")
    if control == "prompt":
        templates = [prompts] if isinstance(prompts, str) else list(prompts)
        if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
            raise ValueError(f"prompts must be a template with a '{{}}' slot (or a list of "
                             f"them) with control='prompt', got {prompts!r:.80}")
    if control == "rule":
        [_rule_at(rule, v) for v in x]
    root = seed_sequence(rng)
    children = np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key).spawn(n)
    from tqdm.auto import tqdm

    points: list = [None] * n
    pending = []  # (index, model, rule, temperature, prompts, cache path)
    for i in range(n):
        model = lm
        point_rule, point_temperature, point_prompts = rule, temperature, prompts
        if control == "temperature":
            point_temperature = float(x[i])
        elif control == "rule":
            point_rule = _rule_at(rule, x[i])
        elif control == "prompt":
            value = int(x[i]) if float(x[i]).is_integer() else float(x[i])
            point_prompts = [t.format(value) for t in templates]
        else:
            model = checkpoints[i]
        settings = {
            "rule": dataclasses.asdict(point_rule) | {"name": point_rule.name},
            "temperature": point_temperature, "n_steps": n_steps, "cap": cap,
            "chat": chat, "bootstrap": bootstrap, "n_boot": n_boot, "level": level,
            "seed": SeedRecord.from_seed_sequence(children[i]).to_dict(),
        }
        path = None
        if cache_dir is not None:
            key = cache.cache_key({"kind": "list_decode", "model": _identity(model),
                                   "prompts": _plain(point_prompts), "oracle": _plain(oracle),
                                   **settings})
            path = Path(cache_dir) / f"list_decode-{key[:24]}.npz"
            if path.is_file():
                logger.info("grid point %d from %s", i, path)
                points[i] = ListDecodeResult.load(path)
                continue
        pending.append((i, model, point_rule, point_temperature, point_prompts, path))
    # points that share the model and the prompts (temperature, rule) are decoded together
    group = _JOINT_POINTS if control in ("temperature", "rule") else 1
    common = dict(oracle=oracle, n_steps=n_steps, cap=cap, batch_size=batch_size, chat=chat,
                  bootstrap=bootstrap, n_boot=n_boot, level=level)
    with tqdm(total=n, initial=n - len(pending), disable=not progress,
              desc=f"R0 scan ({control})", unit="point") as bar:
        for start in range(0, len(pending), group):
            batch = pending[start:start + group]
            model = batch[0][1]
            if not hasattr(model, "vocab_size"):
                model = (loader or _default_loader)(model)
            results = _decode_many(
                model, batch[0][4], progress=False,
                settings=[(r, temp, children[i]) for i, _, r, temp, _, _ in batch], **common,
            )
            for (i, _, _, _, _, path), result in zip(batch, results):
                if path is not None:
                    result.save(path)
                points[i] = result
                bar.update()
    return R0Scan(control=control, x=x, labels=labels, points=tuple(points), level=level)


def _default_loader(item):
    from .models import load_model

    return load_model(item)


