"""The torch training state: the counterpart of jaxpath's TrainState, held by reference."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn


@dataclasses.dataclass
class TorchState:
    """model, optimizer, scheduler and the global step; mutated in place by train_step."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    step: int = 0


def num_params(model: nn.Module) -> int:
    """Number of trainable scalars of a model."""
    return int(sum(p.numel() for p in model.parameters()))
