"""Where datasets live on disk: explicit folder, $ROADMAP_DATA_DIR, then the download cache."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

ENV_VAR = "ROADMAP_DATA_DIR"
CACHE_ENV_VAR = "ROADMAP_CACHE_DIR"


def cache_dir() -> Path:
    """Return the cache: $ROADMAP_CACHE_DIR, $XDG_CACHE_HOME/roadmap or ~/.cache/roadmap."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "roadmap"
    return Path.home() / ".cache" / "roadmap"


def file_variants(filename: str) -> list[str]:
    """Return the names a required file may have on disk: as given, without or with `.gz`."""
    if filename.endswith(".gz"):
        return [filename, filename[: -len(".gz")]]
    return [filename, filename + ".gz"]


def resolve_file(folder: Path, filename: str) -> Path | None:
    """Return the existing file in folder matching filename (or its .gz variant), else None."""
    for candidate in file_variants(filename):
        path = Path(folder) / candidate
        if path.is_file():
            return path
    return None


def search_roots(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """Return (label, root) pairs in lookup order; DataError if an explicit data_dir is missing."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        explicit = Path(data_dir).expanduser()
        if not explicit.is_dir():
            raise DataError(
                f"data directory {explicit} does not exist (or is not a folder); "
                "fix the --data-dir path, or leave it out to use "
                f"${ENV_VAR} or the download cache {cache_dir()}"
            )
        # An explicit folder binds: falling back elsewhere would hide a wrong path.
        return [("--data-dir", explicit)]
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append((f"${ENV_VAR}", Path(env).expanduser()))
    roots.append(("cache", cache_dir()))
    return roots


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Return every folder find_dataset_dir inspects, in order (for error messages)."""
    dirs: list[Path] = []
    for _, root in search_roots(data_dir):
        dirs.extend([root / name, root])
    return dirs


def find_dataset_dir(
    name: str, required: list[str], data_dir: str | Path | None = None
) -> Path | None:
    """Return the first folder holding all required files of dataset name, or None."""
    for folder in candidate_dirs(name, data_dir):
        if folder.is_dir() and all(resolve_file(folder, f) is not None for f in required):
            return folder
    return None
