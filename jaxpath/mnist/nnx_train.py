"""MNIST training in Flax NNX: stateful module and optimizer objects, stepped under nnx.jit.

JAX-only, with no torchpath twin: it is the third column of docs/STYLES.md, to be read
beside jaxpath/mnist/train.py (Linen: explicit params, a pure step returning a new state)
and torchpath/mnist/train.py (PyTorch: objects mutated in place). Selected by
`--set style=nnx` (`roadmap run mnist --framework jax --set style=nnx`); same functions in
the same order as train.py, and the same driver (shared_data/training.py via
jaxpath/common/loop.py): logs, metrics, checkpoints and exact resume.

The driver's contract is `train_step(state, batch, rng) -> (state, metrics)` over a state
with `params`, `opt_state`, `step` and `replace` (what jaxpath/common/checkpoint.py saves and
restores). `NnxState` meets it around the live objects: its `params` and `opt_state` are
`nnx.state(...)` views (pytrees Orbax writes as it writes Linen's), and `replace` writes a
restored pytree back into the objects with `nnx.update`. The step mutates the objects and
returns the same `NnxState`, as torch's train_step returns its TorchState.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpath.common.loop import fit
from jaxpath.common.metrics import classification_sums, cross_entropy
from jaxpath.common.optim import make_optimizer, make_schedule
from jaxpath.mnist.nnx_model import create_model, linen_params, load_linen_params
from shared_data.configs.mnist import get_task
from shared_data.datasets import load_for_config
from shared_data.training import train_steps_per_epoch


class NnxState:
    """An NNX model and its nnx.Optimizer, seen by the driver as a TrainState-like record."""

    batch_stats = None  # the CNN has no BatchNorm (an NNX BatchNorm keeps them in the model)
    ema = None

    def __init__(self, model: nnx.Module, optimizer: nnx.Optimizer, lr_schedule: Callable):
        self.model = model
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule  # the learning rate as a function of the step, to log

    @property
    def params(self):
        """The parameters, in Linen's layout ({"conv1": {"kernel", "bias"}, ...})."""
        return linen_params(self.model)

    @property
    def opt_state(self) -> nnx.State:
        """The optimizer's state (Adam's moments, its step count) as a pytree."""
        return nnx.state(self.optimizer, nnx.OptState)

    @property
    def step(self) -> jax.Array:
        """Optimizer steps taken (nnx.Optimizer counts them in a uint32)."""
        return self.optimizer.step[...]

    def replace(self, **fields: Any) -> NnxState:
        """Write restored `params`, `opt_state` and `step` into the objects; returns self."""
        # In place, as torch's load_state_dict: the objects are the state.
        if fields.get("params") is not None:
            load_linen_params(self.model, fields["params"])
        if fields.get("opt_state") is not None:
            nnx.update(self.optimizer, fields["opt_state"])
        if fields.get("step") is not None:
            self.optimizer.step[...] = jnp.asarray(fields["step"], self.step.dtype)
        unknown = {k for k, v in fields.items() if v is not None} - {"params", "opt_state", "step"}
        if unknown:
            raise ValueError(f"an NNX state has no {sorted(unknown)}")
        return self


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> NnxState:
    """Model (weights from `config.seed`, or Linen `init_weights`) and optimizer objects."""
    model = create_model(config)
    if init_weights is not None:
        load_linen_params(model, init_weights["params"])
    # The same optax transformation as the Linen path, applied to the nnx.Param variables.
    tx = make_optimizer(config, steps_per_epoch)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return NnxState(model, optimizer, make_schedule(config, steps_per_epoch))


def loss_fn(model: nnx.Module, batch, rng):
    """Mean cross-entropy of the batch, and the logits it came from."""
    # PARITY: Linen's loss_fn takes the params pytree; NNX differentiates the module itself
    # (nnx.grad splits out its nnx.Param variables, as autograd finds torch's parameters).
    logits = model(batch["image"], train=True, rng=rng)
    return jnp.mean(cross_entropy(logits, batch["label"])), logits


@nnx.jit
def _train_step(model: nnx.Module, optimizer: nnx.Optimizer, batch, rng):
    """One optimizer step that updates `model` and `optimizer` in place; metric sums."""
    (_, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, rng)
    optimizer.update(model, grads)  # nnx.jit writes the new values back into the objects
    return classification_sums(logits, batch["label"])


def train_step(state: NnxState, batch, rng):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    return state, _train_step(state.model, state.optimizer, batch, rng)


def cached_train_step(state: NnxState) -> Callable:
    """`step(batch, rng) -> metrics` on `state`'s objects, with nnx.jit's graph walk cached.

    nnx.jit splits the objects into a graphdef and arrays on every call and merges them back
    afterwards, in Python; nnx.cached_partial does that once, for a loop that owns the
    objects (`roadmap styles` times both).
    """
    return nnx.cached_partial(_train_step, state.model, state.optimizer)


@nnx.jit
def _eval_step(model: nnx.Module, batch):
    return classification_sums(model(batch["image"]), batch["label"], batch.get("mask"))


def eval_step(state: NnxState, batch):
    """Metric sums of the model in inference mode (dropout off) on `batch`."""
    return _eval_step(state.model, batch)


@nnx.jit
def _predict(model: nnx.Module, images):
    return model(images)


def predict(state: NnxState, batch):
    """Logits of the model in inference mode."""
    return _predict(state.model, batch["image"])


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs and checkpoints under `workdir`."""
    dataset = load_for_config(config)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    return fit(
        get_task(config),
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        resume=resume,
        progress=progress,
    )


__all__ = [
    "NnxState",
    "create_state",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "train_and_evaluate",
    "cached_train_step",
]
