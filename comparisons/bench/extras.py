"""`roadmap bench --per-example` and `--toy`: two extra tables, timed like the main sweep.

--per-example: per-example gradients of the project's model (jaxpath|torchpath/<project>/
per_example.py, dropout off) four ways: jax.jit(jax.vmap(jax.grad)), a Python loop over the
jitted one-example jax.grad (N dispatches of one compiled program, not lax.map),
torch.func.vmap(grad) over functional_call (eager), and a Python loop of torch autograd
backward passes. --toy: one plain-SGD step of the MNIST MLP on the toy autodiff engine
(shared_data/byhand/autodiff: a graph of NumPy calls run by an interpreter) beside the jax.jit
and torch eager train steps of the same MLP under plain SGD. Tables, not races: medians and
ratios, and no assertion on a time anywhere.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from comparisons.bench.modes import Ctx, jax_prepare, torch_prepare
from comparisons.bench.peak import jax_sync, summarize_ms, time_calls, torch_sync_for
from shared_data.configs.base import override

# key: (framework, label, function of the per_example module)
PER_EXAMPLE_WAYS = {
    "jax-vmap": ("jax", "jax.jit(vmap(grad))", "per_example_grads"),
    "jax-loop": ("jax", "loop of jitted grad", "per_example_grads_loop"),
    "torch-vmap": ("torch", "torch.func vmap(grad)", "per_example_grads"),
    "torch-loop": ("torch", "loop of backward", "per_example_grads_loop"),
}
# (numerator, denominator): above 1 means the numerator is slower
PER_EXAMPLE_RATIOS = (
    ("jax-vmap", "torch-vmap"),
    ("jax-loop", "torch-loop"),
    ("jax-loop", "jax-vmap"),
    ("torch-loop", "torch-vmap"),
)
TOY_WAYS = {"toy": "toy engine (NumPy)", "jax": "jax.jit", "torch-eager": "torch eager"}
TOY_PROJECTS = ("mnist",)  # the toy MLP reads 28x28 grey images, 10 classes
MAX_GRAD_BYTES = 2 * 2**30  # per-example gradients held by one way at one batch size


def add_arguments(parser) -> None:
    """--per-example and --toy, on the bench's parser."""
    parser.add_argument("--per-example", dest="per_example", action="store_true",
                        help="also time per-example gradients: jax vmap, jax loop, "
                        "torch.func vmap, torch loop")  # fmt: skip
    parser.add_argument("--toy", action="store_true", help="also time the toy autodiff "
                        "engine's MLP SGD step beside jax.jit and torch eager")  # fmt: skip


def count(batch_sizes, per_example: bool, toy: bool) -> int:
    """How many measurements the extra tables take (for the progress bar)."""
    return len(batch_sizes) * (len(PER_EXAMPLE_WAYS) * per_example + len(TOY_WAYS) * toy)


def rows(result: dict[str, Any]) -> list[dict]:
    """Every row of the extra tables of a bench result."""
    return [r for key in ("per_example", "toy") for r in (result.get(key) or {}).get("rows", [])]


def _timed(call, sync, ctx: Ctx, setup_s: float) -> dict[str, Any]:
    """compile_s (setup + first call) and the step-time spread after warm-up."""
    start = time.perf_counter()
    sync(call())
    compile_s = setup_s + time.perf_counter() - start
    time_calls(call, sync, ctx.warmup)
    return {"compile_s": compile_s, **summarize_ms(time_calls(call, sync, ctx.steps))}


def _row(key: str, label: str, framework: str, batch_size: int, timing: dict) -> dict:
    median_s = timing["median_ms"] / 1e3
    return {"way": key, "label": label, "framework": framework, "batch_size": batch_size,
            **timing, "examples_per_s": batch_size / median_s}  # fmt: skip


