"""Any TFDS image-classification dataset: mnist, stl10 and oxford_iiit_pet
through `tfds.testing.mock_data` (no download), and the host-side resize.

The mock keeps TFDS's own metadata handling (the real DatasetInfo and
SplitDict from dataset_info.json files written here, so split strings and
class names behave as with the real data) and replaces only the records: a
data source of deterministic random examples per (split file, index) that
honours split strings and decoders and logs every read.
"""

import os
import re
import types
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.data_sources import base as data_sources_base
from tensorflow_datasets.testing import mocking

from conftest import tiny_config
from jaxtransfer import data
from jaxtransfer.data import dataset_spec
from jaxtransfer.core.errors import UserError

SPLITS = {
    "mnist": {"train": 200, "test": 30},
    "stl10": {"train": 40, "test": 30, "unlabelled": 20},
    "oxford_iiit_pet": {"train": 60, "test": 20},
    "imdb_reviews": {"train": 10, "test": 10},  # text: not an image dataset
}
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse",
               "monkey", "ship", "truck"]


class FakeSource:
  """A TFDS data source of deterministic random examples of `split`."""

  def __init__(self, info, split, decoders, reads: list):
    self.dataset_info = info
    self.split = split
    self._records = [
        (os.path.basename(instruction.filename), instruction.skip + offset)
        for instruction in data_sources_base.file_instructions(info, split)
        for offset in range(instruction.take)]
    self._skipped = set(decoders or ())
    self._reads = reads

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, key):
    return self.__getitems__([key])[0]

  def __getitems__(self, keys):
    self._reads.append((self.split, "image" in self._skipped, list(keys)))
    return [self._example(*self._records[k]) for k in keys]

  def _example(self, filename: str, index: int) -> dict:
    generator = mocking.RandomFakeGenerator(
        self.dataset_info.features, num_examples=index + 1,
        seed=zlib.crc32(filename.encode()))
    example = generator[index]
    if "-unlabelled." in filename:
      example["label"] = -1  # as TFDS's stl10 has it
    for key in self._skipped:
      example[key] = b"still encoded"
    return example


@pytest.fixture(scope="module")
def metadata_dir(tmp_path_factory) -> str:
  """A data_dir with the metadata (no records) of the datasets in SPLITS."""
  root = tmp_path_factory.mktemp("tfds")
  for name, sizes in SPLITS.items():
    builder = tfds.builder(name, data_dir=str(root), file_format="array_record")
    if name == "stl10":
      builder.info.features["label"].names = STL10_NAMES
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(
            name=split, shard_lengths=[count], num_bytes=0,
            filename_template=tfds.core.ShardedFileTemplate(
                data_dir=builder.data_path, dataset_name=name, split=split,
                filetype_suffix="array_record"))
        for split, count in sizes.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
  return str(root)


@pytest.fixture
def fake_tfds(metadata_dir):
  """Inside: TFDS datasets of SPLITS with fake records; yields the read log
  [(split, labels_only, keys)] and a raw source maker."""
  reads = []

  def as_data_source(builder, split, decoders=None, **unused):
    return FakeSource(builder.info, split, decoders, reads)

  def raw(name, split):
    return FakeSource(tfds.builder(name).info, split, None, [])

  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES,
                              data_dir=metadata_dir,
                              as_data_source_fn=as_data_source):
    yield types.SimpleNamespace(reads=reads, raw=raw)


def _config(dataset, **overrides):
  return tiny_config(**{"dataset": dataset, "train_subset": 0,
                        "val_subset": 0, **overrides})


def _raw_split(source) -> tuple[list[np.ndarray], np.ndarray]:
  examples = [source[i] for i in range(len(source))]
  return ([np.asarray(e["image"]) for e in examples],
          np.asarray([e["label"] for e in examples]))


def test_mnist_split_strings_shapes_and_names(fake_tfds):
  dataset = data.load_dataset(_config("mnist", train_split="train[:50%]",
                                      val_split="test+train[-5:]"))
  assert dataset.train.images.shape == (100, 28, 28, 1)
  assert dataset.val.images.shape == (35, 28, 28, 1)
  assert dataset.train.images.dtype == np.uint8
  assert dataset.train.labels.dtype == np.int32
  assert dataset.channels == 1 and dataset.num_classes == 10
  assert dataset.class_names == tuple(str(i) for i in range(10))
  assert set(dataset.train.labels) <= set(range(10))
  assert dataset.pixel_stats is None and dataset.test is None
  assert dataset.nbytes == (135 * 28 * 28)
  raw_images, raw_labels = _raw_split(fake_tfds.raw("mnist", "train[:50%]"))
  np.testing.assert_array_equal(dataset.train.images, np.stack(raw_images))
  np.testing.assert_array_equal(dataset.train.labels, raw_labels)
  all_train, _ = _raw_split(fake_tfds.raw("mnist", "train"))
  np.testing.assert_array_equal(dataset.val.images[30:], np.stack(all_train[-5:]))


