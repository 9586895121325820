"""Data parallelism for any registered project's train step, in the three forms JAX offers.

Every form runs the project's own `train_step(state, batch, rng)` unchanged on a global
batch split over a 1-D device mesh with axis "data"; params, optimizer state and BatchNorm
statistics stay replicated, and N devices compute what one device computes on the same
global batch (docs/SCALING.md):

* "pmap": the legacy `jax.pmap`; the step runs per device on a [devices, batch/devices, ...]
  batch, and the gradients are averaged by `lax.pmean` over the named axis.
* "sharding": `jax.jit` with `NamedSharding`s (batch sharded over "data", the state
  replicated); the step is written for one device and XLA's SPMD partitioner inserts the
  all-reduces itself.
* "shard_map": `jax.shard_map` over the mesh; the step sees its local shard, and the
  gradients are averaged by an explicit `lax.pmean`.

The hook, so that no project needs code of its own: in the per-device forms (pmap and
shard_map) the wrapper sets the state's static `axis_name` (TrainState.apply_gradients
then pmeans the gradients) and binds `batch_axis()` while the step is traced, which
jaxpath/common/batchnorm.py reads to compute cross-replica (synchronised) batch statistics.
The "sharding" form needs neither: its step sees the global batch, so its BatchNorm
statistics are global already. Each device draws its own dropout mask (the step's key is
folded with the device's index) in the per-device forms, and the global batch's mask in
"sharding": the three agree exactly only for steps without randomness.

No torchpath/common/parallel.py: torch has one form, DistributedDataParallel, whose setup
is torchpath/common/distributed.py (the twin of jaxpath/common/distributed.py).

Several processes (`jax.distributed.initialize`, jaxpath/common/distributed.py) run the same
code: the mesh then spans every process's devices, and each process supplies its own rows
of the global batch (`shared_data.batches.worker_slice` by process index).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpath.common.distributed import DEVICES_ENV, FORM_ENV
from shared_data.batches import local_batch_size, worker_slice

FORMS = ("pmap", "sharding", "shard_map")
AXIS = "data"

_batch_axis: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch_axis", default=None)


def batch_axis() -> str | None:
    """The mesh axis the batch is split over while a per-device step is traced, else None."""
    return _batch_axis.get()


@contextlib.contextmanager
def binding_batch_axis(axis: str) -> Iterator[None]:
    """Bind `batch_axis()` to `axis` for the code traced inside (BatchNorm reads it)."""
    token = _batch_axis.set(axis)
    try:
        yield
    finally:
        _batch_axis.reset(token)


def setting_from_env(parallel: str | None, devices: int | None) -> tuple[str | None, int | None]:
    """(form, devices): the arguments, else $ROADMAP_JAX_PARALLEL / $ROADMAP_JAX_DEVICES.

    A device count without a form means "sharding"; neither means no data parallelism.
    """
    parallel = parallel or os.environ.get(FORM_ENV) or None
    if devices is None and os.environ.get(DEVICES_ENV):
        try:
            devices = int(os.environ[DEVICES_ENV])
        except ValueError:
            value = os.environ[DEVICES_ENV]
            raise ValueError(f"${DEVICES_ENV} must be an integer, got {value!r}") from None
    if devices is not None and parallel is None:
        parallel = "sharding"
    if parallel is not None and parallel not in FORMS:
        raise ValueError(f"the parallel form must be one of {FORMS}, got {parallel!r}")
    return parallel, devices


def data_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh named "data" over the first `devices` devices (default: all, every process)."""
    available = jax.devices()
    count = len(available) if devices is None else devices
    if count < 1:
        raise ValueError(f"devices must be >= 1, got {count}")
    if count > len(available):
        raise ValueError(
            f"{count} devices asked for, JAX sees {len(available)} ({jax.default_backend()}); "
            "on the CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX "
            "is imported (`roadmap run --devices N` does)"
        )
    if jax.process_count() > 1 and count != len(available):
        raise ValueError(
            f"with {jax.process_count()} processes the mesh spans every device "
            f"({len(available)}); drop devices={count}"
        )
    return Mesh(np.array(available[:count]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array of `tree` as one copy per device of `mesh` (the same on every process)."""
    sharding = replicated(mesh)

    def put(leaf):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            return leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        value = np.asarray(leaf)  # every process holds the same value
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


class DataParallel:
    """One form of data parallelism over a mesh: batch placement and the wrapped step."""

    def __init__(self, form: str, devices: int | None = None):
        if form not in FORMS:
            raise ValueError(f"the parallel form must be one of {FORMS}, got {form!r}")
        self.form = form
        self.mesh = data_mesh(devices)
        self.devices = self.mesh.size

    def check_batch_size(self, batch_size: int, field: str = "batch_size") -> None:
        """Raise ValueError naming `field` unless `batch_size` splits over the devices."""
        try:
            local_batch_size(batch_size, self.devices)
        except ValueError as err:
            raise ValueError(f"field '{field}': {err}") from None

    def to_device(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """A global numpy batch as global arrays: rows split over the devices when they divide.

        Each process contributes only its `worker_slice` of the rows. A batch whose rows do
        not divide (an evaluation batch) is replicated instead, whole on every device.
        """
        rows = len(next(iter(batch.values())))
        if rows % self.devices:
            return replicate(dict(batch), self.mesh)
        sharding = batch_sharded(self.mesh)
        local = worker_slice(batch, jax.process_index(), jax.process_count())
        return {
            key: jax.make_array_from_process_local_data(sharding, value, batch[key].shape)
            for key, value in local.items()
        }

    def replicate(self, tree: Any) -> Any:
        return replicate(tree, self.mesh)

    def train_step(self, train_step: Callable) -> Callable:
        """`train_step(state, batch, rng)` run data-parallel in this form over the mesh."""
        return {"pmap": pmap_step, "sharding": sharding_step, "shard_map": shard_map_step}[
            self.form
        ](train_step, self.mesh)


def _per_device(train_step: Callable) -> Callable:
    """The body the per-device forms map: grads pmean'd, BatchNorm synced, sums psum'd."""

    def step(state, batch, rng):
        if not hasattr(state, "axis_name"):
            raise TypeError(
                f"{type(state).__name__} has no axis_name field; the pmap and shard_map "
                "forms need a jaxpath.common.state.TrainState (use parallel='sharding')"
            )
        rng = jax.random.fold_in(rng, jax.lax.axis_index(AXIS))  # each device its own dropout
        with binding_batch_axis(AXIS):
            state, sums = train_step(state.replace(axis_name=AXIS), batch, rng)
        return state.replace(axis_name=None), jax.lax.psum(sums, AXIS)

    return step


def pmap_step(train_step: Callable, mesh: Mesh) -> Callable:
    """The pmap form: `jax.pmap` over the mesh's devices, the batch reshaped per device."""
    mapped = jax.pmap(
        _per_device(train_step),
        axis_name=AXIS,
        in_axes=(None, 0, None),
        out_axes=(None, None),
        devices=list(mesh.devices.flat),
    )
    split = jax.jit(
        lambda batch: jax.tree.map(lambda x: x.reshape(mesh.size, -1, *x.shape[1:]), batch),
        out_shardings=batch_sharded(mesh),
    )

    def step(state, batch, rng):
        return mapped(state, split(batch), rng)

    step.mapped = mapped  # the pmap'd function itself (comparisons/ir/parallel.py lowers it)
    step.split = split
    return step


def sharding_step(train_step: Callable, mesh: Mesh) -> Callable:
    """The sharding form: `jax.jit` with the batch sharded and the state replicated."""
    return jax.jit(
        train_step,
        in_shardings=(replicated(mesh), batch_sharded(mesh), replicated(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
    )


def shard_map_step(train_step: Callable, mesh: Mesh) -> Callable:
    """The shard_map form: `jax.shard_map` with the explicit pmean, under jax.jit."""
    return jax.jit(
        jax.shard_map(
            _per_device(train_step),
            mesh=mesh,
            in_specs=(P(), P(AXIS), P()),
            out_specs=(P(), P()),
            # Unchecked, as pmap is: with check_vma=True, JAX would psum the gradients of the
            # replicated params itself (the transpose of their implicit broadcast), and the
            # explicit pmean would then average N already-summed copies (N times the step).
            check_vma=False,
        )
    )
