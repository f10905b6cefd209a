"""The torchvision zoo in Flax (vgg16, vgg13_bn, vgg19, vgg19_bn,
densenet121, resnet50): numerically equal to torchvision's own models after
`jaxtransfer convert --arch`, loadable as init='imagenet', trainable with a
frozen body, and the registry's entries and bad input.

The references are torchvision models with random weights (the real ImageNet
files cannot be downloaded here) whose BatchNorm statistics and affine
parameters are randomised too, so that a conversion that mixed up mean/var
or weight/bias, or a wrong epsilon, would show.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import import_torchvision, run_cli, tiny_config  # noqa: E402
from model_init import init_variables  # noqa: E402
from jaxtransfer import models
from jaxtransfer.engine import freezing, initialization, training, validation
from jaxtransfer.models import conversion
from jaxtransfer.core.errors import UserError  # noqa: E402

try:
  torchvision = import_torchvision()
except ImportError:
  pytest.skip("needs torchvision", allow_module_level=True)

ZOO = ("vgg16", "vgg13_bn", "vgg19", "vgg19_bn", "densenet121", "resnet50")
BN_ARCHS = ("vgg13_bn", "vgg19_bn", "densenet121", "resnet50")
# Flattened pooled features the head reads, and the head's single Dense of
# config.head='linear'.
FEATURES = {"vgg16": 25088, "vgg13_bn": 25088, "vgg19": 25088,
            "vgg19_bn": 25088, "resnet50": 2048, "densenet121": 1024,
            "alexnet_torchvision": 9216}
LINEAR_LAYER = {"resnet50": "fc", "densenet121": "classifier"}
# Logits and pooled features agree to this, relative to the reference's
# largest magnitude (at least 1): float32 sums in another order.
TOLERANCE = 1e-5


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      model="resnet50", task="classifier", image_size=32, head_hidden=500,
      head="", dropout=-1.0, bn_momentum=-1.0, kernel_init="torch",
      compute_dtype="float32"))
  config.update(overrides)
  return config


def torch_model(arch):
  """torchvision's `arch` with random weights and randomised BatchNorms,
  in evaluation mode."""
  torch.manual_seed(0)
  model = getattr(torchvision.models, arch)(weights=None)
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        size = module.num_features
        module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
        module.weight.copy_(0.5 + torch.rand(size, generator=generator))
        module.bias.copy_(0.2 * torch.randn(size, generator=generator))
  return model.eval()


def _state_dict(model):
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _variables(converted):
  variables = {"params": {"body": converted["body"],
                          "head": converted["classifier"]}}
  if "batch_stats" in converted:
    variables["batch_stats"] = converted["batch_stats"]
  return jax.tree.map(jnp.asarray, variables)


def _torch_run(model, x):
  """(logits, the classifier's input: the flattened pooled features)."""
  captured = {}
  head = model.fc if hasattr(model, "fc") else model.classifier
  hook = head.register_forward_pre_hook(
      lambda module, args: captured.setdefault("features", args[0]))
  try:
    with torch.no_grad():
      logits = model(torch.from_numpy(x)).numpy()
  finally:
    hook.remove()
  return logits, captured["features"].numpy()


def _error(actual, expected):
  return float(np.max(np.abs(actual - expected))
               / max(1.0, float(np.max(np.abs(expected)))))


@pytest.mark.parametrize("arch", ZOO)
def test_converted_model_matches_torchvision(arch):
  reference = torch_model(arch)
  state_dict = _state_dict(reference)
  converted = conversion.convert(state_dict, with_classifier=True, arch=arch)
  # Every torch array is converted, nothing else (counters aside).
  counted = sum(1 for k in state_dict if not k.endswith("num_batches_tracked"))
  assert len(jax.tree.leaves(converted)) == counted
  assert set(converted) == ({"body", "batch_stats", "classifier"}
                            if arch in BN_ARCHS else {"body", "classifier"})
  variables = _variables(converted)
  spec = models.get_spec(arch)
  # VGG at 64 px: a 2x2 map before the 7x7 pool, so fc6's column order is
  # tested by distinct values (at 32 px all 49 positions are equal).
  sizes = (32, 64) if arch.startswith("vgg") else (32,)
  model = models.make_model(_config(model=arch, image_size=32), 1000)

  @jax.jit
  def run(variables, x):  # the body compiled once: logits from its features
    features = model.apply(variables, x, method="features")
    return model.apply(variables, features, method="classify_features"), features

  errors = {}
  for size in sizes:
    x = np.random.default_rng(size).standard_normal(
        (2, 3, size, size)).astype(np.float32)
    expected, expected_features = _torch_run(reference, x)
    logits, features = jax.tree.map(
        np.asarray, run(variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
    if features.ndim == 4:  # NHWC -> torch's (C, H, W) flatten
      features = features.transpose(0, 3, 1, 2)
    features = features.reshape(2, -1)
    assert logits.shape == expected.shape == (2, 1000)
    assert logits.dtype == np.float32
    assert features.shape == expected_features.shape
    # A meaningful comparison: the reference is neither zero nor constant.
    assert np.std(expected) > 1e-2 and np.std(expected_features) > 1e-2
    errors[size] = (_error(logits, expected),
                    _error(features, expected_features))
    assert max(errors[size]) <= TOLERANCE, (size, errors[size])
  print(f"{arch}: max error (logits, features) by size {errors}")
  if arch == "resnet50":  # __call__ is features then classify_features
    direct = jax.jit(model.apply)(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(direct, logits, rtol=1e-5, atol=1e-5)
  # min_image_size is the smallest input torchvision's model takes.
  with torch.no_grad():
    reference(torch.zeros(2, 3, spec.min_image_size, spec.min_image_size))
    if spec.min_image_size > 1:
      smaller = spec.min_image_size - 1
      with pytest.raises(RuntimeError):
        reference(torch.zeros(2, 3, smaller, smaller))


@pytest.fixture(scope="module")
def densenet(tmp_path_factory):
  """densenet121's state_dict saved with the old key names of torchvision's
  file ('denselayer1.norm.1.weight'), and its conversion."""
  model = torch_model("densenet121")
  state = model.state_dict()
  legacy = {}
  for key, value in state.items():
    for old, new in (("norm1", "norm.1"), ("norm2", "norm.2"),
                     ("conv1", "conv.1"), ("conv2", "conv.2")):
      if "denselayer" in key and f".{old}." in key:
        key = key.replace(f".{old}.", f".{new}.")
    legacy[key] = value
  assert any(".norm.1." in k for k in legacy)
  folder = tmp_path_factory.mktemp("densenet")
  path = folder / "densenet121_random.pth"
  torch.save(legacy, path)
  out = folder / "converted"
  info = conversion.convert_file(str(path), str(out), with_classifier=True,
                                 arch="densenet121")
  return {"model": model, "path": path, "out": out, "info": info,
          "params": conversion.load_converted(str(out))}


def test_a_saved_file_converts_and_loads_back(densenet):
  expected = conversion.convert(_state_dict(densenet["model"]), True,
                                "densenet121")
  found = densenet["params"]
  assert jax.tree.structure(found) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(found), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)
  info = json.loads((densenet["out"] / conversion.INFO_FILE).read_text())
  assert info["arch"] == "densenet121" == conversion.converted_arch(
      str(densenet["out"]))
  assert info["shapes"]["body/conv0/kernel"] == [7, 7, 3, 64]
  assert info["shapes"]["batch_stats/body/norm5/var"] == [1024]
  assert info["shapes"]["classifier/classifier/kernel"] == [1024, 1000]
  np.testing.assert_array_equal(
      found["batch_stats"]["body"]["denseblock1"]["denselayer1"]["norm1"]["mean"],
      densenet["model"].features.denseblock1.denselayer1.norm1.running_mean.numpy())


def test_cli_converts_with_arch(densenet, tmp_path):
  result = run_cli("convert", "--arch=densenet121",
                   f"--torch_checkpoint={densenet['path']}",
                   f"--out={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Converted densenet121" in result.stdout
  params = conversion.load_converted(str(tmp_path / "out"))
  assert set(params) == {"body", "batch_stats"}  # no --with_classifier
  np.testing.assert_array_equal(params["body"]["norm5"]["scale"],
                                densenet["params"]["body"]["norm5"]["scale"])


def _one_line_error(result):
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  return lines[0]


def test_cli_refuses_an_arch_outside_the_zoo(densenet, tmp_path):
  result = run_cli("convert", "--arch=vgg17",
                   f"--torch_checkpoint={densenet['path']}",
                   f"--out={tmp_path / 'out'}")
  line = _one_line_error(result)
  assert "--arch='vgg17' is not one of alexnet, vgg16," in line
  assert "did you mean" in line
  assert not (tmp_path / "out").exists()


def test_a_resnet50_file_given_as_vgg16_converts_nothing(tmp_path):
  state = torchvision.models.resnet50(weights=None).state_dict()
  path = tmp_path / "resnet50_random.pth"
  torch.save(state, path)
  with pytest.raises(UserError) as error:
    conversion.convert_file(str(path), str(tmp_path / "out"), arch="vgg16")
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith("not a torchvision vgg16 state_dict: it does not "
                            "match --arch=vgg16 (")
  assert "features.0.weight: missing (expected (64, 3, 3, 3))" in message
  assert "conv1.weight: unexpected (64, 3, 7, 7)" in message
  assert "convert it with --arch=resnet50" in message
  assert message.endswith("Nothing was converted")
  assert not (tmp_path / "out").exists()
  # A misshapen array of the right architecture is named with both shapes.
  state["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
  with pytest.raises(UserError, match=r"layer1\.0\.conv2\.weight: shape "
                     r"\(64, 64, 1, 1\), expected \(64, 64, 3, 3\)"):
    conversion.convert({k: v.numpy() for k, v in state.items()},
                       arch="resnet50")


def test_num_batches_tracked_is_optional():
  state = _state_dict(torchvision.models.resnet50(weights=None))
  without = {k: v for k, v in state.items()
             if not k.endswith("num_batches_tracked")}
  a = conversion.convert(state, arch="resnet50")
  b = conversion.convert(without, arch="resnet50")
  assert set(a) == {"body", "batch_stats"}
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# init='imagenet'.

@pytest.fixture(scope="module")
def resnet_converted(tmp_path_factory):
  reference = torch_model("resnet50")
  converted = conversion.convert(_state_dict(reference), True, "resnet50")
  out = tmp_path_factory.mktemp("resnet") / "converted"
  conversion.write(str(out), converted, {"arch": "resnet50"})
  return out, converted


def _fresh_variables(config, num_classes, seed=0):
  """Variables of config.model stacked over one seed, drawn with numpy
  (flax's init compiles a random-number kernel per parameter: 20 s for
  resnet50 on the CPU): small normal weights, BatchNorm scale 1, mean 0,
  var 1."""
  model = models.make_model(config, num_classes)
  size = config.image_size
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, size, size, 3))))
  rng = np.random.default_rng(seed)
  constant = {"scale": 1.0, "var": 1.0, "mean": 0.0}

  def fill(path, leaf):
    name = path[-1].key
    if name in constant:
      value = np.full(leaf.shape, constant[name], np.float32)
    else:
      value = (0.05 * rng.standard_normal(leaf.shape)).astype(np.float32)
    return value[None]

  return jax.tree_util.tree_map_with_path(fill, dict(shapes))


def test_imagenet_init_loads_body_and_statistics_not_the_class_layer(
    resnet_converted, tmp_path):
  out, converted = resnet_converted
  config = tiny_config(model="resnet50", image_size=32, head="",
                       init="imagenet", init_weights=str(out))
  validation.validate(config)
  loaded, source = initialization.load_pretrained(config, str(tmp_path))
  assert set(loaded) == {"body", "batch_stats", "head"}
  fresh = _fresh_variables(config, 10)
  merged = initialization.merge_variables(fresh, loaded, source)
  for name, value in freezing.named_leaves(converted["body"]):
    np.testing.assert_array_equal(
        dict(freezing.named_leaves(merged["params"]["body"]))[name][0], value)
  merged_stats = dict(freezing.named_leaves(merged["batch_stats"]))
  for name, value in freezing.named_leaves(converted["batch_stats"]):
    np.testing.assert_array_equal(merged_stats[name][0], value)
  assert np.abs(merged_stats["body/bn1/var"][0] - 1).max() > 0.1  # not fresh
  # fc has 1000 outputs in the file, 10 here: it stays fresh.
  np.testing.assert_array_equal(merged["params"]["head"]["fc"]["kernel"],
                                fresh["params"]["head"]["fc"]["kernel"])


def test_imagenet_weights_of_another_arch_are_refused(resnet_converted,
                                                      tmp_path):
  out, _ = resnet_converted
  config = tiny_config(model="densenet121", image_size=32, init="imagenet",
                       init_weights=str(out))
  with pytest.raises(UserError) as error:
    initialization.load_pretrained(config, str(tmp_path))
  message = str(error.value)
  assert "resnet50 weights" in message and "config.model='densenet121'" in message
  assert "--arch=densenet121" in message
  # A conversion from before --arch is AlexNet's.
  old = tmp_path / "alexnet"
  conversion.write(str(old), {"body": {"conv1": {"bias": np.zeros(64)}}}, {})
  with pytest.raises(UserError, match="alexnet weights.*config.model='resnet50'"):
    initialization.load_pretrained(
        tiny_config(model="resnet50", image_size=32, init="imagenet",
                    init_weights=str(old)), str(tmp_path))


# ---------------------------------------------------------------------------
# Training with a frozen body.

def test_frozen_body_keeps_params_and_statistics_while_the_head_trains():
  config = tiny_config(model="resnet50", image_size=32, freeze="head",
                       batch_size=4, cache_features=False)
  setup, init_state = training.build_setup(config, 10, steps_per_epoch=1,
                                           batch_size=4, learning_rate=1e-2)
  fresh = _fresh_variables(config, 10)
  keys = training.RunKeys.from_seeds([0])
  state = jax.jit(init_state)(keys.init, fresh["params"], fresh["batch_stats"])
  # Every BatchNorm is in the body, so every one runs frozen.
  assert set(setup.model.frozen_norms) == set(
      models.norm_module_paths(state.batch_stats)) == set(
          models.resnet.norm_paths())
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 4, dtype=np.int32))
  state = jax.jit(training.make_train_step(setup))(
      state, images, labels, jnp.arange(4)[None], keys.augment)
  params, stats = jax.tree.map(np.asarray, (state.params, state.batch_stats))
  trained = dict(freezing.named_leaves(params))
  for name, value in freezing.named_leaves(fresh["params"]):
    if name.startswith("body/"):
      assert trained[name].tobytes() == value.tobytes(), name
    else:
      assert not np.array_equal(trained[name], value), name
  kept = dict(freezing.named_leaves(stats))
  for name, value in freezing.named_leaves(fresh["batch_stats"]):
    assert kept[name].tobytes() == value.tobytes(), name
  # Without frozen norms, training mode does move the statistics (PyTorch's
  # momentum 0.1: a tenth of the batch's) and a wrong path is refused.
  model = models.make_model(config, 10)
  one = jax.tree.map(lambda a: a[0], fresh)
  _, updated = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=["batch_stats"]))(
          one, np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(
              np.float32))
  mean = updated["batch_stats"]["body"]["layer1"]["0"]["bn2"]["mean"]
  assert np.abs(np.asarray(mean)).max() > 1e-3
  with pytest.raises(UserError, match="not BatchNorm layers"):
    models.make_model(config, 10, frozen_norms=("body/layer1/0/bn9",))


