"""What the models share: the registry's ModelSpec, pooling, BatchNorm and
dropout settings, spatial-size arithmetic (initialisers: initializers.py).

Kept free of the concrete models so each model module can import it (and
define its own ModelSpec) without importing the package's registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtransfer.core.errors import UserError
from jaxtransfer.models.initializers import layer_inits

# Freezing rules as freezing.py takes them: ordered (regex, trainable) pairs.
Rules = tuple[tuple[str, bool], ...]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A registered classifier model and what the rest of jaxtransfer needs to
  know about it without building it."""
  name: str
  # build(config, num_classes, *, dtype, frozen_norms=()) -> nn.Module
  build: Callable[..., nn.Module]
  input_channels: int  # 3 for the AlexNet family, 1 for lenet
  min_image_size: int  # the smallest input (px) the model takes
  freeze_presets: dict[str, Rules]  # config.freeze name -> rules
  default_dropout: float  # used when config.dropout < 0
  description: str  # one line, for docs and errors
  pretrained_inits: tuple[str, ...]  # config.init values besides 'random'
  # config.head values the model takes: '' is its own head; 'linear' (the
  # torchvision zoo) one Dense layer on the pooled body features.
  heads: tuple[str, ...] = ("",)
  # validate(config) -> None: raises a UserError for a config the model
  # cannot be built from (checked before anything is written).
  validate: Callable[[Any], None] | None = None
  # build_joint(config, num_classes, *, dtype, frozen_norms=()) -> a module
  # returning {'logits', 'reconstruction'} (config.task='joint', seed 002);
  # None: the model has no decoder.
  build_joint: Callable[..., nn.Module] | None = None


# ---------------------------------------------------------------------------
# Spatial sizes.

def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
  """Output size of a convolution or pool with explicit (symmetric) padding."""
  return (size + 2 * padding - kernel) // stride + 1


