"""Optax optimizers and schedules named by the shared config; mirrors torchpath/common/optim.py.

The schedule is a function of the optimizer step (one step per batch), so it matches a torch
scheduler stepped once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from shared_data.configs.base import ParamGroup

DEFAULT_GROUP = "default"  # parameters in no named group


def make_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """Learning-rate schedule `config.schedule` over `config.epochs` epochs.

    The schedule counts updates: `steps_per_epoch` batches make steps_per_epoch //
    accumulate_steps of them. Its peak is `config.peak_lr()` (lr scaled with the batch).
    """
    steps_per_epoch = updates_per_epoch(config, steps_per_epoch)
    total = max(1, config.epochs * steps_per_epoch)
    lr, warmup = config.peak_lr(), int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "step":
        # == torch StepLR(step_size=steps_per_epoch, gamma) stepped per batch.
        return optax.exponential_decay(
            lr, transition_steps=steps_per_epoch, decay_rate=config.gamma, staircase=True
        )
    if config.schedule == "onecycle":
        return torch_onecycle(lr, total)
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=0.0)
    if config.schedule == "linear":
        # Linear warm-up from lr x start to lr, then linear decay to lr x end at the last step.
        start, end = lr * config.lr_start_factor, lr * config.lr_end_factor
        return optax.join_schedules(
            [
                optax.linear_schedule(start, lr, max(warmup, 1)),
                optax.linear_schedule(lr, end, max(total - warmup, 1)),
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
        return with_recipe(config, _optimizer(config, schedule, config.weight_decay))
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

    frozen = [n for n, g in groups.items() if not g.trainable]
    # PARITY: torch's frozen parameters have no gradient, so none enters the clipping norm.
    no_grad = optax.multi_transform(
        {n: optax.set_to_zero() if n in frozen else optax.identity() for n in branches}, labels
    )
    return with_recipe(config, optax.multi_transform(branches, labels), frozen and no_grad)


def updates_per_epoch(config, steps_per_epoch: int) -> int:
    """Optimizer updates in an epoch of `steps_per_epoch` batches (accumulate_steps per one)."""
    return max(1, steps_per_epoch // config.accumulate_steps)


def with_recipe(config, tx, first=None) -> optax.GradientTransformation:
    """`tx` with the config's clipping, parameter EMA and gradient accumulation around it.

    Per update: (`first`), clip the mean gradient to `clip_grad_norm`, `tx`, then move the
    EMA towards the new parameters; `optax.MultiSteps` runs all that once every
    `accumulate_steps` batches on their mean gradient (zero updates in between).
    """
    parts = [first] if first else []
    if config.clip_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(config.clip_grad_norm))
    parts.append(tx)
    if config.ema_decay:
        parts.append(ema_params(config.ema_decay))
    tx = optax.chain(*parts) if len(parts) > 1 else tx
    if config.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=config.accumulate_steps)
    return tx


class EmaState(NamedTuple):
    """The exponential moving average of the parameters, kept in the optimizer state."""

    ema: optax.Params


def ema_params(decay: float) -> optax.GradientTransformation:
    """Track ema <- ema + (1 - decay) (params_new - ema) after each update; updates unchanged.

    The average lives in the optimizer state, so checkpoints hold it and resume restores it
    (torch's twin keeps it in the optimizer's state_dict). It starts at the initial weights.
    """

    def init(params):
        return EmaState(ema=jax.tree.map(jnp.asarray, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("ema_params needs the parameters: call tx.update(g, s, params)")
        new = optax.apply_updates(params, updates)
        # PARITY: the formula of torch's lerp_(new, 1 - decay).
        ema = jax.tree.map(lambda e, p: e + (1.0 - decay) * (p - e), state.ema, new)
        return updates, EmaState(ema=ema)

    return optax.GradientTransformation(init, update)


def ema_of(opt_state) -> optax.Params | None:
    """The parameter EMA held in an optimizer state (None without `ema_decay`)."""
    return optax.tree_utils.tree_get(opt_state, "ema")


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
        # decay_norms_and_biases=False: 1-D parameters undecayed (torch: their own group).
        mask = None if config.decay_norms_and_biases else _decayed
        tx = optax.chain(optax.add_decayed_weights(weight_decay, mask), tx)
    return tx


def _decayed(params):
    """True for the parameters weight decay applies to: all but biases and norms (1-D)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)