# ---------------------------------------------------------------------------
# The registry entries.

def _shapes(name, head="", num_classes=7, image_size=None):
  spec = models.get_spec(name)
  size = image_size or max(spec.min_image_size, 32 if name != "alexnet_torchvision" else 64)
  model = models.make_model(_config(model=name, image_size=size, head=head,
                                    head_hidden=512), num_classes)
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize("name", ZOO + ("alexnet_torchvision",))
def test_linear_head_is_one_dense_layer(name):
  variables = _shapes(name, head="linear")
  layer = LINEAR_LAYER.get(name, "fc")
  head = jax.tree.map(lambda a: a.shape, variables["params"]["head"])
  assert head == {layer: {"kernel": (FEATURES[name], 7), "bias": (7,)}}


def test_mlp_head_is_seed_004s_keras_head():
  """flatten -> Dense(head_hidden, relu) -> Dense(classes), by hand."""
  from jaxtransfer.models.common import MLPHead
  head = MLPHead(7, hidden=512)
  features = np.random.default_rng(0).standard_normal((3, 2048)).astype(
      np.float32)
  variables = init_variables(head, jax.random.key(0), features)
  p = variables["params"]
  assert jax.tree.map(lambda a: a.shape, p) == {
      "fc1": {"kernel": (2048, 512), "bias": (512,)},
      "fc2": {"kernel": (512, 7), "bias": (7,)}}
  hidden = np.maximum(features @ np.asarray(p["fc1"]["kernel"])
                      + np.asarray(p["fc1"]["bias"]), 0)
  want = hidden @ np.asarray(p["fc2"]["kernel"]) + np.asarray(p["fc2"]["bias"])
  np.testing.assert_allclose(head.apply(variables, features), want,
                             rtol=1e-4, atol=1e-5)
  assert jax.tree.map(lambda a: a.shape, _shapes(
      "resnet50", head="mlp")["params"]["head"]) == {
          "fc1": {"kernel": (2048, 512), "bias": (512,)},
          "fc2": {"kernel": (512, 7), "bias": (7,)}}


