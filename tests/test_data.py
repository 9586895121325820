"""Tests for the shared numpy data layer: IDX reading, sources, loaders and batching."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from shared_data import (
    DATASETS,
    DataError,
    ImageDataset,
    describe_sources,
    epoch_permutation,
    iterate_batches,
    load_image_dataset,
    num_batches,
    random_shift,
    to_float_nhwc,
    train_val_split,
)
from shared_data import mnist as mnist_mod
from shared_data.digits import load_digits_as_mnist
from shared_data.mnist import MNIST_FILES, load_mnist, read_idx
from shared_data.sources import ENV_VAR, cache_dir, find_dataset_dir
from shared_data.synthetic import synthetic_mnist

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode array in the IDX format (big-endian)."""
    big = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, IDX_CODES[big.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + big.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write array to path as IDX, gzipped when gz."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0):
    """Write four small MNIST-format files; return (arrays, sha256 of decompressed bytes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, sha = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        arrays[split] = (images, labels)
        for name, array in zip(MNIST_FILES[split], (images, labels), strict=True):
            write_idx(folder / name, array)
            sha[name] = hashlib.sha256(idx_bytes(array)).hexdigest()
    return arrays, sha


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Keep the user's real data dir and cache out of every test."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("ROADMAP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def fake_dir(tmp_path, monkeypatch):
    """A data root holding mnist/ with fake files whose checksums are the expected ones."""
    arrays, sha = fake_mnist(tmp_path / "data" / "mnist")
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", sha)
    return tmp_path / "data", arrays


def assert_helpful(exc: pytest.ExceptionInfo, name: str) -> None:
    """The message names the file and says what to do."""
    message = str(exc.value)
    assert name in message
    assert "--download" in message or "re-download" in message, message


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_roundtrip(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / "x.idx", array, gz=gz)
    out = read_idx(path)
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 1  # writable


def test_read_idx_sniffs_gzip_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    raw_named_gz = write_idx(tmp_path / "labels.gz", array, gz=False)
    gz_named_raw = write_idx(tmp_path / "labels", array, gz=True)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)


def test_read_idx_checksum_ok(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(
        read_idx(path, hashlib.sha256(idx_bytes(array)).hexdigest()), array
    )


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as exc:
        read_idx(tmp_path / "nope-idx1-ubyte.gz")
    assert_helpful(exc, str(tmp_path / "nope-idx1-ubyte.gz"))
    assert "not found" in str(exc.value)


def test_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_helpful(exc, str(path))
    assert "gzip" in str(exc.value)


def test_corrupt_gzip_bytes(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    rng = np.random.default_rng(0)
    path.write_bytes(b"\x1f\x8b\x08\x00" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_helpful(exc, str(path))


def test_corrupt_gzip_crc(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.arange(100, dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_helpful(exc, str(path))


@pytest.mark.parametrize(
    "header",
    [
        b"\x01\x00\x08\x01",
        b"\x00\x00\x07\x01",
        b"PK\x03\x04",
        b"<html>",
        b"\x00\x00\x08\x00",
        b"\x00",
    ],
)
def test_wrong_magic(tmp_path, header):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(header + b"\x00" * 16))
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_helpful(exc, str(path))


def test_truncated_payload_and_trailing_bytes(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(DataError, match="truncated") as exc:
        read_idx(short)
    assert_helpful(exc, str(short))
    long = tmp_path / "long"
    long.write_bytes(data + b"\x00")
    with pytest.raises(DataError, match="trailing") as exc:
        read_idx(long)
    assert_helpful(exc, str(long))
    header_only = tmp_path / "header"
    header_only.write_bytes(data[:8])
    with pytest.raises(DataError, match="header") as exc:
        read_idx(header_only)


def test_checksum_mismatch(tmp_path):
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError) as exc:
        read_idx(path, "0" * 64)
    assert_helpful(exc, str(path))
    message = str(exc.value)
    assert "0" * 64 in message
    assert hashlib.sha256(idx_bytes(np.zeros((2, 28, 28), np.uint8))).hexdigest() in message


# ---------------------------------------------------------------- load_mnist


def test_load_mnist_fake(fake_dir):
    root, arrays = fake_dir
    for data_dir in (root, root / "mnist"):
        out = load_mnist(data_dir)
        assert set(out) == {"train", "test"}
        for split in ("train", "test"):
            np.testing.assert_array_equal(out[split][0], arrays[split][0])
            np.testing.assert_array_equal(out[split][1], arrays[split][1])
            assert out[split][0].dtype == np.uint8 and out[split][1].dtype == np.uint8


def test_load_mnist_accepts_decompressed_files(tmp_path, monkeypatch):
    folder = tmp_path / "raw"
    _, sha = fake_mnist(folder)
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", sha)
    for gz in folder.iterdir():
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert load_mnist(folder)["train"][0].shape == (20, 28, 28)


def test_load_mnist_checksum_table_used(fake_dir, monkeypatch):
    root, _ = fake_dir
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", dict.fromkeys(mnist_mod.MNIST_SHA256, "ab" * 32))
    with pytest.raises(DataError) as exc:
        load_mnist(root)
    assert_helpful(exc, "train-images-idx3-ubyte.gz")
    assert load_mnist(root, verify=False)["test"][0].shape == (10, 28, 28)


def test_missing_explicit_data_dir(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError) as exc:
        load_mnist(missing)
    assert str(missing) in str(exc.value)
    assert "--data-dir" in str(exc.value)


def test_mnist_not_found_explains_options(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env-root"))
    with pytest.raises(DataError) as exc:
        load_mnist()
    message = str(exc.value)
    for needle in (
        "--data-dir",
        ENV_VAR,
        "--download",
        str(tmp_path / "env-root"),
        str(cache_dir()),
        "train-images-idx3-ubyte.gz",
    ):
        assert needle in message
    # An explicit folder binds: it is the only place searched, and the error names it.
    with pytest.raises(DataError) as exc:
        load_mnist(empty)
    assert str(empty) in str(exc.value) and str(tmp_path / "env-root") not in str(exc.value)


def test_mnist_missing_one_file(fake_dir):
    root, _ = fake_dir
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(root)


def test_wrong_image_dims(fake_dir, monkeypatch):
    root, _ = fake_dir
    path = root / "mnist" / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((20, 27, 28), dtype=np.uint8))
    with pytest.raises(DataError) as exc:
        load_mnist(root, verify=False)
    assert_helpful(exc, str(path))
    assert "27" in str(exc.value)


def test_label_count_mismatch(fake_dir):
    root, _ = fake_dir
    labels = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataError) as exc:
        load_mnist(root, verify=False)
    assert_helpful(exc, str(labels))
    assert str(root / "mnist" / "t10k-images-idx3-ubyte.gz") in str(exc.value)


def test_label_out_of_range(fake_dir):
    root, _ = fake_dir
    labels = root / "mnist" / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError) as exc:
        load_mnist(root, verify=False)
    assert_helpful(exc, str(labels))


# ---------------------------------------------------------------- sources


def test_find_dataset_dir_order(tmp_path, monkeypatch):
    required = ["a.gz", "b"]

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True)
        (folder / "a").write_bytes(b"x")  # .gz stripped still counts
        (folder / "b.gz").write_bytes(b"x")  # .gz added still counts
        return folder

    cache = make(tmp_path / "cache" / "toy")
    assert find_dataset_dir("toy", required) == cache
    env = make(tmp_path / "env")  # files directly in the root
    monkeypatch.setenv(ENV_VAR, str(env))
    assert find_dataset_dir("toy", required) == env
    explicit = make(tmp_path / "explicit" / "toy")
    assert find_dataset_dir("toy", required, tmp_path / "explicit") == explicit
    assert find_dataset_dir("toy", required, str(explicit)) == explicit
    assert find_dataset_dir("toy", ["c"], tmp_path / "explicit") is None
    with pytest.raises(DataError, match="does-not-exist"):
        find_dataset_dir("toy", required, tmp_path / "does-not-exist")


def test_cache_dir_precedence(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("ROADMAP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "roadmap"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "roadmap"


# ---------------------------------------------------------------- digits and synthetic


def test_digits_as_mnist():
    out = load_digits_as_mnist()
    (xtr, ytr), (xte, yte) = out["train"], out["test"]
    assert len(xtr) + len(xte) == 1797
    assert abs(len(xte) - 0.2 * 1797) <= 10
    for x, y in ((xtr, ytr), (xte, yte)):
        assert x.shape[1:] == (28, 28) and x.dtype == np.uint8 and y.dtype == np.uint8
        assert x.max() == 255 and x.min() == 0
        assert not x[:, :2].any() and not x[:, -2:].any()  # 2-pixel blank border
        np.testing.assert_array_equal(x[:, 2:5:, 2:5], np.repeat(x[:, 2:3, 2:3], 3, 1).repeat(3, 2))
    # Stratified: each class keeps ~20% in test.
    frac = np.bincount(yte, minlength=10) / (np.bincount(ytr, minlength=10) + np.bincount(yte))
    assert np.all(np.abs(frac - 0.2) < 0.01)
    again = load_digits_as_mnist()
    np.testing.assert_array_equal(again["test"][0], xte)
    other = load_digits_as_mnist(seed=1)
    assert not np.array_equal(other["test"][1], yte) or not np.array_equal(other["test"][0], xte)


def test_synthetic_shapes_and_determinism():
    out = synthetic_mnist(n_train=64, n_test=32, seed=3)
    assert out["train"][0].shape == (64, 28, 28) and out["train"][0].dtype == np.uint8
    assert out["test"][1].shape == (32,) and out["test"][1].dtype == np.uint8
    assert set(np.unique(out["train"][1])) == set(range(10))
    again = synthetic_mnist(n_train=64, n_test=32, seed=3)
    np.testing.assert_array_equal(again["train"][0], out["train"][0])
    assert not np.array_equal(synthetic_mnist(64, 32, seed=4)["train"][0], out["train"][0])
    assert synthetic_mnist(10, 5, num_classes=3)["train"][1].max() == 2


def test_synthetic_is_learnable():
    # A nearest-class-mean classifier (a "model" with zero training) already beats chance by far.
    out = synthetic_mnist()
    xtr = out["train"][0].reshape(512, -1).astype(np.float32)
    xte = out["test"][0].reshape(256, -1).astype(np.float32)
    means = np.stack([xtr[out["train"][1] == c].mean(0) for c in range(10)])
    pred = ((xte[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == out["test"][1]).mean() > 0.6


# ---------------------------------------------------------------- batching


def test_to_float_nhwc():
    x = np.array([[[0, 255]]], dtype=np.uint8)
    out = to_float_nhwc(x)
    assert out.shape == (1, 1, 2, 1) and out.dtype == np.float32
    np.testing.assert_allclose(
        out[0, 0, :, 0], [(0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081], rtol=1e-6
    )
    rgb = to_float_nhwc(np.zeros((2, 4, 4, 3), np.uint8), mean=(0.5, 0.5, 0.5), std=(0.5,) * 3)
    assert rgb.shape == (2, 4, 4, 3) and rgb.dtype == np.float32
    assert np.all(rgb == -1.0)
    with pytest.raises(ValueError):
        to_float_nhwc(np.zeros((4, 4), np.uint8))


def test_num_batches():
    assert num_batches(10, 3, "drop") == 3
    assert num_batches(10, 3, "pad") == 4
    assert num_batches(9, 3, "pad") == 3
    assert num_batches(0, 3, "pad") == 0
    with pytest.raises(ValueError, match="remainder"):
        num_batches(10, 3, "keep")
    with pytest.raises(ValueError):
        num_batches(10, 0, "drop")


def toy_arrays(n: int = 23) -> dict[str, np.ndarray]:
    return {
        "image": np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2, 1),
        "label": np.arange(n, dtype=np.int32),
    }


def test_epoch_permutation():
    np.testing.assert_array_equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 1, 2))
    np.testing.assert_array_equal(
        epoch_permutation(50, 1, 2), np.random.default_rng([1, 2]).permutation(50)
    )
    assert not np.array_equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 1, 3))
    assert not np.array_equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 2, 2))


def test_iterate_batches_deterministic_and_epoch_dependent():
    data = toy_arrays()
    first = [b["label"] for b in iterate_batches(data, 5, seed=7, epoch=0)]
    again = [b["label"] for b in iterate_batches(data, 5, seed=7, epoch=0)]
    other = [b["label"] for b in iterate_batches(data, 5, seed=7, epoch=1)]
    assert len(first) == 4
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    plain = np.concatenate([b["label"] for b in iterate_batches(data, 5, shuffle=False)])
    np.testing.assert_array_equal(plain, np.arange(20))


def test_iterate_batches_drop_each_example_at_most_once():
    data = toy_arrays()
    batches = list(iterate_batches(data, 5, seed=1, remainder="drop"))
    labels = np.concatenate([b["label"] for b in batches])
    assert all(set(b) == {"image", "label"} for b in batches)
    assert len(labels) == 20 and len(set(labels.tolist())) == 20
    for b in batches:  # rows stay aligned across keys
        np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["label"] * 4)


def test_iterate_batches_pad_covers_every_example_once():
    data = toy_arrays()
    batches = list(iterate_batches(data, 5, seed=1, remainder="pad"))
    assert len(batches) == num_batches(23, 5, "pad") == 5
    for b in batches:
        assert b["mask"].dtype == np.float32 and b["mask"].shape == (5,)
        assert b["image"].shape == (5, 2, 2, 1)
    masks = np.concatenate([b["mask"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert masks.sum() == 23
    assert sorted(labels[masks == 1].tolist()) == list(range(23))
    assert batches[-1]["mask"].tolist() == [1, 1, 1, 0, 0]
    assert np.all(batches[-1]["label"][3:] == batches[-1]["label"][0])


def test_iterate_batches_pad_combines_existing_mask():
    data = {"tokens": np.ones((7, 3), np.int32), "mask": np.ones((7, 3), np.float32)}
    last = list(iterate_batches(data, 4, remainder="pad"))[-1]
    assert last["mask"].shape == (4, 3)
    assert last["mask"].sum(axis=1).tolist() == [3, 3, 3, 0]


def test_iterate_batches_start_batch_equals_skipping():
    data = toy_arrays()
    full = list(iterate_batches(data, 4, seed=2, epoch=3, remainder="pad", augment=random_shift))
    resumed = list(
        iterate_batches(
            data, 4, seed=2, epoch=3, remainder="pad", start_batch=2, augment=random_shift
        )
    )
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert list(iterate_batches(data, 4, start_batch=99)) == []


def test_iterate_batches_augment_rng_is_keyed():
    seen = []

    def record(batch, rng, **_):
        seen.append(rng.integers(0, 2**31))
        return batch

    list(iterate_batches(toy_arrays(), 4, seed=5, epoch=1, augment=record))
    expected = [np.random.default_rng([5, 1, b, 1]).integers(0, 2**31) for b in range(5)]
    assert seen == expected


def test_iterate_batches_mismatched_lengths():
    with pytest.raises(ValueError, match="image.*label|label.*image"):
        next(iterate_batches({"image": np.zeros((4, 2)), "label": np.zeros(3)}, 2))


def test_random_shift():
    rng = np.random.default_rng(0)
    images = np.full((64, 28, 28, 1), -0.5, dtype=np.float32)
    images[:, 10:18, 10:18] = 2.0  # a square well inside the frame survives any 2-px shift
    batch = {"image": images, "label": np.arange(64)}
    out = random_shift(batch, rng)
    assert out["image"].shape == images.shape and out["image"].dtype == np.float32
    assert out["label"] is batch["label"]
    assert batch["image"] is images and np.array_equal(
        images[0, 10:18, 10:18, 0], np.full((8, 8), 2.0)
    )
    np.testing.assert_allclose(out["image"].sum(axis=(1, 2, 3)), images.sum(axis=(1, 2, 3)))
    moved = ~np.all(out["image"] == images, axis=(1, 2, 3))
    assert moved.mean() > 0.8  # 24 of 25 shifts move the square
    again = random_shift(batch, np.random.default_rng(0))
    np.testing.assert_array_equal(again["image"], out["image"])
    # Content falling off the edge is replaced by the background value, never wrapped.
    edge = np.full((1, 5, 5, 1), 0.0, dtype=np.float32)
    edge[0, 0, :, 0] = 9.0
    shifted = random_shift({"image": edge}, np.random.default_rng(1), max_shift=2)["image"]
    assert set(np.unique(shifted).tolist()) <= {0.0, 9.0}
    assert random_shift({"image": edge}, rng, max_shift=0)["image"].tolist() == edge.tolist()


def test_train_val_split():
    data = toy_arrays(30)
    train, val = train_val_split(data, 8, seed=0)
    assert len(val["label"]) == 8 and len(train["label"]) == 22
    both = np.concatenate([train["label"], val["label"]])
    assert sorted(both.tolist()) == list(range(30))
    np.testing.assert_array_equal(train["image"][:, 0, 0, 0], train["label"] * 4)
    again_train, again_val = train_val_split(data, 8, seed=0)
    np.testing.assert_array_equal(again_val["label"], val["label"])
    assert not np.array_equal(train_val_split(data, 8, seed=1)[1]["label"], val["label"])
    full, empty = train_val_split(data, 0, seed=0)
    assert len(full["label"]) == 30 and set(empty) == set(data) and len(empty["image"]) == 0
    assert empty["image"].shape[1:] == (2, 2, 1)
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(data, 30, seed=0)


# ---------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", ["synthetic", "digits"])
def test_load_image_dataset_embedded(name):
    ds = load_image_dataset(name, limit_train=100, limit_test=50)
    assert isinstance(ds, ImageDataset) and ds.name == name and ds.num_classes == 10
    assert ds.train["image"].shape == (100, 28, 28, 1) and ds.train["image"].dtype == np.float32
    assert ds.test["label"].shape == (50,) and ds.test["label"].dtype == np.int32
    assert ds.image_shape == (28, 28, 1)
    assert ds.source
    assert ds.train["image"].min() == pytest.approx(-0.1307 / 0.3081, rel=1e-5)


def test_load_image_dataset_mnist_and_unknown(fake_dir):
    root, arrays = fake_dir
    ds = load_image_dataset("MNIST", root, limit_test=4)
    assert ds.source == str(root / "mnist")
    assert ds.train["image"].shape == (20, 28, 28, 1) and ds.test["label"].shape == (4,)
    np.testing.assert_allclose(ds.train["image"], to_float_nhwc(arrays["train"][0]))
    with pytest.raises(DataError) as exc:
        load_image_dataset("cifar100")
    assert all(name in str(exc.value) for name in DATASETS)


def test_describe_sources(fake_dir, tmp_path):
    root, _ = fake_dir
    rows = {row["name"]: row for row in describe_sources(root)}
    assert list(rows) == [*DATASETS, "diabetes", "breast_cancer", "tfds:<name>"]
    assert rows["mnist"] == {"name": "mnist", "available": True, "where": str(root / "mnist")}
    assert rows["synthetic"]["available"]
    missing = {row["name"]: row for row in describe_sources(tmp_path / "nowhere")}
    assert not missing["mnist"]["available"] and "nowhere" in missing["mnist"]["where"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rows = {row["name"]: row for row in describe_sources(empty)}
    assert not rows["mnist"]["available"] and "--download" in rows["mnist"]["where"]
