"""'lenet': seed 004's Keras LeNet (`create_lenet`), for 28x28x1 images.

  body: conv1 6 3x3 VALID -> ReLU -> avgpool 2x2/2
        conv2 16 3x3 VALID -> ReLU -> avgpool 2x2/2     (5x5x16 at 28 px)
  head: flatten -> fc1 120 -> ReLU -> fc2 84 -> ReLU -> fc3 classes

Keras's AveragePooling2D defaults: pool 2, stride 2, 'valid'. Keras's
softmax is left to the loss. With config.dropout > 0 (not in the seed),
Dropout follows fc1's and fc2's ReLU.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtransfer.models.common import (init_spec, BodyHead, ModelSpec, _conv_out, _inits,
                                       check_frozen_norms, dropout_rate,
                                       smallest_image_size)

BODY_LAYERS = (("conv1", 6, 3), ("conv2", 16, 3))  # (name, features, kernel)
HEAD_LAYERS = (("fc1", 120), ("fc2", 84))  # then fc3 -> classes


def spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after each conv + pool, in order: [13, 5] at 28 px."""
  sizes, size = [], image_size
  for _, _, kernel in BODY_LAYERS:
    size = _conv_out(_conv_out(size, kernel, 1, 0), 2, 2, 0)
    sizes.append(size)
  return sizes


MIN_IMAGE_SIZE = smallest_image_size(spatial_sizes)  # 10 px


class LeNetBody(nn.Module):
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or BatchNorm in the body
    for name, features, kernel in BODY_LAYERS:
      x = nn.Conv(features, (kernel, kernel), padding="VALID",
                  dtype=self.dtype, name=name,
                  **_inits(self.kernel_init, x.shape[-1] * kernel * kernel))(x)
      x = nn.relu(x)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    return x


class LeNetHead(nn.Module):
  num_classes: int
  dropout: float = 0.0
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = features.reshape(features.shape[0], -1)
    for name, width in HEAD_LAYERS:
      x = nn.Dense(width, dtype=self.dtype, name=name,
                   **_inits(self.kernel_init, x.shape[-1]))(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc3",
                 **_inits(self.kernel_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


class LeNet(BodyHead):
  num_classes: int
  dropout: float = 0.0
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()  # no BatchNorm: always empty

  def setup(self):
    self.body = LeNetBody(self.kernel_init, self.dtype)
    self.head = LeNetHead(self.num_classes, self.dropout, self.kernel_init,
                          self.dtype)


PRESETS = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
}


def build(config, num_classes: int, *, dtype: Any,
          frozen_norms: tuple[str, ...] = ()) -> LeNet:
  check_frozen_norms(frozen_norms, (), "lenet")
  return LeNet(num_classes, dropout_rate(config, SPEC.default_dropout),
               init_spec(config), dtype)


SPEC = ModelSpec(
    name="lenet",
    build=build,
    input_channels=1,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=PRESETS,
    default_dropout=0.0,
    description=("seed 004's Keras LeNet for 28x28x1: two 3x3 conv + "
                 "avg-pool blocks, 120 -> 84 -> classes"),
    pretrained_inits=("checkpoint",),
)
