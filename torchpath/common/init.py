"""Deterministic weight initialisation for torch models.

PARITY: torch's default Linear/Conv init (kaiming_uniform(a=sqrt(5)) weights, U(+-1/sqrt(fan_in))
biases) is what jaxpath/common/init.py reproduces in Flax; here we only make it seedable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def build_seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Construct a module with torch's default init drawn from a private generator `seed`."""
    # fork_rng keeps the caller's global RNG untouched, like passing a PRNG key in JAX.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()
