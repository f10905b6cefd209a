"""BatchNorm and dropout through the whole program (seed 004's AlexNet-BN on
real CIFAR-10): seeds side by side, the feature cache, several devices and
--mode=eval all work with them, and frozen BatchNorm layers stay frozen."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, needs_cifar10, run_cli, tiny_config
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import experiment, training

COMPARED = ("epoch", "step", "train_loss", "train_accuracy", "val_loss",
            "val_accuracy")
# 96 training images (3 steps an epoch): the tests compare runs with each
# other, not what they learn.
BN = dict(model="alexnet_bn", image_size=32, bn_momentum=0.9, train_subset=96)


def _pick(records, seed):
  return [{k: r[k] for k in COMPARED} for r in records if r["seed"] == seed]


@needs_cifar10
def test_each_seed_of_a_vectorised_bn_run_equals_that_seed_alone(tmp_path):
  """Dropout masks and batch statistics are each seed's own: bit-identical
  to the seed trained alone (unroll)."""
  common = dict(num_epochs=1, seed_parallelism="unroll", **BN)
  both = training.train_and_evaluate(tiny_config(num_seeds=2, **common),
                                     str(tmp_path / "both"))
  alone = training.train_and_evaluate(tiny_config(seed=1, **common),
                                      str(tmp_path / "alone"))
  assert _pick(both, 1) == _pick(alone, 1)
  assert _pick(both, 0) != _pick(both, 1)
  stats_both = checkpoints.load_batch_stats(str(tmp_path / "both"))
  stats_alone = checkpoints.load_batch_stats(str(tmp_path / "alone"))
  for a, b in zip(jax.tree.leaves(stats_both), jax.tree.leaves(stats_alone)):
    np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[0])


@needs_cifar10
def test_frozen_bn_body_stays_frozen_and_the_feature_cache_agrees(tmp_path):
  common = dict(freeze="head", num_epochs=2, **BN)
  cached = training.train_and_evaluate(tiny_config(**common),
                                       str(tmp_path / "cached"))
  direct = training.train_and_evaluate(
      tiny_config(cache_features=False, **common), str(tmp_path / "direct"))
  assert cached[0]["features_cached"] and not direct[0]["features_cached"]
  for a, b in zip(cached, direct):
    for key in ("train_loss", "val_loss"):  # same maths, other batching
      assert a[key] == pytest.approx(b[key], rel=1e-5), key
  # The frozen body's BatchNorm statistics are still the initial ones (0, 1)
  # while the head's moved.
  stats = checkpoints.load_batch_stats(str(tmp_path / "direct"))
  for name, layer in stats["body"].items():
    np.testing.assert_array_equal(np.asarray(layer["mean"]), 0.0, err_msg=name)
    np.testing.assert_array_equal(np.asarray(layer["var"]), 1.0, err_msg=name)
  assert np.abs(np.asarray(stats["head"]["bn6"]["mean"])).max() > 0
  # --mode=eval restores the statistics and reproduces the logged numbers.
  for run, history in (("cached", cached), ("direct", direct)):
    result = experiment.evaluate(tiny_config(**common, **(
        {} if run == "cached" else {"cache_features": False})),
        str(tmp_path / run))[0]
    assert result["val_loss"] == pytest.approx(history[-1]["val_loss"],
                                               rel=1e-6)
    assert result["val_accuracy"] == history[-1]["val_accuracy"]


@needs_cifar10
def test_eight_devices_train_a_bn_model_like_one(tmp_path):
  """BatchNorm's batch statistics are over the global batch (jit's global
  view), so 8 devices compute what 1 does, to float rounding: the loss of
  the first step and the validation loss after it agree to 1e-5. Only one
  step: this network at initialisation is chaotic under training (measured:
  a 1e-7 relative change of the initial weights on one device moves the
  third step's loss by 1%, with SGD or Adam), so longer runs on any two
  reduction orders part ways, as any two float implementations would."""
  args = ("--config=configs/default.py:smoke", "--config.model=alexnet_bn",
          "--config.image_size=32", "--config.train_subset=32",
          "--config.val_subset=64", "--config.batch_size=32",
          "--config.eval_batch_size=64", "--config.num_epochs=1",
          "--config.optimizer=sgd", "--config.progress_bar=False")
  # One device, a process's default: forked from the CLI server. Eight: a
  # fresh process, since XLA reads its flags once.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  results = [
      run_cli(*args, f"--workdir={tmp_path / '1'}"),
      subprocess.run([sys.executable, "-m", "jaxtransfer.main", *args,
                      f"--workdir={tmp_path / '8'}"], cwd=REPO_ROOT, env=env,
                     capture_output=True, text=True, timeout=600)]
  for result in results:
    assert result.returncode == 0, result.stderr[-3000:]
  one, eight = (json.loads((tmp_path / d / "metrics.jsonl").read_text()
                           .splitlines()[-1]) for d in ("1", "8"))
  assert eight["devices"] == 8 and one["devices"] == 1
  assert one["step"] == eight["step"] == 1
  for key in ("train_loss", "val_loss"):
    assert eight[key] == pytest.approx(one[key], rel=1e-5), key
