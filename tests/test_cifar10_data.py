"""CIFAR-10 reader and the "shapes" stand-in, tested on tiny fake archives like the real one."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import struct
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shared_data import DataError
from shared_data.cifar10 import (
    CIFAR10_ARCHIVES,
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10_TARBALL,
    TRAIN_BATCHES,
    cifar10_path,
    load_cifar10,
    load_cifar10_with_source,
)
from shared_data.datasets import DATASETS, load_image_dataset
from shared_data.shapes import SHAPES_CLASSES, load_shapes
from shared_data.sources import ENV_VAR

REAL_ROOT = Path("/work/shared/data")


# --- Python-2 style protocol-2 pickles, as in the real archive ---------------------------------
# Python 3's own protocol-2 pickler writes bytes via _codecs.encode, which the reader (rightly)
# refuses; the real files hold Python-2 str (SHORT_BINSTRING/BINSTRING), so write those by hand.


def _py2_str(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<I", len(data)) + data


def _py2_obj(obj) -> bytes:
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_obj(k) + _py2_obj(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_obj(x) for x in obj) + b"e"
    if isinstance(obj, str):
        return _py2_str(obj.encode("latin1"))
    if isinstance(obj, bytes):
        return _py2_str(obj)
    if isinstance(obj, (int, np.integer)):
        return b"J" + struct.pack("<i", int(obj))
    if isinstance(obj, np.ndarray):
        endian, name = obj.dtype.str[0], obj.dtype.str[1:]
        dtype = (
            b"cnumpy\ndtype\n"
            + b"X"
            + struct.pack("<I", len(name))
            + name.encode()
            + b"K\x00K\x01\x87R"  # dtype(name, 0, 1)
            + b"(K\x03X\x01\x00\x00\x00"
            + endian.encode()
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # __setstate__
        )
        shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in obj.shape) + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n"
            b"cnumpy\nndarray\nK\x00\x85"
            + _py2_str(b"b")
            + b"\x87R"  # _reconstruct(ndarray, (0,), "b")
            + b"(K\x01"
            + shape
            + dtype
            + b"\x89"
            + _py2_str(obj.tobytes())
            + b"tb"  # __setstate__((1, shape, dtype, False, raw))
        )
    raise TypeError(type(obj))


def py2_pickle(obj) -> bytes:
    """Encode obj as a protocol-2 pickle the way Python 2 wrote the CIFAR-10 batches."""
    return b"\x80\x02" + _py2_obj(obj) + b"."


def test_py2_pickle_matches_numpy():
    import pickle

    array = np.arange(24, dtype=np.uint8).reshape(2, 12)
    loaded = pickle.loads(py2_pickle({"data": array, "labels": [1, 2]}), encoding="bytes")
    np.testing.assert_array_equal(loaded[b"data"], array)
    assert loaded[b"labels"] == [1, 2]


# --- fake archives --------------------------------------------------------------------------------


def fake_batches(n: int = 4, seed: int = 0) -> dict[str, dict]:
    """Return the seven members as dicts: five train batches and the test batch of n images."""
    rng = np.random.default_rng(seed)
    batches = {}
    for i, name in enumerate([*TRAIN_BATCHES, "test_batch"]):
        batches[name] = {
            "batch_label": f"batch {i}",
            "labels": [int(x) for x in rng.integers(0, 10, size=n)],
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}_{j}.png" for j in range(n)],
        }
    batches["batches.meta"] = {
        "num_cases_per_batch": n,
        "label_names": list(CIFAR10_CLASSES),
        "num_vis": 3072,
    }
    return batches


def member_bytes(batches: dict) -> dict[str, bytes]:
    return {
        name: value if isinstance(value, bytes) else py2_pickle(value)
        for name, value in batches.items()
    }


def write_tarball(path: Path, batches: dict, extra=None) -> Path:
    """Write batches (dicts or raw bytes) as cifar-10-python.tar.gz; extra(tar) adds members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(CIFAR10_FOLDER)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, payload in member_bytes(batches).items():
            info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if extra is not None:
            extra(tar)
    return path


