"""torchvision's DenseNet-121 ('densenet121'), flax NHWC.

Parameter paths are torchvision's names under `features` with '/' for '.'
(`torch_module` prefixes 'features.'), the head is torchvision's
`classifier`:

  body/conv0, body/norm0                            7x7/2 conv, its norm
  body/denseblock{b}/denselayer{l}/{norm1,conv1,norm2,conv2}
                                                    b = 1..4, l = 1..6/12/24/16
  body/transition{t}/{norm,conv}                    t = 1..3
  body/norm5
  head/classifier                                   (config.head '' and
                                                     'linear' alike)

Convolutions have no bias; BatchNorms are PyTorch's, statistics in
batch_stats under the same paths. `features(x)` is ReLU(norm5 output)
averaged over space: [B, 1024]. A dense layer's input is the concatenation
of its block's input and every earlier layer's 32 new channels.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from jaxtransfer.models.common import (probe_point, BodyHead, LinearHead,
                                       ModelSpec, TorchLayers, conv_out,
                                       bn_momentum, check_frozen_norms,
                                       dropout_rate, smallest_image_size)
from jaxtransfer.models.initializers import (init_spec)

GROWTH = 32
BLOCKS = (6, 12, 24, 16)
INIT_FEATURES = 64
BN_SIZE = 4


def _widths() -> list[int]:
  """Channels entering each block, and leaving the last (1024)."""
  widths, width = [], INIT_FEATURES
  for i, layers in enumerate(BLOCKS):
    widths.append(width)
    width += layers * GROWTH
    if i < len(BLOCKS) - 1:
      width //= 2
  return widths + [width]


FEATURES = _widths()[-1]  # 1024


def spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after conv0, pool0 and each transition's 2x2/2 pool."""
  size = conv_out(image_size, 7, 2, 3)
  sizes = [size, conv_out(size, 3, 2, 1)]
  for _ in BLOCKS[:-1]:
    sizes.append(sizes[-1] // 2)
  return sizes


MIN_IMAGE_SIZE = smallest_image_size(spatial_sizes)  # 29


def norm_paths() -> tuple[str, ...]:
  paths = ["body/norm0"]
  for b, layers in enumerate(BLOCKS, start=1):
    for l in range(1, layers + 1):
      paths += [f"body/denseblock{b}/denselayer{l}/norm{k}" for k in (1, 2)]
    if b < len(BLOCKS):
      paths.append(f"body/transition{b}/norm")
  return tuple(paths + ["body/norm5"])


def torch_module(part: str, path: tuple[str, ...]) -> str:
  """('denseblock1', 'denselayer1', 'norm1') ->
  'features.denseblock1.denselayer1.norm1'; the head -> 'classifier'."""
  return ".".join(path) if part == "head" else ".".join(("features", *path))


# Old torchvision files (densenet121-a639ec97.pth) name a dense layer's
# modules 'norm.1', 'conv.2', ...; torchvision's loader renames them. The
# same pattern, which also renames a BatchNorm's num_batches_tracked.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def remap_legacy_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision.models.densenet._load_state_dict's renaming:
  '...denselayer1.norm.1.weight' -> '...denselayer1.norm1.weight'."""
  renamed = {}
  for key, value in state_dict.items():
    match = _LEGACY_KEY.match(key)
    renamed[match.group(1) + match.group(2) if match else key] = value
  return renamed


class _Layers(TorchLayers):
  def norm_relu(self, x, name: str, train: bool):
    return nn.relu(self.norm(x, name, train))


class DenseLayer(_Layers):
  """norm1 -> ReLU -> 1x1 conv1 (128) -> norm2 -> ReLU -> 3x3 conv2 (32)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = self.conv(self.norm_relu(x, "norm1", train), BN_SIZE * GROWTH, 1, 1,
                  0, "conv1")
    return self.conv(self.norm_relu(x, "norm2", train), GROWTH, 3, 1, 1,
                     "conv2")


class DenseBlock(_Layers):
  layers: int = 6

  @nn.compact
  def __call__(self, x, train: bool = False):
    for l in range(1, self.layers + 1):
      new = DenseLayer(name=f"denselayer{l}", **self.options())(x, train)
      x = jnp.concatenate([x, new], axis=-1)
    return x


class Transition(_Layers):
  """norm -> ReLU -> 1x1 conv halving the channels -> 2x2/2 average pool."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = self.conv(self.norm_relu(x, "norm", train), x.shape[-1] // 2, 1, 1, 0,
                  "conv")
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNetBody(_Layers):
  """torchvision's DenseNet-121 `features` (norm5 included, no final ReLU)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = self.norm_relu(self.conv(x, INIT_FEATURES, 7, 2, 3, "conv0"), "norm0",
                       train)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    probe_point(self, "stem", x)
    for b, layers in enumerate(BLOCKS, start=1):
      x = DenseBlock(layers=layers, name=f"denseblock{b}",
                     **self.options())(x, train)
      if b < len(BLOCKS):
        x = Transition(name=f"transition{b}", **self.options())(x, train)
        probe_point(self, f"block{b}", x)
    x = self.norm(x, "norm5", train)
    probe_point(self, "block4", nn.relu(x))  # the ReLU before the pool
    return x


class DenseNet121(BodyHead):
  """'densenet121'; its head is one Dense 'classifier' for config.head ''
  and 'linear' alike."""
  num_classes: int
  dropout: float = 0.0
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.9  # PyTorch's momentum 0.1

  def setup(self):
    check_frozen_norms(self.frozen_norms, norm_paths(), "densenet121")
    self.body = DenseNetBody(self.kernel_init, self.dtype, self.frozen_norms,
                             self.bn_momentum)
    self.head = LinearHead(self.num_classes, self.kernel_init, self.dtype,
                           self.dropout, layer="classifier")

  def features(self, x, train: bool = False):
    return jnp.mean(nn.relu(self.body(x, train)), axis=(1, 2))


PRESETS = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
    "head+block4": (("body/(denseblock4|norm5)/.*", True), ("body/.*", False),
                    ("head/.*", True)),
}


def build(config, num_classes: int, *, dtype: Any,
          frozen_norms: tuple[str, ...] = ()) -> DenseNet121:
  check_frozen_norms(frozen_norms, norm_paths(), "densenet121")
  return DenseNet121(num_classes, dropout_rate(config, SPEC.default_dropout),
                     init_spec(config), dtype, tuple(frozen_norms),
                     bn_momentum(config, 0.9))


SPEC = ModelSpec(
    name="densenet121",
    build=build,
    input_channels=3,
    min_image_size=MIN_IMAGE_SIZE,
    freeze_presets=PRESETS,
    default_dropout=0.0,
    description=("torchvision's DenseNet-121 (BatchNorm): 4 dense blocks of "
                 "6/12/24/16 layers, global average pool, 1024 -> classes"),
    pretrained_inits=("imagenet", "checkpoint"),
    heads=("", "linear"),
)
