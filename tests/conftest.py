"""Pin fp32 on both sides for every test (DESIGN: fair comparison rules)."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the cores: torch's OpenMP threads would spin-wait for each other's
    # (BENCHMARKS.md, "OpenMP policy"); one thread a worker, set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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
