"""`--malloc`: allocator discovery and the re-exec decision (no re-exec happens here)."""

from __future__ import annotations

import pytest

from comparisons import malloc


def test_system_allocator_never_reexecs(monkeypatch):
    monkeypatch.setattr(malloc.os, "execve", lambda *a: pytest.fail("must not re-exec"))
    malloc.reexec_with("system", ["list"])


def test_already_preloaded_allocator_does_not_reexec(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setattr(malloc.os, "execve", lambda *a: pytest.fail("must not re-exec"))
    assert malloc.active_allocator() == "tcmalloc"
    malloc.reexec_with("tcmalloc", ["list"])


def test_missing_library_names_the_package(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(malloc, "SEARCH_DIRS", ("/nonexistent",))
    with pytest.raises(SystemExit, match="apt-get install libjemalloc2"):
        malloc.reexec_with("jemalloc", ["list"])


def test_reexec_preloads_the_library(monkeypatch, tmp_path):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    monkeypatch.setattr(malloc, "SEARCH_DIRS", (str(tmp_path),))
    monkeypatch.setenv("LD_PRELOAD", "/other.so")
    calls = []
    monkeypatch.setattr(malloc.os, "execve", lambda exe, args, env: calls.append((args, env)))
    malloc.reexec_with("jemalloc", ["compare", "mnist"])
    ((args, env),) = calls
    assert args[1:] == ["-m", "comparisons.cli", "compare", "mnist"]
    assert env["LD_PRELOAD"] == f"{library}:/other.so"
