"""Seeds trained side by side equal seeds trained alone; the study grid runs,
resumes after a kill, skips arms without input, and reports."""

import json
import os
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import readme_commands
from conftest import (REPO_ROOT, SMALL_NET, needs_cifar10, run_command,
                      tensorboard_scalars, tiny_config)
from jaxtransfer.engine import run_setup, training
from jaxtransfer.study import report

COMPARED = ("epoch", "step", "train_loss", "train_accuracy", "val_loss",
            "val_accuracy")


def _pick(records, seed):
  return [{k: r[k] for k in COMPARED} for r in records if r["seed"] == seed]


@needs_cifar10
def test_each_seed_of_a_vectorised_run_equals_that_seed_alone(tmp_path):
  """The real loop on real data, 2 epochs with augmentation: bit-identical."""
  common = dict(num_epochs=2, seed_parallelism="unroll",
                **{"augment.hflip": True}, **SMALL_NET)
  vectorised = training.train_and_evaluate(tiny_config(num_seeds=2, **common),
                                           str(tmp_path / "both"))
  assert sorted({r["seed"] for r in vectorised}) == [0, 1]
  for seed in (0, 1):
    alone = training.train_and_evaluate(tiny_config(seed=seed, **common),
                                        str(tmp_path / f"seed{seed}"))
    assert [r["epoch"] for r in _pick(vectorised, seed)] == [1, 2]
    assert _pick(vectorised, seed) == _pick(alone, seed)
  # The two seeds really differ (own init, order and augmentation).
  assert _pick(vectorised, 0)[-1]["train_loss"] != _pick(vectorised, 1)[-1]["train_loss"]


def _stacked_step_result(seeds, strategy):
  config = tiny_config(seed_parallelism=strategy, num_seeds=len(seeds),
                       **{"augment.hflip": True, "augment.rotate": True},
                       **SMALL_NET)
  setup, init_state = training.build_setup(config, 10, 10, 32, 1e-3)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (320, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 320, dtype=np.int32))
  keys = training.RunKeys.from_seeds(seeds)
  orders = jax.vmap(lambda k: training.epoch_order(k, 0, 320, 320))(keys.data)
  step = jax.jit(training.make_train_step(setup))
  # Compiled as a run's initialisation is (tests/model_init.py says why).
  init_state = jax.jit(init_state, compiler_options=run_setup.RUN_ONCE)
  return step(init_state(keys.init), images, labels, orders, keys.augment)


@pytest.mark.parametrize("strategy", ["vmap", "unroll"])
def test_vectorised_step_matches_the_single_seed_step(strategy):
  """vmap batches the seeds' kernels (grouped convolutions): the same maths,
  other float rounding. Adam's first step is ~lr * sign(gradient), so where a
  gradient is at rounding level (~eps, near-dead units) rounding can move that
  weight by up to ~lr: seen with seed 000's AlexNet for at most 0.26% of a
  layer's weights, by at most 0.015 lr; with this two-layer net (2026-12-07)
  no weight by more than 0.0004 lr. A mixed-up init, order or augmentation
  key moves nearly every weight by ~lr (1e-3) or more. Bound: at most 1% of
  each layer's weights may differ by more than lr/1000. (Over many steps the
  differences grow; the loop on CPU uses 'unroll', which is bit-identical.)"""
  learning_rate = 1e-3
  both = _stacked_step_result([3, 4], strategy)
  for index, seed in enumerate((3, 4)):
    alone = _stacked_step_result([seed], strategy)
    for got, want in zip(jax.tree.leaves(both.params), jax.tree.leaves(alone.params)):
      difference = np.abs(np.asarray(got[index]) - np.asarray(want[0]))
      assert np.mean(difference > learning_rate / 1000) <= 0.01
      assert difference.max() <= learning_rate
    assert float(both.metric_sums["loss_sum"][index]) == pytest.approx(
        float(alone.metric_sums["loss_sum"][0]), rel=1e-6)
  assert not np.allclose(np.asarray(both.params["head"]["fc2"]["kernel"][0]),
                         np.asarray(both.params["head"]["fc2"]["kernel"][1]))


# README's study command (`configs/study.py:smoke`: 2 seeds), made smaller.
SHRINK = ("--config.study.freezes=('head','head+conv5')",
          "--config.train_subset=160", "--config.val_subset=100",
          "--config.batch_size=32", "--config.num_epochs=2",
          "--config.pretrain.num_epochs=1", "--config.progress_bar=False")


