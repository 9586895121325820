"""Seq2seq: a GRU encoder-decoder with Bahdanau attention and a small transformer, de->en.

Sentence pairs become ids of one joint byte-level BPE vocabulary (shared_data/text: learned
from the training pairs only, saved as the run's tokenizer.json). Training is teacher-forced
at `teacher_forcing` (the GRU draws per decoder step whether to feed the reference or its own
prediction; the transformer reads the whole reference at once, so it wants 1.0), with
label-smoothed cross-entropy over the real target tokens. `predict` decodes greedily or by
beam search with GNMT's length penalty; the Task's host-side evaluator is sacrebleu's BLEU of
the detokenized output against the detokenized references (lowercased text when
`lowercase`).

Variants (`get_config(variant)`); measured numbers and commands are in docs/RESULTS.md,
"Seq2seq":

* ``default`` -- a small transformer (width 128, 2 blocks a side, 2.2 M parameters) on
  Multi30k de->en (29,000 training pairs, test2016's 1,000), 3 epochs:
  ``roadmap run seq2seq --framework torch|jax --data-dir ../shared/data``; its 678 steps take
  440-521 ms each on one quiet CPU core (docs/BENCHMARKS.md). Greedy test BLEU 16.7 (JAX,
  measured on a busy machine; torch was stopped after epoch 1 at 8.6, JAX's epoch 1 was 9.6).
* ``large`` -- the transformer at bentrevett's widths (d_model 256, MLP 512, 3 blocks a side,
  8 heads; 7.0 M parameters), 10 epochs: ``--variant large``. Test BLEU greedy 36.28 (torch)
  / 36.52 (JAX), beam 5 37.89 / 37.88; 82 / 61 min on one core each.
* ``gru`` -- the GRU with Bahdanau attention (128-wide embeddings, 256-unit GRUs, dropout 0.3,
  teacher forcing 0.5, label smoothing 0.1; 6.2 M parameters), 10 epochs: ``--variant gru``.
  Test BLEU greedy 31.02 (torch) / 30.53 (JAX), beam 5 33.36 / 33.68; 106 / 95 min on one
  AVX2 core each. bentrevett's dropout 0.5 without smoothing had greedy 27.37 / 26.98.
* ``generated`` -- a toy word-for-word translation generated offline (2,000 / 200 pairs), 5
  epochs: ``roadmap compare seq2seq --variant generated`` (the quickstart): test BLEU 57.1
  (torch) / 59.5 (JAX), 86 s / 40 s beside two training runs.
* ``smoke`` -- a few steps on 64 generated pairs, for tests.
"""

from __future__ import annotations

import dataclasses

from shared_data.configs.base import (
    ConfigError,
    TrainConfig,
    at_least,
    between,
    field,
    one_of,
    pick_variant,
)
from shared_data.tasks import Task
from shared_data.text.tokenize import KINDS, SPECIAL_TOKENS
from shared_data.text.translation import DATASETS

MODELS = ("transformer", "gru")
DECODERS = ("greedy", "beam")


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(TrainConfig):
    """Hyperparameters of one seq2seq run; identical for both frameworks."""

    model: str = field("transformer", one_of(*MODELS))  # transformer, or GRU + attention
    dataset: str = field("multi30k", one_of(*DATASETS))
    tokenizer: str = field("bpe", one_of(*KINDS))  # byte-level BPE, or whole words
    vocab_size: int = field(4000, at_least(len(SPECIAL_TOKENS) + 1))  # one de+en vocabulary
    lowercase: bool = True  # lowercase both sides (BLEU is then on lowercased text)
    max_source_len: int = field(32, at_least(1))  # source tokens kept (the rest is cut)
    max_target_len: int = field(32, at_least(2))  # decoder steps: [BOS] + tokens, or outputs
    embed_dim: int = field(128, at_least(1))  # token embeddings (the transformer's d_model)
    hidden: int = field(256, at_least(1))  # GRU state (each side); transformer MLP width
    layers: int = field(2, at_least(1))  # transformer blocks per side (the GRU has one layer)
    heads: int = field(4, at_least(1))  # transformer attention heads
    dropout: float = field(0.1, between(0, 0.95))
    teacher_forcing: float = field(1.0, between(0, 1))  # P(feed the reference) per GRU step
    label_smoothing: float = field(0.1, between(0, 0.99))
    decode: str = field("beam", one_of(*DECODERS))  # what predict (and so BLEU) uses
    beam_size: int = field(5, at_least(1))
    length_penalty: float = field(0.6, between(0, 5))  # GNMT's alpha: ((5 + len) / 6)^alpha
    attention_maps: int = field(3, at_least(0))  # test sentences drawn each epoch (PNGs)
    bleu_bootstrap: int = field(0, at_least(0))  # > 1: resamples for BLEU's 95% interval

    def check(self) -> None:
        """embed_dim splits into heads; the transformer trains fully teacher-forced."""
        super().check()
        if self.model == "transformer" and self.embed_dim % self.heads:
            raise ConfigError(
                f"field 'heads' wants a divisor of embed_dim={self.embed_dim}, got {self.heads}"
            )
        if self.model == "transformer" and self.teacher_forcing != 1.0:
            raise ConfigError(
                "field 'teacher_forcing' must be 1.0 for the transformer (its decoder reads the "
                f"whole reference in one pass), got {self.teacher_forcing}; use --model gru"
            )


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """What the steps and `predict` need from the config, held in the state (both trees).

    JAX keeps it as a static field of the train state, so jit compiles it in; torch keeps it
    on its state object. The kit's tools call `train_step(state, batch, rng)` alone.
    """

    label_smoothing: float = 0.0
    decode: str = "greedy"  # what predict runs: greedy, or beam search
    beam_size: int = 1
    max_len: int = 2  # decoder steps (output tokens, [EOS] included)
    length_penalty: float = 0.0  # GNMT's alpha


