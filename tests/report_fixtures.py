"""A realistic runs/ tree for the report tests: runs, compare, bench and IR outputs of one project.

The numbers are shaped like real MNIST results on this machine (two epochs, a CNN in both
frameworks, a JAX MLP run, a three-mode bench, IR dumps with a graph picture), so the report is
exercised on what it will actually meet.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PROJECT = "mnist"
COMPARE_ID = "20261128-101500"
MLP_RUN_ID = "20261127-090000"
STEPS_PER_EPOCH = 937
SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="220" height="90" viewBox="0 0 220 90">
<rect x="5" y="5" width="90" height="40" fill="#eef" stroke="#333"/>
<text x="14" y="30" font-size="12">convolution</text>
<path d="M95 25 L125 25" stroke="#333"/>
<rect x="125" y="5" width="90" height="40" fill="#efe" stroke="#333"/>
<text x="140" y="30" font-size="12">fusion.3</text></svg>
"""
BIG_SVG_BYTES = 4096
VERSIONS = {"python": "3.11.7", "jax": "0.10.2", "torch": "2.14.1", "flax": "0.12.8"}


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def _history(final_acc: float, epochs: int) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e + 1,
            "step": (e + 1) * STEPS_PER_EPOCH,
            "train_loss": 0.25 / (e + 1),
            "train_accuracy": final_acc - 0.01 / (e + 1),
            "test_loss": 0.045 / (1 + 0.3 * e),
            "test_accuracy": final_acc - 0.005 * (epochs - 1 - e),
            "epoch_time_s": 42.0,
        }
        for e in range(epochs)
    ]


def write_run(
    runs: Path, framework: str, run_id: str, model: str, final_acc: float, epochs: int = 2
) -> dict[str, Any]:
    """One run folder (config.json, metrics.jsonl, summary.json); returns its summary."""
    rdir = runs / PROJECT / framework / run_id
    config = {"__class__": "MnistConfig", "framework": framework, "model": model}
    config.update({"dataset": "mnist", "epochs": epochs, "batch_size": 64, "optimizer": "adadelta"})
    _write(rdir / "config.json", config)
    lines, history = [], _history(final_acc, epochs)
    for e in range(epochs):
        for step in range(e * STEPS_PER_EPOCH + 100, (e + 1) * STEPS_PER_EPOCH, 100):
            loss = 2.3 * math.exp(-step / 150) + 0.04 + (0.01 if framework == "jax" else 0.0)
            row = {"split": "train", "step": step, "epoch": e, "loss": loss, "accuracy": 1 - loss}
            lines.append(json.dumps(row))
        h = history[e]
        test = {"split": "test", "step": h["step"], "epoch": e + 1}
        lines.append(json.dumps({**test, "loss": h["test_loss"], "accuracy": h["test_accuracy"]}))
    _write(rdir / "metrics.jsonl", "\n".join(lines) + "\n")
    summary = {
        "framework": framework,
        "history": history,
        "steps": epochs * STEPS_PER_EPOCH,
        "num_params": 1_199_882 if model == "cnn" else 235_146,
        "first_step_s": 1.9 if framework == "jax" else 0.05,
        "train_examples_per_s": 1400.0 if framework == "jax" else 6300.0,
        "resumed": False,
        "wall_s": 2 * 42.0 + 5.0,
    }
    _write(rdir / "summary.json", summary)
    return summary


