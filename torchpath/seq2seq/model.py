"""Seq2seq models in PyTorch: a GRU encoder-decoder with Bahdanau attention, a transformer.

Read beside jaxpath/seq2seq/model.py: same classes, same submodule names, same order. Both
models share one decoding interface, which torchpath/seq2seq/decode.py drives:

    memory = encode(source, source_mask)            # what every decoder step reads
    state = initial_state(memory, max_len)          # GRU: its hidden; transformer: a buffer
    logits, state, attention = decode_step(memory, state, tokens, t)

and `forward(source, source_mask, decoder_inputs)` gives the logits of a whole target
[B, T, V] (teacher-forced; the GRU feeds its own predictions back at 1 - teacher_forcing,
drawing per step from `teacher_generator`). Masks are float32 and left-aligned; a row's
length is mask.sum() (at least 1).
"""

from __future__ import annotations

import torch
from torch import nn

MASKED = -1e10  # an attention score that softmax turns into an exact zero (bentrevett's)


def sequence_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Real tokens per row, at least one (an all-padding row reads its first token)."""
    return torch.clamp(mask.sum(dim=-1).to(torch.int64), min=1)


def valid_positions(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] bool, True on each row's first `length` positions."""
    return (
        torch.arange(mask.shape[-1], device=mask.device)[None, :] < sequence_lengths(mask)[:, None]
    )


def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[B, T] gather indices that reverse each row's first `length` positions in place."""
    t = torch.arange(width, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b, t]] for x [B, T, D]."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


def linear_rows(layer: nn.Linear, x: torch.Tensor, start: int = 0, bias: bool = True):
    """layer applied to a slice of its inputs: W[:, start : start + x.shape[-1]] x (+ b).

    W [x; y] + b == W[:, :n] x + (W[:, n:] y + b). Bahdanau's energy reads [decoder state;
    encoder output]: split this way, the encoder's half is computed once per sentence instead
    of once per decoder step ([B, S, 3H] x [3H, H] a step becomes [B, H] x [H, H]), with the
    same nn.Linear parameters.
    """
    weight = layer.weight[:, start : start + x.shape[-1]]
    return nn.functional.linear(x, weight, layer.bias if bias else None)


def single_bias_gru(input_size: int, hidden: int) -> nn.GRU:
    """A batch-first nn.GRU with one trainable bias per gate (b_ih), as its Flax twin has."""
    gru = nn.GRU(input_size, hidden, batch_first=True)
    # PARITY: torch keeps two biases per gate, b_ih + b_hh; Flax's cell fuses r and z into
    # one. Two parameters take two optimizer updates (Adam moves each by about lr), so the
    # sum would drift from Flax's one bias after the first step (docs/RESULTS.md, Sentiment).
    # b_hh stays in the state_dict as a zero buffer, which the porting rule reads as
    # "no b_hn" (jaxpath/common/rnn.py's SingleBiasGRUCell).
    bias_hh = gru._parameters.pop("bias_hh_l0")
    gru.register_buffer("bias_hh_l0", torch.zeros_like(bias_hh.detach()))
    gru._init_flat_weights()  # the fused kernel reads its weights by name: refresh the list
    return gru


