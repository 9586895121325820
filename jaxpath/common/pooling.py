"""Max pooling in the formulation XLA:CPU compiles well, with the stock one selectable.

`nn.max_pool` is a `reduce_window`; its gradient is `select_and_scatter`, which XLA:CPU
expands into a five-output reduce-window, four iotas and a scatter (docs/IR.md shows it in
the optimized HLO). A 2x2, stride-2 window over an even height and width is the same function
as `x.reshape(n, h/2, 2, w/2, 2, c).max(axis=(2, 4))`: a plain reduction, whose gradient XLA
fuses into one elementwise loop. The pool-backward op of `roadmap bench` measures the two.

Ties. `jnp.max`'s own derivative splits the gradient evenly among tied maxima (1/3 each for
three equal values); `select_and_scatter` and torch's `max_pool2d` give all of it to the
first maximum in row-major window order. `max_pool_2x2` keeps the reshape forward and
defines its derivative to pick that first maximum with compares and selects, so its values
and gradients equal `nn.max_pool`'s bit for bit, ties included (tests/test_pooling.py).
NaN inputs are not covered: the forward propagates NaN in both, the gradients may differ.

No torchpath twin: torch's F.max_pool2d is fast as it is (2.8 ms fwd+bwd in the per-op table).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

FORMULATIONS = ("reshape", "reduce_window")


@jax.custom_jvp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2, of an NHWC array with even H and W, as reshape + max."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _corners(x: jax.Array) -> list[jax.Array]:
    """The four members of every 2x2 window, in row-major window order."""
    n, h, w, c = x.shape
    x6 = x.reshape(n, h // 2, 2, w // 2, 2, c)
    return [x6[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]


@max_pool_2x2.defjvp
def _max_pool_2x2_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    values, slopes = _corners(x), _corners(dx)
    out = jnp.maximum(jnp.maximum(values[0], values[1]), jnp.maximum(values[2], values[3]))
    # The first corner equal to the maximum carries the tangent, as select_and_scatter's `ge`
    # selection does; built last to first so the earliest match wins.
    slope = slopes[3]
    for value, candidate in zip(values[2::-1], slopes[2::-1], strict=True):
        slope = jnp.where(value == out, candidate, slope)
    return out, slope


def _reshape_applies(shape, window, strides, padding) -> bool:
    """True when the reshape formulation computes exactly what nn.max_pool would."""
    if len(shape) != 4 or tuple(window) != (2, 2) or tuple(strides) != (2, 2):
        return False
    even = shape[1] % 2 == 0 and shape[2] % 2 == 0
    # With even H and W, SAME adds no padding for a 2x2 stride-2 window: it equals VALID.
    return even and padding in ("VALID", "SAME")


def max_pool(x, window=(2, 2), strides=None, padding="VALID", formulation="reshape"):
    """`nn.max_pool(x, window, strides, padding)`, as reshape + max where that is the same."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"unknown pool formulation {formulation!r}; known: {FORMULATIONS}")
    strides = window if strides is None else strides
    if formulation == "reshape" and _reshape_applies(x.shape, window, strides, padding):
        return max_pool_2x2(x)
    return nn.max_pool(x, tuple(window), strides=tuple(strides), padding=padding)
