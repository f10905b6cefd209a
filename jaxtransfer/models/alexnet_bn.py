"""'alexnet_bn': seed 004's Keras AlexNet for 32 px CIFAR-10 (`create_alex_net`),
with BatchNorm after every convolution and dense layer.

  body: conv1 96 11x11/4 SAME -> bn1 -> ReLU -> maxpool 2x2/2 SAME
        conv2 256 5x5 SAME    -> bn2 -> ReLU -> maxpool
        conv3 384 3x3 SAME    -> bn3 -> ReLU
        conv4 384 3x3 SAME    -> bn4 -> ReLU
        conv5 256 3x3 SAME    -> bn5 -> ReLU -> maxpool      (1x1x256 at 32 px)
  head: flatten -> fc1 4096 -> bn6 -> ReLU -> Dropout(0.4)
                -> fc2 4096 -> bn7 -> ReLU -> Dropout
                -> fc3 1000 -> bn8 -> ReLU -> Dropout
                -> fc4 classes -> bn9                        (logits)

Keras's softmax is left to the loss. flax's 'SAME' padding is TF's (the
extra pixel, if any, goes after), and BatchNorm uses Keras's defaults
(momentum 0.99, epsilon 1e-3). Running statistics live in `batch_stats`;
a BatchNorm whose path ('body/bn1') is in `frozen_norms` runs in inference
mode in training too, as a Keras layer with trainable=False.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtransfer.models.common import (probe_point, BodyHead, ModelSpec,
                                       check_frozen_norms, bn_momentum,
                                       dropout_rate, keras_batch_norm,
                                       same_out, small_map_conv,
                                       smallest_image_size)
from jaxtransfer.models.initializers import (init_spec, layer_inits)

# (conv name, norm name, features, kernel, stride, max-pool 2/2 after it?)
BODY_LAYERS = (
    ("conv1", "bn1", 96, 11, 4, True),
    ("conv2", "bn2", 256, 5, 1, True),
    ("conv3", "bn3", 384, 3, 1, False),
    ("conv4", "bn4", 384, 3, 1, False),
    ("conv5", "bn5", 256, 3, 1, True),
)
# (dense name, norm name, features) before the last layer, fc4 -> bn9.
HEAD_LAYERS = (("fc1", "bn6", 4096), ("fc2", "bn7", 4096), ("fc3", "bn8", 1000))
LAST_LAYER = ("fc4", "bn9")

NORM_PATHS = (tuple(f"body/{bn}" for _, bn, *_ in BODY_LAYERS)
              + tuple(f"head/{bn}" for _, bn, _ in HEAD_LAYERS)
              + (f"head/{LAST_LAYER[1]}",))


def spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after each conv block (its pool included), in order."""
  sizes, size = [], image_size
  for *_, stride, pool in BODY_LAYERS:
    size = same_out(size, stride)
    if pool:
      size = same_out(size, 2)
    sizes.append(size)
  return sizes


MIN_IMAGE_SIZE = smallest_image_size(spatial_sizes)  # 1: 'SAME' never empties


def _path(module: nn.Module, name: str) -> str:
  return f"{module.name}/{name}" if module.name else name


class AlexNetBNBody(nn.Module):
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.99

  @nn.compact
  def __call__(self, x, train: bool = False):
    for conv, bn, features, kernel, stride, pool in BODY_LAYERS:
      fan_in = x.shape[-1] * kernel * kernel
      x = nn.Conv(features, (kernel, kernel), (stride, stride), padding="SAME",
                  dtype=self.dtype, name=conv,
                  conv_general_dilated=small_map_conv,
                  **layer_inits(self.kernel_init, fan_in))(x)
      x = keras_batch_norm(bn, _path(self, bn), train, self.frozen_norms,
                           self.dtype, self.bn_momentum)(x)
      x = nn.relu(x)
      if pool:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      probe_point(self, conv, x)
    return x


class AlexNetBNHead(nn.Module):
  num_classes: int
  dropout: float = 0.4
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.99

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = features.reshape(features.shape[0], -1)
    norm = lambda name: keras_batch_norm(
        name, _path(self, name), train, self.frozen_norms, self.dtype,
        self.bn_momentum)
    for dense, bn, width in HEAD_LAYERS:
      x = nn.Dense(width, dtype=self.dtype, name=dense,
                   **layer_inits(self.kernel_init, x.shape[-1]))(x)
      x = nn.relu(norm(bn)(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    dense, bn = LAST_LAYER
    x = nn.Dense(self.num_classes, dtype=self.dtype, name=dense,
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    return norm(bn)(x).astype(jnp.float32)


class AlexNetBN(BodyHead):
  """The whole network; `features` is the body's [B, h, w, 256] output."""
  num_classes: int
  dropout: float = 0.4
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.99  # Keras's

  def setup(self):
    check_frozen_norms(self.frozen_norms, NORM_PATHS, "alexnet_bn")
    self.body = AlexNetBNBody(self.kernel_init, self.dtype, self.frozen_norms,
                              self.bn_momentum)
    self.head = AlexNetBNHead(self.num_classes, self.dropout, self.kernel_init,
                              self.dtype, self.frozen_norms, self.bn_momentum)


PRESETS = {
    "none": ((".*", True),),
    # All conv blocks, their BatchNorms included, frozen.
    "head": (("body/.*", False), ("head/.*", True)),
    "head+conv5": (("body/(conv5|bn5)/.*", True), ("body/.*", False),
                   ("head/.*", True)),
}


def build(config, num_classes: int, *, dtype: Any,
          frozen_norms: tuple[str, ...] = ()) -> AlexNetBN:
  check_frozen_norms(frozen_norms, NORM_PATHS, "alexnet_bn")
  return AlexNetBN(num_classes, dropout_rate(config, SPEC.default_dropout),
                   init_spec(config), dtype, tuple(frozen_norms),
                   bn_momentum(config, 0.99))


SPEC = ModelSpec(
    name="alexnet_bn",
    build=build,
    input_channels=3,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=PRESETS,
    default_dropout=0.4,
    description=("seed 004's Keras AlexNet for 32 px: five conv blocks and "
                 "4096 -> 4096 -> 1000 -> classes, BatchNorm after each"),
    pretrained_inits=("checkpoint",),
)
