"""Properties of the on-device augmentation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtransfer.data import augment
from jaxtransfer.engine import run_setup

OPTIONS_ALL = augment.AugmentOptions(hflip=True, vflip=True, rotate=True)

# An eager draw's values, bit for bit, compiled once per shape at the
# run-once level instead of XLA's default (tests/model_init.py says why).
_uniform = jax.jit(jax.random.uniform, static_argnums=1,
                   compiler_options=run_setup.RUN_ONCE)


def _images(n=16, size=32, seed=0):
  return _uniform(jax.random.key(seed), (n, size, size, 3))


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


# ---------------------------------------------------------------- colour jitter
# Against torchvision.transforms.functional on float tensors (seed 003's
# ColorJitter). Measured differences: brightness 0 (bit-identical),
# contrast/saturation <= 2e-7 (float rounding of the blend), hue <= 1.3e-6
# (dm-pix's piecewise-linear HSV -> RGB vs torchvision's sextant table).

COLOUR_TOLERANCE = {"brightness": 1e-6, "contrast": 1e-6, "saturation": 1e-6,
                    "hue": 5e-6}
COLOUR_FACTORS = {"brightness": (0.0, 0.3, 1.0, 1.7),
                  "contrast": (0.0, 0.5, 1.0, 1.6),
                  "saturation": (0.0, 0.5, 1.0, 1.8),
                  "hue": (-0.5, -0.23, 0.0, 0.1, 0.37, 0.5)}


def _colour_images(channels=3):
  """Random images, with a grey one, saturated/black rows and rows where two
  channels tie (the edge cases of the blends and of the HSV conversion)."""
  images = np.array(_images(8, size=16, seed=11))
  images[0] = images[0, :, :, :1]
  images[1, :4], images[1, 4:8] = 1.0, 0.0
  for row, (a, b) in enumerate([(0, 1), (1, 2), (0, 2)]):
    images[2, row, :, b] = images[2, row, :, a]
  return images[..., :channels]


def _torch_functional():
  from conftest import import_torchvision
  import_torchvision()
  import torchvision.transforms.functional as F
  return F


def _torchvision(images, ops):
  """torchvision's functional ops [(name, factor), ...] in order, on NHWC."""
  import torch
  F = _torch_functional()
  out = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
  for name, factor in ops:
    out = torch.stack([getattr(F, f"adjust_{name}")(x, float(factor))
                       for x in out])
  return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", augment.COLOUR_OPS)
@pytest.mark.parametrize("channels", [3, 1])
def test_colour_ops_match_torchvision(name, channels):
  images = _colour_images(channels)
  op = jax.jit(jax.vmap(getattr(augment, f"adjust_{name}"), (0, None)))
  for factor in COLOUR_FACTORS[name]:
    ours = np.asarray(op(images, factor))
    np.testing.assert_allclose(ours, _torchvision(images, [(name, factor)]),
                               rtol=0, atol=COLOUR_TOLERANCE[name],
                               err_msg=f"{name}={factor}")
    assert ours.min() >= 0 and ours.max() <= 1
  changed = np.asarray(op(images, COLOUR_FACTORS[name][1]))
  # (on one channel saturation and hue are the identity, as torchvision)
  assert np.array_equal(changed, images) == (
      channels == 1 and name in ("saturation", "hue"))


def test_contrast_blends_with_the_grayscale_mean_not_per_channel():
  image = np.zeros((4, 4, 3), np.float32)
  image[..., 0] = 1.0  # pure red: grayscale 0.2989 everywhere
  out = np.asarray(augment.adjust_contrast(jnp.asarray(image), 0.0))
  np.testing.assert_allclose(out, 0.2989, atol=1e-6)


def _jitter_options(**amounts):
  return augment.AugmentOptions(**amounts)


ALL_COLOUR = _jitter_options(brightness=0.4, contrast=0.4, saturation=0.4,
                             hue=0.1)


def test_colour_jitter_is_torchvisions_ops_in_the_drawn_order():
  """Each image: the ops of `sample_colour`'s permutation with its factors,
  applied by torchvision, give what `colour_jitter` gives."""
  images = _colour_images()
  keys = jax.random.split(jax.random.key(12), len(images))
  jitter = jax.jit(jax.vmap(lambda k, im: augment.colour_jitter(k, im,
                                                                ALL_COLOUR)))
  out = np.asarray(jitter(keys, images))
  orders, factors = jax.vmap(lambda k: augment.sample_colour(k, ALL_COLOUR))(keys)
  orders, factors = np.asarray(orders), np.asarray(factors)
  assert len({tuple(o) for o in orders}) > 1  # several orders were drawn
  for i, image in enumerate(images):
    ops = [(augment.COLOUR_OPS[k], factors[i, k]) for k in orders[i]]
    np.testing.assert_allclose(out[i], _torchvision(image[None], ops)[0],
                               rtol=0, atol=1e-5)


def test_colour_jitter_under_jit_and_vmap_equals_eager():
  """(dm-pix's rgb_to_hsv picks the hue's sector by float equality, which
  fails after XLA's fusion: a few pixels off by up to 0.5 under jit(vmap).)"""
  images = _colour_images()
  jitter = lambda k, im: augment.colour_jitter(k, im, ALL_COLOUR)
  for seed in range(4):
    keys = jax.random.split(jax.random.key(seed), len(images))
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(jitter))(keys, images)),
                               np.asarray(jax.vmap(jitter)(keys, images)),
                               rtol=0, atol=1e-5)