def write_folder(folder: Path, batches: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in member_bytes(batches).items():
        (folder / name).write_bytes(payload)
    return folder


def expected_splits(batches: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    def nhwc(names):
        data = np.concatenate([batches[n]["data"] for n in names])
        labels = np.concatenate([batches[n]["labels"] for n in names]).astype(np.int64)
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

    return {"train": nhwc(TRAIN_BATCHES), "test": nhwc(["test_batch"])}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Point the cache at tmp and hide any real data dir."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("ROADMAP_CACHE_DIR", str(tmp_path / "cache"))


def assert_splits_equal(a, b):
    for split in ("train", "test"):
        np.testing.assert_array_equal(a[split][0], b[split][0])
        np.testing.assert_array_equal(a[split][1], b[split][1])


# --- reading ------------------------------------------------------------------------------------


def test_tarball_and_folder_read_identically(tmp_path):
    batches = fake_batches()
    write_tarball(tmp_path / "a" / "cifar10" / CIFAR10_TARBALL, batches)
    write_folder(tmp_path / "b" / "cifar10" / CIFAR10_FOLDER, batches)
    from_tar, tar_source = load_cifar10_with_source(tmp_path / "a")
    from_dir, dir_source = load_cifar10_with_source(tmp_path / "b")
    assert_splits_equal(from_tar, from_dir)
    assert_splits_equal(from_tar, expected_splits(batches))
    images, labels = from_tar["train"]
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert labels.dtype == np.int64 and from_tar["test"][0].shape == (4, 32, 32, 3)
    assert CIFAR10_TARBALL in tar_source and "unrecognised archive" in tar_source
    assert CIFAR10_FOLDER in dir_source


def test_nhwc_pixel_order(tmp_path):
    batches = fake_batches(n=2)
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0], image[1], image[2] = 10, 20, 30  # R, G, B planes, CHW row-major as in the files
    image[0, 1, 2] = 200  # red at row 1, column 2
    image[2, 31, 0] = 99  # blue at the bottom-left corner
    batches["data_batch_1"]["data"][0] = image.reshape(-1)
    splits = load_cifar10(write_folder(tmp_path / CIFAR10_FOLDER, batches).parent)
    got = splits["train"][0][0]
    assert got.shape == (32, 32, 3)
    assert tuple(got[0, 0]) == (10, 20, 30)
    assert tuple(got[1, 2]) == (200, 20, 30)
    assert tuple(got[31, 0]) == (10, 20, 99)


def test_lookup_prefers_extracted_folder_and_reads_root(tmp_path, monkeypatch):
    batches = fake_batches()
    root = tmp_path / "root"
    tarball = write_tarball(root / "cifar10" / CIFAR10_TARBALL, batches)
    assert cifar10_path(root) == tarball
    folder = write_folder(root / "cifar10" / CIFAR10_FOLDER, batches)
    assert cifar10_path(root) == folder
    # The root itself, $ROADMAP_DATA_DIR, and a --data-dir naming the batches folder all work.
    plain = tmp_path / "plain"
    write_tarball(plain / CIFAR10_TARBALL, batches)
    assert cifar10_path(plain) == plain / CIFAR10_TARBALL
    monkeypatch.setenv(ENV_VAR, str(plain))
    assert cifar10_path() == plain / CIFAR10_TARBALL
    assert cifar10_path(folder) == folder


def test_not_found_explains_options(tmp_path):
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path)
    message = str(exc.value)
    assert "CIFAR-10 not found" in message and "--download" in message
    assert str(tmp_path / "cifar10") in message


# --- bad inputs: each a DataError naming the file -------------------------------------------------


def test_truncated_gzip(tmp_path):
    tarball = write_tarball(tmp_path / CIFAR10_TARBALL, fake_batches())
    raw = tarball.read_bytes()
    tarball.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as exc:
        load_cifar10(tmp_path)
    assert str(tarball) in str(exc.value) and "--download" in str(exc.value)


def test_not_gzip_at_all(tmp_path):
    tarball = tmp_path / CIFAR10_TARBALL
    tarball.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(DataError, match="truncated or corrupt") as exc:
        load_cifar10(tmp_path)
    assert str(tarball) in str(exc.value)


def test_missing_member(tmp_path):
    batches = fake_batches()
    del batches["test_batch"]
    tarball = write_tarball(tmp_path / CIFAR10_TARBALL, batches)
    with pytest.raises(DataError, match="test_batch") as exc:
        load_cifar10(tmp_path)
    assert str(tarball) in str(exc.value) and "missing" in str(exc.value)


def test_missing_file_in_folder(tmp_path):
    batches = fake_batches()
    del batches["data_batch_3"]
    folder = write_folder(tmp_path / CIFAR10_FOLDER, batches)
    with pytest.raises(DataError, match="file not found") as exc:
        load_cifar10(tmp_path)
    assert str(folder / "data_batch_3") in str(exc.value)


