"""torch.optim optimizers and schedulers named by the shared config; mirrors jaxpath's optim.py.

Schedulers are stepped once per batch, so they match Optax schedules of the optimizer step.
"""

from __future__ import annotations

import math

import torch


def make_schedule(config, steps_per_epoch: int, optimizer: torch.optim.Optimizer):
    """LR scheduler `config.schedule` over `config.epochs` epochs, stepped per batch."""
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler
    if config.schedule == "constant":
        return sched.LambdaLR(optimizer, lambda step: 1.0)
    if config.schedule == "step":
        return sched.StepLR(optimizer, step_size=steps_per_epoch, gamma=config.gamma)
    if config.schedule == "onecycle":
        # PARITY: cycle_momentum off; the Optax side does not touch Adam's betas.
        return sched.OneCycleLR(
            optimizer,
            max_lr=config.lr,
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

        return sched.LambdaLR(optimizer, factor)
    raise ValueError(
        f"unknown schedule {config.schedule!r}; known: constant, step, onecycle, cosine"
    )


def make_optimizer(config, steps_per_epoch: int, params):
    """(optimizer, scheduler) for `config.optimizer`, with torch.optim's L2 weight decay."""
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
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
    return optimizer, make_schedule(config, steps_per_epoch, optimizer)