class GRUAttention(nn.Module):
    """bentrevett's notebook 3: bidirectional GRU encoder, additive attention, GRU decoder."""

    def __init__(self, vocab_size: int, embed_dim=256, hidden=512, dropout=0.5,
                 teacher_forcing=0.5):  # fmt: skip
        super().__init__()
        h = hidden
        self.teacher_forcing = teacher_forcing
        self.teacher_generator: torch.Generator | None = None  # set by train_step
        self.src_embed = nn.Embedding(vocab_size, embed_dim)
        self.enc_fwd, self.enc_bwd = single_bias_gru(embed_dim, h), single_bias_gru(embed_dim, h)
        self.enc_fc = nn.Linear(2 * h, h)  # both final states -> the decoder's first state
        self.attn = nn.Linear(3 * h, h)  # [decoder state; encoder output] -> energy
        self.attn_v = nn.Linear(h, 1, bias=False)
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim)
        self.dec_rnn = single_bias_gru(embed_dim + 2 * h, h)  # reads [embedding; context]
        self.out = nn.Linear(3 * h + embed_dim, vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> dict:
        """Encoder outputs [B, S, 2H], the source mask, and the decoder's first state [B, H]."""
        lengths = sequence_lengths(source_mask)
        reverse = reverse_index(lengths, source.shape[1])
        x = self.drop(self.src_embed(source))
        # The forward GRU's outputs before `length` never see the padding after it; the
        # backward one reads each row reversed within its length, so the same holds.
        forward, _ = self.enc_fwd(x)
        backward = gather_time(self.enc_bwd(gather_time(x, reverse))[0], reverse)
        last = torch.gather(
            forward, 1, (lengths - 1)[:, None, None].expand(-1, 1, forward.shape[-1])
        )
        hidden = torch.tanh(self.enc_fc(torch.cat([last[:, 0], backward[:, 0]], dim=-1)))
        outputs = torch.cat([forward, backward], dim=-1)
        keys = linear_rows(self.attn, outputs, start=hidden.shape[-1])  # the energy's encoder half
        valid = valid_positions(source_mask)
        return {"outputs": outputs, "keys": keys, "valid": valid, "hidden": hidden}

    def initial_state(self, memory: dict, max_len: int) -> torch.Tensor:
        """The decoder's state before the first step: the encoder's summary [B, H]."""
        return memory["hidden"]

    def attend(self, hidden, keys, valid):
        """Bahdanau attention [B, S] of the decoder state over the real source positions.

        energy = tanh(attn([hidden; output])), with the output's half precomputed as `keys`.
        """
        energy = torch.tanh(keys + linear_rows(self.attn, hidden, bias=False)[:, None, :])
        scores = torch.where(valid, self.attn_v(energy)[..., 0], MASKED)
        return torch.softmax(scores, dim=-1)

    def decode_step(self, memory: dict, hidden, tokens, t=None):
        """(logits [B, V], next state [B, H], attention [B, S]) after reading `tokens` [B]."""
        embedded = self.drop(self.tgt_embed(tokens))
        weights = self.attend(hidden, memory["keys"], memory["valid"])
        context = torch.einsum("bs,bsd->bd", weights, memory["outputs"])
        rnn_input = torch.cat([embedded, context], dim=-1)[:, None, :]
        output, h_n = self.dec_rnn(rnn_input, hidden[None].contiguous())
        logits = self.out(torch.cat([output[:, 0], context, embedded], dim=-1))
        return logits, h_n[0], weights

    def forward(self, source, source_mask, decoder_inputs):
        """Logits [B, T, V] of every target position (decoder_inputs [B, T] start with BOS)."""
        return self.run_decoder(source, source_mask, decoder_inputs)[0]

    def run_decoder(self, source, source_mask, decoder_inputs):
        """(logits [B, T, V], attention [B, T, S]) of the decoder over `decoder_inputs`."""
        memory = self.encode(source, source_mask)
        # PARITY: JAX scans this loop (nn.scan) and draws from its "teacher" stream.
        hidden, tokens, logits, weights = memory["hidden"], decoder_inputs[:, 0], [], []
        for t in range(decoder_inputs.shape[1]):
            step_logits, hidden, step_weights = self.decode_step(memory, hidden, tokens, t)
            logits.append(step_logits)
            weights.append(step_weights)
            reference = decoder_inputs[:, t + 1] if t + 1 < decoder_inputs.shape[1] else tokens
            if self.training and self.teacher_forcing < 1.0:
                # One draw per step for the whole batch (bentrevett's), from the "teacher" stream.
                draw = torch.rand((), generator=self.teacher_generator)
                teach = bool(draw < self.teacher_forcing)
                tokens = reference if teach else step_logits.argmax(-1).to(reference.dtype)
            else:
                tokens = reference
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)

    def attention_maps(self, source, source_mask, decoder_inputs):
        """The decoder's attention over the source at each step [B, T, S] (teacher-forced)."""
        return self.run_decoder(source, source_mask, decoder_inputs)[1]


class EncoderBlock(nn.Module):
    """Pre-LayerNorm encoder block: masked self-attention, then a ReLU MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, valid):
        h = self.norm1(x)
        # PARITY: key_padding_mask is True where a key is ignored; Flax's mask attends on True.
        h, _ = self.attn(h, h, h, key_padding_mask=~valid, need_weights=False)
        x = x + self.drop(h)
        return x + self.drop(self.fc2(torch.relu(self.fc1(self.norm2(x)))))


class DecoderBlock(nn.Module):
    """Pre-LayerNorm decoder block: causal self-attention, cross-attention, a ReLU MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm3 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, y, memory, causal, source_valid, need_weights: bool = False):
        h = self.norm1(y)
        # Causal alone suffices: padding sits after a row's real tokens, so no real
        # position's query reaches a padded key; padded positions are not scored.
        # PARITY: attn_mask is True where attention is forbidden; Flax's mask is the opposite.
        h, _ = self.self_attn(h, h, h, attn_mask=~causal, need_weights=False)
        y = y + self.drop(h)
        h = self.norm2(y)
        h, weights = self.cross_attn(
            h, memory, memory, key_padding_mask=~source_valid, need_weights=need_weights
        )
        y = y + self.drop(h)
        return y + self.drop(self.fc2(torch.relu(self.fc1(self.norm3(y))))), weights


