"""Machine baselines and measurement primitives shared by every bench.

Baselines: this machine's fp32 matmul peak per framework, its theoretical FMA peak, and the
throughput of the shared numpy input pipeline. Primitives: timed calls that end in a device
sync, percentile summaries, FLOP counters, fp32 pinning, and the versions/machine block of
every bench.json.

"% of peak" divides by the best GFLOP/s that anything reached in the same run: the best
matmul of any framework, raised to any step or op that did better (a Winograd convolution
counted with direct-convolution FLOPs can beat a matmul). One framework's own matmul is not
the machine's limit (torch's convolutions reached 162% of torch's matmul here), and with one
reference for all rows no row can exceed 100%. The theoretical FMA peak (cores x clock x
FLOPs per cycle from the CPU's vector features) is reported beside it where it can be read.
Timed regions always end with a device sync (`block_until_ready` for JAX,
`torch.cuda.synchronize` on a GPU) so asynchronous dispatch is never measured as instant.
"""

from __future__ import annotations

import os
import platform
import re
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


# XLA:GPU rewrites dots and convolutions into calls of cuBLAS/cuDNN (custom-call targets such
# as "__cublas$gemm" and "__cudnn$convForward"), which the dot/convolution count cannot see.
LIBRARY_CALL = re.compile(r'custom_call_target="__(cublas|cudnn)')


def xla_flops(jitted: Callable, *args: Any) -> float:
    """Matmul and convolution FLOPs of one call of a jitted function, from its optimized HLO."""
    return lowered_flops(jitted.lower(*args))


def lowered_flops(lowered: Any) -> float:
    """Dot + convolution FLOPs of a `jax.stages.Lowered`, counted as torch's FlopCounterMode does.

    Counting only dots and convolutions makes the two frameworks' GFLOP/s divide the same work
    (XLA's cost_analysis() would add elementwise operations). The optimized HLO is counted,
    since XLA's own simplifications remove work (the CIFAR-10 speedrun's optimized step has 4%
    fewer conv FLOPs than its input HLO); where XLA:GPU has turned them into library calls, the
    HLO before optimization is counted instead.
    """
    from comparisons.ir.graphs import hlo_matmul_conv_flops

    text = lowered.compile().as_text()
    if LIBRARY_CALL.search(text):
        text = lowered.as_text(dialect="hlo")
    return float(hlo_matmul_conv_flops(text)["total"])


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
    """Python and package versions, and the runtime in force, for reproducing a bench."""
    from comparisons.runtime import runtime_record

    return package_versions(VERSION_PACKAGES) | runtime_record()


def _op_rates(row: dict[str, Any]) -> dict[str, float]:
    """{"<mode>": GFLOP/s} of one op row, wide (bench_ops) or long (one row per mode)."""
    if "gflops" in row:
        return {str(row.get("mode", "?")): row["gflops"]}
    return {k[: -len("_gflops")]: v for k, v in row.items() if k.endswith("_gflops")}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def peak_reference(result: dict[str, Any]) -> dict[str, Any]:
    """The GFLOP/s every "% of peak" divides by: the best matmul, or anything that beat it."""
    device = result.get("device", "cpu")
    candidates = [
        (value, f"{fw} {result.get('peak_n', 2048)}^3 matmul")
        for fw, value in (result.get("peak_gflops") or {}).items()
        if _number(value) and not (device == "cuda" and fw == "numpy")  # numpy stays on CPU
    ]
    best_matmul = max(candidates, default=(None, None), key=lambda c: c[0] or 0)
    for row in result.get("results") or []:
        if isinstance(row, dict) and _number(row.get("gflops")):
            label = f"{row.get('mode')} {row.get('what')} step, batch {row.get('batch_size')}"
            candidates.append((row["gflops"], label))
    for row in result.get("ops") or []:
        if isinstance(row, dict):
            for mode, value in _op_rates(row).items():
                if _number(value):
                    candidates.append((value, f"{mode} {row.get('op')} op"))
    if not candidates:
        return {"gflops": None, "source": None, "best_matmul_gflops": None}
    value, source = max(candidates, key=lambda c: c[0])
    return {"gflops": value, "source": source, "best_matmul_gflops": best_matmul[0],
            "best_matmul_source": best_matmul[1]}  # fmt: skip


