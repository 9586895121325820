"""The framework-neutral training driver behind jaxpath/common/loop.py and torchpath's twin.

It owns everything that does not depend on the framework or the project: data order,
augmentation, progress bar, logging, timing, checkpoint cadence and exact resume. Each
framework passes a `Framework` of small functions (move a batch to the device, derive a
step's randomness, wait for asynchronous work, ...); each project passes its `Task`
(shared_data/tasks.py: which sums its steps return, how they reduce, its headline metric,
augmentation and host-side evaluator). No project is named here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .batches import iterate_batches, num_batches, num_examples, prefetch, train_val_split
from .configs.base import ConfigError, to_dict
from .runlog import CONFIG_FILE, SUMMARY_FILE, RunLogger, StepTimer, write_json
from .tasks import Task


@dataclasses.dataclass(frozen=True)
class Framework:
    """What the driver needs from a framework; jaxpath and torchpath each define one."""

    name: str
    to_device: Callable[[dict], Any]  # numpy batch -> framework batch
    step_rng: Callable[[int, int], Any]  # (seed, step) -> the step's randomness
    zero_sums: Callable[[tuple[str, ...]], dict]  # accumulators (these keys) of an empty epoch
    add_sums: Callable[[dict, dict], dict]  # accumulators + one step's sums (task.sums keys)
    sums_from_floats: Callable[[dict], dict]  # accumulators restored from a checkpoint
    block: Callable[[Any], Any]  # wait until asynchronous work on this value is done
    num_params: Callable[[Any], int]  # trainable scalars of a state
    checkpointer: Callable[[Path], Any]  # folder -> save/restore/steps/latest_step/set_aside
    to_numpy: Callable[[Any], Any] = None  # framework outputs -> numpy (host-side evaluators)
    learning_rate: Callable[[Any], float | None] = None  # a state's current learning rate


# Fields that may change between a run and its resumption: they do not change the numbers.
# max_steps only moves the stopping point: a run stopped early continues with a larger one.
RESUMABLE_CHANGES = frozenset(
    {"data_dir", "download", "log_every", "checkpoint_every", "max_steps"}
)


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


class Evaluated(Exception):  # noqa: N818 - an outcome, not a failure
    """What `fit` raises under `evaluate_only()`: `result` = {"step", "test", "val", ...}."""

    def __init__(self, result: dict):
        super().__init__(f"evaluated the checkpoint of step {result['step']}")
        self.result = result


_EVALUATE_ONLY: ContextVar[bool] = ContextVar("roadmap_evaluate_only", default=False)


@contextlib.contextmanager
def evaluate_only() -> Iterator[None]:
    """Within it, `fit` trains nothing: it evaluates the run's newest checkpoint and raises
    `Evaluated` with the scores (`roadmap evaluate`, comparisons/evaluate.py).

    Each project's `train_and_evaluate` builds its data, vocabulary, task and state as for a
    resumed run, so one command evaluates any project's run under changed evaluation
    settings (seq2seq: `--set decode=beam`) without a line of project code; the exception
    skips whatever a project does with a finished summary.
    """
    token = _EVALUATE_ONLY.set(True)
    try:
        yield
    finally:
        _EVALUATE_ONLY.reset(token)


def _evaluate_checkpoint(fw, task, config, workdir, checkpointer, state, splits, steps, predict):
    """Raise Evaluated with every split's scores of the newest readable checkpoint."""
    try:
        if checkpointer.latest_step() is None:
            raise ConfigError(f"{workdir} holds no checkpoint to evaluate; train the run first")
        state, _, step = restore_readable(fw, checkpointer, state, set_aside=False)
    finally:
        checkpointer.close()
    result: dict[str, Any] = {"framework": fw.name, "step": step}
    eval_step, final_eval_step = steps
    for split, arrays in splits:
        if num_examples(arrays):
            start = time.perf_counter()
            result[split] = evaluate(
                fw, task, final_eval_step or eval_step, state, arrays, config.eval_batch_size,
                predict,
            )  # fmt: skip
            result[f"{split}_time_s"] = time.perf_counter() - start
    raise Evaluated(result)


