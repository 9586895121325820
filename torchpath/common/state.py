"""The torch training state: the counterpart of jaxpath's TrainState, held by reference."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from torchpath.common.init import build_seeded
from torchpath.common.optim import make_optimizer


@dataclasses.dataclass
class TorchState:
    """model, optimizer, scheduler and the global step; mutated in place by train_step."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    step: int = 0


def new_torch_state(
    build_model: Callable[[], nn.Module],
    config,
    steps_per_epoch: int,
    init_weights: Any,
    *,
    state_class: type[TorchState] = TorchState,
    **fields: Any,
) -> TorchState:
    """The built model's parameters (from `config.seed`, or `init_weights`) and optimizer.

    `fields` set a state subclass's own fields.
    """
    # PARITY: JAX's twin takes the model and its dummy inputs; torch builds the module
    # under the seed, which initialises it.
    model = build_seeded(build_model, config.seed)
    if init_weights is not None:
        model.load_state_dict(init_weights, strict=True)  # raises on any shape mismatch
    optimizer, scheduler = make_optimizer(config, steps_per_epoch, model.parameters())
    return state_class(model=model, optimizer=optimizer, scheduler=scheduler, **fields)


def num_params(model: nn.Module) -> int:
    """Number of trainable scalars of a model."""
    return int(sum(p.numel() for p in model.parameters()))
