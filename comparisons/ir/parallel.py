"""`roadmap ir PROJECT --devices N [--parallel FORM]`: the collectives of data-parallel JAX.

For each form of jaxpath/common/parallel.py (pmap, sharding, shard_map) it lowers the
project's train step over N devices and writes, under <workdir>/<project>/ir/parallel/:
`<form>.stablehlo.txt` (what JAX hands XLA), `<form>.hlo.txt` (XLA's optimized HLO), and
parallel.md / parallel.json: a table of the collectives in each (op, shapes, bytes, replica
groups), beside the bytes of the parameters whose gradients they average. docs/SCALING.md
reads the tables. Multi-device JAX on the CPU needs XLA_FLAGS before JAX starts: the CLI
sets it (`set_jax_devices`) before anything imports jax.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from jaxpath.common.distributed import with_host_devices
from shared_data.runlog import atomic_write_text, write_json

FORMS = ("pmap", "sharding", "shard_map")
COLLECTIVES = (
    "all-reduce",
    "all-reduce-start",
    "all-gather",
    "all-gather-start",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "collective-permute-start",
)
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2}
DTYPE_BYTES.update({"f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8})
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>.+?)\s+"
    r"(?P<op>" + "|".join(sorted(map(re.escape, COLLECTIVES), key=len, reverse=True)) + r")\("
)
_ARRAY = re.compile(r"\b(?P<dtype>pred|[a-z]+\d+)\[(?P<dims>[\d,]*)\]")
# {{0,1}}, an iota form [1,2]<=[2], or Shardy's mesh['axis_0'=2,...] {'axis_0'}
_GROUPS = re.compile(
    r"replica_groups=(?P<groups>.*?)(?:, (?:use_global_device_ids|to_apply|channel_id|"
    r"metadata|constrain_layout)=|$)"
)
_STABLEHLO_COLLECTIVE = re.compile(r"\"?stablehlo\.(all_reduce|all_gather|reduce_scatter)\"?")


def set_jax_devices(args) -> None:
    """XLA_FLAGS for `args.devices` CPU devices: the CLI calls it before JAX starts."""
    if args.devices < 1:
        raise SystemExit(f"roadmap ir: --devices must be >= 1, got {args.devices}")
    os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS"), args.devices)


def collectives(hlo_text: str) -> list[dict[str, Any]]:
    """Every collective instruction of an HLO module's text: op, shapes, bytes, groups."""
    rows = []
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        shapes = [
            (m["dtype"], tuple(int(d) for d in m["dims"].split(",") if d))
            for m in _ARRAY.finditer(match["shape"])
        ]
        groups = _GROUPS.search(line)
        rows.append(
            {
                "name": match["name"],
                "op": match["op"],
                "shapes": [f"{dtype}[{','.join(map(str, dims))}]" for dtype, dims in shapes],
                "bytes": sum(_nbytes(dtype, dims) for dtype, dims in shapes),
                "replica_groups": groups["groups"] if groups else "",
            }
        )
    return rows


def _nbytes(dtype: str, dims: tuple[int, ...]) -> int:
    size = DTYPE_BYTES.get(dtype, 4)
    for d in dims:
        size *= d
    return size


def lower_forms(project_name: str, config, devices: int, batch_size: int, forms=FORMS) -> dict:
    """{form: {"stablehlo", "hlo", "collectives"}} of the project's train step, plus params."""
    import jax
    import numpy as np

    from comparisons.registry import get_project
    from jaxpath.common.loop import step_rng
    from jaxpath.common.parallel import DataParallel

    project = get_project(project_name)
    module = project.module("jax")
    state = module.create_state(config, steps_per_epoch=1)
    batch = project.example_batch(batch_size, config=config)
    params = jax.tree.leaves(state.params)
    out: dict[str, Any] = {
        "params": {
            "count": len(params),
            "bytes": int(sum(np.asarray(p).nbytes for p in params)),
            "sizes": sorted(int(np.size(p)) for p in params),
        },
        "forms": {},
    }
    for form in forms:
        data = DataParallel(form, devices)
        data.check_batch_size(batch_size, "--batch-size")
        step = data.train_step(module.train_step)
        args = (data.replicate(state), data.to_device(batch), step_rng(config.seed, 0))
        if form == "pmap":  # the pmap'd function itself, on the per-device batch
            lowered = step.mapped.lower(args[0], step.split(args[1]), args[2])
        else:
            lowered = step.lower(*args)
        stablehlo = lowered.as_text()
        hlo = lowered.compile().as_text()
        out["forms"][form] = {
            "stablehlo": stablehlo,
            "hlo": hlo,
            "stablehlo_collectives": len(_STABLEHLO_COLLECTIVE.findall(stablehlo)),
            "stablehlo_shardings": stablehlo.count("sdy.sharding<")
            + stablehlo.count("mhlo.sharding"),
            "collectives": collectives(hlo),
        }
    return out


