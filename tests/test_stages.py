"""Staged runs (jaxtransfer/features/stages.py, config.stages) and config.reinit: the
merge keeps re-initialised parameters fresh, a two-stage run on real
CIFAR-10 (continuous metrics, the feature cache per stage, stage 1 starting
from stage 0's weights), kill/resume at a stage boundary and mid-stage
bit-identical, and the bad inputs (one line naming the field, exit 2,
nothing written)."""

import os

import jax
import numpy as np
import pytest

from conftest import needs_cifar10, run_cli, tiny_config
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import (experiment, freezing, initialization, run_setup,
                                training)
from jaxtransfer.features import stages
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import validation

TIMING = ("epoch_seconds", "eval_seconds", "compile_seconds", "feature_seconds",
          "train_images_per_second", "host_peak_rss_mb", "device_peak_mb")


def _staged(second=None, **overrides):
  """Extract (head only, 1 epoch) then fine-tune (everything, 2 epochs,
  head/fc2 re-initialised)."""
  config = tiny_config(model="alexnet", train_subset=128, val_subset=100,
                       log_every_steps=2, **overrides)
  config.stages = (
      {"name": "extract", "freeze": "head", "num_epochs": 1},
      second or {"name": "finetune", "freeze": "none", "num_epochs": 2,
                 "learning_rate": 3e-4, "reinit": ("head/fc2/.*",)})
  return config


def _named(tree):
  return dict(freezing.named_leaves(jax.device_get(tree)))


def test_merge_keeps_reinit_parameters_fresh():
  """head/fc2 matched by reinit keeps the fresh value; head/fc1 and the body
  come from the source. A BatchNorm module's statistics follow its
  parameters (alexnet_bn)."""
  config = tiny_config(model="alexnet_bn", image_size=32)
  setup, init_state = training.build_setup(config, 10, 1, 32)
  # Compiled as a run's initialisation is (tests/model_init.py says why).
  init_state = jax.jit(init_state, compiler_options=run_setup.RUN_ONCE)
  fresh, source = (jax.device_get(training.model_variables(init_state(
      jax.random.split(jax.random.key(s), 1)))) for s in (0, 1))
  bn = sorted({n.rsplit("/", 1)[0] for n in _named(fresh["batch_stats"])})[0]
  head = sorted({n.rsplit("/", 1)[0] for n in _named(fresh["params"])
                 if n.startswith("head/")})
  loaded = {"body": source["params"]["body"], "head": source["params"]["head"],
            "batch_stats": source["batch_stats"]}
  reinit = (f"{head[-1]}/.*", f"{bn}/.*")
  merged = initialization.merge_variables(fresh, loaded, "test", reinit=reinit)
  fresh_p, source_p, merged_p = (_named(t["params"]) for t in (fresh, source, merged))
  for name, value in merged_p.items():
    module = name.rsplit("/", 1)[0]
    expected = fresh_p if module in (head[-1], bn) else source_p
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  assert any(not np.array_equal(fresh_p[n], source_p[n]) for n in merged_p
             if n.startswith(head[-1]))
  for name, value in _named(merged["batch_stats"]).items():
    expected = fresh if name.rsplit("/", 1)[0] == bn else source
    np.testing.assert_array_equal(value, _named(expected["batch_stats"])[name])
  with pytest.raises(UserError, match="config.reinit: 'head/nope' matches no"):
    initialization.merge_variables(fresh, loaded, "test", reinit=("head/nope",))


@pytest.mark.parametrize("second, message", [
    ({"freeze": "none", "reinit": ("head/fc9/.*",)},
     r"config.stages\[1\].reinit: 'head/fc9/.\*' matches no parameter"),
    ({"trainable_rules": ((".*", False),)},
     r"config.stages\[1\].trainable_rules=\(\('.\*', False\),\): freezes every"),
    ({"num_epochs": 2, "lr_schedule": "piecewise", "lr_boundaries": (2,),
      "lr_values": (1e-3, 1e-4)},
     r"config.stages\[1\].lr_boundaries=\(2,\): boundary 2 is not below "
     "num_epochs=2"),
    ({"num_epochs": 2, "lr_schedule": "step", "lr_step_epochs": 3},
     r"config.stages\[1\].lr_step_epochs=3: the stage's step schedule never"),
    ({"lerning_rate": 1e-4}, r"config.stages\[1\]: unknown config field "
     "'lerning_rate'; did you mean 'learning_rate'"),
    ({"image_size": 32}, r"config.stages\[1\].image_size=32: a stage may not"),
    ({"num_epochs": 0}, r"config.stages\[1\].num_epochs=0: must be at least 1"),
])
def test_bad_stages_name_the_field(second, message):
  with pytest.raises(UserError, match=message):
    validation.validate(_staged(second))


def test_reinit_without_loaded_weights_and_with_active_learning():
  with pytest.raises(UserError, match=r"config.reinit=\('head/fc2/.\*',\): only"):
    validation.validate(tiny_config(reinit=("head/fc2/.*",)))
  with pytest.raises(UserError, match="config.stages: not supported together "
                     "with active learning"):
    validation.validate(_staged(**{"active.strategy": "margin"}))


def test_cli_bad_stage_exits_2_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  result = run_cli("--config=configs/staged.py:smoke,init=random,model=alexnet,"
                   "reinit=head/fc8/.*", f"--workdir={workdir}")
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert "config.stages[1].reinit: 'head/fc8/.*' matches no parameter" in last
  assert "Traceback" not in result.stderr
  assert not workdir.exists()


