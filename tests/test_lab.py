"""The lab's common ground on real CIFAR-10: a BatchNorm + dropout model with
SGD and a step schedule trains, beats chance and resumes bit-identically
after a kill; a study over two fields that are neither init nor freeze
reports them as columns and plot axes; --mode=eval does not read the
training split."""

import json
import random

import jax
import numpy as np
import pytest

from benchmarks import kill_resume
from conftest import (SMALL_NET, SMALL_NET_FLAGS, needs_cifar10, run_cli,
                      tiny_config)
from test_interrupts import assert_resumed_from_the_checkpoint
from jaxtransfer import data
from jaxtransfer.core import checkpoints, configlib, workdir as workdir_lib
from jaxtransfer.engine import experiment, training
from jaxtransfer.study import runner
from jaxtransfer.core.errors import UserError

BN_ARGS = ("--config=configs/default.py:smoke", "--config.model=alexnet_bn",
           "--config.image_size=32", "--config.optimizer=sgd",
           "--config.lr_schedule=step", "--config.learning_rate=0.01",
           "--config.lr_step_epochs=2", "--config.train_subset=640",
           "--config.val_subset=500", "--config.batch_size=32",
           "--config.num_epochs=3", "--config.keep_checkpoints=1",
           "--config.progress_bar=False", "--config.augment.hflip=True")


def _batch_stats_bytes(workdir):
  stats = checkpoints.load_batch_stats(str(workdir))
  return [np.asarray(a).tobytes() for a in jax.tree.leaves(stats)]


