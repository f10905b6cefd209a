"""Datasets: any TFDS image-classification dataset, read once into uint8 arrays.

The host reads the configured splits once through TFDS's data sources (random
access over array_record files; no TensorFlow), selects classes and subsets,
resizes to `config.stored_size` where asked, and keeps uint8 [N, H, W, C]
images; the training loop puts them on the device. From then on the host only
hands the step a permutation per epoch: batches are gathered, scaled,
augmented, resized and normalised inside the jitted step (`to_model_input`).

Reading is two-pass where labels decide what is kept (`config.classes`, the
class-balanced subsets, `config.class_fraction`): a cheap pass reads only the
labels (images left encoded), then only the chosen examples are decoded,
chunk by chunk, each resized as soon as it is decoded.
"""

from __future__ import annotations

from typing import Any, Callable

from absl import logging
import numpy as np

from jaxtransfer.core import configlib
from jaxtransfer.data import degrade, dataset_spec, kfold
from jaxtransfer.data.dataset_spec import open_builder, resolve_data_dir  # noqa: F401
from jaxtransfer.core.errors import UserError
# The arrays and their model input are arrays.py's; data.<name> stays theirs.
from jaxtransfer.data.arrays import (IMAGENET_MEAN, IMAGENET_STD, LUMA,  # noqa: F401
                                     Dataset, Split, normalization_constants,
                                     to_model_input, to_unit_float)

_READ_CHUNK = 2048  # examples per read (labels, or small fixed-size images)
_VARIABLE_CHUNK = 128  # examples per read of variable-size (large) images
# ---------------------------------------------------------------------------
# Choosing examples by their labels, then decoding them.

def _new_labels(raw, class_map: np.ndarray, where: str) -> np.ndarray:
  """Dataset labels -> selected labels (-1: a class not selected)."""
  raw = np.asarray(raw, np.int64)
  bad = raw[(raw < 0) | (raw >= len(class_map))]
  if bad.size:
    raise UserError(f"{where} has examples without a class label (label "
                    f"{int(bad[0])}; classes are 0..{len(class_map) - 1}): "
                    "choose a labelled split")
  return class_map[raw]


