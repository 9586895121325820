"""Flax initializers that draw from PyTorch's default distributions.

PARITY: torch initialises Linear/Conv weights with kaiming_uniform(a=sqrt(5)), i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the same bound; Flax defaults to
lecun_normal weights and zero biases. Using torch's distributions on both sides means a
model trained from its own (not ported) initialisation behaves alike in both frameworks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

# U(-1/sqrt(fan_in), 1/sqrt(fan_in)) == variance_scaling(1/3, fan_in, uniform).
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    """Bias initializer U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch's Linear and Conv."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def TorchDense(features: int, in_features: int, name: str | None = None, **options) -> nn.Dense:
    """nn.Dense initialised like torch.nn.Linear(in_features, features).

    `options` go to nn.Dense (use_bias, dtype for the compute dtype, ...).
    """
    return nn.Dense(
        features,
        kernel_init=options.pop("kernel_init", torch_kernel_init),
        bias_init=torch_bias_init(in_features),
        name=name,
        **options,
    )


def TorchConv(
    features: int,
    in_features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: str | int = 0,
    name: str | None = None,
    **options,
) -> nn.Conv:
    """nn.Conv initialised and padded like torch.nn.Conv2d(in, out, k, stride, padding).

    `options` go to nn.Conv (use_bias, dtype for the compute dtype, kernel_init, ...).
    """
    # PARITY: torch's integer padding pads both sides symmetrically; Flax's default is "SAME".
    pad = padding if isinstance(padding, str) else [(padding, padding)] * 2
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=pad,
        kernel_init=options.pop("kernel_init", torch_kernel_init),
        bias_init=torch_bias_init(in_features * kernel_size * kernel_size),
        name=name,
        **options,
    )
