"""Seed 001's six views per image, and torchvision's RandomResizedCrop, on
one [H, W, C] float image in [0, 1] (the ops that `augment` applies per image).

Seed 001's "synthetic data" (its pytorch_utils.py `data_augment`) trains on
six copies of the training set, each image through one of:

  0  the image as it is
  1  the centre crop, resized back, mirrored (p = 1)
  2  the top-left crop, resized back, hue shift ~ U(-0.45, 0.45)
  3  the top-right crop,    brightness factor ~ U(0.7, 1.3)
  4  the bottom-left crop,  saturation factor ~ U(0.4, 2.0)
  5  the bottom-right crop, contrast factor ~ U(0.5, 1.5)

views 2-5 then mirrored with p = 0.5 (the seed's Resize -> ColorJitter ->
RandomHorizontalFlip; the colour ops are augment's torchvision ones). The
crops are FiveCrop's boxes with a side of floor(crop * side) (the seed's
`int(h * 0.86)`): corners flush with the image's edges, the centre at
torchvision center_crop's int(round((H - h) / 2)). Here the crops are taken
at the stored resolution and resized back to it (bilinear, as torchvision's
resized_crop with antialias=False: `crop_resize`); the model's resize to
image_size comes later, as for every augmentation.

RandomResizedCrop draws its box as torchvision's RandomResizedCrop.get_params
(`sample_resized_crop_box`) and resizes it to the input's own size.
"""

from __future__ import annotations

import math

import dm_pix as pix
import jax
import jax.numpy as jnp

from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError
from jaxtransfer.core.workdir import LEGACY_DEFAULTS
from jaxtransfer.data import colour

NUM_VIEWS = 6
# The colour op of views 2..5 (augment.COLOUR_OPS names), as the seed.
VIEW_COLOUR_OPS = ("hue", "brightness", "saturation", "contrast")
RRC_TRIES = 10  # torchvision's get_params


# ------------------------------------------------------------ crop + resize

def _linear_taps(start, length, out_size: int):
  """torch's upsample_bilinear2d (align_corners=False) along one axis of the
  crop [start, start + length) -> out_size samples: (index0, index1, weight0,
  weight1), indices into the whole image. `start`, `length` may be traced."""
  length_f = jnp.asarray(length, jnp.float32)
  scale = length_f / out_size
  source = jnp.maximum(
      scale * (jnp.arange(out_size, dtype=jnp.float32) + 0.5) - 0.5, 0.0)
  index0 = jnp.minimum(jnp.floor(source), length_f - 1)
  weight1 = jnp.clip(source - index0, 0.0, 1.0)
  index0 = index0.astype(jnp.int32)
  index1 = jnp.where(index0 < length - 1, index0 + 1, index0)
  return start + index0, start + index1, 1.0 - weight1, weight1


def crop_resize(image: jax.Array, top, left, height, width,
                size: tuple[int, int] | None = None) -> jax.Array:
  """image[top:top+height, left:left+width] resized to `size` (default: the
  image's own) bilinearly, as torchvision's resized_crop(antialias=False)
  (torch's interpolate, align_corners=False: edge pixels repeat at the
  crop's border, nothing outside the box is read). The box may be traced."""
  out_h, out_w = size or image.shape[:2]
  r0, r1, a0, a1 = _linear_taps(top, height, out_h)
  c0, c1, b0, b1 = _linear_taps(left, width, out_w)
  rows0, rows1 = image[r0], image[r1]
  b0, b1 = b0[:, None], b1[:, None]
  top_row = rows0[:, c0] * b0 + rows0[:, c1] * b1
  bottom_row = rows1[:, c0] * b0 + rows1[:, c1] * b1
  return top_row * a0[:, None, None] + bottom_row * a1[:, None, None]


# ---------------------------------------------------------------- six views

def crop_side(side: int, fraction: float) -> int:
  """The crop's side: floor(fraction * side) (the seed's int(h * cut)),
  at least 1; 1e-6 absorbs float error (0.29 * 100 = 28.999...)."""
  return max(1, min(side, math.floor(side * fraction + 1e-6)))


def view_boxes(height: int, width: int, fraction: float
               ) -> tuple[tuple[int, int, int, int], ...]:
  """(top, left, h, w) of views 0..5: the whole image, then FiveCrop's
  centre, top-left, top-right, bottom-left, bottom-right."""
  h, w = crop_side(height, fraction), crop_side(width, fraction)
  centre = (int(round((height - h) / 2.0)), int(round((width - w) / 2.0)))
  return ((0, 0, height, width), (*centre, h, w), (0, 0, h, w),
          (0, width - w, h, w), (height - h, 0, h, w),
          (height - h, width - w, h, w))


def view_colour_ranges(options) -> tuple[tuple[float, float], ...]:
  """(low, high) of the colour factor of views 0..5 (hue: the shift); views
  0 and 1 have no colour op (the range is unused)."""
  return ((1.0, 1.0), (1.0, 1.0)) + tuple(
      tuple(float(x) for x in getattr(options, f"six_views_{name}"))
      for name in VIEW_COLOUR_OPS)


def sample_view(key: jax.Array) -> jax.Array:
  """One view, uniform over 0..5 (six_views_epoch=False)."""
  return jax.random.randint(jax.random.fold_in(key, 2), (), 0, NUM_VIEWS)


