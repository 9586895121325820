"""`roadmap list` and `roadmap run`: run folders, one framework at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from comparisons.env import pin_cpu_fp32
from comparisons.options import load_config
from comparisons.parity import make_pair
from comparisons.pretrained import has_pretrained
from comparisons.registry import FRAMEWORK_LABELS, get_project, list_projects
from comparisons.runfolders import new_run_id, newest_run_id, run_dir
from jaxpath.common.distributed import (
    COORDINATOR_ENV,
    DEVICES_ENV,
    FORM_ENV,
    PROCESS_ID_ENV,
    initialize_from_env,
    launch_local,
    with_host_devices,
)
from shared_data.datasets import describe_sources


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
    if summary.get("new_shape_steps"):
        lines.append(
            f"later steps of a new batch shape (each compiles under jit; left out of the rate): "
            f"{summary['new_shape_steps']}, {summary['new_shape_s']:.2f} s"
        )
    lines.append(f"parameters: {summary['num_params']:,}   wall time: {summary['wall_s']:.1f} s")
    return "\n".join(lines)


def run_command(args) -> int:
    """Train and evaluate one project in one framework (`roadmap run`)."""
    # One of `roadmap run --processes N`'s processes: only process 0 reports.
    quiet = initialize_from_env() and os.environ[PROCESS_ID_ENV] != "0"
    args.progress = args.progress and not quiet
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
    if getattr(args, "nproc", 1) != 1:
        return launch_torchrun(args, run_id)
    if getattr(args, "processes", 1) != 1 and COORDINATOR_ENV not in os.environ:
        return launch_jax_processes(args, run_id)
    label = FRAMEWORK_LABELS[args.framework]
    if getattr(config, "style", "linen") == "nnx":  # mnist's Flax NNX step (docs/STYLES.md)
        label = "JAX (Flax NNX, nnx.jit)"
    if not quiet:
        print(f"{label}: {project.name} -> {path}")
    summary = project.module(args.framework).train_and_evaluate(
        config,
        path,
        init_weights=None if args.resume else pretrained_init(project, config, args.framework),
        resume=args.resume,
        progress=args.progress,
    )
    if not quiet:
        print(format_history(summary))
    return 0


def launch_torchrun(args, run_id: str) -> int:
    """`roadmap run` again in `args.nproc` processes under torchrun: one DDP run, one folder.

    Each process runs the same command (torchpath/common/distributed.py); the run id is fixed
    here so that every rank names the same folder. torchrun shows rank 0's output.
    """
    if args.framework != "torch" or args.nproc < 1:
        print(
            "roadmap run: --nproc N (N >= 1) launches torch processes under torchrun; "
            f"got --nproc {args.nproc} --framework {args.framework} (JAX: --devices)"
        )
        return 2
    argv, skip = [], False
    for arg in args.argv:  # the same command, less --nproc
        if not skip and not arg.startswith("--nproc"):
            argv.append(arg)
        skip = arg == "--nproc"
    if args.run_id is None:
        argv += ["--run-id", run_id]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={args.nproc}", "--local-ranks-filter=0",
        "-m", "comparisons.cli", *argv,
    ]  # fmt: skip
    print(f"torchrun: {' '.join(command[1:])}", flush=True)
    return subprocess.call(command)


def set_jax_devices(args) -> None:
    """`--devices N [--parallel F] [--processes P]`: the environment JAX reads at start.

    XLA:CPU makes N/P host devices per process only if told before JAX starts; loop.fit then
    trains every project data-parallel in form F over the N devices.
    """
    if args.framework != "jax":
        raise SystemExit("roadmap run: --devices is JAX's; torch runs data-parallel with --nproc")
    processes = args.processes
    if args.devices < 1 or processes < 1 or args.devices % processes:
        raise SystemExit(
            f"roadmap run: --devices {args.devices} must be a positive multiple of "
            f"--processes {processes}"
        )
    flags = with_host_devices(os.environ.get("XLA_FLAGS"), args.devices // processes)
    os.environ.update({"XLA_FLAGS": flags, DEVICES_ENV: str(args.devices), FORM_ENV: args.parallel})


def launch_jax_processes(args, run_id: str) -> int:
    """`roadmap run` again in `args.processes` local processes: one jax.distributed run.

    The processes meet over loopback (jaxpath/common/distributed.py); the run id is fixed here
    so that every process names the same folder. Process 0 shows its progress.
    """
    if args.framework != "jax" or args.devices is None:
        print("roadmap run: --processes N goes with --framework jax --devices M (torch: --nproc)")
        return 2
    argv = list(args.argv)  # the same command: each process sees it is one ($ROADMAP_JAX_*)
    if args.run_id is None:
        argv += ["--run-id", run_id]
    print(f"jax.distributed: {args.processes} processes of roadmap {' '.join(argv)}", flush=True)
    per_process = args.devices // args.processes
    results = launch_local(["-m", "comparisons.cli", *argv], args.processes, per_process)
    return next((done.returncode for done in results if done.returncode), 0)


def pretrained_init(project, config, framework: str) -> Any:
    """A run's initial weights from `config.weights` (comparisons/pretrained.py), else None.

    Torch's seeded model with the weights loaded is the reference; the JAX run gets it
    ported, so a run in either framework starts from the same function.
    """
    if not has_pretrained(config):
        return None
    return make_pair(project, config, steps_per_epoch=1).weights[framework]


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
