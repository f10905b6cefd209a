"""Seed 002's joint task (config.task='joint'): the mirrored decoder's
shapes, the loss against a hand computation on a tiny batch, and a joint run
on CIFAR-10 whose per-term metrics add up."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SMALL_NET, needs_cifar10, tiny_config
from jaxtransfer import models
from jaxtransfer.engine import tasks, training, validation
from jaxtransfer.core.errors import UserError


def _joint(arch, image_size, **overrides):
  config = tiny_config(model="notation", arch=arch, task="joint",
                       image_size=image_size, **overrides)
  validation.validate(config)
  return config, models.make_model(config, 10)


@pytest.mark.parametrize("arch, size", [("v1", 32), ("v2", 32), ("v2.3", 64),
                                        ("v3.3", 32), ("v4", 32),
                                        ("v4_stride2", 32)])
def test_the_decoder_mirrors_the_encoder(arch, size):
  _, model = _joint(arch, size)
  x = jnp.zeros((2, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, False))
  outputs = jax.eval_shape(lambda v: model.apply(v, x, False), variables)
  assert outputs["logits"].shape == (2, 10)
  assert outputs["reconstruction"].shape == (2, size, size, 3)
  # The encoder numbers convs and linear layers apart (convs come first);
  # the decoder numbers its layers by position.
  encoder = variables["params"]["body"]
  decoder = variables["params"]["decoder"]
  assert len(decoder) == len(encoder)
  encoder = [encoder[k] for k in sorted(encoder, key=lambda n: (
      n.startswith("fc"), int(n.lstrip("convfc"))))]
  decoder = [decoder[k] for k in sorted(decoder, key=lambda n: int(
      n.lstrip("deconvfc")))]
  encoder_inputs = [k["kernel"].shape[-2] if k["kernel"].ndim == 4 else
                    k["kernel"].shape[0] for k in encoder]
  decoder_outputs = [k["kernel"].shape[-1] for k in decoder]
  assert decoder_outputs[::-1] == encoder_inputs


def test_joint_loss_by_hand():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4)).astype(np.float32)
  reconstruction = rng.normal(size=(3, 2, 2, 3)).astype(np.float32)
  inputs = rng.normal(size=(3, 2, 2, 3)).astype(np.float32)
  labels = np.array([0, 3, 1])
  weights = np.array([1.0, 1.0, 0.0], np.float32)  # the last is padding
  task = tasks.JointTask(alpha=0.7, beta=2.0)
  loss, sums = task.loss_and_sums(
      {"logits": jnp.asarray(logits), "reconstruction": jnp.asarray(reconstruction)},
      jnp.asarray(inputs), jnp.asarray(labels), jnp.asarray(weights))
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  ce = -log_softmax[np.arange(3), labels]
  mse = ((reconstruction - inputs) ** 2).mean(axis=(1, 2, 3))
  expected = (0.7 * ce[:2] + 2.0 * mse[:2]).mean()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  summary = task.summarize(jax.device_get(sums))
  np.testing.assert_allclose(summary["classification_loss"], ce[:2].mean(),
                             rtol=1e-6)
  np.testing.assert_allclose(summary["reconstruction_loss"], mse[:2].mean(),
                             rtol=1e-6)
  assert summary["accuracy"] == np.mean(logits[:2].argmax(1) == labels[:2])


@pytest.mark.parametrize("overrides, message", [
    ({"joint.alpha": 0.0, "joint.beta": 0.0}, "alpha=beta=0 trains nothing"),
    ({"joint.beta": -1.0}, r"config.joint.beta=-1.0: a loss weight is >= 0"),
    ({"model": "alexnet", "arch": ""}, "config.task='joint' needs a model "
     "with a decoder"),
])
def test_bad_joint_configs(overrides, message):
  config = tiny_config(**{"model": "notation", "arch": "v4", "task": "joint",
                          "image_size": 32, **overrides})
  with pytest.raises(UserError, match=message):
    validation.validate(config)
    models.make_model(config, 10)


@needs_cifar10
def test_a_joint_run_logs_each_term(tmp_path):
  config = tiny_config(model="notation", arch="v4", task="joint",
                       image_size=32, train_subset=2560, val_subset=500,
                       num_epochs=1, batch_size=64,
                       **{"joint.beta": 0.5, "joint.delta": 0.2})
  record = training.train_and_evaluate(config, str(tmp_path))[-1]
  for split in ("train", "val"):
    np.testing.assert_allclose(
        record[f"{split}_loss"],
        record[f"{split}_classification_loss"]
        + 0.5 * record[f"{split}_reconstruction_loss"]
        + 0.2 * record[f"{split}_jigsaw_loss"], rtol=1e-5)
  # Reconstructing the original from a jumbled image is the harder task.
  assert record["val_jigsaw_loss"] > record["val_reconstruction_loss"]
  assert record["val_accuracy"] > 0.2  # it learned (chance: 0.1)
  # Normalised pixels have variance ~1: the decoder learned to reconstruct.
  assert record["val_reconstruction_loss"] < 0.5


def test_jumble_moves_whole_tiles():
  from jaxtransfer.models.notation import jumble
  images = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  out = np.asarray(jumble(images, 2, jax.random.key(3)))
  for b in range(2):
    tiles = lambda x: sorted(x[i:i + 2, j:j + 2, 0].tobytes()
                             for i in (0, 2) for j in (0, 2))
    assert tiles(out[b]) == tiles(np.asarray(images[b]))  # same tiles
  assert not np.array_equal(out, np.asarray(images))  # moved


def test_jigsaw_term_by_hand():
  rng = np.random.default_rng(1)
  shape = (2, 4, 4, 3)
  outputs = {"logits": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32),
             "reconstruction": jnp.asarray(rng.normal(size=shape), jnp.float32),
             "jigsaw_reconstruction": jnp.asarray(rng.normal(size=shape),
                                                  jnp.float32)}
  inputs = jnp.asarray(rng.normal(size=shape), jnp.float32)
  labels, weights = jnp.array([1, 2]), jnp.ones(2)
  plain, _ = tasks.JointTask(1.0, 0.5).loss_and_sums(outputs, inputs, labels,
                                                     weights)
  with_jigsaw, sums = tasks.JointTask(1.0, 0.5, 0.3).loss_and_sums(
      outputs, inputs, labels, weights)
  jigsaw = np.mean((np.asarray(outputs["jigsaw_reconstruction"])
                    - np.asarray(inputs)) ** 2)
  np.testing.assert_allclose(float(with_jigsaw - plain), 0.3 * jigsaw,
                             rtol=1e-5)
  np.testing.assert_allclose(
      tasks.JointTask(1.0, 0.5, 0.3).summarize(sums)["jigsaw_loss"], jigsaw,
      rtol=1e-6)


def test_jigsaw_grid_must_divide_the_image():
  config = tiny_config(model="notation", arch="v4", task="joint",
                       image_size=32, **{"joint.delta": 1.0,
                                         "joint.jigsaw_grid": 3})
  with pytest.raises(UserError, match=r"config.joint.jigsaw_grid=3: must be "
                     r">= 2 and divide config.image_size=32"):
    validation.validate(config)


@needs_cifar10
def test_blurred_study_report_has_the_seeds_pictures(tmp_path):
  from configs.joint import blurred
  from jaxtransfer.study import runner
  config = blurred.get_config("smoke")
  config.train_subset, config.val_subset, config.num_epochs = 640, 200, 1
  # The two-layer net in v4's place (the arms' arch): the report is checked
  config.encoder = SMALL_NET["encoder"]
  config.classifier = SMALL_NET["classifier"]
  config.progress_bar = False
  runner.run(config, str(tmp_path))
  with np.load(tmp_path / "with_decoder" / "reconstructions.npz") as saved:
    # one validation image per class, in [0, 1], blurred like the data
    assert saved["inputs"].shape == (10, 32, 32, 3)
    assert saved["reconstructions"].shape == (10, 32, 32, 3)
    assert -0.01 < saved["inputs"].min() and saved["inputs"].max() < 1.01
  assert (tmp_path / "with_decoder_reconstructions.png").stat().st_size > 10_000
  # The classifier alone has no decoder and no picture.
  assert not (tmp_path / "no_decoder" / "reconstructions.npz").exists()
  text = (tmp_path / "report.md").read_text()
  assert "## Train vs validation classification loss" in text
  assert (tmp_path / "classification_loss.png").stat().st_size > 10_000
  assert "| with_decoder | 1 |" in text and "60.16" in text
  assert "| no_decoder | 1 |" in text and "55.37" in text