class Transformer(nn.Module):
    """Pre-LN encoder-decoder: learned positions, `layers` blocks a side, output projection."""

    def __init__(
        self, vocab_size: int, max_source_len: int, max_target_len: int, embed_dim=256,
        hidden=512, layers=3, heads=8, dropout=0.1,
    ):  # fmt: skip
        super().__init__()
        self.layers = layers
        self.src_embed = nn.Embedding(vocab_size, embed_dim)
        self.src_position = nn.Embedding(max_source_len, embed_dim)
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim)
        self.tgt_position = nn.Embedding(max_target_len, embed_dim)
        sizes = (embed_dim, heads, hidden, dropout)
        for k in range(layers):
            self.add_module(f"enc{k}", EncoderBlock(*sizes))
        self.enc_norm = nn.LayerNorm(embed_dim)
        for k in range(layers):
            self.add_module(f"dec{k}", DecoderBlock(*sizes))
        self.dec_norm = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(embed_dim, vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, source, source_mask) -> dict:
        """Encoder states [B, S, E] and the source's real positions [B, S]."""
        valid = valid_positions(source_mask)
        positions = torch.arange(source.shape[1], device=source.device)
        x = self.drop(self.src_embed(source) + self.src_position(positions)[None])
        for k in range(self.layers):
            x = getattr(self, f"enc{k}")(x, valid)
        return {"outputs": self.enc_norm(x), "valid": valid}

    def decode(self, memory: dict, decoder_inputs, need_weights: bool = False):
        """(logits [B, T, V] of every position, each seeing its prefix; last cross-attention)."""
        states, weights = self.decoder_states(memory, decoder_inputs, need_weights)
        return self.out(states), weights

    def decoder_states(self, memory: dict, decoder_inputs, need_weights: bool = False):
        """(the decoder's normalised output states [B, T, E], the last cross-attention)."""
        positions = torch.arange(decoder_inputs.shape[1], device=decoder_inputs.device)
        causal = positions[:, None] >= positions[None, :]
        y = self.drop(self.tgt_embed(decoder_inputs) + self.tgt_position(positions)[None])
        weights = None
        for k in range(self.layers):
            last = need_weights and k == self.layers - 1
            y, weights = getattr(self, f"dec{k}")(
                y, memory["outputs"], causal, memory["valid"], last
            )
        return self.dec_norm(y), weights

    def initial_state(self, memory: dict, max_len: int) -> torch.Tensor:
        """The tokens read so far [B, max_len] (filled in step by step; [PAD] = 0 after)."""
        return torch.zeros(
            memory["outputs"].shape[0], max_len, dtype=torch.int64, device=memory["outputs"].device
        )

    def decode_step(self, memory: dict, buffer, tokens, t: int):
        """(logits [B, V], buffer with `tokens` at position t, no attention: zeros [B, S])."""
        # PARITY: JAX runs the decoder over the whole fixed-size buffer (one shape under jit);
        # eagerly, the first t + 1 positions give the same row t at a fraction of the cost.
        buffer = buffer.clone()
        buffer[:, t] = tokens
        states, _ = self.decoder_states(memory, buffer[:, : t + 1])
        return (
            self.out(states[:, t]),
            buffer,
            torch.zeros(memory["valid"].shape, device=buffer.device),
        )

    def forward(self, source, source_mask, decoder_inputs):
        """Logits [B, T, V] of every target position (decoder_inputs [B, T] start with BOS)."""
        return self.decode(self.encode(source, source_mask), decoder_inputs)[0]

    def attention_maps(self, source, source_mask, decoder_inputs):
        """The last decoder block's cross-attention, mean over heads [B, T, S]."""
        return self.decode(self.encode(source, source_mask), decoder_inputs, need_weights=True)[1]


MODELS = {"transformer": Transformer, "gru": GRUAttention}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    shared = dict(
        vocab_size=config.vocab_size,
        embed_dim=config.embed_dim,
        hidden=config.hidden,
        dropout=config.dropout,
    )
    if config.model == "gru":
        return GRUAttention(teacher_forcing=config.teacher_forcing, **shared)
    return Transformer(
        max_source_len=config.max_source_len,
        max_target_len=config.max_target_len,
        layers=config.layers,
        heads=config.heads,
        **shared,
    )
