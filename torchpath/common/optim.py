"""torch.optim optimizers and schedulers named by the shared config; mirrors jaxpath's optim.py.

Schedulers are stepped once per batch, so they match Optax schedules of the optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from shared_data.configs.base import ConfigError, ParamGroup

DEFAULT_GROUP = "default"  # parameters in no named group


def make_schedule(
    config,
    steps_per_epoch: int,
    optimizer: torch.optim.Optimizer,
    groups: Sequence[ParamGroup] = (),
):
    """LR scheduler `config.schedule` over `config.epochs` epochs, stepped per batch.

    `groups` are the ParamGroups of the optimizer's param groups after the first (the
    default group); a group's `active_steps` needs a schedule other than onecycle.
    """
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler
    stopping_groups = any(g.active_steps is not None for g in groups)
    if config.schedule == "onecycle" and stopping_groups:
        raise ConfigError(
            "a parameter group trained for its first steps only needs a schedule other than "
            "onecycle (torch's OneCycleLR has no per-group stop)"
        )

    def per_group(factor):
        # LambdaLR takes one factor per param group; a group stops at its active_steps.
        def stopping(group):
            return lambda step: factor(step) if step < group.active_steps else 0.0

        rest = [stopping(g) if g.active_steps is not None else factor for g in groups]
        return [factor, *rest] if groups else factor

    if config.schedule == "constant":
        return sched.LambdaLR(optimizer, per_group(lambda step: 1.0))
    if config.schedule == "step" and stopping_groups:
        # StepLR has no per-group stop: its closed form, per group, in a LambdaLR.
        return sched.LambdaLR(
            optimizer, per_group(lambda step: config.gamma ** (step // steps_per_epoch))
        )
    if config.schedule == "step":
        return sched.StepLR(optimizer, step_size=steps_per_epoch, gamma=config.gamma)
    if config.schedule == "onecycle":
        # PARITY: cycle_momentum off; the Optax side does not touch Adam's betas.
        return sched.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total,
            pct_start=0.3,
            anneal_strategy="cos",
            div_factor=25.0,
            final_div_factor=1e4,
            cycle_momentum=False,
        )
    if config.schedule == "cosine":
        warmup = int(config.warmup_epochs * steps_per_epoch)

        # PARITY: the closed form of optax.warmup_cosine_decay_schedule(0, lr, warmup, total);
        # torch's chained CosineAnnealingLR drifts from it by rounding at every step.
        def factor(step: int) -> float:
            if step < warmup:
                return step / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return sched.LambdaLR(optimizer, per_group(factor))
    if config.schedule == "linear":
        warmup = int(config.warmup_epochs * steps_per_epoch)
        start, end = config.lr_start_factor, config.lr_end_factor

        # PARITY: the closed form of optax.join_schedules of two optax.linear_schedule.
        def linear(step: int) -> float:
            if step < warmup:
                return start + (1.0 - start) * step / max(warmup, 1)
            progress = min(1.0, (step - warmup) / max(total - warmup, 1))
            return 1.0 + (end - 1.0) * progress

        return sched.LambdaLR(optimizer, per_group(linear))
    raise ValueError(
        f"unknown schedule {config.schedule!r}; known: constant, step, onecycle, cosine, linear"
    )


def make_optimizer(
    config,
    steps_per_epoch: int,
    params,
    groups: Mapping[str, ParamGroup] | None = None,
    group_of: Callable[[tuple[str, ...]], str | None] | None = None,
):
    """(optimizer, scheduler) for `config.optimizer`, with torch.optim's L2 weight decay.

    With `groups` (name -> ParamGroup) and `group_of` (parameter path -> group name or
    None), `params` are `model.named_parameters()`: each group becomes a torch param group
    with its own learning rate and weight decay, and frozen groups get requires_grad=False.
    """
    if groups:
        named = {name: [] for name in (DEFAULT_GROUP, *groups)}
        for path, param in params:
            name = group_of(tuple(path.split("."))) or DEFAULT_GROUP
            if name not in named:
                raise ValueError(f"parameter {path} is in group {name!r}, which is not declared")
            if name != DEFAULT_GROUP and not groups[name].trainable:
                param.requires_grad_(False)
            else:
                named[name].append(param)
        trained = [n for n in groups if groups[n].trainable]
        params = [{"params": named[DEFAULT_GROUP]}] + [
            {
                "params": named[n],
                "lr": config.lr * groups[n].lr_scale,
                "weight_decay": config.weight_decay * groups[n].wd_scale,
            }
            for n in trained
        ]
        optimizer = _optimizer(config, params)
        return optimizer, make_schedule(
            config, steps_per_epoch, optimizer, [groups[n] for n in trained]
        )
    optimizer = _optimizer(config, params)
    return optimizer, make_schedule(config, steps_per_epoch, optimizer)


def _optimizer(config, params) -> torch.optim.Optimizer:
    """The torch.optim optimizer of `config.optimizer` (weight decay coupled, as L2)."""
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(
            params, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
        )
    elif config.optimizer == "adadelta":
        optimizer = torch.optim.Adadelta(
            params, lr=config.lr, rho=0.9, eps=1e-6, weight_decay=config.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; known: sgd, adam, adadelta")
    return optimizer
