"""Sentiment classifiers in PyTorch: a masked BiLSTM, a transformer encoder, a BERT, and a
BiLSTM over a BERT's states.

Read beside jaxpath/sentiment/model.py: same classes, same submodule names (embed,
fwd{k}, bwd{k}, fc; position, block{k}/{norm1, attn, norm2, fc1, fc2}, norm; Bert's
segment, embed_norm, block{k}/{query, key, value, attn_out, norm1, fc1, fc2, norm2};
BertLSTM's are Bert's, then fwd{k}, bwd{k}, fc), same order.
Inputs are token ids [B, T] and a left-aligned mask [B, T] (float32, 1 on the first length_b
positions); outputs are logits [B, 2]. A row's length is mask.sum() (at least 1): every
model reads the first `length` tokens only, so padding never changes a logit.

No pack_padded_sequence: reversing each row within its length gives the backward direction
the same invariance with plain tensors, which torch.export and torch.compile take whole.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shared_data.text.encoders import BERT_LAYER_NORM_EPS
from shared_data.text.positions import sinusoidal_positions

NUM_CLASSES = 2


def sequence_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Real tokens per row, at least one (an all-padding row reads its first token)."""
    return torch.clamp(mask.sum(dim=-1).to(torch.int64), min=1)


def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[B, T] gather indices that reverse each row's first `length` positions in place."""
    t = torch.arange(width, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def masked_mean(x: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, T, D] over each row's real positions (`valid` [B, T], `lengths` [B])."""
    weights = valid.to(x.dtype)[..., None]
    return torch.sum(x * weights, dim=1) / lengths[:, None].to(x.dtype)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b, t]] for x [B, T, D]."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


def single_bias_lstm(input_size: int, hidden: int) -> nn.LSTM:
    """A batch-first nn.LSTM with one trainable bias per gate, as Flax's LSTM cell has."""
    lstm = nn.LSTM(input_size, hidden, batch_first=True)
    # PARITY: torch adds two biases, b_ih + b_hh, where Flax's cell keeps one. Two parameters
    # take two optimizer updates (Adam moves each by about lr), so the sum would drift from
    # Flax's one bias after the first step. b_hh stays in the state_dict as a zero buffer
    # (the porting rule reads it), and b_ih, drawn from torch's U(-1/sqrt(H), 1/sqrt(H)) as
    # Flax draws its bias, is the gate's only bias.
    bias_hh = lstm._parameters.pop("bias_hh_l0")
    lstm.register_buffer("bias_hh_l0", torch.zeros_like(bias_hh.detach()))
    lstm._init_flat_weights()  # the fused kernel reads its weights by name: refresh the list
    return lstm


def add_bilstm(module: nn.Module, input_size: int, hidden: int, layers: int) -> None:
    """Register `layers` bidirectional layers on `module` as fwd{k} and bwd{k}."""
    for k in range(layers):
        width = input_size if k == 0 else 2 * hidden
        module.add_module(f"fwd{k}", single_bias_lstm(width, hidden))
        module.add_module(f"bwd{k}", single_bias_lstm(width, hidden))


def bilstm_max(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor, layers: int):
    """`module`'s fwd{k}/bwd{k} layers over x [B, T, D], max-pooled over real positions."""
    reverse = reverse_index(lengths, x.shape[1])
    for k in range(layers):
        # The forward LSTM's outputs before `length` never see the padding after it; the
        # backward one reads each row reversed within its length, so the same holds.
        forward, _ = getattr(module, f"fwd{k}")(x)
        backward_reversed, _ = getattr(module, f"bwd{k}")(gather_time(x, reverse))
        x = torch.cat([forward, gather_time(backward_reversed, reverse)], dim=-1)
    # Max over the real positions of both directions (final states alone learn far slower).
    valid = torch.arange(x.shape[1], device=x.device)[None, :, None] < lengths[:, None, None]
    return torch.amax(torch.where(valid, x, -torch.inf), dim=1)


class BiLSTM(nn.Module):
    """Embedding, `layers` bidirectional LSTM layers, max-pool over real positions, Linear."""

    def __init__(self, vocab_size: int, embed_dim=128, hidden=128, layers=1, dropout=0.5):
        super().__init__()
        self.layers = layers
        self.embed = nn.Embedding(vocab_size, embed_dim)
        add_bilstm(self, embed_dim, hidden, layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, NUM_CLASSES)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = sequence_lengths(mask)
        features = bilstm_max(self, self.drop(self.embed(tokens)), lengths, self.layers)
        return self.fc(self.drop(features))


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: masked self-attention, then a ReLU MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        # PARITY: key_padding_mask is True where a key is ignored; Flax's mask attends on True.
        h, _ = self.attn(h, h, h, key_padding_mask=~valid, need_weights=False)
        x = x + self.drop(h)
        h = self.fc2(torch.relu(self.fc1(self.norm2(x))))
        return x + self.drop(h)


