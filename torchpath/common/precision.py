"""Pin fp32 arithmetic so JAX and torch compute the same numbers (DESIGN: fair comparison)."""

from __future__ import annotations

import torch


def pin_fp32() -> None:
    """Make every matmul and convolution run in full fp32 (no TF32 on Ampere and newer GPUs)."""
    # PARITY: mirrors jax_default_matmul_precision="highest" on the JAX side.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