@pytest.mark.parametrize(
    ("member", "change", "pattern"),
    [
        ("data_batch_2", lambda b: b.update(data=b["data"][:, :3000]), r"shape \[N, 3072\]"),
        ("data_batch_4", lambda b: b.update(data=b["data"].astype(np.int16)), "uint8"),
        ("test_batch", lambda b: b["labels"].__setitem__(1, 10), "label 10 is outside 0..9"),
        ("data_batch_1", lambda b: b.update(labels=b["labels"][:-1]), "3 labels but 4 images"),
        ("data_batch_5", lambda b: b.pop("labels"), "key 'labels' missing"),
    ],
)
def test_bad_batch_contents(tmp_path, member, change, pattern):
    batches = fake_batches()
    change(batches[member])
    tarball = write_tarball(tmp_path / CIFAR10_TARBALL, batches)
    with pytest.raises(DataError, match=pattern) as exc:
        load_cifar10(tmp_path)
    assert f"{tarball}/{member}" in str(exc.value)


def test_unequal_train_batches(tmp_path):
    batches = fake_batches()
    batches["data_batch_3"]["data"] = batches["data_batch_3"]["data"][:2]
    batches["data_batch_3"]["labels"] = batches["data_batch_3"]["labels"][:2]
    write_tarball(tmp_path / CIFAR10_TARBALL, batches)
    with pytest.raises(DataError, match="same number of images"):
        load_cifar10(tmp_path)


def test_garbage_pickle(tmp_path):
    batches = fake_batches()
    batches["data_batch_2"] = b"\x80\x02not a pickle at all"
    folder = write_folder(tmp_path / CIFAR10_FOLDER, batches)
    with pytest.raises(DataError, match="not a readable pickle") as exc:
        load_cifar10(tmp_path)
    assert str(folder / "data_batch_2") in str(exc.value)


def test_other_dataset_label_names(tmp_path):
    batches = fake_batches()
    batches["batches.meta"]["label_names"] = [f"class{i}" for i in range(10)]
    write_tarball(tmp_path / CIFAR10_TARBALL, batches)
    with pytest.raises(DataError, match="batches.meta: label_names"):
        load_cifar10(tmp_path)


def test_forbidden_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    # os.system("touch <marker>"): a classic pickle payload.
    evil = b"\x80\x02cos\nsystem\n" + py2_pickle(f"touch {marker}")[2:-1] + b"\x85R."
    batches = fake_batches()
    batches["data_batch_1"] = evil
    tarball = write_tarball(tmp_path / CIFAR10_TARBALL, batches)
    with pytest.raises(DataError, match=r"references os\.system") as exc:
        load_cifar10(tmp_path)
    assert f"{tarball}/data_batch_1" in str(exc.value)
    assert not marker.exists()


