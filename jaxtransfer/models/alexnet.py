"""The AlexNet body (torchvision's `features`) and the models built on it.

All modules are flax.linen, NHWC. Parameter paths are what freezing rules and
weight loading match on:

  Classifier ('alexnet'):      body/conv{1..5}/{kernel,bias}
                               head/{fc1,fc2}/{kernel,bias}
  AlexNetTorchvision
    ('alexnet_torchvision'):   body/conv{1..5}/...  head/{fc6,fc7,fc8}/...
                               (config.head='linear': head/fc/..., one Dense
                               on the 6x6x256 = 9216 pooled features)
  Autoencoder:                 body/conv{1..5}/...  decoder/...
  TorchvisionAlexNet:          body/conv{1..5}/...  classifier/{fc6,fc7,fc8}/...
                               (the converter's layout, to check its output)

The autoencoder's encoder *is* the classifier's body (same module, same
name), so initialising a classifier from an autoencoder copies `body` across.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtransfer.core.errors import UserError
from jaxtransfer.models.common import (probe_point, BodyHead, LinearHead,
                                       MLPHead, ModelSpec, conv_out,
                                       adaptive_avg_pool,
                                       check_frozen_norms, dropout_rate,
                                       head_choice, linear_head_dropout,
                                       max_pool_3x3_s2, smallest_image_size)
from jaxtransfer.models.initializers import (init_spec, layer_inits)

# torchvision's AlexNet `features`: (name, features, kernel, stride, padding,
# max-pool 3/2 after it?). Conv kernels are HWIO here, OIHW in PyTorch.
ALEXNET_FEATURES = (
    ("conv1", 64, 11, 4, 2, True),
    ("conv2", 192, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),
)
BODY_CHANNELS = ALEXNET_FEATURES[-1][1]
POOLED_SIZE = 6  # torchvision's AdaptiveAvgPool2d((6, 6))


def body_spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after each conv (and its pool, if any), in order."""
  sizes, size = [], image_size
  for _, _, kernel, stride, padding, pool in ALEXNET_FEATURES:
    size = conv_out(size, kernel, stride, padding)
    if pool:
      size = conv_out(size, 3, 2, 0)
    sizes.append(size)
  return sizes


def _smallest_image_size() -> int:
  return smallest_image_size(body_spatial_sizes)


MIN_IMAGE_SIZE = _smallest_image_size()  # 63 px for torchvision's layout


def check_image_size(image_size: int) -> None:
  if image_size < MIN_IMAGE_SIZE:
    raise UserError(
        f"image_size={image_size} is too small for the AlexNet body: it needs "
        f"at least {MIN_IMAGE_SIZE} px")


def feature_dim(image_size: int) -> int:
  """Length of the flattened body output: 2304 at 128 px, 9216 at 224 px."""
  return BODY_CHANNELS * body_spatial_sizes(image_size)[-1] ** 2


class AlexNetBody(nn.Module):
  """torchvision's AlexNet `features` in NHWC: returns [B, h, w, 256]."""
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or BatchNorm in the body
    for name, features, kernel, stride, padding, pool in ALEXNET_FEATURES:
      fan_in = x.shape[-1] * kernel * kernel
      x = nn.Conv(
          features, (kernel, kernel), (stride, stride),
          padding=((padding, padding), (padding, padding)),
          dtype=self.dtype, name=name, **layer_inits(self.kernel_init, fan_in))(x)
      x = nn.relu(x)
      if pool:
        x = max_pool_3x3_s2(x)
      probe_point(self, name, x)
    return x


class Classifier(BodyHead):
  """'alexnet': the seed study's AlexNet body + 2304 -> 500 -> N head."""
  num_classes: int
  hidden: int = 500
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  dropout: float = 0.0
  frozen_norms: tuple[str, ...] = ()  # no BatchNorm: always empty

  def setup(self):
    self.body = AlexNetBody(self.kernel_init, self.dtype)
    self.head = MLPHead(self.num_classes, self.hidden, self.kernel_init,
                        self.dtype, self.dropout)


