"""`roadmap ir diff`: two compiled training steps aligned layer by layer (framework-free part).

jax_layers.py and torch_layers.py turn each framework's step into op records (one per
jaxpr equation / FX node): phase (forward, backward, update, other), the module scope the op
was traced in, its source line, op name, category, FLOPs, bytes, and the kernel (XLA fusion,
Inductor kernel or extern call) it ended up in, plus measured time per kernel. Here each op
gets one row: the parameterised layer it belongs to, the glue after a layer (activations,
pooling, dropout, flatten: ops inside the model but outside any parameterised layer), the
loss, the optimizer, other step code, or `unattributed`; then rows are set side by side.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

# assign_rows is re-exported: the row rules live in rows.py, which the framework sides import.
from comparisons.ir.rows import FIXED_ROWS, INPUT_ROW, MATMUL, PHASES, assign_rows  # noqa: F401


def row_order(layers: list[str], rows: set[str]) -> list[str]:
    """Display order: input glue, each layer then its glue (forward order), then fixed rows."""
    order = [INPUT_ROW]
    for layer in layers:
        order += [layer, f"after {layer}"]
    order += [r for r in sorted(rows) if r not in order and r not in FIXED_ROWS]
    order += list(FIXED_ROWS)
    return [r for r in order if r in rows]


def aggregate(side: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (phase, row): op counts, matmul/conv FLOPs, bytes, kernels, time (one framework)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(item):
        empty = {"ops": Counter(), "flops": 0, "bytes": 0, "kernels": set(), "inferred": set()}
        empty["time_us"] = None
        return out.setdefault((item["phase"], item["row"]), empty)

    for op in side["ops"]:
        cell = entry(op)
        cell["ops"][op["op"]] += 1
        cell["flops"] += op["flops"] if op["category"] == MATMUL else 0
        cell["bytes"] += op["bytes"]
    for item in side.get("kernel_rows", []):  # compiled kernels, attributed by each side
        entry(item)["kernels"].add(item["kernel"])
        if item.get("inferred"):  # a kernel placed here through the graph, not metadata
            entry(item)["inferred"].add(item["kernel"])
    for item in side.get("time", {}).get("rows", []):
        cell = entry(item)
        cell["time_us"] = (cell["time_us"] or 0.0) + item["us"]
    return out


def align(sides: dict[str, dict[str, Any]], layers: list[str]) -> dict[str, Any]:
    """The aligned tables: {phase: [{row, <side>: {ops, flops, bytes, kernels, time_us}}]}."""
    per_side = {name: aggregate(side) for name, side in sides.items()}
    tables: dict[str, list[dict[str, Any]]] = {}
    for phase in PHASES:
        rows = {row for agg in per_side.values() for (p, row) in agg if p == phase}
        if not rows:
            continue
        table = []
        for row in row_order(layers, rows):
            entry: dict[str, Any] = {"row": row}
            for name, agg in per_side.items():
                cell = agg.get((phase, row))
                entry[name] = None if cell is None else _plain(cell)
            table.append(entry)
        tables[phase] = table
    return tables


def _plain(cell: dict[str, Any]) -> dict[str, Any]:
    return {
        "ops": dict(sorted(cell["ops"].items(), key=lambda kv: (-kv[1], kv[0]))),
        "flops": cell["flops"],
        "bytes": cell["bytes"],
        "kernels": sorted(cell["kernels"]),
        "inferred_kernels": len(cell["inferred"]),
        "time_us": None if cell["time_us"] is None else round(cell["time_us"], 1),
    }


def _signature(cell: dict[str, Any] | None) -> dict[str, Any]:
    cell = cell or {}
    keys = ("ops", "flops", "bytes")
    return {**{k: cell.get(k) for k in keys}, "kernels": len(cell.get("kernels") or [])}


def differences(tables: dict[str, Any], a: str = "a", b: str = "b") -> list[dict[str, Any]]:
    """Rows whose ops, FLOPs, bytes or kernel count differ between sides (time is noise)."""
    out = []
    for phase, table in tables.items():
        for entry in table:
            x, y = _signature(entry.get(a)), _signature(entry.get(b))
            if fields := [f for f in x if x[f] != y[f]]:
                out.append({"phase": phase, "row": entry["row"], "fields": fields})
    return out


# ------------------------------------------------------------------------------ rendering


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}{unit}"
    return f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def ops_text(ops: dict[str, int] | None, limit: int = 4) -> str:
    """'conv_general_dilated, add, reshape x2 (+3)': the most frequent ops of a cell."""
    if not ops:
        return "-"
    items = [f"{op}" + (f" x{n}" if n > 1 else "") for op, n in list(ops.items())[:limit]]
    more = len(ops) - limit
    return ", ".join(items) + (f" (+{more})" if more > 0 else "")


def _time(cell: dict[str, Any] | None) -> str:
    return "-" if not cell or cell.get("time_us") is None else f"{cell['time_us']:.0f}us"


def _kernel_count(cell: dict[str, Any]) -> str:
    """'4', or '4 (2~)' when 2 of them were placed by inference (no metadata)."""
    inferred = cell.get("inferred_kernels") or 0
    return f"{len(cell['kernels'])}" + (f" ({inferred}~)" if inferred else "")


COLUMNS = ("ops", "n", "kernels", "FLOPs", "bytes", "time")


def _column(name: str, time_kind: str | None) -> str:
    """Column title; the time column says which step was timed: 'time(eager)'."""
    return f"time({time_kind})" if name == "time" and time_kind else name


def _cells(cell: dict[str, Any] | None) -> list[str]:
    if cell is None:
        return ["", "", "", "", "", ""]
    if not cell["ops"] and not cell["kernels"]:  # a time-only row (unaccounted)
        return ["-", "", "", "", "", _time(cell)]
    return [
        ops_text(cell["ops"]),
        str(sum(cell["ops"].values())),
        _kernel_count(cell),
        _num(cell["flops"]) if cell["flops"] else "-",
        _num(cell["bytes"], "B"),
        _time(cell),
    ]


def render_text(result: dict[str, Any], width: int = 44) -> str:
    """One aligned plain-text table per phase (stable: no timestamps; time last per side)."""
    names = result["sides"]
    marked = {(d["phase"], d["row"]) for d in result.get("differences", [])}
    lines = [result["title"], ""]
    kinds = result.get("time_kind", {})
    for phase, table in result["tables"].items():
        header = ["", "row"] + [f"{n}:{_column(c, kinds.get(n))}" for n in names for c in COLUMNS]
        rows = [header]
        for entry in table:
            mark = "*" if (phase, entry["row"]) in marked else ""
            cells = [c for n in names for c in _cells(entry.get(n))]
            rows.append([mark, entry["row"], *[c[:width] for c in cells]])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines.append(f"== {phase} ==")
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.append("")
    return "\n".join(lines)


def render_markdown(result: dict[str, Any]) -> str:
    """The same tables as markdown (ir_diff.md)."""
    names = result["sides"]
    marked = {(d["phase"], d["row"]) for d in result.get("differences", [])}
    out = [f"# {result['title']}", ""]
    kinds = result.get("time_kind", {})
    for phase, table in result["tables"].items():
        head = ["row"] + [f"{n} {_column(c, kinds.get(n))}" for n in names for c in COLUMNS]
        out += [f"## {phase}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for entry in table:
            mark = " (differs)" if (phase, entry["row"]) in marked else ""
            cells = [c.replace("|", "/") for n in names for c in _cells(entry.get(n))]
            out.append(f"| {entry['row']}{mark} | " + " | ".join(cells) + " |")
        out.append("")
    for note in result.get("notes", []):
        out.append(f"- {note}")
    return "\n".join(out) + "\n"


def dumps(result: dict[str, Any]) -> str:
    """JSON text of a diff result (sorted keys, for diffing two runs)."""
    return json.dumps(result, indent=1, sort_keys=True, default=str)


# ------------------------------------------------------------------------------ driver


def build_side(
    framework: str, project, config, batch_size: int, run: dict | None = None, **kw
) -> dict[str, Any]:
    """One framework's side: ops with rows, kernels, time (imports only that framework).

    `run`: the run options of a --a/--b spec ({devices, parallel}; JAX only).
    """
    batch = project.example_batch(batch_size, config=config)
    if framework == "jax":
        from comparisons.ir.jax_layers import jax_side

        profile, kernels, like = kw.get("profile", True), kw.get("kernels", True), kw.get("like")
        return jax_side(
            project, config, batch, profile=profile, kernels=kernels, run=run, layers_like=like
        )
    if run and run.get("parallel"):
        raise ValueError(
            "--a/--b: devices/parallel are JAX's data-parallel forms (torch's DDP runs one "
            "process per worker: `roadmap run --nproc`); use --framework jax"
        )
    from comparisons.ir.torch_layers import torch_side

    return torch_side(
        project,
        config,
        batch,
        inductor=kw.get("inductor", True),
        profile=kw.get("profile", True),
        compiled_time=kw.get("torch_time") == "compiled",
    )


def _strip(side: dict[str, Any]) -> dict[str, Any]:
    """The side as stored in JSON: op records without their per-op bookkeeping."""
    keep = ("phase", "row", "attributed_by", "op", "category", "flops", "bytes", "line")
    return {**side, "ops": [{k: op.get(k) for k in keep} for op in side["ops"]]}


def layer_flops(side: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Matmul/conv FLOPs per (phase, row)."""
    out: Counter = Counter()
    for op in (op for op in side["ops"] if op["category"] == MATMUL):
        out[(op["phase"], op["row"])] += op["flops"]
    return dict(out)


