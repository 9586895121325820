"""Toy autodiff engine: show the forward IR and its generated backward, or train the MNIST MLP.

`roadmap autodiff show [--expr mlp|tanh]` prints the forward graph, the backward graph that
`grad` generated, before and after the passes (with node counts), and writes the training
step's phase-coloured dataflow (`train_step.dot`, `.svg`) into `--out`.
`roadmap autodiff train [--data-dir D] [--epochs N]` trains the MLP with plain SGD, every step
one graph run by the interpreter, and prints test accuracy and ms/step per epoch.
The engine is shared_data/byhand/autodiff (NumPy only); docs/AUTODIFF.md walks through it.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from shared_data.byhand import autodiff as ad
from shared_data.byhand.autodiff import mlp

TAKES_PROJECT = False
EXPRS = ("mlp", "tanh")
DATASETS = ("mnist", "digits", "synthetic")  # the 28x28 grey ones the MLP takes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "train"), help="show the IR, or train")
    parser.add_argument("--expr", choices=EXPRS, default="mlp", help="show: which function")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                        help="show: 8 (so the text stays small); train: 128")  # fmt: skip
    parser.add_argument("--out", default="runs/autodiff", help="show: folder of the pictures")
    parser.add_argument("--data-dir", dest="data_dir", help="train: folder holding MNIST")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist", help="train: data")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)


def _tanh_graph() -> ad.Graph:
    """f(x, W, b) = mean(tanh(x @ W + b)), x [2, 3]: the function of docs/AUTODIFF.md."""
    fn = lambda x, w, b: ad.tanh(x @ w + b).mean()
    return ad.trace(fn, (2, 3), (3, 4), (4,), names=("x", "w", "b"), dtype=np.float32)


def show(args) -> int:
    batch = args.batch_size or 8
    params = mlp.init_params()
    if args.expr == "mlp":
        forward, wrt = mlp.loss_graph(params, batch), list(range(len(params)))
    else:
        forward, wrt = _tanh_graph(), [1, 2]
    backward = ad.grad(forward, wrt)
    simple = ad.simplify(backward)
    print(f"# forward ({len(forward)} nodes)\n{ad.to_text(forward)}\n")
    print(f"# grad, as generated ({len(backward)} nodes)\n{ad.to_text(backward, phases=True)}\n")
    print(f"# grad after dce, cse, fold ({len(simple)} nodes)")
    print(ad.to_text(simple, phases=True) + "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    step = ad.simplify(ad.sgd_step(forward, wrt, lr=0.1))
    source = ad.to_dot(step, f"toy engine: one SGD step of {args.expr} ({len(step)} nodes)")
    (out / "train_step.dot").write_text(source)
    (out / "train_step.txt").write_text(ad.to_text(step, phases=True) + "\n")
    from comparisons.ir.pictures import render_svg
    from comparisons.ir.step import draw_step, saved_markdown

    svg, how = render_svg(source)
    if svg is not None:
        (out / "train_step.svg").write_bytes(svg)
    print(f"wrote {out}/train_step.{{txt,dot{',svg' if svg else ''}}} ({how})")
    whole = toy_step_graph(step, wrt)
    title = f"toy engine: {args.expr} train step: forward, backward, update"
    drawn = draw_step(whole, out / "train_step.whole", title)
    table = saved_markdown(whole.summary())
    (out / "saved.md").write_text(table + "\n")
    print(f"\n# saved for the backward\n{table}\n")
    print(f"wrote {out}/train_step.whole.{{dot,svg}} and saved.md {drawn['error'] or ''}")
    return 0


def toy_step_graph(step: ad.Graph, wrt: list[int]):
    """The toy engine's phase-tagged step as a StepGraph (comparisons/ir/step.py), like JAX's."""
    from comparisons.ir.step import Saved, StepGraph, last_uses, saved_label
    from shared_data.byhand.autodiff.ir import type_name, var_names

    names, fresh = {}, var_names()
    nodes, edges, made = [], [], {}
    for i, v in enumerate(step.inputs):
        names[v] = next(fresh)
        label = step.input_names[i] if step.input_names else names[v]
        nodes.append({"id": names[v], "label": f"{label}\n{type_name(v)}", "kind": "input"})
        made[v] = (label, "parameter" if i in wrt else "input")
    phase_of = {v: None for v in step.inputs}
    saved: dict[str, Saved] = {}
    backward_ops, reads = [], {}
    for node in step.nodes:
        nid = names[node.out] = next(fresh)
        label = f"{node.op}\n{type_name(node.out)}"
        nodes.append({"id": nid, "label": label, "kind": "op", "phase": node.phase})
        phase_of[node.out], made[node.out] = node.phase, (node.op, "activation")
        if node.phase == "backward":
            backward_ops.append(nid)
            reads[nid] = set()
        for v in node.inputs:
            crossing = node.phase == "backward" and phase_of[v] in ("forward", None)
            if crossing and node.op != "const":
                what, kind = made[v]
                nbytes = v.size * v.dtype.itemsize
                s = saved.setdefault(
                    names[v], Saved(names[v], names[v], what, kind, type_name(v), nbytes)
                )
                reads[nid].add(names[v])
                edges.append((names[v], nid, saved_label(s)))
            else:
                edges.append((names[v], nid, None))
    for i, v in enumerate(step.outputs):
        nodes.append({"id": f"out{i}", "label": "loss" if i == 0 else f"new {i}", "kind": "output"})
        edges.append((names[v], f"out{i}", None))
    labels = {n["id"]: n["label"].split("\n", 1)[0] for n in nodes}
    for value, i in last_uses(backward_ops, reads).items():
        saved[value].last_use, saved[value].last_op = i, labels[backward_ops[i]]
    return StepGraph(nodes, edges, list(saved.values()), backward_ops)


def _load(dataset: str, data_dir, seed: int):
    """(train, test) of a 28x28 grey dataset as {"x": [N, 784], "label"}, normalised as ever."""
    from shared_data.datasets import load_image_dataset

    data = load_image_dataset(dataset, data_dir, seed=seed)  # (x/255 - MNIST mean) / std
    return tuple(
        {"x": split["image"].reshape(len(split["image"]), -1), "label": split["label"]}
        for split in (data.train, data.test)
    )


def train(args) -> int:
    batch = args.batch_size or 128
    train_arrays, test_arrays = _load(args.dataset, args.data_dir, args.seed)
    print(
        f"toy engine: MLP 784-256-128-10 on {args.dataset} ({len(train_arrays['x'])} train, "
        f"{len(test_arrays['x'])} test), SGD lr {args.lr}, batch {batch}, {args.epochs} epochs; "
        f"{platform.processor() or platform.machine()}"
    )
    start = time.perf_counter()

    def log(r):
        print(
            f"epoch {r['epoch']}: train loss {r['train_loss']:.4f}  "
            f"test accuracy {r['test_accuracy']:.4f}  {r['ms_per_step']:.2f} ms/step",
            flush=True,
        )

    _, records = mlp.train(
        train_arrays, test_arrays, epochs=args.epochs, batch_size=batch, lr=args.lr,
        seed=args.seed, log=log,
    )  # fmt: skip
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 0 if records else 1


def run(args) -> int:
    return show(args) if args.action == "show" else train(args)
