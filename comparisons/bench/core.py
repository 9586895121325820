"""`roadmap bench PROJECT`: compiled throughput of one project, jax.jit against torch.

Each mode (jax.jit, torch eager, torch.compile, torch.jit.trace) runs the project's own
training step and inference over a batch-size sweep on synthetic data of the project's
shapes, converted once outside the timed region. The first call (compilation) is timed on
its own, warm-up steps are dropped, and each timed step ends with a device sync. FLOPs per
step come from the dot and convolution instructions of XLA's optimized HLO (JAX) and
torch's FlopCounterMode (torch), the same work counted the same way; achieved GFLOP/s is
set against the best any framework reached in the same run (comparisons/bench/peak.py), so
no row exceeds 100%. bench.json records the runtime (allocator, XLA flags) in force.
Writes <workdir>/<project>/bench/bench.json and bench.md; the per-mode step builders are in
comparisons/bench/modes.py, per-op microbenchmarks in comparisons/bench/ops.py, and the
optional per-example-gradient and toy-engine tables (--per-example, --toy) in
comparisons/bench/extras.py. `--modes none` skips the main sweep and keeps only those.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from comparisons.bench import extras, scaling
from comparisons.bench.modes import Ctx, jax_prepare, torch_prepare
from comparisons.bench.op_cases import SIZES
from comparisons.bench.ops import OPS, bench_ops, ops_markdown
from comparisons.bench.peak import (
    PEAK_FRAMEWORKS,
    apply_peak_reference,
    bench_data_pipeline,
    data_pipeline_markdown,
    machine,
    measure_matmul_peak,
    peak_markdown,
    summarize_ms,
    theoretical_peak,
    time_calls,
    versions,
)
from comparisons.env import pin_fp32
from comparisons.options import load_config
from comparisons.registry import get_project
from comparisons.runtime import describe as describe_runtime
from shared_data.configs.base import to_dict
from shared_data.runlog import atomic_write_text, write_json


@dataclasses.dataclass(frozen=True)
class Mode:
    """One way of running a project: its label, framework and the steps it can run."""

    label: str
    framework: str
    whats: tuple[str, ...]


MODES = {
    "jax": Mode("jax.jit", "jax", ("train", "infer")),
    "torch-eager": Mode("torch eager", "torch", ("train", "infer")),
    "torch-compile": Mode("torch.compile", "torch", ("train", "infer")),
    # TorchScript traces inference graphs only; torch 2.x deprecates it.
    "torchscript": Mode("torch.jit.trace", "torch", ("infer",)),
}
DEFAULT_BATCH_SIZES = (32, 128, 512)
DEFAULT_STEPS = 20
WARMUP_STEPS = 2
FLOPS_SOURCES = {
    "jax": "dot+convolution of the optimized HLO (on GPU: of the HLO before optimization)",
    "torch": "torch FlopCounterMode (matmul/conv)",
}
# (torch mode, what a JAX/torch ratio against it means)
COMPARISONS = (
    ("torch-compile", "compiled vs compiled"),
    ("torch-eager", "reference: eager torch"),
    ("torchscript", "reference: traced torch"),
)


class BenchError(RuntimeError):
    """A bench that cannot start: unknown mode, bad sweep, or a device that is not there."""


def resolve_device(device: str) -> str:
    """Return "cpu" or "cuda"; asking for a GPU that either framework lacks raises BenchError."""
    if device == "cpu":
        return "cpu"
    if device not in ("cuda", "gpu"):
        raise BenchError(f"unknown device {device!r}; use cpu, cuda or gpu")
    import jax
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("torch.cuda.is_available() is False")
    try:
        jax.devices("gpu")
    except RuntimeError:
        missing.append(f"jax.devices() = {jax.devices()}")
    if missing:
        raise BenchError(f"no CUDA device: {'; '.join(missing)}")
    return "cuda"


def parse_modes(modes: Any) -> list[str]:
    """Mode keys from a list or a comma-separated string; unknown names raise BenchError."""
    names = modes.split(",") if isinstance(modes, str) else list(modes)
    if [m.strip() for m in names] == ["none"]:  # only the extra tables
        return []
    keys = list(dict.fromkeys(m.strip() for m in names if m.strip()))
    unknown = [m for m in keys if m not in MODES]
    if unknown:
        raise BenchError(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    return keys


def _measure(ctx: Ctx, mode: str, what: str, batch_size: int, flops_cache: dict, errors: dict):
    """One row of results: compile time, step-time spread, throughput and FLOP rate."""
    framework = MODES[mode].framework
    prepare = jax_prepare if framework == "jax" else torch_prepare
    prep = prepare(ctx, mode, what, batch_size)
    start = time.perf_counter()
    prep.sync(prep.call())
    compile_s = prep.setup_s + time.perf_counter() - start
    time_calls(prep.call, prep.sync, ctx.warmup)
    stats = summarize_ms(time_calls(prep.call, prep.sync, ctx.steps))
    key = (framework, what, batch_size)
    if key not in flops_cache:
        try:
            flops_cache[key] = prep.flops()
        except Exception as err:  # a counter failure must not lose the timing
            errors[f"{mode}/{what}/bs{batch_size}/flops"] = _describe(err, "FLOP count")
            flops_cache[key] = None
    flops = flops_cache[key]
    median_s = stats["median_ms"] / 1e3
    return {
        "mode": mode,
        "framework": framework,
        "what": what,
        "batch_size": batch_size,
        **stats,
        "examples_per_s": batch_size / median_s,
        "compile_s": compile_s,
        "flops_per_step": flops,
        "flops_source": FLOPS_SOURCES[framework] if flops else None,
        "gflops": flops / median_s / 1e9 if flops else None,
        "peak_fraction": None,
    }


def _describe(err: BaseException, what: str) -> str:
    lines = str(err).strip().splitlines() or [""]
    return f"{what} failed: {type(err).__name__}: {lines[0][:300]}"


def compute_ratios(results: list[dict]) -> list[dict]:
    """JAX over torch step-time ratios per (step, batch): above 1 means JAX is slower."""
    by_key = {(r["mode"], r["what"], r["batch_size"]): r for r in results}
    ratios = []
    for (mode, what, bs), jax_row in by_key.items():
        for torch_mode, kind in COMPARISONS if mode == "jax" else ():
            torch_row = by_key.get((torch_mode, what, bs))
            if torch_row is None:
                continue
            jax_ms, torch_ms = jax_row["median_ms"], torch_row["median_ms"]
            ratios.append(
                dict(what=what, batch_size=bs, jax_mode="jax", torch_mode=torch_mode,
                     comparison=kind, jax_ms=jax_ms, torch_ms=torch_ms,
                     jax_over_torch=jax_ms / torch_ms)
            )  # fmt: skip
    return ratios


def bench_project(
    project_name: str,
    config: Any,
    batch_sizes=DEFAULT_BATCH_SIZES,
    steps: int = DEFAULT_STEPS,
    modes=tuple(MODES),
    device: str = "cpu",
    progress: bool = True,
    *,
    warmup: int = WARMUP_STEPS,
    peak_n: int = 2048,
    data_examples: int = 8192,
    per_example: bool = False,
    toy: bool = False,
) -> dict[str, Any]:
    """Benchmark every (mode, train/infer, batch size) of a project; failures go to "errors"."""
    device = resolve_device(device)
    modes = parse_modes(modes)
    if steps < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise BenchError(f"need steps >= 1 and positive batch sizes, got {steps}, {batch_sizes}")
    pin_fp32()
    project = get_project(project_name)
    # Schedules must outlast compile + warm-up + timed steps (OneCycleLR raises past its end).
    ctx = Ctx(project, config, device, steps, warmup, max(100, steps + warmup + 4))
    plan = [(m, w, bs) for m in modes for w in MODES[m].whats for bs in batch_sizes]
    errors: dict[str, str] = {}
    result: dict[str, Any] = {
        "project": project_name,
        "config": to_dict(config),
        "device": device,
        "versions": versions(),
        "machine": machine(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "steps": steps,
        "warmup": warmup,
        "peak_n": peak_n,
        "peak_gflops": {},
        "peak_reference": {},
        "theoretical_peak": theoretical_peak() if device == "cpu" else {},
        "results": [],
        "ratios": [],
        "data_pipeline": {},
        "ops": [],
        "per_example": {},
        "toy": {},
        "errors": errors,
    }
    total = len(PEAK_FRAMEWORKS) + len(plan) + 1 + extras.count(batch_sizes, per_example, toy)
    bar = tqdm(total=total, disable=not progress, desc="bench")
    for fw in PEAK_FRAMEWORKS:
        bar.set_description(f"matmul peak {fw}")
        try:
            dev = "cpu" if fw == "numpy" else device
            result["peak_gflops"][fw] = measure_matmul_peak(peak_n, fw, device=dev)
        except Exception as err:
            errors[f"peak/{fw}"] = _describe(err, f"{fw} matmul peak")
        bar.update()
    flops_cache: dict = {}
    for mode, what, bs in plan:
        bar.set_description(f"{MODES[mode].label} {what} bs{bs}")
        try:
            row = _measure(ctx, mode, what, bs, flops_cache, errors)
        except Exception as err:  # named in bench.json; the other modes still run
            errors[f"{mode}/{what}/bs{bs}"] = _describe(err, f"{MODES[mode].label} {what}")
        else:
            result["results"].append(row)
        bar.update()
    bar.set_description("data pipeline")
    try:
        result["data_pipeline"] = bench_data_pipeline(
            project, batch_sizes, data_examples, config=config
        )
    except Exception as err:
        errors["data_pipeline"] = _describe(err, "shared_data pipeline")
    bar.update()
    if per_example:
        result["per_example"] = extras.bench_per_example(ctx, batch_sizes, errors, bar)
    if toy:
        result["toy"] = extras.bench_toy(ctx, batch_sizes, errors, bar)
    bar.close()
    result["machine"]["load_avg_1m_end"] = machine()["load_avg_1m"]
    result["ratios"] = compute_ratios(result["results"])
    return apply_peak_reference(result)


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def to_markdown(result: dict[str, Any]) -> str:
    """The bench as markdown: header, results, ratios, data pipeline, ops, errors."""
    v, m = result["versions"], result["machine"]
    lines = [
        f"# roadmap bench {result['project']} ({result['config'].get('model', '')})",
        "",
        f"{result['date']}; device {result['device']}; {m['cpu_count']} CPUs "
        f"({m['processor']}), {m['platform']}, "
        f"load average {_fmt(m['load_avg_1m'])} at the start; python {v['python']}, "
        f"jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, optax {v['optax']}, "
        f"torch {v['torch']}, numpy {v['numpy']}.",
        describe_runtime(v) + ".",
        peak_markdown(result)
        + f" {result['steps']} timed steps after {result['warmup']} warm-up steps; "
        "compile = the first call.",
        "",
        "| mode | step | batch | compile s | median ms | p10–p90 ms | examples/s "
        "| GFLOP/s | % peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        frac = r.get("peak_fraction")
        frac = None if frac is None else 100 * min(frac, 1.0)  # apply_peak_reference: <= 1
        lines.append(
            f"| {MODES[r['mode']].label} | {r['what']} | {r['batch_size']} | "
            f"{_fmt(r['compile_s'], '.2f')} | {_fmt(r['median_ms'], '.2f')} | "
            f"{_fmt(r['p10_ms'], '.2f')}–{_fmt(r['p90_ms'], '.2f')} | "
            f"{_fmt(r['examples_per_s'], ',.0f')} | {_fmt(r['gflops'])} | {_fmt(frac, '.0f')} |"
        )
    lines += ["", "FLOPs per step: " + "; ".join(f"{k}: {s}" for k, s in FLOPS_SOURCES.items())]
    if result["ratios"]:
        lines += ["", "| step | batch | JAX vs | comparison | JAX ms | torch ms | JAX/torch |"]
        lines.append("|---|---|---|---|---|---|---|")
        for q in result["ratios"]:
            lines.append(
                f"| {q['what']} | {q['batch_size']} | {MODES[q['torch_mode']].label} | "
                f"{q['comparison']} | {q['jax_ms']:.2f} | {q['torch_ms']:.2f} | "
                f"{q['jax_over_torch']:.2f} |"
            )
    if result["data_pipeline"]:
        lines += ["", data_pipeline_markdown(result["data_pipeline"])]
    if result["ops"]:
        lines += ["", ops_markdown(result["ops"])]
    if extras.rows(result):
        lines += ["", extras.to_markdown(result)]
    if result["errors"]:
        lines += ["", "Errors:", ""] + [f"- `{k}`: {e}" for k, e in result["errors"].items()]
    return "\n".join(lines) + "\n"


def write_bench(result: dict[str, Any], workdir: str | Path) -> Path:
    """Write bench.json (atomically) and bench.md under <workdir>/<project>/bench/."""
    outdir = Path(workdir) / result["project"] / "bench"
    write_json(outdir / "bench.json", result)
    atomic_write_text(outdir / "bench.md", to_markdown(result))
    return outdir


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"want comma-separated integers, got {text!r}") from err


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Bench options; project, --workdir, --variant, --set, --model, --device come from the CLI."""
    add = parser.add_argument
    add("--batch-sizes", type=_int_list, default=list(DEFAULT_BATCH_SIZES), help="e.g. 32,128,512")
    add("--steps", type=int, default=DEFAULT_STEPS, help="timed steps after warm-up (default 20)")
    add("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    add("--ops", action=argparse.BooleanOptionalAction, default=True, help="op microbenchmarks")
    add("--ops-compile", action="store_true", help="torch.compile in the op benchmarks (slow)")
    add("--op-names", default=",".join(OPS), help="comma-separated subset of the ops")
    add("--op-size", choices=sorted(SIZES), default="small",
        help="op shapes: small (MNIST-like), speedrun, speedrun7 (CIFAR-10 speedrun)")  # fmt: skip
    add("--peak-n", type=int, default=2048, help="matrix size of the matmul peak (default 2048)")
    extras.add_arguments(parser)
    scaling.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the bench from parsed arguments, write and print it; the exit code."""
    if args.scaling:  # data-parallel runs instead of the step sweep (bench/scaling.py)
        return scaling.run(args)
    progress = getattr(args, "progress", True) and not getattr(args, "no_progress", False)
    ops = [o.strip() for o in args.op_names.split(",") if o.strip()] if args.ops else []
    try:
        device = resolve_device(args.device)
        modes = parse_modes(args.modes)
        if [o for o in ops if o not in OPS]:
            raise BenchError(f"unknown ops in {ops}; known: {', '.join(OPS)}")
        sweep = (args.batch_sizes, args.steps, modes, device, progress)
        flags = {"per_example": args.per_example, "toy": args.toy}
        result = bench_project(args.project, load_config(args), *sweep, peak_n=args.peak_n, **flags)
    except BenchError as err:
        print(f"roadmap bench: error: {err}", file=sys.stderr)
        return 2
    if ops:
        result["ops"] = bench_ops(
            ops, args.steps, args.ops_compile, device, progress, size=args.op_size
        )
        result["op_size"] = args.op_size
        for row in result["ops"]:
            result["errors"].update({f"ops/{row['op']}/{m}": e for m, e in row["errors"].items()})
        apply_peak_reference(result)  # an op may beat every step and matmul: raise the reference
    outdir = write_bench(result, args.workdir)
    print(to_markdown(result))
    print(f"wrote {outdir / 'bench.json'} and {outdir / 'bench.md'}")
    return 0 if result["results"] or extras.rows(result) or result.get("ops") else 1


if __name__ == "__main__":
    from comparisons.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
