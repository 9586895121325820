"""The runtime `roadmap` runs in: environments composed, re-exec decided, what was recorded.

No test re-executes anything: os.execve and the flag probe are replaced where they would run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from comparisons import runtime
from comparisons.cli import build_parser
from jaxpath.common import runtime as jrt

TUNED = jrt.tunables_string()
FLAG = jrt.XLA_FAST_FLAGS[0]
FLAGS = " ".join(jrt.XLA_FAST_FLAGS)  # every fast flag, as the fast runtime sets XLA_FLAGS
known = lambda flag: True  # noqa: E731
unknown = lambda flag: False  # noqa: E731


@pytest.fixture
def glibc(monkeypatch):
    monkeypatch.setattr(runtime, "is_glibc", lambda: True)
    monkeypatch.setattr(jrt, "is_glibc", lambda: True)


def test_fast_sets_tunables_and_known_flags_keeping_the_users(glibc):
    env = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "XLA_FLAGS": "--xla_dump_to=/tmp/d"}
    out = runtime.target_environ(env, *runtime.resolve("fast", None, None), flag_ok=known)
    assert out["GLIBC_TUNABLES"] == f"{TUNED}:glibc.malloc.hugetlb=1"
    assert out["XLA_FLAGS"] == f"--xla_dump_to=/tmp/d {FLAGS}"
    assert jrt.allocator_in_force(out) == "glibc (tuned)"


def test_a_flag_jaxlib_does_not_know_is_left_out(glibc):
    out = runtime.target_environ({}, "tuned", True, flag_ok=unknown)
    assert "XLA_FLAGS" not in out and out["GLIBC_TUNABLES"] == TUNED


def test_stock_removes_only_what_fast_adds(glibc):
    fast = {"GLIBC_TUNABLES": f"{TUNED}:glibc.malloc.hugetlb=1", "XLA_FLAGS": f"--a=1 {FLAGS}"}
    fast["LD_PRELOAD"] = "/x/libtcmalloc_minimal.so.4:/other.so"
    out = runtime.target_environ(fast, *runtime.resolve("stock", None, None), flag_ok=known)
    assert out == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "XLA_FLAGS": "--a=1",
                   "LD_PRELOAD": "/other.so"}  # fmt: skip
    assert runtime.target_environ({}, "system", False, flag_ok=known) == {}


def test_explicit_options_override_the_runtime():
    assert runtime.resolve("fast", "system", None) == ("system", True)
    assert runtime.resolve("stock", None, True) == ("system", True)
    assert runtime.resolve("fast", "tcmalloc", False) == ("tcmalloc", False)
    args = build_parser().parse_args(["--runtime", "stock", "--xla-flags", "list"])
    assert (args.runtime, args.malloc, args.xla_flags) == ("stock", None, True)


def test_gpu_commands_keep_xlas_gpu_defaults():
    from comparisons.cli import cpu_xla_flags

    parse = build_parser().parse_args
    assert cpu_xla_flags(parse(["bench", "mnist", "--device", "cuda"])) is False
    assert cpu_xla_flags(parse(["--xla-flags", "bench", "mnist", "--device", "gpu"])) is True
    assert cpu_xla_flags(parse(["bench", "mnist"])) is None  # the runtime decides (fast: on)
    assert cpu_xla_flags(parse(["list"])) is None


def test_a_flag_the_user_set_is_theirs(glibc):
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-individual_dot"}
    out = runtime.target_environ(env, "tuned", True, flag_ok=known)["XLA_FLAGS"].split()
    # Their value of the flag stays; the fast flags they did not set are added.
    assert out == [env["XLA_FLAGS"], *jrt.XLA_FAST_FLAGS[1:]]


def test_preloaded_allocator_replaces_the_tunables(glibc, monkeypatch, tmp_path):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    monkeypatch.setattr(runtime, "SEARCH_DIRS", (str(tmp_path),))
    env = {"LD_PRELOAD": "/other.so", "GLIBC_TUNABLES": TUNED}
    out = runtime.target_environ(env, "jemalloc", True, flag_ok=known)
    assert out["LD_PRELOAD"] == f"{library}:/other.so" and "GLIBC_TUNABLES" not in out
    assert jrt.allocator_in_force(out) == "jemalloc"


def test_missing_library_names_the_package(monkeypatch):
    monkeypatch.setattr(runtime, "SEARCH_DIRS", ("/nonexistent",))
    with pytest.raises(SystemExit, match="apt-get install libjemalloc2"):
        runtime.target_environ({}, "jemalloc", False)


def test_reexec_once_then_never(glibc, monkeypatch):
    monkeypatch.setattr(runtime, "xla_flag_supported", known)
    for key in runtime.KEYS + (runtime.REEXEC_MARK, jrt.WARNING_ENV):
        monkeypatch.setenv(key, "")  # recorded, so teardown restores what ensure_runtime sets
        monkeypatch.delenv(key)
    calls = []
    monkeypatch.setattr(runtime.os, "execve", lambda exe, args, env: calls.append((args, env)))
    runtime.ensure_runtime("fast", None, None, ["compare", "mnist"])
    ((args, env),) = calls
    assert args[1:] == ["-m", "comparisons.cli", "compare", "mnist"]
    assert env["GLIBC_TUNABLES"] == TUNED and env["XLA_FLAGS"] == FLAGS
    assert env[jrt.WARNING_ENV] == "0"  # the command chose its runtime: no advice to print
    for key in runtime.KEYS + (runtime.REEXEC_MARK,):  # the child: already in the runtime
        if key in env:
            monkeypatch.setenv(key, env[key])
    runtime.ensure_runtime("fast", None, None, ["compare", "mnist"])
    assert runtime.REEXEC_MARK not in os.environ  # the child's own children start afresh
    monkeypatch.setenv(runtime.REEXEC_MARK, "1")  # a child whose environment did not take:
    monkeypatch.setenv("XLA_FLAGS", "")  # no second re-exec
    runtime.ensure_runtime("fast", None, None, ["compare", "mnist"])
    assert len(calls) == 1


def test_record_says_what_was_in_force(glibc, monkeypatch):
    monkeypatch.setattr(runtime, "xla_flag_supported", lambda flag, probe=True: True)
    fast = {"GLIBC_TUNABLES": TUNED, "XLA_FLAGS": FLAGS}
    for start, now, label in (({}, {}, "stock"), (fast, fast, "fast"), (fast, {}, "custom")):
        monkeypatch.setattr(runtime, "startup_environ", lambda s=start: dict(s))
        monkeypatch.setattr(runtime.os, "environ", dict(now))
        record = runtime.runtime_record()
        assert record["runtime"] == label, (start, now)
        assert all(isinstance(v, str) for v in record.values())
    assert record["allocator"] == "glibc (tuned)" and record["xla_fast_flags"] == "; ".join(
        f"{f}: off" for f in jrt.XLA_FAST_FLAGS
    )


def test_flag_detection_scans_then_probes_then_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("ROADMAP_CACHE_DIR", str(tmp_path))
    probes = []
    monkeypatch.setattr(jrt, "probe_flag", lambda flag: probes.append(flag) or True)
    assert jrt.xla_flag_supported(FLAG) is True  # jaxlib 0.10.2 knows the flag
    assert jrt.xla_flag_supported(FLAG) is True and probes == [FLAG]  # cached
    assert jrt.xla_flag_supported("--xla_no_such_flag_anywhere=1") is False
    assert probes == [FLAG]  # the scan ruled it out: no subprocess


def test_probe_rejects_an_unknown_flag():
    assert jrt.probe_flag("--xla_no_such_flag_anywhere=1") is False


def test_warning_once_and_silenceable(monkeypatch):
    monkeypatch.setattr(jrt, "missing_settings", lambda: [f"GLIBC_TUNABLES={TUNED}"])
    monkeypatch.setattr(jrt, "_warned", False)
    monkeypatch.delenv(jrt.WARNING_ENV, raising=False)
    with pytest.warns(jrt.SlowRuntimeWarning, match="roadmap"):
        jrt.warn_if_slow()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jrt.warn_if_slow()  # once per process
        monkeypatch.setattr(jrt, "_warned", False)
        monkeypatch.setenv(jrt.WARNING_ENV, "0")
        jrt.warn_if_slow()


def test_missing_settings_reads_the_environment(glibc, monkeypatch):
    monkeypatch.setattr(jrt, "xla_flag_supported", lambda flag, probe=False: True)
    assert jrt.missing_settings({"GLIBC_TUNABLES": TUNED, "XLA_FLAGS": FLAGS}) == []
    assert jrt.missing_settings({"LD_PRELOAD": "/l/libtcmalloc.so", "XLA_FLAGS": FLAGS}) == []
    missing = [f"GLIBC_TUNABLES={TUNED}", *(f"XLA_FLAGS={f}" for f in jrt.XLA_FAST_FLAGS)]
    assert jrt.missing_settings({}) == missing


def test_a_process_started_under_the_tunables_records_them():
    """glibc cuts GLIBC_TUNABLES at the first ':' in /proc/self/environ; the record is whole."""
    code = "from comparisons.runtime import runtime_record as r; print(r()['glibc_tunables'])"
    env = {**os.environ, "GLIBC_TUNABLES": TUNED}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == TUNED, done.stderr


def test_the_fast_runtime_turns_on_the_compilation_cache_unless_one_is_set():
    from comparisons.runtime import CACHE_ENV, enable_compilation_cache

    environ: dict[str, str] = {}
    enable_compilation_cache(environ)
    assert environ == CACHE_ENV and environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    mine = {"JAX_COMPILATION_CACHE_DIR": "/somewhere/else"}
    enable_compilation_cache(mine)
    assert mine == {"JAX_COMPILATION_CACHE_DIR": "/somewhere/else"}
