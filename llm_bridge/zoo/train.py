r"""Training the zoo's models on CPU: deterministic, checkpointed, cached and resumable.

:func:`train_model` trains one size of a :class:`~llm_bridge.zoo.family.Family` (or returns
it from the cache), :func:`train_family` every size.  The result, :class:`ZooModel`, gives
the final model and every checkpoint as a :class:`~llm_bridge.models.LanguageModel`.

Determinism: the initial weights come from ``torch.manual_seed`` inside
``torch.random.fork_rng`` (the caller's global torch state is restored), the training
batch of step ``s`` is drawn from ``SeedSequence(seed, spawn_key=(1, s))`` whatever
happened before, torch runs with deterministic algorithms and a fixed number of threads,
and the optimiser state is part of every checkpoint -- so the same seed gives the same
weights digest, and a run resumed from a checkpoint ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from branching import validation as check
from llm_bridge import cache

from . import store
from .family import Family, ModelSize

__all__ = ["ZooModel", "build_model", "train_family", "train_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, repr=False)
class ZooModel:
    """One trained (or partly trained) model of a family, with its checkpoints.

    Attributes
    ----------
    family : Family
    index : int
        Position of the size in ``family.sizes``.
    directory : pathlib.Path
        Where its checkpoint files live.
    steps : tuple of int
        Training steps of the stored checkpoints (0 is the initialisation).
    digest : str
        SHA-256 of the weights at the last stored checkpoint.
    loss, token_accuracy : numpy.ndarray
        Training curve: mean cross-entropy of the answer tokens and the fraction of answer
        tokens whose argmax is correct, on the training batch of each step.
    complete : bool
        Whether training reached ``family.train.steps``.
    seconds : float
        Wall-clock seconds spent training in the run that produced the last checkpoint
        (0 when everything came from the cache).
    """

    family: Family
    index: int
    directory: Path
    steps: tuple
    digest: str
    loss: np.ndarray
    token_accuracy: np.ndarray
    complete: bool
    seconds: float = 0.0

    @property
    def size(self) -> ModelSize:
        return self.family.sizes[self.index]

    @property
    def n_parameters(self) -> int:
        return self.size.n_parameters(self.family.task.M)

    @property
    def name(self) -> str:
        return f"zoo-{self.family.name}-{self.size.name}-seed{self.family.seed}"

    def __repr__(self) -> str:
        return (
            f"ZooModel(name={self.name!r}, parameters={self.n_parameters:,}, "
            f"task={self.family.task.name!r}, steps={self.steps[-1]}/{self.family.train.steps}, "
            f"final_loss={self.loss[-1] if self.loss.size else float('nan'):.4g}, "
            f"digest={self.digest[:12]!r})"
        )

    def state_dict(self, step: int | None = None) -> dict:
        """The verified weights at checkpoint ``step`` (default: the last), as torch tensors.

        Raises
        ------
        ValueError
            If ``step`` is not a stored checkpoint, or its file is corrupted.
        """
        step = self.steps[-1] if step is None else check.integer("step", step, low=0)
        if step not in self.steps:
            raise ValueError(f"step must be one of the checkpoints {list(self.steps)}, got {step}")
        weights, _, _ = store.read_checkpoint(store.step_path(self.directory, step))
        return {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}

    def language_model(self, step: int | None = None):
        """The model at checkpoint ``step`` (default: the last) as a ``LanguageModel``.

        It has no tokenizer and no end-of-sequence token: prompts are token ids (an input
        of the task) and sampling uses ``eos="none"``.
        """
        from llm_bridge.models import _wrap

        model = build_model(self.family, self.index, init=False)
        model.load_state_dict(self.state_dict(step), strict=True)
        label = self.steps[-1] if step is None else step
        return _wrap(model.eval(), None, f"{self.name}@step{label}", None)

    def checkpoints(self) -> list[tuple[str, dict]]:
        """``(name, state_dict)`` of every checkpoint, in step order, for
        :func:`llm_bridge.scans.checkpoint_scan` with ``state_dict_loader``."""
        return [(f"{self.name}@step{s}", self.state_dict(s)) for s in self.steps]

    def to_pandas(self):
        """The training curve: one row per step (``step``, ``loss``, ``token_accuracy``)."""
        import pandas as pd

        n = self.loss.size
        return pd.DataFrame({
            "model": self.name, "n_parameters": self.n_parameters,
            "step": np.arange(1, n + 1), "loss": self.loss, "token_accuracy": self.token_accuracy,
        })


# ---------------------------------------------------------------------------- building
def _init_seed(family: Family, size: ModelSize) -> int:
    seq = np.random.SeedSequence(family.seed, spawn_key=(0, size.hidden_size, size.n_layers,
                                                         size.n_heads))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


def build_model(family: Family, index: int, *, init: bool = True):
    """A ``LlamaForCausalLM`` of size ``family.sizes[index]``, initialised from the family seed.

    With ``init=False`` the weights are left as the constructor makes them (to be
    overwritten by a checkpoint).  torch's global random state is left unchanged.

    Parameters
    ----------
    family : Family
        The family; its task fixes the vocabulary (``M`` tokens) and context (``2T``).
    index : int
        Which size, ``0 <= index < len(family.sizes)``.
    init : bool
        Seed the initialisation from the family seed and the size (``True``), so that the
        same family and index always give the same weights; ``False`` skips the seeding.

    Returns
    -------
    transformers.LlamaForCausalLM
        The untrained model in float32, with ``family.sizes[index].n_parameters(M)``
        parameters.

    Raises
    ------
    ValueError
        If ``index`` is not the position of a size of ``family``.

    Examples
    --------
    >>> from llm_bridge.zoo import get_family
    >>> fam = get_family("quick")
    >>> model = build_model(fam, 0)
    >>> sum(p.numel() for p in model.parameters()), fam.sizes[0].n_parameters(fam.task.M)
    (1560, 1560)
    >>> again = build_model(fam, 0)
    >>> all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    True
    """
    from llm_bridge.models import _transformers

    index = check.integer("index", index, low=0, high=len(family.sizes) - 1)
    size = family.sizes[index]
    (LlamaForCausalLM,) = _transformers("LlamaForCausalLM")
    config = size.config(family.task)
    with torch.random.fork_rng(devices=[]):
        if init:
            torch.manual_seed(_init_seed(family, size))
        model = LlamaForCausalLM(config)
    return model.to(dtype=torch.float32)


def _entry_directory(family: Family, index: int, root: Path) -> tuple[Path, str]:
    size = family.sizes[index]
    key = cache.cache_key({
        "task": family.task.name, "size": dataclasses.asdict(size), "seed": family.seed,
        "train": dataclasses.asdict(family.train), "format": 1,
    })
    task_dir = family.task.name.replace("(", "-").replace(")", "").replace(",", "-").replace("=", "")
    return root / task_dir / f"{size.name}-seed{family.seed}-{key[:16]}", key


@contextlib.contextmanager
def _torch_settings(threads: int):
    """Fixed thread count and deterministic algorithms, restored on exit."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)