def _ratios(table: list[dict], pairs) -> list[dict]:
    by_key = {(r["way"], r["batch_size"]): r for r in table}
    out = []
    for bs in sorted({r["batch_size"] for r in table}):
        for num, den in pairs:
            a, b = by_key.get((num, bs)), by_key.get((den, bs))
            if a and b:
                out.append({"batch_size": bs, "numerator": num, "denominator": den,
                            "ratio": a["median_ms"] / b["median_ms"]})  # fmt: skip
    return out


def _per_example_call(ctx: Ctx, way: str, batch_size: int):
    """(call, sync, setup seconds) of one way at one batch size, on synthetic data."""
    framework, _, name = PER_EXAMPLE_WAYS[way]
    fn = getattr(ctx.project.module(framework, "per_example"), name)
    train = ctx.project.module(framework, "train")
    numpy_batch = ctx.project.example_batch(batch_size, 0, config=ctx.config)
    start = time.perf_counter()
    if framework == "jax":
        import jax

        dev = jax.devices("gpu" if ctx.device == "cuda" else "cpu")[0]
        with jax.default_device(dev):
            state = train.create_state(ctx.config, ctx.steps_per_epoch)
            batch = jax.device_put(train.to_device(numpy_batch), dev)
        return (lambda: fn(state, batch)), jax_sync, time.perf_counter() - start
    state = train.create_state(ctx.config, ctx.steps_per_epoch)
    state.model.to(ctx.device)
    batch = train.to_device(numpy_batch, ctx.device)
    return (lambda: fn(state, batch)), torch_sync_for(ctx.device), time.perf_counter() - start


def _grad_bytes(ctx: Ctx, batch_size: int) -> int:
    state = ctx.project.module("torch", "train").create_state(ctx.config, ctx.steps_per_epoch)
    return 4 * batch_size * sum(p.numel() for p in state.model.parameters())


def bench_per_example(ctx: Ctx, batch_sizes, errors: dict, bar=None) -> dict[str, Any]:
    """Per-example gradient step times of every way at every batch size, and their ratios."""
    done = []
    for bs in batch_sizes:
        need = _grad_bytes(ctx, bs)
        for way, (framework, label, _) in PER_EXAMPLE_WAYS.items():
            if bar is not None:
                bar.set_description(f"per-example {label} bs{bs}")
            try:
                if need > MAX_GRAD_BYTES:
                    raise MemoryError(f"{need / 2**30:.1f} GiB of gradients (limit 2 GiB)")
                call, sync, setup_s = _per_example_call(ctx, way, bs)
                done.append(_row(way, label, framework, bs, _timed(call, sync, ctx, setup_s)))
            except Exception as err:  # named in bench.json; the other ways still run
                errors[f"per-example/{way}/bs{bs}"] = _describe(err, f"per-example {label}")
            if bar is not None:
                bar.update()
    return {"model": ctx.config.model, "rows": done, "ratios": _ratios(done, PER_EXAMPLE_RATIOS)}


def toy_config(config: Any) -> Any:
    """The config's MLP under the toy engine's optimizer: plain SGD, constant rate, no decay."""
    changes = {"model": "mlp", "optimizer": "sgd", "momentum": 0.0, "nesterov": False}
    return override(config, changes | {"schedule": "constant", "weight_decay": 0.0})


def _toy_call(config: Any, batch: dict[str, np.ndarray]):
    """The toy engine's SGD step of the MLP: (call, sync, seconds to trace, grad, simplify)."""
    from shared_data.byhand.autodiff import evaluate, mlp

    if len(config.hidden) != 2:
        raise ValueError(f"the toy MLP has two hidden layers, config.hidden={config.hidden}")
    size = len(batch["label"])
    x = np.ascontiguousarray(batch["image"].reshape(size, -1), dtype=np.float32)
    labels = batch["label"].astype(np.int32)
    params = mlp.init_params((x.shape[1], *config.hidden, 10), seed=config.seed)
    start = time.perf_counter()
    step = mlp.step_graph(params, size, config.lr)  # forward, backward, update; passes run
    setup_s = time.perf_counter() - start
    box = {"params": params}

    def call():
        loss, *box["params"] = evaluate(step, *box["params"], x, labels)
        return loss

    return call, lambda out: None, setup_s


