"""torchvision's VGG: 'vgg16', 'vgg13_bn', 'vgg19', 'vgg19_bn' (flax, NHWC).

Parameter paths use Caffe's names, block b = 1..5 and conv k = 1.. within
it; each maps to one module of torchvision's `features`/`classifier`
Sequentials (`torch_module`, which the converter uses):

  body/conv{b}_{k}/{kernel,bias}   features.{i}    3x3 conv, padding 1
  body/bn{b}_{k}/{scale,bias}      features.{i+1}  (the _bn variants; their
      batch_stats body/bn{b}_{k}/{mean,var} are running_mean/running_var)
  head/fc6, fc7, fc8               classifier.0, .3, .6     (config.head='')
  head/fc                          -                  (config.head='linear')

Each block ends in a 2x2/2 max pool. `features(x)` is the body followed by
torchvision's 7x7 adaptive average pool: [B, 7, 7, 512] at any input size.
The head flattens it in NHWC order (the converter reorders fc6's columns
from PyTorch's (C, H, W) flatten). torchvision's classifier order is kept:
fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> Dropout -> fc8.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxtransfer.models.common import (probe_point, BodyHead, LinearHead,
                                       ModelSpec, adaptive_avg_pool,
                                       bn_momentum, check_frozen_norms,
                                       dropout_rate, head_choice,
                                       linear_head_dropout, module_path,
                                       smallest_image_size, torch_batch_norm,
                                       torch_conv)
from jaxtransfer.models.initializers import (init_spec, layer_inits)

# torchvision's cfgs "B", "D", "E": conv widths per block.
CFG_B = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))
CFG_D = ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3)
CFG_E = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
# name -> (blocks, BatchNorm after every conv?)
ARCHS = {
    "vgg16": (CFG_D, False),
    "vgg13_bn": (CFG_B, True),
    "vgg19": (CFG_E, False),
    "vgg19_bn": (CFG_E, True),
}
POOLED_SIZE = 7  # torchvision's AdaptiveAvgPool2d((7, 7))
HIDDEN = 4096
CLASSIFIER = {"fc6": "classifier.0", "fc7": "classifier.3",
              "fc8": "classifier.6"}


def spatial_sizes(image_size: int) -> list[int]:
  """Spatial size after each block (its 2x2/2 pool, which floors)."""
  sizes, size = [], image_size
  for _ in range(5):
    size //= 2
    sizes.append(size)
  return sizes


MIN_IMAGE_SIZE = smallest_image_size(spatial_sizes)  # 32


def layer_names(arch: str) -> list[tuple[str, str | None]]:
  """[(conv name, norm name or None)] in order: ('conv1_1', 'bn1_1'), ..."""
  blocks, batch_norm = ARCHS[arch]
  return [(f"conv{b}_{k}", f"bn{b}_{k}" if batch_norm else None)
          for b, widths in enumerate(blocks, start=1)
          for k in range(1, len(widths) + 1)]


def norm_paths(arch: str) -> tuple[str, ...]:
  return tuple(f"body/{bn}" for _, bn in layer_names(arch) if bn)


def torch_module(arch: str, part: str, path: tuple[str, ...]) -> str:
  """The torchvision module of flax module `path` under `part` ('body' or
  'head', the '' head): ('conv2_1',) -> 'features.5' in vgg16."""
  if part == "head":
    return CLASSIFIER[path[0]]
  blocks, batch_norm = ARCHS[arch]
  index, names = 0, {}
  for b, widths in enumerate(blocks, start=1):
    for k in range(1, len(widths) + 1):
      names[f"conv{b}_{k}"] = f"features.{index}"
      index += 1
      if batch_norm:
        names[f"bn{b}_{k}"] = f"features.{index}"
        index += 1
      index += 1  # ReLU
    index += 1  # MaxPool2d
  return names[path[0]]


class VGGBody(nn.Module):
  """torchvision's VGG `features` on NHWC: returns [B, h, w, 512]."""
  arch: str
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    blocks, _ = ARCHS[self.arch]
    names = iter(layer_names(self.arch))
    for block, widths in enumerate(blocks, start=1):
      for width in widths:
        conv, bn = next(names)
        x = torch_conv(x, width, 3, 1, 1, name=conv,
                       kernel_init=self.kernel_init, dtype=self.dtype)
        if bn:
          x = torch_batch_norm(bn, module_path(self, bn), train,
                               self.frozen_norms, self.dtype,
                               self.bn_momentum)(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      probe_point(self, f"block{block}", x)
    return x


class VGGHead(nn.Module):
  """torchvision's VGG `classifier`: fc6 -> ReLU -> Dropout -> fc7 -> ReLU ->
  Dropout -> fc8, on the pooled features flattened in NHWC order."""
  num_classes: int
  dropout: float = 0.5
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled, train: bool = False):
    x = pooled.reshape(pooled.shape[0], -1)
    for name in ("fc6", "fc7"):
      x = nn.Dense(HIDDEN, dtype=self.dtype, name=name,
                   **layer_inits(self.kernel_init, x.shape[-1]))(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc8",
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


class VGG(BodyHead):
  """A torchvision VGG; `head_type` '' (torchvision's classifier) or
  'linear'; `dropout` is that head's rate."""
  arch: str
  num_classes: int
  head_type: str = ""
  dropout: float = 0.5
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.9  # PyTorch's momentum 0.1

  def setup(self):
    check_frozen_norms(self.frozen_norms, norm_paths(self.arch), self.arch)
    self.body = VGGBody(self.arch, self.kernel_init, self.dtype,
                        self.frozen_norms, self.bn_momentum)
    if self.head_type == "linear":
      self.head = LinearHead(self.num_classes, self.kernel_init, self.dtype,
                             self.dropout)
    else:
      self.head = VGGHead(self.num_classes, self.dropout, self.kernel_init,
                          self.dtype)

  def features(self, x, train: bool = False):
    return adaptive_avg_pool(self.body(x, train), POOLED_SIZE)


PRESETS = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
    # The last conv block (and its BatchNorms) trains with the head.
    "head+conv5": ((r"body/(conv|bn)5_\d+/.*", True), ("body/.*", False),
                   ("head/.*", True)),
    # Feature extraction: only the last layer trains.
    "last": (("head/(fc8|fc)/.*", True), (".*", False)),
}
DEFAULT_DROPOUT = 0.5  # torchvision's classifier


