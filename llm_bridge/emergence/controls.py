r"""Model-side controls of the emergence metric: near-identity blocks and random weights.

* :func:`near_identity` -- a context manager that zeroes every normalisation gain (and bias)
  inside chosen blocks.  A pre-norm block ``x + attn(norm(x)) + mlp(norm(...))`` then
  computes ``x + c`` with a constant ``c`` (exactly ``x`` for Llama/SmolLM2, whose attention
  and MLP have no biases), so its input-output MI is infinite and every estimator should
  return its own ceiling: a check that the estimators saturate where they should.
* :func:`random_init` -- the same architecture with freshly initialised weights (the
  model class's own initialisation, seeded): a model without semantics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import torch

from branching import validation as check

from .capture import blocks

__all__ = ["near_identity", "random_init"]


def _norm_parameters(block):
    for name, module in block.named_modules():
        if "norm" in type(module).__name__.lower() or name.endswith(("norm", "ln_1", "ln_2")):
            yield from module.parameters(recurse=False)


@contextlib.contextmanager
def near_identity(lm, layers):
    """Within the ``with`` block, blocks ``layers`` of ``lm`` compute ``x -> x + const``.

    Parameters
    ----------
    lm : LanguageModel
    layers : int or sequence of int
        Block indices.

    Yields
    ------
    LanguageModel
        ``lm`` itself, with the normalisation gains (and biases) of the chosen blocks set to
        zero; their original values are restored on leaving the ``with`` block, also after
        an exception.

    Raises
    ------
    ValueError
        For a layer index out of range, or a block without normalisation parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from llm_bridge.models import tiny_model
    >>> from llm_bridge.emergence.capture import block_io
    >>> lm = tiny_model(6, seed=0)
    >>> with near_identity(lm, 1):
    ...     x, y = block_io(lm, [[1, 2, 3]], 1)
    >>> bool(np.array_equal(x, y))
    True
    """
    stack = blocks(lm.model)
    if isinstance(layers, int):
        layers = [layers]
    layers = [check.integer("layers", l, low=0, high=len(stack) - 1) for l in layers]
    saved = []
    try:
        with torch.no_grad():
            for layer in layers:
                parameters = list(_norm_parameters(stack[layer]))
                if not parameters:
                    raise ValueError(f"block {layer} has no normalisation parameters to zero")
                for parameter in parameters:
                    saved.append((parameter, parameter.detach().clone()))
                    parameter.zero_()
        yield lm
    finally:
        with torch.no_grad():
            for parameter, value in saved:
                parameter.copy_(value)


def random_init(lm, *, seed: int = 0):
    """A copy of ``lm`` with the same architecture and freshly initialised weights.

    The model class's own initialisation (``config.initializer_range``) is used, seeded by
    ``seed`` inside ``torch.random.fork_rng`` so torch's global random state is unchanged.

    Parameters
    ----------
    lm : LanguageModel
        The model whose architecture (``lm.model.config``), tokenizer, device and dtype are
        kept; it is not modified.
    seed : int
        Seed of the initialisation, ``>= 0``; the same seed gives the same weights.

    Returns
    -------
    LanguageModel
        Same tokenizer and configuration; ``name`` gains ``" (random init, seed=...)"``.

    Raises
    ------
    ValueError
        For a negative or non-integer ``seed``.

    Examples
    --------
    >>> import torch
    >>> from llm_bridge.models import tiny_model
    >>> lm = tiny_model(6, seed=0)
    >>> a, b = random_init(lm, seed=1), random_init(lm, seed=1)
    >>> a.name.endswith("(random init, seed=1)"), type(a.model) is type(lm.model)
    (True, True)
    >>> all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    True
    """
    seed = check.integer("seed", seed, low=0)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        model = type(lm.model)(lm.model.config)
    model = model.to(device=lm.device, dtype=lm.dtype).eval()
    return dataclasses.replace(lm, model=model, name=f"{lm.name} (random init, seed={seed})")
