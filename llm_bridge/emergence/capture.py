r"""Block inputs and outputs of a causal language model, captured with forward hooks.

The model's own forward pass runs unchanged (under ``torch.inference_mode``, in float32);
a pre-hook on a transformer block records its input ``hidden_states`` and a hook records its
output.  Stream ``j`` is the residual stream entering block ``j`` (stream ``n_blocks`` is
the output of the last block, *before* the final normalisation), so block ``l`` maps stream
``l`` to stream ``l + 1``.  Each stream is written, batch by batch, into its own float32
``.npy`` file of shape ``(n, T, d)`` (``numpy.lib.format.open_memmap``), so only one batch
is ever held in memory; an interrupted capture resumes from the last finished batch.

Micro variables: every distinct token of the dataset is fed alone, as the one-token
sequence ``[tok]`` at position 0 with no BOS, and its block inputs/outputs are kept in
``micro.npz`` (one row per distinct token).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from branching import validation as check

from .data import TokenDataset

__all__ = ["Representations", "block_io", "blocks", "capture"]

logger = logging.getLogger(__name__)

_META = "meta.json"
_PROGRESS = "progress.json"
_MICRO = "micro.npz"


def blocks(model) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM (the ``ModuleList`` of decoder layers).

    Found as the module list whose length is the configured number of layers
    (``model.model.layers`` for Llama/SmolLM2, ``model.transformer.h`` for GPT-2).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM module (``LanguageModel.model``); its ``config`` gives the depth as
        ``num_hidden_layers``, ``n_layer`` or ``num_layers``.

    Returns
    -------
    torch.nn.ModuleList
        The decoder layers, in order (the modules themselves, not copies).

    Raises
    ------
    ValueError
        If no ``ModuleList`` of the configured depth is found.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> stack = blocks(tiny_model(6, n_layers=3, seed=0).model)
    >>> len(stack), type(stack[0]).__name__
    (3, 'LlamaDecoderLayer')
    """
    config = model.config
    depth = next((getattr(config, a) for a in ("num_hidden_layers", "n_layer", "num_layers")
                  if isinstance(getattr(config, a, None), int)), None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return module
    raise ValueError(f"cannot find the {depth} transformer blocks of {type(model).__name__}")


def _trunk(model):
    """The model without its output head (the LM head is not needed for representations)."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) and base is not model else model


def _hidden(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _check_layers(layers, n_blocks) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(n_blocks))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    out = sorted({check.integer("layers", l, low=0, high=n_blocks - 1) for l in layers})
    if not out:
        raise ValueError("layers must name at least one block")
    return tuple(out)


def _run_hooked(lm, ids: torch.Tensor, sinks: dict[int, callable]) -> None:
    """One forward pass of ``ids``; ``sinks[j]`` receives stream ``j`` as a float32 array."""
    stack = blocks(lm.model)
    handles = []
    try:
        for j, sink in sinks.items():
            if j >= 1:
                def hook(module, args, output, _sink=sink):
                    _sink(_hidden(output).float().cpu().numpy())
                handles.append(stack[j - 1].register_forward_hook(hook))
            else:
                def pre_hook(module, args, kwargs, _sink=sink):
                    value = args[0] if args else kwargs["hidden_states"]
                    _sink(value.float().cpu().numpy())
                handles.append(stack[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        # transformers may import submodules (and add warnings filters) on first use
        with torch.inference_mode(), warnings.catch_warnings():
            _trunk(lm.model)(input_ids=ids.to(lm.device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()


def block_io(lm, ids, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Input and output of block ``layer`` for the id matrix ``ids``, by a pre-hook and a hook.

    Parameters
    ----------
    lm : LanguageModel
        The model; its forward pass runs unchanged, under ``torch.inference_mode``.
    ids : int array_like of shape (B, T)
        Token ids, fed exactly as given (no BOS added).
    layer : int
        Index of the block, in ``[0, n_blocks)``.

    Returns
    -------
    (inputs, outputs) : float32 arrays of shape (B, T, d)
        The residual stream entering block ``layer`` and the one leaving it.

    Raises
    ------
    ValueError
        For a layer index out of range.

    Examples
    --------
    >>> from llm_bridge.models import tiny_model
    >>> x, y = block_io(tiny_model(6, seed=0), [[1, 2, 3]], 0)
    >>> x.shape, y.shape
    ((1, 3, 16), (1, 3, 16))
    """
    stack = blocks(lm.model)
    layer = check.integer("layer", layer, low=0, high=len(stack) - 1)
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    got = {}

    def pre_hook(module, args, kwargs):
        got["in"] = (args[0] if args else kwargs["hidden_states"]).float().cpu().numpy()

    def hook(module, args, output):
        got["out"] = _hidden(output).float().cpu().numpy()

    handles = [stack[layer].register_forward_pre_hook(pre_hook, with_kwargs=True),
               stack[layer].register_forward_hook(hook)]
    try:
        # transformers may import submodules (and add warnings filters) on first use
        with torch.inference_mode(), warnings.catch_warnings():
            _trunk(lm.model)(input_ids=ids.to(lm.device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return got["in"], got["out"]


@dataclass(frozen=True, repr=False)
class Representations:
    """Captured streams of one model on one dataset, stored in ``directory``.

    Attributes
    ----------
    directory : Path
    layers : tuple of int
        Blocks whose input and output were captured.
    streams : tuple of int
        Stored streams (``l`` and ``l + 1`` for every block ``l``).
    ids : int64 array of shape (n, T)
        The windows fed to the model.
    micro_tokens : int64 array of shape (u,)
        The distinct tokens fed alone (micro variables).
    model_name : str
    n_blocks : int
    width : int
    capture_seconds : float
        Wall time of the forward passes (macro + micro) when captured.
    """

    directory: Path
    layers: tuple
    streams: tuple
    ids: np.ndarray
    micro_tokens: np.ndarray
    model_name: str
    n_blocks: int
    width: int
    capture_seconds: float

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    def __repr__(self) -> str:
        return (f"Representations({self.model_name!r}: n={self.n}, T={self.length}, "
                f"d={self.width}, blocks={list(self.layers)}, dir={str(self.directory)!r})")

    def _stream(self, stream: int) -> np.ndarray:
        if stream not in self.streams:
            raise ValueError(f"stream must be one of the captured streams {list(self.streams)}, "
                             f"got {stream}")
        return np.load(self.directory / f"stream_{stream:03d}.npy", mmap_mode="r")

    def _position(self, position) -> int:
        return check.integer("position", position, low=0, high=self.length - 1)

    def _layer(self, layer) -> int:
        layer = check.integer("layer", layer, low=0, high=self.n_blocks - 1)
        if layer not in self.layers:
            raise ValueError(f"layer must be one of the captured blocks {list(self.layers)}, "
                             f"got {layer}")
        return layer

    def macro(self, layer: int, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``layer``'s input and output at ``position`` of every window, float64 (n, d)."""
        layer, position = self._layer(layer), self._position(position)
        return tuple(np.array(self._stream(j)[:, position, :], dtype=np.float64)
                     for j in (layer, layer + 1))

    def micro(self, layer: int, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``layer``'s input and output for the token at ``position`` fed alone, (n, d)."""
        layer, position = self._layer(layer), self._position(position)
        with np.load(self.directory / _MICRO) as stored:
            index = np.searchsorted(self.micro_tokens, self.ids[:, position])
            return tuple(np.array(stored[f"stream_{j:03d}"][index], dtype=np.float64)
                         for j in (layer, layer + 1))

    @classmethod
    def load(cls, directory) -> "Representations":
        """Reopen a finished capture."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META).read_text())
            progress = json.loads((directory / _PROGRESS).read_text())
        except (OSError, ValueError):
            raise ValueError(f"directory {str(directory)!r} holds no capture") from None
        if not progress.get("complete"):
            raise ValueError(f"directory {str(directory)!r} holds an unfinished capture")
        with np.load(directory / "ids.npz") as stored:
            ids, micro_tokens = stored["ids"], stored["micro_tokens"]
        return cls(directory=directory, layers=tuple(meta["layers"]),
                   streams=tuple(meta["streams"]), ids=ids, micro_tokens=micro_tokens,
                   model_name=meta["model_name"], n_blocks=meta["n_blocks"],
                   width=meta["width"], capture_seconds=progress["seconds"])


def _digest(ids: np.ndarray, layers, name: str) -> str:
    h = hashlib.sha256(np.ascontiguousarray(ids).tobytes())
    h.update(repr((ids.shape, tuple(layers), name)).encode())
    return h.hexdigest()[:16]


def capture(lm, data, out_dir, *, layers=None, batch_size: int = 64,
            progress: bool = False) -> Representations:
    r"""Run ``data`` through ``lm`` and stream block inputs and outputs to ``out_dir``.

    Parameters
    ----------
    lm : LanguageModel
    data : TokenDataset or int array of shape (n, T)
        Windows, fed exactly as given (no BOS added); ``T >= 2``.
    out_dir : path
        Directory for ``stream_JJJ.npy`` (float32, ``(n, T, d)``), ``micro.npz``, ``ids.npz``
        and the metadata.  A finished capture of the same ids, layers and model is reused;
        an unfinished one resumes after its last finished batch.
    layers : int or sequence of int, optional
        Blocks to capture (default: all).
    batch_size : int
        Windows per forward pass.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Representations

    Raises
    ------
    ValueError
        For a window length below 2, ids outside the vocabulary, windows longer than the
        context, or a layer index out of range.

    Notes
    -----
    Peak memory is one batch of every captured stream, ``batch_size * T * d * 4`` bytes per
    stream, plus the model; the files on disk take ``n * T * d * 4`` bytes per stream.

    Examples
    --------
    >>> import tempfile
    >>> from llm_bridge.models import tiny_model
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     reps = capture(tiny_model(6, seed=0), [[1, 2, 3], [4, 5, 1]], tmp, layers=[1])
    ...     x, y = reps.macro(1, 2)
    >>> reps.streams, x.shape
    ((1, 2), (2, 16))
    """
    ids = data.ids if isinstance(data, TokenDataset) else np.asarray(data)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer) or ids.size == 0:
        raise ValueError(f"data must be a TokenDataset or a 2-d integer id array, got "
                         f"shape {ids.shape} and dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    n, length = ids.shape
    if length < 2:
        raise ValueError(f"window length must be >= 2 tokens (macro differs from micro only "
                         f"then), got {length}")
    if length > lm.context_length:
        raise ValueError(f"window length must be <= the context length {lm.context_length}, "
                         f"got {length}")
    if ids.min() < 0 or ids.max() >= lm.vocab_size:
        raise ValueError(f"token ids must lie in [0, {lm.vocab_size - 1}], got range "
                         f"[{ids.min()}, {ids.max()}]")
    batch_size = check.integer("batch_size", batch_size, low=1)
    n_blocks = len(blocks(lm.model))
    layers = _check_layers(layers, n_blocks)
    streams = tuple(sorted({j for l in layers for j in (l, l + 1)}))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = _digest(ids, layers, lm.name)
    meta_path, progress_path = out / _META, out / _PROGRESS
    done, seconds = 0, 0.0
    if meta_path.exists() and progress_path.exists():
        meta = json.loads(meta_path.read_text())
        state = json.loads(progress_path.read_text())
        if meta.get("digest") == digest:
            if state.get("complete"):
                logger.info("reusing the capture in %s", out)
                return Representations.load(out)
            done, seconds = int(state["rows"]), float(state["seconds"])
    width = int(block_io(lm, ids[:1, :2], 0)[0].shape[-1])
    meta = {"digest": digest, "layers": list(layers), "streams": list(streams),
            "model_name": lm.name, "n_blocks": n_blocks, "width": width, "n": n,
            "length": length, "dtype": "float32"}
    meta_path.write_text(json.dumps(meta, indent=1))
    np.savez(out / "ids.npz", ids=ids, micro_tokens=np.unique(ids))
    files = {}
    for j in streams:
        path = out / f"stream_{j:03d}.npy"
        mode = "r+" if done and path.exists() else "w+"
        files[j] = np.lib.format.open_memmap(path, mode=mode, dtype=np.float32,
                                             shape=(n, length, width))
    if not done:
        progress_path.write_text(json.dumps({"rows": 0, "seconds": 0.0, "complete": False}))
    from tqdm.auto import tqdm

    bar = tqdm(total=n, initial=done, disable=not progress, desc="capture", unit="window")
    for start in range(done, n, batch_size):
        stop = min(start + batch_size, n)

        def sink_for(j, _rows=slice(start, stop)):
            def sink(values):
                files[j][_rows] = values
            return sink

        began = time.perf_counter()
        _run_hooked(lm, torch.as_tensor(ids[start:stop]), {j: sink_for(j) for j in streams})
        seconds += time.perf_counter() - began
        for memmap in files.values():
            memmap.flush()
        progress_path.write_text(json.dumps({"rows": stop, "seconds": seconds,
                                             "complete": False}))
        bar.update(stop - start)
    bar.close()
    del files
    tokens = np.unique(ids)
    micro = {}
    began = time.perf_counter()
    for start in range(0, tokens.size, batch_size):
        chunk = torch.as_tensor(tokens[start:start + batch_size, None])
        got = {j: [] for j in streams}
        _run_hooked(lm, chunk, {j: got[j].append for j in streams})
        for j in streams:
            micro.setdefault(j, []).append(got[j][0][:, 0, :])
    seconds += time.perf_counter() - began
    np.savez(out / _MICRO, **{f"stream_{j:03d}": np.concatenate(v) for j, v in micro.items()})
    progress_path.write_text(json.dumps({"rows": n, "seconds": seconds, "complete": True}))
    return Representations.load(out)