def time_forms(
    project_name: str, config, devices: int, batch_size: int, forms=FORMS, steps: int = 20
) -> dict[str, dict[str, float]]:
    """Median seconds per train step: one device (plain jit) and each form over `devices`.

    Rounds alternate between the variants (1 device, then each form, `steps` steps each,
    five rounds) so that a busy machine slows them alike; compilation is excluded. Each step
    is waited for before the next (with several in flight, XLA:CPU's in-process all-reduce,
    which blocks a worker thread of the 2-thread pool while it waits for the other device,
    deadlocked here once).
    """
    import statistics
    import time

    import jax

    from comparisons.registry import get_project
    from jaxpath.common.loop import step_rng
    from jaxpath.common.parallel import DataParallel

    project = get_project(project_name)
    module = project.module("jax")
    state = module.create_state(config, steps_per_epoch=1)
    batch = project.example_batch(batch_size, config=config)
    single = jax.devices()[0]
    variants = {"1 device": (module.train_step, jax.device_put(state, single))}
    batches = {"1 device": jax.device_put(batch, single)}
    for form in forms:
        data = DataParallel(form, devices)
        variants[form] = (data.train_step(module.train_step), data.replicate(state))
        batches[form] = data.to_device(batch)
    rng = step_rng(config.seed, 0)
    for name, (step, start) in variants.items():  # compile
        jax.block_until_ready(step(start, batches[name], rng))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(5):
        for name, (step, current) in variants.items():
            begin = time.perf_counter()
            for _ in range(steps):  # one step in flight: XLA:CPU's collectives block pool
                current, metrics = step(current, batches[name], rng)  # threads
                jax.block_until_ready((current, metrics))
            samples[name].append((time.perf_counter() - begin) / steps)
            variants[name] = (step, current)
    out = {}
    for name, values in samples.items():
        median = statistics.median(values)
        out[name] = {"step_ms": 1000 * median, "examples_per_s": batch_size / median}
    return out


def render_markdown(summary: dict) -> str:
    """The collectives of each form as tables, and what differs between the lowerings."""
    params = summary["params"]
    lines = [
        f"# {summary['project']}: data-parallel train step over {summary['devices']} devices",
        "",
        f"Parameters: {params['count']} arrays, {params['bytes']:,} bytes (the gradients to "
        f"average). Batch {summary['batch_size']} ({summary['batch_size'] // summary['devices']}"
        " per device).",
        "",
    ]
    for form, entry in summary["forms"].items():
        rows = entry["collectives"]
        lines += [
            f"## {form}",
            "",
            f"In the StableHLO JAX emits: {entry['stablehlo_collectives']} collectives, "
            f"{entry['stablehlo_shardings']} sharding annotations. In XLA's optimized HLO: "
            f"{len(rows)} collectives, {sum(r['bytes'] for r in rows):,} bytes.",
            "",
            "| op | operands | shapes | bytes | replica groups |",
            "|---|---:|---|---:|---|",
        ]
        for r in rows:
            shapes = ", ".join(r["shapes"][:6]) + (" ..." if len(r["shapes"]) > 6 else "")
            lines.append(
                f"| {r['op']} | {len(r['shapes'])} | {shapes} | {r['bytes']:,} | "
                f"`{r['replica_groups']}` |"
            )
        lines.append("")
    return "\n".join(lines)


def parallel_ir(
    project_name: str, config, out_dir: Path, devices: int, batch_size: int, forms=FORMS
) -> dict:
    """Write each form's StableHLO, optimized HLO and the collectives table; the summary."""
    lowered = lower_forms(project_name, config, devices, batch_size, forms)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "project": project_name,
        "devices": devices,
        "batch_size": batch_size,
        "params": lowered["params"],
        "forms": {},
    }
    for form, entry in lowered["forms"].items():
        atomic_write_text(out_dir / f"{form}.stablehlo.txt", entry["stablehlo"])
        atomic_write_text(out_dir / f"{form}.hlo.txt", entry["hlo"])
        summary["forms"][form] = {
            "stablehlo_collectives": entry["stablehlo_collectives"],
            "stablehlo_shardings": entry["stablehlo_shardings"],
            "collectives": entry["collectives"],
        }
    write_json(out_dir / "parallel.json", summary)
    atomic_write_text(out_dir / "parallel.md", render_markdown(summary))
    return summary


def run_parallel(args) -> int:
    """`roadmap ir PROJECT --devices N [--parallel FORM|all]`."""
    from comparisons.options import load_config

    if args.framework == "torch":
        raise SystemExit(
            "roadmap ir: --devices lowers JAX's data-parallel forms; use --framework jax"
        )
    forms = FORMS if args.parallel == "all" else (args.parallel,)
    out_dir = Path(args.workdir) / args.project / "ir" / "parallel"
    batch_size = getattr(args, "batch_size", None) or 8 * args.devices
    config = load_config(args)
    summary = parallel_ir(args.project, config, out_dir, args.devices, batch_size, forms)
    print(render_markdown(summary))
    if getattr(args, "time_steps", 0):
        times = time_forms(args.project, config, args.devices, batch_size, forms, args.time_steps)
        base = times["1 device"]["examples_per_s"]
        lines = [
            f"Train step, batch {batch_size}, median of 5 alternating rounds of "
            f"{args.time_steps} steps:",
            "",
            "| | ms/step | examples/s | vs 1 device |",
            "|---|---:|---:|---:|",
        ]
        for name, row in times.items():
            lines.append(
                f"| {name} | {row['step_ms']:.2f} | {row['examples_per_s']:,.0f} | "
                f"{row['examples_per_s'] / base:.2f}x |"
            )
        print("\n".join(lines))
        write_json(out_dir / "times.json", {"batch_size": batch_size, "times": times})
    print(f"wrote {out_dir}: parallel.md, parallel.json, <form>.stablehlo.txt and .hlo.txt")
    return 0
