"""Training-image augmentation on the device, inside the jitted step.

Images are float32 in [0, 1], [B, H, W, C], at the dataset's resolution (32 px
for CIFAR-10): augmenting before the upsampling to `image_size` costs 16x less
at 128 px and gives the same distribution of images. Every op is drawn per
image from the step's PRNG key, so a step is a pure function of
(key, images) and a resumed run sees the same augmentations.

Per image, in this order: seed 001's view (`six_views`), random resized
crop, colour jitter, flips, rotation. The view and the resized crop (both in
views.py) come first: the view is what the seed's dataset held (its six
copies of the training set), and torchvision pipelines crop first
(RandomResizedCrop -> flip -> ColorJitter); the rest then augment the view.

- Colour jitter is torchvision's ColorJitter (seed 003), with the semantics
  of torchvision.transforms.functional on float images: brightness blends
  with black (img * f), contrast with the mean of the image's grayscale,
  saturation with the grayscale image, each clipped to [0, 1]; hue rotates
  the hue in HSV by a fraction of a turn (`adjust_hue`: why not dm-pix's).
  Grayscale is torchvision's 0.2989 R + 0.587 G + 0.114 B. The
  factors are f ~ U(max(0, 1 - x), 1 + x) and the hue shift ~ U(-x, x); the
  enabled ops run in a random order per image, as ColorJitter's randperm.
  On 1-channel images saturation and hue do nothing (as torchvision).
  Colour comes first, as in the seed's ColorJitter -> RandomRotation ->
  RandomHorizontalFlip: the black corners that rotation fills in stay black
  (contrast would otherwise move them and count them in its mean).
- Flips, then rotation: the order this module had before colour jitter, kept
  so that existing runs resume on the same trajectory. With the default
  random sign of the angle, flip-then-rotate has the same distribution as the
  seed's rotate-then-flip (hflip . rot(a) = rot(-a) . hflip).

Flips and rotation are dm-pix's; the options are static (a disabled op is not
compiled).

Keys: each image's key is split(step_key, B)[i]; flips and rotation use
split(image_key, 3), colour jitter fold_in(image_key, 3), the view
fold_in(image_key, 4), the resized crop fold_in(image_key, 5): turning an op
on changes no other op's draws, and runs from before an op existed keep
their keys.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import dm_pix as pix
import jax
import jax.numpy as jnp

from jaxtransfer.data import views as views_lib
# The colour ops are colour.py's; augment.adjust_* stays their name here.
from jaxtransfer.data.colour import (COLOUR_OPS, TORCHVISION_LUMA,  # noqa: F401
                                     adjust_brightness, adjust_contrast,
                                     adjust_hue, adjust_saturation,
                                     grayscale, rgb_to_hsv_planes)


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
  hflip: bool = False
  vflip: bool = False
  rotate: bool = False
  rotation_degrees: tuple[float, float] = (10.0, 20.0)
  rotation_both_directions: bool = True
  # Colour jitter (0 = off): brightness, contrast, saturation factors
  # ~ U(max(0, 1 - x), 1 + x); hue shift ~ U(-x, x) turns, x <= 0.5.
  brightness: float = 0.0
  contrast: float = 0.0
  saturation: float = 0.0
  hue: float = 0.0
  # Seed 001's six views (views.py): crop side as a fraction of the image's,
  # the (low, high) colour ranges of views 2-5, and whether an epoch holds
  # every (image, view) pair (6N examples) or one random view per image.
  six_views: bool = False
  six_views_crop: float = 0.86
  six_views_hue: tuple[float, float] = (-0.45, 0.45)
  six_views_brightness: tuple[float, float] = (0.7, 1.3)
  six_views_saturation: tuple[float, float] = (0.4, 2.0)
  six_views_contrast: tuple[float, float] = (0.5, 1.5)
  six_views_epoch: bool = True
  # torchvision's RandomResizedCrop, at the image's own size.
  random_resized_crop: bool = False
  rrc_scale: tuple[float, float] = (0.08, 1.0)
  rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)

  @classmethod
  def from_config(cls, augment_config) -> "AugmentOptions":
    return cls(
        hflip=bool(augment_config.hflip),
        vflip=bool(augment_config.vflip),
        rotate=bool(augment_config.rotate),
        rotation_degrees=tuple(float(d) for d in augment_config.rotation_degrees),
        rotation_both_directions=bool(augment_config.rotation_both_directions),
        # (configs from before colour jitter lack these fields)
        **{name: float(augment_config.get(name, 0.0)) for name in COLOUR_OPS},
        # (... and these, from before the six views and the resized crop)
        **{field.name: _read(augment_config, field)
           for field in dataclasses.fields(cls) if field.name in NEWER_FIELDS})

  @property
  def colour(self) -> bool:
    return any(getattr(self, name) for name in COLOUR_OPS)

  @property
  def views_per_epoch(self) -> int:
    """Examples per training image in an epoch: 6 with six_views_epoch."""
    return views_lib.NUM_VIEWS if self.six_views and self.six_views_epoch else 1

  @property
  def any(self) -> bool:
    return (self.hflip or self.vflip or self.rotate or self.colour
            or self.six_views or self.random_resized_crop)


NEWER_FIELDS = ("six_views", "six_views_crop", "six_views_hue",
                "six_views_brightness", "six_views_saturation",
                "six_views_contrast", "six_views_epoch", "random_resized_crop",
                "rrc_scale", "rrc_ratio")


def _read(augment_config, field: dataclasses.Field):
  value = augment_config.get(field.name, field.default)
  if isinstance(field.default, tuple):
    return tuple(float(x) for x in value)
  return type(field.default)(value)


def views_per_epoch(augment_config) -> int:
  """AugmentOptions.views_per_epoch of a config's `augment` (old ones too):
  the training examples of an epoch are this many times the images."""
  return AugmentOptions.from_config(augment_config).views_per_epoch



# ---------------------------------------------------------------------------
# Colour jitter: torchvision's ColorJitter from the ops of colour.py.

_COLOUR_FUNCTIONS = {"brightness": adjust_brightness,
                     "contrast": adjust_contrast,
                     "saturation": adjust_saturation, "hue": adjust_hue}


def colour_range(name: str, amount: float) -> tuple[float, float]:
  """ColorJitter's range of the factor (the shift, for hue)."""
  if name == "hue":
    return -amount, amount
  return max(0.0, 1.0 - amount), 1.0 + amount


