"""The process `roadmap` runs in: allocator and XLA flags, fast by default, stock on request.

`--runtime fast` (the default) starts every command under glibc's malloc tunables and the
XLA:CPU flags the installed jaxlib knows (jaxpath/common/runtime.py says why each pays);
`--runtime stock` under the environment Python would have without them, to measure the
difference. `--malloc tcmalloc|jemalloc` preloads a caching allocator instead of the
tunables (PyTorch's own CPU launcher offers the same switch:
`python -m torch.backends.xeon.run_cpu --enable-tcmalloc`); `--malloc tuned|system` and
`--xla-flags/--no-xla-flags` override one part of either runtime.

glibc reads its tunables and LD_PRELOAD only when a process starts, so the console script
re-executes itself once with the environment it needs (`ensure_runtime`); a host process
that calls `main(argv)` (pytest, a notebook) is never replaced. `runtime_record()` is what
compare.json, bench.json and the report record of what was in force.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from jaxpath.common.runtime import (
    ALLOCATOR_LIBRARIES,
    GLIBC_TUNABLES,
    WARNING_ENV,
    XLA_FAST_FLAGS,
    allocator_in_force,
    flag_name,
    is_glibc,
    jaxlib_version,
    parse_tunables,
    split_flags,
    startup_environ,
    tunables_string,
    xla_flag_supported,
)

RUNTIMES = ("fast", "stock")
MALLOCS = ("tuned", "system", "tcmalloc", "jemalloc")
LIBRARIES = {"tcmalloc": "libtcmalloc_minimal.so*", "jemalloc": "libjemalloc.so*"}
SEARCH_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)
DEBIAN_PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}
REEXEC_MARK = "ROADMAP_REEXECUTED"  # set in the child: never re-execute twice


def find_library(name: str) -> str | None:
    """Path of the shared library of allocator `name`, or None."""
    for folder in SEARCH_DIRS:
        hits = sorted(glob.glob(os.path.join(folder, LIBRARIES[name])))
        if hits:
            return hits[0]
    return None


def resolve(runtime: str, malloc: str | None, xla_flags: bool | None) -> tuple[str, bool]:
    """(allocator, XLA flags on?) of a runtime, with explicit --malloc/--xla-flags winning."""
    if runtime not in RUNTIMES:
        raise SystemExit(f"roadmap: unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    fast = runtime == "fast"
    return (malloc or ("tuned" if fast else "system"), fast if xla_flags is None else xla_flags)


def target_environ(
    environ: dict[str, str], malloc: str, xla_flags: bool, flag_ok=None
) -> dict[str, str]:
    """`environ` changed to run under allocator `malloc` with the fast XLA flags on or off.

    Only the settings this module owns move: the user's other tunables, preloads and XLA flags
    stay, and a flag the user set explicitly is left as they set it.
    """
    env = dict(environ)
    tunables = parse_tunables(env.get("GLIBC_TUNABLES"))
    for key, value in GLIBC_TUNABLES.items():
        if tunables.get(key) == value:
            del tunables[key]
    if malloc == "tuned" and is_glibc():
        tunables = {**GLIBC_TUNABLES, **tunables}
    _put(env, "GLIBC_TUNABLES", tunables_string(tunables))
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    preload = [p for p in preload if not any(lib in p for lib in ALLOCATOR_LIBRARIES.values())]
    if malloc in LIBRARIES:
        library = find_library(malloc)
        if library is None:
            raise SystemExit(
                f"roadmap: --malloc {malloc}: no {LIBRARIES[malloc]} in "
                f"{', '.join(SEARCH_DIRS)}; install it (Debian: apt-get install "
                f"{DEBIAN_PACKAGES[malloc]}) or use --malloc tuned"
            )
        preload.insert(0, library)
    _put(env, "LD_PRELOAD", ":".join(preload))
    flags = [f for f in split_flags(env.get("XLA_FLAGS")) if f not in XLA_FAST_FLAGS]
    flag_ok = flag_ok or xla_flag_supported  # looked up at call time: tests replace it
    if xla_flags:
        names = {flag_name(f) for f in flags}
        flags += [f for f in XLA_FAST_FLAGS if flag_name(f) not in names and flag_ok(f)]
    _put(env, "XLA_FLAGS", " ".join(flags))
    return env


def _put(env: dict[str, str], key: str, value: str) -> None:
    if value:
        env[key] = value
    else:
        env.pop(key, None)


KEYS = ("GLIBC_TUNABLES", "LD_PRELOAD", "XLA_FLAGS")


# JAX's persistent compilation cache (read from the environment when jax is imported): a
# second run of the same program loads its executables instead of compiling them again.
CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": str(Path.home() / ".cache" / "roadmap" / "jax"),
    # XLA:CPU compiles this project's steps in well under JAX's default 1 s threshold.
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def enable_compilation_cache(environ=os.environ) -> None:
    """Turn on JAX's persistent compilation cache, unless the user configured one."""
    if "JAX_COMPILATION_CACHE_DIR" in environ:
        return
    environ.update(CACHE_ENV)


