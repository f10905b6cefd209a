"""'notation': seed 002's small networks, written in its own notation.

  C(n)   3x3 conv (n filters, 'same' padding) + ReLU + 2x2 max-pool
  C'(n)  3x3 conv + ReLU
  S(n)   3x3 conv with stride 2 + ReLU (seed 002's "stride=2 instead of max
         pooling" variant of v4)
  L(n)   linear + ReLU (a 4-D input is flattened first)
  L'(n)  linear
  D(p)   dropout with rate p (in training only)

Layers are joined by '>': `C'(32)>C(32)>C'(32)>C(64)>C(64)>L(512)`. The
encoder is the model's body (body/conv1, body/conv2, ..., body/fc1, ...);
the classifier its head (head/conv1, ..., head/fc1, ...), whose last layer
is the output: it must be linear and as wide as the data has classes (a
preset's `L'(10)` is "the number of classes" and follows the data).

`config.arch` names a row of seed 002's tables (PRESETS); `config.encoder`
and `config.classifier` override either string. Every row builds the layer
shapes the seed's tables give (tests/test_notation.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer.core.errors import UserError
from jaxtransfer.models.common import (probe_point, BodyHead, ModelSpec,
                                       check_frozen_norms)
from jaxtransfer.models.initializers import (init_spec, layer_inits)

KINDS = {"C": "conv + ReLU + max-pool", "C'": "conv + ReLU",
         "S": "stride-2 conv + ReLU", "L": "linear + ReLU", "L'": "linear",
         "D": "dropout"}
_TOKEN = re.compile(r"(C'|L'|C|L|S|D)\(\s*([0-9]*\.?[0-9]+)\s*\)")


@dataclasses.dataclass(frozen=True)
class Layer:
  kind: str  # a key of KINDS
  size: float  # filters / units, or the dropout rate

  def __str__(self) -> str:
    return f"{self.kind}({self.size:g})"


def parse(text: str, field: str) -> tuple[Layer, ...]:
  """The layers of a notation string; a UserError names the field and the
  character where parsing stopped."""
  layers, position = [], 0
  text = str(text)
  if not text.strip():
    raise UserError(f"config.{field}='' is empty: write layers such as "
                    "C'(32)>C(64)>L(512)")
  while True:
    while position < len(text) and text[position] == " ":
      position += 1
    match = _TOKEN.match(text, position)
    if not match:
      got = text[position:position + 6] or "the end"
      raise UserError(
          f"config.{field}={text!r}: cannot parse at character "
          f"{position + 1} ({got!r}): expected one of "
          f"{', '.join(k + '(n)' for k in KINDS)}")
    kind, size = match.group(1), float(match.group(2))
    if kind == "D":
      if not 0.0 <= size < 1.0:
        raise UserError(f"config.{field}={text!r}: D({size:g}) at character "
                        f"{position + 1}: a dropout rate is in [0, 1)")
    elif size != int(size) or size < 1:
      raise UserError(f"config.{field}={text!r}: {kind}({size:g}) at "
                      f"character {position + 1}: a width is a whole number "
                      ">= 1")
    layers.append(Layer(kind, size if kind == "D" else int(size)))
    position = match.end()
    while position < len(text) and text[position] == " ":
      position += 1
    if position == len(text):
      return tuple(layers)
    if text[position] != ">":
      raise UserError(f"config.{field}={text!r}: cannot parse at character "
                      f"{position + 1} ({text[position]!r}): expected '>' "
                      "between layers")
    position += 1


def to_string(layers) -> str:
  return ">".join(str(layer) for layer in layers)


# Seed 002's tables: (encoder, classifier, image size). Where its "alpha=1,
# beta=0" table gives a row other layers than the beta=1 table, that row is
# its own preset (`_beta0`). v4 is the final model (dropout 0.3 after the
# classifier's first two convs, as the seed added; its table writes the
# output layer L(10), taken here as the linear L'(10) of every other row).
PRESETS: dict[str, tuple[str, str, int]] = {
    "v1": ("L(512)>L(256)>L(128)", "L(128)>L'(10)", 32),
    "v1.1": ("L(1024)>L(512)", "L(128)>L'(10)", 32),
    "v1.2": ("L(2048)>L(1024)>L(512)", "L(128)>L'(10)", 32),
    "v2": ("C(32)>C(32)>C(64)>L(512)", "L(128)>L'(10)", 32),
    "v2_beta0": ("C(32)>C(32)>C(64)>L(512)", "L(512)>L'(10)", 32),
    "v2.1": ("C(32)>C(32)>L(512)", "L(128)>L'(10)", 32),
    "v2.2": ("C'(32)>C(32)>C'(32)>C(64)>C(64)>L(512)", "L(128)>L'(10)", 32),
    "v2.3": ("C'(32)>C(32)>C'(32)>C(64)>C(64)>L(512)", "L(128)>L'(10)", 64),
    "v3": ("C(32)>C(32)>C(64)>C(64)", "C'(64)>L'(10)", 32),
    "v3.1": ("C(32)>C(32)>C(64)", "C(64)>C'(64)>L'(10)", 32),
    "v3.2": ("C'(32)>C(32)>C'(32)>C(32)>C'(64)>C(64)", "C(64)>L'(10)", 32),
    "v3.2_beta0": ("C'(32)>C(32)>C'(32)>C(32)>C'(64)>C(64)", "C'(128)>L'(10)",
                   32),
    "v3.3": ("C'(32)>C(32)", "C'(32)>C(32)>C'(64)>C(64)>C(64)>L'(10)", 32),
    "v3.3_beta0": ("C'(32)>C(32)>C'(32)>C(32)", "C'(64)>C(64)>C'(128)>L'(10)",
                   32),
    "v4": ("C'(32)>C(32)",
           "C'(32)>D(0.3)>C(64)>D(0.3)>C(64)>L(512)>L(128)>L'(10)", 32),
    "v4_no_dropout": ("C'(32)>C(32)", "C'(32)>C(64)>C(64)>L(512)>L(128)>L'(10)",
                      32),
    "v4_stride2": ("C'(32)>S(32)",
                   "C'(32)>D(0.3)>C(64)>D(0.3)>C(64)>L(512)>L(128)>L'(10)", 32),
}


def strings(config) -> tuple[str, str]:
  """(encoder, classifier) notation of the config: config.arch's preset,
  with config.encoder / config.classifier overriding either."""
  arch = config.get("arch", "")
  encoder, classifier = "", ""
  if arch:
    if arch not in PRESETS:
      import difflib
      near = difflib.get_close_matches(arch, list(PRESETS), n=1)
      raise UserError(f"config.arch={arch!r} is not a seed 002 preset"
                      + (f" (did you mean {near[0]!r}?)" if near else
                         f" ({', '.join(PRESETS)})"))
    encoder, classifier, _ = PRESETS[arch]
  encoder = config.get("encoder", "") or encoder
  classifier = config.get("classifier", "") or classifier
  for field, text in (("encoder", encoder), ("classifier", classifier)):
    if not text:
      raise UserError(f"config.model='notation' needs config.arch (a seed "
                      f"002 preset: {', '.join(PRESETS)}) or config.{field}")
  return encoder, classifier


def layers_of(config, num_classes: int | None = None
              ) -> tuple[tuple[Layer, ...], tuple[Layer, ...]]:
  """Parsed and checked (encoder, classifier) layers for the config's image
  size; num_classes: the classifier's output width to check against."""
  encoder_text, classifier_text = strings(config)
  encoder = parse(encoder_text, "encoder")
  classifier = parse(classifier_text, "classifier")
  from_preset = not config.get("classifier", "")
  last = next((l for l in reversed(classifier) if l.kind != "D"), None)
  if last is None or last.kind not in ("L'", "L"):
    raise UserError(f"config.classifier={classifier_text!r}: its last layer "
                    "is the output and must be linear (L'(classes))")
  if num_classes is not None and last.size != num_classes:
    if not from_preset:
      raise UserError(f"config.classifier={classifier_text!r} ends in "
                      f"{last}, but the data has {num_classes} classes")
    index = len(classifier) - 1 - classifier[::-1].index(last)
    classifier = (*classifier[:index], Layer(last.kind, num_classes),
                  *classifier[index + 1:])
  _check_shapes(config.image_size, encoder, classifier, encoder_text,
                classifier_text)
  if config.get("low_level_skip", False) and encoder[0].kind not in (
      "C", "C'", "S"):
    raise UserError(f"config.low_level_skip=True needs an encoder that "
                    f"starts with a convolution (config.encoder / arch: "
                    f"{encoder_text!r} starts with {encoder[0]})")
  return encoder, classifier


