"""The torch training state: the counterpart of jaxpath's TrainState, held by reference."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from shared_data.configs.base import ParamGroup
from torchpath.common.init import build_seeded
from torchpath.common.optim import make_optimizer


@dataclasses.dataclass
class TorchState:
    """model, optimizer, scheduler and the global step; mutated in place by train_step.

    ema: a running average of the model's floating-point state_dict (None without one).
    """

    model: nn.Module
    optimizer: Any
    scheduler: Any
    step: int = 0
    ema: dict[str, Any] | None = None


def new_torch_state(
    build_model: Callable[[], nn.Module],
    config,
    steps_per_epoch: int,
    init_weights: Any,
    *,
    state_class: type[TorchState] = TorchState,
    groups: Mapping[str, ParamGroup] | None = None,
    group_of: Callable[[tuple[str, ...]], str | None] | None = None,
    **fields: Any,
) -> TorchState:
    """The built model's parameters (from `config.seed`, or `init_weights`) and optimizer.

    `fields` set a state subclass's own fields; `groups` and `group_of` give parameter
    groups their own optimizer settings (common/optim.py).
    """
    # PARITY: JAX's twin takes the model and its dummy inputs; torch builds the module
    # under the seed, which initialises it.
    model = build_seeded(build_model, config.seed)
    if init_weights is not None:
        model.load_state_dict(init_weights, strict=True)  # raises on any shape mismatch
    params = model.named_parameters() if groups else model.parameters()
    optimizer, scheduler = make_optimizer(config, steps_per_epoch, params, groups, group_of)
    return state_class(model=model, optimizer=optimizer, scheduler=scheduler, **fields)


def num_params(model: nn.Module) -> int:
    """Number of trainable scalars of a model."""
    return int(sum(p.numel() for p in model.parameters()))