def _optimizer_arrays(optimizer) -> dict:
    out = {}
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            out[f"opt/{i}/{name}"] = value.detach().cpu().numpy() if torch.is_tensor(value) \
                else np.asarray(value)
    return out


def _restore_optimizer(optimizer, extra: dict) -> None:
    state_dict = optimizer.state_dict()
    state: dict = {}
    for key, value in extra.items():
        if key.startswith("opt/"):
            _, i, name = key.split("/")
            state.setdefault(int(i), {})[name] = torch.from_numpy(np.array(value))
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)


def _valid_checkpoints(directory: Path, key: str) -> dict[int, dict]:
    """Verified checkpoints ``{step: metadata}``; the first corrupted one and all later ones
    are deleted with a warning (they will be retrained)."""
    valid: dict[int, dict] = {}
    files = store.checkpoint_files(directory)
    for step, path in files.items():
        try:
            _, _, meta = store.read_checkpoint(path)
            if meta.get("key") != key or meta.get("step") != step:
                raise store.CorruptCheckpoint(
                    f"checkpoint {str(path)!r} is corrupted: it belongs to another run"
                )
        except store.CorruptCheckpoint as exc:
            later = [p for s, p in files.items() if s >= step]
            logger.warning("%s; retraining from step %d (%d file(s) discarded)",
                           exc, max(valid, default=0), len(later))
            for p in later:
                p.unlink(missing_ok=True)
            break
        valid[step] = meta
    return valid