def batch_shape(batch: dict[str, Any]) -> tuple:
    """The shapes of a batch's fields: a new one makes jax.jit compile the step again."""
    return tuple(sorted((key, np.shape(value)) for key, value in batch.items()))


def train_steps_per_epoch(config, dataset) -> int:
    """Optimizer steps in one epoch of `dataset.train` (validation held out, remainder dropped)."""
    n_train = max(num_examples(dataset.train) - config.val_size, 0)
    return num_batches(n_train, config.batch_size, "drop")


def evaluate(
    fw: Framework,
    task: Task,
    eval_step: Callable,
    state,
    arrays: dict,
    batch_size: int,
    predict: Callable | None = None,
) -> dict:
    """Every metric of `task` over every example of `arrays` (last batch padded and masked)."""
    sums = fw.zero_sums(task.sums)
    outputs, remaining = [], num_examples(arrays)
    for batch in iterate_batches(arrays, batch_size, shuffle=False, remainder="pad"):
        device_batch = fw.to_device(batch)
        metrics = eval_step(state, device_batch)
        sums = fw.add_sums(sums, {k: metrics[k] for k in task.sums})
        if task.evaluator is not None:  # padding rows sit at the end of the last batch
            real, remaining = min(batch_size, remaining), remaining - batch_size
            outputs.append(np.asarray(fw.to_numpy(predict(state, device_batch)))[:real])
    scores = task.reduce(sums)
    if task.evaluator is not None:
        scores.update(task.evaluator(np.concatenate(outputs), arrays))
    return scores


