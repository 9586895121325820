"""Regression (stage A) in PyTorch: linear, logistic and softmax regression."""
