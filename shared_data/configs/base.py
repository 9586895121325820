"""Config plumbing shared by every project: checked fields, overrides, JSON round trip.

A project's config is a frozen dataclass deriving from `TrainConfig` (the fields every
training run has). Fields declared with `field(default, check)` carry a check; every field
is also checked against its type. `validate` runs both on every config object as it is made
(`__post_init__`), so a bad value fails when the config is loaded, before anything is built,
with one line that names the field, the value and what it wants.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A config field or value that does not exist or does not parse."""


class UnknownNameError(KeyError):
    """A project, framework or config variant that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _coerce(field: dataclasses.Field, hints: dict[str, Any], raw: str) -> Any:
    """Parse the string `raw` into the declared type of `field`."""
    hint = hints[field.name]
    if typing.get_origin(hint) is tuple:
        try:
            return tuple(int(v) for v in raw.split(",") if v.strip())
        except ValueError as err:
            raise ConfigError(
                f"field {field.name!r} wants integers like 256,128, got {raw!r}"
            ) from err
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and raw.lower() in ("none", "null", ""):
        return None
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if base is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"field {field.name!r} wants true/false, got {raw!r}")
    if base in (int, float, str):
        try:
            return base(raw)
        except ValueError as err:
            raise ConfigError(f"field {field.name!r} wants {base.__name__}, got {raw!r}") from err
    return json.loads(raw)


def override(config: Any, assignments: dict[str, Any] | list[str]) -> Any:
    """Return a copy of `config` with fields replaced; strings `key=value` are parsed by type."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    items = assignments.items() if isinstance(assignments, dict) else None
    if items is None:
        parsed = []
        for text in assignments:
            if "=" not in text:
                raise ConfigError(f"override {text!r} is not of the form key=value")
            key, raw = text.split("=", 1)
            parsed.append((key.strip(), raw.strip()))
        items = parsed
    for key, value in items:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"unknown config field {key!r} for {type(config).__name__}; known fields: {known}"
            )
        if isinstance(value, str) and not _is_str_field(hints[key]):
            value = _coerce(fields[key], hints, value)
        elif isinstance(value, str) and value.lower() in ("none", "null"):
            if type(None) in typing.get_args(hints[key]):
                value = None  # an optional string field set back to "unset"
        changes[key] = value
    return dataclasses.replace(config, **changes)


def _is_str_field(hint: Any) -> bool:
    """True when the field holds a string (possibly optional)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return str in args
    return hint is str


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON view of a config, with its class name."""
    return {"__class__": type(config).__name__, **dataclasses.asdict(config)}


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config from `to_dict`'s output; unknown keys raise."""
    data = {k: v for k, v in data.items() if k != "__class__"}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown fields {unknown} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if isinstance(value, list) and typing.get_origin(hints[key]) is tuple:
            data[key] = tuple(value)
    return cls(**data)


# ----------------------------------------------------------------------------- checks


@dataclasses.dataclass(frozen=True)
class Check:
    """A constraint on one field: `test(value)` is true when the value is good."""

    test: Callable[[Any], bool]
    wants: str  # what a good value is, for the error message
    bad: str  # a value (as typed on the command line) this check refuses; tests feed it

    def __call__(self, name: str, value: Any) -> None:
        if value is not None and not self.test(value):
            raise ConfigError(f"field {name!r} wants {self.wants}, got {value!r}")


def at_least(low: float) -> Check:
    """Numbers >= `low` (finite)."""
    return Check(lambda v: math.isfinite(v) and v >= low, f"a number >= {low}", str(low - 1))


def above(low: float) -> Check:
    """Numbers > `low` (finite)."""
    return Check(lambda v: math.isfinite(v) and v > low, f"a number > {low}", str(low))


def between(low: float, high: float) -> Check:
    """Numbers in [low, high]."""
    return Check(lambda v: low <= v <= high, f"a number in [{low}, {high}]", str(high + 1))


def one_of(*choices: str) -> Check:
    """One of the named choices."""
    return Check(lambda v: v in choices, f"one of {', '.join(choices)}", "nonexistent")


def widths(count: int | None = None) -> Check:
    """A non-empty tuple of positive integers, e.g. 256,128 (exactly `count` of them if set)."""
    wants = f"{count} positive widths" if count else "positive widths"
    return Check(
        lambda v: len(v) > 0 and all(w >= 1 for w in v) and (count is None or len(v) == count),
        wants,
        "0",
    )


def existing_dir() -> Check:
    """A folder that exists (None: the default search order); ~ expands to the home folder."""
    return Check(
        lambda v: os.path.isdir(os.path.expanduser(v)),
        "an existing folder",
        "/nonexistent/roadmap-data",
    )


def layer_prefixes() -> Check:
    """Comma-separated module paths such as fc or layer4,fc (empty: none): `reinit` fields."""
    return Check(
        lambda v: re.fullmatch(r"([\w.]+(,[\w.]+)*)?", v) is not None,
        "comma-separated module paths such as fc or layer4,fc",
        "fc;rm",
    )


def field(default: Any, check: Check | None = None) -> Any:
    """A dataclass field with a default and an optional check."""
    return dataclasses.field(default=default, metadata={"check": check} if check else {})


def field_check(config_cls: type, name: str) -> Check | None:
    """The check declared on field `name`, or None."""
    return config_cls.__dataclass_fields__[name].metadata.get("check")


def _type_error(name: str, hint: Any, value: Any) -> str | None:
    """Why `value` does not fit the type `hint`, or None."""
    args = typing.get_args(hint)
    if value is None:
        return None if type(None) in args else "a value, not None"
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if typing.get_origin(base) is tuple or typing.get_origin(hint) is tuple:
        ok = isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        return None if ok else "integers like 256,128"
    if base is bool:
        return None if isinstance(value, bool) else "true/false"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok and math.isfinite(value) else "a finite number"
    if base is str:
        return None if isinstance(value, str) else "a string"
    return None


