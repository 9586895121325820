"""The VAE in PyTorch: pytorch/examples' MLP encoder and decoder, and its negative ELBO.

Read beside jaxpath/vae/model.py: same class, same submodule names (fc1, fc21, fc22, fc3,
fc4), same methods, same order. Inputs are NCHW float32 images [N, 1, 28, 28] in [0, 1];
the decoder returns Bernoulli logits [N, 784].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PIXELS = 28 * 28


class VAE(nn.Module):
    """Encoder 784-400-(20, 20) to a diagonal Gaussian q(z|x); decoder 20-400-784 to logits."""

    def __init__(self, hidden: int = 400, latents: int = 20):
        super().__init__()
        self.fc1 = nn.Linear(PIXELS, hidden)
        self.fc21 = nn.Linear(hidden, latents)  # mean of q(z|x)
        self.fc22 = nn.Linear(hidden, latents)  # log-variance of q(z|x)
        self.fc3 = nn.Linear(latents, hidden)
        self.fc4 = nn.Linear(hidden, PIXELS)
        # One input channel: (c, h, w) and (h, w, c) flatten orders agree, nothing to permute.
        self.flattened_inputs: dict[str, tuple[int, int, int]] = {}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) [N, latents] of images [N, 1, 28, 28]."""
        h = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc21(h), self.fc22(h)

    def reparameterize(self, mu, logvar, noise: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + noise * sigma; without `noise`, it is drawn from torch's global generator."""
        # PARITY: JAX wraps this in jax.named_scope("reparameterize") so the name reaches the
        # HLO's op metadata for `roadmap ir`; torch's graphs keep the function's ATen ops.
        std = torch.exp(0.5 * logvar)
        if noise is None:
            # PARITY: JAX draws from its "noise" key; train_step seeds torch's global generator
            # from the same named stream (see its note on why not a torch.Generator here).
            noise = torch.randn_like(std)
        return mu + noise * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits [N, 784] of latent codes z [N, latents]."""
        return self.fc4(F.relu(self.fc3(z)))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, sample: bool = True):
        """(logits, mu, logvar); z is sampled (or built from `noise`) unless sample=False."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, noise) if sample or noise is not None else mu
        return self.decode(z), mu, logvar


MODELS = {"mlp": VAE}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    return VAE(hidden=config.hidden, latents=config.latents)


def input_shape(batch_size: int) -> tuple[int, ...]:
    """Shape of a model input batch in this framework's layout (NCHW)."""
    return (batch_size, 1, 28, 28)


def dummy_input(batch_size: int = 1) -> torch.Tensor:
    """Zeros of the model's input shape, for initialisation and tracing."""
    return torch.zeros(input_shape(batch_size), dtype=torch.float32)


def reconstruction_nll(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per example: Bernoulli cross-entropy of the logits, summed over pixels."""
    targets = torch.flatten(images, 1)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per example, in closed form."""
    # PARITY: JAX names this jax.named_scope("kl") for the HLO metadata; see reparameterize.
    return -0.5 * torch.sum(1.0 + logvar - mu**2 - torch.exp(logvar), dim=-1)


def elbo_terms(logits, images, mu, logvar) -> torch.Tensor:
    """[2, N]: each example's reconstruction term and KL term (their sum is the negative ELBO)."""
    return torch.stack([reconstruction_nll(logits, images), kl_divergence(mu, logvar)])


def elbo_sums(terms: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """{"loss_sum", "recon_sum", "kl_sum", "count"} of `elbo_terms`; `mask` zeroes padded rows."""
    recon, kl = terms
    if mask is None:
        mask = torch.ones(recon.shape, dtype=torch.float32, device=recon.device)
    return {
        "loss_sum": torch.sum((recon + kl) * mask),
        "recon_sum": torch.sum(recon * mask),
        "kl_sum": torch.sum(kl * mask),
        "count": torch.sum(mask),
    }
