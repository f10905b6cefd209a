"""Freezing regimes: frozen weights stay bit-identical, carry no optimizer
state, and cost no backward pass (counted in the compiled step)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from jaxtransfer.engine import freezing, run_setup, training
from jaxtransfer.core.errors import UserError

BODY = [f"body/conv{i}" for i in range(1, 6)]
HEAD = ["head/fc1", "head/fc2"]
TRAINABLE_LAYERS = {
    "none": BODY + HEAD,
    "head": HEAD,
    "head+conv5": ["body/conv5"] + HEAD,
}


def _setup(freeze, batch=8, **overrides):
  """A one-seed stacked state, as the training loop holds it. The steps see
  images (no feature cache) unless cache_features=True is passed."""
  overrides.setdefault("cache_features", False)
  config = tiny_config(freeze=freeze, batch_size=batch, **overrides)
  setup, init_state = training.build_setup(config, 10, steps_per_epoch=4,
                                           batch_size=batch, learning_rate=1e-3)
  keys = training.RunKeys.from_seeds([0])
  # Compiled as a run's initialisation is (tests/model_init.py says why).
  init_state = jax.jit(init_state, compiler_options=run_setup.RUN_ONCE)
  return setup, init_state(keys.init), keys


def _fake_data(n=32, seed=0):
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  return images, labels, jnp.arange(n)


def _layer(name):
  return name.rsplit("/", 1)[0]


@pytest.mark.parametrize("freeze", list(TRAINABLE_LAYERS))
def test_frozen_parameters_stay_bit_identical_and_trainable_ones_move(freeze):
  setup, state, keys = _setup(freeze)
  before = {k: np.asarray(v) for k, v in freezing.named_leaves(state.params)}
  step = jax.jit(training.make_train_step(setup))
  images, labels, order = _fake_data()
  for _ in range(3):
    state = step(state, images, labels, order[None], keys.augment)
  after = {k: np.asarray(v) for k, v in freezing.named_leaves(state.params)}
  for name, value in before.items():
    if _layer(name) in TRAINABLE_LAYERS[freeze]:
      assert not np.array_equal(after[name], value), f"{name} did not train"
    else:
      assert after[name].tobytes() == value.tobytes(), f"{name} changed"


@pytest.mark.parametrize("freeze", list(TRAINABLE_LAYERS))
def test_frozen_parameters_have_no_optimizer_state(freeze):
  setup, state, _ = _setup(freeze)
  one = lambda tree: jax.tree.map(lambda x: x[0], tree)
  trainable, total = freezing.count_parameters(one(state.params), setup.trainable)
  state_sizes = sum(x.size for x in jax.tree.leaves(one(state.opt_state)))
  # Adam keeps mu and nu per trainable parameter, plus a step counter.
  assert state_sizes == 2 * trainable + 1
  if freeze != "none":
    assert trainable < total


def test_every_parameter_must_match_a_rule():
  setup, state, _ = _setup("none")
  state = state.replace(params=jax.tree.map(lambda x: x[0], state.params))
  with pytest.raises(UserError, match=r"head/fc1/kernel.*every parameter"):
    freezing.trainable_mask(state.params, (("body/.*", True),))


def test_first_matching_rule_wins():
  _, state, _ = _setup("none")
  state = state.replace(params=jax.tree.map(lambda x: x[0], state.params))
  mask = dict(freezing.named_leaves(freezing.trainable_mask(
      state.params, (("body/conv5/.*", True), ("body/.*", False), (".*", True)))))
  assert mask["body/conv5/kernel"] and mask["head/fc1/kernel"]
  assert not mask["body/conv1/kernel"]


def test_explicit_rules_override_the_preset():
  config = tiny_config(freeze="none",
                       trainable_rules=(("body/conv[45]/.*", True),
                                        ("body/.*", False), ("head/.*", True)))
  rules = freezing.resolve_rules(config)
  assert rules[0] == ("body/conv[45]/.*", True)
  # Exactly the explicit rules, in their order: no preset rule before them
  # (the preset 'none' is ('.*', True), which would train every layer).
  assert rules == (("body/conv[45]/.*", True), ("body/.*", False),
                   ("head/.*", True))
  # And what a run trains follows them first-match-wins: conv4 and conv5
  # train although 'body/.*' freezes the body (in the reverse order, or
  # with the preset winning, conv4/5 would be frozen or conv1-3 trained).
  setup, _, _ = _setup("none", trainable_rules=config.trainable_rules)
  trained = {_layer(name) for name, t in freezing.named_leaves(setup.trainable)
             if t}
  assert trained == {"body/conv4", "body/conv5", *HEAD}


def _convolutions_in_compiled_step(freeze):
  setup, state, keys = _setup(freeze)
  images, labels, order = _fake_data()
  compiled = jax.jit(training.make_train_step(setup)).lower(
      state, images, labels, order[None], keys.augment).compile()
  return len(re.findall(r"\bconvolution\(", compiled.as_text()))


def test_frozen_layers_cost_no_backward_convolutions():
  counts = {f: _convolutions_in_compiled_step(f) for f in TRAINABLE_LAYERS}
  # 5 forward convolutions; full training adds 5 weight gradients and 4 input
  # gradients (the image needs none). Frozen layers must add nothing.
  assert counts["head"] == 5
  assert counts["head+conv5"] == 6  # + conv5's weight gradient only
  assert counts["none"] == 14


def test_feature_cache_only_for_a_frozen_body_without_augmentation():
  on = dict(cache_features=True)
  assert _setup("head", **on)[0].feature_cache
  assert not _setup("head+conv5", **on)[0].feature_cache
  assert not _setup("none", **on)[0].feature_cache
  assert not _setup("head", **on, **{"augment.hflip": True})[0].feature_cache
  assert not _setup("head", cache_features=False)[0].feature_cache


def test_cached_feature_step_runs_no_convolution():
  setup, state, keys = _setup("head", cache_features=True)
  features = jnp.zeros((1, 32, 1, 1, 256))
  labels = jnp.zeros(32, jnp.int32)
  compiled = jax.jit(training.make_train_step(setup)).lower(
      state, features, labels, jnp.arange(32)[None], keys.augment).compile()
  assert len(re.findall(r"\bconvolution\(", compiled.as_text())) == 0