def _result(project_name: str, title: str, sides: dict[str, Any], **extra) -> dict[str, Any]:
    layers = list(dict.fromkeys(lay for side in sides.values() for lay in side["layers"]))
    notes = list(dict.fromkeys(n for side in sides.values() for n in side.get("notes", [])))
    for name, side in sides.items():
        if time := side.get("time"):
            notes.append(
                f"{name} time: {time['source']}; rows sum {time['sum_us']:.0f} us, "
                f"step wall {time['wall_us']:.0f} us"
            )
    kinds = {name: side["time"]["kind"] for name, side in sides.items() if side.get("time")}
    return {
        "title": title,
        "project": project_name,
        "sides": list(sides),
        "time_kind": kinds,
        "layers": layers,
        "tables": align(sides, layers),
        "notes": notes,
        "detail": {name: _strip(side) for name, side in sides.items()},
        **extra,
    }


def merge_layers(side: dict[str, Any], like: list[str]) -> dict[str, Any]:
    """`side` with each layer nested in one of `like` (and its glue row) renamed to it."""
    from comparisons.ir.rows import coarsen

    layers = coarsen(side["layers"], like)
    rename = {}
    for layer in side["layers"]:
        (target,) = coarsen([layer], like)
        if target != layer:
            rename |= {layer: target, f"after {layer}": f"after {target}"}
    if not rename:
        return side
    for item in [*side["ops"], *side.get("kernel_rows", []), *side.get("time", {}).get("rows", [])]:
        item["row"] = rename.get(item["row"], item["row"])
    return {**side, "layers": layers}


