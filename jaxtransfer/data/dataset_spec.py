"""What the config asks of a TFDS dataset, checked before anything is read.

`open_builder` opens a prepared TFDS dataset (or explains how to prepare it);
`check` reads the builder's metadata (features, splits, class names) and
turns the data fields of the config into a `Spec` for `data.load_dataset`,
raising a one-line `UserError` naming the field for anything it cannot use.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re

from absl import logging
import numpy as np

from jaxtransfer.core.errors import UserError

_SPLITS_DOC = "https://www.tensorflow.org/datasets/splits"


@dataclasses.dataclass(frozen=True)
class Spec:
  """The config's data fields, resolved against the dataset's metadata."""
  image_shape: tuple  # the dataset's (H, W, C); H, W None when they vary
  stored_shape: tuple[int, int, int]  # (H, W, C) kept in memory
  resize: bool  # whether images are resized (to stored_shape) on reading
  class_map: np.ndarray  # dataset label -> selected label, -1 if not selected
  class_names: tuple[str, ...]  # the selected classes, in label order
  fractions: dict[int, float]  # selected label -> fraction of train kept


def resolve_data_dir(config) -> str | None:
  """config.data_dir, else $TFDS_DATA_DIR, else None (TFDS's own default)."""
  return config.data_dir or os.environ.get("TFDS_DATA_DIR") or None


def where(data_dir: str | None) -> str:
  return data_dir or "~/tensorflow_datasets (TFDS's default)"


def prepare_command(name: str, data_dir: str | None) -> str:
  target = f" --data_dir={data_dir}" if data_dir else ""
  return f"tfds build {name} --file_format=array_record{target}"


def first_line(error: BaseException) -> str:
  return (str(error).splitlines() or [""])[0]


def _near(word: str, choices, what: str) -> str:
  """' (did you mean 'x'?)', or the list of choices when none is close."""
  choices = [str(c) for c in choices]
  close = difflib.get_close_matches(str(word), choices, n=1)
  if close:
    return f" (did you mean {close[0]!r}?)"
  shown = ", ".join(choices[:40]) + (", ..." if len(choices) > 40 else "")
  return f" ({what}: {shown})"


def open_builder(name: str, data_dir: str | None):
  """The prepared TFDS builder of `name`, with errors a user can act on.

  A prepared dataset is opened without touching the network. One that is not
  prepared is downloaded and prepared by TFDS as usual, which needs TensorFlow
  once; without it, or without a network, the error says where we looked and
  how to prepare the data.
  """
  import importlib.util
  import tensorflow_datasets as tfds  # slow import; only needed here

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    known = tfds.list_builders(with_community_datasets=False)
    base = re.split(r"[/:]", name)[0]
    close = difflib.get_close_matches(base, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else (
        f" (nor prepared in data_dir={where(data_dir)}; see "
        "https://www.tensorflow.org/datasets/catalog)")
    raise UserError(f"config.dataset={name!r} is not a TFDS dataset{hint}") from e
  except Exception as e:  # unreadable dir, bad version, ...
    raise UserError(f"cannot open TFDS dataset {name!r} in data_dir="
                    f"{where(data_dir)}: {type(e).__name__}: "
                    f"{first_line(e)}") from e
  if builder.is_prepared():
    return builder
  if importlib.util.find_spec("tensorflow") is None:
    raise UserError(
        f"TFDS dataset {name!r} is not prepared in data_dir={where(data_dir)}."
        " Set config.data_dir or TFDS_DATA_DIR to a prepared TFDS data_dir, "
        "or download and prepare it once (needs internet and TensorFlow: "
        f"pip install -e '.[prepare]' && {prepare_command(name, data_dir)})")
  logging.info("%s is not prepared in %s: TFDS will download it", name,
               where(data_dir))
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
  except Exception as e:  # TFDS raises many types; all mean "not usable".
    raise UserError(
        f"could not prepare TFDS dataset {name!r} in data_dir="
        f"{where(data_dir)} ({type(e).__name__}: {first_line(e)}). Set "
        "config.data_dir or TFDS_DATA_DIR to a prepared TFDS data_dir, or "
        f"prepare it: {prepare_command(name, data_dir)}") from e
  return builder


# ---------------------------------------------------------------------------
# The config, checked against the dataset's metadata before anything is read.

def _features(config, info) -> tuple[tuple, list[str]]:
  """(image shape, class names) of an image-classification dataset."""
  import tensorflow_datasets as tfds

  features = info.features
  keys = list(features.keys()) if hasattr(features, "keys") else []
  for key, kind in (("image", tfds.features.Image),
                    ("label", tfds.features.ClassLabel)):
    if key not in keys or not isinstance(features[key], kind):
      raise UserError(
          f"config.dataset={config.dataset!r} is not an image-classification "
          f"dataset: it has no {key!r} {kind.__name__} feature (features: "
          f"{', '.join(keys)})")
  image = features["image"]
  if image.shape[-1] is None or np.dtype(image.np_dtype) != np.uint8:
    raise UserError(f"config.dataset={config.dataset!r}: images of "
                    f"{image.shape} {np.dtype(image.np_dtype)} are not "
                    "supported (uint8 with a known channel count)")
  return tuple(image.shape), list(features["label"].names)


def _stored_shape(config, image_shape: tuple) -> tuple[tuple[int, int, int], bool]:
  """(H, W, C) kept in memory, and whether images are resized on reading."""
  height, width, channels = image_shape
  size = config.stored_size
  if not size:
    if height is None or width is None:
      raise UserError(
          f"config.stored_size=0 keeps the images' own size, but "
          f"{config.dataset}'s images vary in size ({image_shape}): set "
          "config.stored_size (e.g. 224) to resize them once when reading")
    return (height, width, channels), False
  return (size, size, channels), (height, width) != (size, size)


def _class_map(config, names: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
  """(old label -> new label or -1, the selected names in new-label order)."""
  classes = config.classes
  if isinstance(classes, str):
    classes = [c.strip() for c in classes.split(",") if c.strip()]
  if not classes:
    return np.arange(len(names)), tuple(names)
  mapping = np.full(len(names), -1)
  selected = []
  for new, entry in enumerate(classes):
    if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
      if not 0 <= entry < len(names):
        raise UserError(f"config.classes: {entry} is not a class index of "
                        f"{config.dataset} (0..{len(names) - 1})")
      old = int(entry)
    elif str(entry) in names:
      old = names.index(str(entry))
    else:
      raise UserError(f"config.classes: {entry!r} is not a class of "
                      f"{config.dataset}{_near(entry, names, 'classes')}")
    if mapping[old] >= 0:
      raise UserError(f"config.classes: {names[old]!r} is given twice")
    mapping[old] = new
    selected.append(names[old])
  return mapping, tuple(selected)


def _class_fractions(config, class_names: tuple[str, ...]) -> dict[int, float]:
  """{new label: fraction of its training examples kept}."""
  given = config.class_fraction
  items = dict(given.items()) if given is not None else {}
  fractions = {}
  for name, fraction in items.items():
    if str(name) not in class_names:
      raise UserError(f"config.class_fraction: {name!r} is not among the "
                      f"classes{_near(name, class_names, 'classes')}")
    if (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real)
        or not 0 < fraction <= 1):
      raise UserError(f"config.class_fraction[{name!r}]={fraction!r}: must "
                      "be a fraction in (0, 1]")
    fractions[class_names.index(str(name))] = float(fraction)
  return fractions


def _split_size(config, info, field: str) -> int:
  """Examples in config.<field> (a TFDS split string), or a UserError."""
  split = config[field]
  available = ", ".join(f"{name} ({s.num_examples})"
                        for name, s in info.splits.items())
  try:
    count = info.splits[split].num_examples
  except Exception as e:  # ValueError, KeyError, AssertionError, ...
    reason = " ".join(line.strip() for line in str(e).splitlines())
    reason = re.sub(r"\s*See format at:? \S+", "", reason).strip()
    raise UserError(f"config.{field}={split!r}: {reason} ({config.dataset} "
                    f"has the splits {available}; syntax: {_SPLITS_DOC})") from e
  if count <= 0:  # an empty slice, or an inverted one (TFDS counts < 0)
    raise UserError(f"config.{field}={split!r} selects no examples: an "
                    f"empty{' or inverted' if count < 0 else ''} slice "
                    f"({config.dataset} has the splits {available})")
  return count


def holdout_count(config, train_count: int) -> int:
  """Examples held out of train_split with validation='holdout'."""
  fraction = config.get("holdout_fraction", 0.0)
  # rounded first: 0.15 * 80 is 12.000000000000002 in floating point
  return (math.ceil(round(fraction * train_count, 6)) if fraction
          else config.holdout_size)


def check(config, builder, with_test: bool) -> Spec:
  """The `Spec` of config for the opened `builder` (val_split is checked
  only where it is read: validation='test', or with_test)."""
  info = builder.info
  image_shape, names = _features(config, info)
  stored_shape, resize = _stored_shape(config, image_shape)
  class_map, class_names = _class_map(config, names)
  fractions = _class_fractions(config, class_names)
  train_count = _split_size(config, info, "train_split")
  holdout = config.validation == "holdout"
  if not holdout or (with_test and config.val_split):
    _split_size(config, info, "val_split")
  if holdout and holdout_count(config, train_count) >= train_count:
    field = ("holdout_fraction" if config.get("holdout_fraction")
             else "holdout_size")
    raise UserError(
        f"config.{field}={config[field]} leaves no training examples "
        f"(train_split {config.train_split!r} has {train_count})")
  return Spec(image_shape, stored_shape, resize, class_map, class_names,
              fractions)