def test_symlink_member_refused_and_extras_never_extracted(tmp_path, monkeypatch):
    batches = fake_batches()

    def evil(tar):
        for name, payload in [
            ("../escaped.txt", b"x"),
            ("/tmp/abs.txt", b"y"),
            ("readme.html", b""),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    data = tmp_path / "data"
    splits = load_cifar10(write_tarball(data / CIFAR10_TARBALL, batches, extra=evil).parent)
    assert_splits_equal(splits, expected_splits(batches))
    assert list(work.iterdir()) == [] and sorted(p.name for p in data.iterdir()) == [
        CIFAR10_TARBALL
    ]
    assert not (tmp_path / "escaped.txt").exists()

    # A member with a wanted name that is a symlink is refused, not followed.
    del batches["data_batch_1"]

    def link(tar):
        info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/data_batch_1")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)

    tarball = write_tarball(tmp_path / "linked" / CIFAR10_TARBALL, batches, extra=link)
    with pytest.raises(DataError, match="not a regular file") as exc:
        load_cifar10(tarball.parent)
    assert str(tarball) in str(exc.value)


# --- download -----------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass  # keep pytest output clean


@pytest.fixture
def served(tmp_path):
    """Serve a fake cifar-10-python.tar.gz; yield (base URL, its batches, its md5)."""
    root = tmp_path / "www"
    batches = fake_batches(seed=3)
    tarball = write_tarball(root / CIFAR10_TARBALL, batches)
    md5 = hashlib.md5(tarball.read_bytes(), usedforsecurity=False).hexdigest()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", batches, md5
    server.shutdown()
    server.server_close()


def test_download_checks_md5_and_caches(served, tmp_path, monkeypatch):
    url, batches, md5 = served
    monkeypatch.setitem(CIFAR10_ARCHIVES["official"], "md5", md5)
    splits, source = load_cifar10_with_source(download=True, mirrors=[url], progress=False)
    assert_splits_equal(splits, expected_splits(batches))
    cached = tmp_path / "cache" / "cifar10" / CIFAR10_TARBALL
    assert cached.is_file() and str(cached) in source and "official" in source
    assert cifar10_path() == cached  # found locally next time, no download needed


def test_download_md5_mismatch_deletes_file(served, tmp_path):
    url, _, md5 = served
    with pytest.raises(DataError) as exc:
        load_cifar10(download=True, mirrors=[url], progress=False)
    message = str(exc.value)
    assert CIFAR10_ARCHIVES["official"]["md5"] in message and md5 in message
    folder = tmp_path / "cache" / "cifar10"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_repairs_damaged_cache(served, tmp_path, monkeypatch):
    url, batches, md5 = served
    monkeypatch.setitem(CIFAR10_ARCHIVES["official"], "md5", md5)
    cached = tmp_path / "cache" / "cifar10" / CIFAR10_TARBALL
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x1f\x8b damaged")
    with pytest.raises(DataError):
        load_cifar10()  # without --download the damage is reported
    splits = load_cifar10(download=True, mirrors=[url], progress=False)
    assert_splits_equal(splits, expected_splits(batches))


# --- datasets registry ----------------------------------------------------------------------------


def test_load_image_dataset_cifar10_and_shapes(tmp_path):
    batches = fake_batches()
    write_tarball(tmp_path / "cifar10" / CIFAR10_TARBALL, batches)
    data = load_image_dataset("cifar10", tmp_path, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert data.image_shape == (32, 32, 3) and data.num_classes == 10
    assert data.train["image"].dtype == np.float32 and data.train["label"].dtype == np.int32
    raw = expected_splits(batches)["train"][0]
    want = (raw / np.float32(255.0) - np.asarray(CIFAR10_MEAN, np.float32)) / np.asarray(
        CIFAR10_STD, np.float32
    )
    np.testing.assert_allclose(data.train["image"], want, rtol=1e-5, atol=1e-5)
    shapes = load_image_dataset("shapes", limit_train=50, limit_test=20, seed=1)
    assert shapes.train["image"].shape == (50, 32, 32, 3) and shapes.test["label"].shape == (20,)
    assert "shapes" in shapes.source
    assert {"cifar10", "shapes"} <= set(DATASETS)
    with pytest.raises(DataError, match="cifar10, shapes"):
        load_image_dataset("cifar100")


# --- shapes ---------------------------------------------------------------------------------------


def test_shapes_form_determinism_and_balance():
    a = load_shapes(seed=0, n_train=200, n_test=100)
    b = load_shapes(seed=0, n_train=200, n_test=100)
    c = load_shapes(seed=1, n_train=200, n_test=100)
    assert_splits_equal(a, b)
    assert not np.array_equal(a["train"][0], c["train"][0])
    assert not np.array_equal(a["train"][0][:100], a["test"][0])
    for split, n in (("train", 200), ("test", 100)):
        images, labels = a[split]
        assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
    assert len(SHAPES_CLASSES) == 10


def test_shapes_colour_does_not_give_the_class():
    images, labels = load_shapes(seed=0, n_train=2000, n_test=0)["train"]
    # Mean colour per class stays close to the overall mean: colour is drawn independently.
    overall = images.reshape(-1, 3).mean(0)
    for cls in range(10):
        per_class = images[labels == cls].reshape(-1, 3).mean(0)
        assert np.abs(per_class - overall).max() < 20


def test_shapes_default_size_is_fast():
    start = time.perf_counter()
    splits = load_shapes()
    assert time.perf_counter() - start < 5  # ~1.1 s on the dev box; generous for loaded CI
    assert len(splits["train"][0]) == 5000 and len(splits["test"][0]) == 1000


# --- the real data ------------------------------------------------------------------------------


def _real_root() -> Path | None:
    for root in (os.environ.get(ENV_VAR), REAL_ROOT):
        if root and cifar10_path(Path(root)) is not None:
            return Path(root)
    return None


def test_real_cifar10(monkeypatch):
    """The shared copy: 50,000/10,000 images, balanced classes, known channel means (~2 s)."""
    root = _real_root()
    if root is None:
        pytest.skip(f"no CIFAR-10 under ${ENV_VAR} or {REAL_ROOT}")
    splits, source = load_cifar10_with_source(root)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    assert train_x.shape == (50_000, 32, 32, 3) and test_x.shape == (10_000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(train_y, minlength=10), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(test_y, minlength=10), [1000] * 10)
    mean = train_x.reshape(-1, 3).mean(0) / 255.0
    np.testing.assert_allclose(mean, (0.4913, 0.4821, 0.4465), atol=2e-3)
    assert "JPEG rebuild" in source or "official" in source or "extracted" in source
