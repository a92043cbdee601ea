r"""A synthetic language model whose list decoder is exactly the theory's branching process.

:func:`theory_model` builds a :class:`~llm_bridge.models.LanguageModel` over ``M`` tokens
whose logits are a deterministic function of the whole prefix, drawn once from a seeded
hash: it is the *random sequence-to-sequence function* of the theory, realised as a torch
module with a key/value cache, so it runs through exactly the code of a real model
(:func:`llm_bridge.listdecode.list_decode` cannot tell the difference).

For a prefix :math:`s` (prompt plus continuation) the module draws, for every token
:math:`v`, a uniform :math:`u_v(s)\in[0,1)` from a 64-bit hash of :math:`(s, v)` and the
seed, and declares :math:`v` *eligible* when

* :math:`s` is on the oracle path and :math:`v = o(s)` (the correct next token):
  :math:`u_v(s) < 1-\delta`;
* :math:`s` is on the oracle path and :math:`v\ne o(s)`: :math:`u_v(s) < \varepsilon_o`;
* :math:`s` is erroneous (it left the oracle path): :math:`u_v(s) < \varepsilon`.

Distinct prefixes hash to independent uniforms, so eligibility is independent across
tokens and prefixes: the number of erroneous candidates of the list decoder is the
Galton-Watson process with immigration of :mod:`branching.model` with
:math:`\xi\sim\mathrm{Bin}(M,\varepsilon)`, :math:`I\sim\mathrm{Bin}(M-1,\varepsilon_o)`
and miss probability :math:`\delta`.  The oracle continuation of a prompt is
:math:`y^*_{t+1} = o(c\,y^*_{1:t})`, with :math:`o(s)` another hash of :math:`s`
(:meth:`TheoryModule.oracle`); the first ``prompt_length`` tokens of every sequence are
the prompt.

The logits turn eligibility into a probability threshold: eligible tokens get logit 0 and
the others :math:`\log r` with :math:`r = 1/(2\theta M)`, so that with :math:`n` eligible
tokens

.. math::  p(\text{eligible}) = \frac{1}{n(1-r) + Mr} \ge \theta
           \quad\text{for } n \le \frac{1}{2\theta(1-r)}, \qquad
           p(\text{not eligible}) = r\,p(\text{eligible}) \le \frac1M < \theta,

and the list decoder with ``Threshold(theta)`` at temperature 1 keeps exactly the eligible
tokens.  This needs :math:`\theta M > 1`; a prefix with more than
:math:`1/(2\theta(1-r))` eligible tokens raises (the constructor refuses parameters for
which that has a probability above :math:`10^{-9}`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy import stats

from branching import validation as check

from .models import LanguageModel, resolve_dtype

with warnings.catch_warnings():  # transformers installs warnings filters when imported
    from transformers.cache_utils import DynamicCache
    from transformers.modeling_outputs import CausalLMOutputWithPast

__all__ = ["TheoryModule", "theory_model"]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ORACLE_SALT = np.uint64(0xD1B54A32D192ED03)
_TOKEN_SALT = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def _unit(x: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) from the top 53 bits."""
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


