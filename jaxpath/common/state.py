"""The JAX training state: Flax's TrainState plus BatchNorm statistics where a model has them."""

from __future__ import annotations

from typing import Any

from flax.training import train_state


class TrainState(train_state.TrainState):
    """params, opt_state, step, apply_fn, tx -- and batch_stats (None without BatchNorm)."""

    batch_stats: Any = None


def num_params(params) -> int:
    """Number of scalars in a parameter pytree."""
    import jax

    return int(sum(x.size for x in jax.tree.leaves(params)))
