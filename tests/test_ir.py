"""`roadmap ir`: op tables, FLOP agreement, parseable StableHLO, stable normalised text, SVGs."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from comparisons.ir import dump_ir
from comparisons.ir.graphs import (
    hlo_matmul_conv_flops,
    normalize_hlo,
    normalize_mlir,
    split_kernel_name,
)
from comparisons.ir.opmap import aten_category, jax_category
from comparisons.ir.pictures import RENDERER_ENV, draw_graph
from comparisons.registry import get_project
from shared_data.configs.base import override

MODELS = ("mlp", "cnn")


def _config(model: str):
    return override(get_project("mnist").config("default"), {"model": model})


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """Both models, both frameworks, forward and train step; AOT graphs without Inductor."""
    out = {}
    for model in MODELS:
        root = tmp_path_factory.mktemp(f"ir_{model}")
        out[model] = (root, dump_ir("mnist", _config(model), root, inductor=False, progress=False))
    return out


@pytest.mark.parametrize("model", MODELS)
def test_forward_op_categories_match(dumps, model):
    _, summary = dumps[model]
    jax_cats = summary["frameworks"]["jax"]["forward"]["op_categories"]
    torch_cats = summary["frameworks"]["torch"]["forward"]["op_categories"]
    for cats in (jax_cats, torch_cats):
        assert cats["matmul/conv"] > 0 and cats["elementwise"] > 0 and cats["data movement"] > 0
    # Same layers: one dot_general/conv per addmm/convolution; pooling on both sides or neither.
    assert jax_cats["matmul/conv"] == torch_cats["matmul/conv"] == (3 if model == "mlp" else 4)
    assert jax_cats["reduction"] == torch_cats["reduction"]
    assert jax_cats["random"] == torch_cats["random"] == 0  # predict runs without dropout
    assert summary["errors"] == {}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("what", ["forward", "train_step"])
def test_matmul_conv_flops_agree(dumps, model, what):
    _, summary = dumps[model]
    jax_flops = summary["frameworks"]["jax"][what]["flops"]
    torch_flops = summary["frameworks"]["torch"][what]["flops"]
    assert jax_flops["matmul_conv"] > 0
    assert jax_flops["matmul_conv"] == pytest.approx(torch_flops["flop_counter"], rel=0.01)
    # XLA's cost analysis also counts elementwise work; it is a different, non-zero number.
    assert jax_flops["cost_analysis"] > 0
    assert summary["comparison"][what]["matmul_conv_flops"]["rel_diff"] < 0.01


def test_train_step_parts_and_memory(dumps):
    _, summary = dumps["cnn"]
    for fw in ("jax", "torch"):
        step = summary["frameworks"][fw]["train_step"]
        parts = step["parts"]
        assert parts["forward"]["op_categories"]["matmul/conv"] == 4  # 2 convs, 2 dense
        assert parts["backward"]["op_categories"]["matmul/conv"] >= 5
        assert parts["update"]["op_categories"]["elementwise"] > 0
        # The update is elementwise work only (optax's own one-cycle schedule would add a
        # scalar dot_general here; jaxpath's torch-exact schedule is built from where/cos).
        assert parts["update"]["op_categories"]["matmul/conv"] == 0
        assert step["memory"]["param_bytes"] == 4 * 1_199_882  # pytorch/examples CNN
        assert step["memory"]["optimizer_state_bytes"] >= 2 * step["memory"]["param_bytes"]
    assert summary["frameworks"]["jax"]["train_step"]["fusions"]["fusions"] > 0


def test_stablehlo_parses_back(dumps):
    from jax._src.interpreters import mlir
    from jaxlib.mlir import ir

    root, _ = dumps["cnn"]
    with mlir.make_ir_context():
        for what in ("forward", "train_step"):
            text = (root / "jax" / f"{what}.stablehlo.mlir").read_text()
            module = ir.Module.parse(text)
            assert "stablehlo.convolution" in str(module)
            ir.Module.parse((root / "jax" / f"{what}.stablehlo.norm.txt").read_text())


def test_normalised_text_is_stable(dumps, tmp_path):
    root, first = dumps["mlp"]
    dump_ir("mnist", _config("mlp"), tmp_path, inductor=False, progress=False)
    norms = sorted(f for f in first["files"] if f.endswith(".norm.txt"))
    assert len(norms) >= 15
    for name in norms:
        text = (root / name).read_text()
        assert text == (tmp_path / name).read_text(), name
        assert not re.search(r"%\d+\b|loc\(|metadata=\{", text), name


def test_svgs_are_valid(dumps):
    """No skip: graphviz-pure, a dependency, renders on a plain pip install."""
    root, summary = dumps["cnn"]
    svgs = [f for f in summary["files"] if f.endswith(".svg")]
    stems = {f"{fw}/train_step.{p}.svg" for fw in ("jax", "torch") for p in ("forward", "backward")}
    assert stems <= set(svgs), summary["frameworks"]["jax"]["train_step"]["notes"]
    for name in svgs:
        tree = ET.parse(root / name)
        assert tree.getroot().tag.endswith("svg")
        assert len(tree.getroot().findall(".//{http://www.w3.org/2000/svg}g")) > 5
    assert summary["frameworks"]["jax"]["train_step"]["picture_renderer"] in RENDERERS


def _saved_params(record) -> list[int]:
    return sorted(s["nbytes"] for s in record["saved"] if s["kind"] == "parameter")


def test_whole_step_picture_and_saved_values(dumps):
    """One phase-coloured graph per framework; the saved values die, and the three agree."""
    from comparisons.autodiff import toy_step_graph
    from shared_data.byhand import autodiff as ad
    from shared_data.byhand.autodiff import mlp

    for model in MODELS:
        root, summary = dumps[model]
        for fw in ("jax", "torch"):
            entry = summary["frameworks"][fw]["train_step"]
            record = entry["step"]
            assert min(record["ops_per_phase"].values()) > 0, (model, fw)
            dot = (root / fw / "train_step.whole.dot").read_text()
            assert all(f"cluster_{p}" in dot for p in ("forward", "backward", "update"))
            assert "style=bold" in dot and "KiB" in dot  # forward -> backward edges, sized
            ET.parse(root / fw / "train_step.whole.svg")
            read = [s for s in record["saved"] if s["last_use"] is not None]
            assert read and all(0 <= s["last_use"] < record["backward_ops"] for s in read)
            assert record["saved_bytes"]["activation"] > 0
        ir_md = (root / "ir.md").read_text()
        assert "## Saved for the backward" in ir_md and "dies after backward op" in ir_md
    # The MLP's backward needs no gradient for the image, so no system saves the first layer's
    # kernel: the saved parameters are the 256x128 and 128x10 kernels, in all three.
    _, summary = dumps["mlp"]
    jax_step = summary["frameworks"]["jax"]["train_step"]
    torch_step = summary["frameworks"]["torch"]["train_step"]
    expected = [4 * 128 * 10, 4 * 256 * 128]
    assert _saved_params(jax_step["step"]) == _saved_params(torch_step["step"]) == expected
    params = mlp.init_params()
    wrt = list(range(len(params)))
    toy = toy_step_graph(ad.simplify(ad.sgd_step(mlp.loss_graph(params, 8), wrt, 0.1)), wrt)
    assert _saved_params(toy.summary()) == expected
    assert toy.live_after()[-1] == 0 and toy.live_after()[0] > 0
    # The checks: eager autograd saves the same parameters as the compiled graph; XLA's temp
    # buffers are recorded next to JAX's residuals.
    eager = torch_step["eager_saved"]
    assert eager["saved_bytes"]["parameter"] == sum(expected)
    assert eager["backward_nodes"] > 0 and eager["saved_tensors"] >= eager["unique_storages"]
    memory = jax_step["memory"]
    assert memory["xla_temp_bytes"] > 0
    if memory.get("xla_peak_bytes") is not None:  # jaxlib reports it (0.10 does)
        assert memory["xla_peak_bytes"] >= memory["xla_argument_bytes"]


RENDERERS = ("graphviz-pure", "dot")


@pytest.mark.parametrize("renderer", RENDERERS)
def test_each_renderer_draws_a_graph(renderer, tmp_path, monkeypatch):
    if renderer == "dot" and shutil.which("dot") is None:
        pytest.skip("system Graphviz not installed (optional: graphviz-pure is the default)")
    monkeypatch.setenv(RENDERER_ENV, renderer)
    nodes = [{"id": "x", "label": "x\nf32[8,28,28,1]", "kind": "input"}]
    nodes += [{"id": "c", "label": "conv", "kind": "op", "category": "matmul/conv"}]
    nodes += [{"id": "o", "label": "outputs", "kind": "output"}]
    drawn = draw_graph(nodes, [("x", "c"), ("c", "o")], tmp_path / "g", "tiny")
    assert drawn["error"] is None and drawn["renderer"] == renderer
    svg = ET.parse(tmp_path / "g.svg").getroot()
    titles = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")}
    assert {"x", "c", "o", "x->c", "c->o"} <= titles


def test_no_renderer_writes_the_source_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv(RENDERER_ENV, "no-such-graphviz")
    drawn = draw_graph([{"id": "a", "label": "a", "kind": "op"}], [], tmp_path / "g", "t")
    assert drawn["files"] == ["g.dot"] and "pip install graphviz-pure" in drawn["error"]


def test_ir_json_and_md(dumps):
    root, summary = dumps["cnn"]
    data = json.loads((root / "ir.json").read_text())
    assert data["frameworks"]["jax"]["forward"]["ops"]["conv_general_dilated"] == 2
    assert data["frameworks"]["torch"]["forward"]["ops"]["convolution"] == 2
    md = (root / "ir.md").read_text()
    assert "| matmul/conv | 4 | 4 |" in md and "FlopCounterMode" in md
    for name in summary["files"]:
        assert (root / name).exists(), name


def test_failures_are_named(tmp_path, monkeypatch):
    from comparisons.ir import torch_ir as ir_torch

    def broken(self):
        raise RuntimeError("no TorchScript today")

    monkeypatch.setattr(ir_torch.TorchDump, "script", broken)
    summary = dump_ir(
        "mnist", _config("mlp"), tmp_path, ("torch",), ("forward",), 4, False, inductor=False
    )
    error = summary["errors"]["torch.forward.TorchScript"]
    assert error == "TorchScript failed: RuntimeError: no TorchScript today"
    assert "torch/forward.core_aten.txt" in summary["files"]  # the rest still appears
    assert "TorchScript failed" in (tmp_path / "ir.md").read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor needs a C++ compiler")
def test_inductor_kernels(tmp_path):
    """The one torch.compile(Inductor) test: kernels and the ATen ops each one covers."""
    summary = dump_ir("mnist", _config("mlp"), tmp_path, ("torch",), ("train_step",), 8, False)
    step = summary["frameworks"]["torch"]["train_step"]
    assert summary["errors"] == {}
    assert {"forward", "backward", "update"} <= set(step["parts"])
    kernels = step["kernels"]
    assert kernels["kernels"] > 0 and kernels["extern_calls"] > 0
    covered = {op for g in kernels["graphs"] for k in g["kernels"] for op in k["aten_ops"]}
    assert "relu" in covered
    calls = {c["call"] for g in kernels["graphs"] for c in g["extern_calls"]}
    assert {"extern_kernels.addmm", "extern_kernels.mm"} <= calls


HLO = """HloModule m