def validate(config: Any) -> Any:
    """Check every field of `config` against its type and declared check; returns `config`."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        wants = _type_error(f.name, hints[f.name], value)
        if wants:
            raise ConfigError(f"field {f.name!r} wants {wants}, got {value!r}")
        check = f.metadata.get("check")
        if check is not None:
            check(f.name, value)
    if hasattr(config, "check"):
        config.check()
    return config


def bad_value(config_cls: type, name: str) -> str:
    """A command-line value that field `name` must refuse (its check's, else its type's)."""
    check = field_check(config_cls, name)
    if check is not None:
        return check.bad
    hint = typing.get_type_hints(config_cls)[name]
    args = typing.get_args(hint)
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if base is bool:
        return "maybe"
    if base in (int, float) or typing.get_origin(base) is tuple:
        return "abc"
    raise TypeError(f"{config_cls.__name__}.{name} is a {hint} field without a check")


OPTIMIZERS = ("sgd", "adam", "adadelta")
SCHEDULES = ("constant", "step", "onecycle", "cosine", "linear")


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """How the optimizer treats one group of parameters (both frameworks read it).

    A project's config module names each parameter's group from its path (torch's dotted
    name split at the dots, which is also the Flax parameter path); parameters of no
    named group train with the config's own learning rate and weight decay.
    """

    lr_scale: float = 1.0  # learning rate x this
    wd_scale: float = 1.0  # weight decay x this (coupled: added to the gradient)
    trainable: bool = True  # False: never updated (torch: requires_grad=False)
    active_steps: int | None = None  # trained for the first N optimizer steps only


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The fields every training run has; a project's config derives from it."""

    data_dir: str | None = field(None, existing_dir())  # None: $ROADMAP_DATA_DIR, then the cache
    download: bool = False  # fetch the dataset from its mirrors if it is nowhere local
    limit_train: int | None = field(None, at_least(1))  # keep the first N training examples
    limit_test: int | None = field(None, at_least(1))  # keep the first N test examples
    val_size: int = field(0, at_least(0))  # hold out this many training examples
    epochs: int = field(1, at_least(1))
    batch_size: int = field(64, at_least(1))
    eval_batch_size: int = field(1000, at_least(1))
    optimizer: str = field("adam", one_of(*OPTIMIZERS))  # sgd (with momentum), adam, adadelta
    lr: float = field(1e-3, above(0))  # peak learning rate
    momentum: float = field(0.9, between(0, 1))  # SGD momentum
    nesterov: bool = False  # SGD's Nesterov momentum (torch.optim.SGD(nesterov=True)); SGD only
    weight_decay: float = field(0.0, at_least(0))  # L2 added to the gradient (torch.optim)
    schedule: str = field("constant", one_of(*SCHEDULES))  # step: x gamma each epoch
    gamma: float = field(0.7, above(0))  # decay per epoch of the "step" schedule
    warmup_epochs: float = field(0.0, at_least(0))  # linear warm-up of "cosine" and "linear"
    # "linear": lr x lr_start_factor rises linearly to lr over warmup_epochs, then falls
    # linearly to lr x lr_end_factor at the last step (airbench's triangle: 0.2, 0.07)
    lr_start_factor: float = field(0.0, between(0, 1))
    lr_end_factor: float = field(0.0, between(0, 1))
    # The recipe knobs of scale-out (torchvision's classification reference, flax's imagenet
    # example), the same in both frameworks (common/optim.py):
    # lr is the rate of a global batch of lr_base_batch examples, scaled linearly to
    # batch_size x accumulate_steps (Goyal et al. 2017); None: lr as given
    lr_base_batch: int | None = field(None, at_least(1))
    accumulate_steps: int = field(1, at_least(1))  # average the gradients of N batches per update
    clip_grad_norm: float | None = field(None, above(0))  # rescale to this global L2 norm at most
    # False: no weight decay on 1-D parameters, i.e. biases and normalisation scales/offsets
    decay_norms_and_biases: bool = True
    ema_decay: float = field(0.0, between(0, 0.999999))  # EMA of the parameters (0: none)
    augment: bool = False  # the project's training augmentation (see its Task)
    seed: int = field(1, between(0, 2**32 - 1))  # initial weights, data order, dropout, noise
    log_every: int = field(100, at_least(1))  # steps between train-metric log lines
    checkpoint_every: int = field(0, at_least(0))  # steps between mid-epoch checkpoints
    max_steps: int | None = field(None, at_least(1))  # stop after this many steps (tests)

    def __post_init__(self):
        validate(self)

    def check(self) -> None:
        """Rules across fields (a subclass adding its own calls super().check())."""
        if self.schedule in ("cosine", "linear") and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"field 'warmup_epochs' wants fewer than the {self.epochs} epochs of the "
                f"{self.schedule} schedule, got {self.warmup_epochs}"
            )
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError("field 'nesterov' wants SGD with momentum > 0, got momentum=0")

    def peak_lr(self) -> float:
        """The learning rate of this run's global batch (`lr_base_batch`'s linear scaling)."""
        if self.lr_base_batch is None:
            return self.lr
        return self.lr * self.batch_size * self.accumulate_steps / self.lr_base_batch


def pick_variant(project: str, variants: dict[str, Any], variant: str) -> Any:
    """`variants[variant]`, or an error listing the known names."""
    if variant not in variants:
        raise UnknownNameError(
            f"unknown {project} variant {variant!r}; known: {', '.join(variants)}"
        )
    return variants[variant]