@pytest.fixture(scope="module")
def bn_reference(tmp_path_factory):
  """The run uninterrupted (forked from the CLI server; the killed and
  resumed runs are fresh processes)."""
  workdir = tmp_path_factory.mktemp("bn") / "w"
  result = run_cli(*BN_ARGS, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@needs_cifar10
def test_alexnet_bn_sgd_step_schedule_trains_and_beats_chance(bn_reference):
  records = [json.loads(l) for l in
             (bn_reference / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2, 3]
  # The step schedule: x0.1 after 2 epochs, logged per epoch.
  assert [r["learning_rate"] for r in records] == pytest.approx([0.01, 0.01, 0.001])
  # chance is 0.1 (2026-12-07, 640 images: 0.104, 0.234, 0.262 by epoch)
  assert records[-1]["val_accuracy"] > 0.2
  stats = checkpoints.load_batch_stats(str(bn_reference))
  assert set(stats) == {"body", "head"} and "bn1" in stats["body"]
  # The running statistics moved away from their initial values (0 / 1).
  assert np.abs(np.asarray(stats["body"]["bn1"]["mean"])).max() > 1e-3


@needs_cifar10
def test_alexnet_bn_killed_run_resumes_bit_identical(bn_reference, tmp_path):
  # Killed at a known point: a seeded moment in the epoch after the first
  # complete checkpoint (a delay from the start could land before any
  # checkpoint, and the "resume" would be a fresh run).
  second = workdir_lib.read_metrics(str(bn_reference))[1]
  delay = random.Random(3).uniform(0.1, 0.9) * (
      second["epoch_seconds"] + second["eval_seconds"])
  what = kill_resume.kill_once(str(tmp_path), delay, BN_ARGS,
                               after_checkpoint=True)
  assert what.startswith("killed"), what
  # It resumed from the newest complete checkpoint the kill left, an epoch
  # end before the last (640 // 32 steps an epoch), not from scratch.
  step = assert_resumed_from_the_checkpoint(tmp_path, BN_ARGS)
  assert step % (640 // 32) == 0 and step < 3 * (640 // 32), what
  assert kill_resume.identical(kill_resume.outcome(str(tmp_path)),
                               kill_resume.outcome(str(bn_reference)))
  assert _batch_stats_bytes(tmp_path) == _batch_stats_bytes(bn_reference)


@needs_cifar10
def test_grid_study_over_two_other_fields_reports_them(tmp_path):
  # The grid's plan, configs and report: not what it learns (160 images,
  # the two-layer net, conftest.SMALL_NET, instead of AlexNet-BN).
  result = run_cli("--config=configs/grid.py:smoke,num_seeds=1",
                   *SMALL_NET_FLAGS,
                   "--config.train_subset=160", "--config.val_subset=100",
                   "--config.batch_size=32", "--config.num_epochs=1",
                   "--config.progress_bar=False", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  plan = json.loads((tmp_path / "study.json").read_text())
  assert plan["axes"] == ["optimizer", "kernel_init"]
  assert sorted(a["name"] for a in plan["arms"]) == sorted(
      ["sgd-he_normal", "sgd-glorot_uniform", "adam-he_normal",
       "adam-glorot_uniform"])
  for arm in plan["arms"]:
    config = json.loads((tmp_path / arm["name"] / "config.json").read_text())
    assert config["optimizer"] == arm["values"]["optimizer"]
    assert config["kernel_init"] == arm["values"]["kernel_init"]
  report_text = (tmp_path / "report.md").read_text()
  header = next(l for l in report_text.splitlines() if l.startswith("| arm |"))
  assert "| optimizer | kernel_init |" in header
  assert "| sgd-he_normal | sgd | he_normal |" in report_text
  assert (tmp_path / "val_loss.png").stat().st_size > 10_000


def test_grid_arms_names_and_bad_fields():
  from configs import default
  import ml_collections
  config = default.get_config()
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.grid = {"learning_rate": (0.1, 0.01), "augment": {"hflip": (False, True)}}
  arms = runner.plan_arms(config)
  assert [a.name for a in arms] == [
      "hflip=False-learning_rate=0.1", "hflip=False-learning_rate=0.01",
      "hflip=True-learning_rate=0.1", "hflip=True-learning_rate=0.01"]
  run = runner.arm_config(config, arms[2], "/tmp/unused")
  assert run.augment.hflip is True and run.learning_rate == 0.1
  assert "study" not in run
  with config.unlocked():
    config.study = ml_collections.ConfigDict(
        {"grid": (("lerning_rate", (0.1,)),)})
  with pytest.raises(UserError, match="did you mean 'learning_rate'"):
    runner.arm_config(config, runner.plan_arms(config)[0], "/tmp/unused")
  # Explicit named arms (seed 001's cases are not a grid).
  with config.unlocked():
    config.study = ml_collections.ConfigDict({"arms": (
        {"name": "case1", "freeze": "none"},
        {"name": "case4", "freeze": "head", "learning_rate": 2.5e-4})})
  arms = runner.plan_arms(config)
  assert [a.name for a in arms] == ["case1", "case4"]
  assert runner.arm_config(config, arms[1], "/tmp/unused").learning_rate == 2.5e-4


@needs_cifar10
def test_eval_does_not_read_the_training_split(tmp_path, monkeypatch):
  config = tiny_config(num_epochs=1, normalization="dataset", **SMALL_NET)
  history = training.train_and_evaluate(config, str(tmp_path))
  assert len(history[-1]["input_mean"]) == 3
  assert workdir_lib.run_pixel_stats(str(tmp_path)) == (
      tuple(history[-1]["input_mean"]), tuple(history[-1]["input_std"]))
  real_load = data.load_dataset
  calls = []

  def guarded(cfg, **kwargs):
    calls.append(kwargs)
    assert kwargs.get("validation_only"), "eval asked for the training split"
    return real_load(cfg, **kwargs)

  monkeypatch.setattr(data, "load_dataset", guarded)
  result = experiment.evaluate(config, str(tmp_path))[0]
  assert calls
  # The same numbers the loop logged, with the recorded dataset statistics.
  assert result["val_loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-6)
  assert result["val_accuracy"] == history[-1]["val_accuracy"]


def test_run_pixel_stats_reads_the_last_record_only(tmp_path):
  run = str(tmp_path)
  assert workdir_lib.run_pixel_stats(run) is None  # no metrics.jsonl yet
  workdir_lib.append_metrics(run, {"epoch": 1, "input_mean": [0.1, 0.2, 0.3],
                                   "input_std": [0.4, 0.5, 0.6]})
  workdir_lib.append_metrics(run, {"epoch": 2, "input_mean": [0.7, 0.8, 0.9],
                                   "input_std": [1.0, 1.1, 1.2]})
  assert workdir_lib.run_pixel_stats(run) == ((0.7, 0.8, 0.9), (1.0, 1.1, 1.2))
  # A run without 'dataset' normalisation records no statistics.
  workdir_lib.append_metrics(run, {"epoch": 3})
  assert workdir_lib.run_pixel_stats(run) is None


def test_a_run_from_before_the_new_fields_is_the_same_run():
  """Old workdirs resume: a stored config without the lab's new fields (and
  with the old mean/std) is not a different experiment."""
  from configs import default
  new = configlib.to_dict(default.get_config())
  old = {k: v for k, v in new.items() if k not in workdir_lib.LEGACY_DEFAULTS}
  old.update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
  assert workdir_lib.identity_changes(old, new) == []
  changed = dict(new, optimizer="sgd")
  assert workdir_lib.identity_changes(old, changed) == ["optimizer: 'adam' -> 'sgd'"]


def test_report_scale_line_names_the_selected_classes_and_swept_fields():
  from jaxtransfer.study import report
  line = report._scale_line(
      {"dataset": "cifar10", "classes": ["cat", "dog"],
       "class_fraction": {"cat": 0.5}, "validation": "test", "image_size": 32,
       "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.01},
      {"epochs": 2, "num_seeds": 1},
      [{"train_examples": 100, "val_examples": 50}], ["optimizer"])
  assert line.startswith("cifar10 classes cat, dog (training fractions cat 0.5)")
  assert "optimizer per arm" in line and "SGD" not in line
  plain = report._scale_line(
      {"dataset": "cifar10", "validation": "test", "image_size": 32,
       "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.01},
      {"epochs": 2, "num_seeds": 1}, None)
  assert plain.endswith("batch 64, SGD lr 0.01")
