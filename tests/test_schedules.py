"""Optax schedules and torch schedulers give the same learning rate at every step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from comparisons.registry import get_project
from jaxpath.common import optim as jax_optim
from torchpath.common import optim as torch_optim


@pytest.mark.parametrize("schedule", ["constant", "step", "onecycle", "cosine"])
@pytest.mark.parametrize("steps_per_epoch,epochs", [(40, 3), (937, 1), (468, 2), (7, 1)])
def test_schedules_match(schedule, steps_per_epoch, epochs):
    # 937x1 and 468x2 are the default and fast recipes; 7 steps stresses phase rounding.
    config = dataclasses.replace(
        get_project("mnist").config(),
        schedule=schedule,
        epochs=epochs,
        lr=3e-3,
        warmup_epochs=0.5,
        optimizer="adam",
    )
    optax_schedule = jax_optim.make_schedule(config, steps_per_epoch)
    optimizer, scheduler = torch_optim.make_optimizer(
        config, steps_per_epoch, [torch.nn.Parameter(torch.zeros(1))]
    )
    torch_lrs = []
    for _ in range(config.epochs * steps_per_epoch):
        torch_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    optax_lrs = [float(optax_schedule(i)) for i in range(len(torch_lrs))]
    np.testing.assert_allclose(optax_lrs, torch_lrs, rtol=2e-6, atol=1e-9)
    distinct = len(set(np.round(torch_lrs, 12)))  # the schedule really varies
    assert distinct == {"constant": 1, "step": epochs}.get(schedule, distinct)
    if schedule in ("onecycle", "cosine"):
        assert distinct > 2


def test_unknown_names_raise():
    config = dataclasses.replace(get_project("mnist").config(), schedule="linear")
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        jax_optim.make_schedule(config, 10)
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        torch_optim.make_optimizer(
            dataclasses.replace(config, optimizer="lamb"), 10, [torch.nn.Parameter(torch.zeros(1))]
        )