def write_compare(runs: Path, summaries: dict[str, Any], with_rows: bool = True) -> Path:
    """runs/<project>/compare/<id>/compare.json (+ compare.md) as `roadmap compare` writes it."""
    cdir = runs / PROJECT / "compare" / COMPARE_ID
    rows = []
    for e in range(2):
        for key, kind in (("test_accuracy", "pct"), ("test_loss", "f4"), ("train_loss", "f4")):
            row = {"metric": f"epoch {e + 1} {key.replace('_', ' ')}", "kind": kind}
            rows.append(row | {fw: s["history"][e][key] for fw, s in summaries.items()})
    rows.append(
        {"metric": "train examples/s", "kind": "rate"}
        | {fw: s["train_examples_per_s"] for fw, s in summaries.items()}
    )
    rows.append({"metric": "parameters", "kind": "int"} | {fw: 1_199_882 for fw in summaries})
    data = {
        "project": PROJECT,
        "run_id": COMPARE_ID,
        "date": "2026-11-28 10:15:00",
        "config": {"model": "cnn", "dataset": "mnist", "epochs": 2, "batch_size": 64, "seed": 1},
        "versions": VERSIONS,
        "frameworks": list(summaries),
        "runs": summaries,
        "initial_outputs_max_abs_diff": 2.4e-6,
        "workdirs": {fw: f"runs/{PROJECT}/{fw}/{COMPARE_ID}" for fw in summaries},
        "total_wall_s": 190.0,
    }
    if with_rows:
        data["rows"] = rows
    _write(cdir / "compare.md", "| metric | jax | torch |\n|---|---:|---:|\n")
    return _write(cdir / "compare.json", data)


def write_bench(runs: Path) -> Path:
    """runs/<project>/bench/bench.json in the documented schema."""
    results, peak = [], {"numpy": 136.0, "jax": 100.0, "torch": 92.0}
    modes = (("jax", "jax", 1.0), ("torch", "torch-eager", 3.0), ("torch", "torch-compile", 3.6))
    for framework, mode, speed in modes:
        # The CNN: about 24 MFLOP per example forward, three times that for a training step.
        for what, scale, flops in (("train", 1.0, 7.2e7), ("infer", 3.0, 2.4e7)):
            for batch in (32, 128, 512):
                rate = 250 * speed * scale * (batch / 32) ** 0.1
                ms = 1e3 * batch / rate
                gflops = flops * rate / 1e9
                results.append(
                    {
                        "mode": mode,
                        "framework": framework,
                        "what": what,
                        "batch_size": batch,
                        "median_ms": ms,
                        "p10_ms": ms * 0.95,
                        "p90_ms": ms * 1.1,
                        "examples_per_s": rate,
                        "compile_s": 0.02 if mode == "torch-eager" else 1.9,
                        "flops_per_step": flops * batch,
                        "gflops": gflops,
                        "peak_fraction": gflops / peak[framework],
                    }
                )
    # bench_ops' layout: one row per op, one <mode>_ms / <mode>_gflops column pair per mode.
    ops = []
    for op, shape, flops, jax_ms in (
        ("matmul", "512x512 @ 512x512", 2.7e8, 2.9),
        ("conv2d", "256x14x14x32 * 3x3x32x64", 2.9e9, 41.0),
        ("conv2d_dw", "256x14x14x32 * 3x3x32x64", 2.9e9, 469.0),
    ):
        row = {"op": op, "shape": shape, "flops": flops, "flops_formula": "2*M*N*K"}
        row |= {"errors": {}}
        for mode, ms in (("jax", jax_ms), ("torch_eager", jax_ms / 3)):
            row |= {f"{mode}_ms": ms, f"{mode}_p10_ms": ms * 0.9, f"{mode}_p90_ms": ms * 1.2}
            row |= {f"{mode}_gflops": flops / ms / 1e6}
            row |= {f"{mode}_peak_fraction": flops / ms / 1e6 / peak[mode.split("_")[0]]}
        ops.append(row | {"jax_over_torch_eager": 3.0})
    data = {
        "project": PROJECT,
        "date": "2026-11-28T11:00:00+00:00",
        "device": "cpu",
        "machine": {"cpu_count": 2, "platform": "Linux-x86_64", "torch_threads": 2},
        "steps": 20,
        "warmup": 2,
        "versions": VERSIONS | {"numpy": "2.1.3"},
        "peak_gflops": peak,
        "results": results,
        "ratios": [
            {"what": "train", "batch_size": 128, "jax_mode": "jax", "torch_mode": "torch-compile"}
            | {"comparison": "compiled vs compiled", "jax_ms": 94.0, "torch_ms": 26.1}
            | {"jax_over_torch": 3.6}
        ],
        "ops": ops,
        "data_pipeline": {
            "what": "iterate_batches over synthetic MNIST",
            "n_examples": 8192,
            "results": [
                {
                    "batch_size": b,
                    "examples_per_s": 2.5e5 * b / 128,
                    "augmented_examples_per_s": 4e4,
                }
                for b in (32, 128, 512)
            ],
        },
        "errors": {},
    }
    return _write(runs / PROJECT / "bench" / "bench.json", data)


