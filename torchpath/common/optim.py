"""torch.optim optimizers and schedulers named by the shared config; mirrors jaxpath's optim.py.

Schedulers are stepped once per batch, so they match Optax schedules of the optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from shared_data.configs.base import ConfigError, ParamGroup

DEFAULT_GROUP = "default"  # parameters in no named group


def make_schedule(config, steps_per_epoch: int, optimizer: torch.optim.Optimizer):
    """LR scheduler `config.schedule` over `config.epochs` epochs, stepped per update.

    An epoch of `steps_per_epoch` batches makes steps_per_epoch // accumulate_steps updates.
    A param group's "active_steps" (make_optimizer sets it from its ParamGroup) stops that
    group there; that needs a schedule other than onecycle.
    """
    steps_per_epoch = updates_per_epoch(config, steps_per_epoch)
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler
    stops = [g.get("active_steps") for g in optimizer.param_groups]
    stopping_groups = any(stop is not None for stop in stops)
    if config.schedule == "onecycle" and stopping_groups:
        raise ConfigError(
            "a parameter group trained for its first steps only needs a schedule other than "
            "onecycle (torch's OneCycleLR has no per-group stop)"
        )

    def per_group(factor):
        # LambdaLR takes one factor per param group; a group stops at its active_steps.
        def stopping(stop):
            return lambda step: factor(step) if step < stop else 0.0

        if not stopping_groups:
            return factor
        return [factor if stop is None else stopping(stop) for stop in stops]

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


def updates_per_epoch(config, steps_per_epoch: int) -> int:
    """Optimizer updates in an epoch of `steps_per_epoch` batches (accumulate_steps per one)."""
    return max(1, steps_per_epoch // config.accumulate_steps)


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
    The config's recipe knobs (accumulation, clipping, EMA) wrap both in `Recipe`.
    """
    lr = config.peak_lr()
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
                "lr": lr * groups[n].lr_scale,
                "weight_decay": config.weight_decay * groups[n].wd_scale,
                "active_steps": groups[n].active_steps,
            }
            for n in trained
        ]
    if not config.decay_norms_and_biases:
        params = _undecayed_1d(params)
    optimizer = _optimizer(config, params)
    scheduler = make_schedule(config, steps_per_epoch, optimizer)
    if (config.accumulate_steps, config.clip_grad_norm, config.ema_decay) == (1, None, 0.0):
        return optimizer, scheduler
    recipe = Recipe(optimizer, config.accumulate_steps, config.clip_grad_norm, config.ema_decay)
    return recipe, RecipeScheduler(scheduler, recipe)


def _undecayed_1d(params) -> list[dict]:
    """Param groups with the 1-D parameters (biases, norms) moved to groups of no decay."""
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    split = []
    for group in groups:
        params = list(group["params"])
        split.append({**group, "params": [p for p in params if p.ndim > 1]})
        # PARITY: optax.add_decayed_weights(mask=ndim > 1); same lr, schedule and stop.
        split.append({**group, "params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0})
    return split


def _optimizer(config, params) -> torch.optim.Optimizer:
    """The torch.optim optimizer of `config.optimizer` (weight decay coupled, as L2)."""
    lr = config.peak_lr()
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params,
            lr=lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(
            params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
        )
    elif config.optimizer == "adadelta":
        optimizer = torch.optim.Adadelta(
            params, lr=lr, rho=0.9, eps=1e-6, weight_decay=config.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; known: sgd, adam, adadelta")
    return optimizer


class Recipe:
    """An optimizer with gradient accumulation, clipping and a parameter EMA around it.

    The projects' train steps call zero_grad, backward, step as usual. `step` counts
    batches; every `accumulate_steps`-th it divides the summed gradients by that count
    (their mean), scales them to `clip_norm` global L2 norm at most, updates, and moves
    the EMA towards the new parameters; zero_grad clears the gradients only after an update.
    The twin of optax.MultiSteps(chain(clip_by_global_norm, tx, ema_params)) in
    jaxpath/common/optim.py. Its state_dict holds the pending gradients and the EMA, so
    resume in the middle of an accumulation is exact.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        accumulate_steps: int = 1,
        clip_norm: float | None = None,
        ema_decay: float = 0.0,
    ):
        self.optimizer = optimizer
        self.accumulate_steps = accumulate_steps
        self.clip_norm = clip_norm
        self.ema_decay = ema_decay
        self.pending = 0  # batches whose gradients are summed in .grad, not yet applied
        self.ema = [p.detach().clone() for p in self.params] if ema_decay else None

    @property
    def params(self) -> list[torch.Tensor]:
        """Every parameter the optimizer updates, in its param groups' order."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def param_groups(self) -> list[dict]:
        """The wrapped optimizer's param groups (learning rates, weight decay)."""
        return self.optimizer.param_groups

    @property
    def state(self):
        """The wrapped optimizer's per-parameter state."""
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients, unless a partial accumulation is still summing into them."""
        if self.pending == 0:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> bool:
        """Count one batch; on the last of `accumulate_steps`, update. True when it updated."""
        self.pending += 1
        if self.pending < self.accumulate_steps:
            return False
        self.pending = 0
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.accumulate_steps > 1:
            torch._foreach_div_(grads, float(self.accumulate_steps))
        if self.clip_norm is not None:
            # PARITY: optax.clip_by_global_norm: g * max / norm when norm > max, with no
            # epsilon (torch.nn.utils.clip_grad_norm_ divides by norm + 1e-6).
            norm = torch.nn.utils.get_total_norm(grads)
            if norm > self.clip_norm:
                torch._foreach_mul_(grads, self.clip_norm / norm)
        self.optimizer.step()
        if self.ema is not None:
            torch._foreach_lerp_(self.ema, self.params, 1.0 - self.ema_decay)
        return True

    def ema_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """`model`'s state_dict with the EMA in place of each parameter (buffers as they are)."""
        if self.ema is None:
            raise ValueError("no EMA: set the config's ema_decay")
        averaged = {id(p): e for p, e in zip(self.params, self.ema, strict=True)}
        names = {id(p): name for name, p in model.named_parameters()}
        out = dict(model.state_dict())
        for key, value in averaged.items():
            out[names[key]] = value.clone()
        return out

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, the pending gradient sums and the EMA."""
        grads = [None if p.grad is None else p.grad.clone() for p in self.params]
        return {
            "optimizer": self.optimizer.state_dict(),
            "pending": self.pending,
            "grads": grads if self.pending else None,
            "ema": self.ema,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (a resumed run continues the accumulation)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.pending = int(state["pending"])
        if state["grads"] is not None:
            for param, grad in zip(self.params, state["grads"], strict=True):
                param.grad = None if grad is None else grad.clone()
        if self.ema is not None:
            for ema, saved in zip(self.ema, state["ema"], strict=True):
                ema.copy_(saved)


class RecipeScheduler:
    """An LR scheduler stepped once per update of a `Recipe`, not once per batch."""

    def __init__(self, scheduler, recipe: Recipe):
        self.scheduler = scheduler
        self.recipe = recipe

    def step(self) -> None:
        """Advance the schedule if the batch just counted completed an update."""
        if self.recipe.pending == 0:
            self.scheduler.step()

    def get_last_lr(self) -> list[float]:
        """The learning rate of every param group."""
        return self.scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """The wrapped scheduler's state."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the wrapped scheduler's state."""
        self.scheduler.load_state_dict(state)