def ensure_runtime(runtime: str, malloc: str | None, xla_flags: bool | None, argv) -> None:
    """Re-execute `roadmap argv` under the runtime asked for, unless already in it."""
    allocator, flags_on = resolve(runtime, malloc, xla_flags)
    if runtime == "fast":  # in-process: jax is not imported yet, so the setting still takes
        enable_compilation_cache()
    # jaxpath's SlowRuntimeWarning is for code that bypasses this command; here the runtime is
    # chosen on purpose (--runtime stock included) and recorded in every result file.
    os.environ.setdefault(WARNING_ENV, "0")
    current = dict(os.environ)
    target = target_environ(current, allocator, flags_on)
    reexecuted = os.environ.pop(REEXEC_MARK, None)  # not inherited by this run's children
    if all(current.get(k) == target.get(k) for k in KEYS):
        return
    if reexecuted:  # the environment did not take: run as we are, say so
        print("roadmap: could not set the runtime environment; running as is", file=sys.stderr)
        return
    target[REEXEC_MARK] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "comparisons.cli", *argv], target)


def runtime_record() -> dict[str, str]:
    """What was in force in this process: allocator, tunables, preload, XLA flags; flat strings."""
    start, now = startup_environ(), dict(os.environ)
    allocator = allocator_in_force(start)
    active = {flag_name(f) for f in split_flags(now.get("XLA_FLAGS"))}
    flag_states = []
    for flag in XLA_FAST_FLAGS:
        if flag in split_flags(now.get("XLA_FLAGS")):
            flag_states.append("on")
        elif flag_name(flag) in active:
            flag_states.append("set by the user")
        elif xla_flag_supported(flag, probe=False):
            flag_states.append("off")
        else:
            flag_states.append(f"unknown to jaxlib {jaxlib_version()}")
    fast_alloc = allocator in ("glibc (tuned)", "tcmalloc", "jemalloc", "system")
    flags_fast = all(s != "off" for s in flag_states)
    stock = allocator in ("glibc", "system") and all(s != "on" for s in flag_states)
    label = "stock" if stock else "fast" if fast_alloc and flags_fast else "custom"
    return {
        "runtime": label,
        "allocator": allocator,
        "glibc_tunables": start.get("GLIBC_TUNABLES", "none"),
        "ld_preload": start.get("LD_PRELOAD", "none"),
        "xla_flags": now.get("XLA_FLAGS", "none"),
        "jax_compilation_cache": now.get("JAX_COMPILATION_CACHE_DIR", "off"),
        "xla_fast_flags": "; ".join(
            f"{f}: {s}" for f, s in zip(XLA_FAST_FLAGS, flag_states, strict=True)
        ),
    }


def describe(record: dict[str, str]) -> str:
    """One line of a runtime record, for markdown headers."""
    return (
        f"runtime {record.get('runtime')}: allocator {record.get('allocator')}, "
        f"XLA_FLAGS {record.get('xla_flags')}"
    )


def shell_exports(runtime: str = "fast", malloc: str | None = None, xla_flags=None) -> str:
    """`export`/`unset` lines that put a shell in a runtime: `eval "$(python -m ...)"`."""
    import shlex

    target = target_environ(dict(os.environ), *resolve(runtime, malloc, xla_flags))
    lines = []
    for key in KEYS:
        value = target.get(key)
        lines.append(f"export {key}={shlex.quote(value)}" if value else f"unset {key}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m comparisons.runtime [fast|stock]
    print(shell_exports(*sys.argv[1:2]))
