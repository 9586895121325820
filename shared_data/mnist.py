"""MNIST in its standard IDX format: reader, checksums, local lookup and download."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from .download import download_any
from .errors import DataError
from .sources import ENV_VAR, cache_dir, candidate_dirs, find_dataset_dir, resolve_file

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# sha256 of the *decompressed* IDX bytes, so re-gzipped copies (other mtime or level) still pass.
# Computed from ../shared/data/mnist, whose decompressed MD5s equal the canonical ones
# (6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    "train-labels-idx1-ubyte.gz": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}

# The mirrors torchvision uses; yann.lecun.com now often refuses plain downloads.
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

MNIST_HINT = (
    "re-download it with `roadmap run mnist --download` or point --data-dir / "
    f"{ENV_VAR} at a folder holding the four MNIST IDX files"
)

# IDX type codes -> big-endian numpy dtypes (the format is big-endian throughout).
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_payload(path: Path, hint: str) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; {hint}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc}); {hint}") from exc
    # Sniff the content, not the name: people gunzip files and keep the .gz name, or vice versa.
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip data ({exc}); {hint}") from exc


def read_idx(
    path: Path, expected_sha256: str | None = None, *, hint: str = MNIST_HINT
) -> np.ndarray:
    """Read an IDX file (gzipped or raw), checking header, size and optional decompressed sha256."""
    path = Path(path)
    data = _read_payload(path, hint)
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, too short for an IDX header; {hint}")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {data[:4].hex()}; expected 00 00, a type code "
            f"in {{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} and a dimension count); {hint}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header ({ndim} dims declared); {hint}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found_bytes = len(data) - header_len
    if found_bytes != expected_bytes:
        what = "truncated" if found_bytes < expected_bytes else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: dims {'x'.join(map(str, dims))} need {expected_bytes} data bytes, "
            f"found {found_bytes}; {hint}"
        )
    if expected_sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != expected_sha256.lower():
            raise DataError(
                f"{path}: checksum mismatch: expected sha256 {expected_sha256.lower()} of the "
                f"decompressed content, found {found}; the file is damaged or not the expected "
                f"file; {hint}"
            )
    # frombuffer avoids a Python-level parse; astype gives a writable, native-endian array.
    array = np.frombuffer(data, dtype=dtype, offset=header_len)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _required_files() -> list[str]:
    return [name for pair in MNIST_FILES.values() for name in pair]


def mnist_dir(data_dir: str | Path | None = None) -> Path | None:
    """Return the folder load_mnist would read, or None if MNIST is not on disk."""
    return find_dataset_dir("mnist", _required_files(), data_dir)


def _not_found_message(data_dir: str | Path | None) -> str:
    looked = "\n".join(f"  {d}" for d in candidate_dirs("mnist", data_dir))
    files = ", ".join(_required_files())
    return (
        f"MNIST not found: no folder holds all of {files} (gzipped or not).\n"
        f"Looked in:\n{looked}\n"
        "Do one of:\n"
        "  * pass --data-dir PATH (a folder holding the four files, or its parent with mnist/);\n"
        f"  * set {ENV_VAR}=PATH the same way;\n"
        f"  * add --download to fetch them into {cache_dir() / 'mnist'}."
    )


def _download_mnist(folder: Path, mirrors: list[str], *, progress: bool) -> None:
    for name in _required_files():
        expected = MNIST_SHA256.get(name)
        existing = resolve_file(folder, name)
        if existing is not None:
            try:
                read_idx(existing, expected)
                continue
            except DataError:
                existing.unlink()  # damaged cache entry: fetch a fresh copy below
        download_any(
            [mirror.rstrip("/") + "/" + name for mirror in mirrors],
            folder / name,
            progress=progress,
            # Verify the decompressed content before the atomic rename: a bad mirror leaves
            # nothing behind and the next mirror is tried.
            check=lambda tmp, expected=expected: read_idx(tmp, expected),
        )


def _read_split(folder: Path, split: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    image_name, label_name = MNIST_FILES[split]
    image_path = resolve_file(folder, image_name) or folder / image_name
    label_path = resolve_file(folder, label_name) or folder / label_name
    images = read_idx(image_path, MNIST_SHA256.get(image_name) if verify else None)
    labels = read_idx(label_path, MNIST_SHA256.get(label_name) if verify else None)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{image_path}: expected uint8 images of shape [N, 28, 28], found {images.dtype} "
            f"{list(images.shape)}; {MNIST_HINT}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{label_path}: expected uint8 labels of shape [N], found {labels.dtype} "
            f"{list(labels.shape)}; {MNIST_HINT}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{label_path} holds {len(labels)} labels but {image_path} holds {len(images)} "
            f"images; the two files come from different sets; {MNIST_HINT}"
        )
    if len(labels) and labels.max() > 9:
        raise DataError(f"{label_path}: label {int(labels.max())} is outside 0..9; {MNIST_HINT}")
    return images, labels


def load_mnist_with_source(
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    mirrors: list[str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Path]:
    """Like load_mnist, but also return the folder the files were read from."""
    folder = mnist_dir(data_dir)
    cache_folder = cache_dir() / "mnist"
    if folder is None:
        if not download:
            raise DataError(_not_found_message(data_dir))
        folder = cache_folder
        _download_mnist(folder, list(mirrors or MNIST_MIRRORS), progress=progress)
    try:
        return {split: _read_split(folder, split, verify) for split in MNIST_FILES}, folder
    except DataError:
        # With --download, a damaged cache is repaired rather than reported.
        if not (download and folder == cache_folder):
            raise
    _download_mnist(folder, list(mirrors or MNIST_MIRRORS), progress=progress)
    return {split: _read_split(folder, split, verify) for split in MNIST_FILES}, folder


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    mirrors: list[str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load MNIST as {"train"|"test": (uint8 [N,28,28] images, uint8 [N] labels)}."""
    splits, _ = load_mnist_with_source(data_dir, download=download, verify=verify, mirrors=mirrors)
    return splits
