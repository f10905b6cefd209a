"""Whole runs on real CIFAR-10: the smoke pipeline, eval, resume, workdir safety."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import readme_commands
from conftest import (SMALL_NET, needs_cifar10, run_cli, run_command,
                      tensorboard_scalars, tiny_config)
from jaxtransfer.core import checkpoints, workdir
from jaxtransfer.engine import experiment, initialization
from jaxtransfer.core.errors import UserError

REQUIRED_FIELDS = {"epoch", "train_loss", "train_accuracy", "val_loss",
                   "val_accuracy", "epoch_seconds", "compile_seconds"}


def _metrics(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """README's smoke command, as written (its workdir here)."""
  workdir = tmp_path_factory.mktemp("ae_init_smoke")
  result = run_command(
      readme_commands.argv("configs/ae_init.py:smoke",
                           **{"workdirs/smoke": str(workdir)}), timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@needs_cifar10
def test_smoke_ae_init_writes_metrics_checkpoints_and_beats_chance(smoke_run):
  from configs import ae_init
  config = ae_init.get_config("smoke")
  records = _metrics(smoke_run / "metrics.jsonl")
  assert [r["epoch"] for r in records] == list(range(1, config.num_epochs + 1))
  for record in records:
    assert REQUIRED_FIELDS <= set(record)
    assert record["epoch_seconds"] > 0
  # 10 classes: chance is 0.10. A clear margin, on 1,000 test images.
  assert records[-1]["val_accuracy"] >= 0.2, records[-1]
  assert records[-1]["val_loss"] < records[0]["val_loss"]
  assert os.listdir(smoke_run / "checkpoints")
  ae_records = _metrics(smoke_run / "autoencoder" / "metrics.jsonl")
  assert len(ae_records) == config.pretrain.num_epochs
  assert ae_records[-1]["val_loss"] < ae_records[0]["train_loss"]
  assert os.listdir(smoke_run / "autoencoder" / "checkpoints")


@needs_cifar10
def test_classifier_body_starts_from_the_autoencoder_encoder(smoke_run):
  ae_params, _ = checkpoints.load_params(str(smoke_run / "autoencoder"))
  config = json.loads((smoke_run / "config.json").read_text())
  assert config["init"] == "autoencoder"
  # The classifier trained all layers from the encoder: its body moved, but
  # stays far closer to the encoder than an independent random init would.
  cls_params, _ = checkpoints.load_params(str(smoke_run))
  encoder = np.asarray(ae_params["body"]["conv3"]["kernel"][0])
  trained = np.asarray(cls_params["body"]["conv3"]["kernel"][0])
  correlation = np.corrcoef(encoder.ravel(), trained.ravel())[0, 1]
  assert correlation > 0.5, correlation


@needs_cifar10
def test_eval_mode_reproduces_the_logged_validation_metrics(smoke_run):
  last = _metrics(smoke_run / "metrics.jsonl")[-1]
  result = run_cli("--mode=eval", f"--workdir={smoke_run}")
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["step"] == last["step"]
  assert report["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)
  assert report["val_accuracy"] == last["val_accuracy"]
  assert json.loads((smoke_run / "eval.json").read_text()) == report


@needs_cifar10
def test_eval_best_checkpoint_picks_the_lowest_val_loss(smoke_run):
  records = _metrics(smoke_run / "metrics.jsonl")
  result = run_command(  # README's, as written
      readme_commands.argv("--mode=eval", W=str(smoke_run)), timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  kept = set(int(s) for s in os.listdir(smoke_run / "checkpoints") if s.isdigit())
  best = min((r for r in records if r["step"] in kept),
             key=lambda r: r["val_loss"])
  assert report["step"] == best["step"]
  assert report["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)


@needs_cifar10
def test_resumed_run_continues_the_same_trajectory(tmp_path):
  straight = experiment.train(tiny_config(num_epochs=3, **SMALL_NET),
                              str(tmp_path / "a"))
  experiment.train(tiny_config(num_epochs=2, **SMALL_NET), str(tmp_path / "b"))
  resumed = experiment.train(tiny_config(num_epochs=3, **SMALL_NET),
                             str(tmp_path / "b"))
  assert [r["epoch"] for r in resumed] == [1, 2, 3]
  assert resumed[-1]["steps_in_this_process"] == straight[-1]["steps_in_this_process"]
  for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "step"):
    assert [r[key] for r in resumed] == [r[key] for r in straight], key
  assert _metrics(tmp_path / "b" / "metrics.jsonl") == resumed
  # TensorBoard shows each epoch once, at its step, with the logged values.
  scalars = tensorboard_scalars(tmp_path / "b" / "tensorboard" / "seed_0")
  for field, tag in (("val_loss", "val/loss"), ("train_accuracy", "train/accuracy")):
    assert scalars[tag] == [(r["step"], pytest.approx(r[field], rel=1e-6))
                            for r in resumed], tag


@needs_cifar10
def test_finished_run_is_not_trained_again(tmp_path):
  first = experiment.train(tiny_config(num_epochs=1, **SMALL_NET), str(tmp_path))
  again = experiment.train(tiny_config(num_epochs=1, **SMALL_NET), str(tmp_path))
  assert again == first


def _snapshot(root):
  return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, files in os.walk(root) for f in files}


@needs_cifar10
def test_workdir_of_another_config_is_refused_then_archived_with_fresh(tmp_path):
  experiment.train(tiny_config(num_epochs=1, **SMALL_NET), str(tmp_path))
  before = _snapshot(tmp_path)
  with pytest.raises(UserError) as error:
    experiment.train(tiny_config(num_epochs=1, learning_rate=0.01, **SMALL_NET),
                     str(tmp_path))
  message = str(error.value)
  assert "learning_rate: 0.001 -> 0.01" in message and "--fresh" in message
  assert _snapshot(tmp_path) == before  # nothing touched
  experiment.train(tiny_config(num_epochs=1, learning_rate=0.01, **SMALL_NET),
                   str(tmp_path), fresh=True)
  archived = list((tmp_path / workdir.ARCHIVE_DIR).iterdir())
  assert len(archived) == 1
  old_config = json.loads((archived[0] / "config.json").read_text())
  assert old_config["learning_rate"] == 0.001
  assert (archived[0] / "metrics.jsonl").exists()
  assert json.loads((tmp_path / "config.json").read_text())["learning_rate"] == 0.01


@needs_cifar10
@pytest.mark.parametrize("kind", ["study", "stages"])
def test_fresh_archives_a_study_or_a_staged_run_whole(tmp_path, kind):
  """A study's arms and a staged run's stages are runs of their own inside
  the workdir: --fresh moves them to archive/ with the rest, or the new
  config would be refused by (or resume) the old arms."""
  import ml_collections
  from jaxtransfer.features import stages
  from jaxtransfer.study import runner

  def run(learning_rate, **kwargs):
    config = tiny_config(num_epochs=1, train_subset=64, val_subset=50,
                         learning_rate=learning_rate, **SMALL_NET)
    with config.unlocked():
      if kind == "study":
        config.study = ml_collections.ConfigDict({"arms": ({"name": "a"},)})
      else:
        config.stages = ({"name": "extract", "freeze": "head", "num_epochs": 1},
                         {"name": "finetune", "freeze": "none", "num_epochs": 1})
    (runner.run if kind == "study" else stages.run)(config, str(tmp_path),
                                                   **kwargs)

  run(1e-3)
  inner = ("a" if kind == "study" else
           os.path.basename(stages.stage_dir(str(tmp_path), 0, "extract")))
  before = sorted(set(os.listdir(tmp_path)) - {workdir.LOCK_FILE})
  assert inner in before
  snapshot = _snapshot(tmp_path)
  with pytest.raises(UserError, match="--fresh"):
    run(1e-2)
  assert _snapshot(tmp_path) == snapshot  # refused: nothing touched
  run(1e-2, fresh=True)
  archived = list((tmp_path / workdir.ARCHIVE_DIR).iterdir())
  assert len(archived) == 1
  assert sorted(os.listdir(archived[0])) == before
  for root, rate in ((archived[0], 1e-3), (tmp_path, 1e-2)):
    for run_dir in (root, root / inner):
      assert json.loads((run_dir / "config.json").read_text())[
          "learning_rate"] == rate, run_dir
    assert (root / inner / "metrics.jsonl").exists()


def test_missing_autoencoder_checkpoint_is_a_clear_error(tmp_path):
  config = tiny_config(init="autoencoder", ae_checkpoint=str(tmp_path / "nope"))
  with pytest.raises(UserError, match="nope does not exist"):
    initialization.load_pretrained(config, str(tmp_path))


def test_autoencoder_checkpoint_of_other_shapes_lists_the_mismatches(tmp_path):
  from jaxtransfer import models
  fresh = jax.eval_shape(
      lambda: models.Classifier(10).init(jax.random.key(0),
                                         jnp.zeros((1, 64, 64, 3)))["params"])
  fresh = jax.tree.map(lambda s: np.zeros((1, *s.shape), s.dtype), fresh)
  wrong_body = {
      "conv1": {"kernel": np.zeros((5, 5, 3, 64), np.float32),
                "bias": np.zeros(64, np.float32)},
      **{f"conv{i}": jax.tree.map(lambda a: a[0], fresh["body"][f"conv{i}"])
         for i in (2, 3, 4)},
  }  # conv1 of the wrong shape, conv5 missing
  stacked = jax.tree.map(lambda a: a[None], wrong_body)  # one seed
  store = checkpoints.RunCheckpoints(str(tmp_path / "ae"))
  store.save(1, {"params": {"body": stacked}}, [], {}, None)
  store.close()
  config = tiny_config(init="autoencoder", ae_checkpoint=str(tmp_path / "ae"))
  loaded, source = initialization.load_pretrained(config, str(tmp_path))
  with pytest.raises(UserError) as error:
    initialization.merge_pretrained(fresh, loaded, source)
  message = str(error.value)
  assert "body/conv1/kernel: shape (5, 5, 3, 64), expected (11, 11, 3, 64)" in message
  assert "body/conv5/kernel: missing" in message and "body/conv5/bias: missing" in message
  assert "body/conv2" not in message


@pytest.mark.parametrize("with_statistics", [True, False])
def test_load_variables_reads_the_params_and_statistics_bit_for_bit(
    tmp_path, with_statistics):
  """The fields a model needs, as numpy, from a state that also holds an
  optimizer's (read partially: benchmarks/checkpoint_read.py); a model
  without BatchNorm gets {} for its statistics."""
  rng = np.random.default_rng(0)
  normal = lambda *shape: rng.normal(size=shape).astype(np.float32)
  params = {"body": {"conv1": {"kernel": normal(2, 3, 3, 3, 4),
                               "bias": normal(2, 4)}},
            "head": {"fc1": {"kernel": normal(2, 4, 10)}}}
  state = {"step": np.int32(7), "params": params,
           "opt_state": {"mu": jax.tree.map(lambda a: a + 1, params),
                         "count": np.array([7, 7], np.int32)}}
  if with_statistics:
    state["batch_stats"] = {"body": {"bn1": {"mean": normal(2, 4),
                                             "var": normal(2, 4) ** 2}}}
  store = checkpoints.RunCheckpoints(str(tmp_path))
  store.save(7, state, [], {}, None)
  store.close()
  got_params, got_stats, step = checkpoints.load_variables(str(tmp_path))
  assert step == 7
  expected_stats = state.get("batch_stats", {})
  for got, want in ((got_params, params), (got_stats, expected_stats)):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      assert isinstance(a, np.ndarray) and a.dtype == b.dtype
      np.testing.assert_array_equal(a, b)


@needs_cifar10
def test_feature_cache_trains_the_head_to_the_same_result(tmp_path):
  common = dict(freeze="head", num_epochs=2, num_seeds=2, **SMALL_NET)
  cached = experiment.train(tiny_config(**common), str(tmp_path / "cached"))
  direct = experiment.train(tiny_config(cache_features=False, **common),
                            str(tmp_path / "direct"))
  assert all(r["features_cached"] for r in cached)
  assert not any(r["features_cached"] for r in direct)
  assert "feature_seconds" in cached[0]
  for a, b in zip(cached, direct):
    assert (a["epoch"], a["seed"]) == (b["epoch"], b["seed"])
    for key in ("train_loss", "val_loss"):  # same maths, other batching
      assert a[key] == pytest.approx(b[key], rel=1e-5), key
  # eval mode of a cached run reproduces its logged numbers, per seed
  results = experiment.evaluate(tiny_config(**common), str(tmp_path / "cached"))
  for result, logged in zip(results, cached[-2:]):
    assert result["seed"] == logged["seed"]
    assert result["val_loss"] == pytest.approx(logged["val_loss"], rel=1e-6)