class TorchvisionHead(nn.Module):
  """torchvision's AlexNet `classifier`: Dropout -> fc6 -> ReLU -> Dropout ->
  fc7 -> ReLU -> fc8, on the pooled features flattened in NHWC order."""
  num_classes: int
  dropout: float = 0.5
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled, train: bool = False):
    x = pooled.reshape(pooled.shape[0], -1)
    for name in ("fc6", "fc7"):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = nn.Dense(4096, dtype=self.dtype, name=name,
                   **layer_inits(self.kernel_init, x.shape[-1]))(x)
      x = nn.relu(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc8",
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


class AlexNetTorchvision(BodyHead):
  """'alexnet_torchvision': torchvision's whole AlexNet, dropout included.

  `features` is the body followed by the 6x6 adaptive average pool, so a
  frozen body's feature cache holds [B, 6, 6, 256] whatever the image size.
  Same layers as TorchvisionAlexNet, with the classifier under `head`;
  head_type='linear' replaces it by one Dense layer 'fc' (`dropout` is then
  that head's rate).
  """
  num_classes: int
  dropout: float = 0.5
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()  # no BatchNorm: always empty
  head_type: str = ""  # config.head: '' or 'linear'

  def setup(self):
    self.body = AlexNetBody(self.kernel_init, self.dtype)
    if self.head_type == "linear":
      self.head = LinearHead(self.num_classes, self.kernel_init, self.dtype,
                             self.dropout)
    else:
      self.head = TorchvisionHead(self.num_classes, self.dropout,
                                  self.kernel_init, self.dtype)

  def features(self, x, train: bool = False):
    return adaptive_avg_pool(self.body(x, train), POOLED_SIZE)


class Decoder(nn.Module):
  """Body features [B, h, w, 256] -> an image [B, S, S, 3].

  Goes back up the body's spatial sizes (conv5 -> conv2 -> conv1 output),
  each stage a bilinear resize and a 3x3 convolution, predicts pixels at
  conv1's resolution (S/4) and upsamples them bilinearly to S. Resize +
  convolution, not transposed convolutions: XLA's transposed convolutions are
  slow (2x slower here on the CPU, benchmarks/decoder.py) and checkerboard.
  Widths halve per stage; the decoder costs about half the body's
  multiply-adds, and predicting S/4 pixels loses nothing for CIFAR-10's
  32 px images upsampled to 128.
  """
  image_size: int
  widths: tuple[int, ...] = (192, 96, 48)
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    sizes = body_spatial_sizes(self.image_size)
    targets = (sizes[3], sizes[0], conv_out(self.image_size, 11, 4, 2))
    for i, (size, features) in enumerate(zip(targets, self.widths), start=1):
      x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear")
      x = nn.Conv(features, (3, 3), padding=1, dtype=self.dtype,
                  name=f"deconv{i}",
                  **layer_inits(self.kernel_init, x.shape[-1] * 9))(x)
      x = nn.relu(x)
    x = nn.Conv(3, (3, 3), padding=1, dtype=self.dtype, name="to_pixels",
                **layer_inits(self.kernel_init, x.shape[-1] * 9))(x)
    x = jax.image.resize(
        x, (x.shape[0], self.image_size, self.image_size, 3), "bilinear")
    return x.astype(jnp.float32)


class Autoencoder(nn.Module):
  image_size: int
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  def setup(self):
    self.body = AlexNetBody(self.kernel_init, self.dtype)
    self.decoder = Decoder(self.image_size, kernel_init=self.kernel_init,
                           dtype=self.dtype)

  def __call__(self, x, train: bool = False):
    del train  # no dropout or BatchNorm
    return self.decoder(self.body(x))


class TorchvisionAlexNet(nn.Module):
  """torchvision's whole AlexNet (body, 6x6 adaptive average pool, 1000-way
  classifier; dropout omitted: evaluation only), to check converted weights.

  `classifier/fc6` takes the pooled features flattened in NHWC order; the
  converter reorders PyTorch's (C, H, W) columns to match.
  """
  num_classes: int = 1000

  def setup(self):
    self.body = AlexNetBody()
    self.classifier = ImageNetClassifier(self.num_classes)

  def __call__(self, x):
    return self.classifier(adaptive_avg_pool(self.body(x), POOLED_SIZE))


class ImageNetClassifier(nn.Module):
  num_classes: int = 1000

  @nn.compact
  def __call__(self, pooled):
    x = pooled.reshape(pooled.shape[0], -1)
    x = nn.relu(nn.Dense(4096, name="fc6")(x))
    x = nn.relu(nn.Dense(4096, name="fc7")(x))
    return nn.Dense(self.num_classes, name="fc8")(x)


# ---------------------------------------------------------------------------
# Registry entries.

# The seed study's three regimes (freezing.PRESETS).
ALEXNET_PRESETS = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
    "head+conv5": (("body/conv5/.*", True), ("body/.*", False),
                   ("head/.*", True)),
    "last": (("head/fc2/.*", True), (".*", False)),  # only the last layer
}

TORCHVISION_PRESETS = {
    **ALEXNET_PRESETS,
    # Seed 001's case 4: feature extraction, only the last layer trains
    # (fc8, or the linear head's fc).
    "last": (("head/(fc8|fc)/.*", True), (".*", False)),
}


def build_alexnet(config, num_classes: int, *, dtype: Any,
                  frozen_norms: tuple[str, ...] = ()) -> Classifier:
  check_frozen_norms(frozen_norms, (), "alexnet")
  return Classifier(num_classes, config.head_hidden, init_spec(config), dtype,
                    dropout=dropout_rate(config, ALEXNET_SPEC.default_dropout))


def build_alexnet_torchvision(config, num_classes: int, *, dtype: Any,
                              frozen_norms: tuple[str, ...] = ()
                              ) -> AlexNetTorchvision:
  check_frozen_norms(frozen_norms, (), "alexnet_torchvision")
  head = head_choice(config)
  rate = (linear_head_dropout(config) if head == "linear"
          else dropout_rate(config, TORCHVISION_SPEC.default_dropout))
  return AlexNetTorchvision(num_classes, rate, init_spec(config), dtype,
                            head_type=head)


ALEXNET_SPEC = ModelSpec(
    name="alexnet",
    build=build_alexnet,
    input_channels=3,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=ALEXNET_PRESETS,
    default_dropout=0.0,
    description=("the seed study's AlexNet: torchvision's AlexNet body + "
                 "flatten -> head_hidden -> classes head"),
    pretrained_inits=("autoencoder", "imagenet", "checkpoint"),
)

TORCHVISION_SPEC = ModelSpec(
    name="alexnet_torchvision",
    build=build_alexnet_torchvision,
    input_channels=3,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=TORCHVISION_PRESETS,
    default_dropout=0.5,
    description=("torchvision's whole AlexNet: body, 6x6 adaptive average "
                 "pool, dropout + 4096 -> 4096 -> classes head"),
    pretrained_inits=("imagenet", "checkpoint"),
    heads=("", "linear"),
)
