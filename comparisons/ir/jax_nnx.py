"""A Flax NNX training step as `roadmap ir diff` reads a Linen one: pure, jitted, named.

An NNX step (`jaxpath/<project>/nnx_train.py`, selected by `--set style=nnx`) mutates live
module and optimizer objects under `nnx.jit`. The diff needs what a Linen step is: a pure
`step(state, batch, rng) -> (state, metrics)` to trace, lower and profile. `nnx.split` and
`nnx.merge` give it, as NNX's functional API does (the graph definition is fixed; the arrays
travel as a pytree).

Linen pushes each module's name on JAX's name stack while it runs (`CNN/conv2`), and XLA
keeps that stack as every instruction's `op_name`: that is how the diff attributes ops to
layers. NNX pushes nothing. `module_names` pushes the same names for the length of a trace:
each module call runs under `jax.named_scope` of its attribute path (the root's class name
first, as Linen's root scope), so the NNX step's jaxpr and HLO carry the stacks a Linen
step's carry and the rows line up with no NNX rule anywhere else. The model is not changed.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

import jax
from flax import nnx

_ACTIVE = threading.local()  # per thread: the paths of the module calls running now


def _modules(root: nnx.Module) -> dict[int, tuple[str, ...]]:
    """id(module) -> its attribute path in `root` (the root's is ())."""
    return {
        id(node): tuple(str(k) for k in path)
        for path, node in nnx.iter_graph(root)
        if isinstance(node, nnx.Module)
    }


@contextlib.contextmanager
def module_names(root: nnx.Module) -> Iterator[None]:
    """While open, each call of a module of `root`'s graph runs under its name's scope.

    The scope is the module's path relative to the innermost module call running (a parent
    that calls a grandchild directly, `self.block.dense(x)`, pushes `block/dense`); the root
    pushes its class name. The types' `__call__` are wrapped for the duration and restored.
    A call of a model of `root`'s class outside any module call is a root too: `nnx.jit`
    inside the step merges its own copy of the objects, whose paths are found then.
    """
    paths = _modules(root)
    root_type, root_name = type(root), type(root).__name__
    types = {type(node) for _, node in nnx.iter_graph(root) if isinstance(node, nnx.Module)}
    saved = {cls: cls.__dict__.get("__call__") for cls in types}

    def wrap(call):
        @functools.wraps(call)
        def named(self, *args, **kwargs):
            stack = getattr(_ACTIVE, "paths", [])
            if id(self) not in paths and not stack and type(self) is root_type:
                paths.update(_modules(self))
            path = paths.get(id(self))
            if path is None:  # a module of another graph: as it is
                return call(self, *args, **kwargs)
            outer = next((p for p in reversed(stack) if path[: len(p)] == p), ())
            name = "/".join(path[len(outer) :]) if path else root_name
            stack.append(path)
            _ACTIVE.paths = stack
            try:
                with jax.named_scope(name):
                    return call(self, *args, **kwargs)
            finally:
                stack.pop()

        return named

    try:
        for cls in types:
            cls.__call__ = wrap(cls.__call__)  # the inherited one, where the class has none
        yield
    finally:
        for cls, own in saved.items():
            if own is None:
                del cls.__call__
            else:
                cls.__call__ = own


def pure_step(state, train_step) -> tuple[Any, Any]:
    """(jitted `step(arrays, batch, rng) -> (arrays, metrics)`, arrays) of an NNX state.

    `state` has `model` and `optimizer` (jaxpath/mnist/nnx_train.NnxState); `train_step` is
    the project's `train_step(state, batch, rng) -> (state, metrics)`, which mutates them.
    The jitted function is named `nnx_train_step`, so the profiler's events of its module
    (`jit_nnx_train_step`) are found as the Linen step's are.
    """
    graphdef, arrays = nnx.split((state.model, state.optimizer))
    holder = type(state)

    def nnx_train_step(arrays, batch, rng):
        model, optimizer = nnx.merge(graphdef, arrays)
        view = holder.__new__(holder)  # the same record around the merged objects
        view.__dict__.update(vars(state) | {"model": model, "optimizer": optimizer})
        with module_names(model):
            _, metrics = train_step(view, batch, rng)
        return nnx.state((model, optimizer)), metrics

    return jax.jit(nnx_train_step), arrays
