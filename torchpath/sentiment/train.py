"""Sentiment training in PyTorch: the same functions as jaxpath/sentiment/train.py, imperative.

Read beside jaxpath/sentiment/train.py; the loop itself is torchpath/common/loop.py. A batch
is {"tokens": [B, T], "mask": float32 [B, T], "label": int64 [B]}; the run's vocabulary is
learned once and kept in the run folder (tokenizer.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from shared_data.configs.sentiment import get_task, param_group, param_groups
from shared_data.text.sentiment import load_sentiment
from shared_data.text.vectors import pretrained_embedding
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.metrics import classification_sums, cross_entropy
from torchpath.common.state import TorchState, new_torch_state
from torchpath.sentiment.model import create_model


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> TorchState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        groups=param_groups(config, steps_per_epoch),
        group_of=lambda path: param_group(config, path),
    )


def with_word_vectors(state: TorchState, matrix) -> TorchState:
    """The embedding table replaced by `matrix` (pretrained word vectors), in place."""
    if matrix is None:
        return state
    # PARITY: JAX builds new params and restarts Adam; here no step has run yet, so the
    # optimizer's moments are still empty and the parameter is overwritten where it is.
    with torch.no_grad():
        state.model.embed.weight.copy_(torch.from_numpy(matrix))
    return state


def loss_fn(state: TorchState, batch):
    """Mean cross-entropy of the batch, and the logits it came from."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) takes the parameters explicitly so
    # jax.grad can differentiate with respect to them; autograd finds them in the module.
    logits = state.model(batch["tokens"], batch["mask"])
    return torch.mean(cross_entropy(logits, batch["label"])), logits


def train_step(state: TorchState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    torch.manual_seed(rng)  # PARITY: JAX passes a key; torch's dropout reads the global RNG
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss, logits = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    with torch.no_grad():
        return state, classification_sums(logits.detach(), batch["label"])


@torch.inference_mode()
def eval_step(state: TorchState, batch):
    """Metric sums in inference mode; rows of padding (an all-zero mask) count for nothing."""
    logits = predict(state, batch)
    return classification_sums(logits, batch["label"], torch.amax(batch["mask"], dim=-1))


@torch.inference_mode()
def predict(state: TorchState, batch):
    """Logits of the model in inference mode."""
    state.model.eval()
    return state.model(batch["tokens"], batch["mask"])


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`; logs, checkpoints and vocabulary go under `workdir`."""
    dataset = load_sentiment(config, workdir)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    if init_weights is None:  # ported weights bring their own table
        state = with_word_vectors(state, pretrained_embedding(config, dataset.tokenizer, workdir))
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
    "with_word_vectors",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "train_and_evaluate",
    "to_device",
]
