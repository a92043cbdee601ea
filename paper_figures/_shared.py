"""What several figures share: the default model, loaded once per process."""

from functools import lru_cache


@lru_cache(maxsize=1)
def default_model():
    """The bundled SmolLM2-135M-Instruct (loaded on first use, then reused)."""
    from llm_bridge.models import load_model

    return load_model()