def test_classes_are_relabelled_in_the_given_order(fake_tfds):
  # ints are class indices, strings names (mnist's names are '0'..'9')
  dataset = data.load_dataset(_config("mnist", classes=(7, "3")))
  assert dataset.class_names == ("7", "3") and dataset.num_classes == 2
  for split, name in ((dataset.train, "train"), (dataset.val, "test")):
    raw_images, raw_labels = _raw_split(fake_tfds.raw("mnist", name))
    chosen = np.isin(raw_labels, [7, 3])
    np.testing.assert_array_equal(split.labels,
                                  np.where(raw_labels[chosen] == 7, 0, 1))
    np.testing.assert_array_equal(
        split.images, np.stack(raw_images)[chosen])


def test_balanced_subset_of_selected_classes(fake_tfds):
  dataset = data.load_dataset(_config("mnist", classes=("1", "2", "5"),
                                      train_subset=13))
  assert np.bincount(dataset.train.labels).tolist() == [5, 4, 4]
  raw_images, raw_labels = _raw_split(fake_tfds.raw("mnist", "train"))
  first = np.sort(np.concatenate([np.flatnonzero(raw_labels == c)[:n]
                                  for c, n in ((1, 5), (2, 4), (5, 4))]))
  np.testing.assert_array_equal(dataset.train.images,
                                np.stack(raw_images)[first])
  decoded = [k for split, labels_only, keys in fake_tfds.reads
             if split == "train" and not labels_only for k in keys]
  assert decoded == first.tolist()  # only the chosen ones are decoded


def test_class_fraction_keeps_a_seeded_share_of_training_examples(fake_tfds):
  fraction = {"3": 0.5, "8": 0.25}
  full = data.load_dataset(_config("mnist"))
  a = data.load_dataset(_config("mnist", class_fraction=fraction, seed=1))
  again = data.load_dataset(_config("mnist", class_fraction=fraction, seed=1))
  other = data.load_dataset(_config("mnist", class_fraction=fraction, seed=2))
  full_counts = np.bincount(full.train.labels, minlength=10)
  expected = full_counts.copy()
  expected[3] = round(0.5 * full_counts[3])
  expected[8] = round(0.25 * full_counts[8])
  assert np.bincount(a.train.labels, minlength=10).tolist() == expected.tolist()
  np.testing.assert_array_equal(a.train.images, again.train.images)
  assert not np.array_equal(a.train.images, other.train.images)
  # kept examples are the class's own, in their original order; others and
  # the validation split are untouched
  for c in range(10):
    kept = [img.tobytes() for img in a.train.images[a.train.labels == c]]
    all_c = [img.tobytes() for img in full.train.images[full.train.labels == c]]
    positions = [all_c.index(k) for k in kept]
    assert positions == sorted(positions)
    if c not in (3, 8):
      assert kept == all_c
  np.testing.assert_array_equal(a.val.images, full.val.images)


@pytest.mark.parametrize("fraction, needle", [
    ({"3": 0.0}, r"config.class_fraction\['3'\]=0.0: must be a fraction"),
    ({"3": 1.5}, r"config.class_fraction\['3'\]=1.5"),
    ({"33": 0.5}, r"config.class_fraction: '33' is not among the classes"),
])
def test_bad_class_fraction(fake_tfds, fraction, needle):
  with pytest.raises(UserError, match=needle):
    data.load_dataset(_config("mnist", class_fraction=fraction))
  assert not fake_tfds.reads


def test_class_fraction_must_name_a_selected_class(fake_tfds):
  with pytest.raises(UserError, match="'7' is not among the classes"):
    data.load_dataset(_config("mnist", classes=("3", "8"),
                              class_fraction={"7": 0.5}))


