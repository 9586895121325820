"""Optax optimizers and schedules named by the shared config; mirrors torchpath/common/optim.py.

The schedule is a function of the optimizer step (one step per batch), so it matches a torch
scheduler stepped once per batch.
"""

from __future__ import annotations

import optax


def make_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """Learning-rate schedule `config.schedule` over `config.epochs` epochs."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        return optax.constant_schedule(config.lr)
    if config.schedule == "step":
        # == torch StepLR(step_size=steps_per_epoch, gamma) stepped per batch.
        return optax.exponential_decay(
            config.lr, transition_steps=steps_per_epoch, decay_rate=config.gamma, staircase=True
        )
    if config.schedule == "onecycle":
        # PARITY: torch's OneCycleLR puts its phase ends at pct*total - 1 and total - 1;
        # optax's at pct*total and total. Passing total + 1 and the adjusted pct lines them up.
        pct = 0.3
        peak_at = pct * total - 1
        return optax.cosine_onecycle_schedule(
            total, config.lr, pct_start=peak_at / total, div_factor=25.0, final_div_factor=1e4
        )
    if config.schedule == "cosine":
        warmup = int(config.warmup_epochs * steps_per_epoch)
        return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, total, end_value=0.0)
    raise ValueError(
        f"unknown schedule {config.schedule!r}; known: constant, step, onecycle, cosine"
    )


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
    """Optimizer `config.optimizer` with torch.optim's semantics (L2 added to the gradient)."""
    schedule = make_schedule(config, steps_per_epoch)
    if config.optimizer == "sgd":
        # torch SGD: buf = m * buf + g; p -= lr * buf  ==  optax.trace then scale.
        tx = optax.sgd(schedule, momentum=config.momentum or None)
    elif config.optimizer == "adam":
        tx = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    elif config.optimizer == "adadelta":
        tx = optax.adadelta(schedule, rho=0.9, eps=1e-6)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; known: sgd, adam, adadelta")
    if config.weight_decay:
        # PARITY: torch.optim's weight_decay adds wd * p to the gradient before the update.
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return tx
