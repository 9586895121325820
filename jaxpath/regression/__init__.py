"""Regression (stage A) in JAX/Flax/Optax: linear, logistic and softmax regression."""
