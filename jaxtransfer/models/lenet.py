"""'lenet': seed 004's Keras LeNet (`create_lenet`), for 28x28x1 images.

  body: conv1 6 3x3 VALID -> ReLU -> avgpool 2x2/2
        conv2 16 3x3 VALID -> ReLU -> avgpool 2x2/2     (5x5x16 at 28 px)
  head: flatten -> fc1 120 -> ReLU -> fc2 84 -> ReLU -> fc3 classes

Two variants for seed 004's transfer of an MNIST LeNet to STL-10's 96x96x3:
  'lenet_stem'  the seed's way (`create_for_stl_10`): RGB in, then a stem
                of convolutions that shrinks 96 px to 28x28x1 in front of
                the LeNet layers: stem/conv1 6 5x5 -> ReLU -> avgpool 2x2/2
                -> stem/conv2..conv5 6 5x5 -> ReLU -> stem/conv6 1 3x3 ->
                ReLU (96 -> 92 -> 46 -> 42 -> 38 -> 34 -> 30 -> 28). The
                body and head are LeNet's own, so an MNIST 'lenet' run's
                weights load into them by name (init='checkpoint'); the stem
                is new.
  'lenet_rgb'   the way the seed suggests ("upsample MNIST to 96x96x3"):
                LeNet taking RGB at any size, pre-trained on MNIST resized
                to 96 px with its grey plane repeated, then trained on
                STL-10 as it is.

Keras's AveragePooling2D defaults: pool 2, stride 2, 'valid'. Keras's
softmax is left to the loss. With config.dropout > 0 (not in the seed),
Dropout follows fc1's and fc2's ReLU.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtransfer.models.common import (BodyHead, probe_point, ModelSpec,
                                       conv_out, check_frozen_norms,
                                       dropout_rate, smallest_image_size)
from jaxtransfer.models.initializers import (init_spec, layer_inits)

BODY_LAYERS = (("conv1", 6, 3), ("conv2", 16, 3))  # (name, features, kernel)
HEAD_LAYERS = (("fc1", 120), ("fc2", 84))  # then fc3 -> classes
# The seed's stem: (name, features, kernel, avg-pool 2x2/2 after it?)
STEM_LAYERS = (("conv1", 6, 5, True), ("conv2", 6, 5, False),
               ("conv3", 6, 5, False), ("conv4", 6, 5, False),
               ("conv5", 6, 5, False), ("conv6", 1, 3, False))


def stem_size(image_size: int) -> int:
  """The stem's output size: 28 at 96 px."""
  size = image_size
  for _, _, kernel, pool in STEM_LAYERS:
    size = conv_out(size, kernel, 1, 0)
    if pool:
      size = conv_out(size, 2, 2, 0)
  return size


def spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after each conv + pool, in order: [13, 5] at 28 px."""
  sizes, size = [], image_size
  for _, _, kernel in BODY_LAYERS:
    size = conv_out(conv_out(size, kernel, 1, 0), 2, 2, 0)
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
                  **layer_inits(self.kernel_init, x.shape[-1] * kernel * kernel))(x)
      x = nn.relu(x)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
      probe_point(self, name, x)
    return x


class LeNetStem(nn.Module):
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for name, features, kernel, pool in STEM_LAYERS:
      x = nn.Conv(features, (kernel, kernel), padding="VALID",
                  dtype=self.dtype, name=name,
                  **layer_inits(self.kernel_init, x.shape[-1] * kernel * kernel))(x)
      x = nn.relu(x)
      if pool:
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
                   **layer_inits(self.kernel_init, x.shape[-1]))(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc3",
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


class LeNet(BodyHead):
  num_classes: int
  dropout: float = 0.0
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()  # no BatchNorm: always empty
  stem: bool = False  # 'lenet_stem': the seed's 96 -> 28 px stem first

  def setup(self):
    if self.stem:
      self.stem_layers = LeNetStem(self.kernel_init, self.dtype, name="stem")
    self.body = LeNetBody(self.kernel_init, self.dtype)
    self.head = LeNetHead(self.num_classes, self.dropout, self.kernel_init,
                          self.dtype)

  def features(self, x, train: bool = False):
    if self.stem:
      x = self.stem_layers(x)
    return self.body(x, train)


PRESETS = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
}


def _builder(stem: bool):
  def build(config, num_classes: int, *, dtype: Any,
            frozen_norms: tuple[str, ...] = ()) -> LeNet:
    check_frozen_norms(frozen_norms, (), config.model)
    return LeNet(num_classes, dropout_rate(config, SPEC.default_dropout),
                 init_spec(config), dtype, stem=stem)
  return build


build = _builder(False)
STEM_PRESETS = {
    "none": ((".*", True),),
    "head": (("(stem|body)/.*", False), ("head/.*", True)),
    # Only the new stem trains: the MNIST layers stay as they were.
    "stem": (("stem/.*", True), (".*", False)),
}
STEM_MIN_IMAGE_SIZE = next(s for s in range(1, 512)
                           if stem_size(s) >= MIN_IMAGE_SIZE)


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
STEM_SPEC = ModelSpec(
    name="lenet_stem",
    build=_builder(True),
    input_channels=3,
    min_image_size=STEM_MIN_IMAGE_SIZE,
    freeze_presets=STEM_PRESETS,
    default_dropout=0.0,
    description=("seed 004's LeNet for STL-10: six convolutions shrinking "
                 "96x96x3 to 28x28x1 in front of LeNet's layers"),
    pretrained_inits=("checkpoint",),
)
RGB_SPEC = ModelSpec(
    name="lenet_rgb",
    build=_builder(False),
    input_channels=3,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=PRESETS,
    default_dropout=0.0,
    description="seed 004's LeNet on RGB images of any size (upsampled MNIST)",
    pretrained_inits=("checkpoint",),
)
