"""Per-example gradients: the graph of one example's grad beside the graph vmap made of it.

`roadmap pergrad mnist [--model mlp|cnn] [--batch-size 4] [--out DIR]` traces, in each
framework, the gradient of one example's loss and the vmapped gradient of a batch
(jaxpath|torchpath/<project>/per_example.py: jax.make_jaxpr of jax.grad and of
jax.vmap(jax.grad); torch's make_fx of torch.func.grad and of torch.func.vmap(grad)), writes
the four graphs as text, and pergrad.md: op counts side by side, the matmuls and
convolutions with their shapes (where the example axis went), and a check that vmap equals
the Python loop. Dropout is off (inference mode). docs/PER_EXAMPLE.md reads the result.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.env import pin_fp32
from comparisons.options import load_config
from comparisons.registry import get_project

DEFAULT_EXAMPLES = 4
HEAVY_JAX = ("dot_general", "conv_general_dilated")
HEAVY_TORCH = ("mm", "bmm", "addmm", "convolution", "convolution_backward")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--out; the batch is --batch-size (default 4), the model --model, from the CLI."""
    parser.add_argument("--out", help="output folder (default <workdir>/<project>/pergrad/<model>)")


def _jax_eqns(jaxpr):
    """Every equation of a jaxpr, recursing into the jaxprs its equations call."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds a Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _jax_eqns(inner)


def _aval(var) -> str:
    aval = getattr(var, "aval", None)
    return aval.str_short() if hasattr(aval, "str_short") else str(var)


def _jax_heavy(eqn) -> str:
    shapes = " · ".join(_aval(v) for v in eqn.invars)
    out = ", ".join(_aval(v) for v in eqn.outvars)
    p = eqn.params
    if eqn.primitive.name == "dot_general":
        (lc, rc), (lb, rb) = p["dimension_numbers"]
        extra = f"contract {tuple(lc)}x{tuple(rc)}, batch {tuple(lb)}x{tuple(rb)}"
    else:
        extra = f"feature_group_count={p['feature_group_count']}, "
        extra += f"batch_group_count={p['batch_group_count']}"
    return f"`{eqn.primitive.name}` {shapes} -> {out} ({extra})"


def jax_graphs(project, config, size: int, check: bool = True) -> dict[str, Any]:
    """make_jaxpr of one example's grad and of the vmapped grad of `size` examples."""
    import jax

    train = project.module("jax", "train")
    per_example = project.module("jax", "per_example")
    state = train.create_state(config, 10)
    batch = train.to_device(project.example_batch(size, 0, config=config))

    def loss(params, image, label):
        return per_example.example_loss(params, state.apply_fn, image, label)

    single = jax.make_jaxpr(jax.grad(loss))(state.params, batch["image"][0], batch["label"][0])
    fn = per_example.per_example_grad_fn(state.apply_fn)
    batched = jax.make_jaxpr(fn)(state.params, batch["image"], batch["label"])
    out = {}
    for key, closed in (("grad", single), ("vmap", batched)):
        eqns = list(_jax_eqns(closed.jaxpr))
        out[key] = {
            "text": str(closed),
            "counts": collections.Counter(e.primitive.name for e in eqns),
            "heavy": [_jax_heavy(e) for e in eqns if e.primitive.name in HEAVY_JAX],
        }
    if not check:
        return out
    vmap = per_example.per_example_grads(state, batch)
    loop = per_example.per_example_grads_loop(state, batch)
    out["check"] = _max_rel(jax.tree_util.tree_leaves(vmap), jax.tree_util.tree_leaves(loop))
    return out


