"""Data-parallel training over processes: DistributedDataParallel, launched by torchrun.

`torchrun --nproc-per-node N` (`python -m torch.distributed.run`) starts N copies of one
command, each with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its
environment. loop.fit finds them there and trains any registered project data-parallel,
with no code of the project's own; N processes then take the step one process takes on the
same global batch (tests/test_parallel_torch.py):

* every rank builds the same global batch (shared_data's batches, same seed, same
  augmentation) and keeps its rows, `shared_data.batches.worker_slice`;
* the model is wrapped in DDP, whose backward averages the gradients over the ranks; each
  project's loss is a mean over its rows, so that average is the gradient of the mean over
  the global batch (a loss summed over rows would come out divided by N);
* BatchNorm layers become cross-replica: training statistics over the global batch, as the
  JAX side computes them (torch.nn.SyncBatchNorm on GPUs; `CrossReplicaBatchNorm` on CPUs,
  where SyncBatchNorm's kernels do not exist);
* each step's metric sums are summed over the ranks, so the logged numbers are the global
  batch's; evaluation runs whole on every rank (the model is replicated);
* rank 0 alone writes the logs, checkpoints and summary; the other ranks restore rank 0's
  checkpoints on resume and write their own records into a temporary folder;
* each rank draws its own dropout masks (the step's seed folded with the rank; rank 0's are
  the single process's), so steps with dropout agree with one process in distribution only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shared_data import training
from shared_data.batches import local_batch_size, worker_slice
from shared_data.configs.base import ConfigError
from shared_data.runlog import SUMMARY_FILE, write_json
from torchpath.common.checkpoint import Checkpointer

# torchrun's environment: a process started by it has all of these.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on rank 0, the one that writes logs and checkpoints."""
        return self.rank == 0


def launched() -> bool:
    """True in a process torchrun started as one of several (WORLD_SIZE > 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(backend: str = "gloo") -> Iterator[Worker]:
    """The process group of torchrun's environment, joined on entry; a barrier on exit.

    A group the caller initialised is used as is and left open; one made here is destroyed
    after every rank has reached the barrier (rank 0's last checkpoint is then written).
    """
    # gloo: the models train on the CPU here (`roadmap run`); a CUDA run would pick "nccl".
    created = not dist.is_initialized()
    if created:
        missing = [v for v in LAUNCH_VARIABLES if v not in os.environ]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {', '.join(missing)} unset: "
                "launch with `torchrun --nproc-per-node N ...` (or `roadmap run --nproc N`)"
            )
        dist.init_process_group(backend, init_method="env://")
    worker = Worker(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    try:
        yield worker
        dist.barrier()  # only a clean exit waits: a failed rank must not hang the others
    finally:
        if created:
            dist.destroy_process_group()


class SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over every rank; its backward sums the gradients the same way.

    Each rank's loss depends on the sum through every rank's rows, so the gradient of the
    global loss with respect to one rank's contribution is the sum of all ranks' gradients
    (torch.nn.SyncBatchNorm's backward does the same). torch.distributed.nn's differentiable
    all_reduce is deprecated; its suggested successor has no autograd.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        summed = tensor.clone()
        dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        summed = grad.clone()
        dist.all_reduce(summed)
        return summed


class CrossReplicaBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with training statistics of the global batch, for any backend and device.

    torch.nn.SyncBatchNorm computes them with CUDA-only kernels; this layer sums per-channel
    sums over the process group with autograd-aware all-reduces (the backward sums the
    gradients the same way), mean first and then the centred squares, as one process's
    two-pass BatchNorm does. Evaluation and a group of one use the running statistics and
    F.batch_norm, like nn.BatchNorm2d.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dims (N, C, ...), got {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise `input` [N, C, ...] over every axis but C, and over every rank's rows."""
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum
            factor = 1.0 / float(self.num_batches_tracked) if momentum is None else momentum
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        rows = input.new_full((1,), input.numel() // input.size(1))
        totals = SumOverRanks.apply(torch.cat([input.sum(dims), rows]))
        count = totals[-1]
        mean = totals[:-1] / count
        centred = input - mean.view(shape)
        var = SumOverRanks.apply((centred * centred).sum(dims)) / count
        output = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():  # PARITY: F.batch_norm keeps the unbiased variance
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * count / (count - 1), factor)
        return output


def cross_replica_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm layer computing statistics over the whole process group.

    The layers keep their parameters and buffers (the same tensors), so an optimizer built
    on the module still updates them. CUDA modules get torch.nn.SyncBatchNorm; CPU modules
    get `CrossReplicaBatchNorm`.
    """
    if any(p.is_cuda for p in module.parameters()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, CrossReplicaBatchNorm
    ):
        replaced = CrossReplicaBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            replaced.weight, replaced.bias = module.weight, module.bias
        if module.track_running_stats:
            replaced.running_mean = module.running_mean
            replaced.running_var = module.running_var
            replaced.num_batches_tracked = module.num_batches_tracked
        replaced.train(module.training)
        return replaced
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module


class DistributedModel(DistributedDataParallel):
    """DDP that reads like the module it wraps: its submodules and its state_dict keys.

    Projects reach into their model (`state.model.fc.weight`) and checkpoints hold its
    state_dict; both see the wrapped module, so a checkpoint of an N-process run has the
    keys of a one-process run and resumes under any process count. Calls go through DDP's
    forward, which prepares the gradient all-reduce.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module" or "module" not in self.__dict__.get("_modules", {}):
                raise
            return getattr(self.module, name)

    def state_dict(self, *args, **kwargs):
        """The wrapped module's state_dict (no "module." prefix)."""
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign=False):
        """Load into the wrapped module (keys without the "module." prefix)."""
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def data_parallel(model: nn.Module) -> DistributedModel:
    """`model` with cross-replica BatchNorm, wrapped in DDP (rank 0's weights broadcast)."""
    # forward_sync_buffers=False: cross-replica statistics keep the BatchNorm buffers equal
    # on every rank, so evaluation may call the model on each rank with no collective.
    # gradient_as_bucket_view: the gradients live in DDP's all-reduce buckets (no copy).
    return DistributedModel(
        cross_replica_batchnorm(model), forward_sync_buffers=False, gradient_as_bucket_view=True
    )


