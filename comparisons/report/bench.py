"""`roadmap report`'s bench section: runtime, peaks, throughput and op microbenchmarks.

"% of peak" is recomputed here from the GFLOP/s in bench.json (comparisons/bench/peak.py:
apply_peak_reference), so a file written before the single reference existed, with each
framework's own matmul as its peak, still never shows more than 100%.
"""

from __future__ import annotations

import copy
from typing import Any

from comparisons.bench.peak import apply_peak_reference, peak_markdown
from comparisons.report import plots
from comparisons.report.html import (
    Html,
    _finite,
    chart_figure,
    error_items,
    esc,
    extras,
    generic,
    meta,
    num,
    records_table,
    table,
)

BENCH_COLUMNS = dict.fromkeys(("what", "mode", "framework"), "auto") | {"batch_size": "int"}
BENCH_COLUMNS |= dict.fromkeys(("median_ms", "p10_ms", "p90_ms"), "f2") | {"compile_s": "f2"}
BENCH_COLUMNS |= {"examples_per_s": "rate", "flops_per_step": "sci", "gflops": "f1"}
BENCH_COLUMNS |= {"peak_fraction": "pct"}
_BENCH_KNOWN = {"project", "device", "versions", "peak_gflops", "results", "ratios", "ops"}
_BENCH_KNOWN |= {"errors", "date", "steps", "warmup", "machine", "config"}
_BENCH_KNOWN |= {"peak_reference", "theoretical_peak", "peak_n"}
RUNTIME_KEYS = ("runtime", "allocator", "glibc_tunables", "ld_preload", "xla_flags")


def bench_section(page, name: str, bdir) -> Html:
    """runs/<project>/bench/bench.json: peak, throughput charts and tables, op microbenchmarks."""
    path = bdir / "bench.json"
    data, missing = page.load_dict(path, f"bench.json missing: run `roadmap bench {name}`")
    if data is None:
        return missing
    data = apply_peak_reference(copy.deepcopy(data))  # one reference: never above 100%
    facts = {"date": "", "device": "device ", "steps": "timed steps ", "warmup": "warm-up steps "}
    parts = [meta(page, "bench", data, [page.link(path)], facts, ("machine", "config"))]
    ops = [r for r in data.get("ops") or [] if isinstance(r, dict)]
    # Op failures are also copied to the top-level errors: show them once, beside the op table.
    op_errors = {str(m) for r in ops for _, m in error_items(r.get("errors"))}
    for key, err in error_items(data.get("errors")):
        if str(err) not in op_errors:
            parts.append(page.note(f"bench error: {key}: {err}", error=True))
    recorded = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    runtime = {k: recorded[k] for k in RUNTIME_KEYS if k in recorded}
    if runtime:  # what was in force: the allocator and XLA flags move JAX:CPU 2-4x
        parts.append("<h4>runtime in force</h4>")
        parts.append(table(list(runtime), [[esc(v) for v in runtime.values()]]))
    peak = data.get("peak_gflops")
    if isinstance(peak, dict) and peak:
        parts.append("<h4>matmul peak (GFLOP/s, fp32)</h4>")
        parts.append(table(list(peak), [[num(v, "f1") for v in peak.values()]]))
        parts.append(f'<p class="muted">{esc(peak_markdown(data))}</p>')
    results = [r for r in data.get("results") or [] if isinstance(r, dict)]
    if results:
        results.sort(key=_result_order)
        parts.append("<h4>throughput (compilation excluded)</h4>")
        parts.append(
            chart_figure(page, f"the {name} throughput chart", plots.throughput_chart, results)
        )
        parts.append(records_table(results, BENCH_COLUMNS))
    else:
        parts.append(page.note(f"{page.show(path)}: no results"))
    if data.get("ratios"):
        columns = {"what": "auto", "batch_size": "int", "comparison": "auto"} | BENCH_COLUMNS
        parts.append("<h4>ratios</h4>" + _records_or_generic(data["ratios"], columns))
    if ops:
        parts.append("<h4>op microbenchmarks</h4>")
        long = op_rows(ops)
        parts.append(
            chart_figure(page, f"the {name} op microbenchmark chart", plots.op_chart, long)
        )
        for row in ops:
            for key, err in error_items(row.get("errors")):
                parts.append(page.note(f"op {row.get('op')}: {key}: {err}", error=True))
        parts.append(records_table(ops, _op_columns(ops), ("errors", "flops_formula")))
        formulas = {r["op"]: r["flops_formula"] for r in ops if r.get("flops_formula")}
        if formulas:
            text = "; ".join(f"{op}: {formula}" for op, formula in formulas.items())
            parts.append(f'<p class="muted">FLOPs counted as {esc(text)}</p>')
    parts.append(extras(data, _BENCH_KNOWN))
    return Html("".join(parts))


def _result_order(row: dict[str, Any]) -> tuple:
    """Train before infer, then mode, framework and batch size."""
    batch = row["batch_size"] if _finite(row.get("batch_size")) else 0
    what = {"train": 0, "infer": 1}.get(row.get("what"), 2)
    return (what, *(str(row.get(k)) for k in ("what", "mode", "framework")), batch)


def _op_columns(ops: list[dict[str, Any]]) -> dict[str, str]:
    """Op table columns: op, shape, FLOPs, then per mode ms / GFLOP/s / peak, then ratios."""
    modes = [k[: -len("_ms")] for r in ops for k in r if k.endswith("_ms") and "_p" not in k]
    columns = {"op": "auto", "framework": "auto", "mode": "auto", "shape": "auto", "flops": "sci"}
    for mode in sorted(dict.fromkeys(modes), key=lambda m: (m != "jax", m)):
        columns |= {f"{mode}_ms": "f2", f"{mode}_gflops": "f1", f"{mode}_peak_fraction": "pct"}
    columns |= {k: "f2" for r in ops for k in r if k.startswith("jax_over_")}
    # The p10/p90 spread stays in bench.json: the table keeps one time per mode.
    return columns | {k: "skip" for r in ops for k in r if k.endswith(("_p10_ms", "_p90_ms"))}


def _records_or_generic(value: Any, columns: dict[str, str]) -> Html:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return records_table(value, columns)
    return generic(value)


def op_rows(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Op results as one row per (op, mode): bench_ops' wide rows (<mode>_ms columns) unfolded."""
    rows = []
    for row in ops:
        if "median_ms" in row:
            rows.append(row)
            continue
        for key, ms in row.items():
            if key.endswith("_ms") and not key.endswith(("_p10_ms", "_p90_ms")):
                mode = key[: -len("_ms")]
                rows.append(
                    {"op": row.get("op"), "framework": mode.split("_")[0], "mode": mode}
                    | {"median_ms": ms, "gflops": row.get(f"{mode}_gflops")}
                )
    return rows
