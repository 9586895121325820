"""Greedy and beam-search decoding in PyTorch: eager loops, one step of kernels at a time.

Read beside jaxpath/seq2seq/decode.py, the compiled twin: the same searches over the same
step function

    step_fn(state, tokens [N], t) -> (logits [N, V], state, attention [N, S])

with the same finished-masks, top-k and GNMT length penalty, written as Python loops: each
iteration launches the step's kernels from Python, and the loop stops as soon as every row
has finished (a data-dependent exit that torch.export and torch.compile cannot trace, so it
is skipped while they trace; the result is the same). docs/SEQ2SEQ.md compares the two.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from shared_data.text.tokenize import BOS_ID, EOS_ID, PAD_ID

StepFn = Callable[[object, torch.Tensor, int], tuple[torch.Tensor, object, torch.Tensor]]


def _all_done(finished: torch.Tensor) -> bool:
    """Whether every row has finished; never while tracing (a data-dependent branch)."""
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
    return not tracing and bool(finished.all())


def greedy_search(step_fn: StepFn, state, batch_size: int, max_len: int, device="cpu"):
    """(tokens int64 [N, max_len], attention [N, max_len, S]): the argmax at every step."""
    tokens = torch.full((batch_size,), BOS_ID, dtype=torch.int64, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    outputs, weights = [], []
    for t in range(max_len):
        if _all_done(finished):  # the rest would be [PAD]: pad outputs, repeat no attention
            outputs.append(torch.full_like(tokens, PAD_ID))
            weights.append(torch.zeros_like(weights[-1]))
            continue
        logits, state, attention = step_fn(state, tokens, t)
        tokens = torch.where(finished, PAD_ID, logits.argmax(-1))
        finished = finished | (tokens == EOS_ID)
        outputs.append(tokens)
        weights.append(attention)
    return torch.stack(outputs, dim=1), torch.stack(weights, dim=1)


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + lengths) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn, state, batch_size: int, beam_size: int, max_len: int, alpha: float,
    device="cpu",
):  # fmt: skip
    """Tokens int64 [N, max_len] of the best beam; `state` holds N * beam_size rows, beam-major."""
    n, k = batch_size, beam_size
    # Only beam 0 is alive at first, so the first step does not pick one token K times.
    scores = torch.full((n, k), -torch.inf, device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((n * k,), BOS_ID, dtype=torch.int64, device=device)
    finished = torch.zeros((n, k), dtype=torch.bool, device=device)
    lengths = torch.zeros((n, k), dtype=torch.int64, device=device)
    outputs = torch.zeros((n, k, max_len), dtype=torch.int64, device=device)
    for t in range(max_len):
        if _all_done(finished):
            break
        logits, state, _ = step_fn(state, tokens, t)
        log_probs = torch.log_softmax(logits, dim=-1).reshape(n, k, -1)
        vocab = log_probs.shape[-1]
        # A finished beam extends by [PAD] at no cost and by nothing else.
        stay = torch.full((vocab,), -torch.inf, device=device)
        stay[PAD_ID] = 0.0
        log_probs = torch.where(finished[..., None], stay, log_probs)
        scores, best = torch.topk((scores[..., None] + log_probs).reshape(n, -1), k, dim=1)
        beam, step_tokens = best // vocab, best % vocab
        was_finished = torch.gather(finished, 1, beam)
        lengths = torch.gather(lengths, 1, beam) + (~was_finished).long()
        outputs = torch.gather(outputs, 1, beam[..., None].expand(-1, -1, max_len)).clone()
        outputs[:, :, t] = step_tokens
        rows = (torch.arange(n, device=device)[:, None] * k + beam).reshape(-1)
        state = _take_rows(state, rows)
        finished = was_finished | (step_tokens == EOS_ID)
        tokens = step_tokens.reshape(-1)
    winner = torch.argmax(scores / length_penalty(lengths, alpha), dim=1)
    return outputs[torch.arange(n, device=device), winner]


def _take_rows(tree, rows: torch.Tensor):
    if isinstance(tree, dict):
        return {key: _take_rows(value, rows) for key, value in tree.items()}
    return tree[rows]


def tile_beams(tree, beam_size: int):
    """Every tensor of `tree` with each row repeated beam_size times ([N, ...] -> [N*K, ...])."""
    if isinstance(tree, dict):
        return {key: tile_beams(value, beam_size) for key, value in tree.items()}
    return torch.repeat_interleave(tree, beam_size, dim=0)


def search(model, source, source_mask, decode: str, beam_size: int, max_len: int, alpha: float):
    """Decoded ids [N, max_len] of each source row (see the module doc)."""
    memory = model.encode(source, source_mask)
    if decode == "beam":
        memory = tile_beams(memory, beam_size)
    decoder_state = model.initial_state(memory, max_len)

    def step_fn(state, tokens, t):
        return model.decode_step(memory, state, tokens, t)

    n, device = source.shape[0], source.device
    if decode == "greedy":
        return greedy_search(step_fn, decoder_state, n, max_len, device)[0]
    return beam_search(step_fn, decoder_state, n, beam_size, max_len, alpha, device)


@torch.inference_mode()
def translate(state, batch):
    """Decoded ids [B, max_len] per the state's options (greedy or beam), eagerly."""
    options = state.options
    state.model.eval()
    return search(
        state.model,
        batch["source"],
        batch["source_mask"],
        options.decode,
        options.beam_size,
        options.max_len,
        options.length_penalty,
    )


@torch.inference_mode()
def attention_maps(state, batch):
    """(greedy ids [B, L], the decoder's attention over the source [B, L, S]) of each row."""
    options = state.options
    state.model.eval()
    tokens = search(
        state.model, batch["source"], batch["source_mask"], "greedy", 1, options.max_len, 0.0
    )
    inputs = torch.cat([torch.full_like(tokens[:, :1], BOS_ID), tokens[:, :-1]], dim=1)
    weights = state.model.attention_maps(batch["source"], batch["source_mask"], inputs)
    return tokens, weights