def same_out(size: int, stride: int) -> int:
  """Output size of a TF/Keras/flax 'SAME' convolution or pool."""
  return -(-size // stride)


def smallest_image_size(spatial_sizes: Callable[[int], Sequence[int]],
                        limit: int = 4096) -> int:
  """The smallest input size whose every stage has at least one pixel."""
  for size in range(1, limit + 1):
    if min(spatial_sizes(size)) >= 1:
      return size
  raise ValueError(f"no input size up to {limit} px fits")


# ---------------------------------------------------------------------------
# Layers.

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


PROBES = "probes"  # the collection probe points are sown into
PROBE_PREFIX = "at_"  # (a sown name may not be a submodule's: conv1's is at_conv1)


def probe_point(module: nn.Module, name: str, x) -> None:
  """Marks `x` as the output of layer `name` of a body, for the per-layer
  probes and CKA (probes.py): after the layer's activation and pooling. A
  no-op unless the PROBES collection is mutable (training and evaluation
  never make it so) and while initialising (`init` makes every collection
  mutable; its variables must stay params [+ batch_stats])."""
  if module.is_initializing():
    return
  module.sow(PROBES, PROBE_PREFIX + name, x)


class BodyHead(nn.Module):
  """A classifier made of `self.body` and `self.head` (assigned in the
  subclass's setup): the registry's interface, written once. A model whose
  cacheable features are more than the body's output (a pooled body)
  overrides `features`."""

  def __call__(self, x, train: bool = False):
    return self.classify_features(self.features(x, train), train)

  def features(self, x, train: bool = False):
    """What a frozen body's feature cache stores."""
    return self.body(x, train)

  def classify_features(self, features, train: bool = False):
    """The head alone, on cached features."""
    return self.head(features, train)


class LinearHead(nn.Module):
  """config.head='linear' (seed 003's "simple linear head"): the pooled body
  features flattened (NHWC order) -> one Dense layer named `layer` -> logits;
  dropout before it only when config.dropout sets a rate."""
  num_classes: int
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  dropout: float = 0.0
  layer: str = "fc"

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = features.reshape(features.shape[0], -1)
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name=self.layer,
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


class MLPHead(nn.Module):
  """Flatten -> fc1 (hidden units) -> ReLU -> [dropout] -> fc2 -> logits.

  The head of 'alexnet' (seed 000's 2304 -> 500 -> N; dropout only where a
  config sets one) and config.head='mlp' (seed 004's Keras head on ResNet50:
  Flatten -> Dense(512, relu) -> Dense(classes); config.head_hidden units)."""
  num_classes: int
  hidden: int = 512
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = features.reshape(features.shape[0], -1)
    x = nn.Dense(self.hidden, dtype=self.dtype, name="fc1",
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    x = nn.relu(x)
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc2",
                 **layer_inits(self.kernel_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


def head_choice(config) -> str:
  """config.head ('' in configs from before the field)."""
  return str(getattr(config, "head", "") or "")


def linear_head_dropout(config) -> float:
  """The linear head's dropout: none unless config.dropout sets a rate."""
  return dropout_rate(config, 0.0)


def keras_batch_norm(name: str, path: str, train: bool,
                     frozen_norms: Iterable[str], dtype: Any,
                     momentum: float = 0.99) -> nn.BatchNorm:
  """Keras's BatchNormalization (momentum 0.99, epsilon 1e-3), to be called
  inside a compact method. It normalises with the running statistics, and
  leaves them alone, in evaluation and when `path` ('body/bn1') is one of
  `frozen_norms` (a Keras layer with trainable=False runs in inference mode)."""
  return nn.BatchNorm(
      use_running_average=(not train) or path in tuple(frozen_norms),
      momentum=momentum, epsilon=1e-3, dtype=dtype, name=name)


def torch_batch_norm(name: str, path: str, train: bool,
                     frozen_norms: Iterable[str], dtype: Any,
                     momentum: float = 0.9) -> nn.BatchNorm:
  """PyTorch's BatchNorm2d (momentum 0.1, i.e. flax's 0.9 weight of the old
  statistics; epsilon 1e-5; scale 1, bias 0), to be called inside a compact
  method; inference mode in evaluation and for `frozen_norms`, as
  keras_batch_norm. (PyTorch's running variance averages the unbiased batch
  variance, flax's the biased one: a factor n/(n-1) on what training adds.)"""
  return nn.BatchNorm(
      use_running_average=(not train) or path in tuple(frozen_norms),
      momentum=momentum, epsilon=1e-5, dtype=dtype, name=name)


def module_path(module: nn.Module, name: str) -> str:
  """'body/layer1/0/bn1': the path of submodule `name` of a bound module
  (what frozen_norms and freezing rules name)."""
  return "/".join((*module.path, name))


def torch_conv(x, features: int, kernel: int, stride: int = 1,
               padding: int = 0, *, name: str, kernel_init: str, dtype: Any,
               use_bias: bool = True) -> jax.Array:
  """PyTorch's Conv2d(kernel, stride, padding) on NHWC, inside a compact
  method (small maps as one matrix product on the CPU: small_map_conv)."""
  inits = layer_inits(kernel_init, x.shape[-1] * kernel * kernel)
  if not use_bias:
    del inits["bias_init"]
  return nn.Conv(features, (kernel, kernel), (stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 use_bias=use_bias, dtype=dtype, name=name,
                 conv_general_dilated=small_map_conv, **inits)(x)


class TorchLayers(nn.Module):
  """Base of the torchvision zoo's body modules: bias-free convolutions and
  PyTorch BatchNorms sharing the module's options (pass them on to a child
  with **self.options())."""
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  frozen_norms: tuple[str, ...] = ()
  bn_momentum: float = 0.9

  def conv(self, x, features: int, kernel: int, stride: int, padding: int,
           name: str):
    return torch_conv(x, features, kernel, stride, padding, name=name,
                      kernel_init=self.kernel_init, dtype=self.dtype,
                      use_bias=False)

  def norm(self, x, name: str, train: bool):
    return torch_batch_norm(name, module_path(self, name), train,
                            self.frozen_norms, self.dtype,
                            self.bn_momentum)(x)

  def options(self) -> dict[str, Any]:
    return dict(kernel_init=self.kernel_init, dtype=self.dtype,
                frozen_norms=self.frozen_norms, bn_momentum=self.bn_momentum)


def bn_momentum(config, default: float) -> float:
  """config.bn_momentum, or the model's own when it is negative (or unset):
  the weight of the old running statistics at each step."""
  value = float(config.get("bn_momentum", -1.0))
  return default if value < 0 else value


def check_frozen_norms(frozen_norms: Iterable[str], known: Iterable[str],
                       model: str) -> None:
  """Every frozen norm must be a BatchNorm of the model (a typo would
  otherwise silently leave a layer's statistics training)."""
  known = tuple(known)
  unknown = [p for p in frozen_norms if p not in known]
  if unknown:
    have = ", ".join(known) if known else "none"
    raise UserError(f"frozen norms {unknown} are not BatchNorm layers of "
                    f"model {model!r} (it has: {have})")


# ---------------------------------------------------------------------------
# Config fields every model reads.

def compute_dtype(config) -> Any:
  """config.compute_dtype as a jnp dtype (parameters stay float32)."""
  name = getattr(config, "compute_dtype", "float32")
  return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def dropout_rate(config, default: float) -> float:
  """config.dropout, or the model's own rate when it is negative (or unset)."""
  rate = getattr(config, "dropout", -1.0)
  if rate is None or rate < 0:
    return float(default)
  if rate >= 1:
    raise UserError(f"config.dropout={rate}: must be below 1 (or -1 for the "
                    "model's own rate)")
  return float(rate)


# Convolutions on small feature maps. XLA:CPU runs a convolution whose input
# is a few pixels across (4x4, 2x2: seed 004's AlexNet at 32 px) 5-20x
# slower than the same arithmetic as one matrix product of the image patches
# (measured, BENCHMARKS.md), while on larger maps (conv1 at 32 px) its own
# convolution is faster. `small_map_conv` is a drop-in for
# lax.conv_general_dilated (flax `nn.Conv(conv_general_dilated=...)`): the
# same parameters and values, as patches @ kernel on the CPU for maps of at
# most SMALL_MAP_PIXELS pixels, the ordinary convolution everywhere else.
SMALL_MAP_PIXELS = 64


def small_map_conv(lhs, rhs, window_strides, padding, lhs_dilation=None,
                   rhs_dilation=None, dimension_numbers=None,
                   feature_group_count=1, precision=None, **kwargs):
  """lax.conv_general_dilated, as an im2col matrix product where that is
  faster (NHWC input, HWIO kernel, no dilation or groups, a small map on the
  CPU)."""
  plain = lambda: jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision, **kwargs)
  spec = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                        dimension_numbers)
  nhwc = (spec.lhs_spec == (0, 3, 1, 2) and spec.rhs_spec == (3, 2, 0, 1)
          and spec.out_spec == (0, 3, 1, 2))
  undilated = all(d == 1 for d in (lhs_dilation or ())) and all(
      d == 1 for d in (rhs_dilation or ()))
  if (jax.default_backend() != "cpu" or not nhwc or not undilated
      or feature_group_count != 1 or kwargs
      or lhs.shape[1] * lhs.shape[2] > SMALL_MAP_PIXELS):
    return plain()
  height, width, in_features, out_features = rhs.shape
  patches = jax.lax.conv_general_dilated_patches(
      lhs, (height, width), window_strides, padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
  # The patches' features are ordered (input channel, row, column).
  kernel = rhs.transpose(2, 0, 1, 3).reshape(in_features * height * width,
                                             out_features)
  return jnp.einsum("bhwk,ko->bhwo", patches, kernel, precision=precision)
