"""Seq2seq training in PyTorch: the same functions as jaxpath/seq2seq/train.py, imperative.

Read beside jaxpath/seq2seq/train.py; the loop itself is torchpath/common/loop.py. A batch is
{"source": [B, S], "source_mask": float32 [B, S], "target": [B, T + 1], "target_mask":
float32 [B, T + 1]} (shared_data/text/translation.py): the decoder reads target[:, :-1] and
is scored on target[:, 1:]. `predict` decodes (torchpath/seq2seq/decode.py) and the Task's
evaluator turns the ids into text and BLEU on the host.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch

from shared_data.configs.seq2seq import StepOptions, get_task, step_options
from shared_data.text.translation import (
    add_tokens_per_s,
    bleu,
    load_translation,
    save_attention_maps,
)
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.metrics import cross_entropy
from torchpath.common.rng import stream
from torchpath.common.state import TorchState, new_torch_state
from torchpath.seq2seq import decode
from torchpath.seq2seq.model import create_model


@dataclasses.dataclass
class Seq2SeqState(TorchState):
    """TorchState plus the options of the loss and the decoder."""

    options: StepOptions = dataclasses.field(default_factory=StepOptions)


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> Seq2SeqState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        state_class=Seq2SeqState,
        options=step_options(config),
    )


def target_sums(logits, batch, label_smoothing: float) -> dict:
    """{"loss_sum", "nll_sum", "correct", "count"} over the scored target tokens."""
    labels = batch["target"][:, 1:].long()
    # Left-aligned: position t is scored when token t + 1 is real (a row's length from its sum).
    lengths = batch["target_mask"].sum(dim=-1)
    positions = torch.arange(labels.shape[1], device=labels.device)
    weights = (positions[None, :] + 1 < lengths[:, None]).to(torch.float32)
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    smoothed = cross_entropy(flat_logits, flat_labels, label_smoothing).reshape(labels.shape)
    nll = cross_entropy(flat_logits, flat_labels).reshape(labels.shape)
    correct = (logits.argmax(-1) == labels).to(torch.float32)
    return {
        "loss_sum": torch.sum(smoothed * weights),
        "nll_sum": torch.sum(nll * weights),
        "correct": torch.sum(correct * weights),
        "count": torch.sum(weights),
    }


def loss_fn(state: Seq2SeqState, batch):
    """Mean label-smoothed cross-entropy per target token, and the step's metric sums."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) takes the parameters explicitly so
    # jax.grad can differentiate with respect to them; autograd finds them in the module.
    logits = state.model(batch["source"], batch["source_mask"], batch["target"][:, :-1])
    sums = target_sums(logits, batch, state.options.label_smoothing)
    return sums["loss_sum"] / torch.clamp(sums["count"], min=1.0), sums


def train_step(state: Seq2SeqState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    torch.manual_seed(rng)  # PARITY: JAX passes a key; torch's dropout reads the global RNG
    state.model.train()
    if hasattr(state.model, "teacher_generator"):  # the GRU's per-step teacher-forcing draws
        state.model.teacher_generator = stream(rng, "teacher")
    state.optimizer.zero_grad(set_to_none=True)
    loss, sums = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return state, {k: v.detach() for k, v in sums.items()}


@torch.inference_mode()
def eval_step(state: Seq2SeqState, batch):
    """Teacher-forced metric sums; padding rows (an all-zero mask) score no token."""
    state.model.eval()
    logits = state.model(batch["source"], batch["source_mask"], batch["target"][:, :-1])
    return target_sums(logits, batch, state.options.label_smoothing)


def predict(state: Seq2SeqState, batch):
    """Decoded ids [B, max_target_len] (greedy or beam search, per the config)."""
    return decode.translate(state, batch)


def write_attention_maps(state, workdir: Path, epoch: int, dataset, count: int) -> None:
    """The on_epoch_end hook: the decoder's attention on the first test sentences, as PNGs."""
    batch = {k: dataset.test[k][:count] for k in ("source", "source_mask")}
    tokens, weights = decode.attention_maps(state, to_device(batch))
    save_attention_maps(
        workdir, epoch, dataset.tokenizer, batch["source"], tokens.numpy(), weights.numpy()
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
