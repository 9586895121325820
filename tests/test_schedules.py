"""Optax schedules and torch schedulers give the same learning rate at every step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from comparisons.registry import get_project
from jaxpath.common import optim as jax_optim
from shared_data.configs.base import OPTIMIZERS, SCHEDULES, ConfigError, ParamGroup
from torchpath.common import optim as torch_optim


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("steps_per_epoch,epochs", [(40, 3), (937, 1), (468, 2), (7, 1)])
def test_schedules_match(schedule, steps_per_epoch, epochs):
    # 937x1 and 468x2 are the default and fast recipes; 7 steps stresses phase rounding.
    config = dataclasses.replace(
        get_project("mnist").config(),
        schedule=schedule,
        epochs=epochs,
        lr=3e-3,
        warmup_epochs=0.5,
        lr_start_factor=0.2,  # the "linear" schedule: airbench's triangle
        lr_end_factor=0.07,
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
    if schedule in ("onecycle", "cosine", "linear"):
        assert distinct > 2


def test_unknown_names_raise_when_the_config_is_made():
    # The config refuses them before any optimizer is built (shared_data/configs/base.py).
    config = get_project("mnist").config()
    with pytest.raises(ConfigError, match="field 'schedule' wants one of"):
        dataclasses.replace(config, schedule="triangular")
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


GROUPS = {
    "fast": ParamGroup(lr_scale=64.0, wd_scale=1 / 64),
    "frozen": ParamGroup(trainable=False),
    "early": ParamGroup(lr_scale=2.0, active_steps=5),
}


def _group_of(path):
    return {"b": "fast", "c": "frozen", "d": "early"}.get(path[0])


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "linear"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_parameter_groups_update_alike(schedule, nesterov):
    # Per-group learning rate and weight decay, a frozen group and one trained for its first
    # steps only: the same parameters after every step in both frameworks (SGD, coupled L2).
    import jax.numpy as jnp
    import optax

    config = dataclasses.replace(
        get_project("mnist").config(),
        optimizer="sgd",
        momentum=0.85,
        nesterov=nesterov,
        lr=0.05,
        weight_decay=1e-2,
        schedule=schedule,
        epochs=2,
        warmup_epochs=0.5,
        lr_start_factor=0.2,
        lr_end_factor=0.07,
    )
    steps = 12
    start = {k: np.linspace(-1, 1, 3, dtype=np.float32) * (i + 1) for i, k in enumerate("abcd")}
    grads = [
        {k: np.random.default_rng([i, j]).standard_normal(3).astype(np.float32) for j, k in
         enumerate("abcd")}
        for i in range(steps)
    ]  # fmt: skip
    tx = jax_optim.make_optimizer(config, steps // 2, GROUPS, _group_of)
    params = {k: jnp.asarray(v) for k, v in start.items()}
    opt_state = tx.init(params)
    torch_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in start.items()}
    optimizer, scheduler = torch_optim.make_optimizer(
        config, steps // 2, list(torch_params.items()), GROUPS, _group_of
    )
    assert not torch_params["c"].requires_grad  # frozen: autograd skips it entirely
    after_five = None
    for i, g in enumerate(grads):
        if i == 5:
            after_five = np.asarray(params["d"])
        updates, opt_state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, opt_state, params)
        params = optax.apply_updates(params, updates)
        for k, p in torch_params.items():
            p.grad = torch.tensor(g[k]) if p.requires_grad else None
        optimizer.step()
        scheduler.step()
    for k in "abcd":
        np.testing.assert_allclose(
            np.asarray(params[k]), torch_params[k].detach().numpy(), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_array_equal(np.asarray(params["c"]), start["c"])  # frozen
    assert not np.allclose(np.asarray(params["b"]), start["b"])
    # "early" trained for its first 5 steps and has not moved since.
    assert not np.allclose(after_five, start["d"])
    np.testing.assert_array_equal(np.asarray(params["d"]), after_five)


def test_active_steps_refuses_onecycle():
    config = dataclasses.replace(get_project("mnist").config(), schedule="onecycle")
    params = [("d.w", torch.nn.Parameter(torch.zeros(2)))]
    with pytest.raises(ConfigError, match="other than onecycle"):
        torch_optim.make_optimizer(config, 5, params, GROUPS, _group_of)


def test_nesterov_needs_momentum():
    config = dataclasses.replace(get_project("mnist").config(), optimizer="sgd")
    with pytest.raises(ConfigError, match="field 'nesterov' wants SGD with momentum > 0"):
        dataclasses.replace(config, nesterov=True, momentum=0.0)
