"""The JAX side of the shared training loop; mirrors torchpath/common/loop.py.

shared_data/training.py drives every epoch; this file supplies what only JAX knows:
device arrays, PRNG keys derived from the step, and waiting for asynchronous dispatch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxpath.common.checkpoint import Checkpointer
from jaxpath.common.distributed import barrier, process_workdir
from jaxpath.common.parallel import DataParallel, setting_from_env
from jaxpath.common.runtime import warn_if_slow
from jaxpath.common.state import num_params
from shared_data import training
from shared_data.configs.base import ConfigError
from shared_data.tasks import Task


def to_device(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Move a numpy batch to the default device (NHWC stays NHWC)."""
    # One transfer call for the whole dict: a third of the host time of one jnp.asarray per
    # field, which the loop pays on every step (64-bit arrays become 32-bit, as jnp would).
    return jax.device_put(dict(batch))


@functools.lru_cache(maxsize=8)
def _base_key(seed: int) -> jax.Array:
    return jax.random.key(seed)


# Compiled once: an op-by-op fold_in costs ~10x more host time per training step.
_fold_in = jax.jit(jax.random.fold_in)


def step_rng(seed: int, step: int) -> jax.Array:
    """The PRNG key of one training step: a pure function of (seed, step), so resume is exact."""
    return _fold_in(_base_key(seed), step)


# One compiled add of the whole metric dict instead of one dispatched op per sum.
add_sums = jax.jit(lambda sums, metrics: {k: sums[k] + metrics[k] for k in sums})


def zero_sums(keys: tuple[str, ...]) -> dict[str, jax.Array]:
    """Metric accumulators at the start of an epoch."""
    return {k: jnp.zeros((), jnp.float32) for k in keys}


FRAMEWORK = training.Framework(
    name="jax",
    to_device=to_device,
    step_rng=step_rng,
    zero_sums=zero_sums,
    add_sums=add_sums,
    sums_from_floats=lambda sums: {k: jnp.float32(v) for k, v in sums.items()},
    # jit dispatch is asynchronous: timings and checkpoints must wait for the values.
    block=jax.block_until_ready,
    num_params=lambda state: num_params(state.params),
    checkpointer=Checkpointer,
    to_numpy=np.asarray,
    learning_rate=lambda state: (
        float(state.lr_schedule(state.step)) if state.lr_schedule is not None else None
    ),
)


def evaluate(task: Task, eval_step: Callable, state, arrays: dict, batch_size: int, predict=None):
    """Every metric of `task` over every example of `arrays`."""
    return training.evaluate(FRAMEWORK, task, eval_step, state, arrays, batch_size, predict)


def fit(
    task: Task,
    config,
    workdir: str | Path,
    state,
    train_step: Callable,
    eval_step: Callable,
    dataset,
    *,
    parallel: str | None = None,
    devices: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train `state` on `dataset` for `config.epochs`, evaluating each epoch; returns a summary.

    `parallel` ("pmap", "sharding" or "shard_map", common/parallel.py) trains data-parallel
    over `devices` devices (default: all), each global batch split across them; both
    default to $ROADMAP_JAX_PARALLEL and $ROADMAP_JAX_DEVICES, which `roadmap run --devices`
    sets, so no project passes them. Under `jax.distributed` (several processes) the step is
    always data-parallel over every process's devices ("sharding" unless told otherwise).
    `options`: predict, on_epoch_end, final_eval_step, resume, progress (see
    shared_data.training.fit).
    """
    warn_if_slow()  # once per process, when JAX trains on the CPU under the slow settings
    parallel, devices = setting_from_env(parallel, devices)
    if parallel is None and jax.process_count() > 1:
        parallel = "sharding"
    if parallel is None:
        return training.fit(
            FRAMEWORK, task, config, workdir, state, train_step, eval_step, dataset, **options
        )
    try:
        data = DataParallel(parallel, devices)
        data.check_batch_size(config.batch_size)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    framework = dataclasses.replace(FRAMEWORK, to_device=data.to_device)
    if jax.process_count() > 1:  # one set of checkpoints; logs per process
        barrier("roadmap-fit-start")  # the first collective (Orbax's) must not time out
        shared = Path(workdir) / "checkpoints"
        framework = dataclasses.replace(framework, checkpointer=lambda _: Checkpointer(shared))
        workdir = process_workdir(workdir)
    if jax.process_index() == 0:
        where = f"{jax.process_count()} processes, " if jax.process_count() > 1 else ""
        tqdm.write(
            f"jax: data parallel ({parallel}) over {where}{data.devices} devices, "
            f"{config.batch_size // data.devices} of each batch of {config.batch_size} per device"
        )
    # Evaluation needs no wrapper: the jitted eval step follows its arguments' shardings.
    return training.fit(
        framework,
        task,
        config,
        workdir,
        data.replicate(state),
        data.train_step(train_step),
        eval_step,
        dataset,
        **options,
    )
