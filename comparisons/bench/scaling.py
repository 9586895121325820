"""`roadmap bench PROJECT --scaling`: training throughput on 1 and more data-parallel workers.

Each row is a real `roadmap run` of the project for a fixed number of steps, on the same
global batch (strong scaling): torch with `--nproc N` (DDP processes under torchrun), JAX
with `--devices N` (host devices of one process). Its steady-state examples/s (the driver's
timer: compilation and the first step excluded) against the one-worker row is the speedup.

The machine is fixed: the N workers share its cores (OMP/XLA threads = cores // N each), so
the ideal speedup here is 1.0x and the efficiency (speedup / 1.0) measures what data
parallelism costs on one machine -- the all-reduce of the gradients (gloo over loopback for
torch, XLA's in-process all-reduce for JAX), the per-step synchronisation and duplicated
Python -- not what N machines would gain. On N times the hardware the ideal is N x.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shared_data.runlog import SUMMARY_FILE, atomic_write_text, write_json

FRAMEWORK_FLAG = {"torch": "--nproc", "jax": "--devices"}  # N workers, per framework


def worker_command(args, framework: str, workers: int, run_id: str) -> list[str]:
    """The `roadmap run` of one row: the bench's project, variant and --set, N workers."""
    command = [sys.executable, "-m", "comparisons.cli", "run", args.project]
    command += ["--framework", framework, "--variant", args.variant, "--run-id", run_id]
    command += ["--workdir", str(Path(args.workdir) / "scaling"), "--no-progress"]
    for assignment in [*args.set, f"max_steps={args.scaling_steps}"]:
        command += ["--set", assignment]
    if getattr(args, "data_dir", None):
        command += ["--data-dir", args.data_dir]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if workers > 1:
        command += [FRAMEWORK_FLAG[framework], str(workers)]
    return command


def measure(args, framework: str, workers: int) -> dict[str, Any]:
    """One row: run the project on `workers` workers; its summary's throughput."""
    run_id = f"w{workers}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = worker_command(args, framework, workers, run_id)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    row = {"framework": framework, "workers": workers, "threads_per_worker": int(threads)}
    row["command"] = "OMP_NUM_THREADS=" + threads + " roadmap " + " ".join(command[3:])
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        row["error"] = lines[-1] if lines else f"exit status {done.returncode}"
        return row
    summary_path = Path(args.workdir) / "scaling" / args.project / framework / run_id
    summary = json.loads((summary_path / SUMMARY_FILE).read_text(encoding="utf-8"))
    row["examples_per_s"] = summary["train_examples_per_s"]
    row["steps"] = summary["steps"]
    row["wall_s"] = summary["wall_s"]
    return row


def scaling_rows(args) -> list[dict[str, Any]]:
    """Every (framework, workers) row, with speedup and efficiency against 1 worker."""
    rows = []
    for framework in [f.strip() for f in args.scaling_frameworks.split(",") if f.strip()]:
        if framework not in FRAMEWORK_FLAG:
            raise ValueError(f"unknown framework {framework!r}; known: torch, jax")
        base = None
        for workers in args.scaling_workers:
            row = measure(args, framework, workers)
            if workers == 1 and "examples_per_s" in row:
                base = row["examples_per_s"]
            if base and "examples_per_s" in row:
                row["speedup"] = row["examples_per_s"] / base
                row["efficiency_fixed_cores"] = row["speedup"]  # ideal 1.0 on shared cores
                row["efficiency_per_worker"] = row["speedup"] / workers  # ideal 1.0 on N x cores
            rows.append(row)
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The scaling table."""
    lines = [
        "| framework | workers | threads each | examples/s | speedup vs 1 | steps |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['framework']} | {r['workers']} | | error: {r['error']} | | |")
            continue
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        lines.append(
            f"| {r['framework']} | {r['workers']} | {r['threads_per_worker']} | "
            f"{r['examples_per_s']:.0f} | {speedup} | {r['steps']} |"
        )
    return "\n".join(lines)


def run(args) -> int:
    """`roadmap bench PROJECT --scaling`: write scaling.json/scaling.md; the exit code."""
    rows = scaling_rows(args)
    outdir = Path(args.workdir) / args.project / "bench"
    result = {"project": args.project, "variant": args.variant, "rows": rows}
    result["cpu_count"] = os.cpu_count()
    write_json(outdir / "scaling.json", result)
    atomic_write_text(outdir / "scaling.md", to_markdown(rows) + "\n")
    print(to_markdown(rows))
    for r in rows:
        print(f"  {r['command']}")
    print(f"wrote {outdir / 'scaling.json'} and {outdir / 'scaling.md'}")
    return 0 if rows and all("error" not in r for r in rows) else 1


def add_arguments(parser) -> None:
    """--scaling and its options (roadmap bench)."""
    add = parser.add_argument
    add("--scaling", action="store_true", help="throughput on 1..N data-parallel workers")
    add("--scaling-workers", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2],
        help="worker counts (default 1,2)")  # fmt: skip
    add("--scaling-frameworks", default="torch,jax", help="torch (--nproc), jax (--devices)")
    add("--scaling-steps", type=int, default=100, help="training steps per row (default 100)")
