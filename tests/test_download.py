"""Download path tested offline against a local HTTP server serving fake MNIST files."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from shared_data import DataError
from shared_data import mnist as mnist_mod
from shared_data.download import download_any, download_file
from shared_data.mnist import MNIST_FILES, load_mnist
from shared_data.sources import ENV_VAR


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass  # keep pytest output clean


@pytest.fixture
def served(tmp_path):
    """Serve a folder of fake MNIST .gz files; yield (base URL, arrays, sha table, stop)."""
    root = tmp_path / "www"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays, sha = {}, {}
    for split, n in (("train", 20), ("test", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for name, array in zip(MNIST_FILES[split], (images, labels), strict=True):
            data = idx_bytes(array)
            (root / name).write_bytes(gzip.compress(data))
            sha[name] = hashlib.sha256(data).hexdigest()
    (root / "blob.bin").write_bytes(b"hello world" * 1000)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = []

    def stop():
        if not stopped:
            server.shutdown()
            server.server_close()
            stopped.append(True)

    yield f"http://127.0.0.1:{server.server_address[1]}/", arrays, sha, stop
    stop()


@pytest.fixture
def dead_url():
    """A URL on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Point the cache at tmp and hide any real data dir."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("ROADMAP_CACHE_DIR", str(tmp_path / "cache"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_caches_and_reloads_offline(served, dead_url, tmp_path, monkeypatch):
    url, arrays, sha, stop = served
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", sha)
    out = load_mnist(download=True, mirrors=[dead_url, url])
    cached = tmp_path / "cache" / "mnist"
    assert leftovers(cached) == sorted(sha)
    for split in ("train", "test"):
        np.testing.assert_array_equal(out[split][0], arrays[split][0])
        np.testing.assert_array_equal(out[split][1], arrays[split][1])
    stop()
    again = load_mnist()  # no server, no download flag: served from the cache
    np.testing.assert_array_equal(again["train"][0], arrays["train"][0])
    # Without --download a damaged cache entry is reported, not silently re-fetched.
    (cached / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist()


def test_download_repairs_damaged_cache(served, tmp_path, monkeypatch):
    url, arrays, sha, _ = served
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", sha)
    load_mnist(download=True, mirrors=[url])
    damaged = tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"\x1f\x8b garbage")
    out = load_mnist(download=True, mirrors=[url])
    np.testing.assert_array_equal(out["test"][1], arrays["test"][1])


def test_checksum_mismatch_leaves_no_partial_file(served, dead_url, tmp_path, monkeypatch):
    url, _, sha, _ = served
    bad = dict(sha, **{"train-labels-idx1-ubyte.gz": "0" * 64})
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", bad)
    with pytest.raises(DataError) as exc:
        load_mnist(download=True, mirrors=[dead_url, url])
    message = str(exc.value)
    assert "train-labels-idx1-ubyte.gz" in message and "0" * 64 in message
    assert dead_url in message and url in message  # every mirror's failure is listed
    cached = tmp_path / "cache" / "mnist"
    assert "train-labels-idx1-ubyte.gz" not in leftovers(cached)
    assert not [name for name in leftovers(cached) if name.endswith(".part")]


def test_download_file_sha256(served, tmp_path):
    url, *_ = served
    data = b"hello world" * 1000
    dest = tmp_path / "out" / "blob.bin"
    good = hashlib.sha256(data).hexdigest()
    assert download_file(url + "blob.bin", dest, good, progress=False) == dest
    assert dest.read_bytes() == data
    other = tmp_path / "out" / "other.bin"
    with pytest.raises(DataError) as exc:
        download_file(url + "blob.bin", other, "f" * 64, progress=True)
    assert url + "blob.bin" in str(exc.value) and good in str(exc.value)
    assert "f" * 64 in str(exc.value)
    assert leftovers(tmp_path / "out") == ["blob.bin"]


def test_download_any_lists_every_failure(served, dead_url, tmp_path):
    url, *_ = served
    dest = tmp_path / "x.gz"
    with pytest.raises(DataError) as exc:
        download_any([dead_url + "x.gz", url + "missing.gz"], dest, progress=False)
    message = str(exc.value)
    assert dead_url + "x.gz" in message and url + "missing.gz" in message
    assert "404" in message
    assert not dest.exists() and not list(tmp_path.glob(".x.gz.*"))
    assert download_any([url + "missing.gz", url + "blob.bin"], dest, progress=False) == dest
