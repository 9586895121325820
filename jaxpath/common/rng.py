"""Named random streams of one training step; mirrors torchpath/common/rng.py.

A step gets one key from the driver (a pure function of seed and step, so resume is exact);
each consumer (dropout, the VAE's sampling noise, ...) takes its own stream by name, so
adding a stream never changes the numbers another stream draws.
"""

from __future__ import annotations

import zlib

import jax


def stream_id(name: str) -> int:
    """A stable 31-bit number for a stream name (the same in both frameworks)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stream(rng: jax.Array, name: str) -> jax.Array:
    """The key of stream `name` within the step key `rng`."""
    return jax.random.fold_in(rng, stream_id(name))


def streams(rng: jax.Array, names: tuple[str, ...]) -> dict[str, jax.Array]:
    """{name: key} for Flax's `rngs=` argument, e.g. streams(rng, ("dropout", "noise"))."""
    return {name: stream(rng, name) for name in names}
