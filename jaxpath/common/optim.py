"""Optax optimizers and schedules named by the shared config; mirrors torchpath/common/optim.py.

The schedule is a function of the optimizer step (one step per batch), so it matches a torch
scheduler stepped once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from shared_data.configs.base import ParamGroup

DEFAULT_GROUP = "default"  # parameters in no named group


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
        return torch_onecycle(config.lr, total)
    if config.schedule == "cosine":
        warmup = int(config.warmup_epochs * steps_per_epoch)
        return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, total, end_value=0.0)
    if config.schedule == "linear":
        # Linear warm-up from lr x start to lr, then linear decay to lr x end at the last step.
        warmup = int(config.warmup_epochs * steps_per_epoch)
        start, end = config.lr * config.lr_start_factor, config.lr * config.lr_end_factor
        return optax.join_schedules(
            [
                optax.linear_schedule(start, config.lr, max(warmup, 1)),
                optax.linear_schedule(config.lr, end, max(total - warmup, 1)),
            ],
            [warmup],
        )
    raise ValueError(
        f"unknown schedule {config.schedule!r}; known: constant, step, onecycle, cosine, linear"
    )


def torch_onecycle(
    peak: float,
    total: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> optax.Schedule:
    """One-cycle cosine schedule with torch.optim.lr_scheduler.OneCycleLR's exact phase ends."""
    # PARITY: optax.cosine_onecycle_schedule rounds its phase boundary to a whole step
    # (int(pct * total)); torch puts it at the float pct * total - 1 and ends at total - 1.
    # The peak then lands a step apart and every rate differs by up to a few 1e-3.
    initial = peak / div_factor
    final = initial / final_div_factor
    warm_end, last = pct_start * total - 1.0, total - 1.0

    def cos_anneal(start, end, pct):
        return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1.0)

    def schedule(count):
        step = jnp.asarray(count, jnp.float32)
        rising = cos_anneal(initial, peak, step / warm_end)
        falling = cos_anneal(peak, final, (step - warm_end) / (last - warm_end))
        return jnp.where(step <= warm_end, rising, falling)

    return schedule


def make_optimizer(
    config,
    steps_per_epoch: int,
    groups: Mapping[str, ParamGroup] | None = None,
    group_of: Callable[[tuple[str, ...]], str | None] | None = None,
) -> optax.GradientTransformation:
    """Optimizer `config.optimizer` with torch.optim's semantics (L2 added to the gradient).

    `groups` (name -> ParamGroup) and `group_of` (parameter path -> group name or None) give
    some parameters their own learning rate and weight decay, or freeze them: one
    `optax.multi_transform` branch per group, as torch's optimizer has one param group each.
    """
    schedule = make_schedule(config, steps_per_epoch)
    if not groups:
        return _optimizer(config, schedule, config.weight_decay)
    branches = {DEFAULT_GROUP: _optimizer(config, schedule, config.weight_decay)}
    for name, group in groups.items():
        if not group.trainable:
            branches[name] = optax.set_to_zero()  # PARITY: torch's requires_grad=False
        else:
            branches[name] = _optimizer(
                config, _scaled(schedule, group), config.weight_decay * group.wd_scale
            )

    def labels(params):
        def label(path, _):
            return group_of(tuple(str(getattr(k, "key", k)) for k in path)) or DEFAULT_GROUP

        return jax.tree_util.tree_map_with_path(label, params)

    return optax.multi_transform(branches, labels)


def _scaled(schedule: optax.Schedule, group: ParamGroup) -> optax.Schedule:
    """The group's schedule: x lr_scale, and zero from step `active_steps` on."""

    def scaled(count):
        lr = schedule(count) * group.lr_scale
        if group.active_steps is not None:
            lr = jnp.where(count < group.active_steps, lr, 0.0)
        return lr

    return scaled


def _optimizer(config, schedule: optax.Schedule, weight_decay: float):
    """One optimizer of `config.optimizer` over `schedule`, with coupled weight decay."""
    if config.optimizer == "sgd":
        # torch SGD: buf = m * buf + g; p -= lr * buf  ==  optax.trace then scale; Nesterov
        # (torch's and optax's alike): p -= lr * (g + m * buf).
        tx = optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
    elif config.optimizer == "adam":
        tx = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    elif config.optimizer == "adadelta":
        tx = optax.adadelta(schedule, rho=0.9, eps=1e-6)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; known: sgd, adam, adadelta")
    if weight_decay:
        # PARITY: torch.optim's weight_decay is coupled: it adds wd * p to the gradient
        # before momentum and the learning rate (AdamW's decoupled decay is another thing).
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx
