"""The JAX training state: Flax's TrainState plus BatchNorm statistics where a model has them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from flax.training import train_state

from jaxpath.common.optim import make_optimizer, make_schedule
from shared_data.configs.base import ParamGroup


class TrainState(train_state.TrainState):
    """params, opt_state, step, apply_fn, tx -- and batch_stats (None without BatchNorm),
    and ema: a running average of params and batch_stats (None without one)."""

    batch_stats: Any = None
    ema: Any = None
    # The default parameter group's learning rate as a function of the step (for logging).
    lr_schedule: Callable[[Any], Any] | None = struct.field(pytree_node=False, default=None)
    # The mesh axis a per-device data-parallel step runs over (common/parallel.py sets it
    # while tracing pmap and shard_map steps): apply_gradients averages the gradients over it.
    axis_name: str | None = struct.field(pytree_node=False, default=None)

    def apply_gradients(self, *, grads, **kwargs):
        """optax's update with `grads`, averaged over the devices of `axis_name` when set."""
        if self.axis_name is not None:
            grads = jax.lax.pmean(grads, self.axis_name)
        return super().apply_gradients(grads=grads, **kwargs)


def new_train_state(
    model,
    config,
    steps_per_epoch: int,
    init_weights: Any,
    init_args: Sequence[Any],
    *,
    state_class: type[TrainState] = TrainState,
    init_kwargs: dict[str, Any] | None = None,
    groups: Mapping[str, ParamGroup] | None = None,
    group_of: Callable[[tuple[str, ...]], str | None] | None = None,
    **fields: Any,
) -> TrainState:
    """`model`'s parameters (from `config.seed`, or `init_weights`) and optimizer in one state.

    `init_args` are the dummy inputs of `model.init`; `fields` set a state subclass's own
    fields. Ported weights must have exactly the shapes Flax creates. `groups` and
    `group_of` give parameter groups their own optimizer settings (common/optim.py).
    """
    variables = model.init(jax.random.key(config.seed), *init_args, **(init_kwargs or {}))
    if init_weights is not None:
        for collection in ("params", "batch_stats"):  # ported: the shapes Flax made, exactly
            if collection in variables:
                jax.tree.map(_check_shape, variables[collection], init_weights[collection])
        variables = {k: jax.tree.map(jnp.asarray, v) for k, v in init_weights.items()}
    state = state_class.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=make_optimizer(config, steps_per_epoch, groups, group_of),
        lr_schedule=make_schedule(config, steps_per_epoch),
        batch_stats=variables.get("batch_stats"),  # BatchNorm's running statistics, if any
        **fields,
    )
    # A Python-int step would become an int32 array after the first update and make jit
    # compile train_step a second time; start with the array type it will keep.
    return state.replace(step=jnp.zeros((), jnp.int32))


def _check_shape(expected, given) -> None:
    if expected.shape != given.shape:
        raise ValueError(f"init_weights shape {given.shape} != model's {expected.shape}")


def num_params(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
