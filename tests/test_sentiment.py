"""Sentiment: padding never changes a logit, in both models and both frameworks; the run's
vocabulary lives in its folder, and serve and export read raw text with it; length-bucketed
batches compile one JAX step per width. Parity, parameter counts and the tools come from the
registry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from comparisons.registry import get_project
from comparisons.runfolders import load_trained
from comparisons.serve import Settings, create_app, load_backend
from comparisons.serve.app import softmax
from shared_data.configs.base import ConfigError, override
from shared_data.text.batching import bucket_widths, encode_padded, pad_sequences
from shared_data.text.positions import sinusoidal_positions
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


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """A 3-step smoke run per framework: {framework: run folder}."""
    root = tmp_path_factory.mktemp("sentiment-runs")
    config = override(PROJECT.config("smoke"), {"max_steps": 3})
    paths = {fw: root / "sentiment" / fw / "r1" for fw in FRAMEWORKS}
    for framework, path in paths.items():
        PROJECT.module(framework).train_and_evaluate(config, path, progress=False)
    return paths


TEXTS = ["a gripping , funny film", "", "dull " * 40]  # no token at all; past max_len


def _runs_own_logits(framework, path, texts) -> np.ndarray:
    """The run's predict on texts encoded with its saved vocabulary, as training encodes."""
    config, state, _ = load_trained(PROJECT, framework, path)
    tokens, mask = encode_padded(load_tokenizer(path), texts, config.max_len)
    train = PROJECT.module(framework)
    return np.asarray(train.predict(state, train.to_device({"tokens": tokens, "mask": mask})))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_serve_takes_raw_text_and_answers_the_runs_own_probabilities(framework, smoke_runs):
    path = smoke_runs[framework]
    backend = load_backend(PROJECT, framework, path)
    with TestClient(create_app(lambda: backend, Settings(max_batch=8))) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        batch = client.post("/predict", json={"text": TEXTS}).json()
        one = client.post("/predict", json={"text": TEXTS[0]}).json()
        meta = client.get("/metadata").json()
        not_text = client.post("/predict", json={"text": [3]})
    logits = _runs_own_logits(framework, path, TEXTS)
    np.testing.assert_allclose(batch["outputs"], logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(batch["probabilities"], softmax(logits), rtol=0, atol=1e-6)
    np.testing.assert_allclose(one["probabilities"], softmax(logits[:1]), rtol=0, atol=1e-6)
    (record,) = meta["text_inputs"]
    saved = hashlib.sha256((path / TOKENIZER_FILE).read_bytes()).hexdigest()
    assert record["tokenizer"]["sha256"] == saved and record["pad_id"] == 0
    assert (record["field"], record["mask"], record["max_len"]) == ("tokens", "mask", 16)
    assert not_text.status_code == 422 and "list of strings" in not_text.json()["error"]


@pytest.mark.slow  # three exports, each checked in a fresh process (~1 min)
def test_exports_read_raw_text_with_the_runs_tokenizer(smoke_runs):
    from comparisons.export import export_run, load_artifact, load_text_encoder

    for framework, fmt in (("jax", "jax.export"), ("torch", "torch.export"), ("torch", "onnx")):
        path = smoke_runs[framework]
        manifest_path = export_run(PROJECT.name, framework, fmt, path)
        manifest = json.loads(manifest_path.read_text())
        assert manifest["verification"]["batches"]["text"]["max_abs_diff"] <= 1e-5
        copy = manifest_path.parent / TOKENIZER_FILE
        assert copy.read_bytes() == (path / TOKENIZER_FILE).read_bytes()
        outputs = load_artifact(manifest_path)(load_text_encoder(manifest_path)(TEXTS))
        expected = _runs_own_logits(framework, path, TEXTS)
        np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)
    backend = load_backend(PROJECT, "onnx", smoke_runs["torch"])  # ONNX: the export's tokenizer
    assert backend.text["tokens"].path.parent.name == "onnx"


def test_length_buckets_compile_one_jax_step_per_width(tmp_path):
    train = PROJECT.module("jax")
    changes = {"max_len": 24, "bucket_multiple": 4, "tokenizer": "word"}  # words: 8-20
    config = override(PROJECT.config("smoke"), changes)
    before = train.train_step._cache_size()
    summary = train.train_and_evaluate(config, tmp_path, progress=False)
    # Widths 4, 8, ..., 24 at most, whatever the batches hold (bucket_multiple=0: max_len only).
    compiled = train.train_step._cache_size() - before
    assert 2 <= compiled <= len(bucket_widths(24, 4)) == 6
    # Every compiling step is timed alone and left out of the throughput.
    assert summary["new_shape_steps"] == compiled - 1 and summary["new_shape_s"] > 0


def test_the_config_checks_cross_validation_folds():
    base = PROJECT.config("default")
    dataclasses.replace(base, folds=10, fold=9)
    for folds, fold in ((10, 10), (1, 0), (0, 3)):  # (0, 3): a fold of no cross-validation
        with pytest.raises(ConfigError, match="'fold'"):
            dataclasses.replace(base, folds=folds, fold=fold)


def test_sinusoidal_positions_are_a_shared_constant_not_a_parameter():
    from comparisons.parity import make_pair, parity_config

    table = sinusoidal_positions(6, 4)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1])
    np.testing.assert_allclose(table[3], [np.sin(3), np.cos(3), np.sin(0.03), np.cos(0.03)], 1e-6)
    config = dataclasses.replace(parity_config(PROJECT, "transformer"), positions="sinusoidal")
    pair = make_pair(PROJECT, config)
    assert "position" not in pair.jax_state.params
    torch_names = [name for name, _ in pair.torch_state.model.named_parameters()]
    assert not any(name.startswith("position") for name in torch_names)


@pytest.mark.parametrize("options", [{"positions": "sinusoidal"}, {"pool": "max"}])
def test_transformer_options_keep_parity_and_ignore_padding(options):
    from comparisons.parity import make_pair, parity_config, predict_diff

    config = dataclasses.replace(parity_config(PROJECT, "transformer"), **options)
    pair = make_pair(PROJECT, config)
    assert predict_diff(pair, PROJECT.example_batch(8, noise=True, config=config)) < 1e-5
    model = dataclasses.replace(_config("transformer"), **options)
    tokens, mask = pad_sequences([[5, 6, 7]], max_len=9)
    tokens[0, 3:] = 8  # padding that is not [PAD]: still never read
    for framework in FRAMEWORKS:
        wide = _logits(framework, model, tokens, mask)
        narrow = _logits(framework, model, tokens[:, :3], mask[:, :3])
        np.testing.assert_allclose(wide, narrow, rtol=0, atol=1e-5)
