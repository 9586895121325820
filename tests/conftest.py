"""Pin fp32 on both sides for every test (DESIGN: fair comparison rules)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the cores: torch's OpenMP threads would spin-wait for each other's
    # (BENCHMARKS.md, "OpenMP policy"); one thread a worker, set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The XLA flags `roadmap` runs under by default (comparisons/runtime.py; jaxpath/common/
# runtime.py says why each pays), set before jax is imported: the tests then compile what
# users run, and XLA:CPU compiles a random initializer 4-6x faster than under its defaults
# (1.7 s against 0.3 s on a 2-vCPU AVX2 machine). A flag the caller set stays as set.
from comparisons.runtime import CACHE_ENV, target_environ  # noqa: E402

os.environ["XLA_FLAGS"] = target_environ(dict(os.environ), "system", True).get("XLA_FLAGS", "")
# JAX's persistent compilation cache, as `roadmap` turns it on, in pytest's own cache folder
# and shared by the xdist workers: `run`, `compare`, `bench` and the export and parity tests
# compile many of the same programs (the every-project fixtures took 15-25% less time).
_cache = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"
for _key, _value in {**CACHE_ENV, "JAX_COMPILATION_CACHE_DIR": str(_cache)}.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402

from jaxpath.common.precision import pin_fp32 as pin_jax  # noqa: E402
from torchpath.common.precision import pin_fp32 as pin_torch  # noqa: E402

pin_jax()
pin_torch()


@pytest.fixture
def smoke_config():
    """The MNIST smoke config: a tiny synthetic run."""
    from comparisons.registry import get_project

    return get_project("mnist").config("smoke")
