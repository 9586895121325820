"""`roadmap ir diff`: layers on both sides, FLOPs agree per layer, one row per op, self-diff."""

from __future__ import annotations

from collections import Counter

import pytest

from comparisons.cli import build_parser
from comparisons.ir.diff import (
    FIXED_ROWS,
    align,
    assign_rows,
    build_side,
    diff_frameworks,
    diff_variants,
    differences,
    render_markdown,
    render_text,
)
from comparisons.ir.rows import UNACCOUNTED, wall_shares
from comparisons.registry import get_project, list_projects
from shared_data.configs.base import override

FAST = {"profile": False, "kernels": False, "inductor": False}  # graphs only: no XLA, no Inductor


def _config(project: str, **changes):
    return override(get_project(project).config("default"), changes)


@pytest.fixture(scope="module")
def cnn():
    """The MNIST CNN, JAX against torch, batch 2: the jaxpr and the AOTAutograd graphs."""
    return diff_frameworks("mnist", _config("mnist"), 2, **FAST)


def _cell_rows(result, side):
    return {(p, e["row"]) for p, table in result["tables"].items() for e in table if e.get(side)}


def test_assign_rows_layers_glue_and_backward_by_line():
    op = lambda phase, scope, line="", in_model=True: {  # noqa: E731
        "phase": phase, "scope": scope, "line": line, "in_model": in_model}  # fmt: skip
    ops = [
        op("forward", ["conv1"]),
        op("forward", [], "m.py:3"),  # relu after conv1
        op("forward", ["conv2", "inner"]),
        op("forward", ["Dropout_0"], "m.py:5"),  # unparameterised module: glue
        op("forward", [], "m.py:3"),  # after the last layer: a mask moved there, by line
        op("forward", [], "x.py:1", in_model=False),  # loss
        op("backward", [], "m.py:5"),  # by source line
        op("backward", [], "p.py:9"),  # no line match: the next layer's backward owns it
        op("backward", ["conv2"]),
        op("update", [], in_model=False),
        op("other", [], in_model=False),
    ]
    assign_rows(ops, ["conv1", "conv2"])
    rows = [o["row"] for o in ops]
    assert rows == ["conv1", "after conv1", "conv2", "after conv2", "after conv1", "loss",
                    "after conv2", "after conv2", "conv2", "optimizer", "other"]  # fmt: skip


def test_assign_rows_recomputed_forward_op_in_the_backward_goes_to_its_layer():
    ops = [
        {"phase": "forward", "scope": ["fc21"], "line": "m.py:33", "in_model": True},
        {"phase": "backward", "scope": [], "line": "m.py:33", "in_model": False},  # recomputed
        {"phase": "backward", "scope": [], "line": "t.py:9", "in_model": False},  # the loss's
    ]
    assign_rows(ops, ["fc21"])
    assert [(o["row"], o["attributed_by"]) for o in ops] == [
        ("fc21", "module"),
        ("fc21", "source line"),
        ("loss", "phase"),
    ]


def test_every_layer_on_both_sides_and_flops_agree(cnn):
    assert cnn["layers"] == ["conv1", "conv2", "fc1", "fc2"]
    for side in ("jax", "torch"):
        rows = _cell_rows(cnn, side)
        for layer in cnn["layers"]:
            assert ("forward", layer) in rows and ("backward", layer) in rows, (side, layer)
        assert ("forward", "after conv2") in rows and ("backward", "after conv2") in rows
    assert cnn["flops_mismatch"] == []
    conv2 = next(e for e in cnn["tables"]["backward"] if e["row"] == "conv2")
    assert conv2["jax"]["flops"] == conv2["torch"]["flops"] > 0  # input + weight gradients


def test_every_op_attributed_exactly_once(cnn):
    for side in ("jax", "torch"):
        ops = cnn["detail"][side]["ops"]
        assert all(op["row"] for op in ops)
        assert not [op for op in ops if op["row"] == "unattributed"]
        counted = sum(
            sum(e[side]["ops"].values())
            for table in cnn["tables"].values()
            for e in table
            if e.get(side)
        )
        assert counted == len(ops)
        known = set(cnn["layers"]) | {f"after {lay}" for lay in cnn["layers"]} | set(FIXED_ROWS)
        assert {op["row"] for op in ops} <= known | {"model input"}
    by_phase = Counter(op["phase"] for op in cnn["detail"]["torch"]["ops"])
    assert by_phase["forward"] and by_phase["backward"] and by_phase["update"]


def test_text_and_markdown(cnn):
    text = render_text(cnn)
    assert "== forward ==" in text and "== backward ==" in text and "conv2" in text
    assert text == render_text(cnn)  # nothing in it changes between renders
    assert "| after conv2 |" in render_markdown(cnn)


