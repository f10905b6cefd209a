"""Adversarial training (config.adversarial): the train step attacks the
augmented batch on the current model (inference mode, its random start from
the step's key) and trains on the result; the feature cache turns off; a
frozen body stays frozen while the attack reaches the pixels through it."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import needs_cifar10, tiny_config
from jaxtransfer import data
from jaxtransfer.core import configlib
from jaxtransfer.data import augment
from jaxtransfer.engine import attacks, freezing, steps, training, validation
from jaxtransfer.core.errors import UserError

BATCH = 8
LENET = dict(model="lenet", image_size=28)  # stored 32x32x3 -> 28x28x1


@functools.lru_cache(maxsize=None)
def _cached_setup(adversarial, batch, overrides):
  config = tiny_config(adversarial=adversarial, batch_size=batch,
                       **dict(overrides))
  setup, init_state = training.build_setup(config, 10, steps_per_epoch=4,
                                           batch_size=batch)
  keys = training.RunKeys.from_seeds([0])
  return (setup, jax.jit(init_state)(keys.init), keys,
          jax.jit(training.make_train_step(setup)))


def _setup(adversarial, batch=BATCH, **overrides):
  """(setup, a one-seed stacked state as the loop holds it, keys, the jitted
  step), built once per config (the steps return new states)."""
  overrides.setdefault("cache_features", False)
  return _cached_setup(adversarial, batch, tuple(sorted(overrides.items())))


def _fake_data(n=4 * BATCH, seed=0):
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  return images, labels, jnp.asarray(rng.permutation(n))


def _one(tree):
  return jax.tree.map(lambda x: x[0], tree)


def _manual_adversarial_pixels(setup, state, images, labels, order, key):
  """What the first step should train on, from the public pieces: the
  batch, augmented with the step's key, attacked by attacks.perturb on the
  model in inference mode with the random start from fold_in(step key, 2)."""
  params, batch_stats = _one(state.params), _one(state.batch_stats)
  step_key = jax.random.fold_in(key[0], 0)  # step 0
  indices = order[:setup.batch_size]
  pixels = augment.augment_batch(step_key, data.to_unit_float(images[indices]),
                                 setup.augment)

  def loss_fn(x, y):
    inputs = data.to_model_input(x, setup.image_size, setup.mean, setup.std,
                                 channels=setup.channels)
    logits, _ = steps.forward(setup, params, batch_stats, inputs, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  adversarial = jax.jit(attacks.perturb, static_argnums=(0, 1))(
      setup.adversarial, loss_fn, pixels, labels[indices],
      jax.random.fold_in(step_key, 2))
  return pixels, adversarial, jax.jit(loss_fn)


def test_adversarial_step_is_a_plain_step_on_the_attacked_batch():
  """With dropout, flips and PGD from a random start: the step equals an
  ordinary step (same dropout key) on the batch that attacks.perturb makes
  of the flipped images against the model in inference mode (no dropout;
  BatchNorm would use, and keep, its running statistics: the same
  steps.forward(train=False)). (LeNet: AlexNet-BN takes over a minute to
  compile here.)"""
  setup, state, keys, step = _setup("pgd:8/255:2/255:3", dropout=0.5,
                                    **{"augment.hflip": True}, **LENET)
  assert setup.adversarial == attacks.parse_attack("pgd:8/255:2/255:3")
  images, labels, order = _fake_data()
  stepped = step(state, images, labels, order[None], keys.augment)

  clean, adversarial, loss_fn = _manual_adversarial_pixels(
      setup, state, images, labels, order, keys.augment)
  batch_labels = labels[order[:BATCH]]
  # the attack raised the loss of the model it attacked
  assert loss_fn(adversarial, batch_labels) > loss_fn(clean, batch_labels)
  plain = dataclasses.replace(setup, adversarial=None,
                              augment=augment.AugmentOptions())
  plain_step = jax.jit(training.make_train_step(plain))
  by_hand = plain_step(state, adversarial * 255.0, batch_labels,
                       jnp.arange(BATCH)[None], keys.augment)
  for name in ("params", "batch_stats", "metric_sums"):
    for got, want in zip(jax.tree.leaves(getattr(stepped, name)),
                         jax.tree.leaves(getattr(by_hand, name))):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5,
                                 atol=1e-6, err_msg=name)
  # ... which is not the step on the clean (flipped) batch
  on_clean = plain_step(state, clean * 255.0, batch_labels,
                        jnp.arange(BATCH)[None], keys.augment)
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
      jax.tree.leaves(stepped.params), jax.tree.leaves(on_clean.params))]
  assert max(moved) > 1e-4


def test_frozen_body_stays_frozen_and_the_attack_reaches_the_pixels():
  setup, state, keys, step = _setup("fgsm_rs:8/255:10/255", freeze="head",
                                    cache_features=True, **LENET)
  # a frozen body and no augmentation would cache features: not under attack
  assert not setup.feature_cache
  assert training.build_setup(
      tiny_config(freeze="head", cache_features=True, batch_size=BATCH,
                  **LENET), 10, 4, BATCH)[0].feature_cache
  images, labels, order = _fake_data()
  # the input gradient reaches the pixels through the frozen body: FGSM (no
  # random start: it moves a pixel only where the gradient is not 0) moves
  # most pixels by eps; the configured fgsm_rs stays in the ball and [0, 1]
  clean = data.to_unit_float(images[:BATCH])
  variables = _one(state.params), _one(state.batch_stats)
  for text in ("fgsm:8/255", setup.adversarial.name):
    attack = attacks.parse_attack(text)
    perturbed = np.asarray(jax.jit(functools.partial(
        attacks.adversarial_batch, setup, attack))(
            *variables, clean, labels[:BATCH], jax.random.key(3)))
    moved = np.abs(perturbed - np.asarray(clean))
    assert moved.max() <= attack.eps + 1e-6, text
    assert perturbed.min() >= 0 and perturbed.max() <= 1, text
    assert np.mean(moved > attack.eps / 2) > 0.5, text
  # training: the body is bit-identical, the head moves
  before = {k: np.asarray(v) for k, v in freezing.named_leaves(state.params)}
  for _ in range(3):
    state = step(state, images, labels, order[None], keys.augment)
  for name, value in freezing.named_leaves(state.params):
    if name.startswith("body/"):
      assert np.asarray(value).tobytes() == before[name].tobytes(), name
    else:
      assert not np.array_equal(np.asarray(value), before[name]), name


def test_two_runs_are_bit_identical_and_the_key_matters():
  """Random start (pgd) and colour jitter: N steps twice with the same keys
  give the same bits; another augmentation key, other params."""
  options = {"augment.brightness": 0.3, "augment.hue": 0.05}
  images, labels, order = _fake_data()

  def run(seed_key):
    _, state, keys, step = _setup("pgd:8/255:2/255:2", **LENET, **options)
    augment_key = keys.augment if seed_key is None else seed_key
    for _ in range(4):
      state = step(state, images, labels, order[None], augment_key)
    return state

  first, second = run(None), run(None)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
  other = run(training.RunKeys.from_seeds([1]).augment)
  assert not np.array_equal(np.asarray(first.params["head"]["fc3"]["kernel"]),
                            np.asarray(other.params["head"]["fc3"]["kernel"]))


def test_off_by_default_and_for_configs_without_the_fields():
  config = tiny_config(**LENET)
  setup, _ = training.build_setup(config, 10, steps_per_epoch=4,
                                  batch_size=BATCH)
  assert setup.adversarial is None
  old = configlib.to_dict(config)  # a config from before these fields
  del old["adversarial"]
  for field in augment.COLOUR_OPS:
    del old["augment"][field]
  old = ml_collections.ConfigDict(old)
  setup, _ = training.build_setup(old, 10, steps_per_epoch=4, batch_size=BATCH)
  assert setup.adversarial is None and not setup.augment.any


@pytest.mark.parametrize("overrides, message", [
    (dict(adversarial="pgd:2:1:1"),
     r"^config\.adversarial='pgd:2:1:1': eps=2 is outside \(0, 1\]$"),
    (dict(adversarial="nonsense"),
     r"^config\.adversarial='nonsense': unknown kind 'nonsense'"),
    (dict(adversarial="fgsm"), r"^config\.adversarial='fgsm': does not parse"),
    ({"augment.hue": 0.7}, r"^config\.augment\.hue=0\.7: must be in \[0, 0\.5\]"),
    ({"augment.hue": -0.1}, r"^config\.augment\.hue=-0\.1: must be in"),
    ({"augment.brightness": -0.2}, r"^config\.augment\.brightness=-0\.2: "),
    ({"augment.contrast": float("inf")}, r"^config\.augment\.contrast=inf: "),
    ({"augment.saturation": float("nan")}, r"^config\.augment\.saturation=nan"),
])
def test_bad_values_name_the_field(overrides, message):
  with pytest.raises(UserError, match=message):
    validation.validate(tiny_config(**overrides))


def test_good_values_pass_validation():
  validation.validate(tiny_config(adversarial="pgd:8/255:2/255:7", **{
      "augment.brightness": 0.4, "augment.contrast": 2.0,
      "augment.saturation": 0.0, "augment.hue": 0.5}))


@needs_cifar10
def test_training_loop_on_cifar10_with_seed_003s_augmentation(tmp_path):
  """The real loop with seed 003's recipe in small (colour jitter, flips,
  fgsm_rs training, a frozen body) trains without the feature cache."""
  config = tiny_config(
      num_epochs=1, freeze="head", train_subset=160, val_subset=100,
      adversarial="fgsm_rs:8/255:10/255", **LENET,
      **{"augment.hflip": True, "augment.brightness": 0.2,
         "augment.saturation": 0.2})
  history = training.train_and_evaluate(config, str(tmp_path / "robust"))
  assert not history[-1]["features_cached"]
  assert np.isfinite(history[-1]["train_loss"])
  assert np.isfinite(history[-1]["val_loss"])