class TheoryModule(torch.nn.Module):
    """The torch module behind :func:`theory_model` (see the module docstring).

    Called like a Hugging Face causal LM: ``module(input_ids, cache=cache, use_cache=True,
    logits_to_keep=n)`` returns an object with ``logits`` of shape ``(B, L, M)`` (or the
    last ``n`` positions) and ``cache``, a
    :class:`~transformers.DynamicCache` whose single layer stores the token ids, so that
    batch re-indexing of the cache works as for a transformer.
    """

    def __init__(self, M, eps, eps_oracle, delta, theta, prompt_length, seed, dtype):
        super().__init__()
        self.M, self.eps, self.eps_oracle, self.delta = M, eps, eps_oracle, delta
        self.theta, self.prompt_length, self.dtype = theta, prompt_length, dtype
        self.seed = np.uint64(seed)
        self.log_r = -math.log(2.0 * theta * M)
        self.max_eligible = int(math.floor(1.0 / (2.0 * theta * (1.0 - math.exp(self.log_r)))))
        self._tokens = np.arange(M, dtype=np.uint64)

    def _prefix_state(self, ids: np.ndarray):
        """Hash and oracle flag of every prefix ``ids[:, :j]``, ``j = 1..L``."""
        B, L = ids.shape
        h = np.full(B, self.seed, dtype=np.uint64)
        on_oracle = np.ones(B, dtype=bool)
        hashes = np.empty((B, L), dtype=np.uint64)
        oracle_flags = np.empty((B, L), dtype=bool)
        for j in range(L):
            token = ids[:, j].astype(np.uint64)
            if j >= self.prompt_length:
                on_oracle &= token == self._oracle_token(h)
            h = _splitmix(h ^ ((token + np.uint64(1)) * _GOLDEN & _MASK64))
            hashes[:, j], oracle_flags[:, j] = h, on_oracle
        return hashes, oracle_flags

    def _oracle_token(self, h: np.ndarray) -> np.ndarray:
        return _splitmix(h ^ _ORACLE_SALT) % np.uint64(self.M)

    def eligible(self, h: np.ndarray, on_oracle: np.ndarray) -> np.ndarray:
        """Eligibility mask ``(B, M)`` after prefixes with hashes ``h`` and oracle flags."""
        u = _unit(_splitmix(h[:, None] ^ _splitmix(self._tokens[None, :] ^ _TOKEN_SALT)))
        rate = np.where(on_oracle, self.eps_oracle, self.eps)[:, None]
        mask = u < rate
        rows = np.flatnonzero(on_oracle)
        correct = self._oracle_token(h[rows]).astype(np.int64)
        mask[rows, correct] = u[rows, correct] < 1.0 - self.delta
        return mask

    def oracle(self, prompt_ids, n_steps: int) -> list[int]:
        """The oracle continuation :math:`y^*_{1..n}` of a prompt of ``prompt_length`` ids."""
        ids = np.asarray(prompt_ids, dtype=np.int64)
        if ids.shape != (self.prompt_length,):
            raise ValueError(
                f"prompt_ids must hold exactly prompt_length={self.prompt_length} token ids, "
                f"got {len(ids)}"
            )
        n_steps = check.integer("n_steps", n_steps, low=0)
        sequence = list(ids)
        for _ in range(n_steps):
            hashes, _ = self._prefix_state(np.asarray([sequence]))
            sequence.append(int(self._oracle_token(hashes[:, -1])[0]))
        return sequence[self.prompt_length:]

    def forward(self, input_ids, cache=None, use_cache=True, logits_to_keep=0, **kwargs):
        """Logits of the last ``logits_to_keep`` positions (all if 0): 0 on eligible tokens.

        The token history is kept in ``cache`` (a key/value cache holding the ids), so the
        list decoder's batched, cached expansion runs unchanged on this model.
        """
        ids = input_ids.detach().cpu()
        stored = ids.to(torch.float64)[:, None, :, None]
        cache = DynamicCache() if cache is None else cache
        history, _ = cache.update(stored, stored, 0)
        full = history[:, 0, :, 0].to(torch.int64).numpy()
        if full.shape[1] < self.prompt_length:
            raise ValueError(
                f"prompt must hold prompt_length={self.prompt_length} tokens, got "
                f"{full.shape[1]}"
            )
        n_new = ids.shape[1]
        keep = n_new if not logits_to_keep else min(int(logits_to_keep), n_new)
        hashes, flags = self._prefix_state(full)
        columns = range(full.shape[1] - keep, full.shape[1])
        logits = np.empty((full.shape[0], keep, self.M))
        for out, j in enumerate(columns):
            mask = self.eligible(hashes[:, j], flags[:, j])
            too_many = mask.sum(axis=1) > self.max_eligible
            if too_many.any():
                raise RuntimeError(
                    f"a prefix has {int(mask.sum(axis=1).max())} eligible tokens, more than "
                    f"the {self.max_eligible} that theta={self.theta} can represent"
                )
            logits[:, out] = np.where(mask, 0.0, self.log_r)
        return CausalLMOutputWithPast(
            logits=torch.as_tensor(logits, dtype=self.dtype), cache=cache
        )