# A real difference the diff finds: torch freezes the speedrun net's whitening weights
# (requires_grad=False, no weight-gradient conv) while JAX differentiates every parameter and
# the optimizer discards the whitening kernel's gradient. And the LSTM's: JAX's scan
# transposes every step, the first one's matmul with the initial (zero, constant) state
# included, whose cotangent it then drops; torch's unrolled backward skips that matmul (h0
# needs no gradient): 2*B*H*4H FLOPs fewer per direction. And seq2seq's attention: torch's
# CPU flash-attention backward recomputes the scores QK^T from the saved logsumexp (5
# matmuls), where JAX's backward reads the probabilities its forward saved (4).
ATTENTION = ("dec0/cross_attn", "dec0/self_attn", "dec1/cross_attn", "dec1/self_attn")
KNOWN_FLOP_GAPS = {
    "cifar10": ["backward whiten"],
    "sentiment": ["backward bwd0", "backward fwd0"],
    "seq2seq": [f"backward {a}" for a in (*ATTENTION, "enc0/attn", "enc1/attn")],
}

# torch unrolls the LSTM (aten.lstm decomposed step by step): 8 tokens, not 48, keep it quick
SHORTER = {"sentiment": {"max_len": 8}}


@pytest.mark.parametrize("name", [p.name for p in list_projects() if p.name != "mnist"])
def test_every_project_layers_on_both_sides(name):
    result = diff_frameworks(name, _config(name, **SHORTER.get(name, {})), 2, **FAST)
    assert result["layers"]
    for side in ("jax", "torch"):
        rows = _cell_rows(result, side)
        missing = [lay for lay in result["layers"] if ("forward", lay) not in rows]
        assert not missing, (side, missing)
    assert result["flops_mismatch"] == KNOWN_FLOP_GAPS.get(name, [])


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_variant_diff_of_a_config_with_itself_is_empty(framework):
    config = _config("mnist")
    same = diff_variants("mnist", framework, {"a": config, "b": config}, 2, **FAST)
    assert same["differences"] == [] and same["tables"]["backward"]


def test_torch_variant_diff_marks_only_the_glue():
    sides = {
        "a": build_side("torch", get_project("mnist"), _config("mnist"), 2, **FAST),
        "b": build_side("torch", get_project("mnist"), _config("mnist", dropout=False), 2, **FAST),
    }
    rows = {(d["phase"], d["row"]) for d in differences(align(sides, sides["a"]["layers"]))}
    assert ("forward", "after conv2") in rows and ("forward", "after fc1") in rows
    assert not rows & {(p, lay) for p in ("forward", "backward") for lay in sides["a"]["layers"]}


def test_variant_diff_self_is_empty_and_pool_differs():
    config = _config("mnist")
    same = diff_variants("mnist", "jax", {"a": config, "b": config}, 2, **FAST)
    assert same["differences"] == []
    other = _config("mnist", pool="reduce_window")  # nn.max_pool: reduce_window, select_and_scatter
    sides = {
        "a": same["detail"]["a"],
        "b": build_side("jax", get_project("mnist"), other, 2, **FAST),
    }
    changed = differences(align(sides, same["layers"]))
    rows = {(d["phase"], d["row"]) for d in changed}
    assert ("forward", "after conv2") in rows and ("backward", "after conv2") in rows
    assert all(d["row"] not in ("conv1", "conv2", "fc1", "fc2") for d in changed)


def test_cli_keeps_roadmap_ir_project():
    parser = build_parser()
    plain = parser.parse_args(["ir", "mnist"])
    assert plain.project == "mnist" and plain.target is None
    diff = parser.parse_args(["ir", "diff", "vae", "--a", "pool=reduce_window", "--no-profile"])
    assert (diff.project, diff.target, diff.a, diff.profile) == (
        "diff",
        "vae",
        "pool=reduce_window",
        False,
    )


def test_report_section_expands_rows(cnn, tmp_path):
    from comparisons.ir.diff import dumps
    from comparisons.report.core import build_report

    folder = tmp_path / "runs" / "mnist" / "ir"
    folder.mkdir(parents=True)
    (folder / "ir_diff.json").write_text(dumps(cnn))
    page = build_report(tmp_path / "runs", tmp_path / "report.html").read_text()
    assert 'id="mnist-ir-diff"' in page
    assert "<details><summary>conv2</summary>" in page and "convolution_backward" in page


def test_wall_shares_count_each_instant_once():
    spans = [("a", 0, 10), ("b", 5, 15), ("c", 20, 30), ("a", 25, 26), ("d", 3, 3)]
    shares = wall_shares(spans)
    assert sum(shares.values()) == pytest.approx(25)  # the union: [0, 15] and [20, 30]
    assert shares == pytest.approx({"a": 5 + 2.5 + 0.5, "b": 2.5 + 5, "c": 9.5, "d": 0})


def _time_invariants(time):
    """Rows (unaccounted aside) add up to the profiled ops' time, at most the step's wall."""
    rows = {(r["phase"], r["row"]): r["us"] for r in time["rows"]}
    rest = rows.pop(("other", UNACCOUNTED))
    assert sum(rows.values()) == pytest.approx(time["sum_us"])
    assert 0 < time["sum_us"] <= time["wall_us"]
    assert rest == pytest.approx(time["wall_us"] - time["sum_us"])


