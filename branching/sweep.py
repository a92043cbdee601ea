r"""Parameter sweeps: a grid of models -> a tidy table of statistics with standard errors.

A sweep evaluates a *task* at every point of a :class:`Grid` of
:class:`~branching.model.ListDecoderModel` parameters and collects the results in a
:class:`SweepResult`, a tidy table with one row per grid point and statistic.

Tasks
-----
A task is any picklable callable ``task(model, *, n_runs, rng) -> dict[str, (value, se)]``
mapping statistic names to an estimate and its standard error (finite, se >= 0).
``rng`` is the :class:`numpy.random.SeedSequence` of the grid point (a task normalises it
with ``np.random.default_rng``); ``n_runs`` is the sweep's number of Monte Carlo runs
(``None`` for exact tasks).  A task may define ``validate(model)``, raising ValueError for
models it cannot handle; it is called for every grid point before any work starts.  Its
identity (recorded in the store) is its ``name`` attribute if it has one, else its module
and qualified name.  Two tasks are built in: :class:`SimulationTask` (Monte Carlo, the
default) and :class:`ExactTask` (closed forms and recursions, ``se = 0``).

Reproducibility
---------------
Grid point ``i`` always receives the child seed ``SeedSequence(entropy,
spawn_key=root_key + (i,))`` of the sweep's root seed -- exactly what
``root.spawn(n)[i]`` would give.  Its result therefore depends only on the point, the task,
``n_runs`` and the sweep seed: not on the number of workers, the executor, the chunking,
the order in which chunks finish, or whether the sweep was interrupted and resumed.

Executors
---------
``workers`` is ``None`` (one local process per CPU), an int (that many local processes;
``1`` runs in this process), or an executor object: anything with a
``concurrent.futures``-style ``submit`` (a ``ThreadPoolExecutor``, a
``ProcessPoolExecutor``, a ``dask.distributed.Client``), or with an ordered ``map``
(e.g. ``multiprocessing.Pool``), or a plain map-like callable.  Dask is imported only when a
Dask client is passed.

Resumable store
---------------
With ``store=DIR`` every finished chunk of grid points is written atomically as
``chunk-<index>-<hash>.json`` through :class:`branching.store.Store`, where the hash covers
the chunk's grid points, the task, ``n_runs``, the seed and the chunk index, and the file
carries a SHA-256 digest of its content.  ``manifest.json`` records the sweep's
configuration; a re-run with the same configuration loads the finished chunks and computes
only the others, while a different configuration (or a damaged manifest) is refused with a
message naming the manifest.  A chunk file that is unreadable or whose content no longer
matches its digest is reported (a logged warning naming it) and recomputed.  An interruption
(Ctrl-C, a killed worker) loses no finished chunk.  Floats are stored with :func:`repr`,
which round-trips exactly, so a resumed table is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import numbers
import os
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import validation as check
from .cpus import available_cpus
from .model import ListDecoderModel
from .seeding import SeedRecord, seed_sequence
from .store import Store

__all__ = [
    "PARAMETERS",
    "Grid",
    "SimulationTask",
    "ExactTask",
    "SweepResult",
    "run_sweep",
]

logger = logging.getLogger(__name__)

#: Grid parameters, in the order used for table columns.
PARAMETERS = ("M", "eps", "r0", "T", "K", "delta", "eps_oracle", "law", "dispersion")

_FORMAT = 2


# --------------------------------------------------------------------------- grid
def _scalar(name: str, value):
    """A grid value as a plain Python scalar (JSON-serialisable, hashable)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"grid parameter {name} got a boolean value {value!r}")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"grid parameter {name} must be finite, got {value!r}")
        return value
    raise ValueError(
        f"grid parameter {name} must hold numbers, strings or None, got {check._show(value)}"
    )


