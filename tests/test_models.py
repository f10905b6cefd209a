"""Shapes, parameter names and initialisation of the networks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_init import apply, init_variables
from jaxtransfer import models
from jaxtransfer.engine import freezing
from jaxtransfer.core.errors import UserError

TORCHVISION_BODY_KERNELS = {  # torchvision OIHW shapes, as HWIO
    "conv1": (11, 11, 3, 64),
    "conv2": (5, 5, 64, 192),
    "conv3": (3, 3, 192, 384),
    "conv4": (3, 3, 384, 256),
    "conv5": (3, 3, 256, 256),
}


def _init(model, size, batch=2):
  x = jnp.zeros((batch, size, size, 3))
  return init_variables(model, jax.random.key(0), x)["params"], x


@pytest.mark.parametrize("size, spatial", [(64, 1), (128, 3), (224, 6)])
def test_classifier_output_and_feature_shapes(size, spatial):
  model = models.Classifier(num_classes=10)
  params, x = _init(model, size)
  logits = apply(model, {"params": params}, x)
  assert logits.shape == (2, 10)
  assert logits.dtype == jnp.float32
  features = apply(models.AlexNetBody(), {"params": params["body"]}, x)
  assert features.shape == (2, spatial, spatial, 256)
  assert models.feature_dim(size) == 256 * spatial * spatial
  assert params["head"]["fc1"]["kernel"].shape == (256 * spatial**2, 500)
  assert params["head"]["fc2"]["kernel"].shape == (500, 10)


def test_head_input_is_2304_at_128px():
  assert models.feature_dim(128) == 2304


def test_body_parameter_names_follow_torchvision_layout():
  params, _ = _init(models.Classifier(num_classes=10), 128)
  names = dict(freezing.named_leaves(params))
  expected = {f"body/{conv}/{p}" for conv in TORCHVISION_BODY_KERNELS
              for p in ("kernel", "bias")} | {
                  f"head/{fc}/{p}" for fc in ("fc1", "fc2")
                  for p in ("kernel", "bias")}
  assert set(names) == expected
  for conv, shape in TORCHVISION_BODY_KERNELS.items():
    assert names[f"body/{conv}/kernel"].shape == shape
    assert names[f"body/{conv}/bias"].shape == (shape[-1],)


@pytest.mark.parametrize("size", [64, 128])
def test_autoencoder_reconstructs_the_input_shape_with_the_same_body(size):
  ae = models.Autoencoder(image_size=size)
  ae_params, x = _init(ae, size)
  assert apply(ae, {"params": ae_params}, x).shape == x.shape
  cls_params, _ = _init(models.Classifier(num_classes=10), size)
  ae_body = jax.tree.map(jnp.shape, ae_params["body"])
  cls_body = jax.tree.map(jnp.shape, cls_params["body"])
  assert ae_body == cls_body
  assert set(ae_params) == {"body", "decoder"}


def test_smallest_image_size_is_63_and_smaller_is_a_clear_error():
  assert models.MIN_IMAGE_SIZE == 63
  params, x = _init(models.Classifier(num_classes=10), 63, batch=1)
  assert apply(models.Classifier(10), {"params": params}, x).shape == (1, 10)
  with pytest.raises(UserError, match="at least 63 px"):
    models.check_image_size(62)


def test_torch_init_matches_pytorch_default_bounds():
  params, _ = _init(models.Classifier(num_classes=10), 64)
  for conv, (kh, kw, cin, _) in TORCHVISION_BODY_KERNELS.items():
    bound = 1.0 / np.sqrt(kh * kw * cin)
    kernel = np.asarray(params["body"][conv]["kernel"])
    bias = np.asarray(params["body"][conv]["bias"])
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    # Uniform(-b, b) has std b/sqrt(3); the kernels are large samples of it.
    assert abs(kernel.std() - bound / np.sqrt(3)) < 0.05 * bound


# ---------------------------------------------------------------------------
# The registry's models, one by one (tests/test_model_registry.py checks what
# they share).

# alexnet at 128 px, 10 classes: the checkpoint layout every saved run has.
ALEXNET_PARAMS_128 = {
    "body/conv1/bias": (64,), "body/conv1/kernel": (11, 11, 3, 64),
    "body/conv2/bias": (192,), "body/conv2/kernel": (5, 5, 64, 192),
    "body/conv3/bias": (384,), "body/conv3/kernel": (3, 3, 192, 384),
    "body/conv4/bias": (256,), "body/conv4/kernel": (3, 3, 384, 256),
    "body/conv5/bias": (256,), "body/conv5/kernel": (3, 3, 256, 256),
    "head/fc1/bias": (500,), "head/fc1/kernel": (2304, 500),
    "head/fc2/bias": (10,), "head/fc2/kernel": (500, 10),
}


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      model="alexnet", task="classifier", image_size=64, head_hidden=500,
      dropout=-1.0, kernel_init="torch", compute_dtype="float32"))
  config.update(overrides)
  return config


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  return {name: tuple(leaf.shape) for name, leaf in freezing.named_leaves(tree)}


def _size(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_alexnet_parameter_tree_is_unchanged_so_old_checkpoints_load():
  model = models.make_model(_config(image_size=128), 10)
  assert isinstance(model, models.Classifier)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 128, 128, 3))))
  assert set(variables) == {"params"}  # no batch_stats
  assert _shapes(variables["params"]) == ALEXNET_PARAMS_128


def test_alexnet_accepts_train_and_ignores_it():
  model = models.make_model(_config(), 10)
  params, x = _init(model, 64)
  x = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  eval_out = apply(model, {"params": params}, x)
  train_out = apply(model, {"params": params}, x, train=True,
                    rngs={"dropout": jax.random.key(2)})
  np.testing.assert_array_equal(eval_out, train_out)


def test_alexnet_dropout_when_asked_keeps_the_parameter_tree():
  model = models.make_model(_config(dropout=0.5), 10)
  assert model.dropout == 0.5
  params, x = _init(model, 64)
  assert _shapes(params) == _shapes(_init(models.Classifier(10), 64)[0])
  x = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  train = lambda key: apply(model, {"params": params}, x, train=True,
                            rngs={"dropout": key})
  assert not np.allclose(train(jax.random.key(2)), train(jax.random.key(3)))


def _copy_to_torchvision_layout(params):
  return {"body": params["body"],
          "classifier": {fc: params["head"][fc] for fc in ("fc6", "fc7", "fc8")}}


def test_alexnet_torchvision_matches_torchvision_alexnet_in_eval():
  model = models.make_model(_config(model="alexnet_torchvision"), 1000)
  assert isinstance(model, models.AlexNetTorchvision)
  assert model.dropout == 0.5
  params, x = _init(model, 64)
  assert set(params["head"]) == {"fc6", "fc7", "fc8"}
  assert params["head"]["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)
  x = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  expected = apply(models.TorchvisionAlexNet(1000),
                   {"params": _copy_to_torchvision_layout(params)}, x)
  actual = apply(model, {"params": params}, x)
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
  features = apply(model, {"params": params}, x, method="features")
  assert features.shape == (2, 6, 6, 256)

  # torchvision's own AlexNet in eval mode (dropout off), random weights,
  # converted with the lab's converter (as tests/test_conversion.py does for
  # the body and test_zoo.py for the other archs), at 64 px (a 1x1 map the
  # 6x6 adaptive pool repeats) and 128 px (3x3: fc6's column order counts).
  torch = pytest.importorskip("torch")
  from conftest import import_torchvision
  from jaxtransfer.models import conversion
  try:
    torchvision = import_torchvision()
  except ImportError:
    pytest.skip("needs torchvision")
  torch.manual_seed(0)
  reference = torchvision.models.alexnet(weights=None).eval()
  with torch.no_grad():  # larger than default init so activations stay O(1)
    for module in reference.modules():
      if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
        module.weight.mul_(3.0)
        module.bias.normal_(0.0, 0.1)
  converted = conversion.convert(
      {k: v.numpy() for k, v in reference.state_dict().items()},
      with_classifier=True, arch="alexnet")
  variables = {"params": {"body": converted["body"],
                          "head": converted["classifier"]}}
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(params)
  for size in (64, 128):
    x = np.random.default_rng(size).standard_normal(
        (2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
      want = reference(torch.from_numpy(x)).numpy()
    got = np.asarray(apply(model, variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
    assert got.shape == want.shape == (2, 1000)
    assert np.std(want) > 1e-2  # a meaningful comparison, not zeros
    # float32 sums in another order: relative to the largest logit.
    error = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))
    assert error <= 1e-5, (size, error)
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_alexnet_torchvision_dropout_is_active_only_in_training():
  model = models.make_model(_config(model="alexnet_torchvision"), 10)
  params, x = _init(model, 64)
  x = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  train = lambda key: apply(model, {"params": params}, x, train=True,
                            rngs={"dropout": key})
  eval_out = apply(model, {"params": params}, x)
  assert not np.allclose(train(jax.random.key(2)), train(jax.random.key(3)))
  assert not np.allclose(train(jax.random.key(2)), eval_out)
  np.testing.assert_array_equal(eval_out, apply(model, {"params": params}, x))
  # config.dropout=0 turns it off: training then equals evaluation.
  no_dropout = models.make_model(
      _config(model="alexnet_torchvision", dropout=0.0), 10)
  np.testing.assert_allclose(
      apply(no_dropout, {"params": params}, x, train=True), eval_out,
      rtol=1e-6, atol=1e-6)


# alexnet_bn at 32 px, 10 classes, by hand: conv k*k*cin*cout + cout; a
# BatchNorm of c channels holds 4c (scale, bias | mean, var).
BN_CONVS = {"conv1": (11, 3, 96), "conv2": (5, 96, 256), "conv3": (3, 256, 384),
            "conv4": (3, 384, 384), "conv5": (3, 384, 256)}
BN_DENSES = {"fc1": (256, 4096), "fc2": (4096, 4096), "fc3": (4096, 1000),
             "fc4": (1000, 10)}
BN_WIDTHS = {"bn1": 96, "bn2": 256, "bn3": 384, "bn4": 384, "bn5": 256,
             "bn6": 4096, "bn7": 4096, "bn8": 1000, "bn9": 10}


def _init_bn(frozen_norms=(), dropout=-1.0, batch=4):
  model = models.make_model(_config(model="alexnet_bn", image_size=32,
                                    dropout=dropout), 10, frozen_norms)
  x = np.random.default_rng(1).normal(size=(batch, 32, 32, 3)).astype(
      np.float32)
  return model, init_variables(model, jax.random.key(0), x), x


def test_alexnet_bn_parameter_counts_match_keras():
  model, variables, _ = _init_bn()
  params, stats = variables["params"], variables["batch_stats"]
  # From seed 004's Keras summary.
  assert _size(params["body"]["conv1"]) == 34944
  assert _size(params["body"]["conv2"]) == 614656
  assert _size(params["body"]["bn1"]) + _size(stats["body"]["bn1"]) == 384
  for conv, (k, cin, cout) in BN_CONVS.items():
    assert _size(params["body"][conv]) == k * k * cin * cout + cout
  for fc, (fan_in, out) in BN_DENSES.items():
    assert _size(params["head"][fc]) == fan_in * out + out
  norms = {**params["body"], **params["head"]}
  norm_stats = {**stats["body"], **stats["head"]}
  for bn, width in BN_WIDTHS.items():
    assert _size(norms[bn]) == 2 * width and _size(norm_stats[bn]) == 2 * width
  total = (sum(k * k * cin * cout + cout for k, cin, cout in BN_CONVS.values())
           + sum(i * o + o for i, o in BN_DENSES.values())
           + 4 * sum(BN_WIDTHS.values()))
  assert total == 25_730_506
  assert _size(params) + _size(stats) == total
  norm = models.common.keras_batch_norm("bn1", "body/bn1", True, (),
                                        jnp.float32)
  assert (norm.momentum, norm.epsilon) == (0.99, 1e-3)  # Keras's defaults


def test_alexnet_bn_body_is_1x1x256_at_32px_with_keras_same_padding():
  model, variables, x = _init_bn()
  assert models.alexnet_bn.spatial_sizes(32) == [4, 2, 2, 2, 1]
  features = apply(model, variables, x, method="features")
  assert features.shape == (4, 1, 1, 256)
  assert models.alexnet_bn.spatial_sizes(33) == [5, 3, 3, 3, 2]  # ceil
  assert apply(model, variables, jnp.zeros((1, 33, 33, 3)),
               method="features").shape == (1, 2, 2, 256)


def _train(model, variables, x, key=2):
  return apply(model, variables, x, train=True,
               rngs={"dropout": jax.random.key(key)},
               mutable=["batch_stats"])


def _changed(before, after) -> dict[str, bool]:
  """Per BatchNorm path: did its running mean change?"""
  return {path: not np.allclose(before[path], after[path])
          for path in before}


def _means(stats) -> dict[str, np.ndarray]:
  return {name.rsplit("/", 1)[0]: np.asarray(leaf)
          for name, leaf in freezing.named_leaves(stats)
          if name.endswith("/mean")}


def test_alexnet_bn_training_updates_batch_stats_and_eval_does_not():
  model, variables, x = _init_bn()
  _, updates = _train(model, variables, x)
  changed = _changed(_means(variables["batch_stats"]),
                     _means(updates["batch_stats"]))
  assert all(changed.values()), changed
  # Keras's momentum 0.99: the mean moves 1% of the way to the batch mean.
  conv1 = nn.Conv(96, (11, 11), (4, 4), padding="SAME").apply(
      {"params": variables["params"]["body"]["conv1"]}, x)
  np.testing.assert_allclose(updates["batch_stats"]["body"]["bn1"]["mean"],
                             0.01 * conv1.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  _, eval_updates = apply(model, variables, x, mutable=["batch_stats"])
  assert not any(_changed(_means(variables["batch_stats"]),
                          _means(eval_updates["batch_stats"])).values())


def test_alexnet_bn_frozen_norms_keep_their_statistics():
  body_norms = tuple(f"body/bn{i}" for i in range(1, 6))
  model, variables, x = _init_bn(frozen_norms=body_norms)
  assert model.frozen_norms == body_norms
  _, updates = _train(model, variables, x)
  changed = _changed(_means(variables["batch_stats"]),
                     _means(updates["batch_stats"]))
  assert not any(changed[p] for p in body_norms), changed
  assert all(changed[f"head/bn{i}"] for i in range(6, 10)), changed
  # A frozen body normalises with its running statistics in training too:
  # its features equal evaluation's.
  np.testing.assert_allclose(
      apply(model, variables, x, train=True, method="features"),
      apply(model, variables, x, method="features"), rtol=1e-6, atol=1e-6)
  unfrozen, _, _ = _init_bn()
  assert not np.allclose(
      apply(unfrozen, variables, x, train=True, method="features",
            mutable=["batch_stats"])[0],
      apply(unfrozen, variables, x, method="features"), atol=1e-3)


def test_alexnet_bn_unknown_frozen_norm_is_a_clear_error():
  with pytest.raises(UserError, match="body/bn10"):
    models.make_model(_config(model="alexnet_bn", image_size=32), 10,
                      frozen_norms=("body/bn10",))


def test_alexnet_bn_dropout_differs_per_key_and_eval_is_deterministic():
  model, variables, x = _init_bn()
  assert model.dropout == 0.4
  out_a, _ = _train(model, variables, x, key=2)
  out_b, _ = _train(model, variables, x, key=3)
  assert not np.allclose(out_a, out_b)
  np.testing.assert_array_equal(apply(model, variables, x),
                                apply(model, variables, x))
  no_dropout, _, _ = _init_bn(dropout=0.0)
  np.testing.assert_array_equal(_train(no_dropout, variables, x, key=2)[0],
                                _train(no_dropout, variables, x, key=3)[0])


def test_lenet_parameter_count_at_28px_by_hand():
  model = models.make_model(_config(model="lenet", image_size=28), 10)
  params = init_variables(model, jax.random.key(0),
                          jnp.zeros((2, 28, 28, 1)))["params"]
  counts = {f"{part}/{layer}": _size(params[part][layer])
            for part in params for layer in params[part]}
  assert counts == {
      "body/conv1": 3 * 3 * 1 * 6 + 6,  # 60
      "body/conv2": 3 * 3 * 6 * 16 + 16,  # 880
      "head/fc1": 5 * 5 * 16 * 120 + 120,  # 48120
      "head/fc2": 120 * 84 + 84,  # 10164
      "head/fc3": 84 * 10 + 10,  # 850
  }
  assert _size(params) == 60074
  features = apply(model, {"params": params}, jnp.zeros((2, 28, 28, 1)),
                   method="features")
  assert features.shape == (2, 5, 5, 16)


def test_lenet_smallest_image_size():
  assert models.lenet.spatial_sizes(28) == [13, 5]
  assert models.lenet.MIN_IMAGE_SIZE == 10
  assert min(models.lenet.spatial_sizes(9)) == 0
  model = models.make_model(_config(model="lenet", image_size=10), 3)
  params = init_variables(model, jax.random.key(0),
                          jnp.zeros((1, 10, 10, 1)))["params"]
  assert params["head"]["fc1"]["kernel"].shape == (16, 120)


@pytest.mark.parametrize("kernel_init", sorted(models.KERNEL_INITS))
def test_every_kernel_init_works_for_every_model(kernel_init):
  for name, size, channels in (("lenet", 28, 1), ("alexnet_bn", 32, 3)):
    model = models.make_model(_config(model=name, image_size=size,
                                      kernel_init=kernel_init), 10)
    variables = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, size, size, channels))))
    assert "head" in variables["params"]
  model = models.make_model(_config(model="lenet", image_size=28,
                                    kernel_init=kernel_init), 10)
  params = init_variables(model, jax.random.key(0),
                          jnp.zeros((1, 28, 28, 1)))["params"]
  bias = np.asarray(params["body"]["conv2"]["bias"])
  if kernel_init == "torch":
    assert 0 < np.abs(bias).max() <= 1 / np.sqrt(3 * 3 * 6)
  else:
    assert not bias.any()
