"""Versions of Python and the installed packages, recorded by every result file alike."""

from __future__ import annotations

import importlib.metadata
import os
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


def pin_fp32() -> None:
    """Fair-comparison rule: fp32 matmuls and convolutions on both sides (no TF32, no bf16)."""
    from jaxpath.common.precision import pin_fp32 as pin_jax
    from torchpath.common.precision import pin_fp32 as pin_torch

    pin_jax()
    pin_torch()


def pin_cpu_fp32() -> None:
    """Run both frameworks on the CPU in full fp32 (DESIGN: fair comparison rules)."""
    # Before JAX initialises a backend: a jax[cuda] install would otherwise take the GPU
    # while torch stays on the CPU.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    pin_fp32()


def run_versions() -> dict[str, str]:
    """Versions, machine and runtime (allocator, XLA flags): what every result file records."""
    from comparisons.runtime import runtime_record

    out = versions()
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    # Flat strings, so the report's versions table shows what was in force beside the versions:
    # the allocator and one XLA flag move JAX's CPU training speed 2-4x (docs/BENCHMARKS.md).
    out.update(runtime_record())
    return out
