"""The model registry: every registered model's interface, freeze presets,
and make_model's errors."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_init import apply, init_variables
from jaxtransfer import models
from jaxtransfer.engine import freezing
from jaxtransfer.core.errors import UserError

# Each model at its natural input size: (image_size, channels).
NATURAL = {
    "alexnet": (64, 3),
    "alexnet_torchvision": (64, 3),
    "alexnet_bn": (32, 3),
    "lenet": (28, 1),
    "lenet_stem": (96, 3),  # seed 004's STL-10 stem in front of LeNet
    "lenet_rgb": (28, 3),
}
# Seed 002's networks in its notation (tests/test_notation.py covers them).
NOTATION = {"notation": (32, 3)}
# The torchvision zoo (tests/test_zoo.py covers each), registered after them.
ZOO = {"vgg16": (32, 3), "vgg13_bn": (32, 3), "vgg19": (32, 3),
       "vgg19_bn": (32, 3), "resnet50": (32, 3), "densenet121": (32, 3)}


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      model="alexnet", task="classifier", image_size=64, head_hidden=500,
      dropout=-1.0, kernel_init="torch", compute_dtype="float32"))
  config.update(overrides)
  return config


def _build(name, num_classes=7, **overrides):
  size, channels = NATURAL[name]
  model = models.make_model(_config(model=name, image_size=size, **overrides),
                            num_classes)
  x = np.random.default_rng(1).normal(
      size=(3, size, size, channels)).astype(np.float32)
  return model, init_variables(model, jax.random.key(0), x), x


def test_the_registry_holds_the_four_models_and_the_zoo_with_their_specs():
  assert list(models.MODELS) == list(NATURAL) + list(NOTATION) + list(ZOO)
  for name, spec in models.MODELS.items():
    assert spec.name == name and spec.description
    assert models.get_spec(name) is spec
    assert "checkpoint" in spec.pretrained_inits
    assert spec.input_channels == {**NATURAL, **NOTATION, **ZOO}[name][1]
    assert spec.min_image_size <= {**NATURAL, **NOTATION, **ZOO}[name][0]
    assert spec.heads == (("", "linear", "mlp") if name == "resnet50" else
                          ("", "linear") if name in ZOO
                          or name == "alexnet_torchvision" else ("",))
  assert models.MODELS["alexnet"].pretrained_inits == (
      "autoencoder", "imagenet", "checkpoint")
  assert models.MODELS["alexnet_torchvision"].pretrained_inits == (
      "imagenet", "checkpoint")
  assert {n: s.default_dropout for n, s in models.MODELS.items()} == {
      "alexnet": 0.0, "alexnet_torchvision": 0.5, "alexnet_bn": 0.4,
      "lenet": 0.0, "lenet_stem": 0.0, "lenet_rgb": 0.0, "notation": 0.0,
      "vgg16": 0.5, "vgg13_bn": 0.5, "vgg19": 0.5, "vgg19_bn": 0.5,
      "resnet50": 0.0, "densenet121": 0.0}
  assert {n: s.min_image_size for n, s in models.MODELS.items()} == {
      "alexnet": 63, "alexnet_torchvision": 63, "alexnet_bn": 1, "lenet": 10,
      "lenet_stem": 60, "lenet_rgb": 10,
      "notation": 1,  # checked per architecture (its pools)
      "vgg16": 32, "vgg13_bn": 32, "vgg19": 32, "vgg19_bn": 32,
      "resnet50": 1, "densenet121": 29}


def test_registering_another_model_under_a_taken_name_fails():
  spec = models.MODELS["lenet"]
  assert models.register(spec) is spec  # the same spec again: no-op
  with pytest.raises(ValueError, match="lenet"):
    models.register(dataclasses.replace(spec, description="other"))


@pytest.mark.parametrize("name", list(NATURAL))
def test_every_model_has_the_uniform_interface(name):
  model, variables, x = _build(name)
  assert set(variables["params"]) == {"body", "head"} | (
      {"stem"} if name == "lenet_stem" else set())
  has_norms = name == "alexnet_bn"
  assert set(variables) == ({"params", "batch_stats"} if has_norms
                            else {"params"})
  logits = apply(model, variables, x)
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))
  features = apply(model, variables, x, method="features")
  from_features = apply(model, variables, features, method="classify_features")
  np.testing.assert_allclose(from_features, logits, rtol=1e-6, atol=1e-6)
  assert model.frozen_norms == ()
  # The training loop's call: dropout rng, mutable batch_stats if any.
  mutable = ["batch_stats"] if has_norms else False
  out = apply(model, variables, x, train=True,
              rngs={"dropout": jax.random.key(2)}, mutable=mutable)
  out = out[0] if has_norms else out
  assert out.shape == (3, 7) and out.dtype == jnp.float32


@pytest.mark.parametrize("name", list(NATURAL))
def test_bfloat16_compute_keeps_float32_params_and_logits(name):
  model, variables, x = _build(name, compute_dtype="bfloat16")
  assert model.dtype == jnp.bfloat16
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {
      jnp.dtype(jnp.float32)}
  logits = apply(model, variables, x)
  assert logits.dtype == jnp.float32
  reference = apply(models.make_model(
      _config(model=name, image_size=NATURAL[name][0]), 7), variables, x)
  assert not np.array_equal(logits, reference)  # really computed in bf16
  np.testing.assert_allclose(logits, reference, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("name", list(NATURAL))
def test_every_freeze_preset_covers_every_parameter(name):
  spec = models.get_spec(name)
  _, variables, _ = _build(name)
  params = variables["params"]
  assert {"none", "head"} <= set(spec.freeze_presets)
  for preset, rules in spec.freeze_presets.items():
    freezing.check_rules(rules)
    mask = freezing.trainable_mask(params, rules)  # raises on a gap
    flags = dict(freezing.named_leaves(mask))
    if preset == "none":
      assert all(flags.values())
    else:
      assert any(not t for n, t in flags.items() if n.startswith("body/"))
      assert any(flags.values())
    if preset == "head":
      assert not any(t for n, t in flags.items() if n.startswith("body/"))
      assert all(t for n, t in flags.items() if n.startswith("head/"))


def _trainable(name, preset):
  _, variables, _ = _build(name)
  mask = freezing.trainable_mask(variables["params"],
                                 models.get_spec(name).freeze_presets[preset])
  return sorted({n.rsplit("/", 1)[0] for n, t in freezing.named_leaves(mask)
                 if t})


def test_the_presets_train_what_they_say():
  # The seed study's three regimes, unchanged, plus seed 001's 'last' (only
  # the output layer trains: fc2 for this model).
  assert models.get_spec("alexnet").freeze_presets == {
      "none": ((".*", True),),
      "head": (("body/.*", False), ("head/.*", True)),
      "head+conv5": (("body/conv5/.*", True), ("body/.*", False),
                     ("head/.*", True)),
      "last": (("head/fc2/.*", True), (".*", False))}
  if hasattr(freezing, "PRESETS"):
    assert dict(freezing.PRESETS) == {
        k: v for k, v in models.get_spec("alexnet").freeze_presets.items()
        if k != "last"}
  assert _trainable("alexnet", "last") == ["head/fc2"]
  assert _trainable("alexnet", "head+conv5") == [
      "body/conv5", "head/fc1", "head/fc2"]
  assert set(models.get_spec("alexnet_torchvision").freeze_presets) == {
      "none", "head", "head+conv5", "last"}
  assert _trainable("alexnet_torchvision", "last") == ["head/fc8"]
  assert _trainable("alexnet_torchvision", "head") == [
      "head/fc6", "head/fc7", "head/fc8"]
  assert _trainable("alexnet_bn", "head+conv5") == [
      "body/bn5", "body/conv5", "head/bn6", "head/bn7", "head/bn8",
      "head/bn9", "head/fc1", "head/fc2", "head/fc3", "head/fc4"]
  assert set(models.get_spec("lenet").freeze_presets) == {"none", "head"}
  assert _trainable("lenet", "head") == ["head/fc1", "head/fc2", "head/fc3"]


def test_norm_module_paths_and_frozen_norms_from_a_mask():
  _, variables, _ = _build("alexnet_bn")
  stats = variables["batch_stats"]
  paths = models.norm_module_paths(stats)
  assert paths == [f"body/bn{i}" for i in range(1, 6)] + [
      f"head/bn{i}" for i in range(6, 10)]
  assert models.norm_module_paths({}) == []
  rules = models.get_spec("alexnet_bn").freeze_presets
  for preset, frozen in (("none", ()), ("head", tuple(paths[:5])),
                         ("head+conv5", tuple(paths[:4]))):
    mask = freezing.trainable_mask(variables["params"], rules[preset])
    assert models.frozen_norm_paths(stats, mask) == frozen
  # Stacked over seeds (a leading axis), as the training loop keeps them.
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), stats)
  assert models.norm_module_paths(stacked) == paths


def test_unknown_model_names_the_known_ones_and_the_nearest():
  with pytest.raises(UserError) as error:
    models.get_spec("alexnt")
  message = str(error.value)
  assert message.startswith("config.model='alexnt' is not one of alexnet, ")
  assert "lenet" in message and "alexnet_bn" in message
  assert message.endswith("(did you mean 'alexnet'?)")
  with pytest.raises(UserError, match="did you mean 'alexnet_bn'"):
    models.make_model(_config(model="alexnet-bn"), 10)
  with pytest.raises(UserError) as error:
    models.get_spec("inception_v3")
  assert "did you mean" not in str(error.value)


@pytest.mark.parametrize("name, too_small", [
    ("alexnet", 62), ("alexnet_torchvision", 62), ("lenet", 9)])
def test_an_image_below_the_models_minimum_is_a_user_error(name, too_small):
  minimum = too_small + 1
  with pytest.raises(UserError) as error:
    models.make_model(_config(model=name, image_size=too_small), 10)
  message = str(error.value)
  assert f"config.image_size={too_small}" in message
  assert f"config.model={name!r}" in message
  assert f"at least {minimum} px" in message
  assert models.make_model(_config(model=name, image_size=minimum), 10)


def test_autoencoder_task_is_alexnet_only():
  model = models.make_model(_config(task="autoencoder"), 0)
  assert isinstance(model, models.Autoencoder)
  with pytest.raises(UserError, match="config.model='lenet'"):
    models.make_model(_config(task="autoencoder", model="lenet",
                              image_size=28), 0)
  with pytest.raises(UserError, match="at least 63 px"):
    models.make_model(_config(task="autoencoder", image_size=32), 0)


def test_configs_without_a_model_field_mean_alexnet():
  config = ml_collections.ConfigDict(dict(
      task="classifier", image_size=64, head_hidden=300,
      kernel_init="torch", compute_dtype="float32"))
  model = models.make_model(config, 10)
  assert isinstance(model, models.Classifier)
  assert (model.hidden, model.dropout) == (300, 0.0)


def test_models_without_batchnorm_refuse_frozen_norms():
  for name in ("alexnet", "alexnet_torchvision", "lenet"):
    with pytest.raises(UserError, match="not BatchNorm layers"):
      models.make_model(_config(model=name, image_size=NATURAL[name][0]), 10,
                        frozen_norms=("body/bn1",))


def test_dropout_of_one_or_more_is_a_user_error():
  with pytest.raises(UserError, match="config.dropout=1.0"):
    models.make_model(_config(model="alexnet_bn", image_size=32, dropout=1.0),
                      10)
