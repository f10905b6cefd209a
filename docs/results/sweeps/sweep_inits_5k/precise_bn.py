"""Diagnostic for seed 004's 5,000-image sweeps (the initialiser table, and
the regularisation study: workdirs/sweep_reg_5k): test accuracy of each
arm's final weights with BatchNorm's stored running statistics (what the
report gives; Keras's evaluate does the same) and with "precise" ones: the
final weights' own statistics over the first 2,000 training images, in one
pass (bn_momentum 0 for that pass).

  python docs/results/sweeps/sweep_inits_5k/precise_bn.py workdirs/sweep_inits_5k \
      > docs/results/sweeps/sweep_inits_5k/precise_bn.md

A large difference means the running statistics (momentum 0.99, an average
over the last ~100 steps) lag weights that Adam is still moving fast.
"""

import os
import sys

# the repository root, four folders up (docs/results/sweeps/sweep_inits_5k/)
sys.path.insert(0, os.path.abspath(os.path.join(
    os.path.dirname(__file__), *[os.pardir] * 4)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import logging  # noqa: E402

from jaxtransfer import data, models
from jaxtransfer.core import checkpoints, workdir
from jaxtransfer.engine import experiment

STATS_IMAGES = 2000


def _images(source, count):
  images = np.stack([source[i]["image"] for i in range(count)])
  labels = np.array([source[i]["label"] for i in range(count)])
  return images, labels


def _model_inputs(config, run, *image_sets):
  """uint8 image sets -> the model's inputs, as the training step makes
  them (data.to_unit_float, then to_model_input with the run's
  normalisation, read once from its metrics)."""
  channels = models.get_spec(config.model).input_channels
  stats = workdir.run_pixel_stats(run)
  mean, std = data.normalization_constants(config, channels, stats)
  return [data.to_model_input(data.to_unit_float(jnp.asarray(images)),
                              config.image_size, tuple(mean), tuple(std),
                              channels=channels) for images in image_sets]


def main(study_dir: str) -> None:
  logging.set_verbosity(logging.WARNING)
  data_dir = os.environ.get("TFDS_DATA_DIR")
  test_images, test_y = _images(tfds.data_source(
      "cifar10", split="test", data_dir=data_dir), 10000)
  train_images, _ = _images(tfds.data_source(
      "cifar10", split="train", data_dir=data_dir), STATS_IMAGES)
  print("| arm | seed | test % (stored running statistics) | test % (precise statistics) |")
  print("|---|---|---|---|")
  for arm in sorted(os.listdir(study_dir)):
    run = os.path.join(study_dir, arm)
    if not os.path.isdir(os.path.join(run, "checkpoints")) or arm.startswith("sweep_"):
      continue
    config = experiment.config_from_workdir(run)
    test_x, train_x = _model_inputs(config, run, test_images, train_images)
    params, stats, _ = checkpoints.load_variables(run)
    model = models.make_model(config, 10)
    config.unlock()
    config.bn_momentum = 0.0
    one_pass = models.make_model(config, 10)
    predict = jax.jit(lambda p, b, x: jnp.argmax(
        model.apply({"params": p, "batch_stats": b}, x, train=False), -1))
    for seed in range(jax.tree.leaves(params)[0].shape[0]):
      p, b = (jax.tree.map(lambda a: a[seed], t) for t in (params, stats))
      _, fresh = one_pass.apply({"params": p, "batch_stats": b}, train_x,
                                train=True, mutable=["batch_stats"],
                                rngs={"dropout": jax.random.key(0)})
      row = []
      for stats_used in (b, fresh["batch_stats"]):
        hits = sum(int((np.asarray(predict(p, stats_used, test_x[i:i + 500]))
                        == test_y[i:i + 500]).sum()) for i in range(0, 10000, 500))
        row.append(f"{hits / 100:.2f}")
      print(f"| {arm} | {config.seed + seed} | {row[0]} | {row[1]} |", flush=True)


if __name__ == "__main__":
  main(sys.argv[1])