def apply_peak_reference(result: dict[str, Any]) -> dict[str, Any]:
    """Set every row's and op's peak_fraction against `peak_reference`; at most 1 by design."""
    reference = peak_reference(result)
    result["peak_reference"] = reference
    ref = reference["gflops"]
    fraction = lambda g: min(g / ref, 1.0) if _number(g) and ref else None  # noqa: E731
    for row in result.get("results") or []:
        if isinstance(row, dict):
            row["peak_fraction"] = fraction(row.get("gflops"))
    for row in result.get("ops") or []:
        if not isinstance(row, dict):
            continue
        if "gflops" in row:
            row["peak_fraction"] = fraction(row["gflops"])
        for mode, value in _op_rates(row).items():
            if f"{mode}_gflops" in row:
                row[f"{mode}_peak_fraction"] = fraction(value)
    return result


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo ({} where unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            block = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _clock_ghz(info: dict[str, str]) -> tuple[float | None, str]:
    """The CPU clock in GHz and where it was read: sysfs max frequency, else /proc/cpuinfo."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read().strip()) / 1e6, "sysfs cpuinfo_max_freq (highest boost clock)"
    except (OSError, ValueError):
        pass
    try:
        return float(info["cpu MHz"]) / 1e3, (
            "/proc/cpuinfo cpu MHz (the current clock; under a hypervisor the nominal one, "
            "and cores may boost above it)"
        )
    except (KeyError, ValueError):
        return None, "unknown (no cpufreq in sysfs, no cpu MHz in /proc/cpuinfo)"


def theoretical_peak(info: dict[str, str] | None = None, cores: int | None = None) -> dict:
    """fp32 FMA peak of the cores this process may use: cores x GHz x FLOPs per cycle."""
    info = _cpuinfo() if info is None else info
    flags = set(info.get("flags", "").split())
    amd_family = int(info.get("cpu family", "0") or 0) if "AMD" in info.get("vendor_id", "") else 0
    if "avx512f" in flags:
        # Zen 4 (family 25) runs 512-bit instructions on 256-bit units; Zen 5 (26) has 512.
        isa, width = "AVX-512", 256 if amd_family == 25 else 512
    elif {"avx2", "fma"} <= flags:
        isa, width = "AVX2+FMA", 256
    else:
        isa, width = None, None
    if cores is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        siblings, physical = info.get("siblings"), info.get("cpu cores")
        per_core = int(siblings) // int(physical) if siblings and physical else 1
        cores = max(1, usable // max(per_core, 1)) if usable else None
    ghz, clock_source = _clock_ghz(info)
    # Two FMA units per core (every x86 core since Haswell and Zen 2; some Xeons have one
    # 512-bit unit, so this is an upper bound there), 2 FLOPs per lane per FMA.
    per_cycle = 2 * 2 * width // 32 if width else None
    known = per_cycle and ghz and cores
    return {
        "gflops": cores * ghz * per_cycle if known else None,
        "isa": isa or "unknown (no AVX2+FMA or AVX-512 in /proc/cpuinfo)",
        "flops_per_cycle_per_core": per_cycle,
        "vector_bits": width,
        "cores": cores,
        "clock_ghz": ghz,
        "clock_source": clock_source,
        "assumes": "2 FMA units per core, fp32",
    }


def peak_markdown(result: dict[str, Any]) -> str:
    """The peak paragraph of bench.md: matmuls, the % of peak reference, the FMA peak."""
    peaks, ref = result.get("peak_gflops") or {}, result.get("peak_reference") or {}
    theory = result.get("theoretical_peak") or {}
    matmuls = ", ".join(f"{k} {v:.1f}" for k, v in peaks.items() if _number(v))
    text = f"Matmul peak (fp32, GFLOP/s): {matmuls or 'none measured'}"
    if ref.get("gflops"):
        text += (
            f". % peak divides by the best GFLOP/s reached in this run, {ref['gflops']:.1f} "
            f"({ref['source']}), the same number for every row"
        )
        if ref.get("best_matmul_gflops") and ref["gflops"] > ref["best_matmul_gflops"]:
            text += f"; it beat the best matmul ({ref['best_matmul_gflops']:.1f})"
    if _number(theory.get("gflops")):
        text += (
            f". Theoretical fp32 FMA peak: {theory['gflops']:.0f} GFLOP/s = {theory['cores']} "
            f"cores x {theory['clock_ghz']:.2f} GHz x {theory['flops_per_cycle_per_core']} "
            f"FLOPs/cycle ({theory['isa']}, assuming {theory['assumes']}; clock from "
            f"{theory['clock_source']})"
        )
        best = ref.get("gflops") or 0
        if best > theory["gflops"]:
            text += "; the run beat it, so the cores ran above that clock"
    elif theory:  # files written before the theoretical peak was recorded have none
        why = f"{theory.get('isa')}; clock {theory.get('clock_source')}"
        text += f". Theoretical FMA peak: unknown ({why})"
    return text + "."


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
            for k in (
                "OMP_WAIT_POLICY",
                "OMP_NUM_THREADS",
                "XLA_FLAGS",
                "LD_PRELOAD",
                "GLIBC_TUNABLES",
            )  # fmt: skip
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
