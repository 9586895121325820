"""Fixed sinusoidal position encodings (Vaswani et al., 2017, section 3.5), shared by both trees.

Row p, column 2i is sin(p / 10000^(2i/d)) and column 2i+1 cos of the same angle. The table is
built in numpy once, so the JAX and torch transformers add the very same numbers; unlike a
learned position table it gives every position a value, including the positions that
training rarely reaches (SST-2 trains on phrases of 9 words on average and tests on
sentences of 19).
"""

from __future__ import annotations

import numpy as np

POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """float32 [length, dim] table of sines (even columns) and cosines (odd columns)."""
    position = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(-np.log(10000.0) * (np.arange(0, dim, 2, dtype=np.float64) / dim))
    table = np.zeros((length, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate)[:, : dim // 2]
    return table.astype(np.float32)
