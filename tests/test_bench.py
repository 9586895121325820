"""`roadmap bench`: every field of bench.json, named failures, the GPU check and the op table.

Numbers are checked for sanity (positive, consistent), never against a time limit.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from comparisons.bench import core as bench
from comparisons.bench.extras import PER_EXAMPLE_WAYS, TOY_WAYS, bench_toy, toy_config
from comparisons.bench.modes import Ctx
from comparisons.bench.ops import OPS, bench_ops, ops_markdown
from comparisons.bench.peak import (
    apply_peak_reference,
    measure_matmul_peak,
    peak_markdown,
    theoretical_peak,
)
from comparisons.cli import main
from comparisons.registry import get_project
from shared_data.configs.base import override

MODES = ["jax", "torch-eager", "torchscript"]
BATCH_SIZES = [8, 16]
TOP_KEYS = {"project", "config", "device", "versions", "machine", "date", "peak_gflops"}
TOP_KEYS |= {"results", "ratios", "data_pipeline", "ops", "errors", "peak_reference"}
TOP_KEYS |= {"theoretical_peak"}
ROW_KEYS = {"mode", "framework", "what", "batch_size", "median_ms", "p10_ms", "p90_ms"}
ROW_KEYS |= {"examples_per_s", "compile_s", "flops_per_step", "flops_source", "gflops"}
ROW_KEYS |= {"peak_fraction"}
QUICK = dict(progress=False, warmup=1, peak_n=128, data_examples=64)


def mlp_config():
    return override(get_project("mnist").config("smoke"), {"model": "mlp"})


@pytest.fixture(scope="module")
def result():
    return bench.bench_project("mnist", mlp_config(), BATCH_SIZES, 3, MODES, **QUICK)


def test_bench_json_has_every_field(result, tmp_path):
    assert result["errors"] == {}
    assert TOP_KEYS <= set(result)
    assert {"python", "jax", "jaxlib", "flax", "optax", "torch", "numpy"} <= set(result["versions"])
    assert {"runtime", "allocator", "glibc_tunables", "xla_flags"} <= set(result["versions"])
    assert {"cpu_count", "platform"} <= set(result["machine"])
    assert set(result["peak_gflops"]) == {"numpy", "jax", "torch"}
    assert all(v > 0 for v in result["peak_gflops"].values())
    expected = {(m, w, bs) for m in MODES for w in bench.MODES[m].whats for bs in BATCH_SIZES}
    assert {(r["mode"], r["what"], r["batch_size"]) for r in result["results"]} == expected
    for row in result["results"]:
        assert ROW_KEYS <= set(row), row["mode"]
        assert 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["examples_per_s"] > 0 and row["compile_s"] > 0
        assert row["flops_per_step"] > 0 and row["gflops"] > 0 and 0 < row["peak_fraction"] <= 1
        assert row["flops_source"] == bench.FLOPS_SOURCES[row["framework"]]
    outdir = bench.write_bench(result, tmp_path)
    assert json.loads((outdir / "bench.json").read_text())["results"] == result["results"]
    assert "| jax.jit | train | 8 |" in (outdir / "bench.md").read_text()


def test_jax_and_torch_count_the_same_mlp_flops(result):
    flops = {}
    for r in result["results"]:
        flops[r["framework"], r["what"], r["batch_size"]] = r["flops_per_step"]
    for bs in BATCH_SIZES:
        matmuls = 2 * bs * (784 * 256 + 256 * 128 + 128 * 10)
        assert flops["torch", "infer", bs] == matmuls  # FlopCounterMode counts matmuls only
        assert flops["jax", "infer", bs] == matmuls  # and so does the HLO dot+conv count
        # Training: forward, input and weight gradients, both sides counted alike.
        assert flops["jax", "train", bs] == flops["torch", "train", bs] > 1.5 * matmuls


def test_ratios_and_data_pipeline(result):
    pairs = {(q["what"], q["batch_size"], q["torch_mode"]) for q in result["ratios"]}
    assert ("train", 8, "torch-eager") in pairs and ("infer", 16, "torchscript") in pairs
    for q in result["ratios"]:
        assert q["jax_over_torch"] == pytest.approx(q["jax_ms"] / q["torch_ms"])
        assert q["comparison"]
    data = result["data_pipeline"]
    assert [d["batch_size"] for d in data["results"]] == BATCH_SIZES
    assert all(
        d["examples_per_s"] > 0 and d["augmented_examples_per_s"] > 0 for d in data["results"]
    )


def test_a_failing_mode_is_named_and_the_rest_runs(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler on this machine")

    monkeypatch.setattr(torch, "compile", broken)
    out = bench.bench_project(
        "mnist", mlp_config(), [8], 1, ["torch-compile", "torch-eager"], **QUICK
    )
    assert set(out["errors"]) == {"torch-compile/train/bs8", "torch-compile/infer/bs8"}
    assert all("torch.compile" in e and "no compiler" in e for e in out["errors"].values())
    assert {r["mode"] for r in out["results"]} == {"torch-eager"}
    assert "no compiler on this machine" in bench.to_markdown(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_library_calls_are_counted_from_the_hlo_before_optimization():
    """XLA:GPU turns dots and convs into cuBLAS/cuDNN custom calls: count the input HLO then."""
    import jax
    import jax.numpy as jnp

    from comparisons.bench.peak import lowered_flops

    lowered = jax.jit(lambda a, b: a @ b).lower(jnp.ones((4, 8)), jnp.ones((8, 16)))
    assert lowered_flops(lowered) == 2 * 4 * 8 * 16  # XLA:CPU keeps the dot

    class OnGpu:  # what XLA:GPU's optimized module looks like to the counter
        def compile(self):
            return self

        def as_text(self, dialect=None):
            if dialect == "hlo":
                return lowered.as_text(dialect="hlo")
            return (
                "ROOT %c = (f32[4,16]{1,0}, s8[0]{0}) custom-call(f32[4,8]{1,0} %a, "
                'f32[8,16]{1,0} %b), custom_call_target="__cublas$gemm"'
            )

    assert lowered_flops(OnGpu()) == 2 * 4 * 8 * 16


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    with pytest.raises(bench.BenchError, match=r"no CUDA device: torch.cuda.is_available\(\)"):
        bench.bench_project("mnist", mlp_config(), device="cuda")
    assert main(["bench", "mnist", "--device", "gpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "Traceback" not in err


def test_unknown_mode_and_op_are_named():
    with pytest.raises(bench.BenchError, match="torch-jit"):
        bench.parse_modes("jax,torch-jit")
    with pytest.raises(ValueError, match="conv3d"):
        bench_ops(["conv3d"])


def test_op_microbenchmarks_at_tiny_sizes():
    rows = bench_ops(["matmul", "conv2d_fwd_dw"], steps=2, size="tiny", budget_s=0.01,
                     progress=False, reference=50.0)  # fmt: skip
    assert [r["op"] for r in rows] == ["matmul", "conv2d_fwd_dw"]
    assert rows[0]["flops"] == 2 * 64**3
    assert rows[1]["flops"] == 2 * (2 * 4 * 8 * 8 * 16 * 8 * 9)  # forward + dW
    for row in rows:
        assert row["errors"] == {}
        for mode in ("jax", "torch_eager"):
            assert row[f"{mode}_median_ms"] > 0 and row[f"{mode}_gflops"] > 0
            assert 0 < row[f"{mode}_peak_fraction"] <= 1
        assert row["jax_over_torch_eager"] > 0
    assert "| conv2d_fwd_dw |" in ops_markdown(rows)
    assert set(OPS) >= {"conv2d", "conv2d_fwd_bwd", "depthwise_conv", "attention", "lstm_cell"}


def test_matmul_peak_is_positive():
    assert measure_matmul_peak(64, "numpy", repeats=2) > 0


def test_cli_writes_bench_files(tmp_path, capsys):
    argv = ["bench", "mnist", "--variant", "smoke", "--model", "mlp", "--batch-sizes", "8"]
    argv += ["--steps", "1", "--modes", "jax,torch-eager", "--op-names", "softmax"]
    argv += ["--peak-n", "64", "--workdir", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    data = json.loads((tmp_path / "mnist" / "bench" / "bench.json").read_text())
    assert data["config"]["model"] == "mlp" and data["ops"][0]["op"] == "softmax"
    assert "| softmax |" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor needs a C++ compiler")
def test_torch_compile_trains_the_mlp():
    out = bench.bench_project("mnist", mlp_config(), [8], 2, ["torch-compile"], **QUICK)
    assert out["errors"] == {}
    rows = {r["what"]: r for r in out["results"]}
    assert set(rows) == {"train", "infer"}
    assert all(r["compile_s"] > 0 and r["median_ms"] > 0 and r["gflops"] > 0 for r in rows.values())


def test_percent_of_peak_never_exceeds_100():
    """One reference for every row: the best matmul, raised to any step or op that beat it."""
    rows = [
        {"mode": "jax", "what": "infer", "batch_size": 512, "gflops": 362.0},
        {"mode": "torch-eager", "what": "infer", "batch_size": 128, "gflops": 256.0},
    ]
    ops = [{"op": "conv2d_valid_fwd_dw", "jax_gflops": 89.8, "torch_eager_gflops": 450.0}]
    result = {"peak_gflops": {"numpy": 235.0, "jax": 206.0, "torch": 193.0}, "results": rows}
    result |= {"ops": ops, "device": "cpu", "peak_n": 2048}
    apply_peak_reference(result)
    ref = result["peak_reference"]
    assert ref["gflops"] == 450.0 and ref["source"] == "torch_eager conv2d_valid_fwd_dw op"
    assert ref["best_matmul_gflops"] == 235.0 and ref["best_matmul_source"] == "numpy 2048^3 matmul"
    assert rows[0]["peak_fraction"] == pytest.approx(362 / 450)
    assert ops[0]["torch_eager_peak_fraction"] == 1.0
    result["ops"] = []  # without the op, the best matmul of any framework is the reference
    apply_peak_reference(result)
    assert result["peak_reference"]["gflops"] == 362.0  # jax's inference beat every matmul
    assert max(r["peak_fraction"] for r in rows) == 1.0
    result["theoretical_peak"] = theoretical_peak(CPUINFO, cores=2)
    text = peak_markdown(result)
    assert "362.0 (jax infer step, batch 512)" in text and "it beat the best matmul" in text
    assert "332 GFLOP/s = 2 cores x 2.60 GHz x 64 FLOPs/cycle (AVX-512" in text
    assert "the run beat it" in text


CPUINFO = {"vendor_id": "AuthenticAMD", "cpu family": "26", "cpu MHz": "2596.098"}
CPUINFO |= {"flags": "fpu sse2 avx fma avx2 avx512f avx512dq", "siblings": "2", "cpu cores": "2"}


def test_theoretical_peak_from_cpu_features(monkeypatch):
    monkeypatch.setattr("builtins.open", _no_sysfs(open))
    assert theoretical_peak(CPUINFO, cores=2)["flops_per_cycle_per_core"] == 64
    zen4 = CPUINFO | {"cpu family": "25"}  # 512-bit instructions on 256-bit units
    assert theoretical_peak(zen4, cores=1)["flops_per_cycle_per_core"] == 32
    avx2 = CPUINFO | {"vendor_id": "GenuineIntel", "flags": "avx fma avx2"}
    assert theoretical_peak(avx2, cores=4)["gflops"] == pytest.approx(4 * 2.596098 * 32)
    unknown = theoretical_peak({"flags": "sse2"}, cores=2)
    assert unknown["gflops"] is None and unknown["isa"].startswith("unknown")
    assert "unknown" in theoretical_peak(CPUINFO | {"cpu MHz": ""}, cores=2)["clock_source"]
    assert theoretical_peak()["cores"] >= 1  # this machine, whatever it is


def _no_sysfs(real_open):
    def fake(path, *args, **kwargs):
        if str(path).startswith("/sys/"):
            raise OSError("no cpufreq")
        return real_open(path, *args, **kwargs)

    return fake


def test_pool_ops_in_both_formulations():
    names = ["max_pool_fwd_bwd", "max_pool_reduce_window_fwd_bwd", "adam_update", "dense_fwd_bwd"]
    rows = bench_ops(names, steps=2, size="tiny", budget_s=0.01, progress=False)
    assert all(r["errors"] == {} and r["jax_median_ms"] > 0 for r in rows), rows
    assert "JAX reshape + max" in rows[0]["shape"] and "reduce_window" in rows[1]["shape"]


def test_per_example_and_toy_tables(tmp_path, capsys):
    """`--modes none --per-example --toy`: only the extra tables, every way named in the json."""
    argv = ["bench", "mnist", "--variant", "smoke", "--model", "mlp", "--batch-sizes", "4"]
    argv += ["--steps", "1", "--modes", "none", "--per-example", "--toy", "--no-ops"]
    argv += ["--peak-n", "64", "--workdir", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    data = json.loads((tmp_path / "mnist" / "bench" / "bench.json").read_text())
    assert data["errors"] == {} and data["results"] == []
    per_example, toy = data["per_example"], data["toy"]
    assert [r["way"] for r in per_example["rows"]] == list(PER_EXAMPLE_WAYS)
    assert [r["way"] for r in toy["rows"]] == list(TOY_WAYS)
    assert toy["config"] == {"model": "mlp", "hidden": [256, 128], "optimizer": "sgd", "lr": 1e-3}
    for row in per_example["rows"] + toy["rows"]:
        assert row["batch_size"] == 4 and 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["examples_per_s"] == pytest.approx(4e3 / row["median_ms"])
    assert len(per_example["ratios"]) == 4 and len(toy["ratios"]) == 3
    by_way = {r["way"]: r["median_ms"] for r in per_example["rows"]}
    first = per_example["ratios"][0]
    assert (first["numerator"], first["denominator"]) == ("jax-vmap", "torch-vmap")
    assert first["ratio"] == pytest.approx(by_way["jax-vmap"] / by_way["torch-vmap"])
    out = capsys.readouterr().out
    assert "| torch.func vmap(grad) | 4 |" in out and "| toy engine (NumPy) | 4 |" in out


def test_toy_config_is_plain_sgd_and_other_projects_are_named():
    config = toy_config(get_project("mnist").config("smoke"))
    assert (config.model, config.optimizer, config.momentum, config.schedule) == (
        "mlp", "sgd", 0.0, "constant"
    )  # fmt: skip
    errors: dict = {}
    ctx = Ctx(get_project("regression"), None, "cpu", 1, 1, 10)
    assert bench_toy(ctx, [4], errors)["rows"] == [] and "MNIST MLP only" in errors["toy"]


def test_every_op_builds_at_every_size():
    """`--op-size`: each op case builds its inputs and FLOP count at each size set."""
    from comparisons.bench.op_cases import OPS as CASES
    from comparisons.bench.op_cases import SIZES

    assert {"small", "tiny", "speedrun", "speedrun7"} <= set(SIZES)
    for size, dims in SIZES.items():
        assert set(dims) == set(SIZES["small"]), size
        for name, make in CASES.items():
            case = make(dims)
            assert case.flops > 0 and case.inputs, (size, name)
    conv = CASES["conv2d"](SIZES["speedrun"])
    assert conv.shape == "x 256x15x15x64, w 3x3x64x256, SAME"
    assert conv.flops == 2 * 256 * 15 * 15 * 256 * 64 * 9


def test_an_ops_only_bench_succeeds(tmp_path, capsys):
    """`--modes none` with ops: the op table alone is a result (exit 0), its size recorded."""
    from comparisons.cli import main

    argv = ["bench", "mnist", "--modes", "none", "--op-size", "tiny", "--op-names", "matmul"]
    argv += ["--steps", "1", "--batch-sizes", "4", "--peak-n", "64", "--no-progress"]
    assert main([*argv, "--workdir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "mnist" / "bench" / "bench.json").read_text())
    assert result["op_size"] == "tiny" and [r["op"] for r in result["ops"]] == ["matmul"]
    assert "| matmul | 64x64 @ 64x64 |" in capsys.readouterr().out
