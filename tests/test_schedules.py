"""Optax schedules and torch schedulers give the same learning rate at every step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from comparisons.registry import get_project
from jaxpath.common import optim as jax_optim
from shared_data.configs.base import OPTIMIZERS, SCHEDULES, ConfigError
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


def test_unknown_names_raise_when_the_config_is_made():
    # The config refuses them before any optimizer is built (shared_data/configs/base.py).
    config = get_project("mnist").config()
    with pytest.raises(ConfigError, match="field 'schedule' wants one of"):
        dataclasses.replace(config, schedule="linear")
    with pytest.raises(ConfigError, match="field 'optimizer' wants one of"):
        dataclasses.replace(config, optimizer="lamb")


def test_optimizer_builders_know_every_configurable_name():
    # Every name the config accepts builds in both frameworks (no drift between the lists).
    config = get_project("mnist").config()
    for optimizer in OPTIMIZERS:
        for schedule in SCHEDULES:
            changed = dataclasses.replace(config, optimizer=optimizer, schedule=schedule)
            jax_optim.make_optimizer(changed, 10)
            torch_optim.make_optimizer(changed, 10, [torch.nn.Parameter(torch.zeros(1))])
