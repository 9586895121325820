"""Sentiment classifiers in Flax Linen: a masked BiLSTM, a transformer encoder, a BERT, and
a BiLSTM over a BERT's states.

Read beside torchpath/sentiment/model.py: same classes, same submodule names (embed,
fwd{k}, bwd{k}, fc; position, block{k}/{norm1, attn, norm2, fc1, fc2}, norm; Bert's
segment, embed_norm, block{k}/{query, key, value, attn_out, norm1, fc1, fc2, norm2};
BertLSTM's are Bert's, then fwd{k}, bwd{k}, fc), same order.
Inputs are token ids [B, T] (int32) and a left-aligned mask [B, T] (float32, 1 on the first
length_b positions); outputs are logits [B, 2]. A row's length is mask.sum() (at least 1):
every model reads the first `length` tokens only, so padding never changes a logit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.init import TorchDense, torch_kernel_init
from jaxpath.common.rnn import TorchLSTM
from shared_data.text.encoders import BERT_LAYER_NORM_EPS
from shared_data.text.positions import sinusoidal_positions

NUM_CLASSES = 2
# PARITY: torch's nn.Embedding draws N(0, 1); Flax's Embed scales by 1/sqrt(features).
embedding_init = nn.initializers.normal(stddev=1.0)


def sequence_lengths(mask):
    """Real tokens per row, at least one (an all-padding row reads its first token)."""
    return jnp.maximum(jnp.sum(mask, axis=-1).astype(jnp.int32), 1)


def reverse_index(lengths, width: int):
    """[B, T] gather indices that reverse each row's first `length` positions in place."""
    t = jnp.arange(width)[None, :]
    return jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def masked_mean(x, valid, lengths):
    """Mean of x [B, T, D] over each row's real positions (`valid` [B, T], `lengths` [B])."""
    weights = valid.astype(x.dtype)[..., None]
    return jnp.sum(x * weights, axis=1) / lengths[:, None].astype(x.dtype)


def gather_time(x, index):
    """x[b, index[b, t]] for x [B, T, D]."""
    return jnp.take_along_axis(x, index[..., None], axis=1)


def bilstm_max(x, lengths, hidden: int, layers: int):
    """`layers` bidirectional layers fwd{k}/bwd{k} over x [B, T, D], max-pooled over real
    positions. Call it inside a compact method: the layers belong to that module.

    PARITY: torch's bilstm_max reads layers its module registered in __init__ (add_bilstm);
    Flax's compact style creates them where they are used.
    """
    reverse = reverse_index(lengths, x.shape[1])
    for k in range(layers):
        # The forward LSTM's outputs before `length` never see the padding after it; the
        # backward one reads each row reversed within its length, so the same holds.
        forward, _ = TorchLSTM(hidden, batch_first=True, name=f"fwd{k}")(x)
        backward_reversed, _ = TorchLSTM(hidden, batch_first=True, name=f"bwd{k}")(
            gather_time(x, reverse)
        )
        x = jnp.concatenate([forward, gather_time(backward_reversed, reverse)], axis=-1)
    # Max over the real positions of both directions (final states alone learn far slower).
    valid = jnp.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
    return jnp.max(jnp.where(valid, x, -jnp.inf), axis=1)


