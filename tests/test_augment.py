"""Properties of the on-device augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtransfer import augment

OPTIONS_ALL = augment.AugmentOptions(hflip=True, vflip=True, rotate=True)


def _images(n=16, size=32, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, 3))


@pytest.mark.parametrize("options", [
    augment.AugmentOptions(hflip=True),
    augment.AugmentOptions(vflip=True),
    augment.AugmentOptions(hflip=True, vflip=True),
])
def test_flipping_twice_with_the_same_key_is_the_identity(options):
  images, key = _images(), jax.random.key(1)
  once = augment.augment_batch(key, images, options)
  twice = augment.augment_batch(key, once, options)
  np.testing.assert_array_equal(np.asarray(twice), np.asarray(images))
  assert not np.array_equal(np.asarray(once), np.asarray(images))


def test_horizontal_flip_either_keeps_or_mirrors_each_image():
  images = _images(64)
  out = np.asarray(augment.augment_batch(
      jax.random.key(2), images, augment.AugmentOptions(hflip=True)))
  images = np.asarray(images)
  kept = [np.array_equal(o, i) for o, i in zip(out, images)]
  mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
  assert all(k or m for k, m in zip(kept, mirrored))
  assert 10 < sum(mirrored) < 54  # both outcomes, about half each


def test_rotation_by_zero_is_the_identity():
  image = _images(1)[0]
  np.testing.assert_allclose(np.asarray(augment.rotate(image, 0.0)),
                             np.asarray(image), atol=1e-6)


def test_rotation_by_90_degrees_is_counter_clockwise():
  image = _images(1, size=33)[0]  # odd size: the centre is a pixel
  rotated = np.asarray(augment.rotate(image, 90.0))
  expected = np.rot90(np.asarray(image), k=1)
  # The border may sample a hair outside the image (cos 90 deg is ~6e-17
  # in float) and get the fill value; the interior must match exactly.
  np.testing.assert_allclose(rotated[1:-1, 1:-1], expected[1:-1, 1:-1],
                             atol=1e-5)


def test_same_key_same_output_other_key_other_output():
  images = _images()
  a = augment.augment_batch(jax.random.key(3), images, OPTIONS_ALL)
  b = augment.augment_batch(jax.random.key(3), images, OPTIONS_ALL)
  c = augment.augment_batch(jax.random.key(4), images, OPTIONS_ALL)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a), np.asarray(c))


def test_rotation_angles_stay_in_the_configured_range_with_both_signs():
  options = augment.AugmentOptions(rotate=True, rotation_degrees=(10.0, 20.0))
  keys = jax.random.split(jax.random.key(5), 2000)
  angles = np.asarray(jax.vmap(
      lambda k: augment.sample_rotation(k, options))(keys))
  assert np.all((np.abs(angles) >= 10.0) & (np.abs(angles) <= 20.0))
  assert 0.4 < np.mean(angles > 0) < 0.6
  one_way = augment.AugmentOptions(rotate=True, rotation_degrees=(10.0, 20.0),
                                   rotation_both_directions=False)
  angles = np.asarray(jax.vmap(
      lambda k: augment.sample_rotation(k, one_way))(keys))
  assert np.all(angles >= 10.0)


def test_no_augmentation_returns_the_input_untouched():
  images = _images()
  out = augment.augment_batch(jax.random.key(0), images,
                              augment.AugmentOptions())
  assert out is images


def test_augmentation_is_deterministic_under_jit():
  images = _images()
  fn = jax.jit(lambda k, x: augment.augment_batch(k, x, OPTIONS_ALL))
  np.testing.assert_array_equal(
      np.asarray(fn(jax.random.key(7), images)),
      np.asarray(augment.augment_batch(jax.random.key(7), images, OPTIONS_ALL)))