@pytest.fixture(scope="module")
def jax_timed():
    """The MNIST CNN's JAX side at batch 2 with XLA's kernels and a trace (one XLA compile)."""
    return build_side("jax", get_project("mnist"), _config("mnist"), 2, profile=True)


def test_jax_kernels_without_metadata_are_inferred_not_dropped(jax_timed):
    kernel_rows = jax_timed["kernel_rows"]
    names = {k["kernel"].split(" ")[0] for k in kernel_rows}
    assert set(jax_timed["time"]["kernel_us"]) <= names  # every timed kernel has a row
    inferred = [k for k in kernel_rows if k.get("inferred")]
    assert inferred and all("inferred: " in k["kernel"] for k in inferred)
    left = [k for k in kernel_rows if k["row"] == "unattributed"]
    assert len(left) <= len(names) // 20, left  # 47 of 101 before inference; listed, not hidden
    flops = {(op["phase"], op["row"]) for op in jax_timed["ops"] if op["flops"]}
    with_kernels = {(k["phase"], k["row"]) for k in kernel_rows}
    assert flops <= with_kernels  # conv1's weight gradient has no op_name: found by its FLOPs


def test_jax_time_rows_never_exceed_the_step(jax_timed):
    time = jax_timed["time"]
    _time_invariants(time)
    # each event counted once: the kernels' shares are the rows' time
    assert sum(time["kernel_us"].values()) == pytest.approx(
        time["sum_us"], abs=0.01 * time["events"]
    )


def test_torch_eager_time_rows_never_exceed_the_step():
    side = build_side("torch", get_project("mnist"), _config("mnist"), 2, inductor=False)
    assert side["time"]["kind"] == "eager"
    _time_invariants(side["time"])


@pytest.mark.slow
def test_run_folder_specs(tmp_path, capsys):
    """--a/--b name a finished run: its config.json (a 2-step smoke run made here)."""
    from comparisons.cli import main
    from comparisons.ir.diff import variant_config

    workdir = tmp_path / "runs"
    sets = ["--set", "max_steps=2", "--set", "epochs=1"]
    args = ["run", "mnist", "--variant", "smoke", "--framework", "torch", "--no-progress"]
    assert main([*args, "--workdir", str(workdir), *sets]) == 0
    (folder,) = (workdir / "mnist" / "torch").iterdir()
    smoke = override(get_project("mnist").config("smoke"), {"max_steps": 2, "epochs": 1})
    assert variant_config(_config("mnist"), str(folder)) == smoke
    capsys.readouterr()
    fast = ["--no-profile", "--no-compile", "--batch-size", "2", "--workdir", str(tmp_path)]
    diff = ["ir", "diff", "mnist", "--a", str(folder)]  # the framework the run folder ran
    assert main([*diff, "--b", str(folder / "config.json"), *fast]) == 0
    assert "no differences" in capsys.readouterr().out
    saved = (tmp_path / "mnist" / "ir" / "ir_diff_torch_variants.json").read_text()
    assert str(folder) in saved  # the specs are recorded


@pytest.mark.slow
def test_torch_compiled_time_kernel_by_kernel():
    """--torch-time compiled: Inductor's kernels built with profiler ranges, matched to rows."""
    side = build_side("torch", get_project("mnist"), _config("mnist"), 2, torch_time="compiled")
    time = side["time"]
    assert time["kind"] == "compiled" and time["recompiled_frames"] == 0
    assert time["graph_calls"] and time["unmatched_graph_calls"] == 0
    _time_invariants(time)
    rows = {(r["phase"], r["row"]) for r in time["rows"] if r["us"] > 0}
    assert {("forward", "conv2"), ("backward", "conv2"), ("update", "optimizer")} <= rows


def test_transposed_conv_flops_as_torch_counts_them():
    """A stride-2 transposed conv's forward and both gradients, JAX's jaxpr against torch's
    FlopCounterMode: the weight gradient's window skips the holes of the dilated input."""
    import jax
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from comparisons.ir.jax_layers import jaxpr_ops

    x, w = jax.numpy.ones((2, 8, 8, 4)), jax.numpy.ones((2, 2, 4, 3))  # NHWC, HWIO

    def loss(x, w):
        y = jax.lax.conv_transpose(
            x, w, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y.sum()

    ops = jaxpr_ops(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, w), "")
    convs = [op["flops"] for op in ops if op["op"] == "conv_general_dilated"]
    layer = torch.nn.ConvTranspose2d(4, 3, 2, stride=2, bias=False)
    inputs = torch.ones(2, 4, 8, 8, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(inputs).sum().backward()
    assert len(convs) == 3 and sum(convs) == counter.get_total_flops()
    assert len(set(convs)) == 1  # each gradient costs what the forward does
