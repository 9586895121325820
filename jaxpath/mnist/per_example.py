"""Per-example gradients of the MNIST models in JAX: jax.vmap(jax.grad(...)) and a Python loop.

Read beside torchpath/mnist/per_example.py. The loss of one example is the mean
cross-entropy of a batch of one, with the model in inference mode: dropout (the CNN's) is
off, so every gradient is a deterministic function of (params, example). DP-SGD draws its
own noise per example; here the point is that the three ways below agree exactly.
Gradients come back shaped like `state.params`, with a leading example axis [N, ...].
docs/PER_EXAMPLE.md compares the ways and shows what vmap does to the graph.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpath.common.metrics import cross_entropy


def example_loss(params, apply_fn, image, label):
    """Cross-entropy of one example (image [28, 28, 1], scalar label), dropout off."""
    logits = apply_fn({"params": params}, image[None], train=False)
    return jnp.mean(cross_entropy(logits, label[None]))


def batch_loss(params, apply_fn, batch):
    """Mean cross-entropy of the batch in inference mode (dropout off)."""
    logits = apply_fn({"params": params}, batch["image"], train=False)
    return jnp.mean(cross_entropy(logits, batch["label"]))


# One example's gradient, compiled once per model (apply_fn is static: it names the model).
example_grad = jax.jit(jax.grad(example_loss), static_argnums=1)


def per_example_grad_fn(apply_fn):
    """jax.vmap(jax.grad(loss)): (params, images [N, ...], labels [N]) -> gradients [N, ...]."""

    def loss(params, image, label):
        return example_loss(params, apply_fn, image, label)

    # params are shared (None); image and label are mapped along their first axis.
    return jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))


@jax.jit
def per_example_grads(state, batch):
    """Gradients of every example at once: the vmapped gradient compiled as one program."""
    grad_fn = per_example_grad_fn(state.apply_fn)
    return grad_fn(state.params, batch["image"], batch["label"])


def per_example_grads_loop(state, batch):
    """Gradients example by example: a Python loop over the jitted one-example gradient."""
    # PARITY: torch's loop runs autograd's backward per example; here each iteration calls
    # the same compiled single-example program, so the loop pays N dispatches, not N traces.
    grads = [
        example_grad(state.params, state.apply_fn, image, label)
        for image, label in zip(batch["image"], batch["label"], strict=True)
    ]
    return jax.tree_util.tree_map(lambda *rows: jnp.stack(rows), *grads)


@jax.jit
def batch_grads(state, batch):
    """Gradient of the batch's mean loss (dropout off): the mean of the per-example ones."""
    return jax.grad(batch_loss)(state.params, state.apply_fn, batch)


__all__ = [
    "example_loss",
    "batch_loss",
    "example_grad",
    "per_example_grad_fn",
    "per_example_grads",
    "per_example_grads_loop",
    "batch_grads",
]