def _check_shapes(image_size: int, encoder, classifier, encoder_text,
                  classifier_text) -> None:
  """The spatial size must stay >= 1 through every pool and stride, and no
  conv may follow a linear layer (the classifier must fit the encoder)."""
  size, flat = image_size, False
  for field, text, layers in (("encoder", encoder_text, encoder),
                              ("classifier", classifier_text, classifier)):
    for layer in layers:
      if layer.kind in ("C", "C'", "S"):
        if flat:
          where = ("its input is the encoder's flat output" if field ==
                   "classifier" and layer is layers[0] else
                   "it follows a linear layer")
          raise UserError(f"config.{field}={text!r}: {layer} cannot take a "
                          f"vector ({where}); the classifier must fit the "
                          "encoder's output")
        if layer.kind in ("C", "S"):
          size //= 2
          if size < 1:
            raise UserError(
                f"config.{field}={text!r}: {layer} halves the image below "
                f"1 px (config.image_size={image_size} is too small for "
                "this many poolings)")
      elif layer.kind in ("L", "L'"):
        flat = True


class Stack(nn.Module):
  """A sequence of notation layers; convs are named conv1, conv2, ..., linear
  layers fc1, fc2, ..., in order. With low_level_skip (seed 002's "network
  modification" for constrained classes) the first layer's output also
  goes through one 3x3 conv + ReLU (`skip`; strided down to the final map's
  size, or flattened when the final output is a vector) and is concatenated
  with the final output."""
  layers: tuple[Layer, ...]
  kernel_init: str = "torch"
  dtype: Any = jnp.float32
  low_level_skip: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    convs = denses = 0
    first = None
    for layer in self.layers:
      if first is None and convs + denses == 1:
        first = x
      if layer.kind == "D":
        x = nn.Dropout(layer.size, deterministic=not train)(x)
      elif layer.kind in ("C", "C'", "S"):
        convs += 1
        stride = 2 if layer.kind == "S" else 1
        x = nn.Conv(layer.size, (3, 3), strides=stride, padding=1,
                    dtype=self.dtype, name=f"conv{convs}",
                    **layer_inits(self.kernel_init, x.shape[-1] * 9))(x)
        x = nn.relu(x)
        if layer.kind == "C":
          x = nn.max_pool(x, (2, 2), strides=(2, 2))
        probe_point(self, f"conv{convs}", x)
      else:
        denses += 1
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(layer.size, dtype=self.dtype, name=f"fc{denses}",
                     **layer_inits(self.kernel_init, x.shape[-1]))(x)
        if layer.kind == "L":
          x = nn.relu(x)
        probe_point(self, f"fc{denses}", x)
    if self.low_level_skip:
      first = x if first is None else first
      stride = first.shape[1] // x.shape[1] if x.ndim == 4 else 1
      low = nn.Conv(first.shape[-1], (3, 3), strides=max(stride, 1),
                    padding=1, dtype=self.dtype, name="skip",
                    **layer_inits(self.kernel_init, first.shape[-1] * 9))(first)
      low = nn.relu(low)
      if x.ndim == 4:
        x = jnp.concatenate([x, low], axis=-1)
      else:
        x = jnp.concatenate([x, low.reshape(low.shape[0], -1)], axis=-1)
    return x


