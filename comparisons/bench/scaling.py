"""`roadmap bench PROJECT --scaling`: training throughput on 1 and more data-parallel workers.

Each measurement is a real `roadmap run` of the project for a fixed number of steps on the
same global batch (strong scaling): torch with `--nproc N` (DDP processes under torchrun),
JAX with `--devices N` (host devices of one process). Its steady-state examples/s (the
driver's timer: compilation and the first step excluded) is the row's throughput; the
worker counts alternate, `--scaling-repeats` times, and each row reports the median, so a
load that drifts during the bench hits every row alike.

Every torch worker runs `--scaling-threads` intra-op threads (default 1: one core each, the
classic definition), so efficiency = examples/s(N) / (N x examples/s(1)) is 1.0 when N
workers find N free cores. On a machine with fewer free cores than workers the workers
share them and efficiency falls towards 1 / N without telling anything about the method:
read such rows as the cost of data parallelism on one machine (the gradient all-reduce --
gloo over loopback for torch, XLA's in-process all-reduce for JAX --, the per-step
synchronisation, duplicated Python), not as what N machines would gain.
"""

from __future__ import annotations

import json
import os
import statistics
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
    """One run of the project on `workers` workers; its summary's throughput."""
    run_id = f"w{workers}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = worker_command(args, framework, workers, run_id)
    threads = str(args.scaling_threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    row = {"framework": framework, "workers": workers, "threads_per_worker": int(threads)}
    row["command"] = f"OMP_NUM_THREADS={threads} roadmap " + " ".join(command[3:])
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        row["error"] = lines[-1] if lines else f"exit status {done.returncode}"
        return row
    summary_path = Path(args.workdir) / "scaling" / args.project / framework / run_id
    summary = json.loads((summary_path / SUMMARY_FILE).read_text(encoding="utf-8"))
    row["examples_per_s"] = summary["train_examples_per_s"]
    row["steps"] = summary["steps"]
    return row


def scaling_rows(args) -> list[dict[str, Any]]:
    """Every (framework, workers) row: median examples/s, speedup and efficiency vs 1 worker."""
    frameworks = [f.strip() for f in args.scaling_frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in FRAMEWORK_FLAG]
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; known: torch, jax")
    rows = []
    for framework in frameworks:
        runs = {w: [] for w in args.scaling_workers}
        for _ in range(args.scaling_repeats):  # alternate, so drifting load hits every row
            for workers in args.scaling_workers:
                runs[workers].append(measure(args, framework, workers))
        base = None
        for workers, measured in runs.items():
            row = dict(measured[-1])
            rates = [r["examples_per_s"] for r in measured if "examples_per_s" in r]
            if rates:
                row["examples_per_s"] = statistics.median(rates)
                row["examples_per_s_all"] = rates
            if workers == 1 and rates:
                base = row["examples_per_s"]
            if base and rates:
                row["speedup"] = row["examples_per_s"] / base
                row["efficiency"] = row["speedup"] / workers
            rows.append(row)
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The scaling table."""
    lines = [
        "| framework | workers | threads each | examples/s (median) | runs | speedup "
        "| efficiency |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        if "examples_per_s" not in r:
            lines.append(f"| {r['framework']} | {r['workers']} | | error: {r.get('error')} | | | |")
            continue
        runs = ", ".join(f"{x:.0f}" for x in r.get("examples_per_s_all", [r["examples_per_s"]]))
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        efficiency = f"{r['efficiency']:.2f}" if "efficiency" in r else ""
        lines.append(
            f"| {r['framework']} | {r['workers']} | {r['threads_per_worker']} | "
            f"{r['examples_per_s']:.0f} | {runs} | {speedup} | {efficiency} |"
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
    add("--scaling-steps", type=int, default=100, help="training steps per run (default 100)")
    add("--scaling-repeats", type=int, default=3, help="runs per row, alternated (median)")
    add("--scaling-threads", type=int, default=1, help="torch intra-op threads per worker")