def all_reduce_sums(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """`metrics` with the sums named in `keys` summed over every rank (one all-reduce)."""
    summed = torch.stack([metrics[k].detach().to(torch.float64) for k in keys])
    dist.all_reduce(summed)
    out = dict(metrics)
    out.update({k: summed[i].to(metrics[k].dtype) for i, k in enumerate(keys)})
    return out


def rank_rng(step_rng: Callable[[int, int], int], rank: int) -> Callable[[int, int], int]:
    """The step seeds of `rank`: the single process's on rank 0, distinct on the others."""
    if rank == 0:
        return step_rng
    return lambda seed, step: (step_rng(seed, step) + rank * 0x9E3779B97F4A7C15) % (2**63)


class ReplicaCheckpointer:
    """Rank 0's checkpoints, seen from another rank: restored from, never written.

    The driver hands each rank a checkpoint folder under its workdir; the ranks other than 0
    train in a temporary workdir, so this reads `directory` (rank 0's) whatever it is given.
    """

    def __init__(self, directory: Path):
        self._reader = Checkpointer(directory)
        self.directory = self._reader.directory

    def steps(self) -> list[int]:
        """Steps of rank 0's complete checkpoints, oldest first."""
        return self._reader.steps()

    def latest_step(self) -> int | None:
        """Step of rank 0's newest complete checkpoint, or None."""
        return self._reader.latest_step()

    def restore(self, state, step: int | None = None):
        """(state, meta) restored in place from rank 0's checkpoint of `step`."""
        return self._reader.restore(state, step)

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Nothing: rank 0 writes the checkpoint (every rank holds the same state)."""

    def set_aside(self, step: int) -> Path:
        """Leave an unreadable checkpoint where it is: rank 0 renames it."""
        return self.directory / f"ckpt_{step}.pt"

    def close(self) -> None:
        """Nothing to release."""


def fit(
    framework: training.Framework,
    task,
    config,
    workdir: str | Path,
    state,
    train_step: Callable,
    eval_step: Callable,
    dataset,
    **options: Any,
) -> dict[str, Any]:
    """`shared_data.training.fit` as one rank of a data-parallel run (joins the group first).

    The driver's batches stay numpy here (`to_device` is the identity): the train step keeps
    this rank's rows of the global batch and moves them, evaluation moves the whole batch.
    """
    with process_group() as worker:
        try:
            local_batch_size(config.batch_size, worker.world_size)
        except ValueError as err:
            raise ConfigError(f"field 'batch_size': {err}") from err
        to_device, keys = framework.to_device, tuple(task.sums)
        state.model = data_parallel(state.model)

        def replica_train_step(state, batch, rng):
            local = to_device(worker_slice(batch, worker.rank, worker.world_size))
            state, metrics = train_step(state, local, rng)
            return state, all_reduce_sums(metrics, keys)

        def on_device(step):
            return lambda state, batch: step(state, to_device(batch))

        for name in ("predict", "final_eval_step"):
            if options.get(name) is not None:
                options[name] = on_device(options[name])
        checkpoints = Path(workdir) / "checkpoints"
        replica = dataclasses.replace(
            framework,
            to_device=lambda batch: batch,
            step_rng=rank_rng(framework.step_rng, worker.rank),
            checkpointer=framework.checkpointer
            if worker.main
            else lambda _: ReplicaCheckpointer(checkpoints),
        )
        steps = (replica_train_step, on_device(eval_step), dataset)
        with contextlib.ExitStack() as stack:
            if not worker.main:  # its run records go to a folder removed afterwards
                workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="roadmap-rank"))
                options["progress"] = False
            summary = training.fit(replica, task, config, workdir, state, *steps, **options)
        if worker.main:  # the run's record says how many processes trained it
            summary["processes"] = worker.world_size
            write_json(Path(workdir) / SUMMARY_FILE, summary)
        return summary
