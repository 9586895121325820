"""The torch training loop shared by every project; mirrors jaxpath/common/loop.py line by line.

`fit` owns what is not model-specific: data order, progress bar, logging, timing, checkpoints
and exact resume. A project's train.py supplies `train_step` and `eval_step`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from shared_data.batches import iterate_batches, num_batches, random_shift, train_val_split
from shared_data.configs.base import to_dict
from shared_data.runlog import CONFIG_FILE, SUMMARY_FILE, RunLogger, StepTimer, write_json
from torchpath.common.checkpoint import Checkpointer
from torchpath.common.state import num_params

FRAMEWORK = "torch"
SUM_KEYS = ("loss_sum", "correct", "count")


def to_device(batch: dict[str, np.ndarray], device: str | torch.device = "cpu"):
    """Move a numpy batch to `device`; the one place where NHWC images become NCHW."""
    out = {}
    for key, value in batch.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if key == "image" and tensor.ndim == 4:
            tensor = tensor.permute(0, 3, 1, 2).contiguous()  # PARITY: NHWC -> NCHW
        elif key == "label":
            tensor = tensor.long()  # PARITY: torch's losses want int64 class indices
        out[key] = tensor.to(device)
    return out


def step_rng(seed: int, step: int) -> int:
    """The seed of one training step: a pure function of (seed, step), so resume is exact."""
    # torch draws dropout masks from a global generator; train_step reseeds it from this.
    return (seed * 1_000_003 + step) % (2**63)


def zero_sums() -> dict[str, torch.Tensor]:
    """Metric accumulators at the start of an epoch."""
    return {k: torch.zeros((), dtype=torch.float32) for k in SUM_KEYS}


def means(sums: dict[str, Any]) -> dict[str, float]:
    """Loss and accuracy means from summed metrics."""
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / count, "accuracy": float(sums["correct"]) / count}


def evaluate(
    eval_step: Callable, state, arrays: dict[str, np.ndarray], batch_size: int
) -> dict[str, float]:
    """Mean loss and accuracy over every example of `arrays` (last batch padded and masked)."""
    sums = zero_sums()
    for batch in iterate_batches(arrays, batch_size, shuffle=False, remainder="pad"):
        metrics = eval_step(state, to_device(batch))
        sums = {k: sums[k] + metrics[k] for k in SUM_KEYS}
    return means(sums)


def fit(
    config,
    workdir: str | Path,
    state,
    train_step: Callable,
    eval_step: Callable,
    dataset,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `state` on `dataset` for `config.epochs`, evaluating each epoch; returns a summary."""
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

    checkpointer = Checkpointer(workdir / "checkpoints")
    meta: dict[str, Any] = {"history": [], "train_sums": None}
    resumed = resume and checkpointer.latest_step() is not None
    if resumed:
        state, meta = checkpointer.restore(state)
    step = int(state.step)
    write_json(workdir / CONFIG_FILE, {"framework": FRAMEWORK, **to_dict(config)})
    logger = RunLogger(workdir, resume_step=step if resumed else None)
    history: list[dict[str, Any]] = list(meta["history"])
    sums = (
        {k: torch.tensor(v, dtype=torch.float32) for k, v in meta["train_sums"].items()}
        if meta.get("train_sums")
        else zero_sums()
    )
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
            desc=f"{FRAMEWORK} epoch {epoch + 1}/{config.epochs}",
            unit="batch",
        )
        epoch_start, steady_start, steady_steps, paused = time.perf_counter(), None, 0, 0.0
        for batch in bar:
            step_start = time.perf_counter()
            metrics = train_step(state, to_device(batch), step_rng(config.seed, step))
            if timer.first_step_s is None:  # eager torch compiles nothing, but time it alike
                timer.record(time.perf_counter() - step_start, config.batch_size, first=True)
            else:
                steady_start = step_start if steady_start is None else steady_start
                steady_steps += 1
            sums = {k: sums[k] + metrics[k] for k in SUM_KEYS}
            step = state.step
            if step % config.log_every == 0:
                row = logger.log("train", step, epoch, **means(sums))
                bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['accuracy']:.4f}")
            at_epoch_end = step % steps_per_epoch == 0  # saved below, with the eval
            if config.checkpoint_every and step % config.checkpoint_every == 0 and not at_epoch_end:
                paused += save(epoch_done=False)
            if step >= total_steps:
                break
        if steady_start is not None:  # CPU ops are synchronous; on CUDA sync before timing
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - steady_start - paused
            timer.record(elapsed, steady_steps * config.batch_size, first=False)
        record = {
            "epoch": epoch + 1,
            "step": step,
            **{f"train_{k}": v for k, v in means(sums).items()},
            **{
                f"test_{k}": v
                for k, v in evaluate(eval_step, state, dataset.test, config.eval_batch_size).items()
            },
            "epoch_time_s": time.perf_counter() - epoch_start,
        }
        if val["label"].shape[0]:
            record.update(
                {
                    f"val_{k}": v
                    for k, v in evaluate(eval_step, state, val, config.eval_batch_size).items()
                }
            )
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
        sums = zero_sums()
        if progress:
            tqdm.write(
                f"{FRAMEWORK} epoch {epoch + 1}: test accuracy "
                f"{record['test_accuracy']:.4f}, loss {record['test_loss']:.4f}"
            )
    logger.close()
    checkpointer.close()
    summary = {
        "framework": FRAMEWORK,
        "history": history,
        "steps": step,
        "num_params": num_params(state.model),
        "first_step_s": timer.first_step_s,
        "train_examples_per_s": timer.examples_per_s,
        "resumed": resumed,
        "wall_s": time.perf_counter() - wall_start,
    }
    write_json(workdir / SUMMARY_FILE, summary)
    return summary
