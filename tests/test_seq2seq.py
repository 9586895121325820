"""What is special to seq2seq: GRU gate porting, search against brute force, BLEU, the data.

Registry-wide parity, runs, IR and benches cover the rest (tests/test_parity.py ...).
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from comparisons.parity import make_pair, max_abs_diff, parity_config
from comparisons.registry import get_project
from comparisons.weights import PortingError, flax_to_torch, torch_to_flax
from jaxpath.common.rnn import TorchGRU
from jaxpath.seq2seq import decode as jax_decode
from shared_data.configs.seq2seq import get_config
from shared_data.errors import DataError
from shared_data.text.tokenize import BOS_ID, EOS_ID, PAD_ID
from shared_data.text.translation import (
    bleu,
    corpus_bleu,
    generate_pairs,
    load_translation,
    strip_ids,
)
from torchpath.seq2seq import decode as torch_decode
from torchpath.seq2seq.model import single_bias_gru

TOL = 1e-5


@pytest.mark.parametrize("model", ["transformer", "gru"])
def test_teacher_forced_logits_agree_from_ported_weights(model):
    project = get_project("seq2seq")
    pair = make_pair(project, parity_config(project, model))
    batch = project.example_batch(8, seed=3, config=pair.config)
    inputs = (batch["source"], batch["source_mask"], batch["target"][:, :-1])
    ours = pair.jax_state.apply_fn({"params": pair.jax_state.params}, *inputs)
    pair.torch_state.model.eval()
    with torch.no_grad():
        theirs = pair.torch_state.model(*(torch.from_numpy(np.asarray(x)) for x in inputs))
    assert ours.shape == (8, pair.config.max_target_len, pair.config.vocab_size)
    assert max_abs_diff(ours, theirs) <= TOL


def _gru_pair(single_bias: bool, seed: int = 0):
    torch.manual_seed(seed)
    torch_gru = single_bias_gru(5, 4) if single_bias else torch.nn.GRU(5, 4, batch_first=True)
    with torch.no_grad():  # every parameter away from zero, so a misplaced bias shows
        for p in torch_gru.parameters():
            p.uniform_(-0.8, 0.8)
    flax_gru = TorchGRU(4, batch_first=True, recurrent_bias=not single_bias)
    x = np.random.default_rng(seed).standard_normal((3, 6, 5)).astype(np.float32)
    variables = torch_to_flax(torch_gru, flax_gru.init(jax.random.key(0), x))
    return torch_gru, flax_gru, variables, x


def test_split_bahdanau_energy_equals_the_concatenated_one_in_both_frameworks():
    """attn([s; h]) == W[:, :H] s + (W[:, H:] h + b): the encoder's half is precomputed."""
    project = get_project("seq2seq")
    pair = make_pair(project, parity_config(project, "gru"))
    batch = project.example_batch(4, seed=5, config=pair.config)
    source, mask = batch["source"], batch["source_mask"]
    model, variables = pair.jax_state.apply_fn, {"params": pair.jax_state.params}
    memory = model(variables, source, mask, method="encode")
    hidden = memory["hidden"] + 0.1  # any decoder state
    split = model(variables, hidden, memory["keys"], memory["valid"], method="attend")
    kernel, bias = (pair.jax_state.params["attn"][k] for k in ("kernel", "bias"))
    repeated = jnp.broadcast_to(hidden[:, None], (*memory["outputs"].shape[:2], hidden.shape[-1]))
    energy = jnp.tanh(jnp.concatenate([repeated, memory["outputs"]], -1) @ kernel + bias)
    scores = (energy @ pair.jax_state.params["attn_v"]["kernel"])[..., 0]
    concatenated = jax.nn.softmax(jnp.where(memory["valid"], scores, -1e10), -1)
    assert max_abs_diff(split, concatenated) <= TOL

    net = pair.torch_state.model.eval()
    with torch.no_grad():
        tmem = net.encode(*(torch.from_numpy(np.asarray(x)) for x in (source, mask)))
        th = tmem["hidden"] + 0.1
        tsplit = net.attend(th, tmem["keys"], tmem["valid"])
        trep = th[:, None].expand(-1, tmem["outputs"].shape[1], -1)
        tenergy = torch.tanh(net.attn(torch.cat([trep, tmem["outputs"]], -1)))
        tscores = torch.where(tmem["valid"], net.attn_v(tenergy)[..., 0], -1e10)
        assert max_abs_diff(tsplit, torch.softmax(tscores, -1)) <= TOL
    assert max_abs_diff(split, tsplit) <= TOL  # and the two frameworks agree


