"""Pin fp32 arithmetic so JAX and torch compute the same numbers (DESIGN: fair comparison)."""

from __future__ import annotations

import jax


def pin_fp32() -> None:
    """Make every matmul and convolution run in full fp32 (no bf16 passes, no TF32)."""
    # PARITY: on GPU/TPU XLA's default precision may use bf16/TF32 passes; torch's TF32 is off.
    jax.config.update("jax_default_matmul_precision", "highest")