def _outcome(workdir):
  records = [{k: v for k, v in r.items() if k not in TIMING}
             for r in stages.combined_metrics(
                 stages.stage_configs(_staged(), str(workdir)), str(workdir))]
  params, stats, _ = checkpoints.load_variables(
      os.path.join(workdir, "stage_1_finetune"))
  return records, _named(params), _named(stats)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("staged")
  # What each stage's run actually started from: the state the training loop
  # got from run_setup.initial_state (fetched at once: the step donates it).
  started = {}
  record = run_setup.initial_state

  def recording(config, workdir, *args, **kwargs):
    state, history = record(config, workdir, *args, **kwargs)
    started[os.path.basename(workdir)] = _named(state.params)  # [1 model, ...]
    return state, history

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(run_setup, "initial_state", recording)
    history = stages.run(_staged(), str(workdir))
  return workdir, history, started


@needs_cifar10
def test_two_stages_one_curve_and_cache_per_stage(reference):
  workdir, history, started = reference
  from jaxtransfer.core import workdir as workdir_lib
  assert workdir_lib.read_metrics(str(workdir)) == history
  assert [r["epoch"] for r in history] == [1, 2, 3]
  assert [r["stage"] for r in history] == [0, 1, 1]
  assert [r["stage_name"] for r in history] == ["extract", "finetune",
                                                "finetune"]
  assert [r["stage_epoch"] for r in history] == [1, 1, 2]
  assert [r["step"] for r in history] == [4, 8, 12]  # 128 / 32 per epoch
  assert [r["features_cached"] for r in history] == [True, False, False]
  assert history[0]["trainable_parameters"] < history[1]["trainable_parameters"]
  assert sorted(f for f in os.listdir(workdir) if f[0] != ".") == ["config.json", "metrics.jsonl",
                                         "stage_0_extract", "stage_1_finetune"]
  # Stage 1 starts from stage 0's final weights, head/fc2 fresh (the
  # function the run used, on the real stage directories).
  (_, config0), (name1, config1) = stages.stage_configs(_staged(), str(workdir))
  final0, _, _ = checkpoints.load_variables(workdir / "stage_0_extract")
  setup, init_state = training.build_setup(config1, 10, 4, 32)
  keys = training.RunKeys.from_seeds(training.seeds_of(config1), setup.replicated)
  start1 = run_setup.pretrained_variables(
      config1, str(workdir / "stage_1_finetune"), init_state, keys, name1)
  fresh = run_setup.fresh_variables(init_state, keys)  # as the run drew it
  final0, start1, fresh = (_named(t) for t in (final0, start1["params"],
                                               fresh["params"]))
  for name, value in start1.items():
    expected = fresh if name.startswith("head/fc2/") else final0
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  assert not np.array_equal(final0["head/fc2/kernel"], fresh["head/fc2/kernel"])
  # And the run itself started stage 1 there: the parameters its training
  # loop began with (recorded by the fixture) are stage 0's final weights,
  # head/fc2 the fresh initialisation.
  assert sorted(started) == ["stage_0_extract", "stage_1_finetune"]
  loaded = started["stage_1_finetune"]
  assert sorted(loaded) == sorted(final0)
  for name, value in loaded.items():
    expected = fresh if name.startswith("head/fc2/") else final0
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  # (stage 0 trained: its final body/head differ from where stage 0 began)
  assert not np.array_equal(started["stage_0_extract"]["head/fc1/kernel"],
                            final0["head/fc1/kernel"])
  # Finished: a second call trains nothing and returns the same records.
  assert stages.run(_staged(), str(workdir)) == history
  # --mode=eval evaluates the last stage's model.
  result, = experiment.evaluate(_staged(), str(workdir))
  assert result["step"] == 8 and abs(
      result["val_accuracy"] - history[-1]["val_accuracy"]) < 1e-6


@needs_cifar10
@pytest.mark.parametrize("stop_after_epoch", [1, 2])  # boundary; mid-stage 1
def test_killed_staged_run_resumes_bit_identical(reference, tmp_path,
                                                 stop_after_epoch):
  expected = _outcome(reference[0])

  def stop(epoch):
    if epoch == stop_after_epoch:
      training.request_stop()

  try:
    with pytest.raises(training.Interrupted) as stopped:
      stages.run(_staged(), str(tmp_path), hooks=training.Hooks(
          on_epoch_end=stop, verbose=False))
  finally:
    training._stop_requested.clear()
  # What it says it saved is so: at the stage boundary the next stage has
  # not trained (nothing saved there); mid-stage, that step's checkpoint.
  directory = checkpoints.checkpoint_dir(stopped.value.workdir)
  if stop_after_epoch == 1:
    assert "nothing was trained in" in str(stopped.value)
    assert not os.path.isdir(directory) or not [
        n for n in os.listdir(directory) if n.isdigit()]
  else:
    assert f"a checkpoint of that step is in {directory}" in str(stopped.value)
    assert checkpoints.RunCheckpoints(stopped.value.workdir, read_only=True
                                      ).steps()[-1] == stopped.value.step
  done = [r["epoch"] for r in stages.combined_metrics(
      stages.stage_configs(_staged(), str(tmp_path)), str(tmp_path))]
  assert done == list(range(1, stop_after_epoch + 1))
  stages.run(_staged(), str(tmp_path))
  got = _outcome(tmp_path)
  assert got[0] == expected[0]
  assert got[1].keys() == expected[1].keys()
  for name in expected[1]:
    np.testing.assert_array_equal(got[1][name], expected[1][name], err_msg=name)
