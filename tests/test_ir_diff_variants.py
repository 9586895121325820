"""`roadmap ir diff --a/--b` across program variants: Linen/NNX, fp32/bf16, jit/pmap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from comparisons.ir.diff import diff_variants, variant_spec
from comparisons.ir.rows import COLLECTIVES, MATMUL
from comparisons.registry import get_project
from shared_data.configs.base import override

FAST = {"profile": False, "kernels": False, "inductor": False}  # graphs only: no XLA, no Inductor


def _layer_rows(result, side):
    """{(phase, layer): cell} of one side's layer rows (not glue, loss or optimizer)."""
    layers = set(result["layers"])
    return {
        (phase, entry["row"]): entry[side]
        for phase, table in result["tables"].items()
        for entry in table
        if entry["row"] in layers and entry.get(side)
    }


def test_linen_against_nnx_same_layers_same_flops():
    """style=nnx traces jaxpath/mnist/nnx_train.py; NNX's module paths name the same rows."""
    config = get_project("mnist").config("default")
    nnx = override(config, {"style": "nnx"})
    result = diff_variants("mnist", "jax", {"a": config, "b": nnx}, 2, **FAST)
    assert "nnx_train.train_step" in result["detail"]["b"]["traced"]
    linen, flax_nnx = _layer_rows(result, "a"), _layer_rows(result, "b")
    layers = ("conv1", "conv2", "fc1", "fc2")
    expected = {(phase, lay) for phase in ("forward", "backward") for lay in layers}
    assert set(linen) == set(flax_nnx) == expected
    for key, cell in linen.items():  # the layers compute the same ops and FLOPs
        assert (cell["ops"], cell["flops"]) == (flax_nnx[key]["ops"], flax_nnx[key]["flops"]), key
    assert sum(cell["flops"] for cell in linen.values()) > 0
    # What differs is marked: NNX splits the dropout key inside the model (before conv1), and
    # its optimizer keeps its own step count; no layer row differs.
    changed = {(d["phase"], d["row"]) for d in result["differences"]}
    assert ("forward", "model input") in changed and ("update", "optimizer") in changed
    assert not changed & set(linen)
    assert result["config_differences"] == ["style"]


@pytest.mark.parametrize(
    "framework", ["jax", pytest.param("torch", marks=pytest.mark.slow)]
)  # torch: dynamo + AOTAutograd on both sides, ~15 s here
def test_fp32_against_bf16_equal_flops_half_the_bytes(framework):
    """precision=bf16 (cifar10): every conv and matmul the same FLOPs on half the bytes."""
    fp32 = override(get_project("cifar10").config("smoke"), {"model": "smallcnn"})
    bf16 = override(fp32, {"precision": "bf16"})
    result = diff_variants("cifar10", framework, {"a": fp32, "b": bf16}, 2, **FAST)
    a, b = (
        [op for op in result["detail"][s]["ops"] if op["category"] == MATMUL] for s in ("a", "b")
    )
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert (x["op"], x["row"], x["flops"]) == (y["op"], y["row"], y["flops"])
        assert y["bytes"] * 2 == x["bytes"], (x["op"], x["row"])
    # the casts to bf16 and back: in every layer's forward and backward rows of b only
    casts = ("convert_element_type", "_to_copy")
    for key, cell in _layer_rows(result, "b").items():
        assert any(op in cell["ops"] for op in casts), key
    marked = {(d["phase"], d["row"]) for d in result["differences"]}
    assert set(_layer_rows(result, "a")) <= marked
    assert result["config_differences"] == ["precision"]


def test_run_options_in_specs():
    """devices/parallel are run options, not config fields; bad values name themselves."""
    base = get_project("mnist").config("default")
    config, run = variant_spec(base, "devices=2;parallel=pmap dropout=false")
    assert run == {"devices": 2, "parallel": "pmap"} and config.dropout is False
    assert variant_spec(base, "devices=2")[1] == {"devices": 2, "parallel": "sharding"}
    assert variant_spec(base, "lr=0.5")[1] is None
    with pytest.raises(ValueError, match="--b: parallel must be one of"):
        variant_spec(base, "parallel=dp", "--b")
    with pytest.raises(ValueError, match="devices must be an integer >= 1"):
        variant_spec(base, "devices=two")


def test_jit_against_pmap_shows_the_all_reduce(tmp_path):
    """`--a devices=1 --b "devices=2 parallel=pmap"`: the CLI makes 2 host devices (XLA_FLAGS
    before JAX starts, so in a fresh process); b's gradients pass through one all-reduce."""
    code = (
        "import sys; from comparisons.cli import main; sys.exit(main(["
        "'ir', 'diff', 'mnist', '--a', 'devices=1', '--b', 'devices=2 parallel=pmap', "
        f"'--no-profile', '--batch-size', '4', '--workdir', {str(tmp_path)!r}]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "collectives" in done.stdout
    result = json.loads((tmp_path / "mnist" / "ir" / "ir_diff_jax_variants.json").read_text())
    update = {e["row"]: e for e in result["tables"]["update"]}
    jit, pmap = update[COLLECTIVES]["a"], update[COLLECTIVES]["b"]
    assert jit is None and pmap["ops"]["psum"] >= 8  # 4 layers' kernels and biases
    assert any(k.startswith("all-reduce") for k in pmap["kernels"])
    assert result["config_differences"] == ["devices (run)", "parallel (run)"]
    # pmap's body is one device's: half the batch, half of every layer's FLOPs
    for key, cell in _layer_rows(result, "a").items():
        assert _layer_rows(result, "b")[key]["flops"] * 2 == cell["flops"], key
