"""Which JAX program a side of `roadmap ir diff` traces: the step a config and run options name.

* the project's Linen `train_step` (jaxpath/<project>/train.py), jitted: the default;
* its Flax NNX step (`style=nnx`: jaxpath/<project>/nnx_train.py), made pure by
  comparisons/ir/jax_nnx.py;
* the Linen step data-parallel over N devices (`devices=N parallel=pmap|sharding|shard_map`,
  run options rather than config fields: jaxpath/common/parallel.py's forms). On the CPU,
  N devices need XLA_FLAGS before JAX starts; `roadmap ir diff` sets it from --a/--b.

Each is a `Program`: one function with `.lower` and the arguments it is traced, compiled
and profiled with, so jax_layers.jax_side reads them all alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from jaxpath.common.loop import step_rng

RUN_OPTIONS = ("devices", "parallel")  # --a/--b keys that are not config fields


@dataclasses.dataclass
class Program:
    """A traceable step: `fn(*args) -> (state, metrics)`, `fn.lower(*args)` works."""

    fn: Callable
    args: tuple
    root: str  # the model's class name: the root of the name stack
    layers: list[str]  # parameterised module paths, forward order
    traced: str  # what it is, for the notes
    notes: list[str] = dataclasses.field(default_factory=list)


def run_options(items: dict[str, str], where: str = "--a/--b") -> dict[str, Any]:
    """{devices: int, parallel: form or None} from KEY=VALUE strings, checked."""
    from jaxpath.common.parallel import FORMS

    out: dict[str, Any] = {"devices": 1, "parallel": None}
    if "devices" in items:
        try:
            out["devices"] = int(items["devices"])
        except ValueError:
            out["devices"] = 0
        if out["devices"] < 1:
            raise ValueError(f"{where}: devices must be an integer >= 1, got {items['devices']!r}")
    if "parallel" in items:
        if items["parallel"] not in FORMS:
            raise ValueError(
                f"{where}: parallel must be one of {', '.join(FORMS)}, got {items['parallel']!r}"
            )
        out["parallel"] = items["parallel"]
    elif out["devices"] > 1:
        out["parallel"] = "sharding"  # as `roadmap run --devices N` without --parallel
    return out


def jax_program(project, config, batch_np, run: dict[str, Any] | None = None) -> Program:
    """The step `config` and `run` ({devices, parallel}) name, with its arguments."""
    train = project.module("jax", "train")
    batch, rng = train.to_device(batch_np), step_rng(config.seed, 0)
    run = run or {"devices": 1, "parallel": None}
    nnx = getattr(config, "style", "linen") == "nnx"
    if nnx:  # jaxpath/<project>/nnx_train.py
        if run["parallel"]:
            raise ValueError("--a/--b: devices/parallel trace the Linen step; drop style=nnx")
        from comparisons.ir.jax_nnx import pure_step

        nnx_train = project.module("jax", "nnx_train")
        state = nnx_train.create_state(config, 100)
        step, arrays = pure_step(state, nnx_train.train_step)
        traced = f"{nnx_train.__name__}.train_step (made pure: comparisons/ir/jax_nnx.py)"
        root, layers = type(state.model).__name__, layer_names(state.params)
        return Program(step, (arrays, batch, rng), root, layers, traced)
    state = train.create_state(config, 100)
    root = _root_name(state) or type(train.create_model(config)).__name__
    layers = layer_names(state.params)
    traced = f"{train.__name__}.train_step"
    if not run["parallel"]:
        return Program(train.train_step, (state, batch, rng), root, layers, traced)
    from jaxpath.common.parallel import DataParallel

    form, devices = run["parallel"], run["devices"]
    data = DataParallel(form, devices)
    data.check_batch_size(len(next(iter(batch_np.values()))), "--batch-size")
    step = data.train_step(train.train_step)
    traced += f", {form} over {devices} devices (jaxpath/common/parallel.py)"
    if form == "pmap":  # the pmap'd function itself, on the [devices, batch/devices] batch
        program = Program(step.mapped, (state, step.split(batch), rng), root, layers, traced)
    else:
        args = (data.replicate(state), data.to_device(batch_np), rng)
        program = Program(step, args, root, layers, traced)
    if form != "sharding":  # the body runs per device: its shapes are one device's
        program.notes.append(
            f"{form}: the jaxpr is the per-device body (batch/{devices} rows a device), so its "
            "FLOPs and bytes are one device's; XLA's SPMD 'sharding' form traces the global step"
        )
    return program


def layer_names(params) -> list[str]:
    """Module paths that own parameters ('conv1', 'block/dense'), in parameter-tree order."""
    out: dict[str, None] = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        out["/".join(keys[:-1])] = None
    return list(out)


def _root_name(state) -> str:
    module = getattr(state.apply_fn, "__self__", None)
    return type(module).__name__ if module is not None else ""


def compiled_text(program: Program) -> str:
    """The optimized HLO of the program (one XLA compile)."""
    return program.fn.lower(*program.args).compile().as_text()


def make_jaxpr(program: Program):
    """The closed jaxpr of the whole step."""
    return jax.make_jaxpr(program.fn)(*program.args)