def _values(name: str, values) -> tuple:
    """The values of one axis: a scalar becomes a single-valued axis."""
    if name not in PARAMETERS:
        raise ValueError(f"unknown grid parameter {name!r}; valid parameters are {list(PARAMETERS)}")
    if values is None or isinstance(values, (str, numbers.Number, np.generic)):
        values = [values]
    try:
        values = list(np.ravel(values)) if isinstance(values, np.ndarray) else list(values)
    except TypeError:
        raise ValueError(f"grid parameter {name} must be a value or a sequence of values, "
                         f"got {check._show(values)}") from None
    if not values:
        raise ValueError(f"grid parameter {name} has no values")
    return tuple(_scalar(name, v) for v in values)


@dataclass(frozen=True, repr=False)
class Grid:
    r"""A grid of model parameters: a cartesian product of axes, plus zipped groups.

    Parameters
    ----------
    axes : mapping of str to value or sequence
        Parameter name -> values; a scalar is a single value.  Names are those of
        :data:`PARAMETERS`: ``M``, ``T``, ``K``, ``delta``, ``eps_oracle``, ``law``,
        ``dispersion`` (as in :class:`~branching.model.ListDecoderModel`), and exactly one of
        ``eps`` and ``r0`` (``r0`` is converted to ``eps = r0 / M``).
    zipped : sequence of mappings, optional
        Groups of parameters that vary together: every mapping holds sequences of one common
        length, and each group acts as a single axis of the product.

    Notes
    -----
    The points are ``itertools.product`` over the axes in the order given (the last varies
    fastest), with each zipped group appended as one more axis.  ``M``, ``T`` and one of
    ``eps``/``r0`` are required.  :meth:`models` builds and validates every point's model;
    :func:`run_sweep` calls it before any work starts, so that an invalid point fails at
    once with its index, its parameters and the reason.

    Examples
    --------
    >>> from branching.sweep import Grid
    >>> grid = Grid({"M": 1000, "r0": [0.9, 1.0, 1.1], "T": [50, 100]})
    >>> len(grid), grid.points[1]
    (6, {'M': 1000, 'r0': 0.9, 'T': 100})
    >>> Grid({"T": 10}, zipped=[{"M": [10, 100], "eps": [0.05, 0.005]}]).points
    ({'T': 10, 'M': 10, 'eps': 0.05}, {'T': 10, 'M': 100, 'eps': 0.005})
    """

    axes: tuple = ()
    zipped: tuple = ()

    def __init__(self, axes: Mapping[str, Any] | None = None,
                 zipped: Sequence[Mapping[str, Sequence]] = ()):
        axes = {} if axes is None else axes
        if not isinstance(axes, Mapping):
            raise ValueError(f"axes must be a mapping of parameter name to values, got {check._show(axes)}")
        norm_axes = tuple((str(name), _values(str(name), values)) for name, values in axes.items())
        if isinstance(zipped, Mapping):
            zipped = [zipped]
        norm_zipped = []
        for g, group in enumerate(zipped):
            if not isinstance(group, Mapping) or not group:
                raise ValueError(f"zipped[{g}] must be a non-empty mapping of parameter name to "
                                 f"values, got {check._show(group)}")
            cols = tuple((str(name), _values(str(name), values)) for name, values in group.items())
            lengths = {name: len(values) for name, values in cols}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"zipped[{g}] needs sequences of one common length, got lengths {lengths}")
            norm_zipped.append(cols)
        object.__setattr__(self, "axes", norm_axes)
        object.__setattr__(self, "zipped", tuple(norm_zipped))
        names = self.parameters
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"grid parameters given more than once: {repeated}")
        if "eps" in names and "r0" in names:
            raise ValueError("give either eps or r0 (= M * eps) in a grid, not both")
        missing = [n for n in ("M", "T") if n not in names]
        if "eps" not in names and "r0" not in names:
            missing.append("eps or r0")
        if missing:
            raise ValueError(f"a grid needs the parameters {missing}; got {list(names)}")

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, in the order of the axes and zipped groups."""
        return tuple(n for n, _ in self.axes) + tuple(n for group in self.zipped for n, _ in group)

    @cached_property
    def points(self) -> tuple[dict, ...]:
        """Every grid point as a dict of parameter values, in sweep order."""
        factors = [[((name, v),) for v in values] for name, values in self.axes]
        for group in self.zipped:
            names = [n for n, _ in group]
            factors.append([tuple(zip(names, row)) for row in zip(*(v for _, v in group))])
        return tuple(dict(pair for part in combo for pair in part)
                     for combo in itertools.product(*factors))

    def __len__(self) -> int:
        return len(self.points)

    def model(self, index: int) -> ListDecoderModel:
        """The model of grid point ``index``; ValueError naming the point if it is invalid."""
        index = check.integer("index", index, low=0, high=len(self) - 1)
        return _build_model(self.points[index], index)

    def models(self) -> list[ListDecoderModel]:
        """Every point's model, validated; the first invalid point raises ValueError."""
        return [_build_model(point, i) for i, point in enumerate(self.points)]

    def to_dict(self) -> dict:
        """A JSON-serialisable description: ``{"axes": {...}, "zipped": [{...}, ...]}``."""
        return {"axes": {n: list(v) for n, v in self.axes},
                "zipped": [{n: list(v) for n, v in group} for group in self.zipped]}

    def __eq__(self, other):
        return isinstance(other, Grid) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self):
        def show(values):
            if len(values) == 1:
                return repr(values[0])
            if len(values) <= 4:
                return repr(list(values))
            return f"<{len(values)} values {values[0]!r}..{values[-1]!r}>"

        parts = [f"{n}={show(v)}" for n, v in self.axes]
        parts += ["zip(" + ", ".join(f"{n}={show(v)}" for n, v in g) + ")" for g in self.zipped]
        return f"Grid({', '.join(parts)}; {len(self)} points)"


