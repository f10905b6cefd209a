"""jaxtransfer: transfer-learning experiments on images in JAX/Flax."""

__version__ = "0.1.0"
