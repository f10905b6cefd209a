"""torchvision's ResNet-50 ('resnet50', v1.5: the stride in the 3x3 conv of a
bottleneck), flax NHWC.

Parameter paths are torchvision's module names with '/' for '.' (blocks are
numbered '0', '1', ... as in torchvision's Sequential), so the converter's
mapping (`torch_module`) is a join:

  body/conv1, body/bn1                                  7x7/2 conv, its norm
  body/layer{1..4}/{j}/conv{1,2,3}, .../bn{1,2,3}       bottleneck j
  body/layer{1..4}/0/downsample/0 (conv), .../1 (norm)  the projection
  head/fc                                               (config.head '' and
                                                         'linear' alike)
  head/fc1, head/fc2                                    (config.head='mlp':
                                                         seed 004's Keras head)

Convolutions have no bias; BatchNorms are PyTorch's (momentum 0.1, epsilon
1e-5), their running statistics in batch_stats under the same paths.
`features(x)` is the global average pool of the body: [B, 2048].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtransfer.models.common import (BodyHead, probe_point, LinearHead,
                                       MLPHead, ModelSpec, TorchLayers,
                                       conv_out, bn_momentum,
                                       check_frozen_norms, dropout_rate,
                                       head_choice, smallest_image_size)
from jaxtransfer.models.initializers import (init_spec)

# (blocks, bottleneck width, stride of the first block) per layer.
LAYERS = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
EXPANSION = 4
FEATURES = LAYERS[-1][1] * EXPANSION  # 2048


def spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after conv1, the max pool and each layer."""
  size = conv_out(image_size, 7, 2, 3)
  sizes = [size, conv_out(size, 3, 2, 1)]
  for _, _, stride in LAYERS:
    sizes.append(conv_out(sizes[-1], 3, stride, 1))
  return sizes


MIN_IMAGE_SIZE = smallest_image_size(spatial_sizes)  # 1: padding never empties


def norm_paths() -> tuple[str, ...]:
  paths = ["body/bn1"]
  for i, (blocks, _, _) in enumerate(LAYERS, start=1):
    for j in range(blocks):
      paths += [f"body/layer{i}/{j}/bn{k}" for k in (1, 2, 3)]
      if j == 0:
        paths.append(f"body/layer{i}/0/downsample/1")
  return tuple(paths)


def torch_module(part: str, path: tuple[str, ...]) -> str:
  """('layer1', '0', 'conv1') -> 'layer1.0.conv1'; the head's fc -> 'fc'."""
  del part  # body and head names are torchvision's top-level ones
  return ".".join(path)


class Downsample(TorchLayers):
  """torchvision's downsample Sequential: '0' 1x1 conv, '1' BatchNorm."""
  features: int = 256
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    return self.norm(self.conv(x, self.features, 1, self.stride, 0, "0"),
                     "1", train)


class Bottleneck(TorchLayers):
  width: int = 64
  stride: int = 1
  downsample: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    out = nn.relu(self.norm(self.conv(x, self.width, 1, 1, 0, "conv1"),
                            "bn1", train))
    out = nn.relu(self.norm(
        self.conv(out, self.width, 3, self.stride, 1, "conv2"), "bn2", train))
    out = self.norm(self.conv(out, self.width * EXPANSION, 1, 1, 0, "conv3"),
                    "bn3", train)
    identity = x
    if self.downsample:
      identity = Downsample(features=self.width * EXPANSION,
                            stride=self.stride, name="downsample",
                            **self.options())(x, train)
    return nn.relu(out + identity)


class ResLayer(TorchLayers):
  blocks: int = 3
  width: int = 64
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    for j in range(self.blocks):
      x = Bottleneck(width=self.width, stride=self.stride if j == 0 else 1,
                     downsample=j == 0, name=str(j), **self.options())(x, train)
    return x


class ResNetBody(TorchLayers):
  """torchvision's ResNet-50 up to layer4: [B, h, w, 2048]."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(self.norm(self.conv(x, 64, 7, 2, 3, "conv1"), "bn1", train))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    probe_point(self, "stem", x)
    for i, (blocks, width, stride) in enumerate(LAYERS, start=1):
      x = ResLayer(blocks=blocks, width=width, stride=stride,
                   name=f"layer{i}", **self.options())(x, train)
      probe_point(self, f"layer{i}", x)
    return x


class ResNet50(BodyHead):
  """'resnet50'; its head is one Dense 'fc' for config.head '' and 'linear'."""
  num_classes: int
  dropout: float = 0.0
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.9  # PyTorch's momentum 0.1
  head_type: str = ""  # '' and 'linear': fc; 'mlp': fc1 -> ReLU -> fc2
  head_hidden: int = 512

  def setup(self):
    check_frozen_norms(self.frozen_norms, norm_paths(), "resnet50")
    self.body = ResNetBody(self.kernel_init, self.dtype, self.frozen_norms,
                           self.bn_momentum)
    if self.head_type == "mlp":
      self.head = MLPHead(self.num_classes, self.head_hidden,
                          self.kernel_init, self.dtype, self.dropout)
    else:
      self.head = LinearHead(self.num_classes, self.kernel_init, self.dtype,
                             self.dropout, layer="fc")

  def features(self, x, train: bool = False):
    return jnp.mean(self.body(x, train), axis=(1, 2))


PRESETS = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
    "head+layer4": (("body/layer4/.*", True), ("body/.*", False),
                    ("head/.*", True)),
}


def build(config, num_classes: int, *, dtype: Any,
          frozen_norms: tuple[str, ...] = ()) -> ResNet50:
  check_frozen_norms(frozen_norms, norm_paths(), "resnet50")
  return ResNet50(num_classes, dropout_rate(config, SPEC.default_dropout),
                  init_spec(config), dtype, tuple(frozen_norms),
                  bn_momentum(config, 0.9), head_choice(config),
                  int(config.head_hidden))


SPEC = ModelSpec(
    name="resnet50",
    build=build,
    input_channels=3,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=PRESETS,
    default_dropout=0.0,
    description=("torchvision's ResNet-50 (v1.5, BatchNorm): 16 bottlenecks, "
                 "global average pool, 2048 -> classes fc"),
    pretrained_inits=("imagenet", "checkpoint"),
    heads=("", "linear", "mlp"),
)
