"""Sentiment training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/sentiment/train.py; the loop itself is jaxpath/common/loop.py. A batch
is {"tokens": int32 [B, T], "mask": float32 [B, T], "label": int32 [B]}; the run's
vocabulary is learned once and kept in the run folder (tokenizer.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxpath.common.loop import fit, to_device
from jaxpath.common.metrics import classification_sums, cross_entropy
from jaxpath.common.state import TrainState, new_train_state
from jaxpath.sentiment.model import create_model, dummy_input
from shared_data.configs.sentiment import get_task, param_group, param_groups
from shared_data.text.sentiment import load_sentiment
from shared_data.text.vectors import pretrained_embedding
from shared_data.training import train_steps_per_epoch


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> TrainState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        dummy_input(config),
        groups=param_groups(config, steps_per_epoch),
        group_of=lambda path: param_group(config, path),
    )


def with_word_vectors(state: TrainState, matrix) -> TrainState:
    """The embedding table replaced by `matrix` (pretrained word vectors), Adam restarted."""
    if matrix is None:
        return state
    params = {**state.params, "embed": {"embedding": jnp.asarray(matrix)}}
    return state.replace(params=params, opt_state=state.tx.init(params))


def loss_fn(params, state: TrainState, batch, rng):
    """Mean cross-entropy of the batch, and the logits it came from."""
    logits = state.apply_fn(
        {"params": params}, batch["tokens"], batch["mask"], train=True, rngs={"dropout": rng}
    )
    return jnp.mean(cross_entropy(logits, batch["label"])), logits


@jax.jit
def train_step(state: TrainState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    state = state.apply_gradients(grads=grads)
    return state, classification_sums(logits, batch["label"])


@jax.jit
def eval_step(state: TrainState, batch):
    """Metric sums in inference mode; rows of padding (an all-zero mask) count for nothing."""
    logits = predict(state, batch)
    return classification_sums(logits, batch["label"], jnp.max(batch["mask"], axis=-1))


def predict(state: TrainState, batch):
    """Logits of the model in inference mode."""
    return state.apply_fn({"params": state.params}, batch["tokens"], batch["mask"], train=False)


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