ENTRY %main (x: f32[8,24,24,64], w: f32[3,3,32,64], a: f32[8,9216], b: f32[9216,128]) -> f32[] {
  %x = f32[8,24,24,64]{3,2,1,0} parameter(0), metadata={op_name="x" source_file="/a.py"}
  %w = f32[3,3,32,64]{3,2,1,0} parameter(1)
  %a = f32[8,9216]{1,0} parameter(2)
  %b = f32[9216,128]{1,0} parameter(3)
  %dot.1 = f32[8,128]{1,0} dot(%a, %b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %dx = f32[8,26,26,32]{3,2,1,0} convolution(%x, %w), window={size=3x3 pad=2_2x2_2}, \
dim_labels=b01f_01oi->b01f
  ROOT %c = f32[] constant(0)
}
"""


def test_hlo_flops_count_the_forward_convention():
    flops = hlo_matmul_conv_flops(HLO.replace("\\\n", ""))
    assert flops["by_op"]["dot"] == 2 * 8 * 9216 * 128
    # Input gradient of a 3x3 conv 26x26x32 -> 24x24x64: charged like its forward conv.
    assert flops["by_op"]["convolution"] == 2 * 8 * 24 * 24 * 64 * 9 * 32
    assert flops["ops"][1]["dense_flops"] == 2 * 8 * 26 * 26 * 32 * 9 * 64


def test_hlo_flops_count_a_loop_body_once_per_trip():
    """A scanned matmul's forward and backward dots run 32 times each (known_trip_count)."""
    import jax
    import jax.numpy as jnp

    def f(w, x):
        return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=32)[0].sum()

    w, x = jnp.ones((64, 64)), jnp.ones((8, 64))
    one_dot = 2 * 8 * 64 * 64
    forward = hlo_matmul_conv_flops(jax.jit(f).lower(w, x).compile().as_text())
    assert forward["total"] == 32 * one_dot
    grad = hlo_matmul_conv_flops(jax.jit(jax.grad(f)).lower(w, x).compile().as_text())
    assert grad["total"] == 3 * 32 * one_dot  # the tuple-shaped backward loop is found too
    assert {op["runs"] for op in grad["ops"]} == {32} and {op["flops"] for op in grad["ops"]} == {
        one_dot
    }


def test_normalizers_and_maps():
    norm = normalize_hlo(HLO.replace("\\\n", ""))
    assert "metadata" not in norm and "%v0" in norm and "%x" not in norm
    mlir = '%0 = stablehlo.add %arg0, %cst : tensor<f32> loc(#loc3)\n#loc3 = loc("a.py":1:2)\n'
    assert normalize_mlir(mlir) == "%v0 = stablehlo.add %v1, %v2 : tensor<f32>\n"
    vocab = {"max_pool2d", "max_pool2d_with_indices", "relu", "_log_softmax", "mean"}
    assert split_kernel_name("cpp_fused_max_pool2d_with_indices_relu_3", vocab) == [
        "max_pool2d_with_indices",
        "relu",
    ]
    assert split_kernel_name("cpp_fused__log_softmax_mean_0", vocab) == ["_log_softmax", "mean"]
    assert jax_category("dot_general") == aten_category("aten.addmm.default") == "matmul/conv"
    assert jax_category("reduce_window_max") == aten_category("max_pool2d") == "reduction"
    assert aten_category("aten.convolution_backward.default") == "matmul/conv"
