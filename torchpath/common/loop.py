"""The torch side of the shared training loop; mirrors jaxpath/common/loop.py.

shared_data/training.py drives every epoch; this file supplies what only torch knows:
tensors in NCHW, a seed derived from the step for the global RNG, and device syncs. Under
torchrun, `fit` trains data-parallel (DDP, common/distributed.py) with no change elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared_data import training
from shared_data.tasks import Task
from torchpath.common import distributed
from torchpath.common.checkpoint import Checkpointer
from torchpath.common.state import num_params


def to_layout(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """One batch field in torch's layout: the one place where NHWC images become NCHW."""
    # Tensor in, tensor out, so torch.export can trace it (comparisons/export uses it too).
    if key == "image" and tensor.ndim == 4:
        return tensor.permute(0, 3, 1, 2).contiguous()  # PARITY: NHWC -> NCHW
    if key == "label":
        return tensor.long()  # PARITY: torch's losses want int64 class indices
    return tensor


def to_device(batch: dict[str, np.ndarray], device: str | torch.device = "cpu"):
    """Move a numpy batch to `device` in torch's layout (`to_layout`)."""
    # PARITY: the JAX twin has no device argument; jax places arrays on its default device.
    return {
        key: to_layout(key, torch.from_numpy(np.ascontiguousarray(value))).to(device)
        for key, value in batch.items()
    }


def step_rng(seed: int, step: int) -> int:
    """The seed of one training step: a pure function of (seed, step), so resume is exact."""
    # torch draws dropout masks from a global generator; train_step reseeds it from this.
    return (seed * 1_000_003 + step) % (2**63)


def add_sums(sums: dict[str, torch.Tensor], metrics: dict[str, torch.Tensor]) -> dict:
    """The accumulators plus one step's metric sums."""
    # PARITY: JAX compiles this add into one call; eager torch adds each scalar in turn.
    return {k: sums[k] + metrics[k] for k in sums}


def zero_sums(keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Metric accumulators at the start of an epoch."""
    return {k: torch.zeros((), dtype=torch.float32) for k in keys}


def _synchronize(value: Any) -> Any:
    # CPU kernels run synchronously; CUDA kernels must finish before a timer stops.
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value


FRAMEWORK = training.Framework(
    name="torch",
    to_device=to_device,
    step_rng=step_rng,
    zero_sums=zero_sums,
    add_sums=add_sums,
    sums_from_floats=lambda sums: {
        k: torch.tensor(v, dtype=torch.float32) for k, v in sums.items()
    },
    block=_synchronize,
    num_params=lambda state: num_params(state.model),
    checkpointer=Checkpointer,
    to_numpy=lambda out: out.detach().cpu().numpy(),
    # PARITY: the JAX twin evaluates its Optax schedule at the state's step.
    learning_rate=lambda state: float(state.scheduler.get_last_lr()[0]),
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
    **options: Any,
) -> dict[str, Any]:
    """Train `state` on `dataset` for `config.epochs`, evaluating each epoch; returns a summary.

    `options`: predict, on_epoch_end, resume, progress (see shared_data.training.fit). In a
    process torchrun started as one of several, every rank trains on its rows of each global
    batch under DDP, and rank 0 writes the run (common/distributed.py).
    """
    # PARITY: no slow-runtime warning here; the allocator and XLA flags it checks are JAX's.
    run = distributed.fit if distributed.launched() else training.fit
    return run(FRAMEWORK, task, config, workdir, state, train_step, eval_step, dataset, **options)
