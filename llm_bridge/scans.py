"""Temperature, prompt-slot and checkpoint scans of a real language model.

A scan walks a grid :math:`\\theta_1 < \\dots < \\theta_K` of a control parameter, draws
:math:`S` continuations of :math:`N` tokens at every grid point by exact ancestral sampling,
and scores every sample at the neighbouring grid points :math:`|k' - k| \\le W = 2L_{\\max}-1`
by teacher forcing.  The result is the banded array
``logp[k, s, W + d] = log P(x^{(k,s)} | theta_{k+d})`` that :mod:`branching.transitions` turns
into indicator curves (see :class:`~llm_bridge.scan_result.ScanResult`).

* **Temperature.**  The logits do not depend on :math:`T`, so one forward pass per sample
  serves every temperature of its window; the same pass gives the sequence energy
  :math:`E(x) = -\\log P(x\\mid T=1)` and the score :math:`\\partial_T\\log P(x\\mid T)`, from
  which :mod:`llm_bridge.thermo` estimates the Fisher information and the heat capacity.
* **Prompt slot.**  Prompt :math:`c_k` is a template filled with the k-th value; samples drawn
  after :math:`c_k` are re-scored after :math:`c_{k'}`.  Scoring is grouped by the scoring
  prompt, so prompts of different token lengths never share a padded batch.
* **Checkpoint.**  Checkpoint :math:`k` is loaded exactly once; a sliding window of the last
  :math:`W+1` loaded checkpoints is kept so that each pair :math:`|k-k'| \\le W` is scored in
  both directions while both are in memory.

Every grid point draws from its own child of one :class:`numpy.random.SeedSequence`, so a scan
is reproducible from its seed.  With ``cache_dir`` the result is stored under a key of
everything that determines it, and a repeated call returns it without touching the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import numbers
import os
import string
from collections.abc import Callable, Sequence

import numpy as np

from branching import validation
from branching.seeding import SeedRecord, seed_sequence
from llm_bridge import cache, thermo
from llm_bridge.scan_result import ScanResult

__all__ = [
    "check_template",
    "checkpoint_scan",
    "log_temperature_grid",
    "prompt_scan",
    "state_dict_loader",
    "temperature_scan",
    "validate_grid",
]

logger = logging.getLogger(__name__)

#: Elements of the float64 logits block (B x N x V) processed at once in temperature scans.
_LOGITS_BLOCK = 2**23

#: In-memory models up to this size enter the cache key through a hash of their parameters.
_HASHED_PARAMETERS = 10_000_000


# ============================================================================ grids
def validate_grid(name: str, grid, *, L_max: int, positive: bool = False) -> np.ndarray:
    """Check a scan grid and return it as a float64 array.

    Parameters
    ----------
    name : str
        Parameter name used in error messages.
    grid : array_like, shape (K,)
        Grid values; must be finite and strictly increasing (and > 0 when ``positive``).
    L_max : int
        Largest window the scan must support; an indicator value needs ``2 * L`` grid points,
        so ``K >= 2 * L_max``.
    positive : bool
        Require every value > 0 (temperatures).

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        If the grid is not a one-dimensional array of finite numbers, has a value <= 0
        when ``positive``, is not strictly increasing, or has fewer than ``2 * L_max``
        points; the message names ``name``.

    Examples
    --------
    >>> validate_grid("temperatures", [0.5, 1.0, 1.5, 2.0], L_max=2, positive=True)
    array([0.5, 1. , 1.5, 2. ])
    >>> validate_grid("temperatures", [1.0, 0.5], L_max=1)
    Traceback (most recent call last):
    ...
    ValueError: temperatures must be strictly increasing; entries 0, 1 are 1.0, 0.5
    """
    arr = validation.array(name, grid, ndim=1)
    if positive and np.any(arr <= 0):
        i = int(np.argmax(arr <= 0))
        raise ValueError(
            f"{name} must be > 0 (T = 0 is greedy decoding); entry {i} is {float(arr[i])!r}"
        )
    if np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0))
        raise ValueError(
            f"{name} must be strictly increasing; entries {i}, {i + 1} are "
            f"{float(arr[i])!r}, {float(arr[i + 1])!r}"
        )
    if len(arr) < 2 * L_max:
        raise ValueError(
            f"{name} has {len(arr)} points; a window of L_max={L_max} needs at least "
            f"{2 * L_max} (2 * L_max) for one indicator value"
        )
    return arr


def log_temperature_grid(lo: float, hi: float, K: int) -> np.ndarray:
    """``K`` temperatures from ``lo`` to ``hi`` with a constant ratio.

    A logarithmic grid resolves low-temperature transitions (near :math:`T \\approx 0.02` for
    small models) without wasting points at high temperature.

    Parameters
    ----------
    lo, hi : float
        End points, ``0 < lo < hi``.
    K : int
        Number of points, ``K >= 2``.

    Returns
    -------
    ndarray, shape (K,)
        :math:`T_k = lo\\,(hi/lo)^{k/(K-1)}`.

    Examples
    --------
    >>> log_temperature_grid(0.01, 1.0, 3)
    array([0.01, 0.1 , 1.  ])
    """
    lo = validation.real("lo", lo, low=0.0, low_open=True)
    hi = validation.real("hi", hi, low=lo, low_open=True)
    K = validation.integer("K", K, low=2)
    grid = np.geomspace(lo, hi, K)
    grid[0], grid[-1] = lo, hi
    return grid


# ============================================================================ helpers
def _grid_generators(root: np.random.SeedSequence, n: int) -> list[np.random.Generator]:
    """One independent Generator per grid point (children of a copy of ``root``)."""
    fresh = np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key)
    return [np.random.default_rng(child) for child in fresh.spawn(n)]


def _prompt_ids(lm, prompt, name: str = "prompt") -> np.ndarray:
    """Token ids of ``prompt``: a string (encoded with the model's tokenizer) or ids."""
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError(f"{name} must be a non-empty string or token-id sequence, got ''")
        ids = np.asarray(lm.encode(prompt), dtype=np.int64).ravel()
    else:
        try:
            ids = np.asarray(prompt)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a string or a sequence of token ids") from None
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(
                f"{name} must be a string or a 1-d sequence of token ids, got {prompt!r}"
            )
        ids = ids.astype(np.int64)
    if ids.size == 0:
        raise ValueError(f"{name} must contain at least one token, got {prompt!r}")
    if np.any(ids < 0) or np.any(ids >= lm.vocab_size):
        raise ValueError(
            f"{name} token ids must lie in [0, {lm.vocab_size - 1}], got {ids.min()}..{ids.max()}"
        )
    return ids


def _check_context(lm, prompt_ids: np.ndarray, n_tokens: int, name: str = "n_tokens") -> None:
    total = len(prompt_ids) + n_tokens
    if lm.context_length is not None and total > lm.context_length:
        raise ValueError(
            f"{name}={n_tokens} with a prompt of {len(prompt_ids)} tokens needs {total} positions; "
            f"the model's context length is {lm.context_length} (prompt + n_tokens must be <= it)"
        )


def _model_identity(lm) -> dict:
    """What identifies a loaded model for the cache key.

    Name, dtype, vocabulary, context length and EOS token, plus: for the bundled default or a
    local directory / GGUF file, the size and mtime of its files; for a model of at most
    ``_HASHED_PARAMETERS`` parameters (tiny test models, small in-memory copies), a hash of
    its parameters; for a larger hub model, its id alone.
    """
    from llm_bridge import models

    identity = {
        "name": str(lm.name),
        "dtype": str(lm.dtype),
        "vocab_size": int(lm.vocab_size),
        "context_length": int(lm.context_length),
        "eos_token_id": lm.eos_token_id,
    }
    if lm.name == models.DEFAULT_MODEL_NAME:
        source = os.path.join(*models.default_model_path())
    else:
        source = str(lm.name)
    files = cache.file_identity(source)
    if files is not None:
        identity["files"] = files
    elif lm.n_parameters <= _HASHED_PARAMETERS:
        identity["parameters"] = cache.state_dict_digest(lm.model.state_dict())
    return identity


def _scan_params(n_samples, n_tokens, L_max, eos, batch_size) -> tuple[int, int, int, str, int]:
    n_samples = validation.integer("n_samples", n_samples, low=2)
    n_tokens = validation.integer("n_tokens", n_tokens, low=1)
    L_max = validation.integer("L_max", L_max, low=1)
    eos = validation.choice("eos", eos, _eos_policies())
    batch_size = validation.integer("batch_size", batch_size, low=1)
    return n_samples, n_tokens, L_max, eos, batch_size


def _check_eos(lm, eos: str) -> None:
    if eos != "none" and lm.eos_token_id is None:
        raise ValueError(
            f"eos={eos!r} needs a model with an end-of-sequence token and {lm.name} has none; "
            "use eos='none'"
        )


def _eos_policies() -> set[str]:
    from llm_bridge import sampling

    return set(sampling.EOS_POLICIES)


def _cached(cache_dir, kind: str, parts: dict):
    """``(path, key, result)`` for ``parts``: ``result`` is the stored scan or ``None``
    (all three are ``None`` without a cache directory)."""
    if cache_dir is None:
        return None, None, None
    key = cache.cache_key({"kind": kind, **parts})
    path = cache.cache_path(cache_dir, kind, key)
    if path.is_file():
        try:
            stored = ScanResult.load(path)
        except cache.DamagedFileError as err:
            logger.warning("recomputing %s", err)
            return path, key, None
        logger.info("cache hit: %s", path)
        return path, key, stored
    return path, key, None


def _store(result: ScanResult, path, key, parts: cache.PartStore) -> ScanResult:
    """Write the finished scan to the cache (if any) and drop its resumable pieces."""
    if path is None:
        return result
    result = dataclasses.replace(result, cache_key=key)
    result.save(path)
    parts.clear()
    logger.info("cached scan at %s", path)
    return result


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="step", leave=False)