class NotationClassifier(BodyHead):
  """Encoder (body) then classifier (head)."""
  encoder: tuple[Layer, ...]
  classifier: tuple[Layer, ...]
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  low_level_skip: bool = False

  def setup(self):
    self.body = Stack(self.encoder, self.kernel_init, self.dtype,
                      self.low_level_skip)
    self.head = Stack(self.classifier, self.kernel_init, self.dtype)

  def classify_features(self, features, train: bool = False):
    return self.head(features, train).astype(jnp.float32)


class MirrorDecoder(nn.Module):
  """The encoder mirrored: layer i of the decoder maps encoder layer i's
  output back to that layer's input shape, in reverse order. A linear layer
  becomes linear + ReLU to its input's size (reshaped to its input's map);
  a C or S (which halved the size) a bilinear 2x resize then a 3x3 conv; a
  C' a 3x3 conv. Widths are the encoder's own in reverse; the last layer
  predicts the normalised pixels (no ReLU). Resize + conv, as the AlexNet
  autoencoder's decoder: v4's decoder with a 4x4 stride-2 transposed conv
  instead measured 2.5x slower on the CPU (benchmarks/zoo_decoder.py)."""
  encoder: tuple[Layer, ...]
  input_shape: tuple[int, int, int]  # the encoder's input (H, W, C)
  kernel_init: str = "torch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    shapes, shape = [], tuple(self.input_shape)  # each layer's input shape
    for layer in self.encoder:
      if layer.kind == "D":
        continue
      shapes.append((layer, shape))
      if layer.kind in ("L", "L'"):
        shape = (layer.size,)
      else:
        size = shape[0] // 2 if layer.kind in ("C", "S") else shape[0]
        shape = (size, size, layer.size)
    for i, (layer, target) in enumerate(reversed(shapes), start=1):
      last = i == len(shapes)
      if layer.kind in ("L", "L'"):
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(int(np.prod(target)), dtype=self.dtype, name=f"fc{i}",
                     **layer_inits(self.kernel_init, x.shape[-1]))(x)
        x = x.reshape(x.shape[0], *target)
      else:
        if layer.kind in ("C", "S"):
          x = jax.image.resize(x, (x.shape[0], target[0], target[1],
                                   x.shape[-1]), "bilinear")
        x = nn.Conv(target[-1], (3, 3), padding=1, dtype=self.dtype,
                    name=f"deconv{i}",
                    **layer_inits(self.kernel_init, x.shape[-1] * 9))(x)
      if not last:
        x = nn.relu(x)
    return x.astype(jnp.float32)


