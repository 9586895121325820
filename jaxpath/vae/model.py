"""The VAE in Flax Linen: pytorch/examples' MLP encoder and decoder, and its negative ELBO.

Read beside torchpath/vae/model.py: same class, same submodule names (fc1, fc21, fc22, fc3,
fc4), same methods, same order. Inputs are NHWC float32 images [N, 28, 28, 1] in [0, 1];
the decoder returns Bernoulli logits [N, 784].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxpath.common.init import TorchDense

PIXELS = 28 * 28


class VAE(nn.Module):
    """Encoder 784-400-(20, 20) to a diagonal Gaussian q(z|x); decoder 20-400-784 to logits."""

    hidden: int = 400
    latents: int = 20

    def setup(self):
        # setup, not compact: encode/decode/reparameterize are called on their own as well.
        self.fc1 = TorchDense(self.hidden, PIXELS)
        self.fc21 = TorchDense(self.latents, self.hidden)  # mean of q(z|x)
        self.fc22 = TorchDense(self.latents, self.hidden)  # log-variance of q(z|x)
        self.fc3 = TorchDense(self.hidden, self.latents)
        self.fc4 = TorchDense(PIXELS, self.hidden)

    def encode(self, x):
        """(mu, logvar) [N, latents] of images [N, 28, 28, 1]."""
        h = nn.relu(self.fc1(x.reshape((x.shape[0], -1))))
        return self.fc21(h), self.fc22(h)

    def reparameterize(self, mu, logvar, noise=None):
        """z = mu + noise * sigma; without `noise`, it is drawn from the "noise" RNG stream."""
        # The scope name lands in the jaxpr/HLO metadata, so `roadmap ir` shows the sampling.
        with jax.named_scope("reparameterize"):
            if noise is None:
                noise = jax.random.normal(self.make_rng("noise"), mu.shape, mu.dtype)
            return mu + noise * jnp.exp(0.5 * logvar)

    def decode(self, z):
        """Bernoulli logits [N, 784] of latent codes z [N, latents]."""
        return self.fc4(nn.relu(self.fc3(z)))

    def __call__(self, x, noise=None, sample: bool = True):
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
    """Shape of a model input batch in this framework's layout (NHWC)."""
    return (batch_size, 28, 28, 1)


def dummy_input(batch_size: int = 1):
    """Zeros of the model's input shape, for initialisation and tracing."""
    return jnp.zeros(input_shape(batch_size), jnp.float32)


def reconstruction_nll(logits, images):
    """-log p(x|z) per example: Bernoulli cross-entropy of the logits, summed over pixels."""
    targets = images.reshape((images.shape[0], -1))
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)


def kl_divergence(mu, logvar):
    """KL(q(z|x) || N(0, I)) per example, in closed form."""
    with jax.named_scope("kl"):
        return -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), axis=-1)


def elbo_terms(logits, images, mu, logvar):
    """[2, N]: each example's reconstruction term and KL term (their sum is the negative ELBO)."""
    return jnp.stack([reconstruction_nll(logits, images), kl_divergence(mu, logvar)])


def elbo_sums(terms, mask=None) -> dict:
    """{"loss_sum", "recon_sum", "kl_sum", "count"} of `elbo_terms`; `mask` zeroes padded rows."""
    recon, kl = terms
    if mask is None:
        mask = jnp.ones(recon.shape, jnp.float32)
    return {
        "loss_sum": jnp.sum((recon + kl) * mask),
        "recon_sum": jnp.sum(recon * mask),
        "kl_sum": jnp.sum(kl * mask),
        "count": jnp.sum(mask),
    }