def _as_int_arrays(samples) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.asarray(samples.tokens, dtype=np.int64)
    lengths = np.asarray(samples.lengths, dtype=np.int64)
    return tokens, lengths


def _check_finite_self(logp: np.ndarray, where: str) -> None:
    """A sample must have finite log-probability under the law it was drawn from."""
    if not np.all(np.isfinite(logp)):
        raise RuntimeError(
            f"{where}: a sample has non-finite log-probability under its own law; the sampler "
            "and the scorer disagree (this is a bug, not bad input)"
        )


@dataclasses.dataclass
class _Plan:
    """What one scan type adds to the common skeleton :func:`_run_plan`.

    A scan is a sequence of resumable *pieces* (arrays computed for part of the grid).  The
    skeleton looks the finished scan up in the cache, reads back the pieces an interrupted
    run left, computes the missing ones (storing each as soon as it exists), and builds and
    stores the result.  A new scan type is a plan: its pieces, how to compute and absorb
    them, and how to build the result's arrays.

    Attributes
    ----------
    kind : str
        :attr:`ScanResult.kind`, the cache namespace and the progress label.
    key : dict
        Everything besides the seed and ``params`` that determines the result (model
        identity, prompts, grid, ...), for the cache key.
    params : dict
        JSON parameters recorded in the result (and in the cache key).
    n_pieces : int
        Number of pieces; piece ``i`` is stored as ``piece{i}``.
    compute : callable
        ``compute(indices) -> list of dicts``: the missing pieces ``indices`` (at most
        ``group`` of them, in increasing order).
    absorb : callable
        ``absorb(i, piece)``: take piece ``i`` (computed now or read back) into the scan.
        Pieces are absorbed in increasing order when ``group == 1``.
    build : callable
        ``build() -> dict``: the :class:`ScanResult` fields other than ``kind``, ``params``
        and ``seed``, once every piece is absorbed.
    group : int
        Missing pieces computed together (only for pieces that do not depend on each other).
    """

    kind: str
    key: dict
    params: dict
    n_pieces: int
    compute: Callable
    absorb: Callable
    build: Callable
    group: int = 1


