"""Seed 002's constrained classes: class_fraction, then resample='undersample'
/ 'oversample', and the accuracy per class in the metrics and the report."""

import json

import numpy as np
import pytest

from conftest import SMALL_NET, needs_cifar10, tiny_config
from jaxtransfer import data
from jaxtransfer.engine import tasks
from jaxtransfer.study import runner
from jaxtransfer.core.errors import UserError

CONSTRAINED = {"bird": 0.5, "deer": 0.5, "truck": 0.5}


def _split(counts):
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
  images = np.arange(len(labels), dtype=np.uint8)[:, None, None, None]
  return data.Split(images, labels.astype(np.int32))


def test_resampling_balances_the_classes():
  split = _split([10, 4, 7])
  under = data.resample(split, "undersample", seed=0)
  assert np.bincount(under.labels).tolist() == [4, 4, 4]
  over = data.resample(split, "oversample", seed=0)
  assert np.bincount(over.labels).tolist() == [10, 10, 10]
  # Oversampling repeats each small class whole before drawing the rest;
  # every example of the largest class is kept once.
  ones = over.images[over.labels == 1].ravel()
  assert sorted(np.unique(ones, return_counts=True)[1].tolist()) == [2, 2, 3, 3]
  assert sorted(over.images[over.labels == 0].ravel().tolist()) == list(range(10))
  # Images stay with their labels; seeded.
  np.testing.assert_array_equal(under.labels, split.labels[under.images.ravel()])
  np.testing.assert_array_equal(
      data.resample(split, "undersample", seed=0).images, under.images)
  assert data.resample(split, "", seed=0) is split


def test_per_class_accuracy_by_hand():
  task = tasks.ClassificationTask(num_classes=3)
  logits = np.array([[5, 0, 0], [0, 5, 0], [5, 0, 0], [0, 0, 5]], np.float32)
  labels = np.array([0, 1, 1, 2])
  weights = np.array([1, 1, 1, 0], np.float32)  # the last is padding
  _, sums = task.loss_and_sums(logits, None, labels, weights)
  summary = task.summarize(sums)
  assert summary["class_accuracy"] == [1.0, 0.5, None]
  assert summary["accuracy"] == pytest.approx(2 / 3)


def test_bad_resample_names_the_field():
  with pytest.raises(UserError, match="config.resample='oversampel'.*did you "
                     "mean 'oversample'"):
    data.load_dataset(tiny_config(resample="oversampel"))


@needs_cifar10
def test_constrained_study_reports_accuracy_per_class(tmp_path):
  # A small notation net (the data and the metrics are what is checked)
  config = tiny_config(class_fraction=CONSTRAINED, train_subset=400,
                       val_subset=100, num_epochs=1,
                       per_class_metrics=True, **SMALL_NET)
  with config.unlocked():
    config.study = {"arms": ({"name": "constrained"},
                             {"name": "undersample", "resample": "undersample"},
                             {"name": "oversample", "resample": "oversample"})}
  runner.run(config, str(tmp_path))
  finals = {}
  for name in ("constrained", "undersample", "oversample"):
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    finals[name] = json.loads(lines[-1])
  # 40 per class, bird/deer/truck halved to 20: 340; under: 10 x 20;
  # over: 10 x 40.
  assert finals["constrained"]["train_examples"] == 340
  assert finals["undersample"]["train_examples"] == 200
  assert finals["oversample"]["train_examples"] == 400
  record = finals["oversample"]
  assert record["class_names"][2] == "bird"
  assert len(record["val_class_accuracy"]) == 10
  assert np.mean(record["val_class_accuracy"]) == pytest.approx(
      record["val_accuracy"])  # 10 validation images per class
  text = (tmp_path / "report.md").read_text()
  assert "## Validation accuracy per class" in text
  assert "| arm | airplane | automobile | bird |" in text