def theory_model(
    M: int,
    eps: float,
    *,
    delta: float = 0.0,
    eps_oracle: float | None = None,
    theta: float = 0.02,
    prompt_length: int = 4,
    context_length: int = 512,
    seed: int = 0,
    dtype="float32",
) -> LanguageModel:
    r"""A synthetic language model whose threshold list decoder is the theory's process.

    Parameters
    ----------
    M : int
        Vocabulary size, ``M >= 2``.
    eps : float
        False-eligibility probability on erroneous prefixes, in [0, 1]; ``R0 = M * eps``.
    delta : float
        Probability that the oracle token is not eligible (a miss), in [0, 1).
    eps_oracle : float, optional
        False-eligibility probability of the ``M - 1`` wrong tokens on the oracle prefix
        (default ``eps``); the immigration mean is ``(M - 1) * eps_oracle``.
    theta : float
        The threshold of the rule ``Threshold(theta)`` that reproduces the process at
        temperature 1; ``theta * M > 1`` is needed.
    prompt_length : int
        Number of prompt tokens at the start of every sequence.
    context_length : int
        Maximum number of positions.
    seed : int
        Seed of the hash, ``>= 0``: a different seed is an independent draw of the random
        function.
    dtype : str or torch.dtype
        Dtype of the logits.

    Returns
    -------
    LanguageModel
        ``tokenizer`` is ``None``; ``lm.model.oracle(prompt, n)`` gives the oracle path.

    Raises
    ------
    ValueError
        For parameters out of range, ``theta * M <= 1``, or rates for which a prefix has
        more eligible tokens than ``theta`` can represent with probability above 1e-9.

    Notes
    -----
    See the module docstring for the construction and the proof that the threshold rule
    recovers the eligible sets.

    Examples
    --------
    >>> lm = theory_model(100, 0.01, seed=3)
    >>> oracle = lm.model.oracle([1, 2, 3, 4], 5)
    >>> len(oracle), lm.vocab_size
    (5, 100)
    """
    M = check.integer("M", M, low=2)
    eps = check.probability("eps", eps)
    delta = check.real("delta", delta, low=0.0, high=1.0, high_open=True)
    eps_oracle = eps if eps_oracle is None else check.probability("eps_oracle", eps_oracle)
    theta = check.real("theta", theta, low=0.0, high=1.0, low_open=True)
    if theta * M <= 1.0:
        raise ValueError(f"theta must exceed 1/M = {1 / M:.6g} so that theta * M > 1, got {theta}")
    prompt_length = check.integer("prompt_length", prompt_length, low=1)
    context_length = check.integer("context_length", context_length, low=prompt_length + 1)
    seed = check.integer("seed", seed, low=0, high=2**64 - 1)
    torch_dtype = resolve_dtype(dtype)
    module = TheoryModule(M, eps, eps_oracle, delta, theta, prompt_length, seed, torch_dtype)
    tail = stats.binom.sf(module.max_eligible, M, max(eps, eps_oracle))
    if tail > 1e-9:
        raise ValueError(
            f"theta={theta} represents at most {module.max_eligible} eligible tokens per "
            f"prefix, but Bin(M={M}, {max(eps, eps_oracle):.4g}) exceeds that with "
            f"probability {tail:.2g}; lower theta (keeping theta * M > 1) or eps"
        )
    name = (f"theory-lm(M={M}, eps={eps:.6g}, eps_oracle={eps_oracle:.6g}, delta={delta:.6g}, "
            f"theta={theta:.6g}, prompt_length={prompt_length}, seed={seed})")
    return LanguageModel(
        model=module.eval(), tokenizer=None, name=name, device=torch.device("cpu"),
        dtype=torch_dtype, vocab_size=M, context_length=context_length, eos_token_id=None,
        n_parameters=0,
    )