def _run_plan(plan: _Plan, seed: SeedRecord, cache_dir, progress: bool) -> ScanResult:
    """Run a scan described by ``plan``: cache lookup, resumable pieces, result, cache."""
    path, key, hit = _cached(cache_dir, plan.kind, {**plan.key, "seed": seed.to_dict(),
                                                   **plan.params})
    if hit is not None:
        return hit
    parts = cache.PartStore(cache_dir, plan.kind, key)
    pending: list[int] = []
    with _progress(plan.n_pieces, progress, f"{plan.kind} scan") as bar:

        def flush():
            if not pending:
                return
            for i, piece in zip(pending, plan.compute(list(pending))):
                parts.put(f"piece{i}", piece)
                plan.absorb(i, piece)
                bar.update()
            pending.clear()

        for i in range(plan.n_pieces):
            piece = parts.get(f"piece{i}")
            if piece is None:
                pending.append(i)
                if len(pending) == plan.group:
                    flush()
            else:
                plan.absorb(i, piece)
                bar.update()
        flush()
    result = ScanResult(kind=plan.kind, params=plan.params, seed=seed, **plan.build())
    return _store(result, path, key, parts)


# ============================================================================ temperature
def temperature_scan(
    lm,
    prompt,
    temperatures,
    *,
    n_samples: int,
    n_tokens: int,
    L_max: int = 1,
    eos: str = "stop",
    batch_size: int = 256,
    rng=None,
    cache_dir=None,
    progress: bool = True,
) -> ScanResult:
    """Scan the sampling temperature.

    Parameters
    ----------
    lm : llm_bridge.models.LanguageModel
        The model.
    prompt : str or sequence of int
        The prompt, as text (encoded with ``lm.encode``) or as token ids.
    temperatures : array_like, shape (K,)
        Strictly increasing temperatures, all > 0, ``K >= 2 * L_max`` (see
        :func:`log_temperature_grid`).
    n_samples : int
        Samples per temperature, ``S >= 2``.
    n_tokens : int
        Continuation length ``N >= 1``; prompt plus ``N`` must fit the model's context.
    L_max : int
        Largest indicator window to support; neighbours up to ``W = 2 * L_max - 1`` grid
        steps away are scored.
    eos : str
        End-of-sequence policy shared by sampling and scoring (see
        :func:`llm_bridge.sampling.sample`).
    batch_size : int
        Sequences per forward pass.  With ``batch_size >= 2 * n_samples`` the samples of
        ``batch_size // n_samples`` grid points share each forward pass (see Notes).
    rng : None, int, SeedSequence or Generator
        Seed; grid point ``k`` uses the ``k``-th child of one root sequence.
    cache_dir : path, optional
        Store the result there and return a stored result without running the model.  Every
        finished group of grid points is stored too, so a re-run after an interruption
        resumes.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ScanResult
        ``kind="temperature"``, with ``energy``, ``dlogp_dT`` and ``conditional_fisher``.

    Notes
    -----
    For sample :math:`x` drawn at :math:`T_k` one teacher-forced pass gives the logits
    :math:`z_i`, and then, for every :math:`T'` of the window and for :math:`T' = 1`,
    :math:`\\log P(x\\mid T') = \\sum_i \\log\\mathrm{softmax}(z_i/T')_{x_i}`, together with
    the score :math:`T_k^{-2}\\sum_i(\\mathbb E_{q_{T_k,i}}[z_i] - z_{i,x_i})` and the
    conditional Fisher term :math:`T_k^{-4}\\sum_i\\operatorname{Var}_{q_{T_k,i}}(z_i)`
    (derivations in :mod:`llm_bridge.thermo`).  All in float64.

    Few samples per grid point would leave the forward passes small, so the samples of
    several grid points are decoded and teacher-forced together, each row at its own
    temperature.  Every row draws from the uniforms of its own grid point's generator, so
    the result does not depend on ``batch_size`` (bit-identical on the tiny test models;
    a real model's batched matrix products may round differently with the batch shape,
    which can move a float32 logit by one unit in the last place).

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(vocab_size=8, seed=0, eos_token_id=7)
    >>> res = temperature_scan(lm, [1, 2], log_temperature_grid(0.5, 2.0, 4),
    ...                        n_samples=16, n_tokens=3, rng=0, progress=False)
    >>> res.logp.shape
    (4, 16, 3)
    >>> res.indicator(L=1).value.shape, res.heat_capacity().value.shape
    ((3,), (4,))
    """
    n_samples, n_tokens, L_max, eos, batch_size = _scan_params(
        n_samples, n_tokens, L_max, eos, batch_size
    )
    grid = validate_grid("temperatures", temperatures, L_max=L_max, positive=True)
    _check_eos(lm, eos)
    prompt_ids = _prompt_ids(lm, prompt)
    _check_context(lm, prompt_ids, n_tokens)
    root = seed_sequence(rng)
    params = {
        "n_samples": n_samples, "n_tokens": n_tokens, "L_max": L_max, "eos": eos,
        "prompt": prompt if isinstance(prompt, str) else None,
    }
    K, W = len(grid), 2 * L_max - 1
    gens = _grid_generators(root, K)
    pieces: dict[int, dict] = {}

    def compute(group):
        return _temperature_points(lm, prompt_ids, grid, group, [gens[k] for k in group], W,
                                   n_samples, n_tokens, eos, batch_size)

    def build():
        stacked = {name: np.stack([pieces[k][name] for k in range(K)]) for name in pieces[0]}
        return dict(grid=grid, logp=stacked["logp"], tokens=stacked["tokens"],
                    lengths=stacked["lengths"], prompt_ids=(prompt_ids,) * K,
                    labels=tuple(f"{t:.6g}" for t in grid), model_name=str(lm.name),
                    energy=stacked["energy"], dlogp_dT=stacked["score"],
                    conditional_fisher=stacked["cond"])

    plan = _Plan("temperature", {"model": _model_identity(lm), "prompt_ids": prompt_ids,
                                 "grid": grid}, params, K, compute, pieces.__setitem__, build,
                 group=max(1, batch_size // n_samples))
    return _run_plan(plan, SeedRecord.from_seed_sequence(root), cache_dir, progress)


def _temperature_points(lm, prompt_ids, grid, group, gens, W, n_samples, n_tokens, eos,
                        batch_size) -> list[dict]:
    """Samples and scores of the grid points ``group``, packed into shared forward passes.

    The samples of all points in ``group`` are decoded together (each row at its own
    temperature, from the uniforms of its own point's generator, so a row is the same draw
    whatever the packing), then teacher-forced together; the logits of each row are rescaled
    to the temperatures of its point's window and to :math:`T = 1`.  Score and Fisher term
    are taken at the row's own temperature.  One dict of arrays per point of ``group``.
    """
    import torch

    from llm_bridge import sampling

    K, S = len(grid), n_samples
    uniforms = np.concatenate([sampling._uniforms(g, S, n_tokens)[1] for g in gens])
    own = np.repeat(grid[group], S)
    tokens, lengths, _ = sampling._draw(
        lm, tuple(int(i) for i in prompt_ids), uniforms, own, eos, batch_size
    )
    point = np.repeat(np.arange(len(group)), S)
    logp = np.full((len(tokens), 2 * W + 1), np.nan)
    energy, score, cond = (np.empty(len(tokens)) for _ in range(3))
    rows = max(1, min(batch_size, _LOGITS_BLOCK // max(1, n_tokens * lm.vocab_size)))
    batches = sampling.iter_output_logits(
        lm, prompt_ids, tokens, lengths, eos=eos, batch_size=rows
    )
    with torch.no_grad():
        for index, logits in batches:
            tok = torch.as_tensor(tokens[index], device=logits.device)
            length = torch.as_tensor(lengths[index], device=logits.device)
            mask = torch.arange(n_tokens, device=logits.device)[None, :] < length[:, None]
            for g in np.unique(point[index]):
                sel = np.flatnonzero(point[index] == g)
                at = torch.as_tensor(sel, device=logits.device)
                k = group[g]
                lo, hi = max(0, k - W), min(K, k + W + 1)
                temps = [float(t) for t in grid[lo:hi]] + [1.0]
                z, x, m = logits[at], tok[at], mask[at]
                lp = thermo.sequence_log_probs(z, x, m, temps).cpu().numpy()
                s, c = thermo.temperature_score(z, x, m, float(grid[k]))
                out = index[sel]
                logp[out, W + (lo - k):W + (hi - k)] = lp[:, :-1]
                energy[out], score[out], cond[out] = -lp[:, -1], s.cpu().numpy(), c.cpu().numpy()
    pieces = []
    for g, k in enumerate(group):
        r = slice(g * S, (g + 1) * S)
        _check_finite_self(logp[r, W], f"temperature T={grid[k]:g}")
        pieces.append({"tokens": tokens[r], "lengths": lengths[r], "logp": logp[r],
                       "energy": energy[r], "score": score[r], "cond": cond[r]})
    return pieces


# ============================================================================ prompt slot
def check_template(template) -> str:
    """Check that a prompt template is a string with exactly one ``{}`` slot.

    Parameters
    ----------
    template : str
        Text with one empty replacement field ``{}``; other braces are written ``{{`` and
        ``}}``.

    Returns
    -------
    str
        ``template`` itself.

    Raises
    ------
    ValueError
        If ``template`` is not a string, has no slot, more than one slot, a named or
        numbered slot, or unbalanced braces; the message gives the template and the count.

    Examples
    --------
    >>> check_template("Is {} larger than 42?")
    'Is {} larger than 42?'
    >>> check_template("1 2 {} {}")
    Traceback (most recent call last):
    ...
    ValueError: template must have exactly one '{}' slot, got 2 slots in '1 2 {} {}'
    """
    if not isinstance(template, str):
        raise ValueError(f"template must be a string with one '{{}}' slot, got {template!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"template {template!r} is not a valid format string: {exc}") from None
    if len(fields) != 1:
        raise ValueError(
            f"template must have exactly one '{{}}' slot, got {len(fields)} slots in {template!r}"
        )
    if fields[0] != "":
        raise ValueError(
            f"template must have an empty '{{}}' slot, got '{{{fields[0]}}}' in {template!r} "
            "(write other braces as '{{' and '}}')"
        )
    return template


def _render_template(template, value) -> object:
    return template(value) if callable(template) else template.format(value)


def prompt_scan(
    lm,
    template,
    values,
    *,
    n_samples: int,
    n_tokens: int,
    temperature: float = 1.0,
    L_max: int = 1,
    eos: str = "stop",
    batch_size: int = 64,
    rng=None,
    cache_dir=None,
    progress: bool = True,
) -> ScanResult:
    """Scan a slot in the prompt (an integer, a word, ...).

    Parameters
    ----------
    lm : llm_bridge.models.LanguageModel
        The model.
    template : str or callable
        A string with one ``{}`` slot, filled with ``template.format(value)``, or a callable
        ``value -> str | sequence of token ids``.
    values : sequence
        The slot values, ``K >= 2 * L_max`` of them.  When all are real numbers they must be
        strictly increasing and form the grid; otherwise the grid is ``0, 1, ..., K-1`` and
        the values are kept as labels.
    n_samples, n_tokens, L_max, eos, batch_size, rng, cache_dir, progress
        As in :func:`temperature_scan`.
    temperature : float
        Sampling and scoring temperature, > 0.

    Returns
    -------
    ScanResult
        ``kind="prompt"``; ``prompt_ids[k]`` holds the ids of the k-th prompt.

    Notes
    -----
    Samples drawn after prompt :math:`c_k` are scored after every :math:`c_{k'}` with
    :math:`|k'-k|\\le W`.  The work is grouped by the scoring prompt: all samples that need
    :math:`c_{k'}` are scored in one call with that single prompt, so prompts of different
    token lengths never share a batch and need no padding.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(vocab_size=8, seed=0, eos_token_id=7)
    >>> res = prompt_scan(lm, lambda v: [1] * v, [1, 2, 3, 4], n_samples=8, n_tokens=2,
    ...                   rng=0, progress=False)
    >>> [len(p) for p in res.prompt_ids], res.logp.shape
    ([1, 2, 3, 4], (4, 8, 3))
    """
    L_max = validation.integer("L_max", L_max, low=1)
    temperature = validation.real("temperature", temperature, low=0.0, low_open=True)
    if not callable(template):
        check_template(template)
    values = list(values)
    if values and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        grid = validate_grid("values", values, L_max=L_max)
    else:
        grid = validate_grid("values", np.arange(len(values), dtype=float), L_max=L_max)
    n_samples, n_tokens, L_max, eos, batch_size = _scan_params(
        n_samples, n_tokens, L_max, eos, batch_size
    )
    _check_eos(lm, eos)
    prompts = [_prompt_ids(lm, _render_template(template, v), name=f"prompt for value {v!r}")
               for v in values]
    for v, ids in zip(values, prompts):
        _check_context(lm, ids, n_tokens, name=f"n_tokens (prompt for value {v!r})")
    root = seed_sequence(rng)
    params = {
        "n_samples": n_samples, "n_tokens": n_tokens, "L_max": L_max, "eos": eos,
        "temperature": temperature, "template": template if isinstance(template, str) else None,
    }
    from llm_bridge import sampling

    K, W = len(grid), 2 * L_max - 1
    logp = np.full((K, n_samples, 2 * W + 1), np.nan)
    tokens = np.zeros((K, n_samples, n_tokens), dtype=np.int64)
    lengths = np.zeros((K, n_samples), dtype=np.int64)
    gens = _grid_generators(root, K)

    def sources(j):  # the points whose samples prompt j scores
        return range(max(0, j - W), min(K, j + W + 1))

    def compute(indices):  # pieces 0..K-1 sample point k, pieces K..2K-1 score under prompt j
        (i,) = indices
        if i < K:
            drawn = sampling.sample(lm, prompts[i], n_samples, n_tokens, temperature=temperature,
                                    eos=eos, batch_size=batch_size, rng=gens[i])
            tok, length = _as_int_arrays(drawn)
            return [{"tokens": tok, "lengths": length}]
        j = i - K
        block = sampling.score(
            lm, prompts[j], np.concatenate([tokens[k] for k in sources(j)]),
            np.concatenate([lengths[k] for k in sources(j)]), temperatures=(temperature,),
            eos=eos, batch_size=batch_size,
        )
        return [{"block": np.asarray(block, dtype=float)[:, 0]}]

    def absorb(i, piece):
        if i < K:
            tokens[i], lengths[i] = piece["tokens"], piece["lengths"]
            return
        j = i - K
        for row, k in zip(piece["block"].reshape(len(sources(j)), n_samples), sources(j)):
            logp[k, :, W + (j - k)] = row

    def build():
        for k in range(K):
            _check_finite_self(logp[k, :, W], f"prompt value {values[k]!r}")
        return dict(grid=grid, logp=logp, tokens=tokens, lengths=lengths,
                    prompt_ids=tuple(prompts), labels=tuple(str(v) for v in values),
                    model_name=str(lm.name))

    plan = _Plan("prompt", {"model": _model_identity(lm), "prompt_ids": prompts, "grid": grid,
                            "labels": [str(v) for v in values]}, params, 2 * K, compute, absorb,
                 build)
    return _run_plan(plan, SeedRecord.from_seed_sequence(root), cache_dir, progress)


# ============================================================================ checkpoints
def state_dict_loader(base) -> Callable:
    """A checkpoint loader for ``(name, state_dict)`` pairs.

    Parameters
    ----------
    base : llm_bridge.models.LanguageModel
        Supplies the architecture and tokenizer; it is never modified.

    Returns
    -------
    callable
        ``loader((name, state_dict)) -> LanguageModel``: a deep copy of ``base.model`` with the
        state dict loaded (strictly: every key must match), named ``name``.  The loader
        raises ``ValueError`` for an item that is not such a pair, and torch's
        ``RuntimeError`` for a state dict whose keys or shapes do not match.

    Examples
    --------
    >>> import torch
    >>> from llm_bridge.models import tiny_model
    >>> base, other = tiny_model(6, seed=0), tiny_model(6, seed=1)
    >>> lm = state_dict_loader(base)(("seed-1", other.model.state_dict()))
    >>> lm.name, lm.model is base.model
    ('seed-1', False)
    >>> all(torch.equal(p, q) for p, q in zip(lm.model.parameters(), other.model.parameters()))
    True
    """
    import copy

    def load(item):
        name, state = _checkpoint_pair(item)
        model = copy.deepcopy(base.model)
        model.load_state_dict(state, strict=True)
        model.eval()
        return dataclasses.replace(base, model=model, name=str(name))

    return load


def _checkpoint_pair(item):
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) and hasattr(
        item[1], "keys"
    ):
        return item[0], item[1]
    raise ValueError(
        f"checkpoints entries must be paths/ids or (name, state_dict) pairs, got {item!r}"
    )


def _local_vocab_size(path: str) -> int | None:
    """``vocab_size`` from the ``config.json`` of a local checkpoint directory, if any."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return None
    try:
        with open(config_file) as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    size = config.get("vocab_size", config.get("text_config", {}).get("vocab_size"))
    return size if isinstance(size, int) else None


def _precheck_checkpoints(items, labels) -> None:
    """Refuse, before any model is loaded, what can be seen without loading one.

    A path that does not exist; local directories whose ``config.json`` give different
    vocabulary sizes; ``(name, state_dict)`` pairs whose parameter names or shapes differ
    (a different vocabulary changes the embedding shapes).  Checkpoints known only to a
    custom loader are checked when they are loaded.
    """
    from llm_bridge.models import _looks_like_path

    vocab, shapes = None, None
    for item, label in zip(items, labels):
        if isinstance(item, (str, os.PathLike)):
            path = os.path.expanduser(os.fspath(item))
            if not os.path.exists(path):
                if _looks_like_path(os.fspath(item)):
                    raise ValueError(f"checkpoint {label!r} does not exist")
                continue
            size = _local_vocab_size(path) if os.path.isdir(path) else None
            if size is None:
                continue
            if vocab is None:
                vocab = (size, label)
            elif size != vocab[0]:
                raise ValueError(
                    f"checkpoints must share one vocabulary: {label!r} has vocab_size {size}, "
                    f"{vocab[1]!r} has {vocab[0]}"
                )
        else:
            _, state = _checkpoint_pair(item)
            here = {name: tuple(tensor.shape) for name, tensor in state.items()}
            if shapes is None:
                shapes = (here, label)
                continue
            for name in sorted(set(here) | set(shapes[0])):
                if here.get(name) != shapes[0].get(name):
                    raise ValueError(
                        f"checkpoints must share one architecture and vocabulary: {name!r} is "
                        f"{here.get(name, 'missing')} in {label!r} and "
                        f"{shapes[0].get(name, 'missing')} in {shapes[1]!r}"
                    )


def _checkpoint_identity(item) -> dict:
    if isinstance(item, (str, os.PathLike)):
        identity = {"name": os.fspath(item)}
        files = cache.file_identity(item)
        if files is not None:
            identity["files"] = files
        return identity
    name, state = _checkpoint_pair(item)
    return {"name": name, "parameters": cache.state_dict_digest(state)}


def _checkpoint_label(item) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return _checkpoint_pair(item)[0]


def checkpoint_scan(
    checkpoints: Sequence,
    prompt,
    *,
    n_samples: int,
    n_tokens: int,
    grid=None,
    loader: Callable | None = None,
    temperature: float = 1.0,
    L_max: int = 1,
    eos: str = "stop",
    batch_size: int = 64,
    rng=None,
    cache_dir=None,
    progress: bool = True,
) -> ScanResult:
    """Scan a sequence of checkpoints (training steps, model edits, ...).

    Parameters
    ----------
    checkpoints : sequence
        ``K >= 2 * L_max`` checkpoints in grid order: paths or model ids (loaded with
        ``loader``, by default :func:`llm_bridge.models.load_model`), or ``(name, state_dict)``
        pairs (then pass ``loader=state_dict_loader(base)``).
    prompt : str or sequence of int
        The prompt, encoded once with the first checkpoint's tokenizer; every checkpoint must
        share the vocabulary.  Missing paths, and vocabularies that differ between local
        directories or state dicts, are refused before the first model is loaded.
    grid : array_like, optional
        Strictly increasing positions of the checkpoints (e.g. training steps); default
        ``0, 1, ..., K-1``.
    loader : callable, optional
        ``loader(checkpoint) -> LanguageModel``, called exactly once per checkpoint.
    temperature : float
        Sampling and scoring temperature, > 0.
    n_samples, n_tokens, L_max, eos, batch_size, rng, cache_dir, progress
        As in :func:`temperature_scan`.

    Returns
    -------
    ScanResult
        ``kind="checkpoint"``, labels are the checkpoint names.

    Notes
    -----
    Checkpoints are visited in grid order and each is loaded once.  When checkpoint :math:`k`
    arrives its samples are drawn, and the pairs :math:`(k, j)` for
    :math:`k - W \\le j \\le k` are scored in both directions (samples of :math:`k` under
    :math:`j` and samples of :math:`j` under :math:`k`); checkpoint :math:`k - W` is then
    released.  At most :math:`W + 1` models are in memory at once.  With ``cache_dir`` every
    finished checkpoint is stored; a re-run after an interruption skips those and reloads
    only the (at most :math:`W`) finished checkpoints whose pairs with unfinished ones are
    still missing.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> steps = {"step100": 1, "step200": 2, "step300": 3}
    >>> load = lambda name: tiny_model(vocab_size=8, seed=steps[name], eos_token_id=7)
    >>> res = checkpoint_scan(list(steps), [1, 2], grid=[100, 200, 300], loader=load,
    ...                       n_samples=8, n_tokens=2, rng=0, progress=False)
    >>> res.labels
    ('step100', 'step200', 'step300')
    """
    L_max = validation.integer("L_max", L_max, low=1)
    items = list(checkpoints)
    if not items:
        raise ValueError("checkpoints must be a non-empty sequence, got []")
    grid = validate_grid(
        "grid", np.arange(len(items), dtype=float) if grid is None else grid, L_max=L_max
    )
    if len(grid) != len(items):
        raise ValueError(f"grid must have one value per checkpoint ({len(items)}), got {len(grid)}")
    temperature = validation.real("temperature", temperature, low=0.0, low_open=True)
    n_samples, n_tokens, L_max, eos, batch_size = _scan_params(
        n_samples, n_tokens, L_max, eos, batch_size
    )
    if isinstance(prompt, str) and not prompt:
        raise ValueError("prompt must be a non-empty string or token-id sequence, got ''")
    labels = tuple(_checkpoint_label(c) for c in items)
    _precheck_checkpoints(items, labels)
    if loader is None:
        if not all(isinstance(c, (str, os.PathLike)) for c in items):
            raise ValueError(
                "loader must be given (e.g. state_dict_loader(base)) when checkpoints are "
                "(name, state_dict) pairs"
            )
        from llm_bridge.models import load_model as loader
    root = seed_sequence(rng)
    params = {
        "n_samples": n_samples, "n_tokens": n_tokens, "L_max": L_max, "eos": eos,
        "temperature": temperature, "prompt": prompt if isinstance(prompt, str) else None,
    }
    from llm_bridge import sampling

    K, W = len(grid), 2 * L_max - 1
    logp = np.full((K, n_samples, 2 * W + 1), np.nan)
    tokens = np.zeros((K, n_samples, n_tokens), dtype=np.int64)
    lengths = np.zeros((K, n_samples), dtype=np.int64)
    gens = _grid_generators(root, K)
    loaded: dict[int, object] = {}
    state = {"prompt_ids": None, "vocab": None}

    def model(j):  # checkpoint j, loaded on first use
        if j not in loaded:
            lm = loader(items[j])
            if state["prompt_ids"] is None:
                state["prompt_ids"] = _prompt_ids(lm, prompt)
            if state["vocab"] is None:
                state["vocab"] = (lm.vocab_size, labels[j])
            elif lm.vocab_size != state["vocab"][0]:
                raise ValueError(
                    f"checkpoints must share one vocabulary: {labels[j]!r} has vocab_size "
                    f"{lm.vocab_size}, {state['vocab'][1]!r} has {state['vocab'][0]}"
                )
            _check_context(lm, state["prompt_ids"], n_tokens)
            _check_eos(lm, eos)
            loaded[j] = lm
        return loaded[j]

    def score_under(j, k):  # samples of k scored by checkpoint j
        lp = sampling.score(
            model(j), state["prompt_ids"], tokens[k], lengths[k], temperatures=(temperature,),
            eos=eos, batch_size=batch_size,
        )
        logp[k, :, W + (j - k)] = np.asarray(lp, dtype=float)[:, 0]

    def compute(indices):  # piece k: sample checkpoint k, score it against the W before it
        (k,) = indices
        earlier = range(max(0, k - W), k)
        drawn = sampling.sample(
            model(k), state["prompt_ids"], n_samples, n_tokens, temperature=temperature,
            eos=eos, batch_size=batch_size, rng=gens[k],
        )
        tokens[k], lengths[k] = _as_int_arrays(drawn)
        for j in (*earlier, k):
            score_under(j, k)
            if j != k:
                score_under(k, j)
        _check_finite_self(logp[k, :, W], f"checkpoint {labels[k]!r}")
        return [{
            "tokens": tokens[k], "lengths": lengths[k], "own": logp[k, :, :W + 1],
            "earlier": np.array([logp[j, :, W + (k - j)] for j in earlier]).reshape(
                len(earlier), n_samples),
            "prompt_ids": state["prompt_ids"],
        }]

    def absorb(k, piece):
        tokens[k], lengths[k] = piece["tokens"], piece["lengths"]
        logp[k, :, :W + 1] = piece["own"]
        for j, row in zip(range(max(0, k - W), k), piece["earlier"]):
            logp[j, :, W + (k - j)] = row
        if state["prompt_ids"] is None:
            state["prompt_ids"] = piece["prompt_ids"]
        for j in [j for j in loaded if j <= k - W]:  # no later point needs checkpoint j
            del loaded[j]

    def build():
        return dict(grid=grid, logp=logp, tokens=tokens, lengths=lengths,
                    prompt_ids=(state["prompt_ids"],) * K, labels=labels,
                    model_name=f"{labels[0]} .. {labels[-1]}")

    key = {"checkpoints": [_checkpoint_identity(c) for c in items],
           "prompt_input": prompt if isinstance(prompt, str) else np.asarray(prompt, dtype=np.int64),
           "grid": grid}
    plan = _Plan("checkpoint", key, params, K, compute, absorb, build)
    return _run_plan(plan, SeedRecord.from_seed_sequence(root), cache_dir, progress)
