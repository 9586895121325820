"""VAE training in PyTorch: the same functions as jaxpath/vae/train.py, imperative style.

Read beside jaxpath/vae/train.py; the loop itself is torchpath/common/loop.py. A batch may
carry a "noise" field [N, latents]: the model then uses it instead of sampling (the test
split's fixed noise, the parity harness's shared noise).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from shared_data.binarize import load_binarized
from shared_data.configs.vae import get_task
from shared_data.images import prior_latents, save_epoch_pictures
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.rng import stream
from torchpath.common.state import TorchState, new_torch_state
from torchpath.vae.model import create_model, elbo_sums, elbo_terms

# PARITY: JAX's RNG_STREAMS = ("noise",) names the Flax rngs it passes; here the one stream
# seeds the global generator in train_step (_seed_noise).


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> TorchState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_torch_state(lambda: create_model(config), config, steps_per_epoch, init_weights)


def loss_fn(state: TorchState, batch):
    """Mean negative ELBO of the batch, and its [2, N] per-example (reconstruction, KL) terms."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) takes the parameters and the step's key
    # explicitly; here autograd finds the parameters in the module and the sampling reads the
    # global generator, which train_step has seeded.
    logits, mu, logvar = state.model(batch["image"], batch.get("noise"))
    terms = elbo_terms(logits, batch["image"], mu, logvar)
    return torch.mean(torch.sum(terms, dim=0)), terms


@torch.compiler.disable  # seeding is eager host work: dynamo steps around it, not into it
def _seed_noise(rng: int) -> None:
    # PARITY: JAX hands the model the key of the "noise" stream. A torch.Generator cannot enter
    # a torch.compile graph (dynamo breaks the graph and the sampling vanishes from `roadmap
    # ir`), so the global generator is seeded from torchpath.common.rng's "noise" stream.
    torch.manual_seed(stream(rng, "noise").initial_seed())


def train_step(state: TorchState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    _seed_noise(rng)
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss, terms = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    with torch.no_grad():
        return state, elbo_sums(terms.detach())


@torch.inference_mode()
def eval_step(state: TorchState, batch):
    """Metric sums on `batch`, with its "noise" field as the noise (without one: z = mu)."""
    state.model.eval()
    logits, mu, logvar = state.model(batch["image"], batch.get("noise"), sample=False)
    return elbo_sums(elbo_terms(logits, batch["image"], mu, logvar), batch.get("mask"))


@torch.inference_mode()
def predict(state: TorchState, batch):
    """Reconstruction logits [N, 784] with z = mu (deterministic)."""
    state.model.eval()
    return state.model(batch["image"], sample=False)[0]


@torch.inference_mode()
def sample(state: TorchState, latents):
    """Pixel probabilities [N, 784] that the decoder gives latent codes [N, latents]."""
    state.model.eval()
    return torch.sigmoid(state.model.decode(torch.as_tensor(latents)))


@torch.inference_mode()
def reconstruct(state: TorchState, images):
    """Pixel probabilities [N, 784] of the reconstructions of `images` (z = mu)."""
    return torch.sigmoid(predict(state, {"image": images}))


def write_pictures(state: TorchState, workdir: Path, epoch: int, *, latents, originals) -> None:
    """The on_epoch_end hook: prior samples and test reconstructions as PNGs in the run."""
    images = to_device({"image": originals})["image"]  # NHWC numpy -> NCHW tensor
    save_epoch_pictures(
        workdir,
        epoch,
        samples=sample(state, latents).numpy(),
        originals=originals,
        reconstructions=reconstruct(state, images).numpy(),
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
