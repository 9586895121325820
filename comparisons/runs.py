"""`roadmap list` and `roadmap run`: run folders, one framework at a time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from comparisons.env import pin_cpu_fp32
from comparisons.options import load_config
from comparisons.registry import FRAMEWORK_LABELS, get_project, list_projects
from shared_data.configs.base import ConfigError
from shared_data.datasets import describe_sources
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


def load_trained(project, framework: str, path: str | Path) -> tuple[Any, Any, int]:
    """(config, state, step) of a run folder: its config and newest readable checkpoint.

    Weights come only from the run's own checkpoint files (torch.load(weights_only=True),
    Orbax); nothing is unpickled from anywhere else.
    """
    import importlib

    from comparisons.registry import FRAMEWORKS
    from shared_data.configs.base import from_dict
    from shared_data.training import restore_readable

    path = Path(path)
    stored = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    stored.pop("framework", None)
    stored["data_dir"] = None  # inference reads no data; the folder may be gone
    config = from_dict(type(project.config()), stored)
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


def format_history(summary: dict[str, Any]) -> str:
    """A fixed-width table of one run's per-epoch metrics (the project's own, from its Task)."""
    metrics = summary["task"]["metrics"]
    keys = [f"{split}_{m}" for split in ("train", "test") for m in metrics]
    keys = [k for k in keys if any(k in h for h in summary["history"])]
    lines = [f"{'epoch':>5} " + " ".join(f"{k.replace('_', ' '):>14}" for k in keys) + "  time s"]
    for h in summary["history"]:
        cells = [f"{h[k]:>14.4f}" if h.get(k) is not None else f"{'-':>14}" for k in keys]
        lines.append(f"{h['epoch']:>5} " + " ".join(cells) + f" {h['epoch_time_s']:>7.1f}")
    speed = summary.get("train_examples_per_s")
    lines.append(
        f"train examples/s (compile excluded): {speed:.0f}"
        if speed
        else "train examples/s: n/a (too few steps)"
    )
    if summary.get("first_step_s") is not None:
        lines.append(f"first step (compiles under jit): {summary['first_step_s']:.2f} s")
    lines.append(f"parameters: {summary['num_params']:,}   wall time: {summary['wall_s']:.1f} s")
    return "\n".join(lines)


def run_command(args) -> int:
    """Train and evaluate one project in one framework (`roadmap run`)."""
    if args.device != "cpu":
        print("roadmap run: training runs on the CPU here; use `roadmap bench --device` for GPUs")
        return 2
    project = get_project(args.project)
    config = load_config(args)
    pin_cpu_fp32()
    run_id = args.run_id
    if args.resume and run_id is None:
        run_id = newest_run_id(args.workdir, project.name, args.framework)
        if run_id is None:
            print(
                f"roadmap run: nothing to resume under {Path(args.workdir) / project.name}/"
                f"{args.framework}; start a run first"
            )
            return 2
    run_id = run_id or new_run_id()
    path = run_dir(args.workdir, project.name, args.framework, run_id)
    label = FRAMEWORK_LABELS[args.framework]
    if getattr(config, "style", "linen") == "nnx":  # mnist's Flax NNX step (docs/STYLES.md)
        label = "JAX (Flax NNX, nnx.jit)"
    print(f"{label}: {project.name} -> {path}")
    summary = project.module(args.framework).train_and_evaluate(
        config, path, resume=args.resume, progress=args.progress
    )
    print(format_history(summary))
    return 0


def list_command(args) -> int:
    """Print the projects and the datasets this machine can read (`roadmap list`)."""
    print("projects:")
    for p in list_projects():
        print(f"  {p.name:<12} dataset={p.dataset:<10} metric={p.metric:<14} {p.description}")
        print(f"  {'':<12} models: {', '.join(p.models)}; variants: {', '.join(p.variants)}")
    print("datasets:")
    for row in describe_sources(getattr(args, "data_dir", None)):
        state = "available" if row["available"] else "missing"
        print(f"  {row['name']:<12} {state:<10} {row['where']}")
    return 0