def step_options(config: Seq2SeqConfig) -> StepOptions:
    """The StepOptions of `config`."""
    return StepOptions(
        label_smoothing=config.label_smoothing,
        decode=config.decode,
        beam_size=config.beam_size,
        max_len=config.max_target_len,
        length_penalty=config.length_penalty,
    )


def get_task(config: Seq2SeqConfig, evaluator=None) -> Task:
    """Token-level label-smoothed cross-entropy, NLL and accuracy; headline BLEU.

    `evaluator` is `shared_data.text.translation.bleu(tokenizer)` of the run's vocabulary;
    without one (the tools asking for metric names) BLEU cannot be computed.
    """
    return Task(
        sums=("loss_sum", "nll_sum", "correct", "count"),
        means={
            "loss": ("loss_sum", "count"),
            "nll": ("nll_sum", "count"),
            "accuracy": ("correct", "count"),
        },
        headline="bleu",
        higher_is_better=True,
        evaluator=evaluator or _needs_tokenizer,
        evaluator_metrics=("bleu", "bleu_ci95") if config.bleu_bootstrap > 1 else ("bleu",),
        formats={"bleu": "f4", "bleu_ci95": "f4"},
    )


def _needs_tokenizer(predictions, arrays):
    raise ConfigError(
        "BLEU needs the run's tokenizer: build the task with get_task(config, bleu(...))"
    )


def variants() -> dict[str, Seq2SeqConfig]:
    """Every named config: default, gru, generated and smoke."""
    # Sized for 2 shared CPU cores (docs/RESULTS.md, "Seq2seq"); bentrevett's GPU transformer
    # is --set embed_dim=256 --set hidden=512 --set layers=3 --set heads=8 --epochs 10.
    base = Seq2SeqConfig(
        batch_size=128,
        epochs=3,
        lr=1e-3,
        schedule="cosine",
        warmup_epochs=0.3,
        clip_grad_norm=1.0,
        decode="greedy",  # per-epoch BLEU; beam search from the checkpoint (docs/RESULTS.md)
        eval_batch_size=250,
        log_every=20,
    )
    generated = dataclasses.replace(
        base,
        dataset="generated",
        vocab_size=320,  # byte-level BPE starts from 256 bytes and 4 special tokens
        max_source_len=16,
        max_target_len=20,
        embed_dim=64,
        hidden=128,
        layers=2,
        heads=4,
        batch_size=32,
        epochs=5,
        lr=2e-3,
        eval_batch_size=100,
        log_every=20,
    )
    return {
        "default": base,
        # bentrevett's transformer widths (d_model 256, MLP 512, 3 blocks a side, 8 heads),
        # pre-LN with warm-up and a cosine decay, 10 epochs: the recipe for the BLEU aim.
        "large": dataclasses.replace(
            base, embed_dim=256, hidden=512, layers=3, heads=8, epochs=10, warmup_epochs=0.5
        ),
        # bentrevett's notebook-3 GRU at half his widths. His dropout 0.5 and plain
        # cross-entropy ended 0.6-1.0 BLEU short of greedy 28 here; dropout 0.3 with label
        # smoothing 0.1 gained about 3 (docs/RESULTS.md, "The GRU with Bahdanau attention").
        "gru": dataclasses.replace(
            base,
            model="gru",
            dropout=0.3,
            teacher_forcing=0.5,
            label_smoothing=0.1,
            epochs=10,
        ),
        "generated": generated,
        "smoke": dataclasses.replace(
            generated,
            max_source_len=10,
            max_target_len=10,
            embed_dim=16,
            hidden=16,
            layers=1,
            heads=2,
            batch_size=16,
            epochs=1,
            lr=1e-3,  # the parity harness's steps stay small
            schedule="constant",
            warmup_epochs=0.0,
            decode="greedy",  # one compiled loop fewer; tests/test_seq2seq.py checks the beam
            beam_size=2,
            eval_batch_size=8,
            limit_train=48,
            limit_test=8,
            attention_maps=1,
            log_every=2,
        ),
    }


def get_config(variant: str = "default") -> Seq2SeqConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("seq2seq", variants(), variant)
