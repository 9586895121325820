"""The process settings JAX needs on CPU to keep up with PyTorch, and a warning without them.

Two kinds of settings, measured in docs/BENCHMARKS.md (MNIST CNN train step, batch 128):

* **glibc's malloc tunables.** XLA:CPU allocates each execution's temporaries as one block
  (about 100 MB here). glibc serves such a block with a fresh mmap and unmaps it after the
  call, so every step faults its pages in again: ~340 MB of page faults and as much kernel
  time as user time. `GLIBC_TUNABLES` below keeps the heap instead (all three are needed).
  glibc reads them once, when the process starts: exporting them from Python is too late.
* **XLA:CPU flags.** jaxlib 0.10 hands each lone convolution to YNNPACK, which ran on one
  core; `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` keeps convolutions
  on XLA's multi-threaded path. `--xla_backend_optimization_level=2` compiles the fused
  loops with LLVM's -O2, which made faster code here than the default -O3. A flag is only
  used where the installed jaxlib knows it (see `xla_flag_supported`); XLA aborts on flags
  it does not know.

The `roadmap` command sets both before its process starts (comparisons/runtime.py). Code
that imports jaxpath directly gets one `SlowRuntimeWarning` from `warn_if_slow()` when JAX
runs on the CPU without them. Silence it with ROADMAP_RUNTIME_WARNING=0 or
`warnings.filterwarnings("ignore", category=SlowRuntimeWarning)`.

Nothing here imports jax at module level: the CLI reads these names before JAX may start.

No torchpath twin: torch needs no such settings (its own measurements are in BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import mmap
import os
import subprocess
import sys
import warnings
from pathlib import Path

GLIBC_TUNABLES = {
    "glibc.malloc.mmap_max": "0",  # never serve a block with its own mmap
    "glibc.malloc.trim_threshold": "4000000000",  # never give the heap's top back
    "glibc.malloc.arena_max": "1",  # XLA's worker threads share one heap (reuse, not growth)
}
XLA_FAST_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    # LLVM's -O2 instead of XLA:CPU's default -O3: ~15% off the small CNN's step and a
    # quarter off the CNN's compile here, values unchanged (docs/BENCHMARKS.md).
    "--xla_backend_optimization_level=2",
)
# What must appear in jaxlib's shared library for a flag to be known: its name and, for an
# enum-valued flag, the value (protobuf spells enum values in capitals with a prefix).
FLAG_MARKERS = {
    XLA_FAST_FLAGS[0]: (
        b"xla_cpu_experimental_ynn_fusion_type",
        b"LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    ),
    XLA_FAST_FLAGS[1]: (b"xla_backend_optimization_level",),
}
ALLOCATOR_LIBRARIES = {"tcmalloc": "libtcmalloc", "jemalloc": "libjemalloc"}
WARNING_ENV = "ROADMAP_RUNTIME_WARNING"
ADVICE = (
    "run through the `roadmap` command, which sets them, or start Python with\n"
    "  GLIBC_TUNABLES={tunables} \\\n  XLA_FLAGS='{flags}'\n"
    "(docs/BENCHMARKS.md measures the difference). Silence: {env}=0."
)


class SlowRuntimeWarning(UserWarning):
    """JAX runs on the CPU without the allocator settings or XLA flags that pay here."""


def tunables_string(tunables: dict[str, str] = GLIBC_TUNABLES) -> str:
    """`key=value:key=value`, the syntax of the GLIBC_TUNABLES variable."""
    return ":".join(f"{k}={v}" for k, v in tunables.items())


def parse_tunables(value: str | None) -> dict[str, str]:
    """{key: value} of a GLIBC_TUNABLES string (later entries win, as in glibc)."""
    pairs = (item.split("=", 1) for item in (value or "").split(":") if "=" in item)
    return {k: v for k, v in pairs}


def startup_environ() -> dict[str, str]:
    """The environment this process started with (/proc/self/environ), else os.environ."""
    # glibc and LD_PRELOAD act on the environment at exec time; os.environ may have changed since.
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:  # not Linux
        return dict(os.environ)
    items = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    start = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in items}
    # glibc parses GLIBC_TUNABLES in place, cutting it at the first ':' in /proc/self/environ;
    # its own copy (os.environ) is whole. Trust that copy when the start value is its prefix.
    tunables, now = start.get("GLIBC_TUNABLES"), os.environ.get("GLIBC_TUNABLES", "")
    if tunables is not None and now.startswith(tunables):
        start["GLIBC_TUNABLES"] = now
    return start


def is_glibc() -> bool:
    """True where the C library is glibc (the tunables mean nothing elsewhere)."""
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def allocator_in_force(environ: dict[str, str] | None = None) -> str:
    """tcmalloc, jemalloc, "glibc (tuned)", glibc or system: the malloc this process runs."""
    environ = startup_environ() if environ is None else environ
    preload = environ.get("LD_PRELOAD", "")
    for name, library in ALLOCATOR_LIBRARIES.items():
        if library in preload:
            return name
    if not is_glibc():
        return "system"
    present = parse_tunables(environ.get("GLIBC_TUNABLES"))
    tuned = all(present.get(k) == v for k, v in GLIBC_TUNABLES.items())
    return "glibc (tuned)" if tuned else "glibc"


def split_flags(value: str | None) -> list[str]:
    """The flags of an XLA_FLAGS string."""
    return (value or "").split()


def flag_name(flag: str) -> str:
    """`--name` of a `--name=value` flag."""
    return flag.split("=", 1)[0]


def _jaxlib_libraries() -> list[Path]:
    spec = importlib.util.find_spec("jaxlib")  # locates the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    return sorted(p for folder in folders for p in Path(folder).glob("*.so") if p.is_file())


def jaxlib_version() -> str | None:
    """The installed jaxlib's version, or None."""
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None


