"""Reading CIFAR-10 through TFDS and preparing it on the device."""

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import needs_cifar10, tiny_config
from jaxtransfer import data
from jaxtransfer.core.errors import UserError


@needs_cifar10
def test_train_subset_is_the_first_examples_of_each_class_balanced():
  dataset = data.load_dataset(tiny_config(train_subset=100, val_subset=50))
  assert dataset.num_classes == 10 and len(dataset.class_names) == 10
  assert dataset.train.images.shape == (100, 32, 32, 3)
  assert dataset.train.images.dtype == np.uint8
  assert np.bincount(dataset.train.labels, minlength=10).tolist() == [10] * 10
  assert np.bincount(dataset.val.labels, minlength=10).tolist() == [5] * 10
  # "first": the whole split's first examples of class c are the chosen ones.
  full = data.load_dataset(tiny_config(train_subset=0, val_subset=0,
                                       validation="holdout", holdout_size=49000))
  for c in range(10):
    expected = full.train.images[full.train.labels == c][:10]
    np.testing.assert_array_equal(dataset.train.images[dataset.train.labels == c],
                                  expected)


@needs_cifar10
def test_holdout_validation_is_the_tail_of_train_and_disjoint():
  config = tiny_config(train_subset=0, val_subset=0, validation="holdout",
                       holdout_size=49500)
  dataset = data.load_dataset(config)
  assert len(dataset.train) == 500 and len(dataset.val) == 49500
  assert dataset.val_name.startswith("holdout")
  train_rows = {img.tobytes() for img in dataset.train.images}
  overlap = sum(img.tobytes() in train_rows for img in dataset.val.images[:2000])
  assert overlap <= 2  # CIFAR-10 has a handful of exact duplicates at most


@needs_cifar10
def test_subset_larger_than_the_split_is_a_clear_error():
  with pytest.raises(UserError, match="subset of 20000 examples"):
    data.load_dataset(tiny_config(val_subset=20000))


def test_missing_dataset_names_data_dir_and_tfds_data_dir(tmp_path):
  config = tiny_config(data_dir=str(tmp_path / "no_such_dir"))
  with pytest.raises(UserError) as error:
    data.load_dataset(config)
  message = str(error.value)
  assert "no_such_dir" in message and "TFDS_DATA_DIR" in message
  assert "config.data_dir" in message