def enabled_colour_ops(options: AugmentOptions) -> tuple[str, ...]:
  return tuple(name for name in COLOUR_OPS if getattr(options, name))


def sample_colour(key: jax.Array, options: AugmentOptions
                  ) -> tuple[jax.Array, jax.Array]:
  """(order, factors) for one image: factors[i] for COLOUR_OPS[i], each from
  its own key (enabling another op changes no other factor), and order, a
  random permutation of range(len(enabled_colour_ops(options)))."""
  order_key, *op_keys = jax.random.split(key, 1 + len(COLOUR_OPS))
  factors = []
  for name, op_key in zip(COLOUR_OPS, op_keys):
    low, high = colour_range(name, getattr(options, name))
    factors.append(jax.random.uniform(op_key, (), minval=low, maxval=high))
  order = jax.random.permutation(order_key, len(enabled_colour_ops(options)))
  return order, jnp.stack(factors)


def colour_jitter(key: jax.Array, image: jax.Array,
                  options: AugmentOptions) -> jax.Array:
  """ColorJitter on one image: the enabled ops, each with its own random
  factor, in a random order: step k applies op order[k] (a `lax.switch`
  over the enabled ops only; with one op, no switch)."""
  order, factors = sample_colour(key, options)
  branches = [functools.partial(_apply_colour_op, COLOUR_OPS.index(name))
              for name in enabled_colour_ops(options)]
  if len(branches) == 1:
    return branches[0](image, factors)
  for step in range(len(branches)):
    image = jax.lax.switch(order[step], branches, image, factors)
  return image


def _apply_colour_op(index: int, image: jax.Array, factors: jax.Array):
  return _COLOUR_FUNCTIONS[COLOUR_OPS[index]](image, factors[index])


def rotate(image: jax.Array, degrees: jax.Array) -> jax.Array:
  """Rotates one [H, W, C] image counter-clockwise about its centre.

  Bilinear, corners filled with 0 (black, as torchvision's RandomRotation).
  """
  return pix.rotate(image, degrees * (math.pi / 180.0), order=1,
                    mode="constant", cval=0.0)


def sample_rotation(key: jax.Array, options: AugmentOptions) -> jax.Array:
  """An angle in degrees: |angle| ~ U(low, high), random sign if enabled."""
  magnitude_key, sign_key = jax.random.split(key)
  low, high = options.rotation_degrees
  angle = jax.random.uniform(magnitude_key, (), minval=low, maxval=high)
  if options.rotation_both_directions:
    angle = jnp.where(jax.random.bernoulli(sign_key), angle, -angle)
  return angle


def augment_image(key: jax.Array, image: jax.Array, options: AugmentOptions,
                  view=None) -> jax.Array:
  """View, resized crop, colour jitter, flips, rotation (module docstring),
  each from its key. `view` (0..5, with six_views): the view to take; None
  draws one (six_views_epoch=False)."""
  hflip_key, vflip_key, rotate_key = jax.random.split(key, 3)
  if options.six_views:
    view_key = jax.random.fold_in(key, 4)
    if view is None:
      view = views_lib.sample_view(view_key)
    image = views_lib.view(view_key, image, view, options)
  if options.random_resized_crop:
    image = views_lib.random_resized_crop(jax.random.fold_in(key, 5), image,
                                          options.rrc_scale, options.rrc_ratio)
  if options.colour:  # (its own key: the others are those of earlier runs)
    image = colour_jitter(jax.random.fold_in(key, 3), image, options)
  if options.hflip:
    image = pix.random_flip_left_right(hflip_key, image)
  if options.vflip:
    image = pix.random_flip_up_down(vflip_key, image)
  if options.rotate:
    image = rotate(image, sample_rotation(rotate_key, options))
  return image


def augment_batch(key: jax.Array, images: jax.Array, options: AugmentOptions,
                  views=None) -> jax.Array:
  """Augments each image of [B, H, W, C] with its own key; identity if none
  on. `views` [B] (with six_views): each image's view; None: drawn."""
  if not options.any:
    return images
  keys = jax.random.split(key, images.shape[0])
  if views is None or not options.six_views:
    return jax.vmap(lambda k, im: augment_image(k, im, options))(keys, images)
  return jax.vmap(lambda k, im, v: augment_image(k, im, options, v))(
      keys, images, views)
