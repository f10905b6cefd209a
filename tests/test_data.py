"""Reading CIFAR-10 through TFDS and preparing it on the device."""

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import needs_cifar10, tiny_config
from jaxtransfer import data
from jaxtransfer.errors import UserError


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
