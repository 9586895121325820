"""Three styles, one step: the MNIST CNN's training step in Flax Linen, Flax NNX and PyTorch.

`roadmap styles [--steps N] [--batch-size B] [--out DIR]` builds the pytorch/examples CNN
(the `default` MNIST config, dropout on) three ways from the same weights (torch's seeded
init, ported to Flax; NNX loads the Linen params) -- five rows: Linen plain and with the
state donated, NNX under nnx.jit and nnx.cached_partial, torch eager -- and, in one process,
times each one's
training step on one device-resident batch: the first call on its own (tracing and XLA
compilation for JAX, with the persistent compilation cache off so the compile is cold;
the first eager call for torch), then N steps, interleaved style by style so that a busy
machine slows all of them alike. It prints a markdown table and writes `styles.json` and
`styles.md` (versions, CPU, load) under `--out` (default runs/styles). docs/STYLES.md
explains the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TAKES_PROJECT = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=50, help="timed steps per style")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=64,
                        help="examples per step (one fixed random batch)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="weights, batch and dropout seed")
    parser.add_argument("--out", help="folder of styles.json and .md (default: <workdir>/styles)")


@dataclasses.dataclass
class Style:
    """One way of writing the step: `call()` runs one step and returns what to wait for."""

    name: str
    call: Callable[[], Any]
    sync: Callable[[Any], None]
    note: str


def build_styles(batch_size: int, seed: int) -> list[Style]:
    """Linen (plain and donated), NNX (nnx.jit and cached_partial) and torch, same weights."""
    import jax
    import jax.numpy as jnp
    import torch

    from comparisons.parity import make_pair
    from comparisons.registry import get_project
    from jaxpath.mnist import nnx_train
    from jaxpath.mnist import train as linen_train

    project = get_project("mnist")
    config = dataclasses.replace(project.config("default"), batch_size=batch_size, seed=seed)
    pair = make_pair(project, config, steps_per_epoch=1000)
    variables = {"params": pair.jax_state.params}
    rng = np.random.default_rng(seed)
    numpy_batch = {
        "image": rng.normal(size=(batch_size, 28, 28, 1)).astype(np.float32),
        "label": rng.integers(0, 10, batch_size).astype(np.int32),
    }
    jax_batch = linen_train.to_device(numpy_batch)
    torch_batch = pair.torch_train.to_device(numpy_batch)
    key = jax.random.key(seed)
    holder: dict[str, Any] = {
        "linen": pair.jax_state,
        # Its own copy of the weights: donation frees the buffers it is given.
        "donated": linen_train.create_state(config, 1000, jax.tree.map(jnp.copy, variables)),
    }
    donated_step = jax.jit(linen_train.train_step.__wrapped__, donate_argnums=0)
    nnx_state = nnx_train.create_state(config, 1000, variables)
    cached_state = nnx_train.create_state(config, 1000, variables)
    cached = nnx_train.cached_train_step(cached_state)

    def linen(name: str, step: Callable) -> Callable[[], Any]:
        def call():
            holder[name], metrics = step(holder[name], jax_batch, key)
            return metrics

        return call

    def torch_call():
        state, metrics = pair.torch_train.train_step(pair.torch_state, torch_batch, seed)
        return metrics

    jax_sync = jax.block_until_ready
    torch_sync = lambda _: None  # noqa: E731 - CPU kernels are done when the call returns
    torch.manual_seed(seed)
    return [
        Style("Flax Linen, jax.jit", linen("linen", linen_train.train_step), jax_sync,
              "pure step: new state out, old state kept"),
        Style("Flax Linen, jax.jit, donated", linen("donated", donated_step), jax_sync,
              "donate_argnums=0: XLA writes the new state into the old buffers"),
        Style("Flax NNX, nnx.jit", lambda: nnx_train.train_step(nnx_state, jax_batch, key)[1],
              jax_sync, "objects split/merged around the jitted function on every call"),
        Style("Flax NNX, nnx.cached_partial", lambda: cached(jax_batch, key), jax_sync,
              "the split/merge walk cached once for the loop"),
        Style("PyTorch, eager", torch_call, torch_sync,
              "imperative: autograd tape, optimizer updates in place"),
    ]  # fmt: skip


def measure(steps: int, batch_size: int, seed: int = 0) -> dict[str, Any]:
    """First-call and per-step times of every style, measured in this process."""
    import jax

    from comparisons.bench.peak import machine, summarize_ms, versions
    from comparisons.env import pin_cpu_fp32

    pin_cpu_fp32()
    styles = build_styles(batch_size, seed)
    first, dispatch, total = {}, {s.name: [] for s in styles}, {s.name: [] for s in styles}
    # Cold compiles: a persistent-cache hit would time a file read, not the compiler.
    cache_was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        for style in styles:
            start = time.perf_counter()
            style.sync(style.call())
            first[style.name] = time.perf_counter() - start
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was)
    for _ in range(steps):  # interleaved: load from other processes falls on every style
        for style in styles:
            start = time.perf_counter()
            out = style.call()
            returned = time.perf_counter()
            style.sync(out)
            dispatch[style.name].append(returned - start)
            total[style.name].append(time.perf_counter() - start)
    rows = []
    for style in styles:
        step = summarize_ms(total[style.name])
        rows.append(
            {
                "style": style.name,
                "first_call_s": first[style.name],
                "step_ms": step["median_ms"],
                "step_p10_ms": step["p10_ms"],
                "step_p90_ms": step["p90_ms"],
                "dispatch_ms": summarize_ms(dispatch[style.name])["median_ms"],
                "examples_per_s": batch_size / (step["median_ms"] / 1e3),
                "note": style.note,
            }
        )
    return {
        "model": "mnist cnn (pytorch/examples), dropout on, Adam one-cycle",
        "batch_size": batch_size,
        "steps": steps,
        "jax_compilation_cache": "off (cold compiles)",
        "rows": rows,
        "machine": machine(),
        "versions": versions(),
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table, with the settings it was measured under."""
    lines = [
        f"MNIST CNN train step, batch {result['batch_size']}, median of {result['steps']} "
        f"steps; first call = trace + compile (JAX, cache off) or first eager call (torch).",
        "",
        "| style | first call s | step ms (p10-p90) | host dispatch ms | examples/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['style']} | {row['first_call_s']:.2f} | {row['step_ms']:.2f} "
            f"({row['step_p10_ms']:.2f}-{row['step_p90_ms']:.2f}) | {row['dispatch_ms']:.2f} "
            f"| {row['examples_per_s']:,.0f} |"
        )
    info, ver = result["machine"], result["versions"]
    lines += [
        "",
        f"{info['processor']}, {info['cpu_count']} cores, load {info['load_avg_1m'] or 0:.2f}; "
        + ", ".join(f"{k} {v}" for k, v in ver.items()),
    ]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    """`roadmap styles`: measure, print the table, write styles.json and styles.md."""
    if args.steps < 1 or args.batch_size < 1:
        print("roadmap styles: error: --steps and --batch-size want a number >= 1")
        return 2
    result = measure(args.steps, args.batch_size, args.seed)
    out = Path(args.out) if args.out else Path(args.workdir) / "styles"
    out.mkdir(parents=True, exist_ok=True)
    (out / "styles.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = to_markdown(result)
    (out / "styles.md").write_text(table, encoding="utf-8")
    print(table + f"\nwrote {out}/styles.json and styles.md")
    return 0
