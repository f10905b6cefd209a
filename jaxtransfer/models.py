"""Networks: the AlexNet body, the study's head, the classifier, the autoencoder.

All modules are flax.linen, NHWC. Parameter paths are what freezing rules and
weight loading match on:

  Classifier:   body/conv{1..5}/{kernel,bias}   head/{fc1,fc2}/{kernel,bias}
  Autoencoder:  body/conv{1..5}/{kernel,bias}   decoder/...

The autoencoder's encoder *is* the classifier's body (same module, same
name), so initialising a classifier from an autoencoder copies `body` across.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtransfer.errors import UserError

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


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
  return (size + 2 * padding - kernel) // stride + 1


def body_spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after each conv (and its pool, if any), in order."""
  sizes, size = [], image_size
  for _, _, kernel, stride, padding, pool in ALEXNET_FEATURES:
    size = _conv_out(size, kernel, stride, padding)
    if pool:
      size = _conv_out(size, 3, 2, 0)
    sizes.append(size)
  return sizes


def _smallest_image_size() -> int:
  size = 1
  while min(body_spatial_sizes(size)) < 1:
    size += 1
  return size


MIN_IMAGE_SIZE = _smallest_image_size()  # 63 px for torchvision's layout


def check_image_size(image_size: int) -> None:
  if image_size < MIN_IMAGE_SIZE:
    raise UserError(
        f"image_size={image_size} is too small for the AlexNet body: it needs "
        f"at least {MIN_IMAGE_SIZE} px")


def feature_dim(image_size: int) -> int:
  """Length of the flattened body output: 2304 at 128 px, 9216 at 224 px."""
  return BODY_CHANNELS * body_spatial_sizes(image_size)[-1] ** 2


# ---------------------------------------------------------------------------
# Initialisers. 'torch' reproduces PyTorch's default for Conv2d/Linear, which
# the seed study's random arm used: kaiming_uniform(a=sqrt(5)) for weights,
# U(+-1/sqrt(fan_in)) for biases. The others are flax's, with zero biases.

def _torch_bias_init(fan_in: int) -> Callable:
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


KERNEL_INITS = {
    "torch": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    "lecun_normal": nn.initializers.lecun_normal(),
    "he_normal": nn.initializers.he_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
}


def _inits(kernel_init: str, fan_in: int) -> dict[str, Callable]:
  bias = (_torch_bias_init(fan_in) if kernel_init == "torch"
          else nn.initializers.zeros)
  return dict(kernel_init=KERNEL_INITS[kernel_init], bias_init=bias)


# ---------------------------------------------------------------------------

def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torchvision's MaxPool2d(3, stride=2) (no padding) on NHWC.

  Written as the max of the 9 strided views rather than `nn.max_pool`: the
  values are identical, but the gradient becomes selects instead of XLA's
  select-and-scatter, which on the CPU made the pools' backward pass 7x
  slower (45 ms of a 264 ms step at batch 32, 128 px; BENCHMARKS.md). On
  exact ties inside a window the gradient is shared instead of going to one
  element; after a ReLU, ties are zeros, whose gradient is 0 either way.
  """
  height, width = x.shape[1], x.shape[2]
  out_h, out_w = (height - 3) // 2 + 1, (width - 3) // 2 + 1
  views = [x[:, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2, :]
           for i in range(3) for j in range(3)]
  pooled = views[0]
  for view in views[1:]:
    pooled = jnp.maximum(pooled, view)
  return pooled


class AlexNetBody(nn.Module):
  """torchvision's AlexNet `features` in NHWC: returns [B, h, w, 256]."""
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for name, features, kernel, stride, padding, pool in ALEXNET_FEATURES:
      fan_in = x.shape[-1] * kernel * kernel
      x = nn.Conv(
          features, (kernel, kernel), (stride, stride),
          padding=((padding, padding), (padding, padding)),
          dtype=self.dtype, name=name, **_inits(self.kernel_init, fan_in))(x)
      x = nn.relu(x)
      if pool:
        x = max_pool_3x3_s2(x)
    return x


class ClassifierHead(nn.Module):
  """The study's head: flatten -> Dense(hidden) -> ReLU -> Dense(classes)."""
  num_classes: int
  hidden: int = 500
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features):
    x = features.reshape(features.shape[0], -1)
    x = nn.Dense(self.hidden, dtype=self.dtype, name="fc1",
                 **_inits(self.kernel_init, x.shape[-1]))(x)
    x = nn.relu(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc2",
                 **_inits(self.kernel_init, self.hidden))(x)
    return x.astype(jnp.float32)  # logits in float32 for a stable loss


class Classifier(nn.Module):
  num_classes: int
  hidden: int = 500
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  def setup(self):
    self.body = AlexNetBody(self.kernel_init, self.dtype)
    self.head = ClassifierHead(self.num_classes, self.hidden,
                               self.kernel_init, self.dtype)

  def __call__(self, x):
    return self.head(self.body(x))

  def classify_features(self, features):
    """The head alone, on body features (for a frozen body's feature cache)."""
    return self.head(features)

  def features(self, x):
    return self.body(x)


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
    targets = (sizes[3], sizes[0], _conv_out(self.image_size, 11, 4, 2))
    for i, (size, features) in enumerate(zip(targets, self.widths), start=1):
      x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear")
      x = nn.Conv(features, (3, 3), padding=1, dtype=self.dtype,
                  name=f"deconv{i}",
                  **_inits(self.kernel_init, x.shape[-1] * 9))(x)
      x = nn.relu(x)
    x = nn.Conv(3, (3, 3), padding=1, dtype=self.dtype, name="to_pixels",
                **_inits(self.kernel_init, x.shape[-1] * 9))(x)
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

  def __call__(self, x):
    return self.decoder(self.body(x))


def adaptive_avg_pool(x: jax.Array, output_size: int) -> jax.Array:
  """PyTorch's AdaptiveAvgPool2d on NHWC: output bin i averages input rows
  floor(i * H / out) .. ceil((i + 1) * H / out) - 1 (likewise columns)."""
  def bins(size):
    return [(i * size // output_size, -(-(i + 1) * size // output_size))
            for i in range(output_size)]

  rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(x.shape[1])]
  x = jnp.stack(rows, axis=1)  # [B, out, W, C]
  cols = [jnp.mean(x[:, :, a:b], axis=2) for a, b in bins(x.shape[2])]
  return jnp.stack(cols, axis=2)  # [B, out, out, C]


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
    return self.classifier(adaptive_avg_pool(self.body(x), 6))


class ImageNetClassifier(nn.Module):
  num_classes: int = 1000

  @nn.compact
  def __call__(self, pooled):
    x = pooled.reshape(pooled.shape[0], -1)
    x = nn.relu(nn.Dense(4096, name="fc6")(x))
    x = nn.relu(nn.Dense(4096, name="fc7")(x))
    return nn.Dense(self.num_classes, name="fc8")(x)


def make_model(config, num_classes: int) -> nn.Module:
  """The model the config's task trains."""
  check_image_size(config.image_size)
  dtype = jnp.bfloat16 if config.compute_dtype == "bfloat16" else jnp.float32
  if config.task == "autoencoder":
    return Autoencoder(config.image_size, config.kernel_init, dtype)
  return Classifier(num_classes, config.head_hidden, config.kernel_init, dtype)