def diff_frameworks(project_name: str, config, batch_size: int = 8, **kw) -> dict[str, Any]:
    """JAX against torch for one config: the aligned tables and the per-layer FLOPs check."""
    from comparisons.registry import get_project

    project = get_project(project_name)
    torch_side = build_side("torch", project, config, batch_size, **kw)
    # JAX's rows at torch's layer granularity where torch's module owns more (an nn.LSTM)
    like = torch_side["layers"]
    sides = {"jax": build_side("jax", project, config, batch_size, like=like, **kw)}
    # and torch's at JAX's where JAX's owns more (nn.MultiheadAttention's out_proj child)
    sides["torch"] = merge_layers(torch_side, sides["jax"]["layers"])
    jf, tf = layer_flops(sides["jax"]), layer_flops(sides["torch"])
    gaps = sorted(f"{p} {r}" for p, r in set(jf) | set(tf) if jf.get((p, r)) != tf.get((p, r)))
    model = getattr(config, "model", "-")
    title = f"ir diff: {project_name} ({model}), jax vs torch, batch {batch_size}"
    return _result(project_name, title, sides, kind="frameworks", flops_mismatch=gaps)


def diff_variants(
    project_name: str,
    framework: str,
    configs: dict,
    batch_size: int = 8,
    runs: dict | None = None,
    **kw,
):
    """Two configs of one framework (`configs` = {"a": config, "b": config}), differences marked.

    `runs` = {"a": {devices, parallel}, ...}: run options per side (JAX's data parallelism).
    """
    from comparisons.registry import get_project

    project = get_project(project_name)
    runs = runs or {}
    sides = {
        k: build_side(framework, project, c, batch_size, run=runs.get(k), **kw)
        for k, c in configs.items()
    }
    title = f"ir diff: {project_name}, {framework}, a vs b, batch {batch_size}"
    result = _result(project_name, title, sides, kind="variants", framework=framework)
    result["differences"] = differences(result["tables"])
    a, b = (vars(c) if hasattr(c, "__dict__") else {} for c in configs.values())
    fields = sorted(k for k in a if a.get(k) != b.get(k))
    run_a, run_b = (runs.get(k) or {} for k in configs)
    fields += sorted(f"{k} (run)" for k in set(run_a) | set(run_b) if run_a.get(k) != run_b.get(k))
    result["config_differences"] = fields
    traced = {k: side.get("traced") for k, side in sides.items()}
    if len(set(traced.values())) > 1:  # e.g. style=nnx: another module's step
        result["notes"].append("traced: " + "; ".join(f"{k}: {v}" for k, v in traced.items()))
    if fields and not result["differences"]:
        why = "the traced step reads none of them as structure (values such as lr are data)"
        result["notes"].append(f"the configs differ in {', '.join(fields)}; {why}")
    return result