class BiLSTM(nn.Module):
    """Embedding, `layers` bidirectional LSTM layers, max-pool over real positions, Dense."""

    vocab_size: int
    embed_dim: int = 128
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.5

    @nn.compact
    def __call__(self, tokens, mask, train: bool = False):
        lengths = sequence_lengths(mask)
        embed = nn.Embed(
            self.vocab_size, self.embed_dim, embedding_init=embedding_init, name="embed"
        )
        x = nn.Dropout(self.dropout, deterministic=not train)(embed(tokens))
        features = bilstm_max(x, lengths, self.hidden, self.layers)
        features = nn.Dropout(self.dropout, deterministic=not train)(features)
        return TorchDense(NUM_CLASSES, 2 * self.hidden, name="fc")(features)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: masked self-attention, then a ReLU MLP."""

    dim: int
    heads: int
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, x, valid, train: bool = False):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        # PARITY: torch's LayerNorm epsilon is 1e-5, Flax's 1e-6.
        h = nn.LayerNorm(epsilon=1e-5, name="norm1")(x)
        h = nn.MultiHeadDotProductAttention(
            self.heads,
            # PARITY: torch's in_proj is xavier_uniform over [3E, E] (variance 0.5/E), its
            # out_proj a Linear; both biases start at zero, as Flax's do.
            kernel_init=nn.initializers.variance_scaling(0.5, "fan_in", "uniform"),
            out_kernel_init=torch_kernel_init,
            name="attn",
        )(h, mask=valid[:, None, None, :])  # PARITY: True attends; torch's key mask is ~valid
        x = x + drop(h)
        h = nn.LayerNorm(epsilon=1e-5, name="norm2")(x)
        h = TorchDense(self.dim, self.hidden, name="fc2")(
            nn.relu(TorchDense(self.hidden, self.dim, name="fc1")(h))
        )
        return x + drop(h)


class Transformer(nn.Module):
    """Token + position embeddings, `layers` encoder blocks, masked pool, Dense.

    `positions`: "learned" (a trained table, `position`) or "sinusoidal" (a fixed one).
    `pool`: "mean" or "max" over the real positions.
    """

    vocab_size: int
    max_len: int
    embed_dim: int = 128
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    positions: str = "learned"
    pool: str = "mean"

    @nn.compact
    def __call__(self, tokens, mask, train: bool = False):
        lengths = sequence_lengths(mask)
        valid = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
        embed = nn.Embed(
            self.vocab_size, self.embed_dim, embedding_init=embedding_init, name="embed"
        )
        if self.positions == "learned":
            position = nn.Embed(
                self.max_len, self.embed_dim, embedding_init=embedding_init, name="position"
            )
            where = position(jnp.arange(tokens.shape[1]))
        else:  # a constant of the compiled graph, not a parameter
            where = jnp.asarray(sinusoidal_positions(self.max_len, self.embed_dim))
            where = where[: tokens.shape[1]]
        x = embed(tokens) + where[None]
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        for k in range(self.layers):
            x = EncoderBlock(
                self.embed_dim, self.heads, self.hidden, self.dropout, name=f"block{k}"
            )(x, valid, train)
        x = nn.LayerNorm(epsilon=1e-5, name="norm")(x)
        if self.pool == "max":
            pooled = jnp.max(jnp.where(valid[..., None], x, -jnp.inf), axis=1)
        else:
            pooled = masked_mean(x, valid, lengths)
        pooled = nn.Dropout(self.dropout, deterministic=not train)(pooled)
        return TorchDense(NUM_CLASSES, self.embed_dim, name="fc")(pooled)


class BertBlock(nn.Module):
    """Post-LayerNorm BERT block: attention, add & norm, exact-GELU MLP, add & norm.

    Attention is written out (no nn.MultiHeadDotProductAttention) as four Dense layers with
    torch's Linear layout, so the same renamed BERT weights port by the Linear rule.
    """

    dim: int
    heads: int
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, x, valid, train: bool = False):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        batch, width, dim = x.shape
        head_dim = dim // self.heads

        def split(h):  # [B, T, D] -> [B, heads, T, head_dim]
            return h.reshape(batch, width, self.heads, head_dim).transpose(0, 2, 1, 3)

        q = split(TorchDense(dim, dim, name="query")(x))
        k = split(TorchDense(dim, dim, name="key")(x))
        v = split(TorchDense(dim, dim, name="value")(x))
        scores = q @ k.swapaxes(-1, -2) / math.sqrt(head_dim)
        # A padding key gets the lowest float (BERT's additive mask), so it weighs exactly 0.
        scores = jnp.where(valid[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
        weights = drop(jax.nn.softmax(scores, axis=-1))  # BERT drops attention weights too
        h = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, width, dim)
        h = TorchDense(dim, dim, name="attn_out")(h)
        x = nn.LayerNorm(epsilon=BERT_LAYER_NORM_EPS, name="norm1")(x + drop(h))
        # PARITY: Flax's gelu defaults to the tanh approximation; BERT's (torch's) is exact.
        h = nn.gelu(TorchDense(self.hidden, dim, name="fc1")(x), approximate=False)
        h = TorchDense(dim, self.hidden, name="fc2")(h)
        return nn.LayerNorm(epsilon=BERT_LAYER_NORM_EPS, name="norm2")(x + drop(h))


class Bert(nn.Module):
    """BERT's embeddings (token + position + segment 0, LayerNorm), blocks, mean pool, Dense.

    The mean over the real positions ([CLS] and [SEP] included) is what sentence-transformers
    trained all-MiniLM-L6-v2's sentence embedding on; `fc` is the new classification head.
    """

    vocab_size: int
    max_len: int
    embed_dim: int = 384
    hidden: int = 1536
    layers: int = 6
    heads: int = 12
    dropout: float = 0.1

    def encode(self, tokens, mask, train: bool):
        """(the last block's states [B, T, D], valid [B, T], lengths [B]).

        PARITY: torch's Bert.encode is a method too; here it is called from a compact
        __call__, so the layers it makes belong to this module, under the same names.
        """
        lengths = sequence_lengths(mask)
        positions = jnp.arange(tokens.shape[1])
        valid = positions[None, :] < lengths[:, None]

        def table(rows, name):
            return nn.Embed(rows, self.embed_dim, embedding_init=embedding_init, name=name)

        x = table(self.vocab_size, "embed")(tokens) + table(self.max_len, "position")(positions)
        x = x + table(2, "segment")(jnp.int32(0))  # BERT's token types; one sentence: row 0
        x = nn.LayerNorm(epsilon=BERT_LAYER_NORM_EPS, name="embed_norm")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        for k in range(self.layers):
            x = BertBlock(self.embed_dim, self.heads, self.hidden, self.dropout, name=f"block{k}")(
                x, valid, train
            )
        return x, valid, lengths

    @nn.compact
    def __call__(self, tokens, mask, train: bool = False):
        x, valid, lengths = self.encode(tokens, mask, train)
        pooled = nn.Dropout(self.dropout, deterministic=not train)(masked_mean(x, valid, lengths))
        return TorchDense(NUM_CLASSES, self.embed_dim, name="fc")(pooled)


class BertLSTM(Bert):
    """A BERT's last states read by `rnn_layers` BiLSTM layers, max-pooled, then Dense.

    The pretrained encoder as a feature extractor for the BiLSTM classifier (bentrevett's
    "Transformers for Sentiment Analysis" puts a bidirectional GRU on a frozen BERT); with
    encoder_lr_scale=0 only fwd{k}, bwd{k} and fc learn.
    """

    rnn_hidden: int = 128
    rnn_layers: int = 1

    @nn.compact
    def __call__(self, tokens, mask, train: bool = False):
        x, _, lengths = self.encode(tokens, mask, train)
        features = bilstm_max(x, lengths, self.rnn_hidden, self.rnn_layers)
        features = nn.Dropout(self.dropout, deterministic=not train)(features)
        return TorchDense(NUM_CLASSES, 2 * self.rnn_hidden, name="fc")(features)


MODELS = {"lstm": BiLSTM, "transformer": Transformer, "bert": Bert, "bert-lstm": BertLSTM}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    shared = dict(
        vocab_size=config.vocab_size,
        embed_dim=config.embed_dim,
        hidden=config.hidden,
        layers=config.layers,
        dropout=config.dropout,
    )
    if config.model == "lstm":
        return BiLSTM(**shared)
    if config.model == "bert":
        return Bert(max_len=config.max_len, heads=config.heads, **shared)
    if config.model == "bert-lstm":
        return BertLSTM(
            max_len=config.max_len,
            heads=config.heads,
            rnn_hidden=config.rnn_hidden,
            rnn_layers=config.rnn_layers,
            **shared,
        )
    return Transformer(
        max_len=config.max_len,
        heads=config.heads,
        positions=config.positions,
        pool=config.pool,
        **shared,
    )


def dummy_input(config, batch_size: int = 1):
    """(tokens, mask) of the model's input shape, for initialisation and tracing."""
    shape = (batch_size, config.max_len)
    return jnp.zeros(shape, jnp.int32), jnp.ones(shape, jnp.float32)