def jumble(images, grid: int, key):
  """Seed 002's jigsaw input: each image [H, W, C] cut into grid x grid
  tiles, the tiles of each image shuffled by its own permutation."""
  b, h, w, c = images.shape
  th, tw = h // grid, w // grid
  tiles = images.reshape(b, grid, th, grid, tw, c).transpose(0, 1, 3, 2, 4, 5)
  tiles = tiles.reshape(b, grid * grid, th, tw, c)
  orders = jax.vmap(lambda k: jax.random.permutation(k, grid * grid))(
      jax.random.split(key, b))
  tiles = jnp.take_along_axis(tiles, orders[:, :, None, None, None], axis=1)
  tiles = tiles.reshape(b, grid, grid, th, tw, c).transpose(0, 1, 3, 2, 4, 5)
  return tiles.reshape(b, h, w, c)


class JointNotation(NotationClassifier):
  """Seed 002's joint model: one encoder, a classifier and a decoder on it.
  Returns {'logits', 'reconstruction'}, and with jigsaw_grid > 0 also
  'jigsaw_reconstruction': the decoder's output for the jumbled image (tiles
  shuffled per image: from the 'dropout' rng in training, a fixed key in
  evaluation), whose target is the original."""
  image_shape: tuple[int, int, int] = (32, 32, 3)
  jigsaw_grid: int = 0

  def setup(self):
    super().setup()
    self.decoder = MirrorDecoder(self.encoder, self.image_shape,
                                 self.kernel_init, self.dtype)

  def __call__(self, x, train: bool = False):
    features = self.body(x, train)
    outputs = {"logits": self.classify_features(features, train),
               "reconstruction": self.decoder(features)}
    if self.jigsaw_grid:
      key = (self.make_rng("dropout") if train and self.has_rng("dropout")
             else jax.random.key(0))
      jumbled = jumble(x, self.jigsaw_grid, key)
      outputs["jigsaw_reconstruction"] = self.decoder(self.body(jumbled, train))
    return outputs


def build(config, num_classes: int, *, dtype: Any,
          frozen_norms: tuple[str, ...] = ()) -> NotationClassifier:
  check_frozen_norms(frozen_norms, (), "notation")
  encoder, classifier = layers_of(config, num_classes)
  return NotationClassifier(encoder, classifier, init_spec(config), dtype,
                            config.get("low_level_skip", False))


def build_joint(config, num_classes: int, *, dtype: Any,
                frozen_norms: tuple[str, ...] = ()) -> JointNotation:
  check_frozen_norms(frozen_norms, (), "notation")
  encoder, classifier = layers_of(config, num_classes)
  jigsaw = config.joint.jigsaw_grid if config.joint.get("delta", 0.0) else 0
  return JointNotation(encoder, classifier, init_spec(config), dtype,
                       config.get("low_level_skip", False),
                       image_shape=(config.image_size, config.image_size, 3),
                       jigsaw_grid=jigsaw)


def validate(config) -> None:
  layers_of(config)


SPEC = ModelSpec(
    name="notation",
    build=build,
    input_channels=3,
    min_image_size=1,  # checked per architecture (layers_of)
    freeze_presets={"none": ((".*", True),),
                    "head": (("body/.*", False), ("head/.*", True))},
    default_dropout=0.0,
    description="seed 002's small networks in its notation (config.arch, "
                "config.encoder, config.classifier)",
    pretrained_inits=("checkpoint",),
    validate=validate,
    build_joint=build_joint,
)