def _choose(label_source, indices: np.ndarray, class_map: np.ndarray,
            subset: int, subset_field: str, where: str, need_labels: bool):
  """(indices to decode, their new labels, or None when none were read).

  Keeps the selected classes; with `subset`, the first `subset` of them in
  equal shares per class (differing by at most one, lower labels get the
  remainder), reading no further than needed.
  """
  num_classes = int(class_map.max()) + 1
  if subset and subset > len(indices):
    raise UserError(f"config.{subset_field}={subset}: subset of {subset} "
                    f"examples asked from a split of {len(indices)}")
  if subset and subset < num_classes:
    raise UserError(f"config.{subset_field}={subset}: fewer examples than the "
                    f"{num_classes} classes (a class-balanced subset needs at "
                    "least one of each)")
  if not (subset or need_labels or (class_map < 0).any()):
    return indices, None
  quota = np.full(num_classes, subset // num_classes if subset else len(indices))
  quota[: subset % num_classes if subset else 0] += 1
  taken = np.zeros(num_classes, dtype=int)
  chosen, labels = [], []
  for start in range(0, len(indices), _READ_CHUNK):
    chunk = indices[start:start + _READ_CHUNK]
    examples = label_source.__getitems__([int(i) for i in chunk])
    new = _new_labels([e["label"] for e in examples], class_map, where)
    for index, label in zip(chunk, new):
      if label >= 0 and taken[label] < quota[label]:
        taken[label] += 1
        chosen.append(index)
        labels.append(label)
    if subset and (taken == quota).all():
      break
  if subset and not (taken == quota).all():
    raise UserError(
        f"config.{subset_field}={subset}: asked for {subset} class-balanced "
        f"examples but {where} only has {taken.sum()} in those proportions "
        f"(per class: {taken.tolist()})")
  return np.asarray(chosen, np.int64), np.asarray(labels, np.int32)


def _keep_fractions(indices: np.ndarray, labels: np.ndarray,
                    fractions: dict[int, float], class_map: np.ndarray,
                    seed: int) -> np.ndarray:
  """`indices` with round(fraction * count) kept of each class in
  `fractions`: a permutation seeded by (seed, the class's label in the
  dataset) picks them, so a class's choice depends on nothing else; the kept
  examples keep their order."""
  keep = np.ones(len(indices), bool)
  for label, fraction in fractions.items():
    positions = np.flatnonzero(labels == label)
    count = int(round(fraction * len(positions)))
    original = int(np.flatnonzero(class_map == label)[0])
    order = np.random.default_rng([seed, original]).permutation(len(positions))
    keep[positions[order[count:]]] = False
    if not count:
      logging.warning("class_fraction leaves class %d no training examples",
                      label)
  return indices[keep]


def resize_square(image: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
  """uint8 [H, W, C] -> [size, size, C] with PIL's bilinear filter (which
  antialiases when shrinking).

  'crop': the shorter side to `size` (the longer one in proportion, rounded
  down), then the centre square: torchvision's Resize(size) + CenterCrop(size).
  'stretch': straight to size x size (the aspect ratio changes).
  """
  from PIL import Image

  if mode not in ("crop", "stretch"):
    raise ValueError(f"unknown resize mode {mode!r}")
  height, width = image.shape[:2]
  if mode == "crop":
    if width <= height:
      new_w, new_h = size, int(size * height / width)
    else:
      new_w, new_h = int(size * width / height), size
  else:
    new_w = new_h = size
  if (new_h, new_w) != (height, width):
    planes = ([image] if image.shape[2] == 3 else
              [image[..., c] for c in range(image.shape[2])])
    planes = [np.asarray(Image.fromarray(plane).resize((new_w, new_h),
                                                       Image.BILINEAR))
              for plane in planes]
    image = planes[0] if image.shape[2] == 3 else np.stack(planes, -1)
  top = int(round((new_h - size) / 2.0))
  left = int(round((new_w - size) / 2.0))
  return image[top:top + size, left:left + size]


def _decode(source, indices: np.ndarray, class_map: np.ndarray,
            shape: tuple[int, int, int], resize: Callable | None,
            chunk: int, where: str) -> Split:
  """Decodes the examples at `indices`, chunk by chunk, into one uint8 array."""
  images = np.empty((len(indices), *shape), np.uint8)
  labels = np.empty(len(indices), np.int32)
  for start in range(0, len(indices), chunk):
    examples = source.__getitems__(
        [int(i) for i in indices[start:start + chunk]])
    labels[start:start + len(examples)] = _new_labels(
        [e["label"] for e in examples], class_map, where)
    for offset, example in enumerate(examples):
      image = np.asarray(example["image"])
      image = image[..., None] if image.ndim == 2 else image
      images[start + offset] = resize(image) if resize else image
  return Split(images, labels)


def resample(split: Split, mode: str, seed: int) -> Split:
  """Seed 002's answers to constrained classes: 'undersample' draws every
  class down to the smallest class's count, 'oversample' repeats each
  smaller class whole (then a random part) up to the largest's; '' keeps
  the split. Seeded by config.seed; examples stay in dataset order."""
  if not mode:
    return split
  classes, counts = np.unique(split.labels, return_counts=True)
  target = counts.min() if mode == "undersample" else counts.max()
  rng = np.random.default_rng([seed, 0x2E5A])
  chosen = []
  for label, count in zip(classes, counts):
    members = np.flatnonzero(split.labels == label)
    if mode == "undersample":
      chosen.append(rng.choice(members, target, replace=False))
    else:
      repeats, rest = divmod(int(target), int(count))
      chosen += [np.tile(members, repeats), rng.choice(members, rest,
                                                       replace=False)]
  order = np.sort(np.concatenate(chosen), kind="stable")
  return Split(split.images[order], split.labels[order])


def _pixel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel (mean, std) of uint8 images scaled to [0, 1], over every
  pixel (population std); exact integer sums, chunked to bound memory."""
  channels = images.shape[-1]
  total = np.zeros(channels, np.float64)
  squares = np.zeros(channels, np.float64)
  rows = max(1, (1 << 22) // max(1, int(np.prod(images.shape[1:]))))
  for start in range(0, len(images), rows):
    chunk = images[start:start + rows].reshape(-1, channels).astype(np.int64)
    total += chunk.sum(0)
    squares += (chunk * chunk).sum(0)
  count = max(1, images.size // channels)
  mean = total / count / 255.0
  std = np.sqrt(np.maximum(squares / count / 255.0**2 - mean**2, 0.0))
  return tuple(map(float, mean)), tuple(map(float, std))


def validate_data_fields(config) -> None:
  """The data fields whose values need no dataset to be checked (also run by
  load_dataset, which callers may use without validation.validate)."""
  configlib.one_of(config, "validation", configlib.VALIDATION_SPLITS)
  configlib.one_of(config, "stored_resize", configlib.STORED_RESIZE)
  configlib.one_of(config, "normalization", configlib.NORMALIZATIONS)
  configlib.one_of(config, "resample", ("", "undersample", "oversample"))
  for field in ("train_subset", "train_sample", "val_subset", "holdout_size",
                "stored_size"):
    configlib.require(config[field] >= 0, field, config[field],
             "must be 0 (all) or a positive count")
  degrade.parse(config.get("corruption", ""))
  fraction = config.get("holdout_fraction", 0.0)
  configlib.require(0.0 <= fraction < 1.0, "holdout_fraction", fraction,
           "must be in [0, 1) (0: use holdout_size)")
  if not config.val_split:
    configlib.require(config.validation == "holdout", "val_split", config.val_split,
             "may be empty only with validation='holdout' (the validation "
             "examples then come from train_split)")


def load_dataset(config, *, validation_only: bool = False,
                 with_test: bool = False) -> Dataset:
  """Reads the train and validation data the config asks for.

  validation_only: nothing of the training part is read (train is empty);
  with validation='holdout' only the held-out examples are. with_test (with
  validation='holdout'): val_split is read as `Dataset.test`.
  """
  data_dir = resolve_data_dir(config)
  validate_data_fields(config)
  if kfold.enabled(config):  # the folds are slices of the training split
    validation_only = False
  builder = open_builder(config.dataset, data_dir)
  with_test = (with_test and config.validation == "holdout"
               and bool(config.val_split))
  spec = dataset_spec.check(config, builder, with_test)
  try:
    dataset = _load(config, builder, spec, validation_only, with_test)
  except (RuntimeError, OSError, ValueError) as e:
    # array_record raises RuntimeError on damaged files (a truncated copy,
    # a half-finished download).
    command = dataset_spec.prepare_command(config.dataset, data_dir)
    raise UserError(
        f"the TFDS data of {config.dataset!r} in data_dir="
        f"{dataset_spec.where(data_dir)} could not be read ({type(e).__name__}"
        f": {dataset_spec.first_line(e)[:200]}); it may be damaged: prepare it "
        f"again ({command}) or point config.data_dir / TFDS_DATA_DIR at a good "
        "copy") from e
  if kfold.enabled(config):
    dataset = kfold.split(dataset, config)
  train, val, test = dataset.train, dataset.val, dataset.test
  logging.info(
      "Loaded %s from %s: %d train (%s), %d validation (%s)%s; %d classes; "
      "images %s uint8: %.1f MiB%s", config.dataset,
      dataset_spec.where(data_dir), len(train),
      "not read" if validation_only else config.train_split, len(val),
      dataset.val_name,
      "" if test is None else f", {len(test)} test ({config.val_split})",
      dataset.num_classes, "x".join(map(str, spec.stored_shape)),
      dataset.nbytes / 2**20, "" if dataset.pixel_stats is None else
      f"; pixel mean {dataset.pixel_stats[0]}, std {dataset.pixel_stats[1]}")
  return dataset


def _load(config, builder, spec: dataset_spec.Spec, validation_only: bool,
          with_test: bool) -> Dataset:
  import tensorflow_datasets as tfds

  features = builder.info.features
  sources: dict[tuple[str, bool], Any] = {}

  def source(split: str, labels_only: bool = False):
    """The split's data source; labels_only leaves every image encoded."""
    if (split, labels_only) not in sources:
      skip = {key: tfds.decode.SkipDecoding() for key, feature
              in features.items() if isinstance(feature, tfds.features.Image)
              and (labels_only or key != "image")}
      sources[split, labels_only] = builder.as_data_source(
          split=split, decoders=skip or None)
    return sources[split, labels_only]

  size = spec.stored_shape[0]
  resize = (lambda image: resize_square(image, size, config.stored_resize)
            ) if spec.resize else None
  chunk = _VARIABLE_CHUNK if None in spec.image_shape else _READ_CHUNK

  def read(split: str, indices: np.ndarray, subset: int, subset_field: str,
           where: str, fractions: dict[int, float] | None = None,
           sample: int = 0) -> Split:
    indices, labels = _choose(source(split, True), indices, spec.class_map,
                              subset, subset_field, where, bool(fractions))
    if fractions:
      indices = _keep_fractions(indices, labels, fractions, spec.class_map,
                                config.seed)
    if sample:
      if sample > len(indices):
        raise UserError(f"config.train_sample={sample}: more than the "
                        f"{len(indices)} examples {where} has to draw from")
      rng = np.random.default_rng([config.seed, 0x5A3B1E])
      indices = np.sort(rng.choice(indices, sample, replace=False))
    if not len(indices):
      raise UserError(f"{where} has no examples of the selected classes")
    read_split = _decode(source(split), indices, spec.class_map,
                         spec.stored_shape, resize, chunk, where)
    return Split(degrade.apply(read_split.images,
                                   config.get("corruption", "")),
                 read_split.labels)

  train_where = f"config.train_split={config.train_split!r}"
  val_where = f"config.val_split={config.val_split!r}"
  if config.validation == "holdout":
    total = len(source(config.train_split))
    cut = total - dataset_spec.holdout_count(config, total)
    val = read(config.train_split, np.arange(cut, total), config.val_subset,
               "val_subset", f"the holdout of {train_where}")
    val_name = f"holdout (last {total - cut} of {config.train_split})"
  else:
    cut = 0 if validation_only else len(source(config.train_split))
    val = read(config.val_split, np.arange(len(source(config.val_split))),
               config.val_subset, "val_subset", val_where)
    val_name = "test"
  test = None
  if with_test:
    test = read(config.val_split, np.arange(len(source(config.val_split))), 0,
                "val_subset", val_where)
  pixel_stats = None
  if validation_only:
    train = Split(np.zeros((0, *spec.stored_shape), np.uint8),
                  np.zeros(0, np.int32))
  else:
    train = read(config.train_split, np.arange(cut), config.train_subset,
                 "train_subset", train_where, spec.fractions,
                 config.get("train_sample", 0))
    train = resample(train, config.get("resample", ""), config.seed)
    if config.normalization == "dataset":
      pixel_stats = _pixel_stats(train.images)
  return Dataset(train, val, len(spec.class_names), spec.class_names,
                 val_name, spec.stored_shape[2], pixel_stats, test)


# ---------------------------------------------------------------------------
# Normalisation constants, and the model input on the device.
