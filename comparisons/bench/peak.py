"""Machine baselines and measurement primitives shared by every bench.

Baselines: this machine's fp32 matmul peak per framework, and the throughput of the shared
numpy input pipeline. Primitives: timed calls that end in a device sync, percentile
summaries, FLOP counters, fp32 pinning, and the versions/machine block of every bench.json.

`roadmap bench` reports achieved GFLOP/s as a fraction of what a plain n x n matmul reaches
in the same run and the same framework, so "35% of peak" means the same thing on a laptop,
a 2-core VM and a GPU. Timed regions always end with a device sync (`block_until_ready`
for JAX, `torch.cuda.synchronize` on a GPU) so asynchronous dispatch is never measured as
instant.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from comparisons.env import pin_fp32
from comparisons.env import versions as package_versions
from shared_data.batches import iterate_batches

PEAK_FRAMEWORKS = ("numpy", "jax", "torch")
VERSION_PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")


def jax_sync(out: Any) -> None:
    """Wait until every array in `out` is computed (JAX dispatches asynchronously)."""
    import jax

    jax.block_until_ready(out)


def torch_sync_for(device: str) -> Callable[[Any], None]:
    """A sync function for torch on `device`: a CUDA sync on GPU, nothing on CPU."""
    if device == "cuda":
        import torch

        return lambda out: torch.cuda.synchronize()
    # CPU kernels run synchronously: when the call returns, the work is done.
    return lambda out: None


def time_calls(fn: Callable[[], Any], sync: Callable[[Any], None], n: int) -> list[float]:
    """Seconds of each of `n` calls of `fn`, each timed up to the end of its sync."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return times


def summarize_ms(times_s: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile of `times_s`, in milliseconds."""
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
    }


def xla_flops(jitted: Callable, *args: Any) -> float:
    """Matmul and convolution FLOPs of one call of a jitted function, from its optimized HLO."""
    # Counted like torch's FlopCounterMode (dot and convolution only), so the two frameworks'
    # GFLOP/s divide the same work; XLA's cost_analysis() would add elementwise operations.
    from comparisons.ir.graphs import hlo_matmul_conv_flops

    return float(hlo_matmul_conv_flops(jitted.lower(*args).compile().as_text())["total"])


def torch_flops(call: Callable[[], Any]) -> float:
    """FLOPs of one eager call, counted by torch.utils.flop_counter (matmuls, convs, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        call()
    return float(counter.get_total_flops())


def _matmul_call(n: int, framework: str, device: str) -> tuple[Callable[[], Any], Callable]:
    """A zero-argument n x n fp32 matmul in `framework` on `device`, and its sync."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if framework == "numpy":
        return (lambda: a @ b), (lambda out: None)
    if framework == "jax":
        import jax

        dev = jax.devices("gpu")[0] if device == "cuda" else jax.devices("cpu")[0]
        ja, jb = jax.device_put(a, dev), jax.device_put(b, dev)
        # PARITY: "highest" keeps fp32 on GPUs, where the default would use TF32.
        mm = jax.jit(lambda x, y: jax.numpy.matmul(x, y, precision="highest"))
        return (lambda: mm(ja, jb)), jax_sync
    if framework == "torch":
        import torch

        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
        return (lambda: torch.mm(ta, tb)), torch_sync_for(device)
    raise ValueError(f"unknown framework {framework!r}; known: {', '.join(PEAK_FRAMEWORKS)}")


def measure_matmul_peak(
    n: int = 2048, framework: str = "numpy", repeats: int = 5, device: str = "cpu"
) -> float:
    """GFLOP/s of an n x n x n fp32 matmul (2 n^3 FLOPs): the median of `repeats` timed runs."""
    if framework != "numpy":
        pin_fp32()
    call, sync = _matmul_call(n, framework, device)
    sync(call())  # warm-up: jit compile, thread pools, page faults
    times = time_calls(call, sync, repeats)
    return 2.0 * n**3 / float(np.median(times)) / 1e9


def measure_peaks(
    n: int = 2048,
    frameworks: tuple[str, ...] = PEAK_FRAMEWORKS,
    repeats: int = 5,
    device: str = "cpu",
) -> dict[str, float]:
    """{framework: GFLOP/s} of `measure_matmul_peak` for each framework (numpy stays on CPU)."""
    return {
        fw: measure_matmul_peak(n, fw, repeats, "cpu" if fw == "numpy" else device)
        for fw in frameworks
    }


def versions() -> dict[str, str]:
    """Python and package versions, for reproducing a bench."""
    return package_versions(VERSION_PACKAGES)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [line for line in f if line.startswith("model name")]
    except OSError:  # not Linux
        return None
    return lines[0].split(":", 1)[1].strip() if lines else None


def machine() -> dict[str, Any]:
    """CPU count, platform, thread settings and current load of this machine."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        # Other processes on a shared machine stall torch's OpenMP barriers: record the load.
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        # OpenMP threads that spin (the default) lose whole time slices on a busy machine.
        "env": {
            k: os.environ.get(k)
            for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XLA_FLAGS", "LD_PRELOAD")
        },
    }


def bench_data_pipeline(
    project, batch_sizes, n_examples: int = 8192, seed: int = 0, config=None
) -> dict:
    """Examples/s of shared_data.iterate_batches, plain and with the project's augmentation."""
    arrays = project.example_batch(n_examples, seed, config=config)
    augmentation = project.task(config).augment  # None: the project has no augmentation
    can_shift = augmentation is not None
    results = []
    for bs in batch_sizes:
        bs = min(bs, n_examples)
        row = {"batch_size": bs}
        for key, augment in (("examples_per_s", None), ("augmented_examples_per_s", augmentation)):
            if augment is not None and not can_shift:
                row[key] = None
                continue
            start, count = time.perf_counter(), 0
            for batch in iterate_batches(arrays, bs, seed=seed, augment=augment):
                count += len(next(iter(batch.values())))
            row[key] = count / (time.perf_counter() - start)
        results.append(row)
    return {
        "what": "shared_data.batches.iterate_batches (shuffle, drop remainder)",
        "augment": getattr(augmentation, "__name__", None),
        "n_examples": n_examples,
        "results": results,
    }


def data_pipeline_markdown(data: dict) -> str:
    """The data-pipeline table of a bench, in markdown."""
    lines = [
        f"Data pipeline: {data['what']}, {data['n_examples']} synthetic examples.",
        "",
        f"| batch | examples/s | with {data.get('augment') or 'augmentation'} |",
        "|---|---|---|",
    ]
    for d in data["results"]:
        shifted = d["augmented_examples_per_s"]
        shifted = "–" if shifted is None else f"{shifted:,.0f}"
        lines.append(f"| {d['batch_size']} | {d['examples_per_s']:,.0f} | {shifted} |")
    return "\n".join(lines)
