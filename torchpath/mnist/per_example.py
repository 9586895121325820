"""Per-example gradients of the MNIST models in PyTorch: torch.func.vmap(grad(...)) and a loop.

Read beside jaxpath/mnist/per_example.py. The loss of one example is the mean
cross-entropy of a batch of one, with the model in inference mode: dropout (the CNN's) is
off, so every gradient is a deterministic function of (params, example). DP-SGD draws its
own noise per example; here the point is that the three ways below agree exactly.
Gradients come back as {parameter name: tensor [N, ...]}, a leading example axis. The
functions leave the model in eval mode; train_step sets train mode on every step.
docs/PER_EXAMPLE.md compares the ways and shows what vmap does to the graph.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from torchpath.common.metrics import cross_entropy


def example_loss(params, model, image, label):
    """Cross-entropy of one example (image [1, 28, 28], scalar label), dropout off."""
    # PARITY: Flax passes train=False; a torch module reads its mode, so callers set eval().
    logits = functional_call(model, params, (image[None],))
    return torch.mean(cross_entropy(logits, label[None]))


def batch_loss(params, model, batch):
    """Mean cross-entropy of the batch in inference mode (dropout off)."""
    logits = functional_call(model, params, (batch["image"],))
    return torch.mean(cross_entropy(logits, batch["label"]))


def example_grad(params, model, image, label):
    """One example's gradient with torch.func.grad, as {parameter name: tensor}."""
    # PARITY: JAX compiles this once (jax.jit); torch.func.grad runs it eagerly.
    return grad(example_loss)(params, model, image, label)


def per_example_grad_fn(model):
    """torch.func.vmap(grad(loss)): (params, images [N, ...], labels [N]) -> gradients [N, ...]."""

    def loss(params, image, label):
        return example_loss(params, model, image, label)

    # params are shared (None); image and label are mapped along their first dimension.
    return vmap(grad(loss), in_dims=(None, 0, 0))


def per_example_grads(state, batch):
    """Gradients of every example at once: the vmapped gradient, one batched eager pass."""
    model = state.model.eval()
    # PARITY: JAX jit-compiles the vmapped gradient; torch.func runs it eagerly, batching
    # each op's kernel call (a batching rule per ATen op) instead of compiling a program.
    params = {name: p.detach() for name, p in model.named_parameters()}
    return per_example_grad_fn(model)(params, batch["image"], batch["label"])


def per_example_grads_loop(state, batch):
    """Gradients example by example: a Python loop of ordinary autograd backward passes."""
    model = state.model.eval()
    names, params = zip(*model.named_parameters(), strict=True)
    rows = []
    for image, label in zip(batch["image"], batch["label"], strict=True):
        loss = torch.mean(cross_entropy(model(image[None]), label[None]))
        # PARITY: JAX's loop calls the jitted example_grad; this is the classic torch loop.
        # autograd.grad returns the gradients without touching the parameters' .grad.
        rows.append(torch.autograd.grad(loss, params))
    columns = zip(*rows, strict=True)  # one tuple of N gradients per parameter
    return {name: torch.stack(column) for name, column in zip(names, columns, strict=True)}


def batch_grads(state, batch):
    """Gradient of the batch's mean loss (dropout off): the mean of the per-example ones."""
    model = state.model.eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    return grad(batch_loss)(params, model, batch)


__all__ = [
    "example_loss",
    "batch_loss",
    "example_grad",
    "per_example_grad_fn",
    "per_example_grads",
    "per_example_grads_loop",
    "batch_grads",
]
