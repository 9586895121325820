"""Seq2seq models in Flax Linen: a GRU encoder-decoder with Bahdanau attention, a transformer.

Read beside torchpath/seq2seq/model.py: same classes, same submodule names, same order. Both
models share one decoding interface, which jaxpath/seq2seq/decode.py drives:

    memory = encode(source, source_mask)            # what every decoder step reads
    state = initial_state(memory, max_len)          # GRU: its hidden; transformer: a buffer
    logits, state, attention = decode_step(memory, state, tokens, t)

and `__call__(source, source_mask, decoder_inputs)` gives the logits of a whole target
[B, T, V] (teacher-forced; the GRU feeds its own predictions back at 1 - teacher_forcing).
Ids are int32, masks float32 and left-aligned; a row's length is mask.sum() (at least 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.init import TorchDense, torch_bias_init, torch_kernel_init
from jaxpath.common.rnn import TorchGRU

# PARITY: torch's nn.Embedding draws N(0, 1); Flax's Embed scales by 1/sqrt(features).
embedding_init = nn.initializers.normal(stddev=1.0)
MASKED = -1e10  # an attention score that softmax turns into an exact zero (bentrevett's)


def sequence_lengths(mask):
    """Real tokens per row, at least one (an all-padding row reads its first token)."""
    return jnp.maximum(jnp.sum(mask, axis=-1).astype(jnp.int32), 1)


def valid_positions(mask):
    """[B, T] bool, True on each row's first `length` positions."""
    return jnp.arange(mask.shape[-1])[None, :] < sequence_lengths(mask)[:, None]


def reverse_index(lengths, width: int):
    """[B, T] gather indices that reverse each row's first `length` positions in place."""
    t = jnp.arange(width)[None, :]
    return jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def gather_time(x, index):
    """x[b, index[b, t]] for x [B, T, D]."""
    return jnp.take_along_axis(x, index[..., None], axis=1)


class SplitDense(nn.Module):
    """TorchDense(features, in_features) that can also apply a slice of its input rows alone.

    W [x; y] + b == W[:n] x + (W[n:] y + b). Bahdanau's energy reads [decoder state; encoder
    output]: split this way, the encoder's half is computed once per sentence instead of once
    per decoder step ([B, S, 3H] x [3H, H] a step becomes [B, H] x [H, H]). Same parameters
    ("kernel" [in, out], "bias") and initialisation as nn.Dense: ported weights and seeds are
    unchanged.
    """

    features: int
    in_features: int

    def setup(self):
        self.kernel = self.param("kernel", torch_kernel_init, (self.in_features, self.features))
        self.bias = self.param("bias", torch_bias_init(self.in_features), (self.features,))

    def __call__(self, x, start: int = 0, bias: bool = True):
        """x @ kernel[start : start + x.shape[-1]] (+ bias)."""
        y = x @ self.kernel[start : start + x.shape[-1]]
        return y + self.bias if bias else y


def _gru(hidden: int, name: str) -> TorchGRU:
    # PARITY: one trainable bias per gate (torch's twin keeps bias_hh as a zero buffer).
    return TorchGRU(hidden, batch_first=True, recurrent_bias=False, name=name)


