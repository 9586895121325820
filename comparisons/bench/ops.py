"""Per-op microbenchmarks: jax.jit against torch eager (and torch.compile, opt-in).

Each op is written once per framework in that framework's usual layout (NHWC/HWIO for JAX,
NCHW/OIHW for torch) on the same numpy data, with an analytic FLOP formula beside it. The
conv cases separate forward, forward+dW (XLA:CPU's weak spot per PERF-NOTES) and
forward+dX+dW, on a 14x14 SAME layer and a 26x26 VALID one. Shapes are small enough that
each measurement takes about a second on 2 cores. GFLOP/s are analytic FLOPs over time, so a
library that does fewer multiplications (Winograd convolutions) can exceed the matmul peak;
"% of peak" is then taken against that op (comparisons/bench/peak.py: apply_peak_reference).
The max-pool rows come in both JAX formulations (jaxpath/common/pooling.py): `max_pool*`
is the default reshape + max, `max_pool_reduce_window*` the stock nn.max_pool, whose
backward is select_and_scatter; torch runs F.max_pool2d for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from comparisons.bench.op_cases import OPS, SIZES, OpCase
from comparisons.bench.peak import (
    apply_peak_reference,
    jax_sync,
    summarize_ms,
    time_calls,
    torch_sync_for,
)

__all__ = ["OPS", "SIZES", "OP_MODES", "bench_ops", "ops_markdown"]

OP_MODES = ("jax", "torch_eager", "torch_compile")
OP_MODE_LABELS = {"jax": "jax.jit", "torch_eager": "torch", "torch_compile": "torch.compile"}


def _calls(case: OpCase, mode: str, device: str) -> tuple[Callable[[], Any], Callable]:
    """A zero-argument call of `case` in `mode` on `device`, and its sync."""
    if mode == "jax":
        import jax

        dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        args = [jax.device_put(x, dev) for x in case.inputs]
        fn = jax.jit(case.jax_fn)
        return (lambda: fn(*args)), jax_sync
    import torch

    args = [torch.from_numpy(x).to(device) for x in case.to_torch(case.inputs)]
    for k in case.torch_grad:
        args[k].requires_grad_(True)
    fn = case.torch_fn
    if mode == "torch_compile":
        torch._dynamo.reset()
        fn = torch.compile(fn, dynamic=False)
    return (lambda: fn(*args)), torch_sync_for(device)


def _time_op(call, sync, steps: int, budget_s: float) -> dict[str, float]:
    """Warm up, then time as many calls as fit in `budget_s` (at least 3, at most `steps`)."""
    time_calls(call, sync, 2)  # the first call compiles; the second settles caches
    probe = time_calls(call, sync, 1)[0]
    n = int(min(steps, max(3, budget_s / max(probe, 1e-9))))
    return summarize_ms(time_calls(call, sync, n))


def bench_ops(
    ops: list[str] | None = None,
    steps: int = 20,
    compile: bool = False,
    device: str = "cpu",
    progress: bool = True,
    *,
    size: str = "small",
    budget_s: float = 1.0,
    reference: float | None = None,
) -> list[dict[str, Any]]:
    """One row per op: ms, GFLOP/s and JAX/torch time ratio of each mode; failures named.

    Each mode's peak_fraction divides by `reference` (a matmul GFLOP/s of the same run) or
    by the best op, whichever is higher; `roadmap bench` sets them again over the whole run.
    """
    names = list(OPS) if ops is None else list(ops)
    unknown = [o for o in names if o not in OPS]
    if unknown:
        raise ValueError(f"unknown ops {unknown}; known: {', '.join(OPS)}")
    modes = OP_MODES if compile else OP_MODES[:2]
    rows = []
    bar = tqdm(total=len(names) * len(modes), disable=not progress, desc="ops")
    for name in names:
        case = OPS[name](SIZES[size])
        row: dict[str, Any] = dict(op=name, shape=case.shape, flops=float(case.flops))
        row.update(flops_formula=case.formula, errors={})
        for mode in modes:
            bar.set_description(f"op {name} {mode}")
            try:
                stats = _time_op(*_calls(case, mode, device), steps, budget_s)
            except Exception as err:  # named in the row; the other ops and modes still run
                msg = (str(err).strip().splitlines() or [""])[0][:300]
                row["errors"][mode] = f"{name} {mode} failed: {type(err).__name__}: {msg}"
                stats = {"median_ms": None, "p10_ms": None, "p90_ms": None}
            ms = stats["median_ms"]
            gflops = case.flops / ms / 1e6 if ms else None
            row.update({f"{mode}_{k}": v for k, v in stats.items()})
            row[f"{mode}_gflops"] = gflops
            row[f"{mode}_peak_fraction"] = None  # set below, once every op is measured
            bar.update()
        for mode in modes[1:]:
            ok = row["jax_median_ms"] and row[f"{mode}_median_ms"]
            row[f"jax_over_{mode}"] = (
                row["jax_median_ms"] / row[f"{mode}_median_ms"] if ok else None
            )
        rows.append(row)
    bar.close()
    apply_peak_reference({"ops": rows, "peak_gflops": {"given": reference} if reference else {}})
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def ops_markdown(rows: list[dict[str, Any]]) -> str:
    """The op table: ms and GFLOP/s per mode, and JAX/torch time ratios (above 1: JAX slower)."""
    modes = [m for m in OP_MODES if any(f"{m}_median_ms" in r for r in rows)]
    labels = [OP_MODE_LABELS[m] for m in modes]
    head = ["op", "shape", "MFLOP"] + [f"{m} ms" for m in labels]
    head += [f"{m} GFLOP/s" for m in labels] + [f"JAX/{m}" for m in labels[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["op"], r["shape"], f"{r['flops'] / 1e6:,.1f}"]
        cells += [_fmt(r[f"{m}_median_ms"], ".2f") for m in modes]
        cells += [_fmt(r[f"{m}_gflops"], ".1f") for m in modes]
        cells += [_fmt(r[f"jax_over_{m}"], ".2f") for m in modes[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    formulas = "; ".join(f"{r['op']}: {r['flops_formula']}" for r in rows)
    return "\n".join(lines) + f"\n\nFLOP formulas: {formulas}.\n"
