"""Atomic, checksummed HTTP downloads with mirror fallback (standard library only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import DataError

_CHUNK = 1 << 16


def _progress_bar(total: int | None, desc: str):
    # tqdm is a project dependency but not of this package; a missing tqdm only loses the bar.
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def download_file(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download url to dest atomically, verifying sha256 and the optional check(tmp_path)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temp file lives beside dest so os.replace is a same-filesystem atomic rename.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    bar = _progress_bar(total, dest.name) if progress else None
                    try:
                        while chunk := resp.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                    finally:
                        if bar is not None:
                            bar.close()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                # URLError/HTTPError, timeouts, resets and malformed URLs all mean "try elsewhere".
                raise DataError(f"could not download {url}: {exc}") from exc
        found = digest.hexdigest()
        if sha256 is not None and found != sha256.lower():
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {found}; "
                "the mirror served a different or damaged file, try again or use another mirror"
            )
        if check is not None:
            try:
                check(tmp)
            except DataError as exc:
                raise DataError(f"downloaded {url} failed its check: {exc}") from exc
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dest


def download_any(
    urls: list[str],
    dest: Path,
    sha256: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Try each mirror URL in order; raise DataError listing every failure if none works."""
    if not urls:
        raise DataError(f"no download URLs given for {dest}")
    failures = []
    for url in urls:
        try:
            return download_file(url, dest, sha256, progress=progress, timeout=timeout, check=check)
        except DataError as exc:
            failures.append(f"  {url}: {exc}")
    raise DataError(
        f"could not download {Path(dest).name} from any mirror:\n"
        + "\n".join(failures)
        + f"\ncheck your network, or fetch the file yourself and put it at {dest}"
    )
