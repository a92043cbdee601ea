"""The emergence pipeline on the bundled SmolLM2-135M-Instruct (one model load, slow)."""

import numpy as np
import pytest
import torch

from llm_bridge.emergence.capture import capture
from llm_bridge.emergence.data import icl_lists, single_token_entities, text_windows
from llm_bridge.emergence.metric import emergence

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm():
    from llm_bridge.models import load_model

    return load_model()


def test_entities_are_single_tokens_of_the_models_tokenizer(lm):
    entities = single_token_entities(lm)
    assert set(entities) == {"animal", "colour", "country"}
    for ids in entities.values():
        assert len(ids) >= 20
        for i in ids[:10]:
            text = lm.tokenizer.decode([i])
            assert text.startswith(" ")
            assert lm.tokenizer(text, add_special_tokens=False)["input_ids"] == [i]


def test_pipeline_on_the_default_model(lm, tmp_path):
    data = icl_lists(lm, shots=3, n=64, rng=0)
    reps = capture(lm, data, tmp_path, layers=[0, 15, 29], batch_size=32)
    assert reps.width == 576 and reps.streams == (0, 1, 15, 16, 29, 30)
    with torch.inference_mode():
        hidden = lm.model(torch.as_tensor(data.ids[:4]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(reps.macro(15, 5)[0][:4], hidden[15][:, 5].numpy(), atol=1e-4)
    np.testing.assert_allclose(reps.macro(15, 5)[1][:4], hidden[16][:, 5].numpy(), atol=1e-4)
    result = emergence(reps, dataset=data, dim=8, n_seeds=2, rng=0)
    e = result.emergence()
    assert np.isfinite(e).all()
    np.testing.assert_allclose(e[:, 0], 0.0, atol=1e-2)   # no BOS: macro = micro at t = 0
    np.testing.assert_array_equal(result.micro[:, 1::2], 0.0)  # the comma alone: 0 bits


def test_text_windows_come_from_the_shipped_prose(lm):
    data = text_windows(lm, length=8, n=50, rng=0)
    assert data.ids.shape == (50, 8) and data.params["distinct_starts"] > 1000
