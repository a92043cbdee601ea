r"""Exact ancestral sampling and teacher-forced scoring of continuations.

For a prompt :math:`c` and a continuation :math:`x=(x_1,\dots,x_N)`, the model gives logits
:math:`z_i = z(c, x_{<i})\in\mathbb R^V` and, at temperature :math:`T`,

.. math::

    \log P(x\mid c;T) = \sum_{i=1}^{N} \log\operatorname{softmax}(z_i/T)_{x_i}.

:func:`sample` draws :math:`x` from exactly this law -- no top-k, top-p, repetition penalty
or any other change of the distribution -- one token at a time with a key/value cache, and
records :math:`\log P(x\mid c;T)` from the very log-probabilities it sampled from.
:func:`score` evaluates :math:`\log P(x\mid c;T')` for given token ids at any number of
temperatures :math:`T'` from one teacher-forced forward pass per sample, since the logits
:math:`z_i` depend on the prefix only, not on the temperature.  :func:`output_logits` and
:func:`iter_output_logits` return the :math:`z_i` themselves.

EOS policies (the same in sampling and scoring):

``"stop"``
    The sequence ends at its first EOS token, whose probability is included; later
    positions are padding (filled with the EOS id) and are not scored.  ``lengths`` counts
    the tokens up to and including that EOS (``N`` if there is none).
``"forbid"``
    The EOS logit is set to :math:`-\infty` before the softmax, i.e. the law is
    renormalised over the other tokens; every sequence has length ``N``.
``"none"``
    EOS is an ordinary token; every sequence has length ``N``.

Log-softmax is computed in float32 (float64 for a float64 model) from the model's logits;
token ids are never decoded and re-encoded.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from branching import validation as check
from branching.seeding import SeedRecord, seed_sequence

from .models import LanguageModel

with warnings.catch_warnings():  # transformers installs warnings filters when imported
    from transformers import DynamicCache

__all__ = [
    "EOS_POLICIES",
    "Samples",
    "iter_output_logits",
    "output_logits",
    "sample",
    "score",
]

logger = logging.getLogger(__name__)

EOS_POLICIES = ("stop", "forbid", "none")


@dataclass(frozen=True, eq=False, repr=False)
class Samples:
    """Continuations drawn by :func:`sample`, with their log-probabilities.

    Attributes
    ----------
    tokens : ndarray of int64, shape (S, N)
        Token ids of the continuations; with ``eos="stop"`` the positions at and after
        ``lengths[s]`` hold the EOS id as padding.
    lengths : ndarray of int64, shape (S,)
        Number of scored tokens of each continuation (up to and including a stopping EOS).
    logp : ndarray of float64, shape (S,)
        :math:`\\log P(x\\mid c;T)` at the sampling temperature, from the sampling-time
        log-probabilities.
    prompt_ids : tuple of int
        The prompt the continuations follow.
    temperature : float
    eos : str
        The EOS policy, one of :data:`EOS_POLICIES`.
    model_name : str
    seed : branching.seeding.SeedRecord
        Passing it back as ``rng`` reproduces the draw.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    logp: np.ndarray
    prompt_ids: tuple
    temperature: float
    eos: str
    model_name: str
    seed: SeedRecord

    @property
    def n_samples(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.tokens.shape[1]

    def __repr__(self) -> str:
        return (
            f"Samples(model={self.model_name!r}, n_samples={self.n_samples}, "
            f"n_tokens={self.n_tokens}, prompt_length={len(self.prompt_ids)}, "
            f"temperature={self.temperature:g}, eos={self.eos!r}, "
            f"mean_length={self.lengths.mean():.3g}, mean_logp={self.logp.mean():.4g}, "
            f"seed={self.seed})"
        )

    def to_pandas(self):
        """One row per sample: ``sample``, ``length``, ``logp``, ``token_0`` ... ``token_{N-1}``,
        and the constant columns ``temperature`` and ``eos``."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "sample": np.arange(self.n_samples),
                "temperature": self.temperature,
                "eos": self.eos,
                "length": self.lengths,
                "logp": self.logp,
            }
        )
        token_columns = pd.DataFrame(
            self.tokens, columns=[f"token_{i}" for i in range(self.n_tokens)]
        )
        return pd.concat([frame, token_columns], axis=1)


# ----------------------------------------------------------------------------------------
# validation helpers


def _eos_policy(lm: LanguageModel, eos) -> str:
    eos = check.choice("eos", eos, EOS_POLICIES)
    if eos != "none" and lm.eos_token_id is None:
        raise ValueError(
            f"eos={eos!r} needs a model with an eos_token_id, and {lm.name} has none; "
            f"use eos='none'"
        )
    return eos


def _prompt(lm: LanguageModel, prompt_ids, name: str = "prompt_ids") -> tuple[int, ...]:
    if isinstance(prompt_ids, str):
        raise ValueError(
            f"{name} must be token ids (use lm.encode(text)), got the string {prompt_ids!r:.60}"
        )
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.detach().cpu().numpy()
    try:
        ids = np.asarray(prompt_ids)
    except ValueError:
        ids = np.asarray(prompt_ids, dtype=object)
    if ids.size == 0:
        raise ValueError(f"{name} must be a non-empty sequence of token ids, got an empty prompt")
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D sequence of integer token ids, got {prompt_ids!r:.80}"
        )
    ids = ids.astype(np.int64)
    bad = (ids < 0) | (ids >= lm.vocab_size)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name} must hold token ids in [0, {lm.vocab_size - 1}]; entry {i} is {ids[i]}"
        )
    return tuple(int(i) for i in ids)


def _prompts(lm: LanguageModel, prompt_ids, n_samples: int) -> list[tuple[int, ...]]:
    """One prompt for all samples, or one prompt per sample."""
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.detach().cpu().numpy()
    per_sample = (isinstance(prompt_ids, np.ndarray) and prompt_ids.ndim == 2) or (
        isinstance(prompt_ids, Sequence)
        and not isinstance(prompt_ids, str)
        and len(prompt_ids) > 0
        and not isinstance(prompt_ids[0], (numbers.Integral, np.integer))
    )
    if not per_sample:
        return [_prompt(lm, prompt_ids)] * n_samples
    if len(prompt_ids) != n_samples:
        raise ValueError(
            f"prompt_ids must be one prompt or one prompt per sample ({n_samples}), "
            f"got {len(prompt_ids)} prompts"
        )
    return [_prompt(lm, p, f"prompt_ids[{s}]") for s, p in enumerate(prompt_ids)]


def _check_context(lm: LanguageModel, prompt_length: int, n_tokens: int) -> None:
    if prompt_length + n_tokens > lm.context_length:
        raise ValueError(
            f"n_tokens must be <= {lm.context_length - prompt_length} for a prompt of "
            f"{prompt_length} tokens (model context_length {lm.context_length}), got "
            f"n_tokens={n_tokens}"
        )


def _temperatures(temperatures) -> np.ndarray:
    temps = check.array("temperatures", np.atleast_1d(temperatures), ndim=1)
    if temps.size == 0:
        raise ValueError("temperatures must contain at least one temperature, got none")
    if np.any(temps <= 0):
        i = int(np.argmax(temps <= 0))
        raise ValueError(f"temperatures must be > 0; entry {i} is {temps[i]!r}")
    return temps


def _tokens_and_lengths(lm: LanguageModel, tokens, lengths, eos: str):
    """Validated ``tokens`` (int64 [S, N]) and ``lengths`` (int64 [S]) under the EOS policy."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(
            f"tokens must be a non-empty 2-D array (samples x positions), got shape {tokens.shape}"
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must hold integer token ids, got dtype {tokens.dtype}")
    tokens = tokens.astype(np.int64)
    n_samples, n_tokens = tokens.shape
    if eos == "stop":
        is_eos = tokens == lm.eos_token_id
        stopped = is_eos.any(axis=1)
        implied = np.where(stopped, is_eos.argmax(axis=1) + 1, n_tokens)
    else:
        implied = np.full(n_samples, n_tokens, dtype=np.int64)
    if lengths is None:
        lengths = implied
    else:
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.detach().cpu().numpy()
        lengths = np.asarray(lengths)
        if lengths.shape != (n_samples,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be {n_samples} integers, got {lengths!r:.80}")
        lengths = lengths.astype(np.int64)
        if np.any((lengths < 1) | (lengths > n_tokens)):
            s = int(np.argmax((lengths < 1) | (lengths > n_tokens)))
            raise ValueError(f"lengths must lie in [1, {n_tokens}]; entry {s} is {lengths[s]}")
        if eos == "stop" and np.any(lengths != implied):
            s = int(np.argmax(lengths != implied))
            raise ValueError(
                f"lengths[{s}] = {lengths[s]} disagrees with eos='stop': sample {s} ends at "
                f"length {implied[s]} (its first EOS, or n_tokens)"
            )
    inside = np.arange(n_tokens)[None, :] < lengths[:, None]
    bad = inside & ((tokens < 0) | (tokens >= lm.vocab_size))
    if bad.any():
        s, i = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(
            f"tokens must hold ids in [0, {lm.vocab_size - 1}]; tokens[{s}, {i}] is {tokens[s, i]}"
        )
    return np.where(inside, tokens, 0), lengths


# ----------------------------------------------------------------------------------------
# model plumbing


def _compute_dtype(lm: LanguageModel) -> torch.dtype:
    return torch.float64 if lm.dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=None)
def _accepts_logits_to_keep(model_class) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _forward(lm: LanguageModel, input_ids, *, cache=None, keep: int | None = None, **kwargs):
    """Logits of the last ``keep`` positions (all if None); ``cache`` (a
    :class:`transformers.DynamicCache`) is extended in place when given."""
    if keep is not None and _accepts_logits_to_keep(type(lm.model)):
        kwargs["logits_to_keep"] = keep
    if cache is None:
        out = lm.model(input_ids, use_cache=False, **kwargs)
    else:
        out = lm.model(input_ids, cache=cache, use_cache=True, **kwargs)
    logits = out.logits if keep is None else out.logits[:, -keep:]
    return logits.to(_compute_dtype(lm))


def _finite_or_raise(logits: torch.Tensor, where: str) -> None:
    """Refuse logits with a NaN or +inf entry, or a row that is all -inf (one reduction:
    the row maximum propagates NaN)."""
    if not bool(torch.isfinite(logits.amax(dim=-1)).all()):
        raise FloatingPointError(f"the model produced NaN or infinite logits ({where})")


def _prefill(lm: LanguageModel, prompt: tuple[int, ...]):
    """Key/value cache of the prompt (batch 1) and the logits for the first output token."""
    ids = torch.tensor([prompt], dtype=torch.long, device=lm.device)
    cache = DynamicCache(config=getattr(lm.model, "config", None))
    logits = _forward(lm, ids, cache=cache, keep=1)
    _finite_or_raise(logits, "prompt")
    return cache, logits[:, -1]


def _expand(cache, batch: int):
    """A copy of a batch-1 prompt cache repeated ``batch`` times (the original is kept for
    the next batch)."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(batch)
    return cache


def _apply_policy(logits: torch.Tensor, eos: str, eos_token_id: int | None) -> torch.Tensor:
    if eos == "forbid":
        logits = logits.clone()
        logits[..., eos_token_id] = -torch.inf
    return logits


def _log_softmax(logits: torch.Tensor, temperature, shown: float | None = None) -> torch.Tensor:
    """``log softmax(logits / temperature)`` over the last axis, refusing an overflow.

    ``temperature`` is a number or a tensor broadcasting against ``logits`` (one
    temperature per row); ``shown`` is the temperature named in the error message
    (default ``temperature``)."""
    scaled = logits / temperature
    if not bool(torch.isfinite(scaled.amax(dim=-1)).all()):
        raise ValueError(
            f"temperature {temperature if shown is None else shown!r} is too small for these logits: logits / temperature "
            f"overflows {str(logits.dtype).removeprefix('torch.')}"
        )
    return torch.log_softmax(scaled, dim=-1)


_BLOCK = 256


def _inverse_cdf(logq: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Inverse-cdf draws from the rows of ``p = exp(logq)``, renormalised.

    Row ``b`` returns the token ``i`` with ``F(i-1) < u_b F(V-1) <= F(i)``, ``F`` the running
    sum of ``p`` and ``u_b`` in (0, 1].  The search runs in two levels: over the running
    sum (float64) of the masses of blocks of :data:`_BLOCK` tokens, then over the running
    sum (float64) inside the chosen block.  Block masses are summed in the dtype of
    ``logq`` with torch's cascade summation, relative error about ``log2(_BLOCK)`` units
    in the last place -- no larger than the rounding already in ``logq`` -- instead of a
    slow sequential float64 cumulative sum over the whole vocabulary.  A zero-probability
    token is never returned: the target lies strictly above the mass before the chosen
    block and is capped at the block's own running total, and ties resolve to the first
    index.
    """
    p = torch.exp(logq)
    batch, vocab = p.shape
    block = min(_BLOCK, vocab)
    if vocab % block:
        p = torch.nn.functional.pad(p, (0, block - vocab % block))
    blocks = p.view(batch, -1, block)
    block_cdf = torch.cumsum(blocks.sum(dim=-1).to(torch.float64), dim=-1)
    target = (u * block_cdf[:, -1]).contiguous()[:, None]
    j = torch.searchsorted(block_cdf, target).clamp_(max=block_cdf.shape[1] - 1)
    before = torch.where(j > 0, block_cdf.gather(1, (j - 1).clamp(min=0)), 0.0)
    inside = torch.cumsum(
        blocks[torch.arange(batch, device=p.device), j[:, 0]], dim=-1, dtype=torch.float64
    )
    residual = torch.minimum(target - before, inside[:, -1:]).contiguous()
    k = torch.searchsorted(inside, residual).clamp_(max=block - 1)
    return (j * block + k).squeeze(1)


# ----------------------------------------------------------------------------------------
# sampling


def sample(
    lm: LanguageModel,
    prompt_ids,
    n_samples: int,
    n_tokens: int,
    *,
    temperature: float = 1.0,
    eos: str = "stop",
    batch_size: int = 64,
    rng=None,
) -> Samples:
    r"""Draw continuations by exact ancestral sampling from :math:`\mathrm{softmax}(z/T)`.

    Parameters
    ----------
    lm : LanguageModel
    prompt_ids : sequence of int
        The prompt, as token ids (e.g. from :meth:`LanguageModel.encode`); non-empty.
    n_samples : int
        Number of continuations :math:`S \ge 1`.
    n_tokens : int
        Length :math:`N \ge 1`; the prompt length plus :math:`N` must fit the context.
    temperature : float
        :math:`T > 0`, finite.
    eos : {"stop", "forbid", "none"}
        EOS policy (module docstring); must match the one used when scoring.
    batch_size : int
        Continuations decoded together.  The result does not depend on it (see Notes).
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Source of randomness.

    Returns
    -------
    Samples
        Token ids, lengths and :math:`\log P(x\mid c;T)` of every continuation.

    Notes
    -----
    The prompt is run once; its key/value cache is copied for every batch, and each
    batch then advances one token per forward pass.  At step :math:`i` the
    log-probabilities :math:`\ell = \log\mathrm{softmax}(z_i/T)` (EOS logit at
    :math:`-\infty` under ``"forbid"``) are computed in float32 (float64 for a float64
    model); token :math:`x_i` is the inverse-cdf draw
    :math:`F(x_i-1) < u_{s,i}F(V-1) \le F(x_i)` with :math:`F` the running sum of
    :math:`e^{\ell}` accumulated in float64 (so the law sampled is :math:`e^{\ell}` up to
    the rounding of :math:`\ell` itself, about 1e-7 relative in float32), and
    :math:`\ell_{x_i}` is added to the sample's log-probability.  The uniforms
    :math:`u_{s,i}` form one ``(S, N)`` array drawn from ``rng`` before decoding, so sample
    :math:`s` is the same whatever ``batch_size`` (up to the model's batch-dependent
    floating-point rounding of the logits, which can flip a draw only when
    :math:`u_{s,i}` lies within that rounding of a cdf boundary).  A batch whose
    continuations have all stopped ends early; its arrays are still full width.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(5, seed=0, eos_token_id=4)
    >>> out = sample(lm, [0, 1], n_samples=3, n_tokens=4, temperature=0.7, rng=1)
    >>> out.tokens.shape, out.lengths.shape, out.logp.shape
    ((3, 4), (3,), (3,))
    """
    prompt = _prompt(lm, prompt_ids)
    n_samples = check.integer("n_samples", n_samples, low=1)
    n_tokens = check.integer("n_tokens", n_tokens, low=1)
    temperature = check.real("temperature", temperature, low=0.0, low_open=True)
    eos = _eos_policy(lm, eos)
    batch_size = check.integer("batch_size", batch_size, low=1)
    _check_context(lm, len(prompt), n_tokens)
    seed, uniforms = _uniforms(rng, n_samples, n_tokens)
    tokens, lengths, logp = _draw(
        lm, prompt, uniforms, np.full(n_samples, temperature), eos, batch_size
    )
    return Samples(
        tokens=tokens,
        lengths=lengths,
        logp=logp,
        prompt_ids=prompt,
        temperature=temperature,
        eos=eos,
        model_name=lm.name,
        seed=SeedRecord.from_seed_sequence(seed),
    )


def _uniforms(rng, n_samples: int, n_tokens: int):
    """The seed of a draw and its ``(S, N)`` uniforms in (0, 1]."""
    seed = seed_sequence(rng)
    return seed, 1.0 - np.random.default_rng(seed).random((n_samples, n_tokens))


def _draw(lm, prompt, uniforms, temperatures, eos, batch_size):
    """Ancestral draws after one prompt: row ``s`` uses ``uniforms[s]`` at
    ``temperatures[s]``; rows are decoded ``batch_size`` at a time.

    Rows at different temperatures can share a batch (a temperature scan packs several grid
    points into one forward pass); row ``s`` is the same draw whatever its batch.
    Returns ``tokens`` (int64 [S, N]), ``lengths`` (int64 [S]), ``logp`` (float64 [S]).
    """
    n_samples, n_tokens = uniforms.shape
    tokens = np.empty((n_samples, n_tokens), dtype=np.int64)
    lengths = np.empty(n_samples, dtype=np.int64)
    logp = np.empty(n_samples, dtype=np.float64)
    with torch.no_grad():
        prompt_cache, first_logits = _prefill(lm, prompt)
        for start in range(0, n_samples, batch_size):
            stop = min(start + batch_size, n_samples)
            u = torch.as_tensor(uniforms[start:stop], device=lm.device)
            t = torch.as_tensor(
                temperatures[start:stop, None], dtype=first_logits.dtype, device=lm.device
            )
            tokens[start:stop], lengths[start:stop], logp[start:stop] = _sample_batch(
                lm, prompt_cache, first_logits, u, t, eos, float(temperatures[start:stop].min())
            )
            logger.debug("sampled continuations %d-%d of %d", start, stop, n_samples)
    return tokens, lengths, logp


def _sample_batch(lm, prompt_cache, first_logits, u, temperature, eos, coldest):
    batch, n_tokens = u.shape
    eos_id = lm.eos_token_id
    pad = eos_id if eos == "stop" else 0
    cache = _expand(prompt_cache, batch) if n_tokens > 1 else None
    logits = first_logits.expand(batch, -1)
    tokens = torch.full((batch, n_tokens), pad, dtype=torch.long, device=lm.device)
    lengths = torch.full((batch,), n_tokens, dtype=torch.long, device=lm.device)
    logp = torch.zeros(batch, dtype=torch.float64, device=lm.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=lm.device)
    for i in range(n_tokens):
        logq = _log_softmax(_apply_policy(logits, eos, eos_id), temperature, coldest)
        token = _inverse_cdf(logq, u[:, i])
        step_logp = logq.gather(1, token[:, None]).squeeze(1).to(torch.float64)
        if eos == "stop":
            token = torch.where(finished, pad, token)
            logp += torch.where(finished, 0.0, step_logp)
            ended = (token == eos_id) & ~finished
            lengths[ended] = i + 1
            finished |= ended
        else:
            logp += step_logp
        tokens[:, i] = token
        if i + 1 == n_tokens or bool(finished.all()):
            break
        logits = _forward(lm, token[:, None], cache=cache, keep=1)
        logits = logits[:, -1]
        _finite_or_raise(logits, f"output position {i + 1}")
    return tokens.cpu().numpy(), lengths.cpu().numpy(), logp.cpu().numpy()


# ----------------------------------------------------------------------------------------
# teacher-forced logits and scoring


@dataclass(frozen=True)
class _Batch:
    index: np.ndarray  # sample indices, int64 [B]
    tokens: torch.Tensor  # [B, N], positions past the length replaced by a valid id
    mask: torch.Tensor  # bool [B, N], True at scored positions
    logits: torch.Tensor  # [B, N, V], z_i for every output position, EOS policy applied


class _TeacherForcing:
    """Validated inputs of a teacher-forced pass; :meth:`batches` runs the model."""

    def __init__(self, lm, prompt_ids, tokens, lengths, eos, batch_size):
        self.lm = lm
        self.eos = _eos_policy(lm, eos)
        self.batch_size = check.integer("batch_size", batch_size, low=1)
        self.tokens, self.lengths = _tokens_and_lengths(lm, tokens, lengths, self.eos)
        self.n_samples, self.n_tokens = self.tokens.shape
        self.prompts = _prompts(lm, prompt_ids, self.n_samples)
        for prompt in set(self.prompts):
            _check_context(lm, len(prompt), self.n_tokens)

    def batches(self) -> Iterator[_Batch]:
        """Samples sharing a prompt run on its cache; samples with a prompt of their own
        are batched with left padding, shortest prompts together."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for s, prompt in enumerate(self.prompts):
            groups.setdefault(prompt, []).append(s)
        singles = sorted(
            (idx[0] for idx in groups.values() if len(idx) == 1),
            key=lambda s: len(self.prompts[s]),
        )
        with torch.no_grad():
            for prompt, members in groups.items():
                if len(members) > 1:
                    yield from self._cached_batches(prompt, np.asarray(members))
            for start in range(0, len(singles), self.batch_size):
                yield self._padded_batch(np.asarray(singles[start:start + self.batch_size]))

    def _cached_batches(self, prompt, members) -> Iterator[_Batch]:
        lm = self.lm
        prompt_cache, first_logits = _prefill(lm, prompt)
        for start in range(0, len(members), self.batch_size):
            index = members[start:start + self.batch_size]
            x = torch.as_tensor(self.tokens[index], device=lm.device)
            first = first_logits.expand(len(index), -1)[:, None, :]
            if self.n_tokens > 1:
                rest = _forward(lm, x[:, :-1], cache=_expand(prompt_cache, len(index)))
                logits = torch.cat([first, rest], dim=1)
            else:
                logits = first
            yield self._batch(index, x, logits)

    def _padded_batch(self, index) -> _Batch:
        lm = self.lm
        x = torch.as_tensor(self.tokens[index], device=lm.device)
        width = max(len(self.prompts[s]) for s in index) + self.n_tokens - 1
        ids = torch.zeros((len(index), width), dtype=torch.long, device=lm.device)
        attention = torch.zeros((len(index), width), dtype=torch.long, device=lm.device)
        for row, s in enumerate(index):
            prompt = torch.tensor(self.prompts[s], dtype=torch.long, device=lm.device)
            sequence = torch.cat([prompt, x[row, :-1]])
            ids[row, width - len(sequence):] = sequence
            attention[row, width - len(sequence):] = 1
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
        logits = _forward(
            lm, ids, keep=self.n_tokens, attention_mask=attention, position_ids=positions
        )
        return self._batch(index, x, logits)

    def _batch(self, index, x, logits) -> _Batch:
        _finite_or_raise(logits, "teacher forcing")
        lengths = torch.as_tensor(self.lengths[index], device=self.lm.device)
        mask = torch.arange(self.n_tokens, device=self.lm.device)[None, :] < lengths[:, None]
        return _Batch(index, x, mask, _apply_policy(logits, self.eos, self.lm.eos_token_id))


def score(
    lm: LanguageModel,
    prompt_ids,
    tokens,
    lengths=None,
    *,
    temperatures=(1.0,),
    eos: str = "stop",
    batch_size: int = 64,
) -> np.ndarray:
    r"""Teacher-forced :math:`\log P(x\mid c;T')` of given continuations at several temperatures.

    Parameters
    ----------
    lm : LanguageModel
    prompt_ids : sequence of int, or sequence of such sequences
        One prompt for every sample, or one prompt per sample (lengths may differ).
    tokens : array of int, shape (S, N)
        Continuations, e.g. ``Samples.tokens``.
    lengths : array of int, shape (S,), optional
        Number of tokens to score per sample.  Under ``eos="stop"`` it is implied by the
        first EOS (and, if given, must agree); otherwise it defaults to ``N`` and a
        smaller value scores a prefix.
    temperatures : float or sequence of float
        The :math:`T' > 0` to evaluate.
    eos : {"stop", "forbid", "none"}
        EOS policy, as in :func:`sample`.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    ndarray of float64, shape (S, len(temperatures))
        ``out[s, k] = sum_{i < lengths[s]} log softmax(z_i / T'_k)[x_i]``; ``-inf`` for a
        continuation containing EOS under ``"forbid"``.

    Notes
    -----
    One forward pass over ``[prompt, x_1 .. x_{N-1}]`` gives every :math:`z_i`; samples
    sharing a prompt reuse its key/value cache (the prompt is run once), samples with
    their own prompt are batched with left padding, an attention mask and explicit
    position ids.  Each temperature then costs one log-softmax over ``(B, N, V)``, done
    one temperature at a time so memory stays at one such array.  The log-softmax uses
    the same dtype and the same operation as :func:`sample`, so sampling-time and
    scoring-time log-probabilities agree up to the rounding difference between cached
    incremental and teacher-forced logits.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(5, seed=0, eos_token_id=4)
    >>> out = sample(lm, [0, 1], n_samples=3, n_tokens=4, rng=1)
    >>> logp = score(lm, [0, 1], out.tokens, out.lengths, temperatures=[0.5, 1.0, 2.0])
    >>> bool(np.allclose(logp[:, 1], out.logp, atol=1e-5))
    True
    """
    temps = _temperatures(temperatures)
    plan = _TeacherForcing(lm, prompt_ids, tokens, lengths, eos, batch_size)
    result = np.empty((plan.n_samples, temps.size), dtype=np.float64)
    for batch in plan.batches():
        for k, temperature in enumerate(temps):
            logq = _log_softmax(batch.logits, float(temperature))
            per_position = logq.gather(-1, batch.tokens[..., None]).squeeze(-1).to(torch.float64)
            total = torch.where(batch.mask, per_position, 0.0).sum(dim=1)
            result[batch.index, k] = total.cpu().numpy()
    return result


def iter_output_logits(
    lm: LanguageModel,
    prompt_ids,
    tokens,
    lengths=None,
    *,
    eos: str = "stop",
    batch_size: int = 64,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    r"""The logits :math:`z_i` at every output position, one batch of samples at a time.

    Parameters
    ----------
    lm : LanguageModel
    prompt_ids : sequence of int, or sequence of such sequences
        One prompt for every sample, or one prompt per sample (lengths may differ).
    tokens : array of int, shape (S, N)
        Continuations, e.g. ``Samples.tokens``.
    lengths : array of int, shape (S,), optional
        Number of output positions that count per sample.  Under ``eos="stop"`` it is
        implied by the first EOS (and, if given, must agree); otherwise it defaults to ``N``.
    eos : {"stop", "forbid", "none"}
        EOS policy, as in :func:`sample`.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    iterator of (index, logits)
        Inputs are validated at the call; the model runs as the iterator is consumed.
    index : ndarray of int64, shape (B,)
        The samples in this batch (batches need not come in sample order).
    logits : torch.Tensor, shape (B, N, V)
        ``logits[b, i]`` is :math:`z_{i+1}`, the logit vector from which token ``i`` of
        sample ``index[b]`` is drawn, in float32 (float64 for a float64 model), on the
        model's device.  The EOS entry is ``-inf`` under ``"forbid"``; positions at or
        after ``lengths`` are set to zero -- a uniform, temperature-independent
        distribution, so they add nothing to temperature derivatives -- and must be
        masked with ``lengths`` before summing log-probabilities.

    Raises
    ------
    ValueError
        For an EOS policy the model cannot follow (no ``eos_token_id``), token ids outside
        the vocabulary, ``lengths`` outside ``[1, N]`` or disagreeing with the first EOS
        under ``"stop"``, a number of prompts that is neither 1 nor ``S``, or a prompt
        plus ``N`` tokens longer than the context.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(5, seed=0)
    >>> tokens = np.array([[1, 2, 3], [3, 2, 1], [0, 0, 4]])
    >>> for index, logits in iter_output_logits(lm, [0], tokens, eos="none", batch_size=2):
    ...     print(index.tolist(), tuple(logits.shape), logits.dtype)
    [0, 1] (2, 3, 5) torch.float32
    [2] (1, 3, 5) torch.float32
    """
    plan = _TeacherForcing(lm, prompt_ids, tokens, lengths, eos, batch_size)
    return ((batch.index, torch.where(batch.mask[..., None], batch.logits, 0.0))
            for batch in plan.batches())


def output_logits(
    lm: LanguageModel,
    prompt_ids,
    tokens,
    lengths=None,
    *,
    eos: str = "stop",
    batch_size: int = 64,
) -> np.ndarray:
    r"""All output-position logits as one array, in sample order.

    Same as collecting :func:`iter_output_logits`; needs ``S * N * V`` floats of memory.

    Parameters
    ----------
    lm : LanguageModel
    prompt_ids : sequence of int, or sequence of such sequences
        One prompt for every sample, or one prompt per sample (lengths may differ).
    tokens : array of int, shape (S, N)
        Continuations, e.g. ``Samples.tokens``.
    lengths : array of int, shape (S,), optional
        Number of output positions that count per sample.  Under ``eos="stop"`` it is
        implied by the first EOS (and, if given, must agree); otherwise it defaults to ``N``.
    eos : {"stop", "forbid", "none"}
        EOS policy, as in :func:`sample`.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    ndarray, shape (S, N, V)
        float32 (float64 for a float64 model); see :func:`iter_output_logits`.

    Raises
    ------
    ValueError
        For an EOS policy the model cannot follow (no ``eos_token_id``), token ids outside
        the vocabulary, ``lengths`` outside ``[1, N]`` or disagreeing with the first EOS
        under ``"stop"``, a number of prompts that is neither 1 nor ``S``, or a prompt
        plus ``N`` tokens longer than the context.

    Examples
    --------
    The log-softmax of the logits gives back :func:`score` at temperature 1:

    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(5, seed=0)
    >>> tokens = np.array([[1, 2, 3], [3, 2, 1]])
    >>> z = output_logits(lm, [0], tokens, lengths=[3, 1], eos="none")
    >>> z.shape, bool((z[1, 1:] == 0).all())        # positions past lengths[1] are zero
    ((2, 3, 5), True)
    >>> logp = torch.log_softmax(torch.from_numpy(z[0]), dim=-1)[[0, 1, 2], tokens[0]].sum()
    >>> bool(abs(float(logp) - score(lm, [0], tokens, lengths=[3, 1], eos="none")[0, 0]) < 1e-5)
    True
    """
    plan = _TeacherForcing(lm, prompt_ids, tokens, lengths, eos, batch_size)
    dtype = np.float64 if _compute_dtype(lm) == torch.float64 else np.float32
    result = np.empty((plan.n_samples, plan.n_tokens, lm.vocab_size), dtype=dtype)
    for batch in plan.batches():
        logits = torch.where(batch.mask[..., None], batch.logits, 0.0)
        result[batch.index] = logits.cpu().numpy()
    return result
