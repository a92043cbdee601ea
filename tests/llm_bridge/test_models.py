"""Model loading: tiny random models, the bundled default's location, errors, lazy import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from llm_bridge.models import (
    DEFAULT_GGUF_FILE,
    LanguageModel,
    default_model_path,
    load_model,
    resolve_device,
    resolve_dtype,
    tiny_model,
)


def test_tiny_model_is_deterministic_and_leaves_global_rng_alone():
    torch_state = torch.random.get_rng_state()
    a = tiny_model(6, seed=5)
    b = tiny_model(6, seed=5)
    c = tiny_model(6, seed=6)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    for (name, pa), (_, pb), (_, pc) in zip(
        a.model.named_parameters(), b.model.named_parameters(), c.model.named_parameters()
    ):
        assert torch.equal(pa, pb), name
        if not name.endswith(("norm.weight", "lm_head.bias")):
            assert not torch.equal(pa, pc), name


def test_tiny_model_handle():
    lm = tiny_model(6, seed=0, hidden_size=8, n_layers=1, n_heads=2, context_length=20,
                    eos_token_id=5, dtype="float64", device="cpu")
    assert isinstance(lm, LanguageModel)
    assert lm.vocab_size == 6 and lm.context_length == 20 and lm.eos_token_id == 5
    assert lm.dtype == torch.float64 and lm.device == torch.device("cpu")
    assert lm.tokenizer is None and not lm.model.training
    assert 100 < lm.n_parameters < 10_000
    text = repr(lm)
    assert "vocab_size=6" in text and "float64" in text and len(text) < 300
    with torch.no_grad():
        logits = lm.model(torch.tensor([[0, 1, 2, 3]])).logits
    assert logits.shape == (1, 4, 6) and logits.dtype == torch.float64
    # the logits are of order one and depend on the context (a usable test model)
    spread = logits[0].std(dim=-1)
    assert torch.all(spread > 0.2) and torch.all(spread < 10)
    assert (logits[0, 1] - logits[0, 2]).abs().max() > 0.1
    with pytest.raises(ValueError, match="has no tokenizer"):
        lm.encode("hello")


def test_eos_bias_raises_the_eos_logit_only():
    plain = tiny_model(5, seed=2, eos_token_id=4, dtype="float64", device="cpu")
    biased = tiny_model(5, seed=2, eos_token_id=4, eos_bias=3.0, dtype="float64", device="cpu")
    ids = torch.tensor([[0, 1, 2]])
    with torch.no_grad():
        difference = biased.model(ids).logits - plain.model(ids).logits
    expected = torch.zeros_like(difference)
    expected[..., 4] = 3.0
    torch.testing.assert_close(difference, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab_size": 1}, "vocab_size"),
        ({"vocab_size": 4.0}, "vocab_size"),
        ({"hidden_size": 6, "n_heads": 2}, "multiple of 2 \\* n_heads"),
        ({"n_layers": 0}, "n_layers"),
        ({"context_length": 1}, "context_length"),
        ({"eos_token_id": 8}, r"eos_token_id.*\[0, 7\]"),
        ({"eos_bias": 2.0}, "eos_bias needs eos_token_id"),
        ({"eos_token_id": 1, "eos_bias": float("nan")}, "eos_bias"),
        ({"seed": -1}, "seed"),
        ({"dtype": "int8"}, "dtype"),
        ({"device": "no-such-device"}, "device"),
    ],
)
def test_tiny_model_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(**kwargs)


def test_resolvers():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(torch.float64) is torch.float64
    assert resolve_dtype("torch.bfloat16") is torch.bfloat16
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_default_model_is_bundled():
    directory, name = default_model_path()
    assert name == DEFAULT_GGUF_FILE
    path = os.path.join(directory, name)
    assert os.path.isfile(path) and os.path.getsize(path) > 50_000_000
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_load_model_errors_name_the_culprit(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="no-such-model.*not an existing model directory"):
        load_model(missing)
    with pytest.raises(ValueError, match="not an existing model directory"):
        load_model("./relative/missing-model")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty-model.*could not be loaded"):
        load_model(str(empty))
    with pytest.raises(ValueError, match="gguf_file.*does not exist"):
        load_model(str(empty), gguf_file="weights.gguf")
    with pytest.raises(ValueError, match="no-such-org/no-such-model.*could not be loaded.*offline"):
        load_model("no-such-org/no-such-model", local_files_only=True)
    with pytest.raises(ValueError, match="gguf_file needs name_or_path"):
        load_model(gguf_file="x.gguf")
    with pytest.raises(ValueError, match="dtype"):
        load_model(dtype="float8")
    with pytest.raises(ValueError, match="name_or_path"):
        load_model("  ")


def test_import_is_lazy_and_offline():
    code = (
        "import sys, llm_bridge\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        "assert 'transformers' not in sys.modules, 'transformers imported eagerly'\n"
        "assert 'sample' in dir(llm_bridge)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    import llm_bridge

    assert callable(llm_bridge.sample) and llm_bridge.tiny_model is tiny_model
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        llm_bridge.nope  # noqa: B018
    assert {"load_model", "tiny_model", "sample", "score", "output_logits"} <= set(dir(llm_bridge))