def variant_config(base, spec: str | None):
    """`--a`/`--b`: a run folder (its config.json), or KEY=VALUE overrides (space or ';')."""
    return variant_spec(base, spec)[0]


def variant_spec(base, spec: str | None, where: str = "--a/--b") -> tuple[Any, dict | None]:
    """(config, run options) of a `--a`/`--b` spec.

    KEY=VALUE items are config overrides, except the run options `devices=N` and
    `parallel=pmap|sharding|shard_map` (JAX's data-parallel step, comparisons/ir/jax_programs);
    a run folder gives its config.json and no run options.
    """
    from comparisons.ir.jax_programs import RUN_OPTIONS, run_options
    from shared_data.configs.base import from_dict, override, validate

    if not spec:
        return base, None
    if (stored := _run_config(spec)) is not None:
        stored.pop("framework", None)  # the runner's record of which side ran, not a field
        stored["data_dir"] = None  # the diff reads no data; the folder may be gone
        return validate(from_dict(type(base), stored)), None
    items = spec.replace(";", " ").split()
    run = {k: v for k, _, v in (i.partition("=") for i in items) if k in RUN_OPTIONS}
    fields = [i for i in items if i.partition("=")[0] not in RUN_OPTIONS]
    config = validate(override(base, fields)) if fields else base
    return config, (run_options(run, where) if run else None)


def _run_config(spec: str | None) -> dict | None:
    """The config.json of a run folder (or the file itself) named by `spec`, else None."""
    from pathlib import Path

    path = Path(spec or "")
    if spec and (path / "config.json").is_file():
        path = path / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if spec and path.is_file() else None


def run_diff(args) -> int:
    """`roadmap ir diff PROJECT [--a SPEC --b SPEC]`: print the tables, write txt/md/json."""
    import os
    from pathlib import Path

    from comparisons.options import load_config
    from shared_data.runlog import atomic_write_text

    if not args.target:
        raise SystemExit("roadmap ir diff: name the project, e.g. `roadmap ir diff mnist`")
    args.project = args.target
    config = load_config(args)
    batch = getattr(args, "batch_size", None) or 8
    kw = {"profile": args.profile, "inductor": getattr(args, "inductor", True)}
    kw["torch_time"] = getattr(args, "torch_time", "eager")
    if args.a is None and args.b is None:
        result, stem = diff_frameworks(args.project, config, batch, **kw), "ir_diff"
    else:
        # --framework, else the side the run folders ran (their config.json), else JAX
        ran = {(_run_config(s) or {}).get("framework") for s in (args.a, args.b)} - {None}
        framework = args.framework if args.framework != "both" else next(iter(ran), "jax")
        framework = "torch" if framework == "torch" else "jax"
        specs = {k: variant_spec(config, s, f"--{k}") for k, s in (("a", args.a), ("b", args.b))}
        configs = {k: c for k, (c, _) in specs.items()}
        runs = {k: r for k, (_, r) in specs.items() if r}
        if (devices := max((r["devices"] for r in runs.values()), default=1)) > 1:
            # XLA:CPU makes its host devices when JAX starts its backend, not at import
            from jaxpath.common.distributed import with_host_devices

            os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS"), devices)
        result = diff_variants(args.project, framework, configs, batch, runs=runs, **kw)
        result["specs"] = {"a": args.a or "(config)", "b": args.b or "(config)"}
        stem = f"ir_diff_{framework}_variants"
    out = Path(args.workdir) / args.project / "ir"
    out.mkdir(parents=True, exist_ok=True)
    text = render_text(result)
    atomic_write_text(out / f"{stem}.txt", text)
    atomic_write_text(out / f"{stem}.md", render_markdown(result))
    atomic_write_text(out / f"{stem}.json", dumps(result))
    print(text)
    if result["kind"] == "variants":
        changed = result["differences"]
        print(f"{len(changed)} row(s) differ" if changed else "no differences (time aside)")
        if result["config_differences"] and not changed:
            print(result["notes"][-1])
    elif result["flops_mismatch"]:
        print("matmul/conv FLOPs differ in: " + ", ".join(result["flops_mismatch"]))
    print(f"wrote {out}/{stem}.txt, .md and .json")
    return 0
