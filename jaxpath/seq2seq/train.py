"""Seq2seq training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/seq2seq/train.py; the loop itself is jaxpath/common/loop.py. A batch is
{"source": int32 [B, S], "source_mask": float32 [B, S], "target": int32 [B, T + 1],
"target_mask": float32 [B, T + 1]} (shared_data/text/translation.py): the decoder reads
target[:, :-1] and is scored on target[:, 1:]. `predict` decodes (jaxpath/seq2seq/decode.py)
and the Task's evaluator turns the ids into text and BLEU on the host.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxpath.common.loop import fit, to_device
from jaxpath.common.metrics import cross_entropy
from jaxpath.common.rng import streams
from jaxpath.common.state import TrainState, new_train_state
from jaxpath.seq2seq import decode
from jaxpath.seq2seq.model import create_model, dummy_input
from shared_data.configs.seq2seq import StepOptions, get_task, step_options
from shared_data.text.translation import (
    add_tokens_per_s,
    bleu,
    load_translation,
    save_attention_maps,
)
from shared_data.training import train_steps_per_epoch


class Seq2SeqState(TrainState):
    """TrainState plus the static options of the loss and the decoder."""

    options: StepOptions = struct.field(pytree_node=False, default=StepOptions())


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> Seq2SeqState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        dummy_input(config),
        state_class=Seq2SeqState,
        options=step_options(config),
    )


def target_sums(logits, batch, label_smoothing: float) -> dict:
    """{"loss_sum", "nll_sum", "correct", "count"} over the scored target tokens."""
    labels = batch["target"][:, 1:]
    # Left-aligned: position t is scored when token t + 1 is real (a row's length from its sum).
    lengths = jnp.sum(batch["target_mask"], axis=-1)
    weights = (jnp.arange(labels.shape[1])[None, :] + 1 < lengths[:, None]).astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(cross_entropy(logits, labels, label_smoothing) * weights),
        "nll_sum": jnp.sum(cross_entropy(logits, labels) * weights),
        "correct": jnp.sum(correct * weights),
        "count": jnp.sum(weights),
    }


def loss_fn(params, state: Seq2SeqState, batch, rng):
    """Mean label-smoothed cross-entropy per target token, and the step's metric sums."""
    logits = state.apply_fn(
        {"params": params},
        batch["source"],
        batch["source_mask"],
        batch["target"][:, :-1],
        train=True,
        rngs=streams(rng, ("dropout", "teacher")),
    )
    sums = target_sums(logits, batch, state.options.label_smoothing)
    return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), sums


@jax.jit
def train_step(state: Seq2SeqState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    return state.apply_gradients(grads=grads), sums


@jax.jit
def eval_step(state: Seq2SeqState, batch):
    """Teacher-forced metric sums; padding rows (an all-zero mask) score no token."""
    logits = state.apply_fn(
        {"params": state.params}, batch["source"], batch["source_mask"], batch["target"][:, :-1]
    )
    return target_sums(logits, batch, state.options.label_smoothing)


def predict(state: Seq2SeqState, batch):
    """Decoded ids [B, max_target_len] (greedy or beam search, per the config)."""
    return decode.translate(state, batch)


def write_attention_maps(state, workdir: Path, epoch: int, dataset, count: int) -> None:
    """The on_epoch_end hook: the decoder's attention on the first test sentences, as PNGs."""
    batch = {k: dataset.test[k][:count] for k in ("source", "source_mask")}
    tokens, weights = decode.attention_maps(state, to_device(batch))
    save_attention_maps(
        workdir, epoch, dataset.tokenizer, batch["source"], np.asarray(tokens), np.asarray(weights)
    )


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`; logs, checkpoints, vocabulary and pictures in `workdir`."""
    dataset = load_translation(config, workdir)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    task = get_task(config, bleu(dataset.tokenizer, config.bleu_bootstrap))
    pictures = None
    if config.attention_maps:
        count = min(config.attention_maps, len(dataset.test["source"]))
        pictures = functools.partial(write_attention_maps, dataset=dataset, count=count)
    summary = fit(
        task,
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        on_epoch_end=pictures,
        resume=resume,
        progress=progress,
    )
    return add_tokens_per_s(summary, workdir, dataset)


__all__ = [
    "create_state",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "train_and_evaluate",
    "to_device",
]
