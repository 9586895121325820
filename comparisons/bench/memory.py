"""`roadmap bench PROJECT --memory`: peak memory of a training step per resolution and batch size.

For a project whose config has a `canvas` (the image side) and a `remat` field (activation
checkpointing), with and without checkpointing, in both frameworks:

* JAX: the compiled train step's `memory_analysis()`, temp + argument + output bytes, i.e.
  what XLA's buffer assignment reserves for one step (parameters, optimizer state, batch,
  activations and gradients). Nothing runs; this is the compiler's plan.
* torch: the peak resident memory (ru_maxrss) of a fresh subprocess over building the state
  and batch and running one training step, minus its resident memory after the imports.
  It is measured, so it includes the allocator's slack and torch's own workspaces.

The two are different measures of the same need; compare each framework's rows with its own
(remat against none, one resolution against the next) before comparing across frameworks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from comparisons.bench.peak import machine
from comparisons.options import load_config
from comparisons.registry import get_project
from shared_data.configs.base import from_dict, to_dict
from shared_data.runlog import write_json

DEFAULT_RESOLUTIONS = (128, 256, 512)
DEFAULT_MEMORY_BATCH_SIZES = (2, 8)
REMAT = ("none", "blocks")
MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--memory and its options (roadmap bench)."""
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    add = parser.add_argument
    add("--memory", action="store_true", help="peak memory of a training step per resolution")
    add("--memory-resolutions", type=ints, default=list(DEFAULT_RESOLUTIONS),
        help="canvas sizes (default 128,256,512)")  # fmt: skip
    add("--memory-batch-sizes", type=ints, default=list(DEFAULT_MEMORY_BATCH_SIZES),
        help="batch sizes (default 2,8)")  # fmt: skip
    add("--memory-frameworks", default="jax,torch", help="jax (XLA's plan), torch (peak RSS)")


def jax_step_bytes(project_name: str, config, batch_size: int) -> dict[str, int]:
    """XLA's memory plan of the compiled train step: temp, argument and output bytes."""
    import jax

    project = get_project(project_name)
    train = project.module("jax")
    state = train.create_state(config, 10)
    batch = train.to_device(project.example_batch(batch_size, config=config))
    compiled = train.train_step.lower(state, batch, jax.random.key(0)).compile()
    analysis = compiled.memory_analysis()
    parts = {
        "temp": analysis.temp_size_in_bytes,
        "argument": analysis.argument_size_in_bytes,
        "output": analysis.output_size_in_bytes,
    }
    return {**parts, "total": sum(parts.values())}


def _torch_child(project_name: str, config_json: str, batch_size: int) -> None:
    """In a fresh process: peak RSS growth over building the state and one training step."""
    import resource

    project = get_project(project_name)
    train = project.module("torch")
    config = from_dict(type(project.config()), json.loads(config_json))
    # A first step on one image loads oneDNN's kernels and autograd's workers, which would
    # otherwise count as the measured step's memory; its own peak is below the measured one.
    train.train_step(
        train.create_state(config, 10), train.to_device(project.example_batch(1, config=config)), 0
    )
    baseline = _rss_bytes()
    state = train.create_state(config, 10)
    batch = train.to_device(project.example_batch(batch_size, config=config))
    train.train_step(state, batch, 0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"peak_growth": peak - baseline, "baseline": baseline}))


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (the torch memory bench needs Linux)")


def torch_step_bytes(project_name: str, config, batch_size: int) -> dict[str, int]:
    """Peak RSS growth of one torch training step, measured in a fresh subprocess."""
    code = (
        "import sys; from comparisons.bench.memory import _torch_child; "
        "_torch_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    )
    config_json = json.dumps(to_dict(config))
    # Large blocks mmapped and unmapped when freed, so resident memory follows live tensors
    # (the kit's fast-allocator tunables keep freed memory, which would hide the peak).
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}
    done = subprocess.run(
        [sys.executable, "-c", code, project_name, config_json, str(batch_size)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"torch memory child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(project_name: str, config, resolutions, batch_sizes, frameworks) -> list[dict]:
    """One row per (resolution, batch size, remat, framework) with its bytes."""
    rows = []
    for canvas in resolutions:
        for batch_size in batch_sizes:
            for remat in REMAT:
                changed = dataclasses.replace(config, canvas=canvas, remat=remat)
                row = {"canvas": canvas, "batch_size": batch_size, "remat": remat}
                if "jax" in frameworks:
                    row["jax"] = jax_step_bytes(project_name, changed, batch_size)
                if "torch" in frameworks:
                    row["torch"] = torch_step_bytes(project_name, changed, batch_size)
                print(_line(row), flush=True)
                rows.append(row)
    return rows


def _line(row: dict) -> str:
    cells = [f"{row['canvas']}", f"{row['batch_size']}", row["remat"]]
    if "jax" in row:
        jax_row = row["jax"]
        cells += [f"{jax_row['total'] / MIB:.1f}", f"{jax_row['temp'] / MIB:.1f}"]
    if "torch" in row:
        cells.append(f"{row['torch']['peak_growth'] / MIB:.1f}")
    return "| " + " | ".join(cells) + " |"


def to_markdown(rows: list[dict]) -> str:
    """The table of `measure`'s rows, in MiB."""
    head = ["canvas", "batch", "remat"]
    if rows and "jax" in rows[0]:
        head += ["JAX total MiB (XLA plan)", "JAX temp MiB"]
    if rows and "torch" in rows[0]:
        head.append("torch peak RSS growth MiB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + [_line(row) for row in rows])


def run(args: argparse.Namespace) -> int:
    """Measure, print and write `<workdir>/<project>/bench/memory.json`; the exit code."""
    config = load_config(args)
    missing = [f for f in ("canvas", "remat") if not hasattr(config, f)]
    if missing:
        print(
            f"roadmap bench --memory: project {args.project!r} has no config field "
            f"{' or '.join(missing)} (the image side and activation checkpointing)",
            file=sys.stderr,
        )
        return 2
    frameworks = [f.strip() for f in args.memory_frameworks.split(",") if f.strip()]
    rows = measure(
        args.project, config, args.memory_resolutions, args.memory_batch_sizes, frameworks
    )
    result: dict[str, Any] = {
        "project": args.project,
        "config": to_dict(config),
        "rows": rows,
        "machine": machine(),
    }
    path = Path(args.workdir) / args.project / "bench" / "memory.json"
    write_json(path, result)
    print(to_markdown(rows))
    print(f"wrote {path}")
    return 0


def with_memory(bench_run):
    """`roadmap bench`'s run, or this module's when --memory is given."""
    return lambda args: run(args) if args.memory else bench_run(args)