def test_colour_jitter_order_matters_and_covers_every_permutation():
  keys = jax.random.split(jax.random.key(13), 2000)
  orders = np.asarray(jax.vmap(
      lambda k: augment.sample_colour(k, ALL_COLOUR)[0])(keys))
  assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
  assert len({tuple(o) for o in orders}) == 24
  two = _jitter_options(contrast=0.5, hue=0.2)
  orders = np.asarray(jax.vmap(lambda k: augment.sample_colour(k, two)[0])(keys))
  assert 0.4 < np.mean(orders[:, 0] == 0) < 0.6  # either op first, half each
  # the order changes the result (contrast's mean moves with the hue)
  image = _colour_images()[2]
  hue_first = _torchvision(image[None], [("hue", 0.2), ("contrast", 1.5)])
  contrast_first = _torchvision(image[None], [("contrast", 1.5), ("hue", 0.2)])
  assert np.abs(hue_first - contrast_first).max() > 1e-3


def test_colour_factors_stay_in_their_ranges():
  options = _jitter_options(brightness=0.3, contrast=1.5, saturation=0.8,
                            hue=0.25)
  keys = jax.random.split(jax.random.key(14), 4000)
  factors = np.asarray(jax.vmap(
      lambda k: augment.sample_colour(k, options)[1])(keys))
  for column, (low, high) in enumerate([(0.7, 1.3), (0.0, 2.5), (0.2, 1.8),
                                        (-0.25, 0.25)]):
    values = factors[:, column]
    assert values.min() >= low and values.max() <= high
    # spread over the range: both ends nearly reached
    assert values.min() < low + 0.02 * (high - low)
    assert values.max() > high - 0.02 * (high - low)


def test_colour_factor_of_one_op_does_not_depend_on_the_others():
  key = jax.random.key(15)
  alone = augment.sample_colour(key, _jitter_options(contrast=0.5))[1]
  together = augment.sample_colour(key, ALL_COLOUR)[1]
  assert float(alone[1]) == float(
      augment.sample_colour(key, _jitter_options(contrast=0.5, hue=0.3))[1][1])
  assert float(alone[1]) != float(together[1])  # (other range, same draw)


def test_every_colour_op_off_is_the_identity():
  images = _images()
  off = augment.AugmentOptions(brightness=0.0, contrast=0.0, saturation=0.0,
                               hue=0.0)
  assert not off.any and not off.colour
  assert augment.augment_batch(jax.random.key(0), images, off) is images
  for name in augment.COLOUR_OPS:
    options = augment.AugmentOptions(**{name: 0.2})
    assert options.any and options.colour


@pytest.mark.parametrize("options", [
    _jitter_options(brightness=0.4), _jitter_options(hue=0.1), ALL_COLOUR,
    augment.AugmentOptions(hflip=True, brightness=0.3, saturation=0.3)])
def test_colour_jitter_is_deterministic_per_key_and_per_image(options):
  images = _images(8).at[1].set(_images(8)[0])  # the same image twice
  fn = jax.jit(lambda k, x: augment.augment_batch(k, x, options))
  a = np.asarray(fn(jax.random.key(16), images))
  np.testing.assert_array_equal(a, np.asarray(fn(jax.random.key(16), images)))
  assert not np.allclose(a, np.asarray(fn(jax.random.key(17), images)))
  assert not np.allclose(a, np.asarray(images))
  assert a.min() >= 0 and a.max() <= 1
  # each image's jitter is its own (not one draw for the batch)
  assert not np.array_equal(a[0], a[1])


def test_colour_jitter_keeps_the_flip_and_rotation_draws():
  """Colour jitter has its own key: turning it on leaves the geometry of
  existing runs' augmentation as it was (the first op, colour, is
  per-pixel here: brightness, which commutes with flips)."""
  images = _images(8)
  geometry = augment.AugmentOptions(hflip=True, vflip=True)
  both = dataclasses.replace(geometry, brightness=0.5)
  key = jax.random.key(18)
  flipped = np.asarray(augment.augment_batch(key, images, geometry))
  jittered = np.asarray(augment.augment_batch(key, images, both))
  # brightness scales each image by one factor: where nothing clipped, the
  # jittered image over the flipped one is that factor
  for i in range(len(images)):
    mask = (jittered[i] < 1) & (flipped[i] > 0.05)
    ratios = jittered[i][mask] / flipped[i][mask]
    assert mask.mean() > 0.3 and np.ptp(ratios) < 1e-4, i


def test_from_config_reads_colour_fields_and_tolerates_old_configs():
  import ml_collections
  old = ml_collections.ConfigDict(dict(
      hflip=True, vflip=False, rotate=False, rotation_degrees=(10.0, 20.0),
      rotation_both_directions=True))
  options = augment.AugmentOptions.from_config(old)
  assert options == augment.AugmentOptions(hflip=True)
  new = ml_collections.ConfigDict(dict(old.to_dict(), brightness=0.4,
                                       contrast=0.0, saturation=0.2, hue=0.1))
  options = augment.AugmentOptions.from_config(new)
  assert (options.brightness, options.contrast, options.saturation,
          options.hue) == (0.4, 0.0, 0.2, 0.1)
  assert augment.enabled_colour_ops(options) == ("brightness", "saturation",
                                                 "hue")