def _study(workdir) -> list[str]:
  return [*readme_commands.argv("configs/study.py:smoke",
                                **{"workdirs/study_smoke": str(workdir)}),
          *SHRINK]


def _mtime(path):
  return os.stat(path).st_mtime_ns if os.path.exists(path) else None


@needs_cifar10
def test_study_runs_the_grid_resumes_after_a_kill_and_reports(tmp_path):
  workdir = tmp_path / "study"
  # Start, and kill the study while its second arm trains.
  process = subprocess.Popen(_study(workdir), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  second = workdir / "random-head+conv5" / "metrics.jsonl"
  deadline = time.time() + 400
  while time.time() < deadline and process.poll() is None and not second.exists():
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  first_done = workdir / "random-head" / "metrics.jsonl"
  assert first_done.exists(), "killed before the first arm finished"
  first_mtime = _mtime(first_done)

  result = run_command(_study(workdir), timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert _mtime(first_done) == first_mtime  # finished arm skipped, not retrained

  plan = json.loads((workdir / "study.json").read_text())
  names = [a["name"] for a in plan["arms"]]
  assert names == ["random-head", "random-head+conv5", "imagenet-head",
                   "imagenet-head+conv5", "autoencoder-head",
                   "autoencoder-head+conv5"]
  ran = [a["name"] for a in plan["arms"] if a["status"] == "done"]
  assert ran == ["random-head", "random-head+conv5", "autoencoder-head",
                 "autoencoder-head+conv5"]
  for name in ran:
    records = [json.loads(l) for l in (workdir / name / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["epoch"], r["seed"]) for r in records) == [
        (1, 0), (1, 1), (2, 0), (2, 1)]
    # TensorBoard: a run per seed, each epoch once (the killed arm included).
    for seed in (0, 1):
      mine = [r for r in records if r["seed"] == seed]
      scalars = tensorboard_scalars(workdir / name / "tensorboard" / f"seed_{seed}")
      assert scalars["val/loss"] == [
          (r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in mine]
  # One autoencoder, shared: both autoencoder arms start from its run.
  for name in ("autoencoder-head", "autoencoder-head+conv5"):
    config = json.loads((workdir / name / "config.json").read_text())
    assert config["ae_checkpoint"] == str(workdir / "autoencoder")
  assert len(os.listdir(workdir / "autoencoder" / "checkpoints")) >= 1

  text = (workdir / "report.md").read_text()
  for name in ran:
    assert f"| {name} |" in text
  assert "skipped **imagenet-head**: no converted ImageNet weights" in text
  assert "160 training images" in text and "2 seeds" in text
  for png in ("val_loss.png", "val_accuracy.png", "autoencoder_reconstructions.png"):
    assert (workdir / png).stat().st_size > 10_000
  # The report is rebuilt from the files alone.
  for file in ("report.md", "val_loss.png", "val_accuracy.png"):
    (workdir / file).unlink()
  rebuilt = run_command(  # README's report command
      readme_commands.argv("jaxtransfer report",
                           **{"workdirs/study_smoke": str(workdir)}),
      timeout=600)
  assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
  assert (workdir / "report.md").read_text() == text
  assert (workdir / "val_loss.png").exists()


def test_summary_statistics_over_seeds():
  records = []
  for seed, losses in ((0, [2.0, 1.5, 1.7]), (1, [2.2, 1.9, 1.6])):
    for epoch, loss in enumerate(losses, start=1):
      records.append({"seed": seed, "epoch": epoch, "val_loss": loss,
                      "val_accuracy": 0.1 * epoch + 0.01 * seed,
                      "epoch_seconds": 3.0, "compile_seconds": 2.0,
                      "trainable_parameters": 10})
  summary = report.summarize_arm(records)
  assert summary["best_val_loss"][0] == pytest.approx((1.5 + 1.6) / 2)
  assert summary["best_val_loss"][1] == pytest.approx(0.05)
  assert summary["best_epoch"] == (pytest.approx(2.5), pytest.approx(0.5))
  assert summary["final_val_accuracy"][0] == pytest.approx(0.305)
  epochs, values = report.curves(records, "val_loss")
  assert epochs.tolist() == [1, 2, 3] and values.shape == (2, 3)
