"""The text pipeline: readers and their bad inputs, vocabularies, padding, masks, bucketing."""

from __future__ import annotations

import gzip
import types
from pathlib import Path

import numpy as np
import pytest

from shared_data.batches import iterate_batches
from shared_data.errors import DataError
from shared_data.text.batching import (
    bucket_batches,
    bucket_widths,
    encode_padded,
    iterate_buckets,
    pad_sequences,
    sequence_lengths,
    word_dropout,
)
from shared_data.text.readers import read_multi30k, read_rt_polarity, read_sst2
from shared_data.text.sentiment import (
    load_sentiment,
    read_embedded,
    read_sentiment,
    split_holdout,
)
from shared_data.text.tokenize import (
    PAD_ID,
    SPECIAL_TOKENS,
    TOKENIZER_FILE,
    UNK_ID,
    load_tokenizer,
    tokenizer_for_run,
    train_tokenizer,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXTS = [
    "the movie was great , really great .",
    "a dull , lifeless film",
    "Ein Mann fährt Fahrrad — schnell !",
    "naïve café déjà vu",
] * 5


# ----------------------------------------------------------------------------- tokenizers


def test_bpe_round_trips_any_text_and_pads_with_id_zero():
    tokenizer = train_tokenizer(TEXTS, "bpe", 300)
    assert [tokenizer.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    unseen = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich 😀"
    for text in [*TEXTS[:4], unseen]:
        ids = tokenizer.encode([text])[0]
        assert PAD_ID not in ids and UNK_ID not in ids  # byte-level: no [UNK]
        assert tokenizer.decode(ids) == text


def test_word_tokenizer_round_trips_known_words_and_marks_unknown_ones():
    tokenizer = train_tokenizer(TEXTS, "word", 100)
    ids = tokenizer.encode([TEXTS[0]])[0]
    assert len(ids) == len(TEXTS[0].split()) and tokenizer.decode(ids) == TEXTS[0]
    assert tokenizer.encode(["the zeppelin"])[0] == [ids[0], UNK_ID]
    # The most frequent words come first: "great" (twice a sentence) before "movie".
    vocab = tokenizer.tokenizer.get_vocab()
    assert vocab["great"] < vocab["movie"]


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_training_is_deterministic_and_a_saved_vocabulary_gives_the_same_ids(kind, tmp_path):
    first, second = train_tokenizer(TEXTS, kind, 200), train_tokenizer(TEXTS, kind, 200)
    assert first.tokenizer.to_str() == second.tokenizer.to_str()
    path = first.save(tmp_path)
    assert path == tmp_path / TOKENIZER_FILE
    reloaded = load_tokenizer(tmp_path)
    probe = [*TEXTS, "unseen words here"]
    assert reloaded.kind == kind and reloaded.encode(probe) == first.encode(probe)


def test_a_run_reuses_its_saved_vocabulary(tmp_path):
    trained = tokenizer_for_run(tmp_path, TEXTS, "bpe", 300)
    assert (tmp_path / TOKENIZER_FILE).is_file()
    # On resume the texts are not even read: the file decides.
    again = tokenizer_for_run(tmp_path, ["other words entirely"], "bpe", 300)
    assert again.tokenizer.to_str() == trained.tokenizer.to_str()
    with pytest.raises(DataError, match="config asks for word"):
        tokenizer_for_run(tmp_path, TEXTS, "word", 300)
    (tmp_path / TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizer.json"):
        load_tokenizer(tmp_path)


# ----------------------------------------------------------------------------- batching


def test_padding_masks_and_truncation():
    tokens, mask = pad_sequences([[5, 6, 7], [8], []], max_len=2)
    assert tokens.dtype == np.int32 and mask.dtype == np.float32
    np.testing.assert_array_equal(tokens, [[5, 6], [8, 0], [0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(sequence_lengths(mask), [2, 1, 0])
    tokens, mask = pad_sequences([[5, 6, 7], [8]])
    assert tokens.shape == (2, 3) and mask.sum() == 4


def test_bucketing_is_deterministic_covers_each_row_once_and_groups_lengths():
    lengths = np.random.default_rng(0).integers(1, 60, size=1000)
    batches = bucket_batches(lengths, 32, seed=3, epoch=1, pool_batches=10)
    again = bucket_batches(lengths, 32, seed=3, epoch=1, pool_batches=10)
    other = bucket_batches(lengths, 32, seed=3, epoch=2, pool_batches=10)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=True))
    rows = np.concatenate(batches)
    assert len(batches) == 1000 // 32 and len(set(rows.tolist())) == len(rows)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.25 * np.ptp(lengths)  # random batches would span nearly all of it


def test_bucketed_batches_are_cut_to_their_longest_row():
    sequences = [[7] * n for n in np.random.default_rng(1).integers(1, 40, size=200)]
    tokens, mask = pad_sequences(sequences, max_len=40)
    arrays = {"tokens": tokens, "mask": mask, "label": np.arange(200, dtype=np.int32)}
    for batch in iterate_buckets(arrays, 16, seed=0, epoch=0, multiple=8):
        width = batch["tokens"].shape[1]
        longest = int(batch["mask"].sum(axis=1).max())
        assert width % 8 == 0 or width == 40
        assert longest <= width < longest + 8
        np.testing.assert_array_equal(batch["mask"].sum(axis=1), mask[batch["label"]].sum(axis=1))


def test_a_bucketed_epoch_resumes_mid_way_and_augments_like_plain_batches():
    sequences = [[5] * n for n in np.random.default_rng(2).integers(1, 30, size=100)]
    tokens, mask = pad_sequences(sequences, max_len=30)
    arrays = {"tokens": tokens, "mask": mask, "label": np.arange(100, dtype=np.int32)}
    seen = []

    def augment(batch, rng, *, epoch, index):
        seen.append((epoch, index.copy(), rng.random()))
        return batch

    full = list(iterate_buckets(arrays, 8, seed=1, epoch=0, augment=augment))
    resumed = list(iterate_buckets(arrays, 8, seed=1, epoch=0, start_batch=5, augment=augment))
    assert len(full) == 100 // 8 == len(resumed) + 5  # as many as plain batching drops to
    for a, b in zip(full[5:], resumed, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [s[2] for s in seen[:12]][5:] == [s[2] for s in seen[12:]]  # same per-batch rng
    plain = []
    list(
        iterate_batches(
            arrays, 8, seed=1, epoch=0, augment=lambda b, r, **_: plain.append(r.random()) or b
        )
    )
    assert [s[2] for s in seen[:12]] == plain  # keyed by (seed, epoch, batch) as there
    assert {b["tokens"].shape[1] for b in full} <= set(bucket_widths(30)) == {8, 16, 24, 30}


def test_word_dropout_replaces_only_real_tokens_and_encoding_marks_empty_texts():
    tokens, mask = pad_sequences([[9] * 20, [9] * 5], max_len=24)
    batch = {"tokens": tokens, "mask": mask}
    dropped = word_dropout(batch, np.random.default_rng(0), rate=0.5)["tokens"]
    assert 0 < (dropped == UNK_ID).sum() < 25 and (dropped[mask == 0] == PAD_ID).all()
    assert (
        word_dropout(batch, np.random.default_rng(0), rate=0.0)["tokens"].tolist()
        == tokens.tolist()
    )
    tokenizer = train_tokenizer(["a b c a", "a b"], "word", 100, min_count=2)
    assert tokenizer.vocab_size == len(SPECIAL_TOKENS) + 2  # c, seen once, is left out
    ids, lengths = encode_padded(tokenizer, ["a c", ""], max_len=3)
    assert ids.tolist() == [[4, UNK_ID, PAD_ID], [UNK_ID, PAD_ID, PAD_ID]]
    assert lengths.tolist() == [[1, 1, 0], [1, 0, 0]]


# ----------------------------------------------------------------------------- readers


def _rt_polarity(root: Path, pos: bytes, neg: bytes) -> Path:
    folder = root / "rt-polarity"
    folder.mkdir(parents=True)
    (folder / "rt-polarity.pos").write_bytes(pos)
    (folder / "rt-polarity.neg").write_bytes(neg)
    return root


def test_rt_polarity_reads_cp1252_and_utf8(tmp_path):
    # 0x97 is cp1252's em dash (the original release); the other half is UTF-8.
    root = _rt_polarity(tmp_path, b"good \x97 fine\nnice\n", "bad café\n".encode())
    data = read_rt_polarity(root)
    assert data.texts == ["good \u2014 fine", "nice", "bad café"] and data.labels == [1, 1, 0]


def test_rt_polarity_bad_inputs_name_the_file(tmp_path):
    utf16 = _rt_polarity(tmp_path / "a", "good\n".encode("utf-16"), b"bad\n")
    with pytest.raises(DataError, match=r"rt-polarity\.pos: .*UTF-16"):
        read_rt_polarity(utf16)
    # 0x81 is undefined in cp1252 and alone is not UTF-8.
    undefined = _rt_polarity(tmp_path / "b", b"good\n", b"fine\nbad \x81 byte\n")
    with pytest.raises(DataError, match=r"rt-polarity\.neg: line 2, column 5: byte 0x81"):
        read_rt_polarity(undefined)
    half = _rt_polarity(tmp_path / "c", b"good\n", b"bad\n")
    (half / "rt-polarity" / "rt-polarity.neg").unlink()
    with pytest.raises(DataError, match=r"rt-polarity\.neg: missing \(the neg half"):
        read_rt_polarity(half)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="rt-polarity.pos not found in any of"):
        read_rt_polarity(tmp_path / "empty")


def _sst2(root: Path, train: bytes, dev: bytes | None = b"sentence\tlabel\nok \t1\n") -> Path:
    folder = root / "sst2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_bytes(train)
    if dev is not None:
        (folder / "dev.tsv").write_bytes(dev)
    return root


def test_sst2_reads_glue_tsv(tmp_path):
    root = _sst2(tmp_path, b"sentence\tlabel\nhide new secretions \t0\na gem \t1\n")
    data = read_sst2("train", root)
    assert data.texts == ["hide new secretions", "a gem"] and data.labels == [0, 1]
    assert read_sst2("dev", root).labels == [1]


def test_sst2_bad_inputs_name_the_file_and_line(tmp_path):
    latin1 = _sst2(tmp_path / "a", "sentence\tlabel\ncafé \t1\n".encode("latin-1"))
    with pytest.raises(
        DataError, match=r"train\.tsv: line 2, column 4: byte 0xe9 is not valid utf-8"
    ):
        read_sst2("train", latin1)
    no_dev = _sst2(tmp_path / "b", b"sentence\tlabel\nok \t1\n", dev=None)
    with pytest.raises(DataError, match=r"dev\.tsv: missing \(the dev split of sst2"):
        read_sst2("dev", no_dev)
    header = _sst2(tmp_path / "c", b"index\tsentence\n0\tok\n")
    with pytest.raises(DataError, match="expected GLUE's header"):
        read_sst2("train", header)
    label = _sst2(tmp_path / "d", b"sentence\tlabel\nok \t1\nfine \tpositive\n")
    with pytest.raises(DataError, match=r"train\.tsv: line 3 is 'fine \\tpositive'"):
        read_sst2("train", label)
    with pytest.raises(DataError, match="has no labels"):
        read_sst2("test", latin1)


def _multi30k(root: Path, de: list[str], en: list[str], split="train") -> Path:
    folder = root / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for lang, lines in (("de", de), ("en", en)):
        (folder / f"{split}.{lang}.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    return root


def test_multi30k_reads_aligned_gzipped_pairs(tmp_path):
    root = _multi30k(tmp_path, ["Ein Hund läuft.", "Zwei Männer."], ["A dog runs.", "Two men."])
    data = read_multi30k("train", root)
    assert data.sources == ["Ein Hund läuft.", "Zwei Männer."] and data.targets[1] == "Two men."


def test_multi30k_bad_inputs_name_the_files(tmp_path):
    misaligned = _multi30k(tmp_path / "a", ["Eins.", "Zwei.", "Drei."], ["One.", "Two."])
    with pytest.raises(DataError, match=r"train\.de\.gz has 3 lines but .*train\.en\.gz has 2"):
        read_multi30k("train", misaligned)
    with pytest.raises(DataError, match=r"val\.de\.gz: missing \(the val split of multi30k"):
        read_multi30k("val", misaligned)
    gap = _multi30k(tmp_path / "b", ["Eins.", "", "Drei."], ["One.", "Two.", "Three."])
    with pytest.raises(DataError, match=r"train\.de\.gz: line 2 is empty while its partner"):
        read_multi30k("train", gap)
    corrupt = _multi30k(tmp_path / "c", ["Eins."], ["One."])
    path = corrupt / "multi30k" / "train.en.gz"
    path.write_bytes(path.read_bytes()[:12])
    with pytest.raises(DataError, match=r"train\.en\.gz: truncated or corrupt gzip"):
        read_multi30k("train", corrupt)
    latin1 = _multi30k(tmp_path / "d", ["Eins."], ["One."])
    (latin1 / "multi30k" / "train.de.gz").write_bytes(gzip.compress("Männer".encode("latin-1")))
    with pytest.raises(DataError, match=r"train\.de\.gz: line 1, column 2: byte 0xe4"):
        read_multi30k("train", latin1)


# ----------------------------------------------------------------------------- datasets


def test_embedded_sentences_hold_both_splits_and_labels():
    splits = read_embedded()
    assert len(splits["train"]) == 128 and len(splits["test"]) == 32
    assert set(splits["train"].labels) == {0, 1} and set(splits["test"].labels) == {0, 1}


def test_the_vocabulary_is_learned_from_the_training_split_only(tmp_path):
    pos = "".join(f"good film number{i} .\n" for i in range(50)).encode()
    neg = "".join(f"bad film number{i + 50} .\n" for i in range(50)).encode()
    root = _rt_polarity(tmp_path, pos, neg)
    config = types.SimpleNamespace(
        dataset="rt-polarity", data_dir=root, test_fraction=0.2, split_seed=0,
        limit_train=None, limit_test=None, tokenizer="word", vocab_size=500, max_len=6,
        min_count=1, bucket_multiple=0, folds=0, fold=0, vectors="none", extend_vocab=False,
    )  # fmt: skip
    dataset = load_sentiment(config, tmp_path)
    vocab = dataset.tokenizer.tokenizer.get_vocab()
    held_out = split_holdout(read_rt_polarity(root), 0.2, 0)["test"]
    assert len(held_out) == 20 and dataset.test["tokens"].shape == (20, 6)
    assert all(text.split()[2] not in vocab for text in held_out.texts)
    assert (dataset.test["tokens"][:, 2] == UNK_ID).all()  # every "number<i>" is unseen
    assert (tmp_path / TOKENIZER_FILE).is_file()


def test_cross_validation_folds_partition_the_corpus_and_fold_0_is_the_holdout(tmp_path):
    pos = "".join(f"good film number{i} .\n" for i in range(53)).encode()
    neg = "".join(f"bad film number{i + 53} .\n" for i in range(50)).encode()
    data = read_rt_polarity(_rt_polarity(tmp_path, pos, neg))
    folds = [split_holdout(data, 0.1, 7, folds=10, fold=k) for k in range(10)]
    tests = [set(f["test"].texts) for f in folds]
    assert sorted(len(t) for t in tests) == [10] * 7 + [11] * 3
    assert set().union(*tests) == set(data.texts) and sum(map(len, tests)) == len(data)
    for fold, test in zip(folds, tests, strict=True):
        assert not test & set(fold["train"].texts) and len(fold["train"]) == 103 - len(test)
    holdout = split_holdout(data, 0.1, 7)
    assert folds[0]["test"].texts == holdout["test"].texts
    assert folds[0]["train"].texts == holdout["train"].texts  # the same order too
    with pytest.raises(DataError, match="fold 10 of 10"):
        split_holdout(data, 0.1, 7, folds=10, fold=10)
    with pytest.raises(DataError, match="fixed test split"):
        read_sentiment("sst2", tmp_path, folds=10)


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data is not beside the checkout")
def test_the_real_corpora_have_their_published_counts():
    polarity = read_rt_polarity(REAL)
    assert len(polarity) == 10_662 and sum(polarity.labels) == 5_331
    assert (len(read_sst2("train", REAL)), len(read_sst2("dev", REAL))) == (67_349, 872)
    counts = [len(read_multi30k(s, REAL)) for s in ("train", "val", "test_2016_flickr")]
    assert counts == [29_000, 1_014, 1_000]
