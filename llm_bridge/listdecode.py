r"""A real list decoder on a real language model.

Starting from a prompt :math:`c`, the list at depth 0 is :math:`\{c\}`; every candidate
:math:`s` in the list at depth :math:`t` proposes all of its *eligible* next tokens
(:mod:`llm_bridge.eligibility`, from :math:`p_T(\cdot\mid s)=\operatorname{softmax}(z(s)/T)`),
and the list at depth :math:`t+1` is the set of eligible children.  An *oracle*
continuation :math:`y^*` -- a given reference or the model's own greedy continuation --
classifies candidates: the oracle candidate :math:`c\,y^*_{1:t}` and the *erroneous* ones,
which left the oracle path at some depth and never return.  This is the list decoder of the
branching theory (:mod:`branching.model`) run on the model itself, and it records

* per depth: the list size, the number :math:`Z_t` of erroneous candidates and whether the
  oracle candidate is still in the list;
* per expanded candidate (*node*): its number of eligible tokens (the offspring of an
  erroneous node), for the oracle node the number of eligible wrong tokens (immigration)
  and whether the correct token was eligible (else a miss), its parent, token, weight and
  the depth at which it left the oracle path.

Every depth goes through the model like beam search: the key/value cache rows of the parents
of the new candidates are gathered (``index_select`` on the batch axis of each layer) and
the new tokens run in batches of ``batch_size`` in one forward call each.  The prompt's keys
and values are stored once and shared by every candidate; only each candidate's suffix (at
most the depth) is gathered and kept, so the cost of a depth does not grow with the prompt.
The eligibility rule runs on each batch's logits as they come, and only the eligible entries
leave it.

A cap bounds the work: when the erroneous children of a depth outnumber ``cap - 1``, a
uniform sample of ``cap - 1`` of them (``cap`` if the oracle is gone) is kept and their
weights are multiplied by (number of children) / (number kept).  Every weighted total --
:math:`Z_t`, the offspring sums -- stays unbiased (Horvitz-Thompson); the oracle candidate
is never dropped.  :func:`list_decode` returns a
:class:`~llm_bridge.listdecode_result.ListDecodeResult` with the estimates
(:math:`R_0`, immigration, :math:`\delta`, dispersion) and the theory's prediction.
"""

from __future__ import annotations

import functools
import inspect
import logging
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from branching import validation as check
from branching.seeding import SeedRecord, seed_sequence

from .eligibility import Nucleus, Threshold, TopK
from .listdecode_result import ListDecodeResult, Records
from .models import LanguageModel
from .offspring_stats import BOOTSTRAP_KINDS

with warnings.catch_warnings():  # transformers installs warnings filters when imported
    from transformers.cache_utils import Cache, DynamicLayer

__all__ = ["list_decode", "prepare_inputs"]

logger = logging.getLogger(__name__)

_RULE_TYPES = (Threshold, Nucleus, TopK)


# ======================================================================== inputs
def _is_id_sequence(value) -> bool:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.integer)
    return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
            and all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)
                    for v in value))


def _as_list(value, name: str) -> list:
    """One prompt (text or ids) -> ``[value]``; a sequence of prompts -> list."""
    if isinstance(value, str) or _is_id_sequence(value):
        return [value]
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        return list(value)
    raise ValueError(f"{name} must be text, token ids, or a list of those, got {value!r:.80}")


def _ids(lm: LanguageModel, value, name: str, *, chat: bool = False, special: bool = True):
    """Token ids of text or of an id sequence, checked against the vocabulary."""
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{name} must be non-empty text or token ids, got ''")
        if lm.tokenizer is None:
            raise ValueError(
                f"{name} is text but model {lm.name!r} has no tokenizer (not tokenizable); "
                f"pass token ids"
            )
        if special:
            ids = lm.encode(value, chat=chat)
        else:
            ids = lm.tokenizer(value, add_special_tokens=False)["input_ids"]
    elif _is_id_sequence(value):
        ids = value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else list(value)
    else:
        raise ValueError(f"{name} must be non-empty text or a 1-d sequence of token ids, "
                         f"got {value!r:.80}")
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if ids.size == 0:
        raise ValueError(f"{name} is not tokenizable: it encodes to no token, got {value!r:.80}")
    bad = (ids < 0) | (ids >= lm.vocab_size)
    if bad.any():
        raise ValueError(f"{name} must hold token ids in [0, {lm.vocab_size - 1}]; entry "
                         f"{int(np.argmax(bad))} is {int(ids[np.argmax(bad)])}")
    return ids