def _ir_entry(idir: Path, fw: str, what: str, dumps: tuple[str, ...]) -> dict[str, Any]:
    """One (framework, step) entry as comparisons/ir_graphs.Section records it."""
    files = []
    for dump in dumps:
        _write(idir / fw / f"{what}.{dump}", f"# {fw} {what} {dump}\n")
        files.append(f"{fw}/{what}.{dump}")
    # One "large" picture (over BIG_SVG_BYTES): the report links it instead of embedding it.
    big = fw == "torch" and what == "train_step"
    svg = SVG.replace("</svg>", f"<!-- {'x' * BIG_SVG_BYTES} --></svg>") if big else SVG
    _write(idir / fw / f"{what}.svg", svg)
    _write(idir / fw / f"{what}.dot", "digraph { a -> b }\n")
    files += [f"{fw}/{what}.dot", f"{fw}/{what}.svg"]
    categories = {"matmul/conv": 4, "elementwise": 9 if fw == "jax" else 6, "reduction": 2}
    ops = {f"{fw}_op_{i}": i + 1 for i in range(15)}  # long enough to be folded away
    entry = {
        "files": files,
        "errors": {},
        "notes": [f"{what}: graph capped at 400 nodes"] if what == "train_step" else [],
        "timings_s": {"trace": 0.4, "compile": 1.9},
        "device": "TFRT_CPU_0" if fw == "jax" else "cpu",
        "ops": ops,
        "op_categories": categories,
        "memory": {"param_bytes": 4_799_528, "intermediate_bytes": 1_200_000},
        "flops": {"matmul_conv": 3.1e9 if what == "forward" else 9.3e9, "cost_analysis": 3.2e9},
        "fusions": {"fusions": 7, "by_kind": {"kLoop": 5, "kOutput": 2}, "instructions": 60},
    }
    if what == "train_step":
        entry["parts"] = {
            part: {"ops": ops, "op_categories": categories, "intermediate_bytes": 1000}
            for part in ("forward", "backward", "update")
        }
    return entry


def write_ir(runs: Path) -> Path:
    """runs/<project>/ir/ir.json, a few dump files and the graph pictures."""
    idir = runs / PROJECT / "ir"
    frameworks = {
        fw: {what: _ir_entry(idir, fw, what, dumps) for what in ("forward", "train_step")}
        for fw, dumps in (
            ("jax", ("jaxpr.txt", "stablehlo.mlir", "opt.hlo.txt")),
            ("torch", ("torchscript.txt", "export.aten.txt")),
        )
    }
    data = {"project": PROJECT, "versions": VERSIONS, "frameworks": frameworks, "errors": {}}
    return _write(idir / "ir.json", data)


def make_runs_tree(root: Path) -> Path:
    """Write the whole tree under `root`/runs and return that folder."""
    runs = root / "runs"
    summaries = {
        fw: write_run(runs, fw, COMPARE_ID, "cnn", acc)
        for fw, acc in (("jax", 0.9903), ("torch", 0.9891))
    }
    write_run(runs, "jax", MLP_RUN_ID, "mlp", 0.9765, epochs=1)
    write_compare(runs, summaries)
    write_bench(runs)
    write_ir(runs)
    return runs
