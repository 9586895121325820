"""Run folders: where a run lives, the newest one, and its trained state (read-only).

runs/<project>/<framework>/<run-id>/ holds config.json, metrics.jsonl, TensorBoard events
and checkpoints/ (DESIGN.md's layout). `roadmap run` writes them; export, serve, report and
`--weights RUN` read them through these functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared_data.configs.base import ConfigError
from shared_data.runlog import CONFIG_FILE


def run_dir(workdir: str | Path, project: str, framework: str, run_id: str) -> Path:
    """runs/<project>/<framework>/<run-id>/ (DESIGN.md's layout)."""
    return Path(workdir) / project / framework / run_id


def new_run_id() -> str:
    """A sortable timestamp naming a new run."""
    return time.strftime("%Y%m%d-%H%M%S")


def newest_run_id(workdir: str | Path, project: str, framework: str) -> str | None:
    """The most recently modified run of this project and framework, or None."""
    root = Path(workdir) / project / framework
    runs = [p for p in root.iterdir() if p.is_dir()] if root.exists() else []
    return max(runs, key=lambda p: p.stat().st_mtime).name if runs else None


def resolve_run(
    workdir: str | Path, project: str, framework: str, run_id: str | None = None
) -> Path:
    """The folder of run `run_id` (default: the newest) of `project` in `framework`."""
    run_id = run_id or newest_run_id(workdir, project, framework)
    path = run_dir(workdir, project, framework, run_id) if run_id else None
    if path is None or not (path / CONFIG_FILE).is_file():
        where = path or Path(workdir) / project / framework
        raise ConfigError(
            f"no finished run at {where}; train one first: "
            f"roadmap run {project} --framework {framework}"
        )
    return path


def stored_config(project, path: str | Path, **changes: Any):
    """The config a run trained with (its config.json), with `changes` to its fields."""
    from shared_data.configs.base import from_dict

    stored = json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    stored.pop("framework", None)
    return from_dict(type(project.config()), {**stored, **changes})


def load_trained(project, framework: str, path: str | Path) -> tuple[Any, Any, int]:
    """(config, state, step) of a run folder: its config and newest readable checkpoint.

    Weights come only from the run's own checkpoint files (torch.load(weights_only=True),
    Orbax); nothing is unpickled from anywhere else.
    """
    import importlib

    from comparisons.registry import FRAMEWORKS
    from shared_data.training import restore_readable

    path = Path(path)
    config = stored_config(project, path, data_dir=None)  # inference reads no data
    state = project.module(framework).create_state(config, 1)
    fw = importlib.import_module(f"{FRAMEWORKS[framework]}.common.loop").FRAMEWORK
    checkpointer = fw.checkpointer(path / "checkpoints")
    try:
        if not checkpointer.steps():
            raise ConfigError(f"{path / 'checkpoints'} holds no checkpoint; train the run first")
        state, _, step = restore_readable(fw, checkpointer, state, set_aside=False)  # read-only
    finally:
        checkpointer.close()
    return config, state, step