class Transformer(nn.Module):
    """Token + position embeddings, `layers` encoder blocks, masked pool, Linear.

    `positions`: "learned" (a trained table, `position`) or "sinusoidal" (a fixed one).
    `pool`: "mean" or "max" over the real positions.
    """

    def __init__(
        self, vocab_size: int, max_len: int, embed_dim=128, hidden=128, layers=2, heads=4,
        dropout=0.1, positions="learned", pool="mean",
    ):  # fmt: skip
        super().__init__()
        self.layers = layers
        self.pool = pool
        self.embed = nn.Embedding(vocab_size, embed_dim)
        if positions == "learned":
            self.position = nn.Embedding(max_len, embed_dim)
        else:
            # PARITY: Flax computes the same numpy table in __call__; here a buffer outside
            # the state dict, so neither side has a position parameter.
            self.position = None
            table = torch.from_numpy(sinusoidal_positions(max_len, embed_dim))
            self.register_buffer("sinusoid", table, persistent=False)
        self.drop = nn.Dropout(dropout)
        for k in range(layers):
            self.add_module(f"block{k}", EncoderBlock(embed_dim, heads, hidden, dropout))
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, NUM_CLASSES)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = sequence_lengths(mask)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        valid = positions[None, :] < lengths[:, None]
        if self.position is not None:
            where = self.position(positions)
        else:
            where = self.sinusoid[: tokens.shape[1]]
        x = self.drop(self.embed(tokens) + where[None])
        for k in range(self.layers):
            x = getattr(self, f"block{k}")(x, valid)
        x = self.norm(x)
        if self.pool == "max":
            pooled = torch.amax(x.masked_fill(~valid[..., None], float("-inf")), dim=1)
        else:
            pooled = masked_mean(x, valid, lengths)
        return self.fc(self.drop(pooled))


class BertBlock(nn.Module):
    """Post-LayerNorm BERT block: attention, add & norm, exact-GELU MLP, add & norm.

    Attention is written out (no nn.MultiheadAttention) with Hugging Face's layer names, so
    a pretrained BERT loads by renaming alone (shared_data/text/encoders.py).
    """

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=BERT_LAYER_NORM_EPS)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm2 = nn.LayerNorm(dim, eps=BERT_LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, width, dim = x.shape
        head_dim = dim // self.heads

        def split(h):  # [B, T, D] -> [B, heads, T, head_dim]
            return h.view(batch, width, self.heads, head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        # A padding key gets the lowest float (BERT's additive mask), so it weighs exactly 0.
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = self.drop(torch.softmax(scores, dim=-1))  # BERT drops attention weights too
        h = (weights @ v).transpose(1, 2).reshape(batch, width, dim)
        x = self.norm1(x + self.drop(self.attn_out(h)))
        h = self.fc2(nn.functional.gelu(self.fc1(x)))  # exact (erf) GELU, as BERT's "gelu"
        return self.norm2(x + self.drop(h))


class Bert(nn.Module):
    """BERT's embeddings (token + position + segment 0, LayerNorm), blocks, mean pool, Linear.

    The mean over the real positions ([CLS] and [SEP] included) is what sentence-transformers
    trained all-MiniLM-L6-v2's sentence embedding on; `fc` is the new classification head.
    """

    def __init__(
        self, vocab_size: int, max_len: int, embed_dim=384, hidden=1536, layers=6, heads=12,
        dropout=0.1,
    ):  # fmt: skip
        super().__init__()
        self.layers = layers
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.position = nn.Embedding(max_len, embed_dim)
        self.segment = nn.Embedding(2, embed_dim)  # BERT's token types; one sentence: row 0
        self.embed_norm = nn.LayerNorm(embed_dim, eps=BERT_LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)
        for k in range(layers):
            self.add_module(f"block{k}", BertBlock(embed_dim, heads, hidden, dropout))
        self.fc = nn.Linear(embed_dim, NUM_CLASSES)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor):
        """(the last block's states [B, T, D], valid [B, T], lengths [B])."""
        lengths = sequence_lengths(mask)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        valid = positions[None, :] < lengths[:, None]
        x = self.embed(tokens) + self.position(positions)[None] + self.segment.weight[0]
        x = self.drop(self.embed_norm(x))
        for k in range(self.layers):
            x = getattr(self, f"block{k}")(x, valid)
        return x, valid, lengths

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, valid, lengths = self.encode(tokens, mask)
        pooled = masked_mean(x, valid, lengths)
        return self.fc(self.drop(pooled))


class BertLSTM(Bert):
    """A BERT's last states read by `rnn_layers` BiLSTM layers, max-pooled, then Linear.

    The pretrained encoder as a feature extractor for the BiLSTM classifier (bentrevett's
    "Transformers for Sentiment Analysis" puts a bidirectional GRU on a frozen BERT); with
    encoder_lr_scale=0 only fwd{k}, bwd{k} and fc learn.
    """

    def __init__(
        self, vocab_size: int, max_len: int, embed_dim=384, hidden=1536, layers=6, heads=12,
        dropout=0.1, rnn_hidden=128, rnn_layers=1,
    ):  # fmt: skip
        super().__init__(vocab_size, max_len, embed_dim, hidden, layers, heads, dropout)
        self.rnn_layers = rnn_layers
        del self.fc  # the head reads the BiLSTM: registered after it, as Flax orders it
        add_bilstm(self, embed_dim, rnn_hidden, rnn_layers)
        self.fc = nn.Linear(2 * rnn_hidden, NUM_CLASSES)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, _, lengths = self.encode(tokens, mask)
        features = bilstm_max(self, x, lengths, self.rnn_layers)
        return self.fc(self.drop(features))


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