class GRUAttention(nn.Module):
    """bentrevett's notebook 3: bidirectional GRU encoder, additive attention, GRU decoder."""

    vocab_size: int
    embed_dim: int = 256
    hidden: int = 512
    dropout: float = 0.5
    teacher_forcing: float = 0.5

    def setup(self):
        h = self.hidden
        self.src_embed = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=embedding_init)
        self.enc_fwd, self.enc_bwd = _gru(h, "enc_fwd"), _gru(h, "enc_bwd")
        self.enc_fc = TorchDense(h, 2 * h)  # both final states -> the decoder's first state
        self.attn = SplitDense(h, 3 * h)  # [decoder state; encoder output] -> energy
        self.attn_v = TorchDense(1, h, use_bias=False)
        self.tgt_embed = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=embedding_init)
        self.dec_rnn = _gru(h, "dec_rnn")  # reads [embedding; context]
        self.out = TorchDense(self.vocab_size, 3 * h + self.embed_dim)
        self.drop = nn.Dropout(self.dropout)

    def encode(self, source, source_mask, train: bool = False):
        """Encoder outputs [B, S, 2H], the source mask, and the decoder's first state [B, H]."""
        lengths = sequence_lengths(source_mask)
        reverse = reverse_index(lengths, source.shape[1])
        x = self.drop(self.src_embed(source), deterministic=not train)
        # The forward GRU's outputs before `length` never see the padding after it; the
        # backward one reads each row reversed within its length, so the same holds.
        forward, _ = self.enc_fwd(x)
        backward = gather_time(self.enc_bwd(gather_time(x, reverse))[0], reverse)
        last = jnp.take_along_axis(forward, (lengths - 1)[:, None, None], axis=1)[:, 0]
        hidden = jnp.tanh(self.enc_fc(jnp.concatenate([last, backward[:, 0]], axis=-1)))
        outputs = jnp.concatenate([forward, backward], axis=-1)
        keys = self.attn(outputs, start=self.hidden)  # the energy's encoder half, once
        valid = valid_positions(source_mask)
        return {"outputs": outputs, "keys": keys, "valid": valid, "hidden": hidden}

    def initial_state(self, memory, max_len: int):
        """The decoder's state before the first step: the encoder's summary [B, H]."""
        return memory["hidden"]

    def attend(self, hidden, keys, valid):
        """Bahdanau attention [B, S] of the decoder state over the real source positions.

        energy = tanh(attn([hidden; output])), with the output's half precomputed as `keys`.
        """
        energy = jnp.tanh(keys + self.attn(hidden, bias=False)[:, None, :])
        scores = jnp.where(valid, self.attn_v(energy)[..., 0], MASKED)
        return jax.nn.softmax(scores, axis=-1)

    def decode_step(self, memory, hidden, tokens, t=None, train: bool = False):
        """(logits [B, V], next state [B, H], attention [B, S]) after reading `tokens` [B]."""
        embedded = self.drop(self.tgt_embed(tokens), deterministic=not train)
        weights = self.attend(hidden, memory["keys"], memory["valid"])
        context = jnp.einsum("bs,bsd->bd", weights, memory["outputs"])
        rnn_input = jnp.concatenate([embedded, context], axis=-1)[:, None, :]
        output, h_n = self.dec_rnn(rnn_input, initial_state=hidden[None])
        logits = self.out(jnp.concatenate([output[:, 0], context, embedded], axis=-1))
        return logits, h_n[0], weights

    def _step(self, carry, reference, train: bool):
        """One teacher-forcing step under nn.scan: feed the reference or the prediction."""
        memory, hidden, tokens = carry
        logits, hidden, weights = self.decode_step(memory, hidden, tokens, train=train)
        if train and self.teacher_forcing < 1.0:
            # One draw per step for the whole batch (bentrevett's), from the "teacher" stream.
            teach = jax.random.bernoulli(self.make_rng("teacher"), self.teacher_forcing)
            tokens = jnp.where(teach, reference, jnp.argmax(logits, -1).astype(tokens.dtype))
        else:
            tokens = reference
        return (memory, hidden, tokens), (logits, weights)

    def __call__(self, source, source_mask, decoder_inputs, train: bool = False):
        """Logits [B, T, V] of every target position (decoder_inputs [B, T] start with BOS)."""
        logits, _ = self.run_decoder(source, source_mask, decoder_inputs, train)
        return logits

    def run_decoder(self, source, source_mask, decoder_inputs, train: bool = False):
        """(logits [B, T, V], attention [B, T, S]) of the decoder over `decoder_inputs`."""
        memory = self.encode(source, source_mask, train)
        # Step t reads token t and emits position t; the next reference is token t + 1.
        references = jnp.concatenate(
            [decoder_inputs[:, 1:], jnp.zeros_like(decoder_inputs[:, :1])], axis=1
        )
        scan = nn.scan(
            lambda module, carry, ref: module._step(carry, ref, train),
            variable_broadcast="params",
            split_rngs={"params": False, "dropout": True, "teacher": True},
            in_axes=1,
            out_axes=1,
        )
        carry = (memory, memory["hidden"], decoder_inputs[:, 0])
        _, (logits, weights) = scan(self, carry, references)
        return logits, weights

    def attention_maps(self, source, source_mask, decoder_inputs):
        """The decoder's attention over the source at each step [B, T, S] (teacher-forced)."""
        return self.run_decoder(source, source_mask, decoder_inputs)[1]


class EncoderBlock(nn.Module):
    """Pre-LayerNorm encoder block: masked self-attention, then a ReLU MLP."""

    dim: int
    heads: int
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, x, valid, train: bool = False):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        h = _norm("norm1")(x)
        h = _attention(self.heads, "attn")(h, mask=valid[:, None, None, :])
        x = x + drop(h)
        h = _mlp(self, _norm("norm2")(x))
        return x + drop(h)


class DecoderBlock(nn.Module):
    """Pre-LayerNorm decoder block: causal self-attention, cross-attention, a ReLU MLP."""

    dim: int
    heads: int
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, y, memory, causal, source_valid, train=False, sow_weights=False):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        h = _norm("norm1")(y)
        # Causal alone suffices: padding sits after a row's real tokens, so no real
        # position's query reaches a padded key; padded positions are not scored.
        y = y + drop(_attention(self.heads, "self_attn")(h, mask=causal[None, None]))
        h = _norm("norm2")(y)
        h = _attention(self.heads, "cross_attn")(
            h, memory, mask=source_valid[:, None, None, :], sow_weights=sow_weights
        )
        y = y + drop(h)
        return y + drop(_mlp(self, _norm("norm3")(y)))


def _norm(name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-5, name=name)  # PARITY: torch's epsilon is 1e-5, Flax's 1e-6


