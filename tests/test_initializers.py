"""Keras's initialisers (seed 004's create_alex_net(kernel_initializer,
bias_initializer)) checked against Keras 3 itself (its JAX backend): for a
conv kernel, a dense kernel and a bias, the same distribution (spread,
bounds, truncation), and zeros/ones exactly."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from model_init import init_variables
from jaxtransfer import models
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError
from jaxtransfer.models import initializers
from jaxtransfer.engine import run_setup, validation

KERAS_NAMES = [n for n in initializers.KERNEL_INITS if n != "torch"]
SHAPES = {"conv": (5, 5, 48, 64), "dense": (400, 300), "bias": (20000,)}


@pytest.fixture(scope="module")
def keras():
  os.environ.setdefault("KERAS_BACKEND", "jax")
  return pytest.importorskip("keras")


def _ours(name, shape):
  if len(shape) == 1:
    init = initializers.layer_inits(f"torch|{name}", fan_in=1)["bias_init"]
  else:
    init = initializers.KERNEL_INITS[name]
  return np.asarray(init(jax.random.key(0), shape, jnp.float32))


def test_names_are_the_configs():
  assert configlib.KERNEL_INITS == tuple(initializers.KERNEL_INITS)
  assert configlib.BIAS_INITS == initializers.BIAS_INITS


@pytest.mark.parametrize("kind", sorted(SHAPES))
@pytest.mark.parametrize("name", KERAS_NAMES)
def test_same_distribution_as_keras(keras, name, kind):
  shape = SHAPES[kind]
  ours = _ours(name, shape)
  theirs = np.asarray(keras.initializers.get(name)(shape), np.float32)
  assert ours.shape == theirs.shape == shape
  if name in ("zeros", "ones"):
    np.testing.assert_array_equal(ours, theirs)
    return
  assert abs(ours.mean()) < 0.03 * theirs.std() + 1e-7
  np.testing.assert_allclose(ours.std(), theirs.std(), rtol=0.03)
  # The same support: uniform bounds, truncation at 2 std, or a normal's
  # tails (random_normal is the only untruncated one).
  np.testing.assert_allclose(np.abs(ours).max(), np.abs(theirs).max(),
                             rtol=0.02 if "normal" not in name or
                             name.startswith(("he_", "lecun_", "glorot_",
                                              "truncated")) else 0.25)


def test_bias_init_reaches_the_layers():
  config = default.get_config()
  config.model, config.image_size = "alexnet_bn", 32
  config.kernel_init, config.bias_init = "he_uniform", "glorot_uniform"
  validation.validate(config)
  model = models.make_model(config, 10)
  params = init_variables(model, jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3)))["params"]
  bias = np.asarray(params["body"]["conv2"]["bias"])  # 256 values
  limit = np.sqrt(6 / (256 + 256))  # Keras's fans of a 1-D shape
  assert limit * 0.9 < np.abs(bias).max() <= limit
  kernel = np.asarray(params["body"]["conv2"]["kernel"])  # 5x5x96 -> 256
  assert np.sqrt(6 / (5 * 5 * 96)) * 0.95 < np.abs(kernel).max() <= np.sqrt(
      6 / (5 * 5 * 96))
  # '' keeps the kernel init's companion: zeros here, torch's for 'torch'.
  config.bias_init = ""
  params = init_variables(models.make_model(config, 10), jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3)))["params"]
  assert not np.asarray(params["body"]["conv2"]["bias"]).any()
  config.kernel_init, config.bias_init = "zeros", "ones"
  params = init_variables(models.make_model(config, 10), jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3)))["params"]
  assert not np.asarray(params["head"]["fc1"]["kernel"]).any()
  assert (np.asarray(params["head"]["fc1"]["bias"]) == 1).all()


def test_unknown_bias_init_names_the_field():
  config = default.get_config()
  config.bias_init = "glorot"
  with pytest.raises(UserError, match=r"config.bias_init='glorot' is not one "
                     r"of .*did you mean 'glorot_normal'"):
    validation.validate(config)


def _compiled_at_both_levels(fn, *args):
  """fn(*args) compiled as a run's initialisation is (run_setup.RUN_ONCE)
  and at XLA's default level."""
  ours = jax.jit(fn, compiler_options=run_setup.RUN_ONCE)(*args)
  default_level = jax.jit(fn)(*args)
  return jax.device_get(ours), jax.device_get(default_level)


@pytest.mark.parametrize("name", sorted(initializers.KERNEL_INITS))
def test_the_run_once_compilation_initialises_bit_for_bit(name):
  """Initial weights are compiled at a lower backend level to compile
  faster (run_setup.RUN_ONCE): every initialiser's values are the default
  level's, bit for bit, for a conv kernel, a dense kernel and a bias."""
  inits = initializers.layer_inits(f"{name}|{name}", fan_in=400)
  def all_shapes(key):
    keys = jax.random.split(key, 3)
    return [inits["kernel_init"](keys[0], SHAPES["conv"]),
            inits["kernel_init"](keys[1], SHAPES["dense"]),
            inits["bias_init"](keys[2], SHAPES["bias"])]
  ours, default_level = _compiled_at_both_levels(all_shapes, jax.random.key(7))
  for a, b in zip(ours, default_level):
    assert a.tobytes() == b.tobytes()
  assert ours[0].std() > 0 or name in ("zeros", "ones")


def test_a_whole_model_initialises_bit_for_bit_at_the_run_once_level():
  config = default.get_config()
  config.model, config.image_size = "alexnet_bn", 32
  model = models.make_model(config, 10)
  sample = jnp.zeros((1, 32, 32, 3))
  keys = jax.random.split(jax.random.key(0), 2)
  ours, default_level = _compiled_at_both_levels(
      jax.vmap(lambda k: model.init(k, sample, train=False)), keys)
  leaves = jax.tree.leaves(ours)
  assert len(leaves) > 20
  for a, b in zip(leaves, jax.tree.leaves(default_level)):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_fresh_start_s_variables_are_the_run_s_own():
  """What `jaxtransfer analyze` compares a trained model with (and what a
  pre-trained body is merged into): run_setup.fresh_variables, bit for bit
  the state a run starts from. lenet with random_normal is the setup whose
  eager init differs from the jitted one in the last bit."""
  from conftest import tiny_config
  from jaxtransfer.engine import training

  config = tiny_config(model="lenet", image_size=32,
                       kernel_init="random_normal", num_seeds=2)
  setup, init_state = run_setup.build_setup(config, 10, 10, 32)
  keys = training.RunKeys.from_seeds(training.seeds_of(config))

  class NoCheckpoint:
    def latest_step(self):
      return None

  state, history = run_setup.initial_state(
      config, "/nonexistent", NoCheckpoint(), setup, init_state, keys,
      "classifier", None, log=lambda *args: None)
  fresh = run_setup.fresh_variables(init_state, keys)
  assert history == []
  leaves = jax.tree.leaves(fresh["params"])
  assert len(leaves) >= 8 and leaves[0].shape[0] == 2  # two seeds
  for a, b in zip(leaves, jax.tree.leaves(state.params)):
    assert a.tobytes() == np.asarray(b).tobytes()
