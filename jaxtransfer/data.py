"""Datasets: TFDS splits read once into uint8 arrays, then prepared on the device.

The host reads each split once through `tfds.data_source` (random access over
array_record files; no TensorFlow), keeps uint8 [N, H, W, C] images, and the
training loop puts them on the device. From then on the host only hands the
step a permutation per epoch: batches are gathered, scaled, augmented,
upsampled and normalised inside the jitted step (`to_model_input`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer.errors import UserError

_READ_CHUNK = 2048


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  train: Split
  val: Split
  num_classes: int
  class_names: tuple[str, ...]
  val_name: str  # what `val` is, for logs: 'test', 'holdout'


def resolve_data_dir(config) -> str | None:
  """config.data_dir, else $TFDS_DATA_DIR, else None (TFDS's own default)."""
  return config.data_dir or os.environ.get("TFDS_DATA_DIR") or None


def _where(data_dir: str | None) -> str:
  return data_dir or "~/tensorflow_datasets (TFDS's default)"


def _prepare_command(name: str, data_dir: str | None) -> str:
  target = f" --data_dir={data_dir}" if data_dir else ""
  return f"tfds build {name} --file_format=array_record{target}"


def open_sources(name: str, data_dir: str | None):
  """{'train': source, 'test': source} from TFDS, with errors a user can act on.

  A prepared dataset is opened without touching the network. One that is not
  prepared is downloaded and prepared by TFDS as usual, which (for CIFAR-10)
  needs TensorFlow once; without it, or without a network, the error says
  where we looked and how to prepare the data.
  """
  import importlib.util
  import tensorflow_datasets as tfds  # slow import; only needed here

  try:
    prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception as e:  # unknown dataset name, unreadable dir, ...
    raise UserError(f"cannot open TFDS dataset {name!r} in data_dir="
                    f"{_where(data_dir)}: {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}") from e
  if not prepared:
    if importlib.util.find_spec("tensorflow") is None:
      raise UserError(
          f"TFDS dataset {name!r} is not prepared in data_dir={_where(data_dir)}."
          " Set config.data_dir or TFDS_DATA_DIR to a prepared TFDS data_dir, "
          "or download and prepare it once (needs internet and TensorFlow: "
          f"pip install -e '.[prepare]' && {_prepare_command(name, data_dir)})")
    logging.info("%s is not prepared in %s: TFDS will download it", name,
                 _where(data_dir))
  try:
    return tfds.data_source(name, data_dir=data_dir, download=not prepared,
                            split={"train": "train", "test": "test"})
  except Exception as e:  # TFDS raises many types; all mean "not usable".
    raise UserError(
        f"could not open TFDS dataset {name!r} in data_dir={_where(data_dir)} "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
        "Set config.data_dir or TFDS_DATA_DIR to a prepared TFDS data_dir, or "
        f"prepare it: {_prepare_command(name, data_dir)}") from e


def _read(source, indices: np.ndarray) -> Split:
  images, labels = [], []
  for start in range(0, len(indices), _READ_CHUNK):
    chunk = [int(i) for i in indices[start:start + _READ_CHUNK]]
    examples = source.__getitems__(chunk)
    images.extend(e["image"] for e in examples)
    labels.extend(e["label"] for e in examples)
  if not images:
    raise UserError("no examples selected from the dataset")
  return Split(np.stack(images).astype(np.uint8),
               np.asarray(labels, dtype=np.int32))


def _read_first_balanced(source, indices: np.ndarray, n: int,
                         num_classes: int) -> Split:
  """The first `n` examples among `indices`, an equal share per class.

  Shares differ by at most one (lower class ids get the remainder). Reads in
  order and stops as soon as every class has its share.
  """
  quota = np.full(num_classes, n // num_classes)
  quota[: n % num_classes] += 1
  taken = np.zeros(num_classes, dtype=int)
  chosen_images, chosen_labels = [], []
  for start in range(0, len(indices), _READ_CHUNK):
    part = _read(source, indices[start:start + _READ_CHUNK])
    for image, label in zip(part.images, part.labels):
      if taken[label] < quota[label]:
        taken[label] += 1
        chosen_images.append(image)
        chosen_labels.append(label)
    if (taken == quota).all():
      break
  if not (taken == quota).all():
    raise UserError(
        f"asked for {n} class-balanced examples but the split only has "
        f"{taken.sum()} in those proportions (per class: {taken.tolist()})")
  return Split(np.stack(chosen_images), np.asarray(chosen_labels, np.int32))


def _select(source, indices: np.ndarray, subset: int, num_classes: int) -> Split:
  if subset:
    if subset > len(indices):
      raise UserError(f"subset of {subset} examples asked from a split of "
                      f"{len(indices)}")
    return _read_first_balanced(source, indices, subset, num_classes)
  return _read(source, indices)


def _splits(config, sources) -> tuple[Any, np.ndarray, Any, np.ndarray, str]:
  """(train source, train indices, val source, val indices, val name)."""
  train_source, test_source = sources["train"], sources["test"]
  n_train = len(train_source)
  if config.validation == "holdout":
    if config.holdout_size >= n_train:
      raise UserError(
          f"config.holdout_size={config.holdout_size} leaves no training "
          f"examples (the train split has {n_train})")
    cut = n_train - config.holdout_size
    return (train_source, np.arange(cut), train_source, np.arange(cut, n_train),
            f"holdout (last {config.holdout_size} of train)")
  return (train_source, np.arange(n_train), test_source,
          np.arange(len(test_source)), "test")


def load_dataset(config, *, validation_only: bool = False) -> Dataset:
  """Reads the train and validation splits the config asks for (with
  validation_only, the training split is left empty)."""
  data_dir = resolve_data_dir(config)
  try:
    return _load(config, data_dir, validation_only)
  except (RuntimeError, OSError, ValueError) as e:
    # array_record raises RuntimeError on damaged files (a truncated copy,
    # a half-finished download).
    raise UserError(
        f"the TFDS data of {config.dataset!r} in data_dir={_where(data_dir)} "
        f"could not be read ({type(e).__name__}: "
        f"{(str(e).splitlines() or [''])[0][:200]}); it may be damaged: "
        f"prepare it again ({_prepare_command(config.dataset, data_dir)}) or "
        "point config.data_dir / TFDS_DATA_DIR at a good copy") from e


def _load(config, data_dir, validation_only: bool) -> Dataset:
  sources = open_sources(config.dataset, data_dir)
  label_feature = sources["train"].dataset_info.features["label"]
  num_classes = label_feature.num_classes
  train_source, train_indices, val_source, val_indices, val_name = _splits(
      config, sources)
  val = _select(val_source, val_indices, config.val_subset, num_classes)
  if validation_only:
    train = Split(np.zeros((0, *val.images.shape[1:]), np.uint8),
                  np.zeros(0, np.int32))
  else:
    train = _select(train_source, train_indices, config.train_subset, num_classes)
  logging.info("Loaded %s from %s: %d train, %d validation (%s) images of %s",
               config.dataset, data_dir or "TFDS default dir", len(train),
               len(val), val_name, val.images.shape[1:])
  return Dataset(train, val, num_classes, tuple(label_feature.names), val_name)


# ---------------------------------------------------------------------------
# On the device.

def to_unit_float(images_uint8: jax.Array) -> jax.Array:
  return images_uint8.astype(jnp.float32) * (1.0 / 255.0)


def to_model_input(images: jax.Array, image_size: int, mean, std,
                   dtype=jnp.float32) -> jax.Array:
  """Float [0, 1] images [B, h, w, C] -> normalised [B, S, S, C] model input.

  Bilinear upsampling equals PyTorch's `interpolate(mode='bilinear',
  align_corners=False)` (half-pixel centres, edges clamped).
  """
  batch, height, width, channels = images.shape
  if (height, width) != (image_size, image_size):
    images = jax.image.resize(
        images, (batch, image_size, image_size, channels), "bilinear")
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return ((images - mean) / std).astype(dtype)
