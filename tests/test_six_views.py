"""Seed 001's six views per image and RandomResizedCrop (jaxtransfer/data/views.py),
against torchvision.transforms.functional, and their place in training."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SMALL_NET, import_torchvision, needs_cifar10, tiny_config
from jaxtransfer.core import configlib, workdir as workdir_lib
from jaxtransfer.data import augment, views
from jaxtransfer.engine import steps, validation
from jaxtransfer.core.errors import UserError

SIX = augment.AugmentOptions(six_views=True)
# Against torchvision (measured, 32-50 px): crop + resize <= 1.8e-6 (both
# compute the source coordinate in float32, whose ulp near 32 is 2e-6 of a
# blend weight), with a colour op <= 3.4e-6 (saturation's factor up to 2
# doubles it).
TOLERANCE = 1e-5


def _image(height, width, seed=0):
  return np.asarray(jax.random.uniform(jax.random.key(seed),
                                       (height, width, 3)))


@functools.lru_cache(maxsize=None)
def _view_fn(options):
  return jax.jit(lambda k, im, v: views.view(k, im, v, options))


def _torch(image):
  import torch
  return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _numpy(tensor):
  return tensor.permute(1, 2, 0).numpy()


def _functional():
  import_torchvision()
  import torchvision.transforms.functional as F
  return F


# (33, 50): the centre's offsets (33 - 28) / 2 = 2.5 and (50 - 43) / 2 = 3.5
# round half to even (Python's round, torchvision's center_crop) to 2 and 4
@pytest.mark.parametrize("height,width", [(32, 32), (33, 50)])
def test_view_0_is_the_image_and_view_1_torchvisions_centre_crop_flipped(
    height, width):
  F = _functional()
  image = _image(height, width)
  np.testing.assert_array_equal(
      np.asarray(_view_fn(SIX)(jax.random.key(0), image, 0)), image)
  # the seed's crop side int(h * 0.86); the box from torchvision's center_crop
  crop = [int(height * 0.86), int(width * 0.86)]
  expected = F.hflip(F.resize(F.center_crop(_torch(image), crop),
                              [height, width], antialias=False))
  ours = np.asarray(_view_fn(SIX)(jax.random.key(0), image, 1))
  np.testing.assert_allclose(ours, _numpy(expected), rtol=0, atol=TOLERANCE)
  assert np.abs(ours - image).max() > 0.1


# (33, 50): the centre's offsets (33 - 28) / 2 = 2.5 and (50 - 43) / 2 = 3.5
# round half to even (Python's round, torchvision's center_crop) to 2 and 4
@pytest.mark.parametrize("height,width", [(32, 32), (33, 50)])
def test_views_2_to_5_are_the_corners_with_their_colour_op_and_a_random_flip(
    height, width):
  F = _functional()
  image = _image(height, width, seed=1)
  h, w = int(height * 0.86), int(width * 0.86)
  corners = {2: (0, 0), 3: (0, width - w), 4: (height - h, 0),
             5: (height - h, width - w)}
  colour = {2: F.adjust_hue, 3: F.adjust_brightness, 4: F.adjust_saturation,
            5: F.adjust_contrast}
  flips = []
  for v, (top, left) in corners.items():
    for seed in range(4):
      key = jax.random.key(100 * v + seed)
      factor, flip = views.sample_view_params(key, v, SIX)
      low, high = views.view_colour_ranges(SIX)[v]
      assert low <= float(factor) <= high
      expected = colour[v](F.resized_crop(_torch(image), top, left, h, w,
                                          [height, width], antialias=False),
                           float(factor))
      if bool(flip):
        expected = F.hflip(expected)
      flips.append(bool(flip))
      np.testing.assert_allclose(np.asarray(_view_fn(SIX)(key, image, v)),
                                 _numpy(expected), rtol=0, atol=TOLERANCE,
                                 err_msg=f"view {v}, seed {seed}")
  assert 0 < sum(flips) < len(flips)  # both outcomes drawn


def test_views_are_deterministic_per_key_and_fresh_per_step():
  images = jnp.asarray(np.stack([_image(32, 32, seed=2)] * 6))
  every_view = jnp.arange(6)
  fn = jax.jit(lambda k, x, v: augment.augment_batch(k, x, SIX, v))
  key = jax.random.key(3)
  step0 = np.asarray(fn(jax.random.fold_in(key, 0), images, every_view))
  np.testing.assert_array_equal(
      step0, np.asarray(fn(jax.random.fold_in(key, 0), images, every_view)))
  step1 = np.asarray(fn(jax.random.fold_in(key, 1), images, every_view))
  # views 0 and 1 have no random part; 2-5 draw new factors every step
  np.testing.assert_array_equal(step0[:2], step1[:2])
  for v in range(2, 6):
    assert not np.allclose(step0[v], step1[v]), v


def test_views_keep_the_draws_of_the_other_augmentations():
  """The view has its own key: view 0 + hflip flips exactly as hflip alone."""
  images = jax.random.uniform(jax.random.key(4), (16, 32, 32, 3))
  key = jax.random.key(5)
  alone = jax.jit(lambda k, x: augment.augment_batch(
      k, x, augment.AugmentOptions(hflip=True)))(key, images)
  with_views = jax.jit(lambda k, x: augment.augment_batch(
      k, x, augment.AugmentOptions(hflip=True, six_views=True),
      jnp.zeros(16, jnp.int32)))(key, images)
  np.testing.assert_array_equal(np.asarray(alone), np.asarray(with_views))


def test_an_epoch_of_6n_holds_every_image_view_pair_once():
  num_images, batch = 4, 8
  assert SIX.views_per_epoch == 6
  steps_per_epoch = num_images * 6 // batch
  order = steps.epoch_order(jax.random.key(6), 0, num_images * 6,
                            steps_per_epoch * batch)
  pairs = []
  for position in range(steps_per_epoch):
    images, views_ = steps.epoch_sources(
        order[position * batch:(position + 1) * batch], SIX.views_per_epoch)
    pairs += list(zip(np.asarray(images).tolist(), np.asarray(views_).tolist()))
  assert sorted(pairs) == [(i, v) for i in range(num_images) for v in range(6)]
  assert pairs != sorted(pairs)  # shuffled together
  # a random view per image instead: N per epoch, every view drawn
  random_view = dataclasses.replace(SIX, six_views_epoch=False)
  assert random_view.views_per_epoch == 1
  assert steps.epoch_sources(order, 1) == (order, None)
  drawn = jax.jit(jax.vmap(views.sample_view))(
      jax.random.split(jax.random.key(7), 600))
  counts = np.bincount(np.asarray(drawn), minlength=6)
  assert len(counts) == 6 and counts.min() > 60


def test_random_resized_crop_boxes_follow_torchvisions_rules():
  keys = jax.random.split(jax.random.key(8), 2000)
  height, width, scale, ratio = 24, 40, (0.08, 1.0), (3 / 4, 4 / 3)
  boxes = np.asarray(jax.jit(jax.vmap(lambda k: views.sample_resized_crop_box(
      k, height, width, scale, ratio)))(keys))
  top, left, h, w = boxes.T
  assert np.all((h >= 1) & (w >= 1) & (top >= 0) & (left >= 0))
  assert np.all((top + h <= height) & (left + w <= width))
  area = height * width
  # rounding of w and h to integers: the bounds up to half a pixel
  assert np.all((w + 0.5) * (h + 0.5) >= scale[0] * area)
  assert np.all((w - 0.5) * (h - 0.5) <= scale[1] * area)
  assert np.all((w + 0.5) / (h - 0.5) >= ratio[0])
  assert np.all((w - 0.5) / (h + 0.5) <= ratio[1])
  assert len(set(map(tuple, boxes))) > 1000 and top.max() > 0 and left.max() > 0
  # nothing fits (w / h >= 2.5 at >= 90% of a square): the fallback, the
  # central crop clamped to the ratio: w = 32, h = round(32 / 2.5) = 13
  fallback = np.asarray(jax.jit(jax.vmap(lambda k: views.sample_resized_crop_box(
      k, 32, 32, (0.9, 1.0), (2.5, 3.0))))(keys[:50]))
  assert np.all(fallback == [(32 - 13) // 2, 0, 13, 32])


def test_random_resized_crop_is_torchvisions_resized_crop_of_the_box():
  F = _functional()
  image = _image(24, 40, seed=9)
  crop = jax.jit(lambda k, im: views.random_resized_crop(k, im))
  box_of = jax.jit(lambda k: views.sample_resized_crop_box(
      k, 24, 40, (0.08, 1.0), (3 / 4, 4 / 3)))
  for seed in range(6):
    key = jax.random.key(seed)
    top, left, h, w = (int(x) for x in box_of(key))
    expected = F.resized_crop(_torch(image), top, left, h, w, [24, 40],
                              antialias=False)
    np.testing.assert_allclose(np.asarray(crop(key, image)), _numpy(expected),
                               rtol=0, atol=TOLERANCE, err_msg=str(seed))


@pytest.mark.parametrize("field,value", [
    ("augment.six_views_crop", 0.0), ("augment.six_views_crop", 1.5),
    ("augment.rrc_scale", (0.5, 0.2)), ("augment.rrc_ratio", (0.0, 1.0)),
    ("augment.six_views_hue", (0.0, 0.6)),
    ("augment.six_views_saturation", (-0.1, 1.0))])
def test_bad_values_name_their_field(field, value):
  with pytest.raises(UserError, match=f"config.{field}="):
    validation.validate(tiny_config(**{field: value}))


def test_old_configs_mean_no_views_and_the_same_run():
  config = tiny_config()
  old = configlib.to_dict(config)
  for name in augment.NEWER_FIELDS:
    del old["augment"][name]
  assert workdir_lib.identity_changes(old, configlib.to_dict(config)) == []
  import ml_collections
  options = augment.AugmentOptions.from_config(
      ml_collections.ConfigDict(old["augment"]))
  assert options == augment.AugmentOptions() and not options.any
  assert options.views_per_epoch == 1
  assert augment.AugmentOptions(random_resized_crop=True).any
  assert augment.AugmentOptions(six_views=True).any
  with pytest.raises(UserError, match="six_views_epoch"):
    validation.validate(tiny_config(**{"augment.six_views": True},
                                   adversarial="fgsm_rs:8/255:10/255"))


@needs_cifar10
def test_training_on_six_views_runs_an_epoch_of_6n(tmp_path):
  from jaxtransfer.engine import training
  config = tiny_config(**{"augment.six_views": True,
                          "augment.random_resized_crop": True},
                       train_subset=40, num_epochs=1, freeze="head",
                       **SMALL_NET)
  records = training.train_and_evaluate(config, str(tmp_path / "run"))
  record = records[-1]
  assert record["features_cached"] is False  # (a frozen body would cache)
  assert record["train_examples"] == 40 and record["train_views_per_image"] == 6
  assert record["step"] == 40 * 6 // config.batch_size == 7
  # what --mode=eval reconstructs the steps per epoch from
  assert (record["train_examples"] * augment.views_per_epoch(config.augment)
          // config.batch_size) == record["step"]
  assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
  assert 0.0 <= record["val_accuracy"] <= 1.0
  from jaxtransfer.engine import experiment
  result = experiment.evaluate(config, str(tmp_path / "run"))[0]
  assert result["val_accuracy"] == record["val_accuracy"]
