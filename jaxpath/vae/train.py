"""VAE training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/vae/train.py; the loop itself is jaxpath/common/loop.py. A batch may
carry a "noise" field [N, latents]: the model then uses it instead of sampling (the test
split's fixed noise, the parity harness's shared noise).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpath.common.loop import fit, to_device
from jaxpath.common.rng import streams
from jaxpath.common.state import TrainState, new_train_state
from jaxpath.vae.model import create_model, dummy_input, elbo_sums, elbo_terms
from shared_data.binarize import load_binarized
from shared_data.configs.vae import get_task
from shared_data.images import prior_latents, save_epoch_pictures
from shared_data.training import train_steps_per_epoch

RNG_STREAMS = ("noise",)  # the reparameterisation's; a dropout stream would be named here


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> TrainState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    model = create_model(config)
    # sample=False: initialisation needs no noise stream.
    return new_train_state(
        model,
        config,
        steps_per_epoch,
        init_weights,
        (dummy_input(),),
        init_kwargs={"sample": False},
    )


def loss_fn(params, state: TrainState, batch, rng):
    """Mean negative ELBO of the batch, and its [2, N] per-example (reconstruction, KL) terms."""
    logits, mu, logvar = state.apply_fn(
        {"params": params}, batch["image"], batch.get("noise"), rngs=streams(rng, RNG_STREAMS)
    )
    terms = elbo_terms(logits, batch["image"], mu, logvar)
    return jnp.mean(jnp.sum(terms, axis=0)), terms


@jax.jit
def train_step(state: TrainState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    state = state.apply_gradients(grads=grads)
    return state, elbo_sums(terms)


@jax.jit
def eval_step(state: TrainState, batch):
    """Metric sums on `batch`, with its "noise" field as the noise (without one: z = mu)."""
    logits, mu, logvar = state.apply_fn(
        {"params": state.params}, batch["image"], batch.get("noise"), sample=False
    )
    return elbo_sums(elbo_terms(logits, batch["image"], mu, logvar), batch.get("mask"))


def predict(state: TrainState, batch):
    """Reconstruction logits [N, 784] with z = mu (deterministic)."""
    return state.apply_fn({"params": state.params}, batch["image"], sample=False)[0]


def sample(state: TrainState, latents):
    """Pixel probabilities [N, 784] that the decoder gives latent codes [N, latents]."""
    logits = state.apply_fn({"params": state.params}, jnp.asarray(latents), method="decode")
    return jax.nn.sigmoid(logits)


def reconstruct(state: TrainState, images):
    """Pixel probabilities [N, 784] of the reconstructions of `images` (z = mu)."""
    return jax.nn.sigmoid(predict(state, {"image": images}))


def write_pictures(state: TrainState, workdir: Path, epoch: int, *, latents, originals) -> None:
    """The on_epoch_end hook: prior samples and test reconstructions as PNGs in the run."""
    images = to_device({"image": originals})["image"]
    save_epoch_pictures(
        workdir,
        epoch,
        samples=np.asarray(sample(state, latents)),
        originals=originals,
        reconstructions=np.asarray(reconstruct(state, images)),
    )


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs, checkpoints and pictures under `workdir`."""
    dataset = load_binarized(config)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    pictures = functools.partial(
        write_pictures,
        latents=prior_latents(config.latents),
        originals=dataset.test["image"][:8],
    )
    return fit(
        get_task(config),
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


__all__ = [
    "create_state",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "sample",
    "reconstruct",
    "write_pictures",
    "train_and_evaluate",
    "to_device",
]
