"""config.corruption (jaxtransfer/data/degrade.py): the Gaussian blur against
torchvision's gaussian_blur (an independent implementation) away from the
borders, and applied to every split that is read."""

import numpy as np
import pytest

from conftest import import_torchvision, needs_cifar10, tiny_config
from jaxtransfer import data
from jaxtransfer.data import degrade
from jaxtransfer.core.errors import UserError


def test_blur_matches_torchvision_inside_the_borders():
  torch = pytest.importorskip("torch")
  functional = import_torchvision().transforms.functional
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  sigma = 1.5
  ours = degrade.apply(images, f"gaussian_blur:{sigma}").astype(float)
  radius = int(4 * sigma + 0.5)  # scipy's truncate=4
  theirs = functional.gaussian_blur(
      torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2),
      kernel_size=2 * radius + 1, sigma=sigma).permute(0, 2, 3, 1).numpy()
  inside = (slice(None), slice(radius, -radius), slice(radius, -radius))
  # Rounded to uint8 on our side: within half a level (+ float noise).
  assert np.abs(ours[inside] - theirs[inside]).max() <= 0.5 + 1e-3
  # A blur keeps the mean and removes high frequencies.
  assert abs(ours.mean() - images.mean()) < 1.0
  assert np.abs(np.diff(ours, axis=1)).mean() < 0.5 * np.abs(
      np.diff(images.astype(float), axis=1)).mean()
  constant = np.full((1, 8, 8, 3), 77, np.uint8)
  np.testing.assert_array_equal(degrade.apply(constant, "gaussian_blur:2"),
                                constant)
  assert degrade.apply(images, "") is images


def test_grayscale_is_pils_luma_in_every_channel():
  from PIL import Image
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
  grey = degrade.apply(images, "grayscale")
  assert grey.shape == images.shape and grey.dtype == np.uint8
  for image, ours in zip(images, grey):
    theirs = np.asarray(Image.fromarray(image).convert("L"))
    # PIL rounds its fixed-point luma; ours rounds the float one.
    assert np.abs(ours[..., 0].astype(int) - theirs).max() <= 1
    assert (ours == ours[..., :1]).all()
  single = images[..., :1]
  assert degrade.apply(single, "grayscale") is single


@pytest.mark.parametrize("spec", ["gaussian_blur", "gaussian_blur:0",
                                  "gaussian_blur:x", "motion_blur:1",
                                  "grayscale:1"])
def test_bad_corruption_names_the_field(spec):
  with pytest.raises(UserError, match="config.corruption="):
    data.load_dataset(tiny_config(corruption=spec))


@needs_cifar10
def test_both_splits_are_blurred():
  plain = data.load_dataset(tiny_config(train_subset=20, val_subset=10))
  blurred = data.load_dataset(tiny_config(train_subset=20, val_subset=10,
                                          corruption="gaussian_blur:1.0"))
  for split in ("train", "val"):
    a, b = getattr(plain, split), getattr(blurred, split)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(
        b.images, degrade.apply(a.images, "gaussian_blur:1.0"))
    assert not np.array_equal(a.images, b.images)