def _builder(arch: str):
  def build(config, num_classes: int, *, dtype: Any,
            frozen_norms: tuple[str, ...] = ()) -> VGG:
    check_frozen_norms(frozen_norms, norm_paths(arch), arch)
    head = head_choice(config)
    rate = (linear_head_dropout(config) if head == "linear"
            else dropout_rate(config, DEFAULT_DROPOUT))
    return VGG(arch, num_classes, head, rate, init_spec(config), dtype,
               tuple(frozen_norms), bn_momentum(config, 0.9))
  return build


def _spec(arch: str) -> ModelSpec:
  blocks, batch_norm = ARCHS[arch]
  convs = sum(len(widths) for widths in blocks)
  return ModelSpec(
      name=arch,
      build=_builder(arch),
      input_channels=3,
      min_image_size=MIN_IMAGE_SIZE,
      freeze_presets=PRESETS,
      default_dropout=DEFAULT_DROPOUT,
      description=(f"torchvision's {arch}: {convs} 3x3 convs"
                   f"{' with BatchNorm' if batch_norm else ''}, 7x7 pool, "
                   "4096 -> 4096 -> classes head with dropout"),
      pretrained_inits=("imagenet", "checkpoint"),
      heads=("", "linear"),
  )


SPECS = tuple(_spec(arch) for arch in ARCHS)
