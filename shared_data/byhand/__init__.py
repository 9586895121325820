"""Hand-written NumPy models with hand-derived gradients: the oracle both frameworks answer to.

Stage A of the roadmap, written once without a framework. Nothing here imports jax, torch
or comparisons; tests check jax.grad and torch.autograd against these derivations.
"""
