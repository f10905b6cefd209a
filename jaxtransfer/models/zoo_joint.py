"""Seed 002's big encoders: torchvision's VGG16 and ResNet-50 as encoder and
classifier, with the seed's 5-layer decoder on the body's last feature map
(config.task='joint', config.model='vgg16' or 'resnet50').

  vgg16     decoder C(512)>C(256)>C(128)>C(64)>C(3) on the 7x7x512 map
  resnet50  decoder C(1024)>C(512)>C(256)>C(64)>C(3) on the 7x7x2048 map

where C is a transposed convolution + ReLU (the seed's "ConvTranspose2d +
ReLU"). Each doubles the map (kernel 4, stride 2: PyTorch's
ConvTranspose2d(4, 2, padding=1), the usual doubling layer; the seed does
not give its kernel), so five of them take the 224 px input's 7x7 map back
to 224x224 (32 px: 1x1 -> 32). The image size must be a multiple of 32.
The last layer has no ReLU: its target is the ImageNet-normalised image,
half of whose values are negative (a ReLU there could not reach them).

The classifier is the model's own (torchvision's VGG classifier or
ResNet's fc, or config.head='linear'), on the same pooled features as in
task='classifier', so parameter paths (body/..., head/...) and converted
ImageNet weights are those of the plain model; the decoder's parameters
are `decoder/deconv1` ... `deconv5`, always freshly initialised.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtransfer.core.errors import UserError
from jaxtransfer.models import notation, resnet, vgg
from jaxtransfer.models.common import (bn_momentum, dropout_rate, head_choice,
                                       linear_head_dropout)
from jaxtransfer.models.initializers import (init_spec, layer_inits,
                                             split_init_spec)

DECODERS = {"vgg16": (512, 256, 128, 64, 3),
            "resnet50": (1024, 512, 256, 64, 3)}
SCALE = 2 ** len(DECODERS["vgg16"])  # 32: the body's total stride


def conv_transpose_4x2(x, kernel):
  """PyTorch's ConvTranspose2d(kernel_size=4, stride=2, padding=1) on NHWC:
  kernel [4, 4, in, out] as torch's weight [in, out, 4, 4] transposed (not
  flipped); the map doubles. On the CPU as one matrix product and an
  overlap-add (every input pixel's 4x4 output patch, summed where patches
  overlap): XLA:CPU's transposed convolution is 4-25x slower on these maps
  (BENCHMARKS.md, "The zoo's transposed-conv decoder"); elsewhere
  lax.conv_transpose (cuDNN on a GPU)."""
  if jax.default_backend() != "cpu":
    return jax.lax.conv_transpose(
        x, kernel[::-1, ::-1], (2, 2), ((2, 2), (2, 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  n, h, w, _ = x.shape
  out = kernel.shape[-1]
  # patches[n, i, j, 2q + r, 2s + t, c]: input (i, j)'s contribution to output
  # (2(i + q) + r - 1, 2(j + s) + t - 1) (padding 1 crops one pixel a side).
  patches = jnp.einsum("nhwi,abio->nhwabo", x, kernel.astype(x.dtype))
  patches = patches.reshape(n, h, w, 2, 2, 2, 2, out)
  total = 0
  for q in (0, 1):
    for s in (0, 1):
      total = total + jnp.pad(patches[:, :, :, q, :, s],
                              ((0, 0), (q, 1 - q), (s, 1 - s), (0, 0),
                               (0, 0), (0, 0)))
  total = total.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h + 2, 2 * w + 2,
                                                    out)
  return total[:, 1:-1, 1:-1]


class ConvTranspose4x2(nn.Module):
  """nn.ConvTranspose's role with PyTorch's ConvTranspose2d(in, features, 4,
  stride=2, padding=1) semantics and, for kernel_init 'torch', its init
  (fan-in out x 16: torch reads dimension 1 of its [in, out, 4, 4] weight)."""
  features: int
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    torch_init = split_init_spec(self.kernel_init)[0] == "torch"
    inits = layer_inits(self.kernel_init,
                   (self.features if torch_init else x.shape[-1]) * 16)
    kernel_init = (nn.initializers.variance_scaling(
        1.0 / 3.0, "fan_in", "uniform", in_axis=-1, out_axis=-2)
        if torch_init else inits["kernel_init"])
    kernel = self.param("kernel", kernel_init,
                        (4, 4, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", inits["bias_init"], (self.features,),
                      jnp.float32)
    x = x.astype(self.dtype)
    return conv_transpose_4x2(x, kernel) + bias.astype(self.dtype)


class TransposedDecoder(nn.Module):
  """Transposed convolutions (kernel 4, stride 2: each doubles the map) with
  ReLU between them, named deconv1, deconv2, ...; the last is linear."""
  widths: tuple[int, ...]
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.widths, start=1):
      x = ConvTranspose4x2(width, self.kernel_init, self.dtype,
                           name=f"deconv{i}")(x)
      if i < len(self.widths):
        x = nn.relu(x)
    return x.astype(jnp.float32)


class _Joint:
  """Mixed into a zoo classifier: {'logits', 'reconstruction'} (and with
  jigsaw_grid > 0 'jigsaw_reconstruction', as notation.JointNotation)."""

  def _joint_setup(self):
    self.decoder = TransposedDecoder(DECODERS[self.decoder_name],
                                     self.kernel_init, self.dtype)

  def __call__(self, x, train: bool = False):
    maps = self.body(x, train)
    outputs = {"logits": self.classify_features(self.pool(maps), train),
               "reconstruction": self.decoder(maps)}
    if self.jigsaw_grid:
      key = (self.make_rng("dropout") if train and self.has_rng("dropout")
             else jax.random.key(0))
      jumbled = notation.jumble(x, self.jigsaw_grid, key)
      outputs["jigsaw_reconstruction"] = self.decoder(self.body(jumbled, train))
    return outputs


class JointVGG(_Joint, vgg.VGG):
  decoder_name: str = "vgg16"
  jigsaw_grid: int = 0

  def setup(self):
    super().setup()
    self._joint_setup()

  def pool(self, maps):
    return vgg.adaptive_avg_pool(maps, vgg.POOLED_SIZE)


class JointResNet50(_Joint, resnet.ResNet50):
  decoder_name: str = "resnet50"
  jigsaw_grid: int = 0

  def setup(self):
    super().setup()
    self._joint_setup()

  def pool(self, maps):
    return jnp.mean(maps, axis=(1, 2))


def check_image_size(config) -> None:
  size = config.image_size
  if size < SCALE or size % SCALE:
    raise UserError(
        f"config.image_size={size}: config.task='joint' with "
        f"config.model={config.model!r} needs a multiple of {SCALE} (its "
        f"decoder's five transposed convolutions double the body's "
        f"{SCALE}x smaller map back to the image; the seed used 224)")


def _jigsaw(config) -> int:
  return config.joint.jigsaw_grid if config.joint.get("delta", 0.0) else 0


def build_joint_vgg16(config, num_classes: int, *, dtype: Any,
                      frozen_norms: tuple[str, ...] = ()) -> JointVGG:
  check_image_size(config)
  head = head_choice(config)
  rate = (linear_head_dropout(config) if head == "linear"
          else dropout_rate(config, vgg.DEFAULT_DROPOUT))
  return JointVGG("vgg16", num_classes, head, rate, init_spec(config),
                  dtype, tuple(frozen_norms), bn_momentum(config, 0.9),
                  jigsaw_grid=_jigsaw(config))


def build_joint_resnet50(config, num_classes: int, *, dtype: Any,
                         frozen_norms: tuple[str, ...] = ()) -> JointResNet50:
  check_image_size(config)
  return JointResNet50(num_classes,
                       dropout_rate(config, resnet.SPEC.default_dropout),
                       init_spec(config), dtype, tuple(frozen_norms),
                       bn_momentum(config, 0.9), jigsaw_grid=_jigsaw(config))


BUILDERS = {"vgg16": build_joint_vgg16, "resnet50": build_joint_resnet50}


def _validate(config) -> None:
  if config.get("task", "classifier") == "joint":
    check_image_size(config)


def with_decoder(spec):
  """The registry entry of `spec`, with build_joint (and the joint image
  size check) for the models seed 002 gives a decoder."""
  if spec.name not in BUILDERS:
    return spec
  assert spec.validate is None, spec.name
  return dataclasses.replace(spec, build_joint=BUILDERS[spec.name],
                             validate=_validate)