def restore_readable(fw: Framework, checkpointer, state, set_aside: bool = True):
    """(state, meta, step) from the newest checkpoint that reads.

    Checkpoints are tried newest first. Only when an older one restores are the newer ones
    that failed taken for damaged (a truncated file, a half-copied folder): they are renamed,
    not deleted, with a warning naming them (`set_aside=False`: left in place). When none
    restores, the cause is shared (a changed model or config), so nothing is renamed and the
    newest one's error is raised.
    """
    failures = []
    for step in sorted(checkpointer.steps(), reverse=True):
        try:
            restored, meta = checkpointer.restore(state, step)
        except Exception as err:  # noqa: BLE001 - try the previous checkpoint
            failures.append((step, err))
            continue
        for bad, err in failures:
            kept = checkpointer.set_aside(bad) if set_aside else "its place"
            message = (
                f"{fw.name}: checkpoint of step {bad} is unreadable "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                f"kept it in {kept} and fell back to step {step}"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            tqdm.write(f"warning: {message}")
        return restored, meta, step
    if failures:
        step, err = failures[0]
        raise ConfigError(
            f"no checkpoint under {checkpointer.directory} restores into this model; the "
            f"newest (step {step}) fails with {type(err).__name__}: "
            f"{str(err).splitlines()[0][:300]}"
        ) from err
    raise ConfigError(f"no checkpoint under {checkpointer.directory}; start without --resume")


def fit(
    fw: Framework,
    task: Task,
    config,
    workdir: str | Path,
    state,
    train_step: Callable,
    eval_step: Callable,
    dataset,
    *,
    predict: Callable | None = None,
    final_eval_step: Callable | None = None,
    on_epoch_end: Callable[[Any, Path, int], None] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train `state` for `config.epochs`, evaluating each epoch; returns (and writes) a summary.

    `predict(state, batch)` feeds the task's host-side evaluator; `on_epoch_end(state,
    workdir, epoch)` lets a project write pictures (the VAE's sample grids) into the run.
    `final_eval_step` replaces `eval_step` in the evaluation after the last step (CIFAR-10's
    test-time augmentation: costlier, so the per-epoch curve goes without it).
    """
    wall_start = time.perf_counter()
    workdir = Path(workdir)
    if task.evaluator is not None and predict is None:
        raise TypeError("this task has a host-side evaluator: pass predict= to fit")
    if config.augment and task.augment is None:
        raise ConfigError("field 'augment': this project has no training augmentation")
    try:
        train, val = train_val_split(dataset.train, config.val_size, config.seed)
    except ValueError as err:
        raise ConfigError(f"field 'val_size': {err}") from err
    if task.prepare_eval is not None and num_examples(val):
        val = task.prepare_eval(val)
    n_train = num_examples(train)
    steps_per_epoch = num_batches(n_train, config.batch_size, "drop")
    if steps_per_epoch == 0:
        raise ConfigError(
            f"field 'batch_size' wants at most the {n_train} training examples, "
            f"got {config.batch_size}"
        )
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    checkpointer = fw.checkpointer(workdir / "checkpoints")
    if _EVALUATE_ONLY.get():  # `roadmap evaluate`: the last evaluation of a run, no training
        splits, steps = (("test", dataset.test), ("val", val)), (eval_step, final_eval_step)
        _evaluate_checkpoint(fw, task, config, workdir, checkpointer, state, splits, steps, predict)
    meta: dict[str, Any] = {"history": [], "train_sums": None}
    if not resume and checkpointer.latest_step() is not None:
        # Mixing a new run into an old run's checkpoints would make a later resume lie.
        raise ConfigError(
            f"{workdir} already holds a run (checkpoints up to step "
            f"{checkpointer.latest_step()}); continue it with --resume or "
            "start a new one with another --run-id / workdir"
        )
    if resume and checkpointer.latest_step() is None:
        checkpointer.close()
        raise ConfigError(f"nothing to resume in {workdir}: no checkpoint; start without --resume")
    resumed, step = resume, 0
    if resumed:
        check_resume_config(workdir / CONFIG_FILE, config)
        state, meta, step = restore_readable(fw, checkpointer, state)
        if step >= total_steps and (workdir / SUMMARY_FILE).is_file():
            # Finished already: keep the summary (its speeds) rather than time a no-op.
            checkpointer.close()
            tqdm.write(f"{fw.name}: {workdir} is complete at step {step}; nothing to resume")
            return {**json.loads((workdir / SUMMARY_FILE).read_text(encoding="utf-8"))}
        tqdm.write(f"{fw.name}: resumed from {checkpointer.directory} at step {step}")
    write_json(workdir / CONFIG_FILE, {"framework": fw.name, **to_dict(config)})
    logger = RunLogger(workdir, resume_step=step if resumed else None)
    # A run stopped by max_steps mid-epoch recorded that partial epoch; resuming completes
    # the epoch, whose record replaces it.
    history: list[dict[str, Any]] = [r for r in meta["history"] if r["step"] % steps_per_epoch == 0]
    saved_sums = meta.get("train_sums")
    sums = fw.sums_from_floats(saved_sums) if saved_sums else fw.zero_sums(task.sums)
    timer = StepTimer()
    shapes_seen: set[tuple] = set()  # batch shapes trained on (jit caches them per process)
    augment = task.augment if config.augment else None

    def save(epoch_done: bool) -> float:
        start = time.perf_counter()
        train_sums = None if epoch_done else {k: float(v) for k, v in sums.items()}
        checkpointer.save(step, state, {"history": history, "train_sums": train_sums})
        return time.perf_counter() - start

    for epoch in range(step // steps_per_epoch, config.epochs):
        if step >= total_steps:
            break
        start_batch = step - epoch * steps_per_epoch
        # Batches are made (and augmented) on a background thread, two ahead of the steps;
        # they are the same batches, so exact resume stays exact.
        batches = prefetch(
            # A dataset may batch its training split itself (text: by length), same arguments.
            getattr(dataset, "train_batches", iterate_batches)(
                train,
                config.batch_size,
                seed=config.seed,
                epoch=epoch,
                remainder="drop",
                start_batch=start_batch,
                augment=augment,
            ),
            depth=2,
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
        last_log = (step, epoch_start)  # (step, time) of the last train row: its examples/s
        try:
            for batch in bar:
                shape = batch_shape(batch)
                if shape not in shapes_seen and shapes_seen:
                    fw.block(sums)  # the steps before it are done: time this one alone
                step_start = time.perf_counter()
                step_rng = fw.step_rng(config.seed, step)
                state, metrics = train_step(state, fw.to_device(batch), step_rng)
                if shape not in shapes_seen:  # a new shape compiles under jit: time alone
                    shapes_seen.add(shape)
                    fw.block(metrics)
                    took = time.perf_counter() - step_start
                    timer.record(took, config.batch_size, first=True)
                    paused += took if steady_start is not None else 0.0
                else:
                    steady_start = step_start if steady_start is None else steady_start
                    steady_steps += 1
                sums = fw.add_sums(sums, {k: metrics[k] for k in task.sums})
                step += 1
                if step % config.log_every == 0:
                    # Reducing the sums waits for the step, so the rate is the real one.
                    means = task.reduce(sums)
                    now = time.perf_counter()
                    rate = (step - last_log[0]) * config.batch_size / (now - last_log[1])
                    last_log = (step, now)
                    extra = {"examples_per_s": rate}
                    lr = fw.learning_rate(state) if fw.learning_rate is not None else None
                    if lr is not None:
                        extra["lr"] = lr  # the default parameter group's rate for this step
                    row = logger.log("train", step, epoch, **means, **extra)
                    bar.set_postfix({k: f"{row[k]:.4f}" for k in task.means})
                mid_epoch = step % steps_per_epoch != 0  # the epoch-end save is with the eval
                mid_epoch = mid_epoch and step < total_steps  # a max_steps stop is saved below
                if config.checkpoint_every and step % config.checkpoint_every == 0 and mid_epoch:
                    paused += save(epoch_done=False)
                if step >= total_steps:
                    break
        finally:  # stop the producer thread now (a max_steps stop leaves batches unread)
            batches.close()
        fw.block(sums)
        if steady_start is not None:
            elapsed = time.perf_counter() - steady_start - paused
            timer.record(elapsed, steady_steps * config.batch_size, first=False)
        train_means = task.reduce(sums)
        record = {"epoch": epoch + 1, "step": step}
        record.update({f"train_{k}": v for k, v in train_means.items()})
        splits = {"train_epoch": train_means}
        for split, arrays in (("test", dataset.test), ("val", val)):
            if num_examples(arrays):
                # The last evaluation may be a costlier one (test-time augmentation).
                final = final_eval_step is not None and step >= total_steps
                scores = evaluate(
                    fw,
                    task,
                    final_eval_step if final else eval_step,
                    state,
                    arrays,
                    config.eval_batch_size,
                    predict,
                )
                record.update({f"{split}_{k}": v for k, v in scores.items()})
                splits[split] = scores
        if on_epoch_end is not None:
            on_epoch_end(state, workdir, epoch + 1)
        record["epoch_time_s"] = time.perf_counter() - epoch_start
        history.append(record)
        for split, scores in splits.items():  # epoch means; "train" rows are running means
            logger.log(split, step, epoch + 1, **scores)
        save(epoch_done=step % steps_per_epoch == 0)  # max_steps may stop mid-epoch
        sums = fw.zero_sums(task.sums)
        if progress and "test" in splits:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in splits["test"].items())
            tqdm.write(f"{fw.name} epoch {epoch + 1}: test {shown}")
    logger.close()
    checkpointer.close()
    summary = {
        "framework": fw.name,
        "task": task.describe(),
        "history": history,
        "steps": step,
        "num_params": fw.num_params(state),
        "first_step_s": timer.first_step_s,
        # Later steps with a new batch shape (each compiles under jit), left out of the rate.
        "new_shape_steps": timer.new_shape_steps,
        "new_shape_s": timer.new_shape_s,
        "train_examples_per_s": timer.examples_per_s,
        "resumed": resumed,
        "wall_s": time.perf_counter() - wall_start,
    }
    write_json(workdir / SUMMARY_FILE, summary)
    return summary