def prepare_inputs(lm: LanguageModel, prompts, oracle="greedy", n_steps=None, *,
                   chat: bool = False):
    """Validated prompt ids, oracle ids (``None`` for greedy) and the number of steps.

    Parameters
    ----------
    lm : LanguageModel
    prompts : str, sequence of int, or a non-empty list of those
    oracle : "greedy", str, sequence of int, or a list of those (one per prompt)
        Text is encoded without special tokens.
    n_steps : int, optional
        Depth of the decode; default: the length of the reference oracles (all equal).
    chat : bool
        Encode text prompts with the chat template.

    Returns
    -------
    (list of ndarray, list of ndarray or None, int)

    Raises
    ------
    ValueError
        Naming ``prompts``, ``oracle`` or ``n_steps``: no prompt, a prompt or oracle that is
        not tokenizable or out of the vocabulary, an oracle shorter than ``n_steps`` or one
        per prompt missing, or prompt plus ``n_steps`` longer than the context.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(6, seed=0)
    >>> prepare_inputs(lm, [[1, 2], [3]], n_steps=2)
    ([array([1, 2]), array([3])], None, 2)
    >>> prepare_inputs(lm, [1, 2], oracle=[3, 4, 5])        # n_steps from the oracle
    ([array([1, 2])], [array([3, 4, 5])], 3)
    """
    items = _as_list(prompts, "prompts")
    if not items:
        raise ValueError("prompts must contain at least one prompt (the list at depth 0 "
                         "would be empty), got none")
    prompt_ids = [_ids(lm, p, f"prompts[{i}]", chat=chat) for i, p in enumerate(items)]
    if isinstance(oracle, str) and oracle == "greedy":
        oracle_ids = None
        if n_steps is None:
            raise ValueError("n_steps must be given (an integer >= 1) with oracle='greedy'")
        n_steps = check.integer("n_steps", n_steps, low=1)
    else:
        references = _as_list(oracle, "oracle")
        if len(items) > 1 and len(references) != len(items):
            raise ValueError(f"oracle must be 'greedy' or one reference per prompt "
                             f"({len(items)}), got {len(references)}")
        if len(items) == 1 and len(references) != 1:
            raise ValueError("oracle must be 'greedy' or one reference (text or token ids) "
                             "for the single prompt")
        oracle_ids = [_ids(lm, r, f"oracle[{i}]", special=False)
                      for i, r in enumerate(references)]
        lengths = {len(r) for r in oracle_ids}
        if n_steps is None:
            if len(lengths) != 1:
                raise ValueError(f"oracle references have different lengths {sorted(lengths)}; "
                                 f"pass n_steps (at most the shortest)")
            n_steps = lengths.pop()
        n_steps = check.integer("n_steps", n_steps, low=1)
        for i, r in enumerate(oracle_ids):
            if len(r) < n_steps:
                raise ValueError(f"oracle[{i}] has {len(r)} tokens, fewer than "
                                 f"n_steps={n_steps}")
        oracle_ids = [r[:n_steps] for r in oracle_ids]
    for i, p in enumerate(prompt_ids):
        if len(p) + n_steps > lm.context_length:
            what = "n_steps" if oracle_ids is None else f"oracle[{i}]"
            raise ValueError(
                f"{what}: prompt {i} ({len(p)} tokens) plus {n_steps} oracle steps needs "
                f"{len(p) + n_steps} positions, longer than the context of {lm.name!r} "
                f"({lm.context_length})"
            )
    return prompt_ids, oracle_ids, n_steps