def test_unknown_heads_are_user_errors_naming_the_field():
  with pytest.raises(UserError, match=r"config.head='bogus'.*'resnet50'"):
    models.make_model(_config(head="bogus"), 10)
  with pytest.raises(UserError) as error:
    validation.validate(tiny_config(model="vgg16", image_size=32, head="bogus"))
  assert str(error.value).startswith("config.head='bogus'")
  assert "'linear'" in str(error.value)
  with pytest.raises(UserError, match="config.head='linear'"):
    validation.validate(tiny_config(model="alexnet", head="linear"))
  validation.validate(tiny_config(model="resnet50", image_size=32,
                                 head="linear"))


@pytest.mark.parametrize("name", ZOO)
def test_registry_entries(name):
  spec = models.get_spec(name)
  assert spec.input_channels == 3
  assert spec.heads == (("", "linear", "mlp") if name == "resnet50"
                        else ("", "linear"))
  assert spec.pretrained_inits == ("imagenet", "checkpoint")
  assert spec.default_dropout == (0.5 if name.startswith("vgg") else 0.0)
  assert spec.min_image_size == {"resnet50": 1, "densenet121": 29}.get(name, 32)
  variables = _shapes(name)
  params = variables["params"]
  assert set(params) == {"body", "head"}
  # frozen_norms are checked against the BatchNorms the model really has.
  norms = models.norm_module_paths(variables.get("batch_stats", {}))
  module = {"resnet50": models.resnet, "densenet121": models.densenet}.get(name)
  expected = (module.norm_paths() if module else models.vgg.norm_paths(name))
  assert sorted(norms) == sorted(expected)
  assert (len(norms) > 0) == (name in BN_ARCHS)
  assert set(variables.get("batch_stats", {"body": 0})) == {"body"}
  for preset, rules in spec.freeze_presets.items():
    mask = dict(freezing.named_leaves(
        freezing.trainable_mask(params, rules)))  # raises on a gap
    body = [t for n, t in mask.items() if n.startswith("body/")]
    head = [t for n, t in mask.items() if n.startswith("head/")]
    if preset == "none":
      assert all(body) and all(head)
    elif preset == "head":
      assert not any(body) and all(head)
    else:
      assert any(body) != all(body) or not any(body)
      assert any(head)
