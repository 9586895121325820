"""Named random streams of one training step; mirrors jaxpath/common/rng.py.

A step gets one integer seed from the driver (a pure function of seed and step, so resume is
exact); each consumer takes its own `torch.Generator` by name. torch's dropout reads only the
global generator, which train_step reseeds from the step's seed.
"""

from __future__ import annotations

import zlib

import torch


def stream_id(name: str) -> int:
    """A stable 31-bit number for a stream name (the same in both frameworks)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stream(rng: int, name: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for stream `name` within the step seed `rng`."""
    # PARITY: the bits differ from JAX's (threefry vs Philox/MT); only the structure matches.
    generator = torch.Generator(device=device)
    generator.manual_seed((rng * 1_000_003 + stream_id(name)) % (2**63))
    return generator


def streams(rng: int, names: tuple[str, ...]) -> dict[str, torch.Generator]:
    """{name: generator}, e.g. streams(rng, ("noise",))."""
    return {name: stream(rng, name) for name in names}