def bench_toy(ctx: Ctx, batch_sizes, errors: dict, bar=None) -> dict[str, Any]:
    """The toy engine's MLP SGD step against jax.jit and torch eager, same MLP and batch."""
    if ctx.project.name not in TOY_PROJECTS:
        errors["toy"] = f"toy engine: an MNIST MLP only, not project {ctx.project.name!r}"
        return {"config": {}, "rows": [], "ratios": []}
    toy_ctx = dataclasses.replace(ctx, config=toy_config(ctx.config))
    done = []
    for bs in batch_sizes:
        for way, label in TOY_WAYS.items():
            if bar is not None:
                bar.set_description(f"toy {label} bs{bs}")
            try:
                if way == "toy":
                    batch = ctx.project.example_batch(bs, 0, config=toy_ctx.config)
                    call, sync, setup_s = _toy_call(toy_ctx.config, batch)
                else:
                    prepare = jax_prepare if way == "jax" else torch_prepare
                    prep = prepare(toy_ctx, way, "train", bs)
                    call, sync, setup_s = prep.call, prep.sync, prep.setup_s
                framework = "numpy" if way == "toy" else way.split("-")[0]
                done.append(_row(way, label, framework, bs, _timed(call, sync, toy_ctx, setup_s)))
            except Exception as err:
                errors[f"toy/{way}/bs{bs}"] = _describe(err, label)
            if bar is not None:
                bar.update()
    pairs = (("toy", "jax"), ("toy", "torch-eager"), ("jax", "torch-eager"))
    cfg = toy_ctx.config
    about = {"model": "mlp", "hidden": list(cfg.hidden), "optimizer": "sgd", "lr": cfg.lr}
    return {"config": about, "rows": done, "ratios": _ratios(done, pairs)}


def _describe(err: BaseException, what: str) -> str:
    lines = str(err).strip().splitlines() or [""]
    return f"{what} failed: {type(err).__name__}: {lines[0][:300]}"


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _table(table: list[dict], ratios: list[dict], labels: dict[str, str], title: str) -> list[str]:
    lines = [title, "", "| way | batch | compile s | median ms | p10–p90 ms | examples/s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in table:
        lines.append(
            f"| {r['label']} | {r['batch_size']} | {_fmt(r['compile_s'], '.2f')} | "
            f"{r['median_ms']:.2f} | {r['p10_ms']:.2f}–{r['p90_ms']:.2f} | "
            f"{r['examples_per_s']:,.0f} |"
        )
    if ratios:
        lines += ["", "| batch | median ms of / median ms of | ratio |", "|---|---|---|"]
        for q in ratios:
            name = f"{labels[q['numerator']]} / {labels[q['denominator']]}"
            lines.append(f"| {q['batch_size']} | {name} | {q['ratio']:.2f} |")
    return lines


def to_markdown(result: dict[str, Any]) -> str:
    """The per-example and toy tables of a bench result (empty when neither ran)."""
    lines: list[str] = []
    per_example = result.get("per_example") or {}
    if per_example.get("rows"):
        labels = {k: v[1] for k, v in PER_EXAMPLE_WAYS.items()}
        title = (
            f"Per-example gradients of the {per_example['model']} (dropout off), one gradient "
            "per example; the loop's first call compiles one example's program."
        )
        lines += _table(per_example["rows"], per_example["ratios"], labels, title)
    toy = result.get("toy") or {}
    if toy.get("rows"):
        c = toy["config"]
        title = (
            f"Toy engine: one plain-SGD step (lr {c['lr']}) of the MLP "
            f"784-{'-'.join(map(str, c['hidden']))}-10; compile = tracing, grad and passes "
            "(toy) or the first call; the jax/torch steps also return metric sums."
        )
        lines += ([""] if lines else []) + _table(toy["rows"], toy["ratios"], TOY_WAYS, title)
    return "\n".join(lines)
