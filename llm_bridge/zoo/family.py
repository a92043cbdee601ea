r"""The model family of the zoo: Llama models of geometrically increasing size.

A :class:`Family` fixes a task, a list of :class:`ModelSize` (width, depth, heads) whose
parameter counts increase strictly, the training recipe (:class:`TrainConfig`) and a seed.
Two families are predefined:

``"quick"``
    Six models from about 1.6 thousand to 77 thousand parameters on running sums with
    ``M = 32``, ``T = 5`` and increments below ``K = 8``, 300 steps each; the whole family
    trains in about half a minute of CPU time.
    The tests, the notebook and the quick figure use it.
``"default"``
    Seven models from about 2 thousand to 460 thousand parameters on ``M = 64``, ``T = 8``,
    ``K = 16``, 1500 steps each (budget: 20 minutes on two CPU cores).

Every model is a ``transformers.LlamaForCausalLM`` whose vocabulary is exactly the task's
``M`` tokens, so the package's sampling, scoring, scans and list decoding run on it exactly
as on a downloaded model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from branching import validation as check

from .task import RunningSumTask

__all__ = ["FAMILIES", "Family", "ModelSize", "TrainConfig", "get_family"]


@dataclass(frozen=True)
class ModelSize:
    """Width, depth and attention heads of one Llama model.

    Parameters
    ----------
    hidden_size : int
        Width, a multiple of ``2 * n_heads`` (rotary embeddings need an even head size).
    n_layers : int
        Number of decoder blocks, >= 1.
    n_heads : int
        Attention heads per block, >= 1.

    Examples
    --------
    >>> ModelSize(16, 1, 2).n_parameters(M=32)
    5168
    """

    hidden_size: int
    n_layers: int
    n_heads: int

    def __post_init__(self):
        n_heads = check.integer("n_heads", self.n_heads, low=1)
        check.integer("n_layers", self.n_layers, low=1)
        hidden = check.integer("hidden_size", self.hidden_size, low=2 * n_heads)
        if hidden % (2 * n_heads):
            raise ValueError(
                f"hidden_size must be a multiple of 2 * n_heads = {2 * n_heads}, got {hidden}"
            )

    @property
    def name(self) -> str:
        """E.g. ``"d16-l1-h2"``."""
        return f"d{self.hidden_size}-l{self.n_layers}-h{self.n_heads}"

    @property
    def intermediate_size(self) -> int:
        """Width of the gated MLP: ``4 * hidden_size``."""
        return 4 * self.hidden_size

    def n_parameters(self, M: int) -> int:
        r"""Number of parameters for a vocabulary of ``M`` tokens.

        Notes
        -----
        Untied input embedding and output layer (:math:`2Md`), per block four attention
        projections (:math:`4d^2`), a gated MLP (:math:`3dI`) and two RMS-norm gains
        (:math:`2d`), plus the final norm (:math:`d`).
        """
        d, inner = self.hidden_size, self.intermediate_size
        return 2 * M * d + self.n_layers * (4 * d * d + 3 * d * inner + 2 * d) + d

    def config(self, task: RunningSumTask):
        """The ``transformers.LlamaConfig`` of this size for ``task``."""
        from llm_bridge.models import _transformers

        (LlamaConfig,) = _transformers("LlamaConfig")
        return LlamaConfig(
            vocab_size=task.M,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_heads,
            max_position_embeddings=task.context_length,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
            attention_dropout=0.0,
        )


@dataclass(frozen=True)
class TrainConfig:
    r"""The training recipe shared by every model of a family.

    Parameters
    ----------
    steps : int
        Optimiser steps, >= 1.
    batch_size : int
        Inputs per step, >= 1 (fresh inputs from the train split at every step).
    lr : float
        Peak learning rate of AdamW, > 0.
    weight_decay : float
        AdamW weight decay, >= 0.
    warmup : int
        Steps of linear warm-up, in ``[0, steps]``; then cosine decay to ``lr / 10``.
    n_checkpoints : int
        Checkpoints saved at log-spaced steps (step 0, the initialisation, is always
        saved in addition, and the last step is always among them), >= 1.

    Notes
    -----
    The loss is the mean cross-entropy of the ``T`` answer tokens under teacher forcing;
    the prompt tokens are not predicted.
    """

    steps: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    n_checkpoints: int = 8

    def __post_init__(self):
        steps = check.integer("steps", self.steps, low=1)
        check.integer("batch_size", self.batch_size, low=1)
        check.real("lr", self.lr, low=0.0, low_open=True)
        check.real("weight_decay", self.weight_decay, low=0.0)
        check.integer("warmup", self.warmup, low=0, high=steps)
        check.integer("n_checkpoints", self.n_checkpoints, low=1)

    def checkpoint_steps(self) -> tuple[int, ...]:
        """Step 0 and ``n_checkpoints`` log-spaced steps ending at ``steps`` (deduplicated).

        Examples
        --------
        >>> TrainConfig(steps=1000, n_checkpoints=4).checkpoint_steps()
        (0, 1, 10, 100, 1000)
        """
        import numpy as np

        if self.n_checkpoints == 1:
            return (0, self.steps)
        spaced = np.rint(np.geomspace(1, self.steps, self.n_checkpoints)).astype(int)
        return tuple(sorted({0, *spaced.tolist(), self.steps}))

    def learning_rate(self, step: int) -> float:
        r"""Learning rate used for the update that produces ``step`` (1-based).

        Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``lr / 10``.
        """
        import math

        if step <= self.warmup:
            return self.lr * step / max(self.warmup, 1)
        progress = (step - self.warmup) / max(self.steps - self.warmup, 1)
        return self.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Family:
    """A task, models of strictly increasing size, a training recipe and a seed.

    Parameters
    ----------
    task : RunningSumTask
    sizes : sequence of ModelSize
        At least 2 sizes with strictly increasing parameter counts.
    train : TrainConfig
    seed : int
        Seed of the initialisations and of the training data, >= 0.
    name : str
        Label used in tables and figures.

    Raises
    ------
    ValueError
        If the sizes are fewer than 2 or their parameter counts do not increase.

    Examples
    --------
    >>> fam = get_family("quick")
    >>> len(fam.sizes), fam.task.M
    (6, 32)
    """

    task: RunningSumTask
    sizes: tuple
    train: TrainConfig
    seed: int = 0
    name: str = "custom"

    def __post_init__(self):
        if not isinstance(self.task, RunningSumTask):
            raise ValueError(f"task must be a RunningSumTask, got {type(self.task).__name__}")
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        sizes = tuple(self.sizes)
        if len(sizes) < 2 or not all(isinstance(s, ModelSize) for s in sizes):
            raise ValueError(f"sizes must be at least 2 ModelSize entries, got {sizes!r:.120}")
        counts = [s.n_parameters(self.task.M) for s in sizes]
        for i in range(1, len(counts)):
            if counts[i] <= counts[i - 1]:
                raise ValueError(
                    f"sizes must have strictly increasing parameter counts; size {i} "
                    f"({sizes[i].name}, {counts[i]:,} parameters) is not larger than size "
                    f"{i - 1} ({sizes[i - 1].name}, {counts[i - 1]:,})"
                )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "seed", check.integer("seed", self.seed, low=0))

    def n_parameters(self) -> list[int]:
        """Parameter count of every size."""
        return [s.n_parameters(self.task.M) for s in self.sizes]

    def replace(self, **changes) -> "Family":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


FAMILIES = {
    "quick": Family(
        task=RunningSumTask(M=32, T=5, K=8),
        sizes=(ModelSize(8, 1, 1), ModelSize(12, 1, 1), ModelSize(16, 1, 2),
               ModelSize(24, 1, 2), ModelSize(32, 2, 2), ModelSize(48, 2, 2)),
        train=TrainConfig(steps=300, batch_size=64, lr=1e-2, warmup=30, n_checkpoints=6),
        seed=0,
        name="quick",
    ),
    "default": Family(
        task=RunningSumTask(M=64, T=8, K=16),
        sizes=(ModelSize(8, 1, 1), ModelSize(16, 1, 2), ModelSize(24, 1, 2),
               ModelSize(32, 2, 2), ModelSize(48, 2, 4), ModelSize(64, 3, 4),
               ModelSize(96, 3, 4)),
        train=TrainConfig(steps=1500, batch_size=64, lr=5e-3, warmup=100, n_checkpoints=10),
        seed=0,
        name="default",
    ),
}


def get_family(name: str) -> Family:
    """One of the predefined families, ``"quick"`` or ``"default"``.

    Parameters
    ----------
    name : {"quick", "default"}
        Key of the family in :data:`FAMILIES`.

    Returns
    -------
    Family
        The predefined family (the same object as ``FAMILIES[name]``).

    Raises
    ------
    ValueError
        If ``name`` is not the name of a predefined family.

    Examples
    --------
    >>> fam = get_family("quick")
    >>> fam.name, len(fam.sizes), fam.train.steps, fam.task.name
    ('quick', 6, 300, 'running_sum(M=32,T=5,K=8)')
    >>> fam.n_parameters()[0], fam.n_parameters()[-1]
    (1560, 77040)
    """
    return FAMILIES[check.choice("family", name, sorted(FAMILIES))]
