"""Seed 002's VGG16 / ResNet50 encoders with the 5-layer transposed-conv
decoder (models/zoo_joint.py, configs/joint/zoo.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import needs_cifar10, run_cli
from model_init import init_variables
from configs import default
from configs.joint import zoo
from jaxtransfer import models
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import freezing, validation
from jaxtransfer.study import planning
from jaxtransfer.core.errors import UserError
from jaxtransfer.models import zoo_joint


def _config(model, image_size, **overrides):
  config = default.get_config()
  config.model, config.task, config.image_size = model, "joint", image_size
  for key, value in overrides.items():
    config[key] = value
  return config


def _shapes(config, num_classes=10):
  model = models.make_model(config, num_classes)
  size = config.image_size
  x = jnp.zeros((2, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  outputs = jax.eval_shape(lambda v: model.apply(v, x), variables)
  return variables, outputs


@pytest.mark.parametrize("kernel_init", ["torch", "he_normal"])
def test_conv_transpose_is_torchs_on_both_paths(kernel_init, monkeypatch):
  torch = pytest.importorskip("torch")
  x = np.random.RandomState(0).randn(2, 3, 5, 4).astype(np.float32)
  decoder = zoo_joint.TransposedDecoder((6, 3), kernel_init)
  variables = init_variables(decoder, jax.random.key(0), x)
  layers = [torch.nn.ConvTranspose2d(4, 6, 4, 2, 1),
            torch.nn.ConvTranspose2d(6, 3, 4, 2, 1)]
  with torch.no_grad():
    for layer, name in zip(layers, ("deconv1", "deconv2")):
      params = variables["params"][name]
      layer.weight.copy_(torch.tensor(
          np.asarray(params["kernel"]).transpose(2, 3, 0, 1).copy()))
      layer.bias.copy_(torch.tensor(np.asarray(params["bias"])))
    expected = layers[1](torch.relu(layers[0](
        torch.tensor(x.transpose(0, 3, 1, 2))))).numpy().transpose(0, 2, 3, 1)
  assert expected.shape == (2, 12, 20, 3)
  cpu = np.asarray(decoder.apply(variables, x))  # matmul + overlap-add
  np.testing.assert_allclose(cpu, expected, atol=2e-6, rtol=1e-5)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  lax_path = np.asarray(decoder.apply(variables, x))  # lax.conv_transpose
  np.testing.assert_allclose(lax_path, expected, atol=2e-6, rtol=1e-5)


def test_torch_init_has_conv_transposes_spread():
  torch = pytest.importorskip("torch")
  variables = init_variables(zoo_joint.TransposedDecoder((64,)),
                             jax.random.key(0), jnp.zeros((1, 2, 2, 128)))
  ours = variables["params"]["deconv1"]
  theirs = torch.nn.ConvTranspose2d(128, 64, 4, 2, 1)
  bound = 1 / np.sqrt(64 * 16)  # torch's fan-in: out x 4 x 4
  np.testing.assert_allclose(np.std(ours["kernel"]),
                             theirs.weight.detach().std().item(), rtol=0.05)
  assert np.abs(ours["bias"]).max() <= bound < 1.1 * np.abs(ours["bias"]).max()


@pytest.mark.parametrize("model", ["vgg16", "resnet50"])
def test_decoder_is_the_seeds_and_the_rest_is_the_plain_model(model):
  config = _config(model, 224)
  validation.validate(config)
  variables, outputs = _shapes(config)
  assert outputs["logits"].shape == (2, 10)
  assert outputs["reconstruction"].shape == (2, 224, 224, 3)
  decoder = variables["params"]["decoder"]
  widths = [decoder[f"deconv{i}"]["kernel"].shape[-1] for i in range(1, 6)]
  # The seed's C(512)>C(256)>C(128)>C(64)>C(3) / C(1024)>...>C(3).
  assert zoo.DECODER[model] == ">".join(f"C({w})" for w in widths)
  first_in = decoder["deconv1"]["kernel"].shape[2]
  assert first_in == {"vgg16": 512, "resnet50": 2048}[model]
  # body/head (and batch_stats) are the classifier's: converted ImageNet
  # weights and freezing presets apply unchanged.
  plain = config.copy_and_resolve_references()
  plain.task = "classifier"
  plain_variables, _ = _shapes(plain)
  joint_leaves = dict(freezing.named_leaves(
      {k: v for k, v in variables["params"].items() if k != "decoder"}))
  plain_leaves = dict(freezing.named_leaves(plain_variables["params"]))
  assert {k: v.shape for k, v in joint_leaves.items()} == {
      k: v.shape for k, v in plain_leaves.items()}
  assert jax.tree.map(lambda a: a.shape, variables.get("batch_stats", {})) == \
      jax.tree.map(lambda a: a.shape, plain_variables.get("batch_stats", {}))


@pytest.mark.parametrize("size", [48, 16])
def test_image_size_must_be_a_multiple_of_32(size):
  with pytest.raises(UserError, match=f"config.image_size={size}: .*multiple "
                     "of 32"):
    validation.validate(_config("resnet50", size))


def test_study_arms_are_the_seeds_rows(tmp_path):
  weights = tmp_path / "w"
  (weights / "params").mkdir(parents=True)
  config = zoo.get_config(f"model=resnet50,weights={weights}")
  plan, runs, _ = planning.plan_study(config, "/nonexistent/never/written")
  runs = {entry["name"]: (entry, run) for entry, run in runs}
  assert list(runs) == ["beta1", "beta0", "separate", "no_decoder"]
  for name, (entry, run) in runs.items():
    assert (run.model, run.image_size, run.init) == ("resnet50", 224,
                                                     "imagenet")
    assert run.init_weights == str(weights)
    assert entry["notes"]["seed_accuracy"] == f"{zoo.SEED['resnet50'][name]:.2f}"
    assert (run.optimizer, run.learning_rate, run.num_epochs) == ("sgd", 0.01, 40)
  assert runs["beta0"][1].joint.beta == 0.0
  assert runs["no_decoder"][1].task == "classifier"
  assert len(runs["separate"][1].stages) == 2
  with pytest.raises(UserError, match="model='alexnet'"):
    zoo.get_config("model=alexnet")
  # Without weights nothing can run; the error names this model's convert.
  with pytest.raises(UserError, match="convert --arch=resnet50 "):
    planning.plan_study(zoo.get_config("model=resnet50"), "/nonexistent")


@needs_cifar10
def test_resnet50_joint_trains_on_cifar10_and_draws_reconstructions(tmp_path):
  """A real run with BatchNorm: the loss terms are logged, the decoder is
  checkpointed with the model, the report's picture is drawn with the run's
  BatchNorm statistics."""
  workdir = tmp_path / "zoo"
  result = run_cli("--config=configs/joint/zoo.py:smoke,model=resnet50,"
                   "arms=beta1", "--config.train_subset=64",
                   "--config.val_subset=40", "--config.batch_size=16",
                   f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in
             (workdir / "beta1" / "metrics.jsonl").read_text().splitlines()]
  last = records[-1]
  for key in ("train_reconstruction_loss", "train_classification_loss",
              "val_reconstruction_loss", "val_accuracy"):
    assert np.isfinite(last[key]), key
  params, batch_stats, _ = checkpoints.load_variables(str(workdir / "beta1"))
  assert sorted(params["decoder"]) == [f"deconv{i}" for i in range(1, 6)]
  assert "body" in batch_stats
  saved = np.load(workdir / "beta1" / "reconstructions.npz")
  assert saved["reconstructions"].shape[1:] == (32, 32, 3)
  assert saved["reconstructions"].shape == saved["inputs"].shape
  assert (workdir / "beta1_reconstructions.png").stat().st_size > 1000
  assert "beta1_reconstructions.png" in (workdir / "report.md").read_text()
