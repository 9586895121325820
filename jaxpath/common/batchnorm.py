"""BatchNorm that computes what torch.nn.BatchNorm2d computes, in Flax Linen.

PARITY: Flax's nn.BatchNorm differs from torch's in three ways that change the numbers:
its `momentum` is the weight of the old running value (torch: of the new batch value), its
running variance is the biased batch variance (torch tracks the unbiased one, n / (n - 1)
times larger), and its variance is E[x^2] - E[x]^2 (torch: the mean squared deviation).
This module takes torch's momentum and epsilon and tracks torch's running statistics, so a
ported model matches in train and eval mode. Its variables are named like nn.BatchNorm's
(params scale/bias, batch_stats mean/var), so comparisons/weights.py ports it unchanged.
It has no torch twin: torchpath uses nn.BatchNorm2d itself.

Data parallel (common/parallel.py): inside a per-device step (pmap, shard_map) the batch
statistics are cross-replica, averaged over `batch_axis()`, so N devices compute what one
device computes on the whole global batch (torch's twin: nn.SyncBatchNorm).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.parallel import batch_axis


class BatchNorm(nn.Module):
    """Batch normalisation over every axis but the last (NHWC channels), torch's semantics."""

    momentum: float = 0.1  # torch's: running = (1 - momentum) * running + momentum * batch
    epsilon: float = 1e-5
    dtype: jnp.dtype | None = None  # output dtype (bf16 compute); statistics stay float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        dtype = self.dtype or x.dtype
        x32 = x.astype(jnp.float32)
        if train:
            axes, replicas = tuple(range(x.ndim - 1)), batch_axis()
            mean = jnp.mean(x32, axes)
            if replicas is not None:  # equal shards: the mean of their means is the global one
                mean = jax.lax.pmean(mean, replicas)
            var = jnp.mean(jnp.square(x32 - mean), axes)
            if replicas is not None:
                var = jax.lax.pmean(var, replicas)
            if not self.is_initializing():
                n = x.size // features
                if replicas is not None:
                    n *= jax.lax.axis_size(replicas)
                unbiased = var * (n / max(n - 1, 1))
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean
                running_var.value = (1 - m) * running_var.value + m * unbiased
        else:
            mean, var = running_mean.value, running_var.value
        y = (x32 - mean) * (scale * (1.0 / jnp.sqrt(var + self.epsilon))) + bias
        return y.astype(dtype)