def _build_model(point: Mapping, index: int) -> ListDecoderModel:
    params = dict(point)
    try:
        if "r0" in params:
            r0 = params.pop("r0")
            return ListDecoderModel.from_r0(params.pop("M"), r0, params.pop("T"), **params)
        return ListDecoderModel(**params)
    except (ValueError, TypeError) as err:
        raise ValueError(f"grid point {index} {dict(point)} is invalid: {err}") from None


# --------------------------------------------------------------------------- tasks
def _summary_pairs(summary: Mapping) -> dict:
    return {str(k): (float(v[0]), float(v[1])) for k, v in summary.items()}


@dataclass(frozen=True)
class SimulationTask:
    """Monte Carlo statistics of a model: ``simulate(model, n_runs, rng=rng).summary()``.

    Parameters
    ----------
    ceiling : int, optional
        Cap on the erroneous count passed to :func:`branching.simulate.simulate` (its
        default if ``None``); the ``capped_fraction`` statistic reports runs that reach it.
    threads : int
        Threads used by the simulator inside one task.  The default 1 leaves the
        parallelism to the sweep's workers; the result does not depend on it.

    Notes
    -----
    Returns the scalar statistics of :meth:`branching.simulate.SimulationResult.summary`
    (``mean_Z_T``, ``p_no_error``, ``accuracy``, ``oracle_survival``, ``compute``,
    ``p_no_output``, ``capped_fraction``) with their Monte Carlo standard errors.
    ``n_runs`` is required.
    """

    ceiling: int | None = None
    threads: int = 1

    @property
    def name(self) -> str:
        return repr(self)

    def validate(self, model: ListDecoderModel) -> None:
        """Refuse a list cap too large for exact pruning (see :func:`~branching.simulate.simulate`)."""
        from .simulate import MAX_CEILING

        if model.K is not None and model.M * (model.K + 1) > MAX_CEILING:
            raise ValueError(f"K must be at most {MAX_CEILING // model.M - 1} for exact pruning "
                             f"at M={model.M}, got {model.K}")

    def __call__(self, model: ListDecoderModel, *, n_runs: int | None, rng) -> dict:
        from .simulate import simulate

        if n_runs is None:
            raise ValueError("n_runs must be given (an integer >= 2) for a Monte Carlo sweep")
        kwargs = {} if self.ceiling is None else {"ceiling": self.ceiling}
        result = simulate(model, n_runs, rng=rng, threads=self.threads, quantile_levels=(),
                          **kwargs)
        return _summary_pairs(result.summary())