def sample_view_params(key: jax.Array, view, options
                       ) -> tuple[jax.Array, jax.Array]:
  """(colour factor, flip) of `view` from the view key: the factor from
  U(range of the view), the flip True for view 1, p = 0.5 for views 2-5."""
  factor_key, flip_key = jax.random.split(key)
  ranges = jnp.asarray(view_colour_ranges(options), jnp.float32)
  low, high = ranges[view, 0], ranges[view, 1]
  factor = jax.random.uniform(factor_key, (), minval=low, maxval=high)
  flip = (view == 1) | ((view >= 2) & jax.random.bernoulli(flip_key))
  return factor, flip


def view(key: jax.Array, image: jax.Array, view_index, options) -> jax.Array:
  """View `view_index` (0..5, may be traced) of one image (module
  docstring), its colour factor and flip drawn from `key`. The box comes
  from a table indexed by the view (one crop_resize, which is exact for the
  whole-image box of view 0), the colour op from a lax.switch."""
  boxes = jnp.asarray(view_boxes(*image.shape[:2], options.six_views_crop),
                      jnp.int32)[view_index]
  image = crop_resize(image, *boxes)
  factor, flip = sample_view_params(key, view_index, options)
  identity = lambda im, _: im
  colour_ops = [getattr(colour, f"adjust_{name}") for name in VIEW_COLOUR_OPS]
  image = jax.lax.switch(view_index, [identity, identity, *colour_ops], image,
                         factor)
  return jnp.where(flip, pix.flip_left_right(image), image)


# ------------------------------------------------------- RandomResizedCrop

def sample_resized_crop_box(key: jax.Array, height: int, width: int,
                            scale: tuple[float, float],
                            ratio: tuple[float, float]) -> jax.Array:
  """(top, left, h, w) int32 as torchvision's RandomResizedCrop.get_params:
  up to 10 tries of area ~ U(scale) * H * W and log aspect (w / h) ~
  U(log ratio), w = round(sqrt(area * aspect)), h = round(sqrt(area /
  aspect)); the first that fits, at a uniform position; else the central
  crop of the whole image clamped to the ratio range. All tries are drawn
  at once (the first fitting one is used: the same distribution)."""
  area_key, ratio_key, top_key, left_key = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(
      area_key, (RRC_TRIES,), minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(ratio_key, (RRC_TRIES,),
                                      minval=math.log(ratio[0]),
                                      maxval=math.log(ratio[1])))
  w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)  # half to even,
  h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)  # as Python's
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(fits)
  h, w = h[first], w[first]
  top = jax.random.randint(top_key, (), 0, height - h + 1)
  left = jax.random.randint(left_key, (), 0, width - w + 1)
  fallback = jnp.asarray(_fallback_box(height, width, ratio), jnp.int32)
  drawn = jnp.stack([top, left, h, w]).astype(jnp.int32)
  return jnp.where(fits.any(), drawn, fallback)


def _fallback_box(height: int, width: int, ratio) -> tuple[int, int, int, int]:
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(key: jax.Array, image: jax.Array,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)
                        ) -> jax.Array:
  """torchvision's RandomResizedCrop at the image's own size (bilinear)."""
  box = sample_resized_crop_box(key, *image.shape[:2], scale, ratio)
  return crop_resize(image, *box)


# ------------------------------------------------------- config checks

def _pair(config, field: str, default, low_ok, ordered_ok, problem: str):
  """config.augment.<field> as a (low, high) pair, checked."""
  value = config.augment.get(field, default)
  ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
      isinstance(x, (int, float)) and abs(x) < float("inf") for x in value)
  configlib.require(ok and low_ok(value[0]) and ordered_ok(*value),
                    f"augment.{field}",
                    tuple(value) if isinstance(value, list) else value, problem)


def validate_fields(config) -> None:
  """Seed 001's six views and RandomResizedCrop (older configs lack them)."""
  default_ranges = {name: LEGACY_DEFAULTS[f"augment.six_views_{name}"]
                    for name in ("brightness", "contrast", "saturation", "hue")}
  crop = config.augment.get("six_views_crop", 0.86)
  configlib.require(0.0 < crop <= 1.0, "augment.six_views_crop", crop,
           "must be in (0, 1]: the crop's side as a fraction of the image's")
  for name in ("brightness", "contrast", "saturation"):
    _pair(config, f"six_views_{name}", default_ranges[name],
          lambda lo: lo >= 0.0,
          lambda lo, hi: lo <= hi,
          "expected a factor range (low, high), 0 <= low <= high")
  _pair(config, "six_views_hue", default_ranges["hue"], lambda lo: lo >= -0.5,
        lambda lo, hi: lo <= hi <= 0.5,
        "expected a hue shift range (low, high), -0.5 <= low <= high <= 0.5")
  _pair(config, "rrc_scale", (0.08, 1.0), lambda lo: lo > 0.0,
        lambda lo, hi: lo <= hi <= 1.0,
        "expected an area fraction range (low, high), 0 < low <= high <= 1")
  _pair(config, "rrc_ratio", (0.75, 4 / 3), lambda lo: lo > 0.0,
        lambda lo, hi: lo <= hi,
        "expected an aspect ratio range (low, high), 0 < low <= high")
  if (config.augment.get("six_views", False)
      and config.augment.get("six_views_epoch", True)
      and config.get("adversarial", "") and config.task == "classifier"):
    raise UserError(
        "config.augment.six_views_epoch=True: not supported with "
        f"config.adversarial={config.adversarial!r} (the attack's augmentation "
        "does not see each example's view); set six_views_epoch=False for a "
        "random view per image")