def _contains_all(path: Path, markers: tuple[bytes, ...]) -> bool:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return all(data.find(m) >= 0 for m in markers)
    except (OSError, ValueError):  # unreadable, or empty (mmap refuses size 0)
        return False


def _cache_path() -> Path:
    from shared_data.sources import cache_dir

    return cache_dir() / "xla_flags.json"


def _cache_key() -> str:
    libs = _jaxlib_libraries()
    stamp = ",".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in libs)
    return f"jaxlib {jaxlib_version()} {sys.executable} {stamp}"


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict) -> None:
    try:
        path = _cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError:  # a read-only home: detect again next time
        pass


def probe_flag(flag: str, timeout: float = 120.0) -> bool:
    """True if a fresh Python compiles a convolution on the CPU with XLA_FLAGS=`flag`."""
    code = (
        "import jax, jax.numpy as jnp\n"
        "x = jnp.ones((1, 6, 6, 2)); w = jnp.ones((3, 3, 2, 2))\n"
        "jax.block_until_ready(jax.jit(lambda x, w: jax.lax.conv_general_dilated(\n"
        "    x, w, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, w))\n"
    )
    env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu", ROADMAP_RUNTIME_WARNING="0")
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def xla_flag_supported(flag: str, probe: bool = True) -> bool:
    """Whether the installed jaxlib accepts `flag`: a scan of its library, then a probe, cached.

    The scan (is the flag's name in libjax_common.so?) costs ~0.3 s and rules a flag out
    without starting anything. A flag it finds is confirmed by `probe_flag` in a subprocess,
    since XLA aborts the whole process on a flag or value it does not know. Results are cached
    per jaxlib build in <cache>/xla_flags.json; `probe=False` skips the subprocess and trusts
    the scan (for the warning, which must stay cheap).
    """
    if jaxlib_version() is None:
        return False
    key = _cache_key()
    cache = _read_cache()
    entry = cache.get(key, {}).get(flag)
    if isinstance(entry, bool):
        return entry
    markers = FLAG_MARKERS.get(flag, (flag_name(flag).lstrip("-").encode(),))
    found = any(_contains_all(p, markers) for p in _jaxlib_libraries())
    if found and not probe:
        return True
    supported = found and probe_flag(flag)
    cache = {key: {**_read_cache().get(key, {}), flag: supported}}  # drop other builds' entries
    _write_cache(cache)
    return supported


def missing_settings(environ: dict[str, str] | None = None, probe: bool = False) -> list[str]:
    """What of the fast CPU settings this process lacks (empty: all in force)."""
    start = startup_environ() if environ is None else environ
    current = dict(os.environ) if environ is None else environ
    missing = []
    if allocator_in_force(start) == "glibc":
        missing.append(f"GLIBC_TUNABLES={tunables_string()}")
    names = {flag_name(f) for f in split_flags(current.get("XLA_FLAGS"))}
    for flag in XLA_FAST_FLAGS:
        if flag_name(flag) not in names and xla_flag_supported(flag, probe=probe):
            missing.append(f"XLA_FLAGS={flag}")
    return missing


_warned = False


def warn_if_slow() -> None:
    """Warn once per process if JAX computes on the CPU without the fast settings."""
    global _warned
    if _warned or os.environ.get(WARNING_ENV, "1").lower() in ("0", "false", "no", "off"):
        return
    _warned = True
    import jax

    if jax.default_backend() != "cpu":
        return
    missing = missing_settings()
    if missing:
        flags = " ".join(XLA_FAST_FLAGS)
        advice = ADVICE.format(tunables=tunables_string(), flags=flags, env=WARNING_ENV)
        message = f"JAX runs on the CPU without {', '.join(missing)}: training can be 2-4x slower; "
        warnings.warn(message + advice, SlowRuntimeWarning, stacklevel=2)
