"""Colour ops: torchvision.transforms.functional's on one [H, W, C] float
image in [0, 1] (C = 3, or 1 where saturation and hue do nothing). The
colour jitter (augment.py) and seed 001's six views (views.py) use them."""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp

COLOUR_OPS = ("brightness", "contrast", "saturation", "hue")  # ColorJitter's ids
TORCHVISION_LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def _blend(image: jax.Array, other, factor) -> jax.Array:
  """torchvision's _blend for float images."""
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def grayscale(image: jax.Array) -> jax.Array:
  """[H, W, 3] -> [H, W, 1] as torchvision's rgb_to_grayscale; [H, W, 1] as is."""
  if image.shape[-1] == 1:
    return image
  red, green, blue = (image[..., i] for i in range(3))
  luma = (TORCHVISION_LUMA[0] * red + TORCHVISION_LUMA[1] * green
          + TORCHVISION_LUMA[2] * blue)
  return luma[..., None]


def adjust_brightness(image: jax.Array, factor) -> jax.Array:
  """Multiplicative (torchvision), not dm-pix's additive adjust_brightness."""
  return _blend(image, 0.0, factor)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """Blend with the mean of the grayscale image (one scalar; dm-pix's
  adjust_contrast uses each channel's mean and does not clip)."""
  return _blend(image, jnp.mean(grayscale(image)), factor)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
  """Blend with the grayscale image (dm-pix scales HSV saturation instead)."""
  if image.shape[-1] == 1:
    return image
  return _blend(image, grayscale(image), factor)


def adjust_hue(image: jax.Array, shift) -> jax.Array:
  """Hue + shift (a fraction of a turn, mod 1) in HSV, as torchvision's
  _rgb2hsv -> shift -> _hsv2rgb (back through dm-pix's hsv_to_rgb)."""
  if image.shape[-1] == 1:
    return image
  hue, saturation, value = rgb_to_hsv_planes(*(image[..., i] for i in range(3)))
  return pix.hsv_to_rgb(jnp.stack([(hue + shift) % 1.0, saturation, value], -1))


def rgb_to_hsv_planes(red, green, blue):
  """torchvision's _rgb2hsv (hue in [0, 1), ties to red, then green), with
  the hue's sector chosen by comparing the channels with each other.

  dm-pix's rgb_to_hsv picks it by `max(r, g, b) == channel`: exact
  equality between two computations of a value, which XLA may compute
  differently (fused, contracted) and then no channel equals the maximum:
  measured under jit(vmap) of the colour jitter, a few pixels per image got
  the blue sector's hue, off by up to 0.5. Comparisons between the channels
  always pick a (near-)maximal one, and the hue is continuous across ties."""
  red_max = (red >= green) & (red >= blue)
  green_max = ~red_max & (green >= blue)
  value = jnp.where(red_max, red, jnp.where(green_max, green, blue))
  range_ = value - jnp.minimum(jnp.minimum(red, green), blue)
  safe_range = jnp.where(range_ > 0, range_, 1.0)
  saturation = jnp.where(value > 0, range_ / jnp.where(value > 0, value, 1.0),
                         0.0)
  sector = jnp.where(red_max, (green - blue) / safe_range,
                     jnp.where(green_max, 2.0 + (blue - red) / safe_range,
                               4.0 + (red - green) / safe_range))
  hue = jnp.where(range_ > 0, sector / 6.0, 0.0) % 1.0
  return hue, saturation, value