def _result(family, index, directory, valid: dict, seconds: float) -> ZooModel:
    last = max(valid)
    _, extra, meta = store.read_checkpoint(store.step_path(directory, last))
    return ZooModel(
        family=family, index=index, directory=directory, steps=tuple(sorted(valid)),
        digest=meta["weights_digest"], loss=np.asarray(extra["loss"], dtype=float),
        token_accuracy=np.asarray(extra["token_accuracy"], dtype=float),
        complete=last == family.train.steps, seconds=seconds,
    )


def train_model(
    family: Family,
    index: int,
    *,
    cache_dir=None,
    max_step: int | None = None,
    threads: int = 1,
    progress: bool = True,
) -> ZooModel:
    r"""Train size ``index`` of ``family``, or return it from the cache; resume if interrupted.

    Parameters
    ----------
    family : Family
    index : int
        Which size, ``0 <= index < len(family.sizes)``.
    cache_dir : path-like, optional
        Cache root (default :func:`~llm_bridge.zoo.store.default_cache_dir`: the environment
        variable ``LLM_BRANCHING_CACHE``, else ``$XDG_CACHE_HOME/llm-branching``).
    max_step : int, optional
        Stop after this many steps (``1 <= max_step <= steps``) -- a budget; the work since
        the last checkpoint is not stored, as after an interruption.  A later call resumes.
    threads : int
        torch intra-op threads used for training (restored afterwards), >= 1.  The weights
        digest is reproducible for a given thread count.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ZooModel

    Raises
    ------
    ValueError
        For a bad ``index``/``max_step``/``threads`` or a cache directory that is not writable.

    Notes
    -----
    Step :math:`s` draws ``batch_size`` fresh inputs :math:`x` of the train split, appends
    their answers :math:`y`, and minimises the mean cross-entropy
    :math:`-\frac{1}{BT}\sum_{b,t}\log p_\theta(y_{b,t}\mid x_b, y_{b,<t})` of the answer
    tokens with AdamW.  Checkpoints (weights, optimiser state, curve) are written at
    :meth:`TrainConfig.checkpoint_steps`; existing ones are verified by digest first, and a
    corrupted one is discarded with its successors and retrained (with a warning).

    Examples
    --------
    >>> import tempfile
    >>> from llm_bridge.zoo import get_family
    >>> fam = get_family("quick")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     zm = train_model(fam, 0, cache_dir=tmp, max_step=20, progress=False)
    ...     again = train_model(fam, 0, cache_dir=tmp, max_step=20, progress=False)
    >>> zm.steps, zm.complete, again.digest == zm.digest
    ((0, 1, 3, 10), False, True)
    """
    if not isinstance(family, Family):
        raise ValueError(f"family must be a Family, got {type(family).__name__}")
    index = check.integer("index", index, low=0, high=len(family.sizes) - 1)
    cfg, task = family.train, family.task
    stop = cfg.steps if max_step is None else check.integer("max_step", max_step, low=1,
                                                            high=cfg.steps)
    threads = check.integer("threads", threads, low=1)
    directory, key = _entry_directory(family, index, store.resolve_cache_dir(cache_dir))
    valid = _valid_checkpoints(directory, key)
    targets = [s for s in cfg.checkpoint_steps() if s <= stop]
    start = max(valid, default=None)
    if start is not None and (start >= stop or all(s in valid for s in targets)):
        logger.info("zoo model %s %s: cached (step %d)", family.name, family.sizes[index].name,
                    start)
        return _result(family, index, directory, valid, 0.0)

    from tqdm.auto import tqdm

    with _torch_settings(threads):
        model = build_model(family, index, init=start is None)
        # foreach: the multi-tensor update, bitwise equal to the per-tensor loop and faster
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                      weight_decay=cfg.weight_decay, foreach=True)
        if start is None:
            losses, accs = [], []
            start = 0
        else:
            weights, extra, _ = store.read_checkpoint(store.step_path(directory, start))
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
            _restore_optimizer(optimizer, extra)
            losses, accs = list(extra["loss"]), list(extra["token_accuracy"])
            logger.info("resuming %s from step %d", directory.name, start)
        model.train()
        meta = {"key": key, "task": task.name, "size": dataclasses.asdict(family.sizes[index]),
                "seed": family.seed, "train": dataclasses.asdict(cfg), "threads": threads,
                "package_version": cache.package_version()}

        def save(step):
            nonlocal valid
            state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
            extra = {"loss": np.asarray(losses, dtype=float),
                     "token_accuracy": np.asarray(accs, dtype=float), **_optimizer_arrays(optimizer)}
            store.write_checkpoint(store.step_path(directory, step), state, extra,
                                   dict(meta, step=step))
            valid = {**valid, step: meta}

        if start == 0 and 0 not in valid:
            save(0)
        began = time.perf_counter()
        T, M = task.T, task.M
        with tqdm(total=stop, initial=start, disable=not progress,
                  desc=f"train {family.sizes[index].name}") as bar:
            for step in range(start + 1, stop + 1):
                x = task.inputs("train", cfg.batch_size,
                                rng=np.random.SeedSequence(family.seed, spawn_key=(1, step)))
                y = torch.from_numpy(task.answers(x))
                ids = torch.cat([torch.from_numpy(x), y], dim=1)
                logits = model(input_ids=ids).logits[:, T - 1:2 * T - 1]
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, M), y.reshape(-1))
                for group in optimizer.param_groups:
                    group["lr"] = cfg.learning_rate(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                accs.append(float((logits.detach().argmax(-1) == y).float().mean()))
                if step in targets:
                    save(step)
                bar.update()
                if not math.isfinite(losses[-1]):
                    raise ValueError(f"training diverged at step {step} (loss {losses[-1]})")
        seconds = time.perf_counter() - began
    return _result(family, index, directory, valid, seconds)


def train_family(family: Family, *, cache_dir=None, threads: int = 1,
                 progress: bool = True) -> list[ZooModel]:
    """Train (or load from the cache) every size of ``family``; see :func:`train_model`.

    Parameters
    ----------
    family : Family
        The family whose sizes are trained, in order.
    cache_dir : path-like, optional
        Cache root (default :func:`~llm_bridge.zoo.store.default_cache_dir`); sizes already
        trained there are loaded, interrupted ones resumed.
    threads : int
        torch intra-op threads used for training (restored afterwards), >= 1.
    progress : bool
        Show a progress bar per size.

    Returns
    -------
    list of ZooModel
        One fully trained model per size, in the order of ``family.sizes``.

    Raises
    ------
    ValueError
        If ``family`` is not a :class:`Family`, ``threads`` is below 1, the cache directory
        is not writable, or training diverges.

    Examples
    --------
    A two-size family small enough to train in a fraction of a second (a second call
    loads the same weights from the cache):

    >>> import tempfile
    >>> from llm_bridge.zoo import RunningSumTask, TrainConfig
    >>> fam = Family(task=RunningSumTask(M=8, T=3),
    ...              sizes=(ModelSize(2, 1, 1), ModelSize(4, 1, 1)),
    ...              train=TrainConfig(steps=2, batch_size=4, warmup=0, n_checkpoints=1))
    >>> cache = tempfile.mkdtemp()
    >>> models = train_family(fam, cache_dir=cache, progress=False)
    >>> [(m.n_parameters, m.steps, m.complete) for m in models]
    [(102, (0, 2), True), (332, (0, 2), True)]
    >>> again = train_family(fam, cache_dir=cache, progress=False)
    >>> [m.digest for m in again] == [m.digest for m in models]
    True
    """
    if not isinstance(family, Family):
        raise ValueError(f"family must be a Family, got {type(family).__name__}")
    return [train_model(family, i, cache_dir=cache_dir, threads=threads, progress=progress)
            for i in range(len(family.sizes))]

