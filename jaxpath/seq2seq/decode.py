"""Greedy and beam-search decoding in JAX: fixed-length loops compiled whole by jax.jit.

Read beside torchpath/seq2seq/decode.py, the eager twin. Both searches drive a step function

    step_fn(state, tokens [N], t) -> (logits [N, V], state, attention [N, S])

(the model's `decode_step` over its encoded source) for at most `max_len` steps, with a
mask of finished rows: a row that emitted [EOS] emits [PAD] from then on. Greedy decoding is
a `lax.scan` over the max length; beam search a `lax.while_loop` that stops when every beam
has finished, its shapes fixed ([N, K] scores, [N, K, max_len] tokens), so XLA compiles the
whole search into one `while` (docs/SEQ2SEQ.md shows it in the optimized HLO).

Beam search keeps the K best prefixes by summed log-probability; a finished beam competes
with its score unchanged (extended by [PAD] at no cost). The winner maximises
score / lp(length) with GNMT's lp = ((5 + length) / 6)^alpha (Wu et al. 2016), length
counting the [EOS]. With K at least the number of possible sequences it is exhaustive search
(tests/test_seq2seq.py checks it), and with K = 1 it is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from shared_data.text.tokenize import BOS_ID, EOS_ID, PAD_ID

StepFn = Callable[[object, jax.Array, jax.Array], tuple[jax.Array, object, jax.Array]]


def greedy_search(step_fn: StepFn, state, batch_size: int, max_len: int):
    """(tokens int32 [N, max_len], attention [N, max_len, S]): the argmax at every step."""

    def step(carry, t):
        state, tokens, finished = carry
        logits, state, attention = step_fn(state, tokens, t)
        tokens = jnp.where(finished, PAD_ID, jnp.argmax(logits, -1).astype(jnp.int32))
        return (state, tokens, finished | (tokens == EOS_ID)), (tokens, attention)

    start = jnp.full((batch_size,), BOS_ID, jnp.int32)
    carry = (state, start, jnp.zeros((batch_size,), bool))
    _, (tokens, attention) = jax.lax.scan(step, carry, jnp.arange(max_len))
    return tokens.T, jnp.swapaxes(attention, 0, 1)


def length_penalty(lengths, alpha: float):
    """GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + lengths) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn, state, batch_size: int, beam_size: int, max_len: int, alpha: float
):
    """Tokens int32 [N, max_len] of the best beam; `state` holds N * beam_size rows, beam-major."""
    n, k = batch_size, beam_size
    # Only beam 0 is alive at first, so the first step does not pick one token K times.
    scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf), (n, 1))
    zeros = jnp.zeros((n, k), jnp.int32)
    carry = (0, state, jnp.full((n * k,), BOS_ID, jnp.int32), scores, zeros.astype(bool), zeros)
    carry = (*carry, jnp.zeros((n, k, max_len), jnp.int32))

    def running(carry):
        t, *_, finished, _, _ = carry
        return (t < max_len) & ~jnp.all(finished)

    def step(carry):
        t, state, tokens, scores, finished, lengths, outputs = carry
        logits, state, _ = step_fn(state, tokens, t)
        log_probs = jax.nn.log_softmax(logits).reshape(n, k, -1)
        vocab = log_probs.shape[-1]
        # A finished beam extends by [PAD] at no cost and by nothing else.
        stay = jnp.where(jnp.arange(vocab) == PAD_ID, 0.0, -jnp.inf)
        log_probs = jnp.where(finished[..., None], stay, log_probs)
        scores, best = jax.lax.top_k((scores[..., None] + log_probs).reshape(n, -1), k)
        beam, tokens = best // vocab, (best % vocab).astype(jnp.int32)
        was_finished = jnp.take_along_axis(finished, beam, axis=1)
        lengths = jnp.take_along_axis(lengths, beam, axis=1) + (~was_finished)
        outputs = jnp.take_along_axis(outputs, beam[..., None], axis=1)
        outputs = jnp.where(jnp.arange(max_len) == t, tokens[..., None], outputs)
        rows = (jnp.arange(n)[:, None] * k + beam).reshape(-1)
        state = jax.tree.map(lambda x: x[rows], state)
        finished = was_finished | (tokens == EOS_ID)
        return t + 1, state, tokens.reshape(-1), scores, finished, lengths, outputs

    *_, scores, _, lengths, outputs = jax.lax.while_loop(running, step, carry)
    winner = jnp.argmax(scores / length_penalty(lengths, alpha), axis=1)
    return jnp.take_along_axis(outputs, winner[:, None, None], axis=1)[:, 0]


def tile_beams(tree, beam_size: int):
    """Every array of `tree` with each row repeated beam_size times ([N, ...] -> [N*K, ...])."""
    return jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), tree)


def _step_fn(state, params, memory) -> StepFn:
    def step_fn(decoder_state, tokens, t):
        return state.apply_fn(
            {"params": params}, memory, decoder_state, tokens, t, method="decode_step"
        )

    return step_fn


def search(state, params, source, source_mask, decode: str, beam_size: int, max_len: int,
           alpha: float):  # fmt: skip
    """Decoded ids [N, max_len] of each source row (see the module doc)."""
    variables = {"params": params}
    memory = state.apply_fn(variables, source, source_mask, method="encode")
    if decode == "beam":
        memory = tile_beams(memory, beam_size)
    decoder_state = state.apply_fn(variables, memory, max_len, method="initial_state")
    step_fn = _step_fn(state, params, memory)
    if decode == "greedy":
        return greedy_search(step_fn, decoder_state, source.shape[0], max_len)[0]
    return beam_search(step_fn, decoder_state, source.shape[0], beam_size, max_len, alpha)


@jax.jit
def translate(state, batch):
    """Decoded ids [B, max_len] per the state's options (greedy or beam), compiled whole."""
    options = state.options
    return search(
        state,
        state.params,
        batch["source"],
        batch["source_mask"],
        options.decode,
        options.beam_size,
        options.max_len,
        options.length_penalty,
    )


@jax.jit
def attention_maps(state, batch):
    """(greedy ids [B, L], the decoder's attention over the source [B, L, S]) of each row."""
    options = state.options
    tokens = search(
        state, state.params, batch["source"], batch["source_mask"], "greedy", 1,
        options.max_len, 0.0,
    )  # fmt: skip
    inputs = jnp.concatenate([jnp.full_like(tokens[:, :1], BOS_ID), tokens[:, :-1]], axis=1)
    weights, _ = state.apply_fn(
        {"params": state.params},
        batch["source"],
        batch["source_mask"],
        inputs,
        method="attention_maps",
        mutable=["intermediates"],
    )
    return tokens, weights