@pytest.mark.parametrize("single_bias", [False, True], ids=["two_biases", "single_bias"])
def test_gru_gates_port_with_b_hn_inside_the_reset_product(single_bias):
    torch_gru, flax_gru, variables, x = _gru_pair(single_bias)
    h0 = np.random.default_rng(1).standard_normal((1, 3, 4)).astype(np.float32)
    ours, ours_h = flax_gru.apply(variables, x, initial_state=h0)
    with torch.no_grad():
        theirs, theirs_h = torch_gru(torch.from_numpy(x), torch.from_numpy(h0))
    assert np.max(np.abs(np.asarray(ours) - theirs.numpy())) <= TOL
    assert np.max(np.abs(np.asarray(ours_h) - theirs_h.numpy())) <= TOL
    back = flax_to_torch(variables, torch_gru)
    for key, value in torch_gru.state_dict().items():
        torch.testing.assert_close(back[key], value, rtol=0, atol=0)
    cell = variables["params"]["l0"]["cell"]
    assert ("bias" in cell["hn"]) is not single_bias  # b_hn: a parameter only with two biases
    if not single_bias:
        # b_hn multiplied by r: folding it into b_in (as for r and z) changes the output.
        moved = jax.tree.map(np.array, variables)
        moved["params"]["l0"]["cell"]["in"]["bias"] += cell["hn"]["bias"]
        moved["params"]["l0"]["cell"]["hn"]["bias"] *= 0
        wrong, _ = flax_gru.apply(moved, x, initial_state=h0)
        assert np.max(np.abs(np.asarray(wrong) - theirs.numpy())) > 1e-2


def test_single_bias_gru_has_one_trainable_bias_per_gate_and_a_zero_b_hh():
    gru = single_bias_gru(5, 4)
    assert sorted(n for n, _ in gru.named_parameters()) == [
        "bias_ih_l0",
        "weight_hh_l0",
        "weight_ih_l0",
    ]
    _, flax_gru, variables, x = _gru_pair(True)
    with torch.no_grad():
        gru.bias_hh_l0[4] = 0.5  # a b_hh that the Flax cell cannot hold must not port silently
    with pytest.raises(PortingError, match="bias_hh_l0 is a buffer but not zero"):
        torch_to_flax(gru, flax_gru.init(jax.random.key(0), x))


# A tiny "model": log-probabilities that depend on the step and the previous token only.
VOCAB, STEPS = 5, 4
TABLE = np.random.default_rng(7).standard_normal((STEPS, VOCAB, VOCAB)).astype(np.float32) * 2


def _exhaustive(alpha: float) -> tuple[list[int], float]:
    """The best sequence of at most STEPS tokens by summed log-prob / GNMT lp, by enumeration."""
    log_probs = TABLE - np.log(np.exp(TABLE).sum(-1, keepdims=True))
    best, best_score = None, -np.inf
    for sequence in itertools.product(range(VOCAB), repeat=STEPS):
        previous, total, length = BOS_ID, 0.0, 0
        for t, token in enumerate(sequence):
            total, length, previous = total + log_probs[t, previous, token], length + 1, token
            if token == EOS_ID:
                break
        score = total / ((5 + length) / 6) ** alpha
        if score > best_score + 1e-6:
            best, best_score = list(sequence[:length]), score
    return best, best_score


def _jax_step(state, tokens, t):
    return jnp.asarray(TABLE)[t, tokens], state, jnp.zeros((tokens.shape[0], 1))


