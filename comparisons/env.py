"""Versions of Python and the installed packages, recorded by every result file alike."""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("numpy", "jax", "jaxlib", "flax", "optax", "torch", "torchvision")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """{"python": ..., <package>: <installed version or "not installed">}."""
    # Distribution metadata, not module.__version__: no import, and one spelling everywhere
    # (torch's module says "2.14.1+cu130", its metadata "2.14.1"), so files compare cleanly.
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
