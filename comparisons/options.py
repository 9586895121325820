"""From parsed command-line flags to a project's validated config (shared by every subcommand).

It sits below cli.py, so run, compare and the tools read their config without importing
the CLI (no import cycle).
"""

from __future__ import annotations

import argparse

from comparisons.registry import get_project
from shared_data.configs.base import ConfigError, override, validate

# Flags that name a config field directly; --set covers every other field.
CONFIG_FLAGS = (
    "model",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "seed",
    "data_dir",
    "dataset",
    "schedule",
    "precision",
    "weights",
)


def add_set_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """--set KEY=VALUE (repeatable): a change to one config field."""
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help=help)


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    """--data-dir: where the datasets are."""
    parser.add_argument(
        "--data-dir",
        dest="data_dir",
        help="folder holding the datasets (default: $ROADMAP_DATA_DIR, then ~/.cache/roadmap)",
    )


def load_config(args: argparse.Namespace):
    """The project's config for `args.variant`, with the dedicated flags and --set applied.

    Every field is validated before anything is built; a bad value raises ConfigError,
    which the CLI prints as one line.
    """
    project = get_project(args.project)
    config = project.config(getattr(args, "variant", "default"))
    fields = set(type(config).__dataclass_fields__)
    changes = {}
    for key in CONFIG_FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            if key not in fields:
                raise_unknown_flag(args.project, key)
            changes[key] = value
    if getattr(args, "download", False):
        changes["download"] = True
    config = override(config, changes)
    config = override(config, list(getattr(args, "set", None) or []))
    validate(config)
    if getattr(config, "augment", False) and project.task(config).augment is None:
        raise ConfigError(f"field 'augment': project {project.name!r} has no training augmentation")
    return config


def raise_unknown_flag(project: str, key: str) -> None:
    """A dedicated flag that the project's config has no field for."""
    flag = "--" + key.replace("_", "-")
    raise ConfigError(f"{flag} does not apply to project {project!r} (its config has no {key!r})")
