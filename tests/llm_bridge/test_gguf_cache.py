"""The per-user cache of converted GGUF models: keys, hits, corruption, location."""

import logging
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  - first import adds warnings filters; not inside a test

from llm_bridge import gguf_cache
from llm_bridge.models import load_model, tiny_model


def plain_llama(vocab_size=7, seed=0):
    """A tiny Llama that ``from_pretrained`` rebuilds exactly (no extra output bias)."""
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module", autouse=True)
def _model_machinery_imported():
    """Building a first model imports accelerate and others, which add warnings filters;
    done before the global-state guard of each test starts watching."""
    plain_llama()


class Converter:
    """Counts conversions; returns a fixed tiny model."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self):
        self.calls += 1
        return self.model, None


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"stand-in for a GGUF file")
    return path


def reload(entry):
    return transformers.AutoModelForCausalLM.from_pretrained(entry, local_files_only=True)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_converts_once_and_reloads_the_same_weights(source, tmp_path):
    convert = Converter(plain_llama())
    entry = gguf_cache.converted_checkpoint(source, convert, cache_dir=tmp_path / "c")
    again = gguf_cache.converted_checkpoint(source, convert, cache_dir=tmp_path / "c")
    assert entry == again and convert.calls == 1
    assert entry.parent == tmp_path / "c" / "gguf"
    assert entry.name.startswith(gguf_cache.file_digest(source)[:32])
    assert same_weights(reload(entry), convert.model)
    assert [p.name for p in entry.parent.iterdir() if p.is_dir()] == [entry.name]  # no staging


def test_a_changed_file_is_a_new_entry(source, tmp_path):
    convert = Converter(plain_llama())
    first = gguf_cache.converted_checkpoint(source, convert, cache_dir=tmp_path)
    source.write_bytes(b"other bytes, same name")
    second = gguf_cache.converted_checkpoint(source, convert, cache_dir=tmp_path)
    assert first != second and convert.calls == 2


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "drop the manifest",
                                    "extra file", "bad manifest"])
def test_a_corrupted_entry_is_detected_logged_and_rebuilt(source, tmp_path, caplog, damage):
    convert = Converter(plain_llama())
    entry = gguf_cache.converted_checkpoint(source, convert, cache_dir=tmp_path)
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip a byte":
        data[-5] ^= 0x01
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "drop the manifest":
        (entry / "manifest.json").unlink()
    elif damage == "extra file":
        (entry / "stray.bin").write_bytes(b"x")
    else:
        (entry / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="llm_bridge.gguf_cache"):
        rebuilt = gguf_cache.converted_checkpoint(source, convert, cache_dir=tmp_path)
    assert rebuilt == entry and convert.calls == 2
    assert "corrupted" in caplog.text and str(entry) in caplog.text
    assert same_weights(reload(rebuilt), convert.model)
    assert not (entry / "stray.bin").exists()


def test_a_failed_conversion_leaves_nothing(source, tmp_path):
    def broken():
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        gguf_cache.converted_checkpoint(source, broken, cache_dir=tmp_path)
    assert not [p for p in (tmp_path / "gguf").iterdir() if p.is_dir()]


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv(gguf_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_cache.cache_root() == tmp_path / "xdg" / "llm-branching"
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(tmp_path / "env"))
    assert gguf_cache.cache_root() == tmp_path / "env"
    assert gguf_cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(gguf_cache.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert gguf_cache.cache_root() == tmp_path / "home" / ".cache" / "llm-branching"


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="gguf_path .* is not an existing file"):
        gguf_cache.converted_checkpoint(tmp_path / "none.gguf", Converter(None))
    with pytest.raises(ValueError, match="cache_dir must be a directory path, got ''"):
        gguf_cache.cache_root("")


def test_file_digest_is_sha256(source):
    import hashlib

    assert gguf_cache.file_digest(source) == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.slow
def test_default_model_from_the_cache_equals_a_direct_gguf_load(real_lm):
    direct = load_model(cache_dir=False)
    assert same_weights(direct.model, real_lm.model)
    prompt = real_lm.encode("Name a colour.", chat=True)
    assert direct.encode("Name a colour.", chat=True) == prompt
    assert (direct.eos_token_id, direct.context_length) == (
        real_lm.eos_token_id, real_lm.context_length)
    with torch.no_grad():
        ids = torch.tensor([prompt])
        np.testing.assert_array_equal(direct.model(ids).logits, real_lm.model(ids).logits)


def test_tiny_models_do_not_touch_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(tmp_path))
    tiny_model(4)
    assert not os.listdir(tmp_path)
