"""`roadmap bench`'s per-mode step builders: one ready-to-time step per (mode, step, batch).

jax_prepare builds the jax.jit train step or predict; torch_prepare the eager, torch.compile
or torch.jit.trace one. Each returns a Prepared (call, sync, setup time, FLOP counter) for
comparisons/bench.py to time; synthetic batches are converted here, outside the timed region.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

from comparisons.bench.peak import jax_sync, torch_flops, torch_sync_for, xla_flops


@dataclasses.dataclass
class Ctx:
    """What every measurement of one bench needs."""

    project: Any
    config: Any
    device: str
    steps: int
    warmup: int
    steps_per_epoch: int


@dataclasses.dataclass
class Prepared:
    """A ready step: `call()` runs it, `sync` waits for it, `flops()` counts one."""

    call: Any
    sync: Any
    setup_s: float
    flops: Any


def jax_prepare(ctx: Ctx, mode: str, what: str, batch_size: int) -> Prepared:
    """The jax.jit train step or predict of ctx.project at one batch size, ready to time."""
    import jax

    from jaxpath.common.loop import step_rng

    jmod = ctx.project.module("jax", "train")
    dev = jax.devices("gpu" if ctx.device == "cuda" else "cpu")[0]
    with jax.default_device(dev):
        state = jmod.create_state(ctx.config, ctx.steps_per_epoch)
        batch = jax.device_put(
            jmod.to_device(ctx.project.example_batch(batch_size, 0, config=ctx.config)), dev
        )
        rng = step_rng(ctx.config.seed, 0)
    box = {"state": state}  # train_step is pure: each call's new state feeds the next
    if what == "train":
        fn = jmod.train_step

        def call():
            box["state"], metrics = fn(box["state"], batch, rng)
            return box["state"], metrics

        return Prepared(call, jax_sync, 0.0, lambda: xla_flops(fn, box["state"], batch, rng))
    fn = jmod.predict if hasattr(jmod.predict, "lower") else jax.jit(jmod.predict)
    call = lambda: fn(box["state"], batch)
    return Prepared(call, jax_sync, 0.0, lambda: xla_flops(fn, box["state"], batch))


def _torch_compiled_train(tmod, state, batch, rng: int):
    """Compiled forward/loss/backward and optimizer step; seeding and scheduler stay eager."""
    import torch

    opt = state.optimizer
    for group in opt.param_groups:
        # A float LR is a constant to dynamo: every scheduler step would recompile the update.
        group["lr"] = torch.tensor(group["lr"], device=next(state.model.parameters()).device)

    def forward_backward(batch):
        loss, logits = tmod.loss_fn(state, batch)
        loss.backward()  # dynamo splits the graph here; AOTAutograd compiles the backward
        return loss.detach(), logits.detach()

    fwd_bwd = torch.compile(forward_backward, dynamic=False)
    # The scheduler wraps opt.step in a function dynamo will not trace; call the class's step.
    opt_step = torch.compile(lambda: type(opt).step(opt), dynamic=False)

    def call():
        torch.manual_seed(rng)  # eager: dynamo would specialise on the int
        state.model.train()
        opt.zero_grad(set_to_none=True)
        out = fwd_bwd(batch)
        opt_step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": it was
            state.scheduler.step()
        state.step += 1
        return out

    return call


class _ArgRecorder:
    """Stands in for state.model during one predict call, to learn the model's inputs."""

    def __init__(self, model):
        self.model, self.args = model, None

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, *args):
        self.args = args
        return self.model(*args)


def _torch_traced(tmod, state, batch):
    """The project's predict on a torch.jit.trace of its model."""
    import torch

    if not hasattr(torch.jit, "trace"):
        raise RuntimeError(f"torch.jit.trace unavailable in torch {torch.__version__}")
    recorder = _ArgRecorder(state.model)
    tmod.predict(dataclasses.replace(state, model=recorder), batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.x's deprecation notice; tracing still works
        with torch.no_grad():
            traced = torch.jit.trace(state.model.eval(), recorder.args)
    traced_state = dataclasses.replace(state, model=traced)
    return lambda: tmod.predict(traced_state, batch)


def torch_prepare(ctx: Ctx, mode: str, what: str, batch_size: int) -> Prepared:
    """The eager, compiled or traced torch step of ctx.project at one batch size, ready to time."""
    import torch

    from torchpath.common.loop import step_rng

    tmod = ctx.project.module("torch", "train")
    if mode == "torch-compile":
        torch._dynamo.reset()  # each batch size compiles from scratch: compile_s is its own
    batch = tmod.to_device(ctx.project.example_batch(batch_size, 0, config=ctx.config), ctx.device)
    rng = step_rng(ctx.config.seed, 0)

    def eager_step(state):
        return tmod.train_step(state, batch, rng) if what == "train" else tmod.predict(state, batch)

    def new_state():
        state = tmod.create_state(ctx.config, ctx.steps_per_epoch)
        state.model.to(ctx.device)  # in place: the optimizer keeps pointing at the parameters
        return state

    state = new_state()
    # Compiled and traced graphs do the FLOPs of the eager step they came from.
    flops = lambda: torch_flops(lambda: eager_step(new_state()))
    start = time.perf_counter()
    if mode == "torch-eager":
        call = lambda: eager_step(state)
    elif what == "train":  # torch-compile: torchscript has no train step
        call = _torch_compiled_train(tmod, state, batch, rng)
    elif mode == "torch-compile":
        compiled = dataclasses.replace(state, model=torch.compile(state.model, dynamic=False))
        call = lambda: tmod.predict(compiled, batch)
    else:
        call = _torch_traced(tmod, state, batch)
    return Prepared(call, torch_sync_for(ctx.device), time.perf_counter() - start, flops)