def _attention(heads: int, name: str) -> nn.MultiHeadDotProductAttention:
    return nn.MultiHeadDotProductAttention(
        heads,
        # PARITY: torch's in_proj is xavier_uniform over [3E, E] (variance 0.5/E), its
        # out_proj a Linear; both biases start at zero, as Flax's do.
        kernel_init=nn.initializers.variance_scaling(0.5, "fan_in", "uniform"),
        out_kernel_init=torch_kernel_init,
        name=name,
    )  # PARITY: masks attend where True; torch's masks are True where a key is ignored


def _mlp(block: nn.Module, h):
    fc1 = TorchDense(block.hidden, block.dim, name="fc1")
    return TorchDense(block.dim, block.hidden, name="fc2")(nn.relu(fc1(h)))


class Transformer(nn.Module):
    """Pre-LN encoder-decoder: learned positions, `layers` blocks a side, output projection."""

    vocab_size: int
    max_source_len: int
    max_target_len: int
    embed_dim: int = 256
    hidden: int = 512
    layers: int = 3
    heads: int = 8
    dropout: float = 0.1

    def setup(self):
        def embed(size):
            return nn.Embed(size, self.embed_dim, embedding_init=embedding_init)

        self.src_embed, self.src_position = embed(self.vocab_size), embed(self.max_source_len)
        self.tgt_embed, self.tgt_position = embed(self.vocab_size), embed(self.max_target_len)
        sizes = (self.embed_dim, self.heads, self.hidden, self.dropout)
        self.enc = [EncoderBlock(*sizes, name=f"enc{k}") for k in range(self.layers)]
        self.enc_norm = _norm("enc_norm")
        self.dec = [DecoderBlock(*sizes, name=f"dec{k}") for k in range(self.layers)]
        self.dec_norm = _norm("dec_norm")
        self.out = TorchDense(self.vocab_size, self.embed_dim)
        self.drop = nn.Dropout(self.dropout)

    def encode(self, source, source_mask, train: bool = False):
        """Encoder states [B, S, E] and the source's real positions [B, S]."""
        valid = valid_positions(source_mask)
        positions = jnp.arange(source.shape[1])
        x = self.src_embed(source) + self.src_position(positions)[None]
        x = self.drop(x, deterministic=not train)
        for block in self.enc:
            x = block(x, valid, train)
        return {"outputs": self.enc_norm(x), "valid": valid}

    def decode(self, memory, decoder_inputs, train: bool = False, sow_weights: bool = False):
        """Logits [B, T, V] of every position of `decoder_inputs`, each seeing its prefix."""
        return self.out(self.decoder_states(memory, decoder_inputs, train, sow_weights))

    def decoder_states(self, memory, decoder_inputs, train=False, sow_weights=False):
        """The decoder's normalised output states [B, T, E] (before the output projection)."""
        width = decoder_inputs.shape[1]
        positions = jnp.arange(width)
        causal = positions[:, None] >= positions[None, :]
        y = self.tgt_embed(decoder_inputs) + self.tgt_position(positions)[None]
        y = self.drop(y, deterministic=not train)
        for k, block in enumerate(self.dec):
            last = sow_weights and k == self.layers - 1
            y = block(y, memory["outputs"], causal, memory["valid"], train, last)
        return self.dec_norm(y)

    def initial_state(self, memory, max_len: int):
        """The tokens read so far [B, max_len] (filled in step by step; [PAD] = 0 after)."""
        return jnp.zeros((memory["outputs"].shape[0], max_len), jnp.int32)

    def decode_step(self, memory, buffer, tokens, t, train: bool = False):
        """(logits [B, V], buffer with `tokens` at position t, no attention: zeros [B, S])."""
        # No key/value cache: the whole (causal) decoder runs over the fixed-size buffer and
        # position t is read, so every step has one shape under jit.
        buffer = jax.lax.dynamic_update_slice(buffer, tokens[:, None].astype(buffer.dtype), (0, t))
        states = self.decoder_states(memory, buffer, train)
        row = jax.lax.dynamic_index_in_dim(states, t, axis=1, keepdims=False)
        return self.out(row), buffer, jnp.zeros(memory["valid"].shape, jnp.float32)

    def __call__(self, source, source_mask, decoder_inputs, train: bool = False):
        """Logits [B, T, V] of every target position (decoder_inputs [B, T] start with BOS)."""
        return self.decode(self.encode(source, source_mask, train), decoder_inputs, train)

    def attention_maps(self, source, source_mask, decoder_inputs):
        """The last decoder block's cross-attention, mean over heads [B, T, S].

        Apply with mutable=["intermediates"]: the weights are sown there, then read back.
        """
        self.decode(self.encode(source, source_mask), decoder_inputs, sow_weights=True)
        sown = self.variables["intermediates"][f"dec{self.layers - 1}"]["cross_attn"]
        return jnp.mean(sown["attention_weights"][0], axis=1)


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


def dummy_input(config, batch_size: int = 1):
    """(source, source_mask, decoder_inputs) of the model's input shapes."""
    source = jnp.zeros((batch_size, config.max_source_len), jnp.int32)
    targets = jnp.zeros((batch_size, config.max_target_len), jnp.int32)
    return source, jnp.ones(source.shape, jnp.float32), targets
