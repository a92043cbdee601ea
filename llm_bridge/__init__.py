"""Measurements on real language models: loading, exact sampling and scoring.

Importing this package is cheap and offline: torch and transformers are imported only when
one of the names below is first used, and no model is loaded or downloaded until
:func:`load_model` (or :func:`tiny_model`) is called.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "LanguageModel": "models",
    "default_model_path": "models",
    "load_model": "models",
    "tiny_model": "models",
    "EOS_POLICIES": "sampling",
    "Samples": "sampling",
    "sample": "sampling",
    "score": "sampling",
    "output_logits": "sampling",
    "iter_output_logits": "sampling",
    "Threshold": "eligibility",
    "Nucleus": "eligibility",
    "TopK": "eligibility",
    "list_decode": "listdecode",
    "ListDecodeResult": "listdecode_result",
    "R0Scan": "r0_scan",
    "theory_model": "theory_lm",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
