"""Regularizers and averaging that act on batches or weights during training."""