def test_stl10_keeps_96px_or_resizes_and_names_classes(fake_tfds):
  dataset = data.load_dataset(_config("stl10", classes=("cat", "dog")))
  assert dataset.train.images.shape[1:] == (96, 96, 3)
  assert dataset.class_names == ("cat", "dog")
  assert set(dataset.train.labels) <= {0, 1}
  small = data.load_dataset(_config("stl10", stored_size=32,
                                    stored_resize="stretch"))
  assert small.train.images.shape == (40, 32, 32, 3)
  raw_images, _ = _raw_split(fake_tfds.raw("stl10", "train"))
  np.testing.assert_array_equal(
      small.train.images[7], data.resize_square(raw_images[7], 32, "stretch"))


def test_stl10_unlabelled_split_is_refused(fake_tfds):
  with pytest.raises(UserError, match=r"config.train_split='train\+unlabelled'"
                     r" has examples without a class label \(label -1"):
    data.load_dataset(_config("stl10", train_split="train+unlabelled"))


def test_split_string_error_names_the_field_and_the_splits(fake_tfds):
  with pytest.raises(UserError) as error:
    data.load_dataset(_config("stl10", train_split="trian"))
  message = str(error.value)
  assert message.startswith("config.train_split='trian': ")
  assert "unlabelled (20)" in message and "\n" not in message
  assert not fake_tfds.reads


def test_variable_size_images_need_stored_size(fake_tfds):
  with pytest.raises(UserError, match=r"config.stored_size=0 .* vary in size"):
    data.load_dataset(_config("oxford_iiit_pet"))
  assert not fake_tfds.reads


def test_pets_are_cropped_to_stored_size(fake_tfds):
  dataset = data.load_dataset(_config("oxford_iiit_pet", stored_size=24))
  assert dataset.num_classes == 37 and dataset.class_names[0] == "Abyssinian"
  assert dataset.train.images.shape == (60, 24, 24, 3)
  raw_images, raw_labels = _raw_split(fake_tfds.raw("oxford_iiit_pet", "train"))
  assert len({image.shape for image in raw_images}) > 1  # sizes do vary
  for i in (0, 17, 59):
    np.testing.assert_array_equal(dataset.train.images[i],
                                  data.resize_square(raw_images[i], 24, "crop"))
  np.testing.assert_array_equal(dataset.train.labels, raw_labels)
  # decoded in chunks of variable-size images, each read once
  decoded = [k for s, labels_only, keys in fake_tfds.reads
             if s == "train" and not labels_only for k in keys]
  assert sorted(decoded) == list(range(60))


@pytest.mark.parametrize("validation", ["test", "holdout"])
def test_validation_only_reads_nothing_of_the_training_part(fake_tfds,
                                                            validation):
  config = _config("mnist", validation=validation, holdout_size=50,
                   classes=("1", "2"), val_subset=2, normalization="dataset")
  dataset = data.load_dataset(config, validation_only=True)
  assert dataset.train.images.shape == (0, 28, 28, 1)
  assert len(dataset.val) == 2 and dataset.pixel_stats is None
  train_reads = [k for split, _, keys in fake_tfds.reads if split == "train"
                 for k in keys]
  if validation == "test":
    assert not train_reads
  else:
    assert train_reads and min(train_reads) >= 150


def test_holdout_with_test(fake_tfds):
  dataset = data.load_dataset(
      _config("mnist", validation="holdout", holdout_size=50), with_test=True)
  assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (150, 50, 30)
  assert dataset.val_name.startswith("holdout")
  assert dataset.nbytes == (150 + 50 + 30) * 28 * 28
  raw_images, _ = _raw_split(fake_tfds.raw("mnist", "train"))
  np.testing.assert_array_equal(dataset.val.images, np.stack(raw_images[150:]))


def test_dataset_normalization_of_one_channel(fake_tfds):
  config = _config("mnist", normalization="dataset")
  dataset = data.load_dataset(config)
  pixels = dataset.train.images.astype(np.float64) / 255
  mean, std = dataset.pixel_stats
  np.testing.assert_allclose(mean, [pixels.mean()], rtol=1e-12)
  np.testing.assert_allclose(std, [pixels.std()], rtol=1e-12)
  assert data.normalization_constants(config, 3, dataset.pixel_stats) == (
      mean * 3, std * 3)


def test_not_an_image_classification_dataset(fake_tfds):
  with pytest.raises(UserError, match="config.dataset='imdb_reviews' is not an "
                     "image-classification dataset: it has no 'image'"):
    data.load_dataset(_config("imdb_reviews"))
  info = types.SimpleNamespace(features=tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(8, 8, 3)),
      "labels": tfds.features.ClassLabel(num_classes=2)}))
  with pytest.raises(UserError, match="no 'label' ClassLabel feature"):
    dataset_spec._features(_config("x"), info)