def test_model_input_is_upsampled_and_normalised():
  images = jnp.full((2, 32, 32, 3), 0.5)
  out = data.to_model_input(images, 128, (0.485, 0.456, 0.406),
                            (0.229, 0.224, 0.225))
  assert out.shape == (2, 128, 128, 3)
  expected = (0.5 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(np.asarray(out[0, 64, 64]), expected, rtol=1e-5)


def test_bilinear_upsampling_matches_half_pixel_interpolation():
  # 2 px -> 4 px along one axis; PyTorch align_corners=False gives these.
  row = jnp.asarray([0.0, 1.0]).reshape(1, 1, 2, 1) * jnp.ones((1, 2, 2, 3))
  out = data.to_model_input(row, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
  np.testing.assert_allclose(np.asarray(out[0, 0, :, 0]),
                             [0.0, 0.25, 0.75, 1.0], atol=1e-6)


@needs_cifar10
def test_split_strings_choose_what_is_read():
  dataset = data.load_dataset(tiny_config(train_split="train[:2000]",
                                          val_split="test[-300:]",
                                          train_subset=0, val_subset=0))
  assert len(dataset.train) == 2000 and len(dataset.val) == 300
  assert dataset.channels == 3 and dataset.test is None


@needs_cifar10
def test_classes_select_and_relabel_cifar10():
  import tensorflow_datasets as tfds

  dataset = data.load_dataset(tiny_config(
      train_split="train[:3000]", classes=("cat", "dog"), train_subset=0,
      val_subset=100))
  assert dataset.class_names == ("cat", "dog") and dataset.num_classes == 2
  assert set(dataset.train.labels.tolist()) == {0, 1}
  assert np.bincount(dataset.val.labels).tolist() == [50, 50]
  raw = tfds.data_source("cifar10", split="train[:3000]",
                         data_dir=data.resolve_data_dir(tiny_config()))
  examples = raw.__getitems__(list(range(3000)))
  for label, raw_label in ((0, 3), (1, 5)):  # cat is 3, dog 5 in CIFAR-10
    expected = np.stack([e["image"] for e in examples if e["label"] == raw_label])
    np.testing.assert_array_equal(
        dataset.train.images[dataset.train.labels == label], expected)
  assert len(dataset.train) == sum(e["label"] in (3, 5) for e in examples)


@needs_cifar10
def test_dataset_normalization_statistics():
  config = tiny_config(train_split="train[:1500]", train_subset=0,
                       normalization="dataset")
  dataset = data.load_dataset(config)
  pixels = dataset.train.images.reshape(-1, 3).astype(np.float64) / 255.0
  mean, std = dataset.pixel_stats
  np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-10)
  np.testing.assert_allclose(std, pixels.std(0), rtol=1e-10)
  assert data.normalization_constants(config, 3, dataset.pixel_stats) == (
      mean, std)
  grey_mean, grey_std = data.normalization_constants(config, 1,
                                                     dataset.pixel_stats)
  np.testing.assert_allclose(grey_mean, [np.dot(data.LUMA, mean)])
  np.testing.assert_allclose(grey_std, [np.dot(data.LUMA, std)])


@needs_cifar10
def test_bad_split_string_and_unknown_class_are_one_line_errors():
  with pytest.raises(UserError) as error:
    data.load_dataset(tiny_config(train_split="trian"))
  message = str(error.value)
  assert message.startswith("config.train_split='trian': ")
  assert "train (50000), test (10000)" in message and "\n" not in message
  with pytest.raises(UserError) as error:
    data.load_dataset(tiny_config(val_split="test[:120%]"))
  assert str(error.value).startswith("config.val_split='test[:120%]': ")
  assert "\n" not in str(error.value)
  with pytest.raises(UserError, match=r"^config.classes: 'dgo' is not a class "
                     r"of cifar10 \(did you mean 'dog'\?\)$"):
    data.load_dataset(tiny_config(classes=("cat", "dgo")))
  with pytest.raises(UserError, match=r"\(classes: airplane, automobile, bird"):
    data.load_dataset(tiny_config(classes=("zebra",)))


def test_normalization_constants_per_model_channel():
  imagenet = tiny_config(normalization="imagenet")
  assert data.normalization_constants(imagenet, 3) == (data.IMAGENET_MEAN,
                                                       data.IMAGENET_STD)
  (mean,), (std,) = data.normalization_constants(imagenet, 1)
  assert mean == pytest.approx(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406)
  assert std == pytest.approx(0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225)
  none = tiny_config(normalization="none")
  assert data.normalization_constants(none, 1) == ((0.0,), (1.0,))
  stats = ((0.2,), (0.3,))
  assert data.normalization_constants(tiny_config(normalization="dataset"), 3,
                                      stats) == ((0.2,) * 3, (0.3,) * 3)


def test_model_input_adapts_channels():
  rng = np.random.default_rng(0)
  grey = jnp.asarray(rng.random((2, 8, 8, 1)), jnp.float32)
  out = data.to_model_input(grey, 8, (0.0,) * 3, (1.0,) * 3, channels=3)
  assert out.shape == (2, 8, 8, 3)
  for c in range(3):
    np.testing.assert_array_equal(np.asarray(out[..., c]), np.asarray(grey[..., 0]))
  rgb = jnp.asarray(rng.random((2, 8, 8, 3)), jnp.float32)
  out = data.to_model_input(rgb, 8, (0.5,), (0.25,), channels=1)
  expected = (np.asarray(rgb) @ np.array([0.299, 0.587, 0.114]) - 0.5) / 0.25
  np.testing.assert_allclose(np.asarray(out[..., 0]), expected, atol=1e-5)
  assert out.shape == (2, 8, 8, 1)
  same = data.to_model_input(rgb, 8, (0.0,) * 3, (1.0,) * 3, channels=None)
  np.testing.assert_array_equal(np.asarray(same), np.asarray(rgb))
  # and with upsampling: grey upsampled then repeated == upsampled rgb of it
  up = data.to_model_input(grey, 16, (0.0,) * 3, (1.0,) * 3, channels=3)
  up_grey = data.to_model_input(grey, 16, (0.0,), (1.0,))
  np.testing.assert_allclose(np.asarray(up), np.repeat(np.asarray(up_grey), 3, -1))


def test_model_input_downsizes_with_antialiasing():
  # 96 px (STL-10) -> 32 px: a 1-px checkerboard averages out to grey, a
  # constant image stays constant.
  checker = (np.indices((96, 96)).sum(0) % 2).astype(np.float32)
  images = jnp.asarray(np.stack([checker, np.full((96, 96), 0.25)])[..., None])
  out = np.asarray(data.to_model_input(images, 32, (0.0,), (1.0,)))
  assert out.shape == (2, 32, 32, 1)
  np.testing.assert_allclose(out[0, 4:-4, 4:-4], 0.5, atol=0.02)
  np.testing.assert_allclose(out[1], 0.25, atol=1e-6)
