"""K-fold cross-validation (kfold.py): stratified folds, all folds side by
side equal to each fold alone, and the study's cross-validation table."""

import jax
import numpy as np
import pytest

from conftest import SMALL_NET, needs_cifar10, run_cli, tiny_config
from jaxtransfer.core import checkpoints
from jaxtransfer.data import kfold
from jaxtransfer.engine import training, validation
from jaxtransfer.core import workdir as workdir_lib
from jaxtransfer.core.errors import UserError

TIMINGS = {"epoch_seconds", "eval_seconds", "compile_seconds",
           "train_images_per_second", "host_peak_rss_mb", "device_peak_mb",
           "device_data_mb"}  # resources: side by side holds every fold


def test_folds_are_stratified_disjoint_and_fixed():
  labels = np.repeat(np.arange(4), [10, 7, 13, 5])
  folds = kfold.assign(labels, 3)
  together = np.concatenate(folds)
  assert sorted(together) == list(range(len(labels)))  # a partition
  sizes = [len(f) for f in folds]
  assert max(sizes) - min(sizes) <= 1
  for c, count in enumerate([10, 7, 13, 5]):  # each class spread evenly
    per_fold = [int(np.sum(labels[f] == c)) for f in folds]
    assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == count
  again = kfold.assign(labels, 3)
  assert all(np.array_equal(a, b) for a, b in zip(folds, again))
  other = kfold.assign(labels, 5)
  assert len(other) == 5


def _config(**overrides):
  settings = dict(**SMALL_NET, train_subset=300,
                  val_subset=100, batch_size=25, num_epochs=2,
                  optimizer="adam", learning_rate=1e-3, validation="kfold",
                  folds=3, fold=-1, seed_parallelism="unroll")
  return tiny_config(**{**settings, **overrides})


def _strip(records):
  return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


@needs_cifar10
def test_side_by_side_fold_k_is_fold_k_alone(tmp_path):
  """300 images, 3 stratified folds of exactly 100: model k of the side-by-
  side run trains on the same 200 images in the same order as the run of
  fold k alone seeded k, so (unrolled) the two are bit-identical."""
  config = _config()
  validation.validate(config)
  history = training.train_and_evaluate(config, str(tmp_path / "all"))
  assert [r["fold"] for r in history[:3]] == [0, 1, 2]
  assert [r["seed"] for r in history[:3]] == [0, 1, 2]
  assert {r["val_examples"] for r in history} == {100}
  assert {r["train_examples"] for r in history} == {200}
  params = checkpoints.load_params(str(tmp_path / "all"))[0]
  for fold in (0, 2):
    alone_config = _config(fold=fold, seed=fold)
    alone = training.train_and_evaluate(alone_config, str(tmp_path / f"f{fold}"))
    mine = [r for r in history if r["fold"] == fold]
    assert _strip(mine) == _strip(alone)
    theirs = checkpoints.load_params(str(tmp_path / f"f{fold}"))[0]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(theirs)):
      np.testing.assert_array_equal(np.asarray(a)[fold], np.asarray(b)[0])
  # The folds really validate on different images.
  last = history[-3:]
  assert len({r["val_loss"] for r in last}) == 3
  # --mode=eval evaluates each model on its own fold (and all on the test
  # split), reproducing the logged numbers.
  from jaxtransfer.engine import experiment
  evaluated = experiment.evaluate(config, str(tmp_path / "all"))
  for result, record in zip(evaluated, last):
    assert result["val_loss"] == pytest.approx(record["val_loss"], rel=1e-6)
    assert result["test_examples"] == 100


def test_bad_kfold_settings_name_the_field():
  with pytest.raises(UserError, match="config.folds=1: k-fold"):
    validation.validate(_config(folds=1))
  with pytest.raises(UserError, match=r"config.fold=3: must be -1 \(all 3"):
    validation.validate(_config(fold=3))
  with pytest.raises(UserError, match="config.num_seeds=2: must be 1 with "
                     "fold=-1"):
    validation.validate(_config(num_seeds=2))
  validation.validate(_config(num_seeds=2, fold=1))  # one fold, two seeds


@needs_cifar10
def test_kfold_study_marks_the_cross_validation_choice(tmp_path):
  workdir = tmp_path / "cv"
  # Two small heads, not the smoke's linear, hidden512 and wide2048 (16.8M
  # weights per fold): 37 s instead of 63 s alone here
  result = run_cli("--config=configs/sweeps/kfold.py:smoke,"
                   "arms=linear+hidden64", "--config.num_epochs=1",
                   "--config.train_subset=300", "--config.val_subset=100",
                   f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  report = (workdir / "report.md").read_text()
  assert "## Cross-validation (final epoch, mean ± std over folds)" in report
  rows = [line for line in report.splitlines()
          if line.startswith("| ") and "**chosen**" in line]
  assert len(rows) == 1
  chosen = rows[0].split("|")[1].strip()
  # The chosen arm has the highest mean validation accuracy over its folds.
  means = {}
  for arm_dir in workdir.iterdir():
    if (arm_dir / "metrics.jsonl").exists() and arm_dir.name != "sweep_0":
      records = workdir_lib.read_metrics(arm_dir)
      last = max(r["epoch"] for r in records)
      finals = [r["val_accuracy"] for r in records if r["epoch"] == last]
      means[arm_dir.name] = np.mean(finals)
      assert len(finals) == 3  # one per fold
  assert means[chosen] == pytest.approx(max(means.values()))
