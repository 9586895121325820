"""Sentiment: padding never changes a logit, in both models and both frameworks; the run's
vocabulary lives in its folder. Parity, parameter counts and the tools come from the registry."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from comparisons.registry import get_project
from shared_data.text.batching import pad_sequences
from shared_data.text.tokenize import TOKENIZER_FILE, load_tokenizer

PROJECT = get_project("sentiment")
FRAMEWORKS = ("jax", "torch")


def _config(model: str):
    return dataclasses.replace(PROJECT.config("smoke"), model=model, dropout=0.0, max_len=24)


def _logits(framework: str, config, tokens, mask) -> np.ndarray:
    train = PROJECT.module(framework)
    state = train.create_state(config, 1)
    batch = {"tokens": tokens, "mask": mask, "label": np.zeros(len(tokens), np.int32)}
    return np.asarray(train.predict(state, train.to_device(batch)))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model", PROJECT.models)
def test_padding_never_changes_the_logits(framework, model):
    config = _config(model)
    rng = np.random.default_rng(0)
    sentence = rng.integers(4, config.vocab_size, size=7).tolist()
    other = rng.integers(4, config.vocab_size, size=19).tolist()
    rows = []
    for width in (7, 8, 13, 24):
        tokens, mask = pad_sequences([sentence, other], max_len=width)
        # Whatever the padding holds (here random ids, not [PAD]) is never read.
        tokens[0, 7:] = rng.integers(0, config.vocab_size, size=width - 7)
        rows.append(_logits(framework, config, tokens, mask)[0])
    for logits in rows[1:]:
        np.testing.assert_allclose(logits, rows[0], rtol=0, atol=1e-5)
    # And a sentence's logits do not depend on the other rows of its batch.
    alone = _logits(framework, config, *pad_sequences([sentence], max_len=24))[0]
    np.testing.assert_allclose(alone, rows[0], rtol=0, atol=1e-5)


def test_the_torch_lstm_has_one_trainable_bias_per_gate_like_flax():
    train = PROJECT.module("torch")
    model = train.create_state(_config("lstm"), 1).model
    names = {name for name, _ in model.named_parameters()}
    assert "fwd0.bias_ih_l0" in names and "fwd0.bias_hh_l0" not in names
    assert not model.fwd0.bias_hh_l0.any()  # a zero buffer, kept for the porting rule


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_run_keeps_its_vocabulary_and_resume_reads_it(framework, tmp_path):
    train = PROJECT.module(framework)
    config = dataclasses.replace(PROJECT.config("smoke"), epochs=1, max_steps=2)
    train.train_and_evaluate(config, tmp_path, progress=False)
    saved = tmp_path / TOKENIZER_FILE
    text = saved.read_text()
    assert load_tokenizer(saved).kind == "bpe"
    longer = dataclasses.replace(config, max_steps=4)
    summary = train.train_and_evaluate(longer, tmp_path, resume=True, progress=False)
    assert summary["resumed"] and summary["steps"] == 4
    assert saved.read_text() == text  # reloaded, not retrained
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "embedded"
