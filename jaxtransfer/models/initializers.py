"""Initialisers (config.kernel_init, config.bias_init) as the models' layers
take them: `layer_inits(module.kernel_init, fan_in)` gives nn.Conv / nn.Dense
their kernel_init and bias_init.

'torch' reproduces PyTorch's default for Conv2d/Linear, which the seed study's
random arm used: kaiming_uniform(a=sqrt(5)) for weights, U(+-1/sqrt(fan_in))
for biases. The others are Keras 3's (keras.initializers, seed 004's
create_alex_net(kernel_initializer, bias_initializer)): the variance-scaling
ones are flax's, which are Keras's for kernels; the Keras defaults
random_normal (std 0.05), random_uniform (+-0.05) and truncated_normal (std
0.05, re-drawn beyond 2 std); zeros and ones. A bias takes the same names: a
variance-scaling bias init uses Keras's fans of a 1-D shape (fan_in = fan_out
= its length). bias_init '' is the kernel init's companion: torch's for
'torch', else zeros (Keras's default). A module's `kernel_init` attribute
carries both as 'KERNEL|BIAS' when a bias init is set (init_spec).
"""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _torch_bias_init(fan_in: int) -> Callable:
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _uniform(limit: float) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


def _truncated_normal(stddev: float) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) * stddev
  return init


def _keras_fans(shape) -> tuple[int, int]:
  """keras.src.initializers.random_initializers.compute_fans."""
  if len(shape) == 0:
    return 1, 1
  if len(shape) == 1:
    return shape[0], shape[0]
  receptive = int(np.prod(shape[:-2]))
  return shape[-2] * receptive, shape[-1] * receptive


def _keras_variance_scaling(scale: float, mode: str, distribution: str):
  """keras.initializers.VarianceScaling for any rank (1-D biases too)."""
  def init(key, shape, dtype=jnp.float32):
    fan_in, fan_out = _keras_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out,
         "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    variance = scale / max(1.0, n)
    if distribution == "truncated_normal":
      return _truncated_normal(math.sqrt(variance) / .87962566103423978)(
          key, shape, dtype)
    return _uniform(math.sqrt(3.0 * variance))(key, shape, dtype)
  return init


# name -> (scale, mode, distribution) of the variance-scaling initialisers
_VARIANCE_SCALING = {
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
}
_KERAS_DEFAULTS = {
    "random_normal": lambda key, shape, dtype=jnp.float32: 0.05 * (
        jax.random.normal(key, shape, dtype)),
    "random_uniform": _uniform(0.05),
    "truncated_normal": _truncated_normal(0.05),
    "zeros": nn.initializers.zeros,
    "ones": nn.initializers.ones,
}
KERNEL_INITS = {
    "torch": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    **{name: nn.initializers.variance_scaling(*args)
       for name, args in _VARIANCE_SCALING.items()},
    **_KERAS_DEFAULTS,
}
BIAS_INITS = ("", *KERNEL_INITS)


def init_spec(config) -> str:
  """What a model's `kernel_init` attribute holds: config.kernel_init, or
  'KERNEL|BIAS' with config.bias_init set."""
  bias = config.get("bias_init", "") or ""
  return f"{config.kernel_init}|{bias}" if bias else str(config.kernel_init)


def split_init_spec(spec: str) -> tuple[str, str]:
  """'KERNEL|BIAS' or 'KERNEL' -> (kernel init, bias init or '')."""
  kernel, _, bias = spec.partition("|")
  return kernel, bias


def _bias_init(name: str, fan_in: int) -> Callable:
  if name == "torch":
    return _torch_bias_init(fan_in)
  if name in _VARIANCE_SCALING:
    return _keras_variance_scaling(*_VARIANCE_SCALING[name])
  return _KERAS_DEFAULTS[name]


def layer_inits(kernel_init: str, fan_in: int) -> dict[str, Callable]:
  """kernel_init/bias_init keyword arguments for nn.Conv / nn.Dense;
  `kernel_init` is a module's attribute (init_spec), fan_in the layer's
  (for torch's bias)."""
  kernel, bias = split_init_spec(kernel_init)
  bias = bias or ("torch" if kernel == "torch" else "zeros")
  return dict(kernel_init=KERNEL_INITS[kernel],
              bias_init=_bias_init(bias, fan_in))
