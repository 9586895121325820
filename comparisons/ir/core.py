"""`roadmap ir PROJECT`: the compiled IR of one project, JAX and PyTorch side by side.

For the forward pass (predict) and the whole training step it writes, under
<workdir>/<project>/ir/: jaxpr, StableHLO, HLO, optimized HLO, XLA cost and memory analysis
(jax/); torch.export, core ATen, TorchScript, AOTAutograd forward/backward/update graphs and
Inductor kernels (torch/); normalised `*.norm.txt` twins for diffing; SVG dataflow pictures;
ir.json (machine-readable) and ir.md (tables: op categories, FLOPs, fusions vs kernels,
memory). Every failure is caught per artefact and recorded by name. See docs/IR.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from comparisons.env import versions as package_versions
from comparisons.ir.graphs import Section, failure
from comparisons.ir.opmap import CATEGORIES, CORRESPONDENCES, aten_name
from comparisons.ir.step import step_markdown
from comparisons.options import load_config
from comparisons.registry import get_project
from shared_data.configs.base import to_dict
from shared_data.runlog import atomic_write_text, write_json

FRAMEWORK_CHOICES = {"jax": ("jax",), "torch": ("torch",), "both": ("jax", "torch")}
WHAT_CHOICES = {"forward": ("forward",), "train_step": ("train_step",)}
WHAT_CHOICES["both"] = ("forward", "train_step")
DEFAULT_BATCH_SIZE = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `roadmap ir` (the CLI adds project, --workdir, --batch-size, --device...)."""
    parser.add_argument(
        "--framework", choices=sorted(FRAMEWORK_CHOICES), default="both", help="default: both"
    )
    parser.add_argument(
        "--what",
        choices=sorted(WHAT_CHOICES),
        default="both",
        help="forward (predict), train_step (forward+backward+update) or both (default)",
    )
    parser.add_argument(
        "--no-compile",
        dest="inductor",
        action="store_false",
        help="skip Inductor (torch graphs still come from AOTAutograd, with eager kernels)",
    )
    parser.add_argument("--no-torchscript", dest="torchscript", action="store_false")
    parser.add_argument(
        "--no-pictures",
        dest="pictures",
        action="store_false",
        help="write the graphs' Graphviz .dot sources but render no SVG (a whole training "
        "step's picture can take Graphviz a minute or more on a slow CPU)",
    )
    # `roadmap ir diff PROJECT`: "diff" lands in `project`, the project in `target`.
    parser.add_argument("target", nargs="?", help="after `diff`: the project to diff")
    parser.add_argument(
        "--a",
        help="ir diff: config overrides (KEY=VALUE ...; style=nnx, precision=bf16...), the run "
        "options devices=N parallel=pmap|sharding|shard_map (JAX), or a run folder",
    )
    parser.add_argument("--b", help="ir diff: the other side, as --a")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="ir diff: no time column"
    )
    parser.add_argument(
        "--torch-time",
        choices=("eager", "compiled"),
        default="eager",
        help="ir diff: torch's time column from the eager step (default) or the compiled one, "
        "kernel by kernel (kernels rebuilt with profiler ranges: slow on CPU, see docs/IR.md)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        help="JAX's data-parallel train step over N devices: the collectives of each form "
        "(comparisons/ir/parallel.py)",
    )
    parser.add_argument(
        "--parallel",
        choices=("all", "pmap", "sharding", "shard_map"),
        default="all",
        help="with --devices: which form to lower (default: all three)",
    )
    parser.add_argument(
        "--time-steps",
        dest="time_steps",
        type=int,
        default=0,
        help="with --devices: also time each form against one device (steps per round)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `roadmap ir` (and of `roadmap ir diff PROJECT`, comparisons/ir/diff.py)."""
    if args.project == "diff":
        from comparisons.ir.diff import run_diff

        return run_diff(args)
    if getattr(args, "target", None):
        raise SystemExit(f"roadmap ir: unexpected argument {args.target!r} (did you mean diff?)")
    if getattr(args, "devices", None) is not None:
        from comparisons.ir.parallel import run_parallel

        return run_parallel(args)
    out_dir = Path(args.workdir) / args.project / "ir"
    summary = dump_ir(
        args.project,
        load_config(args),
        out_dir,
        frameworks=FRAMEWORK_CHOICES[args.framework],
        what=WHAT_CHOICES[args.what],
        batch_size=getattr(args, "batch_size", None) or DEFAULT_BATCH_SIZE,
        progress=getattr(args, "progress", True),
        device=getattr(args, "device", "cpu"),
        inductor=getattr(args, "inductor", True),
        torchscript=getattr(args, "torchscript", True),
        pictures=getattr(args, "pictures", True),
    )
    print(render_markdown(summary, details=False))
    print(f"wrote {out_dir}/ir.md, ir.json and {len(summary['files'])} files")
    return 1 if summary.get("setup_failed") else 0


def _versions() -> dict[str, str]:
    return {
        **package_versions(("jax", "jaxlib", "flax", "optax", "torch")),
        "platform": platform.platform(),
    }


def _make_dump(framework, project, config, batch, sections, device, inductor, torchscript):
    if framework == "jax":
        from comparisons.ir.jax_ir import JaxDump
        from jaxpath.common.precision import pin_fp32

        pin_fp32()
        return JaxDump(project, config, batch, sections, device=device)
    from comparisons.ir.torch_ir import TorchDump
    from torchpath.common.precision import pin_fp32

    pin_fp32()
    torch_device = "cuda" if device in ("cuda", "gpu") else device
    return TorchDump(
        project,
        config,
        batch,
        sections,
        device=torch_device,
        inductor=inductor,
        torchscript=torchscript,
    )


def dump_ir(
    project_name: str,
    config,
    out_dir: str | Path,
    frameworks=("jax", "torch"),
    what=("forward", "train_step"),
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    *,
    device: str = "cpu",
    inductor: bool = True,
    torchscript: bool = True,
    pictures: bool = True,
) -> dict[str, Any]:
    """Write every IR artefact of `project_name` under `out_dir`; returns the ir.json summary.

    `pictures=False` writes each graph's .dot source only (no SVG rendering).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    project = get_project(project_name)
    batch = project.example_batch(batch_size, config=config)
    sections = {fw: {w: Section(out_dir, fw, w, pictures) for w in what} for fw in frameworks}
    tasks, setup_failed = [], False
    for fw in frameworks:
        try:
            dump = _make_dump(
                fw, project, config, batch, sections[fw], device, inductor, torchscript
            )
            tasks += dump.tasks()
        except Exception as err:  # noqa: BLE001 -- the other framework still runs
            setup_failed = True
            for section in sections[fw].values():
                section.data["errors"]["setup"] = f"{fw} unavailable: {failure(err)}"
    bar = tqdm(tasks, desc="roadmap ir", unit="artefact", disable=not progress)
    for section, label, thunk in bar:
        bar.set_description(f"{section.framework} {section.what}: {label}")
        start = time.perf_counter()
        try:
            thunk()
        except Exception as err:  # noqa: BLE001 -- named failure, the rest still appears
            section.data["errors"][label] = f"{label} failed: {failure(err)}"
        section.data["timings_s"][label] = round(time.perf_counter() - start, 2)
    summary = {
        "project": project_name,
        "model": getattr(config, "model", None),
        "batch_size": batch_size,
        "device": device,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": _versions(),
        "config": to_dict(config),
        "frameworks": {fw: {w: s.data for w, s in ws.items()} for fw, ws in sections.items()},
        "setup_failed": setup_failed,
    }
    summary["comparison"] = _comparison(summary)
    summary["errors"] = {
        f"{fw}.{w}.{label}": message
        for fw, ws in summary["frameworks"].items()
        for w, data in ws.items()
        for label, message in data["errors"].items()
    }
    files = [f for ws in summary["frameworks"].values() for d in ws.values() for f in d["files"]]
    summary["files"] = ["ir.md", "ir.json", *files]
    write_json(out_dir / "ir.json", summary)
    atomic_write_text(out_dir / "ir.md", render_markdown(summary, details=True))
    return summary


def _get(summary, fw, what, *keys):
    value = summary["frameworks"].get(fw, {}).get(what, {})
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _comparison(summary) -> dict[str, Any]:
    out = {}
    for what in ("forward", "train_step"):
        jax_flops = _get(summary, "jax", what, "flops", "matmul_conv")
        torch_flops = _get(summary, "torch", what, "flops", "flop_counter")
        entry: dict[str, Any] = {"matmul_conv_flops": {"jax": jax_flops, "torch": torch_flops}}
        if jax_flops and torch_flops:
            entry["matmul_conv_flops"]["rel_diff"] = abs(jax_flops - torch_flops) / torch_flops
        cats = {
            c: {fw: _get(summary, fw, what, "op_categories", c) for fw in ("jax", "torch")}
            for c in CATEGORIES
        }
        entry["op_categories"] = cats
        out[what] = entry
    return out


# ----------------------------------------------------------------------------- ir.md


def _n(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}{unit}"
    value = int(value)
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}{unit}"
    return f"{value}{unit and ' ' + unit}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _whats(summary) -> list[str]:
    return [
        w
        for w in ("forward", "train_step")
        if any(w in ws for ws in summary["frameworks"].values())
    ]


def render_markdown(summary: dict[str, Any], details: bool = True) -> str:
    """ir.md: the side-by-side tables (and, with `details`, per-op lists, kernels, files)."""
    g = lambda fw, w, *k: _get(summary, fw, w, *k)  # noqa: E731
    whats = _whats(summary)
    v = summary["versions"]
    out = [
        f"# IR: {summary['project']} ({summary['model']}), batch {summary['batch_size']}",
        "",
        f"{summary['created']}; jax {v['jax']}, flax {v['flax']}, torch {v['torch']}, "
        f"python {v['python']}; device {summary['device']}.",
        "",
        "## Ops by category",
        "",
        "JAX: leaf primitives of the jaxpr. PyTorch: forward = core-ATen export graph; "
        "train step = all AOTAutograd graphs of torch.compile.",
        "",
    ]
    fws = [fw for fw in ("jax", "torch") if fw in summary["frameworks"]]
    cols = [(fw, w) for w in whats for fw in fws]
    rows = [[c, *[_n(g(fw, w, "op_categories", c)) for fw, w in cols]] for c in CATEGORIES]
    out += [_table(["category", *[f"{fw} {w}" for fw, w in cols]], rows), ""]
    if "train_step" in whats:
        parts = [(fw, p) for p in ("forward", "backward", "update") for fw in fws]
        rows = [
            [c, *[_n(g(fw, "train_step", "parts", p, "op_categories", c)) for fw, p in parts]]
            for c in CATEGORIES
        ]
        out += [
            "Training step in parts (the pictures: `*/train_step.{forward,backward,update}.svg`):"
        ]
        out += ["", _table(["category", *[f"{fw} {p}" for fw, p in parts]], rows), ""]
    out += ["## FLOPs", ""]
    out += [
        "XLA dot+conv: summed from the HLO's dot and convolution instructions. FlopCounterMode: "
        "torch's count of matmul/conv-like ops in an eager run. XLA cost analysis also counts "
        "elementwise and reduction work (docs/IR.md).",
        "",
    ]
    rows = []
    for w in whats:
        cmp = summary["comparison"][w]["matmul_conv_flops"]
        diff = cmp.get("rel_diff")
        rows.append(
            [
                w,
                _n(cmp["jax"]),
                _n(cmp["torch"]),
                "-" if diff is None else f"{100 * diff:.2f}%",
                _n(g("jax", w, "flops", "cost_analysis")),
                _n(g("jax", w, "cost_analysis", "transcendentals")),
            ]
        )
    header = ["what", "XLA dot+conv", "FlopCounterMode", "diff", "XLA cost analysis", "transc."]
    out += [_table(header, rows), "", "## Fusions and kernels", ""]
    rows = []
    for w in whats:
        kinds = g("jax", w, "fusions", "by_kind") or {}
        unfused = g("jax", w, "fusions", "unfused_ops") or {}
        top = ", ".join(f"{op} {n}" for op, n in list(unfused.items())[:4])
        rows.append(
            [
                w,
                _n(g("jax", w, "fusions", "fusions")),
                ", ".join(f"{k} {n}" for k, n in kinds.items()) or "-",
                top or "-",
                _n(g("torch", w, "kernels", "kernels")),
                _n(g("torch", w, "kernels", "extern_calls")),
            ]
        )
    header = ["what", "XLA fusions", "kinds", "unfused XLA ops", "Inductor kernels", "extern calls"]
    out += [_table(header, rows), "", "## Memory", ""]
    mem_rows = [
        ("parameters", "param_bytes", "param_bytes"),
        ("optimizer state", "optimizer_state_bytes", "optimizer_state_bytes"),
        ("intermediates (sum over graph, no reuse)", "intermediate_bytes", "intermediate_bytes"),
        ("XLA temp buffers (after reuse)", "xla_temp_bytes", None),
        ("XLA peak memory", "xla_peak_bytes", None),
        ("XLA arguments", "xla_argument_bytes", None),
        ("XLA outputs", "xla_output_bytes", None),
        (
            "saved for backward (incl. params, inputs)",
            "saved_for_backward_bytes",
            "saved_for_backward_bytes",
        ),
    ]
    rows = []
    for label, jax_key, torch_key in mem_rows:
        keys = {"jax": jax_key, "torch": torch_key}
        cells = [_n(g(fw, w, "memory", keys[fw]), "B") if keys[fw] else "-" for fw, w in cols]
        rows.append([label, *cells])
    out += [_table(["bytes", *[f"{fw} {w}" for fw, w in cols]], rows), ""]
    compile_s = [
        f"{fw} {w} {label} {t} s"
        for fw, label in (("jax", "optimized HLO"), ("torch", "torch.compile first call"))
        for w in whats
        if (t := g(fw, w, "timings_s", label)) is not None
    ]
    steps = {fw: d["train_step"] for fw, d in summary["frameworks"].items() if "train_step" in d}
    out += step_markdown(steps)
    out += ["Compile times (XLA: lower+compile to optimized HLO; torch: first compiled call): "]
    out += ["; ".join(compile_s) or "-", ""]
    errors = summary.get("errors") or {}
    out += ["## Errors", ""] + ([f"- {k}: {m}" for k, m in errors.items()] or ["none"]) + [""]
    if details:
        out += _details(summary, whats)
    return "\n".join(out)


def _details(summary, whats) -> list[str]:
    g = lambda fw, w, *k: _get(summary, fw, w, *k)  # noqa: E731
    out = ["## Counterpart ops (opmap.CORRESPONDENCES)", ""]
    rows = []
    for prims, aten, note in CORRESPONDENCES:
        counts = []
        for w in whats:
            counts.append(sum((g("jax", w, "ops") or {}).get(p, 0) for p in prims))
            torch_ops = g("torch", w, "ops") or {}
            counts.append(sum(n for op, n in torch_ops.items() if aten_name(op) in aten))
        rows.append([", ".join(prims), ", ".join(aten), *counts, note])
    header = ["jaxpr", "ATen", *[f"{fw} {w}" for w in whats for fw in ("jax", "torch")], "note"]
    out += [_table(header, rows), ""]
    for w in whats:
        ops = g("jax", w, "flops", "matmul_conv_ops") or []
        by_op = g("torch", w, "flops", "flop_counter_by_op") or {}
        out += [f"## FLOPs per op: {w}", ""]
        out += [
            _table(
                ["XLA op", "shape", "FLOPs", "dense"],
                [[o["name"], f"`{o['shape']}`", _n(o["flops"]), _n(o["dense_flops"])] for o in ops],
            )
        ]
        out += ["", _table(["FlopCounterMode op", "FLOPs"], [[k, _n(n)] for k, n in by_op.items()])]
        out += [""]
        kernels = g("torch", w, "kernels", "graphs") or []
        if kernels:
            out += [f"## Inductor kernels: {w}", ""]
            rows = [
                [k["part"], k["aot_id"], f"`{kern['name']}`", ", ".join(kern["aten_ops"])]
                for k in kernels
                for kern in k["kernels"]
            ]
            rows += [
                [k["part"], k["aot_id"], f"`{c['call']}`", ", ".join(c["aten_ops"])]
                for k in kernels
                for c in k["extern_calls"]
            ]
            out += [_table(["part", "AOT graph", "kernel / extern call", "ATen ops"], rows), ""]
    notes = [
        f"- {fw} {w}: {n}"
        for fw, ws in summary["frameworks"].items()
        for w, d in ws.items()
        for n in d.get("notes", [])
    ]
    breaks = [f"- torch {w}: {b}" for w in whats for b in (g("torch", w, "graph_breaks") or [])]
    timings = [
        [fw, w, label, t]
        for fw, ws in summary["frameworks"].items()
        for w, d in ws.items()
        for label, t in d.get("timings_s", {}).items()
    ]
    out += ["## Timings (s)", "", _table(["framework", "what", "artefact", "s"], timings), ""]
    out += ["## Notes", "", *(notes or ["none"]), "", "## Graph breaks (dynamo)", ""]
    out += [*(breaks or ["none"]), "", "## Files", ""]
    out += [f"- [{f}]({f})" for f in summary["files"]] + [""]
    return out
