"""A training epoch on each mocked dataset, through the whole loop: MNIST
into LeNet (one channel) and into AlexNet (grey to RGB), STL-10's 96 px
images into seed 004's AlexNet-BN at 32 px, Oxford-IIIT Pet's variable-size
images resized on the host into torchvision's AlexNet with the 'dataset'
normalisation. The records are fake (tfds.testing.mock_data), so these check
shapes, channels and bookkeeping, not accuracy."""


import numpy as np
import pytest

from conftest import tiny_config
from jaxtransfer import data
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import training
from test_datasets import fake_tfds, metadata_dir  # noqa: F401  (fixtures)


def _train(workdir, **overrides):
  config = tiny_config(**{"train_subset": 0, "val_subset": 0, "num_epochs": 1,
                          "batch_size": 16, "eval_batch_size": 16,
                          **overrides})
  history = training.train_and_evaluate(config, str(workdir))
  params, _ = checkpoints.load_params(str(workdir))
  return history, params


def _first_kernel(params):
  return np.asarray(params["body"]["conv1"]["kernel"])


@pytest.mark.parametrize("model, image_size, in_channels", [
    ("lenet", 28, 1), ("alexnet", 64, 3)])
def test_mnist_trains_a_step(fake_tfds, tmp_path, model, image_size,
                             in_channels):
  history, params = _train(tmp_path, dataset="mnist", model=model,
                           image_size=image_size, optimizer="sgd")
  record = history[-1]
  assert record["train_examples"] == 200 and record["val_examples"] == 30
  assert np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])
  # The model took the channels it is built for (MNIST has one).
  assert _first_kernel(params).shape[-2] == in_channels
  assert record["step"] == 200 // 16


def test_stl10_is_downsized_for_alexnet_bn(fake_tfds, tmp_path):
  history, params = _train(tmp_path, dataset="stl10", model="alexnet_bn",
                           image_size=32, classes=("cat", "dog", "monkey"),
                           batch_size=4)
  record = history[-1]
  assert np.isfinite(record["val_loss"])
  assert np.asarray(params["head"]["fc4"]["kernel"]).shape[-1] == 3
  stats = checkpoints.load_batch_stats(str(tmp_path))
  assert "bn1" in stats["body"]


def test_pets_resized_on_the_host_train_torchvision_alexnet(fake_tfds, tmp_path):
  history, params = _train(
      tmp_path, dataset="oxford_iiit_pet", model="alexnet_torchvision",
      stored_size=72, image_size=64, normalization="dataset", freeze="last",
      cache_features=False)
  record = history[-1]
  assert np.isfinite(record["val_loss"])
  assert np.asarray(params["head"]["fc8"]["kernel"]).shape == (1, 4096, 37)
  # The 'dataset' statistics are the training images' own, recorded.
  loaded = data.load_dataset(tiny_config(
      dataset="oxford_iiit_pet", train_subset=0, val_subset=0,
      stored_size=72, normalization="dataset"))
  images = loaded.train.images.astype(np.float64) / 255.0
  np.testing.assert_allclose(record["input_mean"],
                             images.mean(axis=(0, 1, 2)), rtol=1e-6)
  np.testing.assert_allclose(record["input_std"],
                             images.std(axis=(0, 1, 2)), rtol=1e-6)
  # freeze="last": only fc8 trains.
  assert record["trainable_parameters"] == 4096 * 37 + 37
