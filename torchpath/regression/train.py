"""Regression training in PyTorch: the same functions as jaxpath/regression/train.py.

Read beside jaxpath/regression/train.py; the loop itself is torchpath/common/loop.py. The
gradients come from autograd; tests/test_regression.py checks them against the hand-derived
ones of shared_data/byhand/regression.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from shared_data.configs.regression import get_task
from shared_data.tabular import load_for_config
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.metrics import classification_sums, cross_entropy
from torchpath.common.state import TorchState, new_torch_state
from torchpath.regression.model import create_model


@dataclasses.dataclass
class RegressionState(TorchState):
    """TorchState plus the loss it trains: the model kind and the L2 strength."""

    kind: str = "linear"
    l2: float = 0.0


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> RegressionState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        state_class=RegressionState,
        kind=config.model,
        l2=config.l2,
    )


def losses(kind: str, outputs: torch.Tensor, batch) -> torch.Tensor:
    """Per-example loss: squared error, sigmoid or softmax cross-entropy."""
    if kind == "linear":
        return (outputs - batch["target"]) ** 2
    if kind == "logistic":
        # log(1 + e^s) - y s == F.binary_cross_entropy_with_logits, whose fused CPU kernel
        # took 0.4 ms per 32-example call here (torch 2.14), a hundred times this formula.
        labels = batch["label"].to(outputs.dtype)  # to_device made them int64
        return F.softplus(outputs) - labels * outputs
    return cross_entropy(outputs, batch["label"])


def metric_sums(kind: str, outputs: torch.Tensor, batch, mask=None) -> dict:
    """The task's sums over the batch; `mask` zeroes padded rows."""
    if kind == "softmax":
        return classification_sums(outputs, batch["label"], mask)
    per_example = losses(kind, outputs, batch)
    if mask is None:
        mask = torch.ones(per_example.shape, dtype=torch.float32, device=outputs.device)
    sums = {"loss_sum": torch.sum(per_example * mask), "count": torch.sum(mask)}
    if kind == "linear":
        return {**sums, "sq_err_sum": sums["loss_sum"]}
    correct = ((outputs > 0) == (batch["label"] == 1)).to(torch.float32)
    return {**sums, "correct": torch.sum(correct * mask)}


def loss_fn(state: RegressionState, batch):
    """Mean loss plus (l2 / 2) ||W||^2 (bias unpenalised), and the outputs it came from."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) takes the parameters explicitly so
    # jax.grad can differentiate with respect to them; autograd finds them in the module.
    outputs = state.model(batch["x"])
    # PARITY: the penalty is part of the loss, on the weight only; torch.optim's
    # weight_decay (0 here) would decay the bias too, unlike the oracle and scikit-learn.
    penalty = 0.5 * state.l2 * torch.sum(state.model.fc.weight**2)
    return torch.mean(losses(state.kind, outputs, batch)) + penalty, outputs


def train_step(state: RegressionState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    del rng  # PARITY: no dropout or sampling, so the global RNG is not reseeded
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss, outputs = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    with torch.no_grad():
        return state, metric_sums(state.kind, outputs.detach(), batch)


@torch.inference_mode()
def eval_step(state: RegressionState, batch):
    """Metric sums of the model on `batch` (padded rows masked out)."""
    outputs = predict(state, batch)
    return metric_sums(state.kind, outputs, batch, batch.get("mask"))


@torch.inference_mode()
def predict(state: RegressionState, batch):
    """Model outputs: predictions (linear) or logits (logistic, softmax)."""
    state.model.eval()
    return state.model(batch["x"])


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs and checkpoints under `workdir`."""
    dataset = load_for_config(config)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    return fit(
        get_task(config),
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        resume=resume,
        progress=progress,
    )


__all__ = [
    "create_state",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "train_and_evaluate",
    "to_device",
]