@dataclass(frozen=True)
class ExactTask:
    r"""Exact statistics of a model from :mod:`branching.exact` (standard errors 0).

    Notes
    -----
    Returns, with the names used by :class:`SimulationTask`: ``mean_Z_T``
    (:math:`\mathbb E Z_T`), ``variance_Z_T``, ``p_no_error`` (:math:`P(Z_T=0)`),
    ``accuracy``, ``oracle_survival`` (:math:`(1-\delta)^T`), ``compute``
    (:math:`\mathbb E\sum_{t<T}L_t`), and ``lineage_survival``, the survival probability of
    one erroneous lineage under the step-0 offspring law.  Models with a list cap ``K`` have
    no exact laws and are refused before the sweep starts.  ``n_runs`` and ``rng`` are
    ignored.
    """

    @property
    def name(self) -> str:
        return repr(self)

    def validate(self, model: ListDecoderModel) -> None:
        """Refuse models the exact routines do not cover (a list cap)."""
        if model.K is not None:
            raise ValueError(f"the exact task needs K=None (no list cap), got K={model.K}")

    def __call__(self, model: ListDecoderModel, *, n_runs: int | None = None, rng=None) -> dict:
        from . import exact

        return {
            "mean_Z_T": (float(exact.mean_path(model)[-1]), 0.0),
            "variance_Z_T": (float(exact.variance_path(model)[-1]), 0.0),
            "p_no_error": (float(exact.prob_no_error(model)), 0.0),
            "accuracy": (float(exact.accuracy(model)), 0.0),
            "oracle_survival": (float(exact.oracle_survival(model)), 0.0),
            "compute": (float(exact.compute_cost(model)), 0.0),
            "lineage_survival": (float(exact.survival_probability(model.offspring(0))), 0.0),
        }


_BUILTIN_TASKS = {"simulate": SimulationTask(), "exact": ExactTask()}


def _resolve_task(task) -> tuple[Callable, str]:
    """The task callable and its stable identity (recorded in the manifest and chunk hashes)."""
    if isinstance(task, str):
        check.choice("task", task, _BUILTIN_TASKS)
        task = _BUILTIN_TASKS[task]
    if not callable(task):
        raise ValueError(f"task must be 'simulate', 'exact' or a callable, got {check._show(task)}")
    return task, _task_identity(task)


