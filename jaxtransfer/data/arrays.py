"""The arrays a run holds and how they enter a model: the `Split` and
`Dataset` that `load_dataset` (data/__init__.py) returns, and the jittable
scaling, channel adaptation, resizing and normalisation of `to_model_input`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer.core.errors import UserError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert('L')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """What `load_dataset` read: labels are 0..num_classes-1 in class_names order."""
  train: Split
  val: Split
  num_classes: int
  class_names: tuple[str, ...]
  val_name: str  # what `val` is, for logs: 'test', 'holdout (...)'
  channels: int  # C of the stored images (1 for mnist, 3 for cifar10)
  # (mean, std) per stored channel of the training images in [0, 1], for
  # normalization='dataset' (None otherwise, and with validation_only).
  pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None
  test: Split | None = None  # val_split, with validation='holdout' + with_test
  # validation='kfold' with fold=-1: each fold's indices into train (kfold.py)
  folds: tuple[np.ndarray, ...] | None = None

  @property
  def nbytes(self) -> int:
    """Bytes of the images of train, val (and test): what goes on the device."""
    splits = (self.train, self.val) + (() if self.test is None else (self.test,))
    return sum(split.images.nbytes for split in splits)


def _per_channel(values, channels: int) -> tuple[float, ...]:
  values = tuple(float(v) for v in values)
  if len(values) == channels:
    return values
  if len(values) == 1:
    return values * channels
  if len(values) == 3 and channels == 1:
    return (float(np.dot(LUMA, values)),)
  raise ValueError(f"cannot adapt {len(values)} channel statistics to "
                   f"{channels} channels")


def normalization_constants(config, channels: int, pixel_stats=None
                            ) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std), one value per model input channel (`channels`), that
  `to_model_input` normalises with, by config.normalization:

  'imagenet': ImageNet's RGB mean/std; for a 1-channel model their
    luma-weighted (0.299, 0.587, 0.114) averages, i.e. the statistics of
    grey images made from ImageNet's (treating the channels as fully
    correlated for the std, as they nearly are in natural images).
  'dataset': `pixel_stats` (Dataset.pixel_stats, per stored channel): one
    stored channel is repeated for a 3-channel model; 3 stored channels are
    luma-weighted for a 1-channel model, as `to_model_input` converts them.
  'none': zeros and ones (inputs stay in [0, 1]).
  """
  if config.normalization == "none":
    return (0.0,) * channels, (1.0,) * channels
  if config.normalization == "imagenet":
    mean, std = IMAGENET_MEAN, IMAGENET_STD
  elif config.normalization == "dataset":
    if pixel_stats is None:
      raise ValueError("normalization='dataset' needs the training split's "
                       "pixel_stats (load_dataset without validation_only)")
    mean, std = pixel_stats
  else:
    raise UserError(f"config.normalization={config.normalization!r} is not "
                    "one of 'imagenet', 'dataset', 'none'")
  return _per_channel(mean, channels), _per_channel(std, channels)


def to_unit_float(images_uint8: jax.Array) -> jax.Array:
  return images_uint8.astype(jnp.float32) * (1.0 / 255.0)


def to_model_input(images: jax.Array, image_size: int, mean, std,
                   dtype=jnp.float32, channels: int | None = None) -> jax.Array:
  """Float [0, 1] images [B, h, w, C] -> normalised [B, S, S, channels].

  Channels are adapted first (channels=None keeps C): 1 -> 3 repeats the grey
  plane, 3 -> 1 takes the ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B, as
  PIL and tf.image.rgb_to_grayscale). Resizing is bilinear with half-pixel
  centres: enlarging equals PyTorch's `interpolate(mode='bilinear',
  align_corners=False)`; shrinking antialiases (the filter widened to the
  scale, as tf.image.resize(antialias=True) and PIL).
  """
  batch, height, width, have = images.shape
  channels = channels or have
  repeat = have == 1 and channels > 1
  if have == 3 and channels == 1:
    # elementwise, not a dot: full float32 precision on every backend
    images = (images * jnp.asarray(LUMA, images.dtype)).sum(3, keepdims=True)
  elif have != channels and not repeat:
    raise ValueError(f"cannot turn {have}-channel images into {channels}")
  if (height, width) != (image_size, image_size):
    images = jax.image.resize(
        images, (batch, image_size, image_size, images.shape[3]), "bilinear",
        antialias=True)  # (antialias only ever changes shrinking)
  if repeat:
    images = jnp.repeat(images, channels, axis=3)
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return ((images - mean) / std).astype(dtype)
