"""Config plumbing shared by every project: overrides from the command line, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
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