def test_unknown_dataset_suggests_a_name(tmp_path):
  with pytest.raises(UserError, match=r"^config.dataset='cifar1' is not a TFDS "
                     r"dataset \(did you mean 'cifar10'\?\)$"):
    data.load_dataset(_config("cifar1", data_dir=str(tmp_path)))


def test_bad_choices_are_refused_before_reading(fake_tfds):
  for field, value in (("stored_resize", "squash"), ("normalization", "z"),
                       ("validation", "val")):
    with pytest.raises(UserError, match=f"config.{field}={value!r} is not one"):
      data.load_dataset(_config("mnist", **{field: value}))
  assert not fake_tfds.reads


# ---------------------------------------------------------------------------
# The host-side resize.

def _disc(height: int, width: int, radius: float) -> np.ndarray:
  """A white disc at the centre of a black image, with red edge columns."""
  y, x = np.mgrid[:height, :width]
  inside = (y - (height - 1) / 2) ** 2 + (x - (width - 1) / 2) ** 2 <= radius**2
  image = np.zeros((height, width, 3), np.uint8)
  image[inside] = 255
  image[:, :4] = image[:, -4:] = (255, 0, 0)
  return image


def _extent(image: np.ndarray, axis: int) -> int:
  """Rows (axis 0) or columns (1) where the white disc shows."""
  white = (image[..., 1] > 127)
  return int(white.any(axis=1 - axis).sum())


def _red(image: np.ndarray) -> np.ndarray:
  return (image[..., 0] > 127) & (image[..., 1] < 64)


def test_crop_keeps_the_aspect_and_the_centre():
  image = _disc(60, 120, radius=20)
  cropped = data.resize_square(image, 30, "crop")
  assert cropped.shape == (30, 30, 3) and cropped.dtype == np.uint8
  assert 19 <= _extent(cropped, 0) <= 21
  assert _extent(cropped, 0) == _extent(cropped, 1)  # still round
  assert not _red(cropped).any()  # the sides are cut off
  stretched = data.resize_square(image, 30, "stretch")
  assert 19 <= _extent(stretched, 0) <= 21 and 9 <= _extent(stretched, 1) <= 11
  assert _red(stretched[:, 0]).all() and _red(stretched[:, -1]).all()


def test_crop_of_a_portrait_image_and_of_grey_images():
  image = _disc(120, 60, radius=20)
  cropped = data.resize_square(image, 30, "crop")
  assert _extent(cropped, 0) == _extent(cropped, 1)
  assert _red(cropped[:, 0]).all()  # the full width is kept
  grey = image[..., 1:2]  # [H, W, 1]
  out = data.resize_square(grey, 30, "crop")
  assert out.shape == (30, 30, 1)
  np.testing.assert_array_equal(out[..., 0], cropped[..., 1])
  # already the stored size: unchanged
  np.testing.assert_array_equal(
      data.resize_square(grey[:30, :30], 30, "stretch"), grey[:30, :30])


def test_seed_001_split_of_pets_joins_train_and_test(fake_tfds):
  """train+test joined, the last 15% (rounded up) held out, no test set."""
  config = _config("oxford_iiit_pet", train_split="train+test",
                   validation="holdout", holdout_fraction=0.15, val_split="",
                   stored_size=40)
  dataset = data.load_dataset(config, with_test=True)
  assert (len(dataset.train), len(dataset.val)) == (68, 12)  # 80 = 60 + 20
  assert dataset.test is None
  raw = fake_tfds.raw("oxford_iiit_pet", "test")
  _, raw_labels = _raw_split(raw)
  np.testing.assert_array_equal(dataset.val.labels, raw_labels[-12:])
  assert dataset_spec.holdout_count(config, 7349) == 1103  # the seed's split


@pytest.mark.parametrize("overrides, needle", [
    ({"holdout_fraction": 1.0, "validation": "holdout"}, "holdout_fraction=1.0"),
    ({"val_split": ""}, "val_split=''"),
])
def test_bad_holdout_fraction_and_empty_val_split(fake_tfds, overrides, needle):
  with pytest.raises(UserError, match=re.escape(needle)):
    data.load_dataset(_config("mnist", **overrides))
