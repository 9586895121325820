"""The framework-neutral training driver behind jaxpath/common/loop.py and torchpath's twin.

It owns everything that does not depend on the framework: data order, progress bar,
logging, timing, checkpoint cadence and exact resume. Each framework passes a `Framework`
of small functions (move a batch to the device, derive a step's randomness, wait for
asynchronous work, ...), so the two loops cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .batches import iterate_batches, num_batches, random_shift, train_val_split
from .configs.base import ConfigError, to_dict
from .runlog import CONFIG_FILE, SUMMARY_FILE, RunLogger, StepTimer, write_json

SUM_KEYS = ("loss_sum", "correct", "count")


@dataclasses.dataclass(frozen=True)
class Framework:
    """What the driver needs from a framework; jaxpath and torchpath each define one."""

    name: str
    to_device: Callable[[dict], Any]  # numpy batch -> framework batch
    step_rng: Callable[[int, int], Any]  # (seed, step) -> the step's randomness
    zero_sums: Callable[[], dict]  # metric accumulators of an empty epoch
    sums_from_floats: Callable[[dict], dict]  # accumulators restored from a checkpoint
    block: Callable[[Any], Any]  # wait until asynchronous work on this value is done
    num_params: Callable[[Any], int]  # trainable scalars of a state
    checkpointer: Callable[[Path], Any]  # folder -> object with save/restore/latest_step/close


# Fields that may change between a run and its resumption: they do not change the numbers.
RESUMABLE_CHANGES = frozenset({"data_dir", "download", "log_every", "checkpoint_every"})


def check_resume_config(path: Path, config) -> None:
    """Refuse to resume a run under a config that would compute something else."""
    if not path.exists():
        return
    stored = json.loads(path.read_text(encoding="utf-8"))
    current = to_dict(config)
    changed = sorted(
        k
        for k, v in current.items()
        if k not in RESUMABLE_CHANGES and k in stored and json.dumps(stored[k]) != json.dumps(v)
    )
    if changed:
        details = ", ".join(f"{k}: {stored[k]!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(
            f"cannot resume {path.parent} with a different config ({details}); "
            "repeat the original flags, or start a new run"
        )


def means(sums: dict[str, Any]) -> dict[str, float]:
    """Loss and accuracy means from summed metrics."""
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / count, "accuracy": float(sums["correct"]) / count}


def evaluate(fw: Framework, eval_step: Callable, state, arrays: dict, batch_size: int) -> dict:
    """Mean loss and accuracy over every example of `arrays` (last batch padded and masked)."""
    sums = fw.zero_sums()
    for batch in iterate_batches(arrays, batch_size, shuffle=False, remainder="pad"):
        metrics = eval_step(state, fw.to_device(batch))
        sums = {k: sums[k] + metrics[k] for k in SUM_KEYS}
    return means(sums)


def fit(
    fw: Framework,
    config,
    workdir: str | Path,
    state,
    train_step: Callable,
    eval_step: Callable,
    dataset,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train `state` for `config.epochs`, evaluating each epoch; returns (and writes) a summary."""
    wall_start = time.perf_counter()
    workdir = Path(workdir)
    train, val = train_val_split(dataset.train, config.val_size, config.seed)
    n_train = len(train["label"])
    steps_per_epoch = num_batches(n_train, config.batch_size, "drop")
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {n_train} training examples")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    checkpointer = fw.checkpointer(workdir / "checkpoints")
    meta: dict[str, Any] = {"history": [], "train_sums": None}
    if not resume and checkpointer.latest_step() is not None:
        # Mixing a new run into an old run's checkpoints would make a later resume lie.
        raise ConfigError(
            f"{workdir} already holds a run (checkpoints up to step "
            f"{checkpointer.latest_step()}); continue it with --resume or "
            "start a new one with another --run-id / workdir"
        )
    resumed = resume and checkpointer.latest_step() is not None
    if resumed:
        check_resume_config(workdir / CONFIG_FILE, config)
        state, meta = checkpointer.restore(state)
        tqdm.write(
            f"{fw.name}: resumed from {checkpointer.directory} at step {checkpointer.latest_step()}"
        )
    step = checkpointer.latest_step() if resumed else 0
    write_json(workdir / CONFIG_FILE, {"framework": fw.name, **to_dict(config)})
    logger = RunLogger(workdir, resume_step=step if resumed else None)
    history: list[dict[str, Any]] = list(meta["history"])
    sums = fw.sums_from_floats(meta["train_sums"]) if meta.get("train_sums") else fw.zero_sums()
    timer, augment = StepTimer(), (random_shift if config.augment else None)

    def save(epoch_done: bool) -> float:
        start = time.perf_counter()
        train_sums = None if epoch_done else {k: float(v) for k, v in sums.items()}
        checkpointer.save(step, state, {"history": history, "train_sums": train_sums})
        return time.perf_counter() - start

    for epoch in range(step // steps_per_epoch, config.epochs):
        if step >= total_steps:
            break
        start_batch = step - epoch * steps_per_epoch
        batches = iterate_batches(
            train,
            config.batch_size,
            seed=config.seed,
            epoch=epoch,
            remainder="drop",
            start_batch=start_batch,
            augment=augment,
        )
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            initial=start_batch,
            disable=not progress,
            desc=f"{fw.name} epoch {epoch + 1}/{config.epochs}",
            unit="batch",
        )
        epoch_start, steady_start, steady_steps, paused = time.perf_counter(), None, 0, 0.0
        for batch in bar:
            step_start = time.perf_counter()
            state, metrics = train_step(state, fw.to_device(batch), fw.step_rng(config.seed, step))
            if timer.first_step_s is None:  # the first call compiles under jit: time it alone
                fw.block(metrics)
                timer.record(time.perf_counter() - step_start, config.batch_size, first=True)
            else:
                steady_start = step_start if steady_start is None else steady_start
                steady_steps += 1
            sums = {k: sums[k] + metrics[k] for k in SUM_KEYS}
            step += 1
            if step % config.log_every == 0:
                row = logger.log("train", step, epoch, **means(sums))
                bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['accuracy']:.4f}")
            mid_epoch = step % steps_per_epoch != 0  # the epoch-end save comes with the eval
            mid_epoch = mid_epoch and step < total_steps  # a max_steps stop is saved below
            if config.checkpoint_every and step % config.checkpoint_every == 0 and mid_epoch:
                paused += save(epoch_done=False)
            if step >= total_steps:
                break
        fw.block(sums)
        if steady_start is not None:
            elapsed = time.perf_counter() - steady_start - paused
            timer.record(elapsed, steady_steps * config.batch_size, first=False)
        record = {
            "epoch": epoch + 1,
            "step": step,
            **{f"train_{k}": v for k, v in means(sums).items()},
        }
        for split, arrays in (("test", dataset.test), ("val", val)):
            if arrays["label"].shape[0]:
                scores = evaluate(fw, eval_step, state, arrays, config.eval_batch_size)
                record.update({f"{split}_{k}": v for k, v in scores.items()})
        record["epoch_time_s"] = time.perf_counter() - epoch_start
        history.append(record)
        for split in ("train", "val", "test"):  # epoch means; "train" rows are running means
            if f"{split}_loss" in record:
                logger.log(
                    "train_epoch" if split == "train" else split,
                    step,
                    epoch + 1,
                    loss=record[f"{split}_loss"],
                    accuracy=record[f"{split}_accuracy"],
                )
        save(epoch_done=step % steps_per_epoch == 0)  # max_steps may stop mid-epoch
        sums = fw.zero_sums()
        if progress:
            tqdm.write(
                f"{fw.name} epoch {epoch + 1}: test accuracy "
                f"{record['test_accuracy']:.4f}, loss {record['test_loss']:.4f}"
            )
    logger.close()
    checkpointer.close()
    summary = {
        "framework": fw.name,
        "history": history,
        "steps": step,
        "num_params": fw.num_params(state),
        "first_step_s": timer.first_step_s,
        "train_examples_per_s": timer.examples_per_s,
        "resumed": resumed,
        "wall_s": time.perf_counter() - wall_start,
    }
    write_json(workdir / SUMMARY_FILE, summary)
    return summary
