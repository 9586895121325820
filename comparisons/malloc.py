"""Run `roadmap` under tcmalloc or jemalloc instead of glibc's malloc (`--malloc`).

Why: XLA:CPU allocates each execution's temporary buffers as one block. Above glibc's
mmap threshold (at most 32 MiB) that block is mmap-ed and unmapped on every call, so each
training step pays for tens of thousands of fresh page faults (measured in
docs/BENCHMARKS.md: a third of a JAX MNIST step was kernel time). Caching allocators keep
the memory. PyTorch's own CPU launcher offers the same switch
(`python -m torch.backends.xeon.run_cpu --enable-tcmalloc`). An allocator can only be
chosen before the process starts, so the CLI re-executes itself with LD_PRELOAD set.
"""

from __future__ import annotations

import glob
import os
import sys

LIBRARIES = {"tcmalloc": "libtcmalloc_minimal.so*", "jemalloc": "libjemalloc.so*"}
SEARCH_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)
DEBIAN_PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}


def find_library(name: str) -> str | None:
    """Path of the shared library of allocator `name`, or None."""
    for folder in SEARCH_DIRS:
        hits = sorted(glob.glob(os.path.join(folder, LIBRARIES[name])))
        if hits:
            return hits[0]
    return None


def active_allocator() -> str:
    """ "tcmalloc", "jemalloc" or "system": what this process runs with."""
    preload = os.environ.get("LD_PRELOAD", "")
    return next((n for n in LIBRARIES if n in preload), "system")


def reexec_with(name: str, argv: list[str]) -> None:
    """Replace this process by `roadmap argv` under allocator `name` (no return on success)."""
    if name == "system" or active_allocator() == name:
        return
    library = find_library(name)
    if library is None:
        raise SystemExit(
            f"roadmap: --malloc {name}: no {LIBRARIES[name]} in "
            f"{', '.join(SEARCH_DIRS)}; install it (Debian: apt-get install "
            f"{DEBIAN_PACKAGES[name]}) or use --malloc system"
        )
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD")) if p)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "comparisons.cli", *argv], env)