# ======================================================================== model plumbing
@functools.lru_cache(maxsize=None)
def _accepts_logits_to_keep(model_class) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _compute_dtype(lm: LanguageModel) -> torch.dtype:
    return torch.float64 if lm.dtype == torch.float64 else torch.float32


def _run(lm: LanguageModel, ids: torch.Tensor, cache):
    """Logits of the last position, in the compute dtype, and the updated cache."""
    kwargs = {"logits_to_keep": 1} if _accepts_logits_to_keep(type(lm.model)) else {}
    out = lm.model(ids, cache=cache, use_cache=True, **kwargs)
    logits = out.logits[:, -1].to(_compute_dtype(lm))
    if not bool(torch.isfinite(logits.amax(dim=-1)).all()):
        raise FloatingPointError(f"{lm.name} produced NaN or infinite logits")
    return logits, out.cache


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(keys, values)`` of every layer of a full-attention growing cache.

    For a cache of :class:`_SharedPromptLayer` these are the per-candidate suffixes only.
    """
    layers = getattr(cache, "layers", None)
    if not layers or not all(isinstance(layer, DynamicLayer) and not layer.is_sliding
                             for layer in layers):
        raise ValueError(
            "the list decoder needs a model whose key/value cache has plain full-attention "
            f"layers (DynamicLayer); got {type(cache).__name__} with "
            f"{sorted({type(layer).__name__ for layer in (layers or [])})}"
        )
    return [(layer.keys, layer.values) for layer in layers]


class _SharedPromptLayer(DynamicLayer):
    """One layer's cache for a batch of candidates that share the prompt.

    The prompt's keys and values (batch 1) are stored once; ``keys`` / ``values`` hold each
    candidate's own suffix (batch ``B``, at most the decode depth).  ``update`` appends the
    new token to the suffixes and returns the full states ``[prompt, suffix]`` for the
    attention, built transiently: the list's persistent cache, its gathers by parent and
    its memory traffic scale with the depth, not with the prompt length.
    """

    def __init__(self, prompt: tuple, suffix: tuple):
        super().__init__()
        self.lazy_initialization(*suffix)
        self.prompt_keys, self.prompt_values = prompt
        self.keys, self.values = suffix

    def update(self, key_states, value_states, *args, **kwargs):
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        batch = self.keys.shape[0]
        return (torch.cat([self.prompt_keys.expand(batch, -1, -1, -1), self.keys], dim=-2),
                torch.cat([self.prompt_values.expand(batch, -1, -1, -1), self.values], dim=-2))

    def get_seq_length(self) -> int:
        return self.prompt_keys.shape[-2] + self.keys.shape[-2]


def _cache_of(prompt: list, suffixes: list) -> Cache:
    """A cache of :class:`_SharedPromptLayer` from per-layer prompt and suffix tensors."""
    return Cache(layers=[_SharedPromptLayer(p, s) for p, s in zip(prompt, suffixes)])


def _gather(chunks: list, sizes: np.ndarray, rows: torch.Tensor) -> list:
    """Per-layer ``(keys, values)`` of the list rows ``rows`` (sorted), from a chunked cache.

    ``chunks[c]`` holds the per-layer tensors of rows ``sum(sizes[:c]) ...``.  Only the rows
    asked for are copied: the chunks are never concatenated into one list-wide cache (which
    would be a large fresh allocation per depth).
    """
    if len(chunks) == 1:
        return [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in chunks[0]]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    owner = np.searchsorted(starts, rows.cpu().numpy(), side="right") - 1
    pieces = [(c, rows[torch.as_tensor(owner == c)] - int(starts[c])) for c in np.unique(owner)]
    if len(pieces) == 1:
        c, local = pieces[0]
        return [(k.index_select(0, local), v.index_select(0, local)) for k, v in chunks[c]]
    return [(torch.cat([chunks[c][i][0].index_select(0, local) for c, local in pieces]),
             torch.cat([chunks[c][i][1].index_select(0, local) for c, local in pieces]))
            for i in range(len(chunks[0]))]


def _advance(lm, prompt: list, chunks: list, sizes: np.ndarray, parents: np.ndarray,
             tokens: np.ndarray, batch_size: int):
    """Logits after appending ``tokens[i]`` to list row ``parents[i]`` (sorted), and the cache.

    The list runs in batches of ``batch_size`` rows; logits and cache come back per batch
    (``(logits, chunks, sizes)``), so no list-wide matrix is ever assembled.
    """
    index = torch.as_tensor(parents, dtype=torch.long, device=lm.device)
    ids = torch.as_tensor(tokens, dtype=torch.long, device=lm.device)[:, None]
    logits, new_chunks = [], []
    for start in range(0, len(parents), batch_size):
        cache = _cache_of(prompt, _gather(chunks, sizes, index[start:start + batch_size]))
        chunk_logits, cache = _run(lm, ids[start:start + batch_size], cache)
        logits.append(chunk_logits)
        new_chunks.append(_layers(cache))
    return logits, new_chunks, np.array([len(chunk) for chunk in logits])


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    scaled = logits if temperature == 1.0 else logits / temperature
    if not bool(torch.isfinite(scaled.amax(dim=-1)).all()):
        raise ValueError(f"temperature {temperature!r} is too small for these logits: "
                         "logits / temperature overflows")
    return torch.log_softmax(scaled, dim=-1)


class _Expansion:
    """The eligible children of a list, computed chunk by chunk of logits.

    Attributes (numpy, over the list's rows ``0..n-1``): ``rows`` and ``tokens`` of every
    eligible child (row-major order), ``children`` (eligible tokens per row), ``mass``
    (eligible probability per row, summed in float64), and for the oracle row: its
    ``argmax`` token and the set of its eligible tokens.
    """

    def __init__(self, logits: list, temperature: float, rule, oracle_row: int):
        rows, toks, logp, self.argmax, self.oracle_eligible = [], [], [], -1, frozenset()
        start = 0
        for chunk in logits:
            logq = _log_probs(chunk, temperature)
            r, x = torch.nonzero(rule.eligible(logq), as_tuple=True)
            rows.append(r + start)
            toks.append(x)
            logp.append(logq[r, x])
            if start <= oracle_row < start + len(chunk):
                self.argmax = int(torch.argmax(logq[oracle_row - start]))
            start += len(chunk)
        self.rows = torch.cat(rows).cpu().numpy()
        self.tokens = torch.cat(toks).cpu().numpy()
        n = start
        self.children = np.bincount(self.rows, minlength=n).astype(np.int64)
        probs = np.exp(torch.cat(logp).cpu().numpy().astype(np.float64))
        self.mass = np.bincount(self.rows, weights=probs, minlength=n)
        if oracle_row >= 0:
            self.oracle_eligible = frozenset(self.tokens[self.rows == oracle_row].tolist())


# ======================================================================== one prompt
class _Tree:
    """Node records of one prompt, appended depth by depth."""

    def __init__(self, n_steps: int):
        self.columns = {name: [] for name in Records.NODE_FIELDS}
        self.list_size = np.zeros(n_steps + 1, dtype=np.int64)
        self.n_erroneous = np.zeros(n_steps + 1)
        self.oracle_in_list = np.zeros(n_steps + 1, dtype=bool)
        self.capped = np.zeros(n_steps + 1, dtype=bool)
        self.oracle_ids = np.full(n_steps, -1, dtype=np.int64)
        self.size = 0

    def add(self, **columns) -> np.ndarray:
        n = len(columns["depth"])
        for name, values in columns.items():
            self.columns[name].append(np.asarray(values))
        ids = np.arange(self.size, self.size + n)
        self.size += n
        return ids


class _List:
    """The list of one decode (one prompt, rule and temperature), advanced depth by depth."""

    def __init__(self, n_steps: int, rule, temperature: float, cap, gen, oracle):
        self.tree = _Tree(n_steps)
        self.rule, self.temperature, self.cap, self.gen, self.oracle = (rule, temperature,
                                                                       cap, gen, oracle)
        self.n_steps = n_steps
        self.parent = np.array([-1])
        self.token = np.array([-1])
        self.weight = np.array([1.0])
        self.on_oracle = np.array([True])
        self.diverged = np.array([-1])
        self.done = False

    def __len__(self) -> int:
        return len(self.parent)

    def step(self, t: int, logits: list):
        """Record depth ``t`` and choose its children; ``(rows, tokens)`` of the kept
        children (rows of this list, sorted), or ``None`` when the decode has ended."""
        tree, n = self.tree, len(self.parent)
        tree.list_size[t] = n
        tree.oracle_in_list[t] = bool(self.on_oracle.any())
        if t == self.n_steps or n == 0:
            if n:
                tree.add(depth=np.full(n, t), parent=self.parent, token=self.token,
                         weight=self.weight, oracle=self.on_oracle, diverged=self.diverged,
                         children=np.full(n, -1), wrong=np.full(n, -1),
                         missed=np.zeros(n, dtype=bool), eligible_mass=np.full(n, np.nan))
            self.done = True
            return None
        oracle_rows = np.flatnonzero(self.on_oracle)
        r = int(oracle_rows[0]) if oracle_rows.size else -1
        with torch.no_grad():
            expansion = _Expansion(logits, self.temperature, self.rule, r)
        children = expansion.children
        wrong = np.full(n, -1, dtype=np.int64)
        missed = np.zeros(n, dtype=bool)
        y = -1
        if r >= 0:
            y = expansion.argmax if self.oracle is None else int(self.oracle[t])
            tree.oracle_ids[t] = y
            hit = y in expansion.oracle_eligible
            missed[r] = not hit
            wrong[r] = children[r] - int(hit)
        ids = tree.add(depth=np.full(n, t), parent=self.parent, token=self.token,
                       weight=self.weight, oracle=self.on_oracle, diverged=self.diverged,
                       children=children, wrong=wrong, missed=missed,
                       eligible_mass=expansion.mass)
        rows, toks = expansion.rows, expansion.tokens
        child_oracle = self.on_oracle[rows] & (toks == y)
        child_weight = self.weight[rows]
        child_diverged = np.where(self.on_oracle[rows] & ~child_oracle, t + 1,
                                  self.diverged[rows])
        err = np.flatnonzero(~child_oracle)
        tree.n_erroneous[t + 1] = float(child_weight[err].sum())
        keep_oracle = np.flatnonzero(child_oracle)
        room = None if self.cap is None else self.cap - keep_oracle.size
        if room is not None and err.size > room:
            chosen = np.sort(self.gen.choice(err, size=room, replace=False))
            child_weight = child_weight.copy()
            child_weight[chosen] *= err.size / room
            tree.capped[t + 1] = True
            err = chosen
        keep = np.sort(np.concatenate([keep_oracle, err]))
        self.parent, self.token = ids[rows[keep]], toks[keep]
        self.weight, self.on_oracle = child_weight[keep], child_oracle[keep]
        self.diverged = child_diverged[keep]
        return rows[keep], self.token

    def columns(self) -> dict:
        return {name: np.concatenate(values) if values else np.zeros(0)
                for name, values in self.tree.columns.items()}


def _rows(chunks: list, start: int, stop: int) -> list:
    """Views of the rows ``start..stop-1`` of a list of row chunks (no copy)."""
    out, offset = [], 0
    for chunk in chunks:
        lo, hi = max(start - offset, 0), min(stop - offset, len(chunk))
        if lo < hi:
            out.append(chunk[lo:hi])
        offset += len(chunk)
    return out


def _decode_prompt(lm, prompt, oracle, n_steps, settings, cap, batch_size, bar) -> list:
    """Decode one prompt under every ``(rule, temperature, generator)`` of ``settings``.

    The decodes run in lockstep and share one model: the prompt runs once, and at every
    depth the lists of all settings go through the model together (each list a contiguous
    block of rows), so small lists fill the forward batches of each other.  Each decode
    sees exactly the logits, and draws exactly the random numbers, it would see alone.
    """
    with torch.no_grad():
        logits, layers = _run(lm, torch.as_tensor(prompt, device=lm.device)[None, :], None)
        prompt_cache = _layers(layers)
        empty = [(k[:, :, :0], v[:, :, :0]) for k, v in prompt_cache]
    lists = [_List(n_steps, rule, temperature, cap, gen, oracle)
             for rule, temperature, gen in settings]
    logits, chunks, sizes = [logits], [empty], np.array([1])
    starts = np.zeros(len(lists), dtype=np.int64)  # depth 0: every list is the prompt row 0
    for t in range(n_steps + 1):
        parents, tokens, counts = [], [], np.zeros(len(lists), dtype=np.int64)
        for k, lst in enumerate(lists):
            if lst.done:
                continue
            kept = lst.step(t, _rows(logits, int(starts[k]), int(starts[k]) + len(lst)))
            if kept is not None:
                parents.append(kept[0] + starts[k])
                tokens.append(kept[1])
                counts[k] = len(kept[0])
        if t < n_steps:
            bar.update()
        if t + 1 >= n_steps or not counts.sum():
            continue
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        with torch.no_grad():
            logits, chunks, sizes = _advance(lm, prompt_cache, chunks, sizes,
                                             np.concatenate(parents), np.concatenate(tokens),
                                             batch_size)
    return [(lst.tree, lst.columns()) for lst in lists]


# ======================================================================== public
def list_decode(
    lm: LanguageModel,
    prompts,
    *,
    rule,
    oracle="greedy",
    n_steps: int | None = None,
    temperature: float = 1.0,
    cap: int | None = 256,
    batch_size: int = 64,
    chat: bool = False,
    bootstrap: str = "both",
    n_boot: int = 400,
    level: float = 0.95,
    rng=None,
    progress: bool = False,
) -> ListDecodeResult:
    r"""Run the list decoder on a language model and measure its branching parameters.

    Parameters
    ----------
    lm : LanguageModel
        Any loaded model (:func:`~llm_bridge.models.load_model`,
        :func:`~llm_bridge.models.tiny_model`, :func:`~llm_bridge.theory_lm.theory_model`).
    prompts : str, sequence of int, or a non-empty list of those
        The prompts (text needs a tokenizer; it is encoded with ``lm.encode``).
    rule : Threshold, Nucleus or TopK
        The eligibility rule (:mod:`llm_bridge.eligibility`).
    oracle : "greedy", or a reference (text or ids), or one reference per prompt
        The correct continuation: the model's own greedy continuation (argmax of the
        logits, first index on ties), or given tokens.  Reference text is encoded without
        special tokens.
    n_steps : int, optional
        Depth :math:`T` of the decode; needed with ``oracle="greedy"``, else defaults to
        the references' length (longer references are cut to ``n_steps``).
    temperature : float
        :math:`T > 0` in :math:`p_T = \mathrm{softmax}(z/T)`.
    cap : int or None
        Largest list kept per depth (``>= 2``), see the module docstring; ``None`` for no
        cap (the list may grow like :math:`R_0^t`).
    batch_size : int
        Candidates per forward call.
    chat : bool
        Encode text prompts with the chat template.
    bootstrap : {"prompts", "nodes", "both"}
        Resampling scheme of the intervals (:func:`~llm_bridge.offspring_stats.bootstrap_estimates`).
    n_boot : int
        Bootstrap replicates, ``>= 20``.
    level : float
        Confidence level, in (0, 1).
    rng : None, int, SeedSequence or Generator
        Randomness of the cap's subsampling and of the bootstrap.
    progress : bool
        Show a progress bar over prompts and depths.

    Returns
    -------
    ListDecodeResult
        The records, every parameter and the seed; ``.estimates`` (``r0``, ``immigration``,
        ``delta``, dispersion, with intervals), ``.predict()``, ``.to_pandas()``,
        ``.save()``.

    Raises
    ------
    ValueError
        Bad parameters (named), a rule that is not an eligibility rule, or inputs refused by
        :func:`prepare_inputs`.  A list that dies out is a result, not an error.

    Notes
    -----
    The estimates are :math:`\hat R_0=\sum_i w_i\xi_i/\sum_i w_i` over erroneous nodes,
    the immigration mean over oracle nodes, and :math:`\hat\delta` = fraction of oracle
    nodes whose correct token was not eligible (details in
    :mod:`llm_bridge.offspring_stats`).  Nothing here is stochastic except the cap's
    subsampling: with ``cap=None`` the records are a deterministic function of the model.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> from llm_bridge.eligibility import Threshold
    >>> lm = tiny_model(8, seed=0)
    >>> res = list_decode(lm, [[1, 2], [3, 4]], rule=Threshold(0.15), n_steps=4, rng=0)
    >>> res.n_erroneous.shape
    (2, 5)
    >>> bool(res.estimates.r0_defined)
    True
    """
    return _decode_many(lm, prompts, settings=[(rule, temperature, rng)], oracle=oracle,
                        n_steps=n_steps, cap=cap, batch_size=batch_size, chat=chat,
                        bootstrap=bootstrap, n_boot=n_boot, level=level, progress=progress)[0]


def _decode_many(lm, prompts, *, settings, oracle, n_steps, cap, batch_size, chat, bootstrap,
                 n_boot, level, progress) -> list[ListDecodeResult]:
    """:func:`list_decode` for every ``(rule, temperature, rng)`` of ``settings``, one
    result each, equal to separate calls (up to the rounding of the batched forwards); the
    settings of one prompt are decoded together (:func:`_decode_prompt`)."""
    checked = []
    for rule, temperature, rng in settings:
        if not isinstance(rule, _RULE_TYPES):
            raise ValueError(f"rule must be Threshold, Nucleus or TopK (llm_bridge.eligibility), "
                             f"got {rule!r:.80}")
        temperature = check.real("temperature", temperature, low=0.0, low_open=True)
        if isinstance(rule, TopK) and rule.k > lm.vocab_size:
            raise ValueError(f"k must be at most the vocabulary size {lm.vocab_size}, "
                             f"got {rule.k}")
        checked.append((rule, temperature, seed_sequence(rng)))
    if cap is not None:
        cap = check.integer("cap", cap, low=2)
    batch_size = check.integer("batch_size", batch_size, low=1)
    check.choice("bootstrap", bootstrap, BOOTSTRAP_KINDS)
    n_boot = check.integer("n_boot", n_boot, low=20)
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    prompt_ids, oracle_ids, n_steps = prepare_inputs(lm, prompts, oracle, n_steps, chat=chat)
    gens = []  # gens[k][i]: the cap's subsampling for setting k and prompt i
    for _, _, seed in checked:
        decode_seed = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key).spawn(2)[0]
        gens.append([np.random.default_rng(s) for s in decode_seed.spawn(len(prompt_ids))])
    from tqdm.auto import tqdm

    trees = [[] for _ in checked]
    columns = [[] for _ in checked]
    with tqdm(total=len(prompt_ids) * n_steps, disable=not progress, desc="list decode",
              unit="depth", leave=False) as bar:
        for i, prompt in enumerate(prompt_ids):
            decoded = _decode_prompt(
                lm, prompt, None if oracle_ids is None else oracle_ids[i], n_steps,
                [(rule, temperature, gens[k][i]) for k, (rule, temperature, _) in
                 enumerate(checked)], cap, batch_size, bar,
            )
            for k, (tree, nodes) in enumerate(decoded):
                nodes["prompt"] = np.full(len(nodes["depth"]), i)
                trees[k].append(tree)
                columns[k].append(nodes)
                logger.debug("prompt %d, setting %d: list sizes %s", i, k,
                             tree.list_size.tolist())
    return [
        ListDecodeResult(
            model_name=str(lm.name), vocab_size=int(lm.vocab_size), rule=rule,
            temperature=temperature, n_steps=n_steps, cap=cap,
            oracle_kind="greedy" if oracle_ids is None else "reference",
            prompt_ids=tuple(tuple(int(x) for x in p) for p in prompt_ids),
            records=Records.from_trees(trees[k], columns[k]), bootstrap=bootstrap,
            n_boot=n_boot, level=level, seed=SeedRecord.from_seed_sequence(seed),
        )
        for k, (rule, temperature, seed) in enumerate(checked)
    ]