def _task_identity(task) -> str:
    name = getattr(task, "name", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(task, partial):
        args = [repr(a) for a in task.args] + [f"{k}={v!r}" for k, v in sorted(task.keywords.items())]
        return f"partial({_task_identity(task.func)}, {', '.join(args)})"
    qualname = getattr(task, "__qualname__", None)
    if qualname is not None and "<" not in qualname:
        return f"{task.__module__}.{qualname}"
    text = repr(task)
    if " at 0x" in text or "<" in (qualname or ""):
        raise ValueError(
            f"task {text} has no stable identity; use a module-level function or give the "
            "callable a string attribute 'name'"
        )
    return text


def _checked_statistics(stats, index: int) -> dict:
    if not isinstance(stats, Mapping) or not stats:
        raise ValueError(f"the task returned {check._show(stats)} at grid point {index}; "
                         "expected a non-empty dict statistic -> (value, se)")
    out = {}
    for name, pair in stats.items():
        try:
            value, se = pair
            value, se = float(value), float(se)
        except (TypeError, ValueError):
            raise ValueError(f"statistic {name!r} at grid point {index} must be a pair "
                             f"(value, se) of numbers, got {check._show(pair)}") from None
        if not (math.isfinite(value) and math.isfinite(se) and se >= 0):
            raise ValueError(f"statistic {name!r} at grid point {index} is ({value!r}, {se!r}); "
                             "the value must be finite and se a finite number >= 0")
        out[str(name)] = (value, se)
    return out


def _run_chunk(task, points, indices, n_runs, entropy, spawn_key) -> list[dict]:
    """Evaluate ``task`` at some grid points (runs in a worker; must stay picklable)."""
    results = []
    for index, point in zip(indices, points):
        model = _build_model(point, index)
        seed = np.random.SeedSequence(entropy, spawn_key=tuple(spawn_key) + (index,))
        try:
            stats = task(model, n_runs=n_runs, rng=seed)
        except ValueError as err:
            raise ValueError(f"the task failed at grid point {index} {point}: {err}") from err
        results.append(_checked_statistics(stats, index))
    return results


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, repr=False, eq=False)
class SweepResult:
    """The tidy table of a sweep: one row per grid point and statistic.

    Attributes
    ----------
    grid : Grid
        The grid that was swept.
    task : str
        Identity of the task.
    n_runs : int or None
        Monte Carlo runs per grid point.
    seed : SeedRecord
        The root seed; grid point ``i`` used
        ``SeedSequence(seed.entropy, spawn_key=seed.spawn_key + (i,))``.
    point, statistic, value, se : numpy arrays
        The table's columns: grid-point index, statistic name, estimate, standard error.
    """

    grid: Grid
    task: str
    n_runs: int | None
    seed: SeedRecord
    point: np.ndarray = field(repr=False)
    statistic: np.ndarray = field(repr=False)
    value: np.ndarray = field(repr=False)
    se: np.ndarray = field(repr=False)

    def __post_init__(self):
        for column in (self.point, self.statistic, self.value, self.se):
            column.setflags(write=False)

    @property
    def statistics(self) -> tuple[str, ...]:
        """Statistic names, in order of first appearance."""
        return tuple(dict.fromkeys(self.statistic.tolist()))

    def values(self, statistic: str) -> tuple[np.ndarray, np.ndarray]:
        """``(value, se)`` of one statistic at every grid point, in grid order."""
        check.choice("statistic", statistic, self.statistics)
        rows = self.statistic == statistic
        if np.count_nonzero(rows) != len(self.grid):
            raise ValueError(f"statistic {statistic!r} is missing at some grid points")
        order = np.argsort(self.point[rows], kind="stable")
        return self.value[rows][order], self.se[rows][order]

    def curves(self, statistic: str, *, x: str = "r0", by: str = "T") -> tuple[np.ndarray, dict]:
        """One curve of ``statistic`` against ``x`` for each value of ``by``.

        Returns ``(x_values, {by_value: (value, se)})`` with ``x_values`` increasing.  Every
        other parameter must be constant and every (x, by) pair present exactly once; the
        parameter ``r0`` (or ``eps``) is derived from the model when the grid gives the other.
        """
        value, se = self.values(statistic)
        columns = self.parameter_columns()
        for name in (x, by):
            if name not in columns:
                raise ValueError(f"{name!r} is not a grid parameter; have {list(columns)}")
        others = [n for n in self.grid.parameters if n not in (x, by) and n not in ("eps", "r0")]
        for name in others:
            if len(set(columns[name])) > 1:
                raise ValueError(f"curves() needs {name} constant; the grid has several values")
        xs = np.array(sorted(set(columns[x])), dtype=float)
        curves = {}
        for key in sorted(set(columns[by]), key=lambda v: (v is None, v)):
            rows = [i for i, b in enumerate(columns[by]) if b == key]
            xr = np.array([columns[x][i] for i in rows], dtype=float)
            order = np.argsort(xr)
            if len(rows) != len(xs) or not np.array_equal(xr[order], xs):
                raise ValueError(f"the curve {by}={key!r} does not cover every {x} exactly once")
            curves[key] = (value[rows][order], se[rows][order])
        return xs, curves

    def parameter_columns(self) -> dict[str, list]:
        """Parameter columns per grid point (r0 and eps both, whichever the grid gave)."""
        points = self.grid.points
        columns = {name: [p[name] for p in points] for name in self.grid.parameters}
        derived = "r0" if "eps" in columns else "eps"
        models = self.grid.models()
        columns[derived] = [m.r0 if derived == "r0" else m.eps for m in models]
        return {name: columns[name] for name in PARAMETERS if name in columns}

    def _rows(self):
        columns = self.parameter_columns()
        names = list(columns)
        for i, s, v, e in zip(self.point.tolist(), self.statistic.tolist(),
                              self.value.tolist(), self.se.tolist()):
            yield [columns[n][i] for n in names] + [i, s, v, e]

    def column_names(self) -> list[str]:
        """Columns of the tidy table: parameters, ``point``, ``statistic``, ``value``, ``se``."""
        return list(self.parameter_columns()) + ["point", "statistic", "value", "se"]

    def to_pandas(self):
        """The tidy table as a :class:`pandas.DataFrame` (pandas is imported here)."""
        import pandas as pd

        return pd.DataFrame(list(self._rows()), columns=self.column_names())

    def to_csv(self, path) -> Path:
        """Write the tidy table as CSV (floats written with ``repr``, exact on reading)."""
        path = Path(path)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.column_names())
            for row in self._rows():
                writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v
                                 for v in row])
        return path

    def to_parquet(self, path) -> Path:
        """Write the tidy table as Parquet; needs the optional dependency ``pyarrow``."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                "to_parquet needs pyarrow, which is not installed; `pip install pyarrow`, "
                "or write CSV with to_csv"
            ) from None
        names = self.column_names()
        columns = list(zip(*self._rows())) or [()] * len(names)
        pq.write_table(pa.table({n: list(c) for n, c in zip(names, columns)}), str(path))
        return Path(path)

    def __repr__(self):
        stats = ", ".join(self.statistics)
        return (f"SweepResult({self.grid!r}, task={self.task}, n_runs={self.n_runs}, "
                f"seed={self.seed.entropy}, statistics=[{stats}], rows={len(self.value)})")


# --------------------------------------------------------------------------- seeds and store
def _root_seed(rng, stored: dict | None) -> SeedRecord:
    """The sweep's root seed: ``rng`` by :func:`~branching.seeding.seed_sequence`, or -- with
    ``rng=None`` -- the seed recorded in the store being resumed."""
    if rng is None and stored is not None:
        logger.info("resuming with the seed recorded in the store: %s", stored)
        return SeedRecord.from_dict(stored)
    return SeedRecord.from_seed_sequence(seed_sequence(rng))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class _Store:
    """The resumable on-disk store of one sweep: one verified JSON entry per chunk."""

    def __init__(self, directory, config: dict):
        self.entries = Store(directory, config)
        self.dir = self.entries.dir

    @staticmethod
    def stored_seed(directory) -> dict | None:
        config = Store.read_manifest(directory)
        return None if config is None else config.get("seed")

    def load(self, chunk: int, key: str, indices: list[int]) -> list[dict] | None:
        name = f"chunk-{chunk:06d}-{key}"
        payload = self.entries.get_json(name)
        if payload is None:
            return None
        try:
            if payload["key"] != key or payload["indices"] != indices:
                raise ValueError("its contents belong to another chunk")
            return [{k: (float(v), float(e)) for k, (v, e) in r.items()} for r in payload["results"]]
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("recomputing chunk file %s: %s", self.entries.path(name, ".json"), err)
            return None

    def save(self, chunk: int, key: str, indices: list[int], results: list[dict]) -> None:
        payload = {"chunk": chunk, "key": key, "indices": indices,
                   "results": [{k: list(v) for k, v in r.items()} for r in results]}
        self.entries.put_json(f"chunk-{chunk:06d}-{key}", payload)


# --------------------------------------------------------------------------- executors
def _is_dask_client(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "gather")


def _execute(jobs: list[tuple[int, tuple]], workers, on_done) -> None:
    """Run ``_run_chunk(*args)`` for every ``(chunk, args)`` and call ``on_done(chunk, result)``.

    ``on_done`` runs in this process as each chunk finishes, so finished chunks are saved
    even if a later one fails or the sweep is interrupted.
    """
    if not jobs:
        return
    if workers is None or isinstance(workers, numbers.Integral):
        n = available_cpus() if workers is None else check.integer("workers", workers, low=1)
        n = min(n, len(jobs))
        if n == 1:
            for chunk, args in jobs:
                on_done(chunk, _run_chunk(*args))
            return
        pool = concurrent.futures.ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("spawn"))
        try:
            _execute_futures(pool, jobs, on_done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    elif _is_dask_client(workers):
        _execute_dask(workers, jobs, on_done)
    elif hasattr(workers, "submit"):
        _execute_futures(workers, jobs, on_done)
    elif hasattr(workers, "map") or callable(workers):
        mapper = workers.map if hasattr(workers, "map") else workers
        results = mapper(_call_chunk, [args for _, args in jobs])
        for (chunk, _), result in zip(jobs, results):
            on_done(chunk, result)
    else:
        raise ValueError(
            "workers must be None, an int >= 1, an executor with submit() or map(), "
            f"or a map-like callable; got {check._show(workers)}"
        )


def _call_chunk(args: tuple) -> list[dict]:
    return _run_chunk(*args)


def _execute_futures(executor, jobs, on_done) -> None:
    futures = {executor.submit(_run_chunk, *args): chunk for chunk, args in jobs}
    try:
        for future in concurrent.futures.as_completed(futures):
            on_done(futures[future], future.result())
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _execute_dask(client, jobs, on_done) -> None:
    from distributed import as_completed

    futures = {client.submit(_run_chunk, *args, pure=False): chunk for chunk, args in jobs}
    try:
        for future in as_completed(list(futures)):
            on_done(futures[future], future.result())
    except BaseException:
        client.cancel(list(futures))
        raise


# --------------------------------------------------------------------------- the sweep
def run_sweep(
    grid: Grid,
    task: str | Callable = "simulate",
    *,
    n_runs: int | None = None,
    rng=None,
    workers=None,
    store=None,
    progress: bool = True,
    chunk_points: int = 1,
) -> SweepResult:
    """Evaluate ``task`` at every grid point; reproducible, parallel and resumable.

    Parameters
    ----------
    grid : Grid
        The parameter grid.  Every point's model is built and validated before any work
        starts; an invalid point raises ValueError naming its index, parameters and reason.
    task : {"simulate", "exact"} or callable
        ``task(model, *, n_runs, rng) -> {statistic: (value, se)}`` (see the module notes);
        ``"simulate"`` is :class:`SimulationTask`, ``"exact"`` is :class:`ExactTask`.
    n_runs : int, optional
        Monte Carlo runs per grid point, passed to the task (required by ``"simulate"``).
    rng : None, int, SeedSequence or Generator
        Root seed of the sweep.  ``None`` takes fresh entropy -- or, when resuming from a
        store, the seed recorded there.  The seed actually used is in ``result.seed``.
    workers : None, int, executor or map-like callable
        ``None``: one local process per CPU; an int: that many local processes (1: run in
        this process); or a ``concurrent.futures`` executor, a ``dask.distributed.Client``,
        an object with an ordered ``map``, or a map-like callable.
    store : path, optional
        Directory for the resumable store (created if needed).
    progress : bool
        Show a progress bar (``tqdm.auto``).
    chunk_points : int
        Grid points per chunk (unit of work and of storage).

    Returns
    -------
    SweepResult
        The tidy table; identical for any ``workers``, executor and interruption history.

    Examples
    --------
    >>> from branching.sweep import Grid, run_sweep
    >>> def mean_offspring(model, *, n_runs, rng):
    ...     return {"r0": (model.r0, 0.0)}
    >>> result = run_sweep(Grid({"M": 10, "eps": [0.05, 0.1], "T": 5}), mean_offspring,
    ...                    rng=1, workers=1, progress=False)
    >>> result.values("r0")[0]
    array([0.5, 1. ])
    """
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a Grid, got {check._show(grid)}")
    task, task_name = _resolve_task(task)
    if n_runs is not None:
        n_runs = check.integer("n_runs", n_runs, low=2 if isinstance(task, SimulationTask) else 1)
    elif isinstance(task, SimulationTask):
        raise ValueError("n_runs must be given (an integer >= 2) for a Monte Carlo sweep")
    chunk_points = check.integer("chunk_points", chunk_points, low=1)
    if workers is not None and isinstance(workers, numbers.Integral):
        check.integer("workers", workers, low=1)
    models = grid.models()  # validate every point before any work starts
    validate = getattr(task, "validate", None)
    if callable(validate):
        for i, model in enumerate(models):
            try:
                validate(model)
            except ValueError as err:
                raise ValueError(f"grid point {i} {grid.points[i]} is invalid: {err}") from None

    seed = _root_seed(rng, _Store.stored_seed(store) if store is not None else None)
    points = [dict(p) for p in grid.points]
    config = json.loads(json.dumps({
        "format": _FORMAT, "task": task_name, "n_runs": n_runs, "seed": seed.to_dict(),
        "chunk_points": chunk_points, "points": points,
    }))
    disk = _Store(store, config) if store is not None else None

    n_chunks = math.ceil(len(points) / chunk_points)
    results: dict[int, list[dict]] = {}
    jobs, keys, spans = [], {}, {}
    for c in range(n_chunks):
        indices = list(range(c * chunk_points, min((c + 1) * chunk_points, len(points))))
        chunk_pts = [points[i] for i in indices]
        keys[c] = _digest({"points": chunk_pts, "task": task_name, "n_runs": n_runs,
                           "seed": seed.to_dict(), "chunk": c})
        spans[c] = indices
        loaded = disk.load(c, keys[c], indices) if disk is not None else None
        if loaded is not None:
            results[c] = loaded
        else:
            jobs.append((c, (task, chunk_pts, indices, n_runs, seed.entropy, seed.spawn_key)))
    if disk is not None and results:
        logger.info("store %s: %d of %d chunks already finished", disk.dir, len(results), n_chunks)

    from tqdm.auto import tqdm

    done_points = sum(len(spans[c]) for c in results)
    with tqdm(total=len(points), initial=done_points, disable=not progress,
              desc="sweep", unit="point") as bar:
        def on_done(chunk: int, chunk_results: list[dict]) -> None:
            if disk is not None:
                disk.save(chunk, keys[chunk], spans[chunk], chunk_results)
            results[chunk] = chunk_results
            bar.update(len(spans[chunk]))

        _execute(jobs, workers, on_done)

    rows = [(i, name, v, e)
            for c in range(n_chunks)
            for i, stats in zip(spans[c], results[c])
            for name, (v, e) in stats.items()]
    point, statistic, value, se = zip(*rows)
    return SweepResult(
        grid=grid, task=task_name, n_runs=n_runs, seed=seed,
        point=np.array(point, dtype=np.int64), statistic=np.array(statistic, dtype=object),
        value=np.array(value, dtype=float), se=np.array(se, dtype=float),
    )