def _torch_name(node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    if hasattr(target, "overloadpacket"):  # aten.mm.default -> mm
        name = target.overloadpacket.__name__
    return name


def _torch_shape(arg) -> str:
    val = getattr(arg, "meta", {}).get("val") if hasattr(arg, "meta") else None
    return "x".join(map(str, val.shape)) if hasattr(val, "shape") else repr(arg)


def _torch_heavy(node) -> str:
    name = _torch_name(node)
    tensors = [a for a in node.args if hasattr(a, "meta")]
    shapes = " · ".join(f"[{_torch_shape(a)}]" for a in tensors)
    out = node.meta.get("val")
    out = out if isinstance(out, (tuple, list)) else [out]
    outs = ", ".join(f"[{'x'.join(map(str, o.shape))}]" for o in out if hasattr(o, "shape"))
    extra = ""
    if name.startswith("convolution"):
        groups = node.args[8] if name == "convolution" else node.args[9]
        extra = f" (groups={groups})"
    return f"`aten.{name}` {shapes} -> {outs}{extra}"


def torch_graphs(project, config, size: int, check: bool = True) -> dict[str, Any]:
    """make_fx of torch.func.grad for one example and of the vmapped grad of `size`."""
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    train = project.module("torch", "train")
    per_example = project.module("torch", "per_example")
    state = train.create_state(config, 10)
    model = state.model.eval()
    batch = train.to_device(project.example_batch(size, 0, config=config))
    params = {name: p.detach() for name, p in model.named_parameters()}

    def single(params, image, label):
        return per_example.example_grad(params, model, image, label)

    graphs = {
        "grad": make_fx(single)(params, batch["image"][0], batch["label"][0]),
        "vmap": make_fx(per_example.per_example_grad_fn(model))(
            params, batch["image"], batch["label"]
        ),
    }
    out = {}
    for key, gm in graphs.items():
        nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
        out[key] = {
            "text": gm.code.strip() + "\n",
            "counts": collections.Counter(_torch_name(n) for n in nodes),
            "heavy": [_torch_heavy(n) for n in nodes if _torch_name(n) in HEAVY_TORCH],
        }
    if not check:
        return out
    vmap = per_example.per_example_grads(state, batch)
    loop = per_example.per_example_grads_loop(state, batch)
    with torch.no_grad():
        out["check"] = _max_rel([vmap[k].numpy() for k in vmap], [loop[k].numpy() for k in vmap])
    return out


def _max_rel(got, want) -> float:
    """The largest |got - want| over the largest |want|, over every pair of arrays."""
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(got, want, strict=True)]
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in pairs)


def _count_table(graphs: dict, size: int, header: str) -> list[str]:
    one, many = graphs["grad"]["counts"], graphs["vmap"]["counts"]
    lines = [f"| {header} | grad, 1 example | vmap(grad), {size} examples |", "|---|---|---|"]
    for op in sorted(set(one) | set(many), key=lambda o: (-(one[o] + many[o]), o)):
        lines.append(f"| `{op}` | {one[op]} | {many[op]} |")
    lines.append(f"| **total** | **{sum(one.values())}** | **{sum(many.values())}** |")
    return lines


def to_markdown(project: str, model: str, size: int, jax_out: dict, torch_out: dict) -> str:
    """pergrad.md: op counts side by side, the heavy ops with shapes, and the vmap=loop check."""
    lines = [f"# roadmap pergrad {project} ({model}), {size} examples", "",
             "Per-example gradients of one example's cross-entropy, dropout off. Files: "
             "jaxpr_grad.txt, jaxpr_vmap_grad.txt (jax.make_jaxpr), torch_grad.txt, "
             "torch_vmap_grad.txt (make_fx, ATen). Counts include the equations of nested "
             "jaxprs (jit, custom_jvp_call) and their wrappers.", ""]  # fmt: skip
    for name, out, header in (("JAX", jax_out, "primitive"), ("torch", torch_out, "ATen op")):
        lines += [f"## {name}", ""] + _count_table(out, size, header) + [""]
        for key, title in (("grad", "grad, 1 example"), ("vmap", f"vmap(grad), {size}")):
            lines += [f"{name} {title}, matmuls and convolutions:", ""]
            lines += [f"- {h}" for h in out[key]["heavy"]] + [""]
    lines.append(f"vmap vs Python loop, largest difference over the largest gradient entry: "
                 f"JAX {jax_out['check']:.1e}, torch {torch_out['check']:.1e}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Trace the four graphs, write them and pergrad.md, print the markdown."""
    pin_fp32()
    project = get_project(args.project)
    config = load_config(args)
    try:
        project.module("jax", "per_example")
    except ImportError:
        print(f"roadmap pergrad: error: project {project.name!r} has no per_example module")
        return 2
    size = args.batch_size or DEFAULT_EXAMPLES
    jax_out, torch_out = jax_graphs(project, config, size), torch_graphs(project, config, size)
    out = Path(args.out or Path(args.workdir) / project.name / "pergrad" / config.model)
    out.mkdir(parents=True, exist_ok=True)
    for prefix, graphs in (("jaxpr", jax_out), ("torch", torch_out)):
        (out / f"{prefix}_grad.txt").write_text(graphs["grad"]["text"])
        (out / f"{prefix}_vmap_grad.txt").write_text(graphs["vmap"]["text"])
    text = to_markdown(project.name, config.model, size, jax_out, torch_out)
    (out / "pergrad.md").write_text(text)
    print(text)
    print(f"wrote {out}/pergrad.md and the four graphs")
    return 0