def _torch_step(state, tokens, t):
    return torch.from_numpy(TABLE)[t, tokens], state, torch.zeros((tokens.shape[0], 1))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_with_room_for_every_sequence_is_exhaustive_search(alpha):
    expected, _ = _exhaustive(alpha)
    beams = VOCAB**STEPS  # every prefix keeps a place: nothing is pruned
    state_jax = jnp.zeros((2 * beams, 1))
    ours = jax.jit(jax_decode.beam_search, static_argnums=(0, 2, 3, 4, 5))(
        _jax_step, state_jax, 2, beams, STEPS, alpha
    )
    theirs = torch_decode.beam_search(
        _torch_step, torch.zeros(2 * beams, 1), 2, beams, STEPS, alpha
    )
    for row in (*np.asarray(ours), *theirs.numpy()):
        assert list(row[: len(expected)]) == expected


def test_greedy_is_beam_of_width_one_in_both_frameworks():
    greedy_jax, _ = jax_decode.greedy_search(_jax_step, jnp.zeros((3, 1)), 3, STEPS)
    beam_jax = jax_decode.beam_search(_jax_step, jnp.zeros((3, 1)), 3, 1, STEPS, 0.6)
    greedy_torch, _ = torch_decode.greedy_search(_torch_step, torch.zeros(3, 1), 3, STEPS)
    beam_torch = torch_decode.beam_search(_torch_step, torch.zeros(3, 1), 3, 1, STEPS, 0.6)
    np.testing.assert_array_equal(np.asarray(greedy_jax), np.asarray(beam_jax))
    np.testing.assert_array_equal(greedy_torch.numpy(), beam_torch.numpy())
    np.testing.assert_array_equal(np.asarray(greedy_jax), greedy_torch.numpy())
    # After [EOS] a row only emits [PAD].
    for row in np.asarray(greedy_jax):
        if EOS_ID in row:
            assert set(row[list(row).index(EOS_ID) + 1 :]) <= {PAD_ID}


def test_bleu_on_known_pairs():
    sentences = ["the cat sat on the mat .", "a dog runs in the park ."]
    assert corpus_bleu(sentences, sentences) == pytest.approx(100.0)
    assert corpus_bleu(["xyz uvw"] * 2, sentences) == pytest.approx(0.0)
    # sacrebleu's README example (two reference streams): BLEU = 48.53.
    hypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    first = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
    second = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]
    assert corpus_bleu(hypotheses, first, second) == pytest.approx(48.53, abs=0.01)


def test_the_evaluator_scores_detokenized_ids_against_the_targets():
    config = dataclasses.replace(get_config("smoke"), max_target_len=64)  # nothing cut
    data = load_translation(config)
    evaluate = bleu(data.tokenizer)
    outputs = data.test["target"][:, 1:]  # the references themselves, [EOS] then padding
    assert evaluate(outputs, data.test)["bleu"] == pytest.approx(100.0)
    shuffled = outputs[::-1]
    assert evaluate(shuffled, data.test)["bleu"] < 50.0
    texts = [data.tokenizer.decode(strip_ids(row)) for row in outputs]
    assert texts == generate_pairs(200, seed=1).targets[:8]  # byte-level BPE round trips


def test_arrays_hold_bos_target_eos_and_the_masks_agree():
    config = get_config("smoke")
    data = load_translation(config)
    target, mask = data.test["target"], data.test["target_mask"]
    assert target.shape[1] == config.max_target_len + 1
    assert np.all(target[:, 0] == BOS_ID)
    lengths = mask.sum(1).astype(int)
    for row, n in zip(target, lengths, strict=True):
        assert np.all(row[n:] == PAD_ID) and (row[n - 1] == EOS_ID or n == target.shape[1])
    assert generate_pairs(5, 0) == generate_pairs(5, 0)  # the generated corpus is fixed


def test_a_too_small_bpe_vocabulary_names_the_field():
    config = dataclasses.replace(get_config("smoke"), vocab_size=100)
    with pytest.raises(DataError, match=r"field 'vocab_size' is 100.*needs 2\d\d ids"):
        load_translation(config)
